//! Masking that the caller may have undone: a prompt's PHI replaced with
//! numbered placeholders (`[SSN_1]`, `[EMAIL_2]`) before it leaves for a
//! model provider, and the placeholders in the model's answer turned back
//! into the values for the caller that sent them.
//!
//! Why this is safe to do: a [`Vault`] lives for one call and holds only
//! values found in that call's own prompt, which the caller sent. Restoring
//! gives the caller nothing it did not have; the provider never saw the
//! values. The answer's own PHI (what the model wrote, not a placeholder)
//! is masked before restoration, and a placeholder not in the vault stays
//! as it is.
//!
//! Equal values get one placeholder, so the model can still tell that two
//! mentions are one patient. A value that could not be put back into JSON
//! text unchanged (a quote, a backslash, a control character) or that
//! comes after [`MAX_ENTRIES`] distinct ones is masked the usual way and is
//! not restored.
//!
//! Placeholders split across streamed pieces are restored whole by a
//! [`Restorer`], which holds back a tail that could still become one (at
//! most [`MAX_PLACEHOLDER_LEN`] bytes).

use std::collections::HashMap;

use super::{DetectorKind, Masker, Scanned};

/// Distinct values one vault numbers; later ones are masked, not numbered.
pub const MAX_ENTRIES: usize = 4096;
/// The longest placeholder: `[HEALTH_PLAN_4096]` and room to spare.
pub const MAX_PLACEHOLDER_LEN: usize = 24;

/// One call's placeholders and the values they stand for.
#[derive(Default)]
pub struct Vault {
    by_value: HashMap<String, usize>,
    by_placeholder: HashMap<String, usize>,
    entries: Vec<(String, String)>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Vault")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Vault {
    pub fn new() -> Self {
        Vault::default()
    }

    /// How many distinct values are numbered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Masks `value` as [`Masker::scan`] does, except that each hit that can
    /// be restored becomes its numbered placeholder. `None` when nothing
    /// was found.
    pub fn mask(&mut self, masker: &Masker, value: &str) -> Option<Scanned> {
        masker.scan_with(
            value.as_bytes(),
            |kind, span, out| match std::str::from_utf8(span)
                .ok()
                .and_then(|v| self.number(kind, v))
            {
                Some(placeholder) => out.extend_from_slice(placeholder.as_bytes()),
                None => masker.mask_hit_into(kind, span, out),
            },
        )
    }

    /// The placeholder of `original`, numbered now if it is new; `None`
    /// for a value that cannot be restored into JSON text unchanged, or
    /// when the vault is full.
    fn number(&mut self, kind: DetectorKind, original: &str) -> Option<&str> {
        if original
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return None;
        }
        let index = match self.by_value.get(original) {
            Some(&i) => i,
            None => {
                if self.entries.len() >= MAX_ENTRIES {
                    return None;
                }
                let marker = kind.marker();
                let placeholder = format!(
                    "[{}_{}]",
                    &marker[1..marker.len() - 1],
                    self.entries.len() + 1
                );
                let i = self.entries.len();
                self.by_value.insert(original.to_string(), i);
                self.by_placeholder.insert(placeholder.clone(), i);
                self.entries.push((placeholder, original.to_string()));
                i
            }
        };
        Some(&self.entries[index].0)
    }

    /// `text` with every placeholder of this vault turned back into its
    /// value, and how many were.
    pub fn restore(&self, text: &str) -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut restored = 0;
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let candidate = &rest[open..];
            match self.placeholder_at(candidate) {
                Some((len, value)) => {
                    out.push_str(value);
                    restored += 1;
                    rest = &candidate[len..];
                }
                None => {
                    out.push('[');
                    rest = &candidate[1..];
                }
            }
        }
        out.push_str(rest);
        (out, restored)
    }

    /// The placeholder `text` begins with, if it is one of this vault's:
    /// its length and value.
    fn placeholder_at(&self, text: &str) -> Option<(usize, &str)> {
        let window = &text.as_bytes()[..text.len().min(MAX_PLACEHOLDER_LEN)];
        let close = window.iter().position(|&b| b == b']')?;
        let i = self.by_placeholder.get(&text[..=close])?;
        Some((close + 1, &self.entries[*i].1))
    }

    /// A restorer for one stream of pieces.
    pub fn restorer(&self) -> Restorer<'_> {
        Restorer {
            vault: self,
            held: String::new(),
            restored: 0,
        }
    }
}

/// Restores placeholders in text that arrives in pieces.
#[derive(Debug)]
pub struct Restorer<'v> {
    vault: &'v Vault,
    held: String,
    restored: usize,
}

impl Restorer<'_> {
    /// Takes the next piece; returns what may be released now, restored.
    pub fn push(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        let keep = unfinished_placeholder(&self.held);
        let ready: String = self.held.drain(..keep).collect();
        self.restore(&ready)
    }

    /// The stream ended: everything held, restored.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.restore(&rest)
    }

    /// Placeholders restored so far.
    pub fn restored(&self) -> usize {
        self.restored
    }

    fn restore(&mut self, text: &str) -> String {
        let (out, n) = self.vault.restore(text);
        self.restored += n;
        out
    }
}

