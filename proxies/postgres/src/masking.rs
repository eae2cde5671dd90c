//! Masking result rows on their way to the client.
//!
//! A [`RowPlan`] is built once per result (from its `RowDescription`, the
//! catalog names behind each column and the policy) and then applied to
//! every `DataRow`: a row nothing needs to change in is forwarded untouched.
//!
//! What a column gets:
//! - a column rule matches the table and column the value really comes from
//!   (not the name the query gave it): the rule's format. Text-like types
//!   (text, varchar, char, name, json, xml) get the masked text in either
//!   wire format; integers under `hash` get a keyed-hash integer of the same
//!   width (joins still work); any other type becomes NULL, because a masked
//!   string in a date or numeric column would break every driver decoding it;
//! - a date or time column of a PHI table that no rule names: redacted
//!   (NULL), whatever its name (`phi_dates`);
//! - no rule, masking on and the column is text-like: the content detectors
//!   replace the PHI-shaped parts of the value;
//! - the column comes from a table the catalog could not name: fail closed,
//!   as if a `redact` rule matched;
//! - a computed column, or a view's: the statement's lineage names the
//!   table columns it is computed from (see `vigil_sql::lineage`),
//!   and it takes their rules ([`computed_action`]); computed from no column
//!   at all (`now()`), it is left alone; of unknown lineage, redacted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use vigil_proto::events::MaskedField;
use vigil_proxy_core::mask::{MaskFormat, Masker};
use vigil_sql::lineage::{Lineage, Outputs};
use vigil_sql::policy::{ColumnTreatment, Policy};

use crate::catalog::TableInfo;
use crate::codec::CodecError;
use crate::results::{self, Field};

mod oid {
    pub const BOOL_CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const JSONB: u32 = 3802;
}

/// Types whose value, in text *and* binary format, is the text itself
/// (jsonb's binary form adds a one-byte version first).
fn is_text_like(type_oid: u32) -> bool {
    matches!(
        type_oid,
        oid::BOOL_CHAR
            | oid::NAME
            | oid::TEXT
            | oid::JSON
            | oid::XML
            | oid::UNKNOWN
            | oid::BPCHAR
            | oid::VARCHAR
            | oid::JSONB
    )
}

/// Numbers and booleans: no detector shape fits them (bare digit runs are
/// not flagged by default), so computed ones need no scan.
fn is_plain_number(type_oid: u32) -> bool {
    matches!(type_oid, 16 | 20 | 21 | 23 | 26 | 700 | 701 | 1700)
}

