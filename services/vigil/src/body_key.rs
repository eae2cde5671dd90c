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
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create keyring {}", path.display()))
        }
    };
    let id = format!("dev-{}", std::process::id());
    writeln!(
        file,
        "# Vigil body keyring: `<key id> <base64 key>` per line; the first seals.\n\
         # To rotate, put a new line (vigil body-key new --id ID) first and keep the old ones.\n{}",
        new_line(&id)?
    )
    .and_then(|()| file.sync_all())
    .with_context(|| format!("cannot write keyring {}", path.display()))
}
