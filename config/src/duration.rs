//! Durations with units in the config: `checkpoint_interval = "250ms"`,
//! `session_timeout = "10s"`, `jwks_refresh = "15m"`.
//!
//! The config used to spell the unit in the key (`checkpoint_interval_ms
//! = 250`). Those keys still work: [`rewrite_with_units`] turns each new
//! key into its older twin before the sections are read, so every crate
//! keeps reading the field it has always read, and an old config, the
//! annotated example of an earlier release, or a manifest written for it
//! keeps working unchanged. Giving both is an error that names both.

use std::time::Duration;

/// A duration as the config writes it: a whole number and a unit, `ms`,
/// `s`, `m`, `h` or `d` ("250ms", "10s", "15m", "1h", "7d").
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (write e.g. \"{text}s\" or \"{text}ms\")"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a whole number with a unit (e.g. \"250ms\", \"10s\")")
    })?;
    let millis = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (ms, s, m, h or d)"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The unit an older key was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Secs,
}

/// A duration key and the older key it replaces, in the tables at `table`:
/// a dotted path from the root, where `name[]` is an array of tables
/// (`"postgres[].upstream"`, `"oidc.issuers[]"`).
#[derive(Clone, Copy, Debug)]
pub struct Renamed {
    pub table: &'static str,
    pub key: &'static str,
    pub older: &'static str,
    pub unit: Unit,
}

impl Renamed {
    /// A key that replaces `older`, which was written in milliseconds.
    pub const fn millis(table: &'static str, key: &'static str, older: &'static str) -> Self {
        Self {
            table,
            key,
            older,
            unit: Unit::Millis,
        }
    }

    /// A key that replaces `older`, which was written in seconds.
    pub const fn secs(table: &'static str, key: &'static str, older: &'static str) -> Self {
        Self {
            table,
            key,
            older,
            unit: Unit::Secs,
        }
    }
}

/// Replaces every `key = "<duration>"` under `renamed` with its older twin
/// (`older = <number in its unit>`), so the sections read as before.
/// Errors name the key: a malformed duration, both keys at once, or a
/// duration that is not a whole number of the older key's unit.
pub fn rewrite_with_units(root: &mut toml::Table, renamed: &[Renamed]) -> Result<(), String> {
    for r in renamed {
        let mut tables = Vec::new();
        collect_tables(root, r.table, r.table, &mut tables);
        for (path, table) in tables {
            let Some(value) = table.remove(r.key) else {
                continue;
            };
            let name = |k: &str| {
                if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                }
            };
            if table.contains_key(r.older) {
                return Err(format!(
                    "give {} or the older {}, not both",
                    name(r.key),
                    name(r.older)
                ));
            }
            let text = value.as_str().ok_or_else(|| {
                format!(
                    "{} is a duration with a unit, written as a string (e.g. \"250ms\", \"10s\")",
                    name(r.key)
                )
            })?;
            let d = parse(text).map_err(|e| format!("{}: {e}", name(r.key)))?;
            let n = match r.unit {
                Unit::Millis => d.as_millis(),
                Unit::Secs if d.subsec_millis() == 0 => u128::from(d.as_secs()),
                Unit::Secs => {
                    return Err(format!("{}: {text:?} is not whole seconds", name(r.key)));
                }
            };
            let n =
                i64::try_from(n).map_err(|_| format!("{}: {text:?} is too long", name(r.key)))?;
            table.insert(r.older.to_string(), toml::Value::Integer(n));
        }
    }
    Ok(())
}

/// The tables at `path` under `table`, with their printable paths.
fn collect_tables<'a>(
    table: &'a mut toml::Table,
    path: &str,
    shown: &str,
    out: &mut Vec<(String, &'a mut toml::Table)>,
) {
    if path.is_empty() {
        out.push((shown.replace("[]", "[..]"), table));
        return;
    }
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let (name, array) = match head.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (head, false),
    };
    match table.get_mut(name) {
        Some(toml::Value::Table(t)) if !array => collect_tables(t, rest, shown, out),
        Some(toml::Value::Array(items)) if array => {
            for item in items {
                if let toml::Value::Table(t) = item {
                    collect_tables(t, rest, shown, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse(" 2 s "), Ok(Duration::from_secs(2)));
        for bad in [
            "250",
            "",
            "ms",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    const RENAMED: &[Renamed] = &[
        Renamed::millis("ledger", "checkpoint_interval", "checkpoint_interval_ms"),
        Renamed::millis(
            "postgres[].upstream",
            "connect_timeout",
            "connect_timeout_ms",
        ),
        Renamed::secs("oidc.issuers[]", "clock_skew", "clock_skew_secs"),
    ];

    fn rewrite(text: &str) -> Result<toml::Table, String> {
        let mut root: toml::Table = toml::from_str(text).unwrap();
        rewrite_with_units(&mut root, RENAMED).map(|()| root)
    }

    #[test]
    fn new_keys_become_their_older_twins_and_old_keys_stay() {
        let root = rewrite(
            "[ledger]\ncheckpoint_interval = \"1s\"\n\
             [[postgres]]\nupstream = { connect_timeout = \"2s\" }\n\
             [[postgres]]\nupstream = { connect_timeout_ms = 300 }\n\
             [oidc]\n[[oidc.issuers]]\nclock_skew = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(
            root["ledger"]["checkpoint_interval_ms"].as_integer(),
            Some(1000)
        );
        assert!(root["ledger"].get("checkpoint_interval").is_none());
        let pg = root["postgres"].as_array().unwrap();
        assert_eq!(
            pg[0]["upstream"]["connect_timeout_ms"].as_integer(),
            Some(2000)
        );
        assert_eq!(
            pg[1]["upstream"]["connect_timeout_ms"].as_integer(),
            Some(300)
        );
        assert_eq!(
            root["oidc"]["issuers"][0]["clock_skew_secs"].as_integer(),
            Some(120)
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, says) in [
            ("[ledger]\ncheckpoint_interval = \"1s\"\ncheckpoint_interval_ms = 5\n", "give ledger.checkpoint_interval or the older ledger.checkpoint_interval_ms, not both"),
            ("[ledger]\ncheckpoint_interval = 250\n", "ledger.checkpoint_interval is a duration with a unit"),
            ("[ledger]\ncheckpoint_interval = \"250\"\n", "ledger.checkpoint_interval: \"250\" has no unit"),
            ("[[postgres]]\nupstream = { connect_timeout = \"2y\" }\n", "postgres[..].upstream.connect_timeout: \"2y\": unknown unit"),
            ("[oidc]\n[[oidc.issuers]]\nclock_skew = \"1500ms\"\n", "oidc.issuers[..].clock_skew: \"1500ms\" is not whole seconds"),
        ] {
            let err = rewrite(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
