//! The checkpoint signing key: created on first start, kept in a file only
//! the service's user can read, and reused on every start after.
//!
//! A key is only ever created for an empty log: a log with entries or a
//! checkpoint whose key file is gone is refused, because a new key there
//! would look to an auditor exactly like a takeover. A key is replaced only
//! by [`rotate`], which records a note signed by both keys in the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use vigil_ledger::NoteSigner;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the signing key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {path} is not a note signer key: {detail}")]
    Invalid { path: String, detail: String },
    #[error(
        "the signing key {path} is missing, but the log already has {entries} entries or a checkpoint: \
         a new key would look to auditors like a takeover. Restore the key file from your backup \
         (a lost key cannot be replaced without breaking every auditor's trust; see `vigil ledger \
         rotate-key` for replacing a key you still have)"
    )]
    MissingForExistingLog { path: String, entries: u64 },
    #[error("the key rotation could not be recorded: {0}")]
    Rotation(String),
    #[error("the signing key {path} is for origin \"{found}\", but the ledger's origin is \"{expected}\"")]
    WrongOrigin {
        path: String,
        found: String,
        expected: String,
    },
}

/// Loads the key at `path`, or creates one named `origin` if there is none
/// and the log is empty (`entries` 0 and no checkpoint).
pub fn load_or_create(
    path: &Path,
    origin: &str,
    entries: u64,
    has_checkpoint: bool,
) -> Result<NoteSigner, KeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let signer =
                NoteSigner::from_skey_text(text.trim()).map_err(|e| KeyError::Invalid {
                    path: shown.clone(),
                    detail: e.to_string(),
                })?;
            if signer.name() != origin {
                return Err(KeyError::WrongOrigin {
                    path: shown,
                    found: signer.name().to_string(),
                    expected: origin.to_string(),
                });
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if entries > 0 || has_checkpoint {
                return Err(KeyError::MissingForExistingLog {
                    path: shown,
                    entries,
                });
            }
            let signer = NoteSigner::generate(origin).map_err(|e| KeyError::Invalid {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
            write_new(path, &signer).map_err(|source| KeyError::Write {
                path: shown,
                source,
            })?;
            Ok(signer)
        }
        Err(source) => Err(KeyError::Read {
            path: shown,
            source,
        }),
    }
}

/// Writes a key to a file that must not exist yet, readable only by us.
fn write_new(path: &Path, signer: &NoteSigner) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(signer.to_skey_text().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Where a rotation keeps the next key until the rotation is recorded.
fn next_key_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("key.next")
}

/// Replaces the signing key: generates the next key, records in the log a
/// checkpoint of its current head signed by both keys and naming the next
/// one, and only then makes the next key the one in `path` (the old one is
/// kept beside it as `<path>.retired-<key id>`). A crash in between is
/// finished or undone by [`finish_rotation`] at the next open.
pub fn rotate(
    store: &vigil_ledger::Store,
    path: &Path,
    current: &NoteSigner,
) -> Result<(NoteSigner, String), KeyError> {
    let next = NoteSigner::generate(current.name()).map_err(|e| KeyError::Invalid {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let next_path = next_key_path(path);
    let _ = std::fs::remove_file(&next_path);
    write_new(&next_path, &next).map_err(|source| KeyError::Write {
        path: next_path.display().to_string(),
        source,
    })?;
    let (size, root) = store.head();
    let checkpoint = vigil_ledger::Checkpoint {
        origin: current.name().to_string(),
        size,
        root,
    };
    let note = vigil_ledger::rotation::rotation_note(&checkpoint, current, &next)
        .map_err(|e| KeyError::Rotation(e.to_string()))?;
    store
        .put_key_rotation(&note)
        .map_err(|e| KeyError::Rotation(e.to_string()))?;
    install_next(path, current)?;
    Ok((next, note))
}

/// Keeps the old key as `<path>.retired-<key id>` and moves the next key
/// into `path`.
fn install_next(path: &Path, current: &NoteSigner) -> Result<(), KeyError> {
    let retired = path.with_extension(format!("key.retired-{:08x}", current.key_id()));
    let write_err = |p: &Path| {
        let p = p.display().to_string();
        move |source| KeyError::Write { path: p, source }
    };
    if !retired.exists() {
        std::fs::copy(path, &retired).map_err(write_err(&retired))?;
    }
    std::fs::rename(next_key_path(path), path).map_err(write_err(path))?;
    Ok(())
}

/// At open: a next key left by a rotation that crashed is installed if the
/// log recorded the rotation to it, and removed if not.
pub fn finish_rotation(store: &vigil_ledger::Store, path: &Path) -> Result<(), KeyError> {
    let next_path = next_key_path(path);
    let Ok(text) = std::fs::read_to_string(&next_path) else {
        return Ok(());
    };
    let shown = next_path.display().to_string();
    let next = NoteSigner::from_skey_text(text.trim()).map_err(|e| KeyError::Invalid {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let recorded = store
        .key_rotations()
        .map_err(|e| KeyError::Rotation(e.to_string()))?
        .last()
        .is_some_and(|note| note.contains(&next.verifier_key_text()));
    if !recorded {
        return std::fs::remove_file(&next_path).map_err(|source| KeyError::Write {
            path: shown,
            source,
        });
    }
    let current_text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let current =
        NoteSigner::from_skey_text(current_text.trim()).map_err(|e| KeyError::Invalid {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    install_next(path, &current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = load_or_create(&path, "example.org/log", 0, false).unwrap();
        let b = load_or_create(&path, "example.org/log", 0, false).unwrap();
        assert_eq!(a.verifier_key_text(), b.verifier_key_text());
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert!(matches!(
            load_or_create(&path, "other.org/log", 0, false),
            Err(KeyError::WrongOrigin { .. })
        ));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create(&path, "example.org/log", 0, false),
            Err(KeyError::Invalid { .. })
        ));
        // A log with entries or a checkpoint never gets a fresh key.
        std::fs::remove_file(&path).unwrap();
        for (entries, checkpoint) in [(3, false), (0, true)] {
            let err = load_or_create(&path, "example.org/log", entries, checkpoint).unwrap_err();
            assert!(
                matches!(err, KeyError::MissingForExistingLog { .. }),
                "{err}"
            );
            assert!(!path.exists());
        }
    }
}
