//! Masking what an MCP server answers before the agent sees it: a
//! `tools/call` result (text content, `structuredContent`, embedded
//! resources) or a `resources/read` result, by the same content detectors
//! and keyed formats as SQL results (`vigil_proxy_core::mask`), plus
//! path rules for fields a detector cannot recognise by shape
//! (`structuredContent.patients[*].name`).
//!
//! The same PHI in every form: a tool that returns structured content
//! should also return it serialized in a text block, so a path rule that
//! masked `structuredContent.patients[*].ssn` would leave the SSN in the
//! text. A text that parses as JSON is therefore masked as JSON with the
//! rules under `structuredContent` as well, and written back. Every string
//! of the result, object keys included, then goes through the detectors.
//! Binary content (images, audio, blob resources) cannot be scanned; it is
//! counted, and the adapter decides (policy: refuse or hold).

use serde_json::{Map, Value};
use vigil_proxy_core::mask::{MaskFormat, Masker};

use crate::strict_json;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `[*]`: every element of an array.
    Every,
}

/// A path rule: the value at `path` (relative to the result object) is
/// masked whole with `format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    path: Vec<Step>,
    pub format: MaskFormat,
    /// The path as written, for reports.
    pub text: String,
}

/// Why a path rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("masking path {path:?}: {problem}")]
pub struct PathError {
    pub path: String,
    pub problem: &'static str,
}

impl PathRule {
    /// `result.structuredContent.patients[*].ssn` (the `result.` prefix is
    /// optional): dotted keys, `[*]` after a key for every element.
    pub fn parse(text: &str, format: MaskFormat) -> Result<Self, PathError> {
        let err = |problem| PathError {
            path: text.to_string(),
            problem,
        };
        let rest = text.strip_prefix("result.").unwrap_or(text);
        let mut path = Vec::new();
        for part in rest.split('.') {
            let (key, every) = match part.strip_suffix("[*]") {
                Some(k) => (k, true),
                None => (part, false),
            };
            if key.is_empty() || key.contains(['[', ']', '*']) {
                return Err(err("each step is a key, optionally followed by [*]"));
            }
            path.push(Step::Key(key.to_string()));
            if every {
                path.push(Step::Every);
            }
        }
        Ok(PathRule {
            path,
            format,
            text: text.to_string(),
        })
    }

    /// The rule below its first key, if that key is `first` (for JSON text
    /// that is a serialized copy of `first`).
    fn below(&self, first: &str) -> Option<PathRule> {
        match self.path.first() {
            Some(Step::Key(k)) if k == first && self.path.len() > 1 => Some(PathRule {
                path: self.path[1..].to_vec(),
                format: self.format,
                text: self.text.clone(),
            }),
            _ => None,
        }
    }
}

/// What masking did to one result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Values replaced by path rules.
    pub by_path: usize,
    /// Detector hits replaced in strings (and keys).
    pub detector_hits: usize,
    /// Kinds the detectors found, each once.
    pub kinds: Vec<String>,
    /// Binary parts (`data` of image/audio content, `blob` of resources)
    /// that could not be scanned.
    pub unscanned_binary: usize,
}

/// Masks `result` in place.
pub fn mask_result(result: &mut Value, masker: &Masker, rules: &[PathRule]) -> Report {
    let mut report = Report::default();
    for rule in rules {
        apply_rule(result, &rule.path, rule.format, masker, &mut report);
    }
    // Serialized copies of structured content, in text blocks.
    let below: Vec<PathRule> = rules
        .iter()
        .filter_map(|r| r.below("structuredContent"))
        .collect();
    if !below.is_empty() {
        for text in text_blocks(result) {
            if let Ok(mut parsed) = strict_json::parse(text.as_bytes()) {
                let before = report.by_path;
                for rule in &below {
                    apply_rule(&mut parsed, &rule.path, rule.format, masker, &mut report);
                }
                if report.by_path != before {
                    *text = parsed.to_string();
                }
            }
        }
    }
    scan_result(result, masker, &mut report);
    report.kinds.sort();
    report.kinds.dedup();
    report
}

