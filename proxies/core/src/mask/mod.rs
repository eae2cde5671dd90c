//! Result masking: what an agent sees instead of PHI.
//!
//! The proxy's relay calls a [`Masker`] on the values of result rows before
//! they leave for the agent, in two ways:
//!
//! - **column rules**: a whole value of a column the policy names (the
//!   `ssn` column, the `dob` column) is replaced with [`Masker::mask_value`];
//! - **content detectors**: free-text values are searched with
//!   [`Masker::scan`] for identifiers with a recognisable shape (an SSN in a
//!   clinical note), and only those spans are replaced.
//!
//! Everything here is pure and synchronous: bytes in, bytes out, no I/O.
//!
//! # Formats ([`MaskFormat`])
//!
//! - `redact`: a whole value becomes `[REDACTED]`; a detector hit inside a
//!   text becomes a marker naming what was there (`[SSN]`, `[EMAIL]`,
//!   `[DATE]`, ..., see [`DetectorKind::marker`]), so a reader of "call
//!   [PHONE] after [DATE]" still understands the note.
//! - `partial`: the last four characters stay; before them every letter or
//!   digit becomes `*` and every other character stays, so the value keeps
//!   its shape: `123-45-6789` -> `***-**-6789`, `(555) 123-4567` ->
//!   `(***) ***-4567`, `jane@x.org` -> `****@*.org` (the same rule for every
//!   kind, emails included: no special cases to reason about). A value of
//!   four characters or fewer becomes all `*`, and so do all letters and
//!   digits of a value that has no more than four of them (`::4B4B` ->
//!   `::****`). Characters are Unicode scalar values, so UTF-8 stays UTF-8.
//! - `hash`: `h:` and 16 hex characters, the first 64 bits of
//!   HMAC-SHA256(key, value). Deterministic under one key, so equal inputs
//!   give equal outputs and joins, `GROUP BY` and `DISTINCT` still work;
//!   keyed, so nobody without the key can hash all 10^9 SSNs and look the
//!   token up. Among n distinct values, the chance that any two share a token
//!   is about n^2 / 2^65 (3 * 10^-8 for a million values). Integer columns use
//!   [`Masker::hash_i64`] / [`Masker::hash_i32`], which stay integers.
//!
//! # Detectors ([`DetectorKind`])
//!
//! The HIPAA Safe Harbor identifiers that have a shape one can recognise
//! (names, for instance, have none: they need column rules):
//!
//! | kind | matches |
//! |---|---|
//! | `ssn` | `123-45-6789`, `123 45 6789`; never-issued numbers (area 000, 666, 9xx; group 00; serial 0000) excluded; nine bare digits only with `bare_ssn` |
//! | `phone` | US: `(555) 123-4567`, `(555)123-4567`, `555-123-4567`, `555.123.4567`, `555 123 4567`, `+1 555 123 4567`, `1-555-123-4567`, `+15551234567` (fax numbers look the same) |
//! | `email` | `local@domain.tld` (TLD of two or more letters) |
//! | `date` | anything more precise than a year: `2023-04-05` (with time and zone: masked whole), `04/05/2023`, `4/5/23`, `05.04.2023`, `04-05-2023`, `5 April 2023`, `5th of April`, `05-Apr-2023`, `05APR2023`, `April 5, 2023`, `Apr. 5th 2023`, `April 5`, `April 2023`; `YYYYMMDD` only with `compact_dates`. A bare year stays. |
//! | `street_address` | house number, 1-4 words, a street suffix (Street/St, Avenue/Ave, Road/Rd, Boulevard/Blvd, Lane/Ln, Drive/Dr, Court/Ct, Way, Place/Pl, Terrace, Circle, Highway/Hwy, Parkway), optional directional and unit (`Apt 4B`, `Suite 200`, `#12`) |
//! | `zip` | ZIP+4 `62704-1234` anywhere; `62704` (or nine digits) after a state code (`IL 62704`) or a ZIP word (`ZIP: 62704`, `zip code 62704`) |
//! | `ip_address` | IPv4 (octets 0-255); IPv6 full, compressed and IPv4-mapped |
//! | `url` | `http://`, `https://`, `ftp://`, `ftps://`, `sftp://`, `www.` |
//! | `vehicle` | VIN: 17 upper-case letters and digits without I, O, Q (check digit verified with `vin_check_digit`), plus patterns (licence plates) |
//! | `mrn`, `health_plan`, `account`, `license`, `certificate`, `device` | the operator's [patterns](pattern) only: their shape is organisation-specific |
//!
//! Every kind also accepts extra patterns. Hits sit on word boundaries: not
//! inside a longer run of letters, digits and `_` (`order_12345`,
//! `abc123-45-6789` stay), and a numeric hit does not continue with `-` or
//! `.` and a digit (`1.2.3.4.5`, `123-45-6789-01` stay). Hits never overlap:
//! the earliest start wins, then the longest, then the operator's patterns.
//! How the scanner stays fast is told in `detect.rs`.
//!
//! # Configuration
//!
//! ```toml
//! kinds = ["ssn", "phone", "email", "date", "mrn"]   # default: all
//! bare_ssn = false          # nine bare digits are SSNs too
//! compact_dates = false     # YYYYMMDD is a date too
//! vin_check_digit = false   # VINs must carry a valid check digit
//! format = "redact"         # for detector hits: redact | partial | hash
//!
//! [patterns]
//! mrn = ["MRN-#######", "##-####-##"]
//! health_plan = ["HP\\A##########"]
//! ```
//!
//! # Known limits
//!
//! False negatives (PHI that stays): phone numbers outside the North
//! American plan and seven-digit local numbers; SSNs written with dots or
//! without separators (unless `bare_ssn`); dates without a year in numeric
//! form (`12/25`), year-month (`2023-04`), compact `20230405` (unless
//! `compact_dates`); lower-case month abbreviations (`dec 5`) and lower-case
//! "may"; addresses in mixed case ("123 main St"), with more than four words
//! before the suffix, with suffixes not listed, "St."/"Dr." followed by a
//! capitalised name ("12 Main St. Springfield"); ZIP codes after a full state
//! name; URLs without scheme or `www.`; IPv6 addresses without any digit
//! (`dead::beef`); lower-case VINs; e-mail addresses with non-ASCII
//! characters or quoted local parts; anything glued to a word (`SSN123-45-6789`);
//! ages over 89 and names (no shape: use column rules).
//!
//! False positives (masked though not PHI): four-part version numbers with
//! small parts (`1.2.3.4` reads as an IP address); `12.10.2023`-like
//! versions; any `NNN-NNN-NNNN`; any `NNNNN-NNNN`; title-case prose with a
//! number before a suffix word ("2 Weeks With Dr Jones"); upper-case prose
//! with a state code before five digits ("LOGGED IN 12345"); 17-character
//! upper-case codes without I/O/Q (unless `vin_check_digit`); a small number
//! before a month name ("take 2 May" reads as a date).
//!
//! Masked output, scanned again, finds nothing new: markers, hash tokens and
//! partial output do not match any built-in shape, and what follows a hit is
//! judged as if the hit were already masked. (An operator pattern short
//! enough to fit in the four characters `partial` keeps, such as `####`, can
//! match those again.)