/// The text part of a text-like value: jsonb's binary form starts with a
/// version byte that must survive masking.
fn text_offset(field: &Field) -> usize {
    usize::from(field.type_oid == oid::JSONB && field.format == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    /// Content detectors over the text (from this byte offset).
    Scan {
        offset: usize,
    },
    /// A computed value of a type that cannot carry a masked string (an
    /// array, a record, a date, ...): scanned as it is sent, and NULL if a
    /// detector fires (`SELECT ARRAY[ssn]`, `ROW(mrn, dob)`, `dob + 0`).
    ScanOrNull,
    /// A column rule on a text-like value.
    Text {
        format: MaskFormat,
        offset: usize,
    },
    /// A column rule `hash` on an integer column.
    HashInt {
        width: usize,
        binary: bool,
    },
    /// A column rule on a type that cannot carry a masked string.
    Null,
}

/// How every column of one result is masked, and what was masked so far.
pub struct RowPlan {
    actions: Vec<Action>,
    report: Vec<MaskedField>,
    masker: Arc<Masker>,
}

impl RowPlan {
    /// `tables` names the tables behind the result's columns (a table OID
    /// missing from it could not be looked up); `lineage` says what each
    /// column of the statement is computed from.
    pub fn build(
        fields: &[Field],
        tables: &HashMap<u32, Arc<TableInfo>>,
        lineage: &Outputs,
        policy: &Policy,
        masker: Arc<Masker>,
    ) -> Self {
        let lineage = lineage_per_field(fields, tables, lineage);
        let scan_all = policy.masking().scan_all_results;
        let mut actions = Vec::with_capacity(fields.len());
        let mut report = Vec::new();
        for (field, lineage) in fields.iter().zip(lineage) {
            let (action, source, method) = match origin(field, tables) {
                Origin::Column(info, col) => {
                    let type_oid = info.types.get(&field.column).copied().unwrap_or(0);
                    column_action(
                        field,
                        &info.schema,
                        &info.table,
                        col,
                        type_oid,
                        policy,
                        scan_all,
                    )
                }
                Origin::Unknown => (
                    rule_action(field, MaskFormat::Redact),
                    "unknown".into(),
                    String::new(),
                ),
                Origin::Computed => computed_action(field, &lineage, policy, scan_all),
            };
            if action != Action::Keep {
                report.push(MaskedField {
                    field: field.name.clone(),
                    source,
                    method: match action {
                        Action::Scan { .. } => "detectors".into(),
                        Action::ScanOrNull => "detectors (as NULL)".into(),
                        Action::Null if method.is_empty() => "redact (as NULL)".into(),
                        Action::Null => format!("{method} (as NULL)"),
                        _ if method.is_empty() => "redact".into(),
                        _ => method,
                    },
                    values_masked: 0,
                    detector_hits: BTreeMap::new(),
                });
            }
            actions.push(action);
        }
        Self {
            actions,
            report,
            masker,
        }
    }

    /// Nothing in this result can change.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|a| *a == Action::Keep)
    }

    /// Masks one `DataRow` body; `None` when the row goes out unchanged.
    pub fn apply(&mut self, body: &[u8]) -> Result<Option<Bytes>, CodecError> {
        if self.is_noop() {
            return Ok(None);
        }
        let values = results::data_row_values(body)?;
        let mut replaced: Vec<Option<Option<Vec<u8>>>> = vec![None; values.len()];
        let mut changed = false;
        let mut report_at = 0usize;
        for (i, value) in values.iter().enumerate() {
            let action = self.actions.get(i).copied().unwrap_or(Action::Keep);
            if action == Action::Keep {
                continue;
            }
            let report = &mut self.report[report_at];
            report_at += 1;
            let Some(range) = value.clone() else { continue };
            let v = &body[range];
            let new = match action {
                Action::Keep => None,
                Action::Scan { offset } => {
                    let (head, text) = v.split_at(offset.min(v.len()));
                    self.masker.scan(text).map(|hit| {
                        for kind in &hit.kinds {
                            *report
                                .detector_hits
                                .entry(kind.as_str().to_string())
                                .or_insert(0) += 1;
                        }
                        let mut out = head.to_vec();
                        out.extend_from_slice(&hit.masked);
                        Some(out)
                    })
                }
                Action::Text { format, offset } => {
                    let (head, text) = v.split_at(offset.min(v.len()));
                    let mut out = head.to_vec();
                    out.extend_from_slice(&self.masker.mask_value(format, text));
                    Some(Some(out))
                }
                Action::ScanOrNull => self.masker.scan(v).map(|hit| {
                    for kind in &hit.kinds {
                        *report
                            .detector_hits
                            .entry(kind.as_str().to_string())
                            .or_insert(0) += 1;
                    }
                    None
                }),
                Action::HashInt { width, binary } => Some(hash_int(&self.masker, v, width, binary)),
                Action::Null => Some(None),
            };
            if let Some(new) = new {
                report.values_masked += 1;
                replaced[i] = Some(new);
                changed = true;
            }
        }
        if !changed {
            return Ok(None);
        }
        let row = results::data_row(values.iter().zip(replaced.iter()).map(
            |(orig, new)| match new {
                Some(new) => new.as_deref(),
                None => orig.clone().map(|r| &body[r]),
            },
        ));
        Ok(Some(row))
    }

    /// What was masked in this result, for its Response event.
    pub fn take_report(&mut self) -> Vec<MaskedField> {
        let report: Vec<MaskedField> = self
            .report
            .iter_mut()
            .map(|r| {
                let out = r.clone();
                r.values_masked = 0;
                r.detector_hits.clear();
                out
            })
            .collect();
        report.into_iter().filter(|r| r.values_masked > 0).collect()
    }
}