/// Whether `text` holds something shaped like a numbered placeholder
/// (`[` upper-case letters and `_`, `_`, digits, `]`), whoever wrote it.
pub fn holds_placeholder_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(open) = b[i..].iter().position(|&c| c == b'[') {
        let start = i + open + 1;
        let mut j = start;
        while j < b.len() && (b[j].is_ascii_uppercase() || b[j] == b'_') {
            j += 1;
        }
        let letters_end = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if letters_end > start + 1
            && b[letters_end - 1] == b'_'
            && j > letters_end
            && b.get(j) == Some(&b']')
        {
            return true;
        }
        i = start;
    }
    false
}

/// Where a tail that could still grow into a placeholder begins in `text`
/// (`text.len()` if none does): from its last `[` with nothing after it
/// but upper-case letters, `_` and digits, shorter than the longest
/// placeholder.
fn unfinished_placeholder(text: &str) -> usize {
    let Some(open) = text.rfind('[') else {
        return text.len();
    };
    let tail = &text.as_bytes()[open + 1..];
    let could_grow = text.len() - open < MAX_PLACEHOLDER_LEN
        && tail
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if could_grow {
        open
    } else {
        text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::DetectorConfig;

    fn masker() -> Masker {
        Masker::new([5; 32], &DetectorConfig::default()).unwrap()
    }

    fn masked(vault: &mut Vault, text: &str) -> String {
        let s = vault.mask(&masker(), text).expect("a hit");
        String::from_utf8(s.masked).unwrap()
    }

    #[test]
    fn equal_values_share_a_placeholder_and_come_back() {
        let mut v = Vault::new();
        let text = "SSN 123-45-6789, mail jane@example.org, again 123-45-6789";
        let out = masked(&mut v, text);
        assert_eq!(out, "SSN [SSN_1], mail [EMAIL_2], again [SSN_1]");
        assert_eq!(v.len(), 2);
        let (back, n) = v.restore(&out);
        assert_eq!(back, text);
        assert_eq!(n, 3);
        // Numbering goes on across the values of one call.
        assert_eq!(masked(&mut v, "call 555-123-4567"), "call [PHONE_3]");
    }

    #[test]
    fn only_this_vaults_placeholders_are_restored() {
        let mut v = Vault::new();
        masked(&mut v, "SSN 123-45-6789");
        let (out, n) = v.restore("[SSN_2] [SSN] [ssn_1] [SSN_1 [SSN_1]]");
        assert_eq!(out, "[SSN_2] [SSN] [ssn_1] [SSN_1 123-45-6789]");
        assert_eq!(n, 1);
    }

    #[test]
    fn every_cut_of_a_stream_restores_as_the_whole_does() {
        let mut v = Vault::new();
        masked(&mut v, "a 123-45-6789 b jane@example.org c 555-123-4567");
        let answer = "Got [SSN_1] and [EMAIL_2]; [PHONE_3] [x] [SSN_9] [[PHONE_3]]";
        let (whole, n) = v.restore(answer);
        for size in 1..answer.len() {
            let mut r = v.restorer();
            let mut out = String::new();
            let mut rest = answer;
            while !rest.is_empty() {
                let cut = size.min(rest.len());
                out.push_str(&r.push(&rest[..cut]));
                rest = &rest[cut..];
            }
            out.push_str(&r.finish());
            assert_eq!(out, whole, "pieces of {size}");
            assert_eq!(r.restored(), n);
        }
    }

    #[test]
    fn placeholder_shapes_are_told_from_markers() {
        for yes in ["[SSN_1]", "x [HEALTH_PLAN_12] y", "[[EMAIL_3]]"] {
            assert!(holds_placeholder_shape(yes), "{yes}");
        }
        for no in [
            "[SSN]", "[_1]", "[SSN_]", "[ssn_1]", "[SSN_1", "SSN_1]", "", "[",
        ] {
            assert!(!holds_placeholder_shape(no), "{no}");
        }
    }

    #[test]
    fn a_held_tail_is_bounded() {
        let v = Vault::new();
        let mut r = v.restorer();
        assert_eq!(r.push("text [SSN_"), "text ");
        assert_eq!(r.push("1234567890123456789"), "[SSN_1234567890123456789");
        assert_eq!(r.push("[a"), "[a");
    }

    #[test]
    fn a_value_that_json_text_would_change_is_masked_not_numbered() {
        let mut cfg = DetectorConfig::default();
        cfg.patterns
            .insert(DetectorKind::Mrn, vec!["MRN\\\"####".to_string()]);
        let m = Masker::new([5; 32], &cfg).unwrap();
        let mut v = Vault::new();
        let s = v.mask(&m, "id MRN\"1234").unwrap();
        assert_eq!(String::from_utf8(s.masked).unwrap(), "id [MRN]");
        assert!(v.is_empty());
    }

    #[test]
    fn a_full_vault_masks_the_rest() {
        let mut v = Vault::new();
        for i in 0..MAX_ENTRIES {
            v.number(DetectorKind::Mrn, &format!("v{i}")).unwrap();
        }
        assert_eq!(masked(&mut v, "SSN 123-45-6789"), "SSN [SSN]");
        assert!(format!("{v:?}").contains("4096") && !format!("{v:?}").contains("v1"));
    }
}
