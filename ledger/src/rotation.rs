//! Signing-key rotation an auditor can follow.
//!
//! A rotation is a checkpoint of the log whose body carries one extension
//! line, `vigil-rotate-to <verifier key>`, naming the next key, and which
//! is signed by both the current and the next key. An auditor who trusts
//! one key follows the chain of rotations from it; a key that appears
//! without such a note (a lost key file replaced, a takeover) is not
//! trusted. Both keys sign the same text, so the rotation also pins the
//! log (size and root) at the moment of the handover.

use crate::checkpoint::Checkpoint;
use crate::note::{add_signature, open_note, sign_note, NoteError, NoteSigner, NoteVerifier};

/// The extension line's prefix.
pub const ROTATE_TO: &str = "vigil-rotate-to ";

/// The note that hands the log from `current` to `next` at `checkpoint`.
pub fn rotation_note(
    checkpoint: &Checkpoint,
    current: &NoteSigner,
    next: &NoteSigner,
) -> Result<String, NoteError> {
    if current.name() != next.name() {
        return Err(NoteError::InvalidText(
            "both keys must carry the log's name",
        ));
    }
    let text = format!(
        "{}{ROTATE_TO}{}\n",
        checkpoint.to_text(),
        next.verifier_key_text()
    );
    add_signature(&sign_note(&text, current)?, next)
}

/// One rotation, opened.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The log at the handover.
    pub checkpoint: Checkpoint,
    /// The key before it.
    pub from: NoteVerifier,
    /// The key after it.
    pub to: NoteVerifier,
}

/// Opens a rotation note with the key that is current: it must be signed by
/// `current`, name exactly one next key, and be signed by that key too.
pub fn open_rotation(note: &str, current: &NoteVerifier) -> Result<Rotation, String> {
    let text =
        open_note(note, current).map_err(|e| format!("not signed by the current key: {e}"))?;
    let (checkpoint, extensions) =
        Checkpoint::parse_with_extensions(&text).map_err(|e| format!("checkpoint body: {e}"))?;
    let [line] = extensions.as_slice() else {
        return Err("a rotation names exactly one next key".into());
    };
    let vkey = line
        .strip_prefix(ROTATE_TO)
        .ok_or("its extension line is not a key rotation")?;
    let to = NoteVerifier::from_vkey_text(vkey).map_err(|e| format!("the next key: {e}"))?;
    if to.name() != current.name() {
        return Err("the next key carries another log's name".into());
    }
    open_note(note, &to).map_err(|e| format!("not signed by the next key it names: {e}"))?;
    Ok(Rotation {
        checkpoint,
        from: current.clone(),
        to,
    })
}

/// A key and the log sizes it signed checkpoints for.
#[derive(Debug, Clone)]
pub struct KeyEpoch {
    pub key: NoteVerifier,
    /// The size at which it took over (0 for the key the auditor trusts).
    pub from_size: u64,
    /// The size at which it handed over, if it did.
    pub until_size: Option<u64>,
}

/// Follows `notes` (in the order the log made them) from the key the
/// auditor trusts. Notes that do not open with the trusted key before the
/// chain reaches it are older than that key and are skipped; after that,
/// every note must continue the chain, at a size not below the one before.
/// Returns the keys in order, the trusted one first, and the rotations
/// followed.
pub fn follow_chain(
    notes: &[String],
    trusted: &NoteVerifier,
) -> Result<(Vec<KeyEpoch>, Vec<Rotation>), String> {
    let mut epochs = vec![KeyEpoch {
        key: trusted.clone(),
        from_size: 0,
        until_size: None,
    }];
    let mut followed: Vec<Rotation> = Vec::new();
    for (i, note) in notes.iter().enumerate() {
        let current = &epochs.last().expect("at least the trusted key").key;
        let rotation = match open_rotation(note, current) {
            Ok(r) => r,
            // Before the trusted key: a rotation to it, or older ones.
            Err(_) if followed.is_empty() => continue,
            Err(e) => return Err(format!("key rotation {i}: {e}")),
        };
        if rotation.to.key_id() == current.key_id() {
            // The rotation that made the trusted key (cosigned by it).
            continue;
        }
        if let Some(last) = followed.last() {
            if rotation.checkpoint.size < last.checkpoint.size {
                return Err(format!(
                    "key rotation {i} is at size {}, before the one it follows (size {})",
                    rotation.checkpoint.size, last.checkpoint.size
                ));
            }
        }
        let size = rotation.checkpoint.size;
        epochs.last_mut().expect("at least one").until_size = Some(size);
        epochs.push(KeyEpoch {
            key: rotation.to.clone(),
            from_size: size,
            until_size: None,
        });
        followed.push(rotation);
    }
    Ok((epochs, followed))
}