mod detect;
mod format;
pub mod pattern;
pub mod stream;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use detect::Hits;
pub use format::{HASH_HEX_LEN, HASH_PREFIX, PARTIAL_KEEP, REDACTED};
pub use pattern::{Pattern, PatternError, MAX_PATTERN_LEN};
pub use stream::StreamMasker;
pub use vault::{Restorer, Vault};

use detect::Detectors;
use format::HmacSha256;

/// How a value (or a detector hit) is masked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskFormat {
    /// `[REDACTED]` for a whole value, `[KIND]` for a detector hit.
    #[default]
    Redact,
    /// Keep the last four characters, star the letters and digits before them.
    Partial,
    /// Keyed deterministic token `h:` + 16 hex characters.
    Hash,
}

/// What a content detector found. The order here is the order of
/// [`Scanned::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DetectorKind {
    Ssn,
    Phone,
    Email,
    Date,
    StreetAddress,
    Zip,
    IpAddress,
    Url,
    Mrn,
    HealthPlan,
    Account,
    License,
    Certificate,
    Vehicle,
    Device,
}

impl DetectorKind {
    /// Every kind, in order.
    pub const ALL: [DetectorKind; 15] = [
        DetectorKind::Ssn,
        DetectorKind::Phone,
        DetectorKind::Email,
        DetectorKind::Date,
        DetectorKind::StreetAddress,
        DetectorKind::Zip,
        DetectorKind::IpAddress,
        DetectorKind::Url,
        DetectorKind::Mrn,
        DetectorKind::HealthPlan,
        DetectorKind::Account,
        DetectorKind::License,
        DetectorKind::Certificate,
        DetectorKind::Vehicle,
        DetectorKind::Device,
    ];