enum Origin<'a> {
    /// A plain column of a table (not a view), named by the catalog.
    Column(&'a TableInfo, &'a str),
    /// A table column the catalog could not name.
    Unknown,
    /// An expression, or a column of a view: lineage says where it is from.
    Computed,
}

fn origin<'a>(field: &Field, tables: &'a HashMap<u32, Arc<TableInfo>>) -> Origin<'a> {
    if field.table_oid == 0 {
        return Origin::Computed;
    }
    match tables.get(&field.table_oid) {
        Some(info) if info.is_view => Origin::Computed,
        Some(info) => match info.columns.get(&field.column) {
            Some(col) => Origin::Column(info, col),
            None => Origin::Unknown,
        },
        None => Origin::Unknown,
    }
}

/// A table column's value, under its own name or another: the policy's
/// treatment of the column. Returns the action, the source and the method
/// for the report.
fn column_action(
    field: &Field,
    schema: &str,
    table: &str,
    column: &str,
    type_oid: u32,
    policy: &Policy,
    scan_all: bool,
) -> (Action, String, String) {
    let source = format!("{schema}.{table}.{column}");
    match policy.column_treatment(schema, table, column, is_date_type(type_oid)) {
        ColumnTreatment::Masked(format) => {
            (rule_action(field, format), source, method_name(format))
        }
        ColumnTreatment::PhiDate => (
            rule_action(field, MaskFormat::Redact),
            source,
            "redact (a date of a PHI table)".into(),
        ),
        ColumnTreatment::Unmasked if scan_all && is_text_like(field.type_oid) => (
            Action::Scan {
                offset: text_offset(field),
            },
            source,
            String::new(),
        ),
        ColumnTreatment::Unmasked => (Action::Keep, source, String::new()),
    }
}

/// The lineage of each field. Statement lineage is paired with the result
/// by position; if the count differs, a name lineage is sure of differs
/// from the result's, or a plain table column is not among the sources
/// lineage gives its position, the pairing is wrong (another statement's
/// result) and every field's lineage is unknown.
fn lineage_per_field(
    fields: &[Field],
    tables: &HashMap<u32, Arc<TableInfo>>,
    lineage: &Outputs,
) -> Vec<Lineage> {
    let unknown = || vec![Lineage::Unknown; fields.len()];
    let columns = match lineage {
        Outputs::Columns(c) if c.len() == fields.len() => c,
        Outputs::FromNothing { column }
            if fields.len() == 1 && fields[0].name.eq_ignore_ascii_case(column) =>
        {
            return vec![Lineage::none()];
        }
        _ => return unknown(),
    };
    for (field, (l, name)) in fields.iter().zip(columns) {
        // PostgreSQL cuts names at 63 bytes.
        if name
            .as_ref()
            .is_some_and(|n| n.len() < 64 && *n != field.name)
        {
            return unknown();
        }
        if let (Origin::Column(info, col), Some(sources)) = (origin(field, tables), l.sources()) {
            let agrees = sources
                .iter()
                .any(|s| s.schema == info.schema && s.table == info.table && s.column == col);
            if !agrees {
                return unknown();
            }
        }
    }
    columns.iter().map(|(l, _)| l.clone()).collect()
}