/// Masks every string, number and key of `value` by the detectors, with
/// no place skipped (a notification's or a request's params, an error).
pub fn mask_any(value: &mut Value, masker: &Masker) -> Report {
    let mut report = Report::default();
    scan(value, masker, &mut report);
    report.kinds.sort();
    report.kinds.dedup();
    report
}

/// The `text` strings of content blocks and resource contents.
fn text_blocks(result: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    let Some(o) = result.as_object_mut() else {
        return out;
    };
    for (list, value) in o.iter_mut() {
        let nested = match list.as_str() {
            "content" => true,
            "contents" => false,
            _ => continue,
        };
        let Value::Array(items) = value else {
            continue;
        };
        for item in items {
            // An embedded resource carries its text one level down.
            let item = if nested && item.get("type").and_then(Value::as_str) == Some("resource") {
                match item.get_mut("resource") {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                item
            };
            if let Some(Value::String(t)) = item.get_mut("text") {
                out.push(t);
            }
        }
    }
    out
}

fn apply_rule(
    value: &mut Value,
    path: &[Step],
    format: MaskFormat,
    masker: &Masker,
    report: &mut Report,
) {
    let Some((step, rest)) = path.split_first() else {
        *value = masked_whole(value, format, masker);
        report.by_path += 1;
        return;
    };
    match (step, value) {
        (Step::Key(k), Value::Object(o)) => {
            if let Some(v) = o.get_mut(k) {
                apply_rule(v, rest, format, masker, report);
            }
        }
        (Step::Every, Value::Array(items)) => {
            for v in items {
                apply_rule(v, rest, format, masker, report);
            }
        }
        _ => {}
    }
}

/// A whole value masked: a string or number by its text; anything else
/// (an object, an array) becomes the redaction marker whole.
fn masked_whole(value: &Value, format: MaskFormat, masker: &Masker) -> Value {
    let text = match value {
        Value::Null => return Value::Null,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            return Value::String(String::from_utf8_lossy(vigil_proxy_core::mask::REDACTED).into())
        }
    };
    let masked = masker.mask_value(format, text.as_bytes());
    Value::String(String::from_utf8_lossy(&masked).into_owned())
}

/// A result through the detectors. The only places left unscanned are the
/// protocol's binary payloads, where the spec puts them: the `data` of an
/// image or audio block in `content`, and a `blob` of a resource (in
/// `contents`, or embedded in a `content` block) that is not UTF-8 once
/// decoded. A `data` or `blob` anywhere else (a tool's row with such
/// columns) is a field like any other; a blob that decodes to text, whatever
/// its declared type, is decoded, scanned and encoded again.
fn scan_result(result: &mut Value, masker: &Masker, report: &mut Report) {
    let Value::Object(o) = result else {
        return scan(result, masker, report);
    };
    for (key, value) in o.iter_mut() {
        match (key.as_str(), value) {
            ("content", Value::Array(blocks)) => {
                for block in blocks {
                    scan_content_block(block, masker, report);
                }
            }
            ("contents", Value::Array(items)) => {
                for item in items {
                    scan_resource(item, masker, report);
                }
            }
            (_, v) => scan(v, masker, report),
        }
    }
    scan_keys(o, masker, report);
}

/// One content block: an image's or audio's `data` left (counted), an
/// embedded resource read as a resource, the rest scanned.
fn scan_content_block(block: &mut Value, masker: &Masker, report: &mut Report) {
    let Value::Object(o) = block else {
        return scan(block, masker, report);
    };
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for (key, value) in o.iter_mut() {
        match (kind.as_str(), key.as_str()) {
            ("image" | "audio", "data") if value.is_string() => report.unscanned_binary += 1,
            ("resource", "resource") => scan_resource(value, masker, report),
            _ => scan(value, masker, report),
        }
    }
    scan_keys(o, masker, report);
}