    /// The name used in configs and events (`street_address`).
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Ssn => "ssn",
            DetectorKind::Phone => "phone",
            DetectorKind::Email => "email",
            DetectorKind::Date => "date",
            DetectorKind::StreetAddress => "street_address",
            DetectorKind::Zip => "zip",
            DetectorKind::IpAddress => "ip_address",
            DetectorKind::Url => "url",
            DetectorKind::Mrn => "mrn",
            DetectorKind::HealthPlan => "health_plan",
            DetectorKind::Account => "account",
            DetectorKind::License => "license",
            DetectorKind::Certificate => "certificate",
            DetectorKind::Vehicle => "vehicle",
            DetectorKind::Device => "device",
        }
    }

    /// What a redacted hit of this kind becomes (`[SSN]`).
    pub fn marker(self) -> &'static str {
        match self {
            DetectorKind::Ssn => "[SSN]",
            DetectorKind::Phone => "[PHONE]",
            DetectorKind::Email => "[EMAIL]",
            DetectorKind::Date => "[DATE]",
            DetectorKind::StreetAddress => "[ADDRESS]",
            DetectorKind::Zip => "[ZIP]",
            DetectorKind::IpAddress => "[IP]",
            DetectorKind::Url => "[URL]",
            DetectorKind::Mrn => "[MRN]",
            DetectorKind::HealthPlan => "[HEALTH_PLAN]",
            DetectorKind::Account => "[ACCOUNT]",
            DetectorKind::License => "[LICENSE]",
            DetectorKind::Certificate => "[CERTIFICATE]",
            DetectorKind::Vehicle => "[VEHICLE]",
            DetectorKind::Device => "[DEVICE]",
        }
    }

    /// Kinds with no built-in shape: they find only what patterns describe.
    pub fn is_pattern_only(self) -> bool {
        matches!(
            self,
            DetectorKind::Mrn
                | DetectorKind::HealthPlan
                | DetectorKind::Account
                | DetectorKind::License
                | DetectorKind::Certificate
                | DetectorKind::Device
        )
    }

    #[inline]
    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which content detectors run, and how their hits are masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// The kinds that are on. Default: all of them (the pattern-only kinds
    /// find nothing until they are given patterns).
    pub kinds: BTreeSet<DetectorKind>,
    /// Treat nine bare digits as an SSN. Off by default: result data is full
    /// of nine-digit ids, amounts and counters, and masking all of them would
    /// destroy the data, while the separators are what make an SSN
    /// recognisable in free text.
    pub bare_ssn: bool,
    /// Treat eight bare digits forming a valid `YYYYMMDD` (1900-2099) as a
    /// date. Off by default: HL7 data has them, most data has more
    /// eight-digit ids than dates.
    pub compact_dates: bool,
    /// Require a valid ISO 3779 check digit in a VIN (North American VINs
    /// have one; others need not, so off by default).
    pub vin_check_digit: bool,
    /// Patterns per kind, in the [pattern language](pattern).
    pub patterns: BTreeMap<DetectorKind, Vec<String>>,
    /// How detector hits are masked.
    pub format: MaskFormat,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            kinds: DetectorKind::ALL.into_iter().collect(),
            bare_ssn: false,
            compact_dates: false,
            vin_check_digit: false,
            patterns: BTreeMap::new(),
            format: MaskFormat::Redact,
        }
    }
}

