//! The checkpoint signing key: created on first start, kept in a file only
//! the service's user can read, and reused on every start after.

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
    #[error("the signing key {path} is for origin \"{found}\", but the ledger's origin is \"{expected}\"")]
    WrongOrigin {
        path: String,
        found: String,
        expected: String,
    },
}

/// Loads the key at `path`, or creates one named `origin` if there is none.
pub fn load_or_create(path: &Path, origin: &str) -> Result<NoteSigner, KeyError> {
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
            let signer = NoteSigner::generate(origin).map_err(|e| KeyError::Invalid {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
            let write = |signer: &NoteSigner| -> std::io::Result<()> {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(signer.to_skey_text().as_bytes())?;
                f.write_all(b"\n")?;
                f.sync_all()
            };
            write(&signer).map_err(|source| KeyError::Write {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = load_or_create(&path, "example.org/log").unwrap();
        let b = load_or_create(&path, "example.org/log").unwrap();
        assert_eq!(a.verifier_key_text(), b.verifier_key_text());
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert!(matches!(
            load_or_create(&path, "other.org/log"),
            Err(KeyError::WrongOrigin { .. })
        ));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create(&path, "example.org/log"),
            Err(KeyError::Invalid { .. })
        ));
    }
}