/// A computed value (or a view's column) takes the rule of the columns it
/// is computed from: `hash` stays a keyed hash when every masked source is
/// hashed (equal inputs still give equal tokens), anything else is
/// redacted, because the last four characters of a transformed value are
/// not the last four of the value (`reverse(ssn)`). A value computed from
/// no masked column is scanned as before; one computed from nothing is left
/// alone; one whose lineage is unknown is redacted.
fn computed_action(
    field: &Field,
    lineage: &Lineage,
    policy: &Policy,
    scan_all: bool,
) -> (Action, String, String) {
    let sources = match lineage {
        // A column under another name (a view's, an alias): its own rule,
        // whole, as if it were the column itself.
        Lineage::Copy(s) => {
            return column_action(
                field, &s.schema, &s.table, &s.column, s.type_oid, policy, scan_all,
            )
        }
        Lineage::Unknown => {
            return (
                rule_action(field, MaskFormat::Redact),
                "computed (lineage unknown)".into(),
                "redact".into(),
            )
        }
        Lineage::Known(s) if s.is_empty() => return (Action::Keep, String::new(), String::new()),
        Lineage::Known(s) => s,
    };
    let mut formats = Vec::new();
    for s in sources {
        match policy.column_treatment(&s.schema, &s.table, &s.column, is_date_type(s.type_oid)) {
            ColumnTreatment::Masked(f) => formats.push(f),
            ColumnTreatment::PhiDate => formats.push(MaskFormat::Redact),
            ColumnTreatment::Unmasked => {}
        }
    }
    let mut named: Vec<String> = sources
        .iter()
        .take(8)
        .map(|s| format!("{}.{}.{}", s.schema, s.table, s.column))
        .collect();
    if sources.len() > 8 {
        named.push("...".into());
    }
    let source = format!("computed from {}", named.join(", "));
    if formats.is_empty() {
        let action = if scan_all && is_text_like(field.type_oid) {
            Action::Scan {
                offset: text_offset(field),
            }
        } else if scan_all && !is_plain_number(field.type_oid) {
            Action::ScanOrNull
        } else {
            Action::Keep
        };
        return (action, source, String::new());
    }
    let format = if formats.iter().all(|f| *f == MaskFormat::Hash) {
        MaskFormat::Hash
    } else {
        MaskFormat::Redact
    };
    (rule_action(field, format), source, method_name(format))
}

fn method_name(f: MaskFormat) -> String {
    format_name(f).to_string()
}

fn rule_action(field: &Field, format: MaskFormat) -> Action {
    if is_text_like(field.type_oid) {
        return Action::Text {
            format,
            offset: text_offset(field),
        };
    }
    let width = match field.type_oid {
        oid::INT2 => Some(2),
        oid::INT4 => Some(4),
        oid::INT8 => Some(8),
        _ => None,
    };
    match (format, width) {
        (MaskFormat::Hash, Some(width)) => Action::HashInt {
            width,
            binary: field.format == 1,
        },
        _ => Action::Null,
    }
}

fn format_name(f: MaskFormat) -> &'static str {
    match f {
        MaskFormat::Redact => "redact",
        MaskFormat::Partial => "partial",
        MaskFormat::Hash => "hash",
    }
}

/// A keyed hash of an integer, kept in the column's range and wire format.
/// A value that does not decode becomes NULL (never passed through).
fn hash_int(masker: &Masker, v: &[u8], width: usize, binary: bool) -> Option<Vec<u8>> {
    let n: i64 = if binary {
        match v.len() {
            2 => i16::from_be_bytes([v[0], v[1]]).into(),
            4 => i32::from_be_bytes([v[0], v[1], v[2], v[3]]).into(),
            8 => i64::from_be_bytes(v.try_into().ok()?),
            _ => return None,
        }
    } else {
        std::str::from_utf8(v).ok()?.trim().parse().ok()?
    };
    let h = masker.hash_i64(n);
    let h = match width {
        2 => i64::from(h as i16),
        4 => i64::from(h as i32),
        _ => h,
    };
    Some(if binary {
        match width {
            2 => (h as i16).to_be_bytes().to_vec(),
            4 => (h as i32).to_be_bytes().to_vec(),
            _ => h.to_be_bytes().to_vec(),
        }
    } else {
        h.to_string().into_bytes()
    })
}

/// Masks one textual `CopyData` line with the content detectors: COPY output
/// carries no column origins, so column rules cannot follow it (the shipped
/// policy holds COPY out for review). Replacements never contain tabs,
/// commas, quotes or backslashes, so text and CSV framing survive.
pub fn mask_copy_line(masker: &Masker, payload: &[u8], report: &mut MaskedField) -> Option<Bytes> {
    let hit = masker.scan(payload)?;
    report.values_masked += 1;
    for kind in &hit.kinds {
        *report
            .detector_hits
            .entry(kind.as_str().to_string())
            .or_insert(0) += 1;
    }
    Some(results::copy_data(&hit.masked))
}

/// PostgreSQL's date and time types (and their arrays): `date`,
/// `timestamp`, `timestamptz`: what the policy's `phi_dates` masks.
fn is_date_type(type_oid: u32) -> bool {
    matches!(type_oid, 1082 | 1114 | 1184 | 1182 | 1115 | 1185)
}
