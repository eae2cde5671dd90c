//! `vigil body-key new`: keys that encrypt event bodies at rest.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context;
use vigil_ledger::Keyring;

/// A new keyring line for `id`, refusing ids the keyring would refuse.
pub fn new_line(id: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        Keyring::is_valid_key_id(id),
        "key id {id:?} must be 1 to 32 characters of A-Z a-z 0-9 . _ -"
    );
    Ok(Keyring::generate_line(id))
}

/// Creates a keyring file with one fresh key (mode 0600), unless it exists.
pub fn create_if_missing(path: &Path) -> anyhow::Result<()> {
    let id = format!("dev-{}", std::process::id());
    let text = format!(
        "# Vigil body keyring: `<key id> <base64 key>` per line; the first seals.\n\
         # To rotate, put a new line (vigil body-key new --id ID) first and keep the old ones.\n{}\n",
        new_line(&id)?
    );
    create_secret_file_if_missing(path, &text, "keyring")
}

/// Writes `text` to a new file readable only by its owner (0600), synced;
/// an existing file is left as it is (a key must never be replaced
/// silently). `what` names the file in errors.
pub fn create_secret_file_if_missing(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create {what} {}", path.display()))
        }
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {what} {}", path.display()))
}
