//! One way to name a secret in the config: an environment variable
//! (`*_env`) or a file (`*_file`), never both. Every secret the gateway
//! reads (upstream passwords, the masking key, the body keyring, the
//! approval service's proxy token, webhook and callback secrets) goes
//! through here, so each gives the same errors, names its config key, and
//! never puts the secret's text in an error.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where one secret lives, as the config names it.
#[derive(Clone, Debug)]
pub struct Secret<'a> {
    /// The config key's prefix for errors, e.g. `masking.hash_key`.
    what: String,
    env: Option<&'a str>,
    file: Option<&'a Path>,
}

impl<'a> Secret<'a> {
    pub fn new(
        what: impl Into<String>,
        env: &'a Option<String>,
        file: &'a Option<PathBuf>,
    ) -> Self {
        Self {
            what: what.into(),
            env: env.as_deref(),
            file: file.as_deref(),
        }
    }

    /// Whether the config names a source at all.
    pub fn is_configured(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Checks the config: at most one source, and one when `required`.
    pub fn check(&self, required: bool) -> anyhow::Result<()> {
        let what = &self.what;
        match (self.env, self.file) {
            (Some(_), Some(_)) => bail!("{what}: give {what}_env or {what}_file, not both"),
            (None, None) if required => {
                bail!("{what}: a secret is required ({what}_env or {what}_file)")
            }
            _ => Ok(()),
        }
    }

    /// Reads it now (`None` when none is configured), without the line
    /// ending a file's last line carries.
    pub fn read(&self) -> anyhow::Result<Option<String>> {
        self.check(false)?;
        let what = &self.what;
        let text = match (self.env, self.file) {
            (Some(var), _) => std::env::var(var)
                .with_context(|| format!("{what}: environment variable {var} is not set"))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("{what}: cannot read {}", path.display()))?,
            (None, None) => return Ok(None),
        };
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }

    /// Reads it, or fails naming the keys when none is configured.
    pub fn read_required(&self) -> anyhow::Result<String> {
        self.check(true)?;
        Ok(self.read()?.unwrap_or_default())
    }

    /// Where it comes from, for the startup summary (never the secret).
    pub fn describe(&self) -> String {
        match (self.env, self.file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "none".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_checked_and_read_with_errors_that_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "s3cret value\r\n").unwrap();
        let file = Some(path.clone());
        let none_env: Option<String> = None;
        let none_file: Option<PathBuf> = None;

        let from_file = Secret::new("masking.hash_key", &none_env, &file);
        assert_eq!(from_file.read().unwrap().as_deref(), Some("s3cret value"));
        assert_eq!(from_file.describe(), format!("file {}", path.display()));

        let env = Some("VIGIL_TEST_SECRET_UNSET_FOR_SURE".to_string());
        let err = Secret::new("upstream.password", &env, &none_file)
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("upstream.password") && err.contains("is not set"),
            "{err}"
        );

        let both = Secret::new("x.token", &env, &file);
        let err = both.read().unwrap_err().to_string();
        assert_eq!(err, "x.token: give x.token_env or x.token_file, not both");

        let neither = Secret::new("x.token", &none_env, &none_file);
        assert_eq!(neither.read().unwrap(), None);
        assert!(neither.check(false).is_ok());
        let err = neither.read_required().unwrap_err().to_string();
        assert!(err.contains("a secret is required"), "{err}");

        let missing = Some(dir.path().join("absent"));
        let err = Secret::new("k", &none_env, &missing).read().unwrap_err();
        assert!(format!("{err:#}").contains("k: cannot read"), "{err:#}");
    }
}