/// Opens a signed checkpoint with the key of the epoch that covers its
/// size (a checkpoint signed with a key before or after its time is
/// refused).
pub fn open_with_epochs(note: &str, epochs: &[KeyEpoch]) -> Result<(Checkpoint, usize), String> {
    let mut last_error = String::from("no key");
    for (i, epoch) in epochs.iter().enumerate().rev() {
        match open_note(note, &epoch.key) {
            Ok(text) => {
                let c = Checkpoint::parse(&text).map_err(|e| format!("checkpoint body: {e}"))?;
                if c.size < epoch.from_size || epoch.until_size.is_some_and(|u| c.size > u) {
                    return Err(format!(
                        "checkpoint of size {} is signed by key {:08x}, which signs only sizes {}..={}",
                        c.size,
                        epoch.key.key_id(),
                        epoch.from_size,
                        epoch.until_size.map_or("now".into(), |u| u.to_string())
                    ));
                }
                return Ok((c, i));
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!("checkpoint signature: {last_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "example.org/log".into(),
            size,
            root: [size as u8; 32],
        }
    }

    #[test]
    fn a_chain_is_followed_from_the_trusted_key_and_nothing_else() {
        let k0 = NoteSigner::generate("example.org/log").unwrap();
        let k1 = NoteSigner::generate("example.org/log").unwrap();
        let k2 = NoteSigner::generate("example.org/log").unwrap();
        let r01 = rotation_note(&cp(5), &k0, &k1).unwrap();
        let r12 = rotation_note(&cp(9), &k1, &k2).unwrap();
        let notes = vec![r01.clone(), r12.clone()];

        let (epochs, followed) = follow_chain(&notes, &k0.verifier()).unwrap();
        assert_eq!(followed.len(), 2);
        assert_eq!(epochs.last().unwrap().key.key_id(), k2.key_id());
        // A checkpoint by k2 at size 12 opens; one by k0 at size 12 does not.
        let now = sign_note(&cp(12).to_text(), &k2).unwrap();
        assert_eq!(open_with_epochs(&now, &epochs).unwrap().0.size, 12);
        let stale_key = sign_note(&cp(12).to_text(), &k0).unwrap();
        assert!(open_with_epochs(&stale_key, &epochs)
            .unwrap_err()
            .contains("signs only sizes 0..=5"));

        // Trusting k1 (learned later): the rotation that made it is skipped.
        let (epochs, _) = follow_chain(&notes, &k1.verifier()).unwrap();
        assert_eq!(epochs.len(), 2);

        // A key that appeared without the current key's signature: the
        // chain stops at the trusted one, and its checkpoints are refused.
        let thief = NoteSigner::generate("example.org/log").unwrap();
        let forged = rotation_note(&cp(5), &thief, &k1).unwrap();
        let (epochs, followed) = follow_chain(&[forged], &k0.verifier()).unwrap();
        assert!(followed.is_empty());
        let by_k1 = sign_note(&cp(6).to_text(), &k1).unwrap();
        assert!(open_with_epochs(&by_k1, &epochs).is_err());

        // After the chain started, a note that does not continue it fails.
        let stray = rotation_note(&cp(10), &thief, &k2).unwrap();
        assert!(follow_chain(&[r01.clone(), stray], &k0.verifier()).is_err());
        // Going back in size fails.
        let back = rotation_note(&cp(3), &k1, &k2).unwrap();
        assert!(follow_chain(&[r01, back], &k0.verifier())
            .unwrap_err()
            .contains("before the one it follows"));
    }

    #[test]
    fn a_rotation_note_needs_both_signatures_and_one_next_key() {
        let k0 = NoteSigner::generate("example.org/log").unwrap();
        let k1 = NoteSigner::generate("example.org/log").unwrap();
        let text = format!("{}{ROTATE_TO}{}\n", cp(5).to_text(), k1.verifier_key_text());
        let only_old = sign_note(&text, &k0).unwrap();
        assert!(open_rotation(&only_old, &k0.verifier())
            .unwrap_err()
            .contains("not signed by the next key"));
        let plain = sign_note(&cp(5).to_text(), &k0).unwrap();
        assert!(open_rotation(&plain, &k0.verifier()).is_err());
        let other = NoteSigner::generate("other.org/log").unwrap();
        assert!(rotation_note(&cp(5), &k0, &other).is_err());
    }
}