/// Why a [`DetectorConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskConfigError {
    #[error("masking pattern {pattern:?} for `{kind}` is invalid: {reason}")]
    BadPattern {
        kind: DetectorKind,
        pattern: String,
        reason: PatternError,
    },
    #[error(
        "masking patterns are given for `{0}`, but `{0}` is not among the enabled detector kinds"
    )]
    PatternsForDisabledKind(DetectorKind),
}

/// One detector hit: `value[start..end]` is a `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub kind: DetectorKind,
    pub start: usize,
    pub end: usize,
}

/// What [`Masker::scan`] found and made of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// The value with every hit replaced.
    pub masked: Vec<u8>,
    /// The kinds found, each once, in [`DetectorKind`] order.
    pub kinds: Vec<DetectorKind>,
    /// How many spans were replaced.
    pub hits: usize,
}

/// Masks values: holds the hash key and the compiled detectors. Cheap to
/// share (`&Masker` is all a relay needs; it is `Send + Sync`).
#[derive(Clone)]
pub struct Masker {
    mac: HmacSha256,
    detectors: Detectors,
    hit_format: MaskFormat,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Masker")
            .field("detectors", &self.detectors)
            .field("hit_format", &self.hit_format)
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// Build a masker. `key` is the 32-byte secret of the `hash` format; a
    /// bad pattern is refused with an error naming it and its kind.
    pub fn new(key: [u8; 32], detectors: &DetectorConfig) -> Result<Masker, MaskConfigError> {
        let mut on = 0u32;
        for k in &detectors.kinds {
            on |= k.bit();
        }
        let mut patterns = Vec::new();
        for (&kind, list) in &detectors.patterns {
            if list.is_empty() {
                continue;
            }
            if on & kind.bit() == 0 {
                return Err(MaskConfigError::PatternsForDisabledKind(kind));
            }
            for src in list {
                let p = Pattern::parse(src).map_err(|reason| MaskConfigError::BadPattern {
                    kind,
                    pattern: src.clone(),
                    reason,
                })?;
                patterns.push((kind, p));
            }
        }
        Ok(Masker {
            mac: format::keyed(&key),
            detectors: Detectors::new(
                on,
                detectors.bare_ssn,
                detectors.compact_dates,
                detectors.vin_check_digit,
                patterns,
            ),
            hit_format: detectors.format,
        })
    }

    /// The format detector hits are masked with.
    pub fn hit_format(&self) -> MaskFormat {
        self.hit_format
    }