/// One resource's contents: a `blob` decoded and scanned when it is text,
/// left (counted) when it is not; the rest scanned.
fn scan_resource(item: &mut Value, masker: &Masker, report: &mut Report) {
    let Value::Object(o) = item else {
        return scan(item, masker, report);
    };
    for (key, value) in o.iter_mut() {
        match (key.as_str(), value) {
            ("blob", Value::String(b64)) => scan_blob(b64, masker, report),
            (_, v) => scan(v, masker, report),
        }
    }
    scan_keys(o, masker, report);
}

/// A base64 `blob`: text (UTF-8) is scanned and encoded again; anything
/// else is binary the detectors cannot read, counted.
fn scan_blob(b64: &mut String, masker: &Masker, report: &mut Report) {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    // Text: UTF-8 without NUL bytes (binary formats are rarely valid
    // UTF-8, and almost never without a NUL).
    let text = engine
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| !t.contains('\0'));
    match text {
        Some(text) => {
            if let Some(masked) = scan_text(&text, masker, report) {
                *b64 = engine.encode(masked);
            }
        }
        None => report.unscanned_binary += 1,
    }
}

/// Every string, number and key through the detectors.
fn scan(value: &mut Value, masker: &Masker, report: &mut Report) {
    match value {
        Value::String(s) => {
            if let Some(masked) = scan_text(s, masker, report) {
                *s = masked;
            }
        }
        // A number can be an identifier too (an MRN, an SSN as bigint):
        // read as its text, and a hit becomes the masked text.
        Value::Number(n) => {
            if let Some(masked) = scan_text(&n.to_string(), masker, report) {
                *value = Value::String(masked);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scan(v, masker, report)),
        Value::Object(o) => {
            for v in o.values_mut() {
                scan(v, masker, report);
            }
            scan_keys(o, masker, report);
        }
        _ => {}
    }
}

/// An object's keys through the detectors (a key can be a name or an MRN).
fn scan_keys(o: &mut Map<String, Value>, masker: &Masker, report: &mut Report) {
    if !o.keys().any(|k| masker.scan(k.as_bytes()).is_some()) {
        return;
    }
    let old = std::mem::take(o);
    for (k, v) in old {
        let mut key = scan_text(&k, masker, report).unwrap_or(k);
        // Two keys masked alike stay two keys.
        while o.contains_key(&key) {
            key.push('\'');
        }
        o.insert(key, v);
    }
}

/// `text` with the detectors' hits masked (counted in `report`), or `None`
/// when nothing was found.
fn scan_text(text: &str, masker: &Masker, report: &mut Report) -> Option<String> {
    let hit = masker.scan(text.as_bytes())?;
    report.detector_hits += hit.hits;
    report.kinds.extend(hit.kinds.iter().map(|k| k.to_string()));
    Some(String::from_utf8_lossy(&hit.masked).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_proxy_core::mask::DetectorConfig;

    fn masker() -> Masker {
        Masker::new([7; 32], &DetectorConfig::default()).unwrap()
    }

    fn rules(paths: &[&str]) -> Vec<PathRule> {
        paths
            .iter()
            .map(|p| PathRule::parse(p, MaskFormat::Redact).unwrap())
            .collect()
    }

    #[test]
    fn only_real_binary_payloads_escape_the_detectors() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut result = json!({
            "structuredContent": {"rows": [{"blob": "123-45-6789", "data": "234-56-7890"}]},
            "contents": [
                {"uri": "file:///chart.txt", "mimeType": "text/plain", "blob": b64.encode("SSN 123-45-6789")},
                {"uri": "file:///scan.png", "mimeType": "image/png", "blob": b64.encode([0x89u8, b'P', b'N', b'G', 0xff, 0xfe])}
            ]
        });
        let report = mask_result(&mut result, &masker(), &[]);
        let rows = result["structuredContent"]["rows"][0].to_string();
        assert!(
            !rows.contains("123-45-6789") && !rows.contains("234-56-7890"),
            "{rows}"
        );
        let text = b64
            .decode(result["contents"][0]["blob"].as_str().unwrap())
            .unwrap();
        assert!(!String::from_utf8(text).unwrap().contains("123-45-6789"));
        // The image is left as it is, and counted.
        assert_eq!(report.unscanned_binary, 1);
        assert_eq!(
            result["contents"][1]["blob"],
            b64.encode([0x89u8, b'P', b'N', b'G', 0xff, 0xfe])
        );
        // A row shaped like an image block is still a row.
        let mut rows = json!({"structuredContent": {"rows": [{"type": "image", "data": "123-45-6789"}, {"uri": "x", "blob": "234-56-7890"}]}});
        mask_result(&mut rows, &masker(), &[]);
        let text = rows.to_string();
        assert!(
            !text.contains("123-45-6789") && !text.contains("234-56-7890"),
            "{text}"
        );
    }

    #[test]
    fn structured_content_and_its_serialized_copy_are_masked_alike() {
        let patients = json!({"patients": [
            {"name": "Jane Roe", "ssn": "123-45-6789", "mrn": 4711},
            {"name": "John Doe", "ssn": "234-56-7890", "mrn": 4712}
        ]});
        let mut result = json!({
            "content": [{"type": "text", "text": patients.to_string()}],
            "structuredContent": patients,
        });
        let report = mask_result(
            &mut result,
            &masker(),
            &rules(&[
                "result.structuredContent.patients[*].name",
                "structuredContent.patients[*].mrn",
            ]),
        );
        let text = result.to_string();
        for leaked in ["Jane Roe", "John Doe", "4711", "123-45-6789", "234-56-7890"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(report.by_path, 8, "two fields of two patients, twice");
        assert_eq!(report.detector_hits, 4, "two SSNs, twice");
        assert_eq!(report.kinds, ["ssn"]);
        // The copy in the text is still JSON, with the same masked values.
        let copy: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(copy, result["structuredContent"]);
    }

    #[test]
    fn free_text_keys_resources_and_binary_parts() {
        let mut result = json!({
            "content": [
                {"type": "text", "text": "Call 555-123-4567 about the visit on 2024-03-05."},
                {"type": "resource", "resource": {"uri": "ehr://note/1", "text": "jane@x.org"}},
                {"type": "image", "data": "MTIzLTQ1LTY3ODk=", "mimeType": "image/png"}
            ],
            "structuredContent": {"by_ssn": {"123-45-6789": {"ok": true}}}
        });
        let report = mask_result(&mut result, &masker(), &[]);
        let text = result.to_string();
        for leaked in ["555-123-4567", "2024-03-05", "jane@x.org", "123-45-6789"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(report.unscanned_binary, 1);
        assert_eq!(
            result["content"][2]["data"], "MTIzLTQ1LTY3ODk=",
            "base64 is left for the adapter to decide on"
        );
        let mut read = json!({"contents": [{"uri": "file:///a", "blob": "AAAA"}, {"uri": "file:///b", "text": "SSN 123-45-6789"}]});
        let report = mask_result(&mut read, &masker(), &[]);
        assert_eq!(report.unscanned_binary, 1);
        assert!(!read.to_string().contains("123-45-6789"));
    }

    #[test]
    fn keys_masked_alike_stay_apart() {
        let mut v = json!({"structuredContent": {"123-45-6789": 1, "234-56-7890": 2}});
        mask_result(&mut v, &masker(), &[]);
        assert_eq!(v["structuredContent"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn bad_paths_are_refused_with_the_path() {
        for bad in ["", "a..b", "a[0]", "a.*", "[*]"] {
            let err = PathRule::parse(bad, MaskFormat::Redact).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(PathRule::parse("structuredContent.rows[*].cells[*]", MaskFormat::Hash).is_ok());
    }
}