    /// Mask a whole value (a column rule hit): the replacement bytes.
    pub fn mask_value(&self, format: MaskFormat, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len().max(18));
        self.mask_value_into(format, value, &mut out);
        out
    }

    /// [`Masker::mask_value`], appending to `out`.
    pub fn mask_value_into(&self, format: MaskFormat, value: &[u8], out: &mut Vec<u8>) {
        match format {
            MaskFormat::Redact => out.extend_from_slice(REDACTED),
            MaskFormat::Partial => format::partial_into(value, out),
            MaskFormat::Hash => format::hash_token_into(&self.mac, value, out),
        }
    }

    /// Run the content detectors over a text value. `None` when nothing was
    /// found, without allocating (the common case); otherwise the masked
    /// value and what was found. Never panics, whatever the bytes (non-UTF-8
    /// input is scanned as bytes).
    #[inline]
    pub fn scan(&self, value: &[u8]) -> Option<Scanned> {
        // The prefilter, inlined into the caller: most values have no
        // digit, '@', ':' or "www." and leave here.
        let from = detect::first_trigger(value)?;
        self.scan_from(value, from)
    }

    fn scan_from(&self, value: &[u8], from: usize) -> Option<Scanned> {
        self.replace_hits(value, from, |kind, span, out| {
            self.mask_hit_into(kind, span, out)
        })
    }

    /// As [`Masker::scan`], with each hit (its kind and bytes) replaced by
    /// what `replace` appends: a vault's numbered placeholders, say.
    pub fn scan_with(
        &self,
        value: &[u8],
        replace: impl FnMut(DetectorKind, &[u8], &mut Vec<u8>),
    ) -> Option<Scanned> {
        let from = detect::first_trigger(value)?;
        self.replace_hits(value, from, replace)
    }

    fn replace_hits(
        &self,
        value: &[u8],
        from: usize,
        mut replace: impl FnMut(DetectorKind, &[u8], &mut Vec<u8>),
    ) -> Option<Scanned> {
        let mut hits = Hits::from_trigger(&self.detectors, value, from);
        let first = hits.next()?;
        let mut out = Vec::with_capacity(value.len() + 16);
        let mut kinds = 0u32;
        let mut count = 0;
        let mut copied = 0;
        for h in std::iter::once(first).chain(hits) {
            out.extend_from_slice(&value[copied..h.start]);
            replace(h.kind, &value[h.start..h.end], &mut out);
            copied = h.end;
            kinds |= h.kind.bit();
            count += 1;
        }
        out.extend_from_slice(&value[copied..]);
        Some(Scanned {
            masked: out,
            kinds: DetectorKind::ALL
                .into_iter()
                .filter(|k| kinds & k.bit() != 0)
                .collect(),
            hits: count,
        })
    }

    /// What a detector hit (`span`, found as `kind`) becomes, appended to
    /// `out`.
    pub fn mask_hit_into(&self, kind: DetectorKind, span: &[u8], out: &mut Vec<u8>) {
        match self.hit_format {
            MaskFormat::Redact => out.extend_from_slice(kind.marker().as_bytes()),
            MaskFormat::Partial => format::partial_into(span, out),
            MaskFormat::Hash => format::hash_token_into(&self.mac, span, out),
        }
    }

    /// The hits in a value, left to right, without masking anything.
    pub fn find_iter<'a>(&'a self, value: &'a [u8]) -> Hits<'a, 'a> {
        Hits::new(&self.detectors, value)
    }

    /// Keyed, deterministic hash of an integer id into a non-negative `i64`
    /// (63 bits of HMAC-SHA256 over a domain tag and the 8 big-endian bytes),
    /// so masked ids still join. About n^2 / 2^64 chance of any collision
    /// among n distinct ids.
    pub fn hash_i64(&self, v: i64) -> i64 {
        format::hash_i64(&self.mac, v)
    }

    /// As [`Masker::hash_i64`], for `int4` columns: 31 bits, non-negative.
    /// Collisions come much sooner (about n^2 / 2^32 among n distinct ids);
    /// `hash_i32(v) == hash_i64(v) >> 32` for the same key.
    pub fn hash_i32(&self, v: i32) -> i32 {
        format::hash_i32(&self.mac, i64::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masker_is_send_sync_and_debug_hides_the_key() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Masker>();
        let m = Masker::new([0xab; 32], &DetectorConfig::default()).unwrap();
        let dbg = format!("{m:?}");
        assert!(!dbg.contains("ab, ab") && !dbg.contains("171"), "{dbg}");
    }

    #[test]
    fn hash_i32_is_the_top_of_hash_i64() {
        let m = Masker::new([7; 32], &DetectorConfig::default()).unwrap();
        for v in [0i32, 1, -1, 42, i32::MAX, i32::MIN] {
            assert_eq!(i64::from(m.hash_i32(v)), m.hash_i64(i64::from(v)) >> 32);
            assert!(m.hash_i32(v) >= 0);
        }
    }
}
