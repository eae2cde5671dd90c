//! The SQL family of policy conditions: what a rule may say about a
//! classified statement, and the sections a SQL policy file adds (PHI
//! tables, column masking rules). The engine (first match, strictest,
//! review settings, limits) is `vigil_proxy_core::policy`.
//!
//! Fail closed: a statement the classifier could not parse or classify, or
//! an SQL-level `EXECUTE` of a name this session never `PREPARE`d, gets the
//! strictest outcome of every rule that *could* apply to this identity and
//! connection, whatever the statement would have matched.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use vigil_proxy_core::mask::MaskFormat;
use vigil_proxy_core::policy::{
    combine, name_matches, Family, Lenience, Limits, Masking, PolicyEngine, Rule,
};

use crate::classify::{Classification, StatementClass};
use crate::lineage::MessageShapes;

pub use vigil_proxy_core::policy::{
    stricter, Asker, Outcome, PolicyError, ReviewSettings, FAIL_CLOSED_RULE, ROW_LIMIT_RULE,
};

/// A verdict on a SQL message: it carries the lineage of the statements'
/// result columns.
pub type Verdict = vigil_proxy_core::policy::Verdict<MessageShapes>;

/// The SQL protocol family (PostgreSQL today; MySQL shares it through the
/// [`Dialect`] seam).
#[derive(Clone, Copy, Debug)]
pub struct Sql;

/// The conditions a SQL rule may carry: all must hold; a list holds if any
/// entry matches.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConditions {
    /// Statement kind tags (see `classify`), e.g. "drop", "destructive", "copy_out".
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Tables read or written.
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub reads: Vec<String>,
    #[serde(default)]
    pub writes: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    /// Holds for a read without WHERE and without a constant LIMIT.
    #[serde(default)]
    pub unbounded_read: Option<bool>,
    /// Holds for a statement reading a table that has masked columns.
    #[serde(default)]
    pub reads_phi: Option<bool>,
    /// Holds for a statement that moves a masked column's values where its
    /// column rule no longer follows them: a write (INSERT ... SELECT,
    /// UPDATE ... SET, CREATE TABLE AS, SELECT INTO, MERGE), a view, or a
    /// RENAME COLUMN, that mentions a column some `[[masking.columns]]`
    /// rule covers in a table the statement reads or changes.
    #[serde(default)]
    pub moves_masked: Option<bool>,
    /// Holds for a statement whose WHERE, HAVING or JOIN ... ON names a
    /// column some `[[masking.columns]]` rule masks, in a table it reads:
    /// `SELECT count(*) FROM patients WHERE ssn LIKE '1%'` tells a masked
    /// value digit by digit without returning it. Masking cannot stop that
    /// inference; a rule with this condition refuses it.
    #[serde(default)]
    pub filters_masked: Option<bool>,
}

/// The SQL family's top-level keys of a policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopKeys {
    /// Tables holding PHI, for `reads_phi` conditions (besides every table
    /// named in a masking column rule). Patterns as in rules: `patients`,
    /// `clinical.*`, `*`.
    #[serde(default)]
    phi_tables: Vec<String>,
    /// Tables that never count as PHI even if a pattern above covers them
    /// (e.g. the system catalogs).
    #[serde(default)]
    not_phi_tables: Vec<String>,
}

/// The SQL family's keys of `[masking]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskingKeys {
    /// Column rules, matched on where a result column really comes from.
    #[serde(default)]
    columns: Vec<ColumnRule>,
    /// Date and time columns of PHI tables (`phi_tables`) are masked
    /// (`redact`: NULL) unless a column rule names them (`format =
    /// "clear"` keeps one): whatever they are called, they hold dates of
    /// birth, admission, discharge or death. On unless set to false.
    #[serde(default = "yes")]
    phi_dates: bool,
}

fn yes() -> bool {
    true
}

/// A column rule's format: a mask, or `clear` (never masked by this rule's
/// columns, which are then only scanned like any text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnFormat {
    Redact,
    Partial,
    Hash,
    Clear,
}

impl ColumnFormat {
    fn mask(self) -> Option<MaskFormat> {
        match self {
            ColumnFormat::Redact => Some(MaskFormat::Redact),
            ColumnFormat::Partial => Some(MaskFormat::Partial),
            ColumnFormat::Hash => Some(MaskFormat::Hash),
            ColumnFormat::Clear => None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnRule {
    /// `table` or `schema.table`; an unqualified table matches in any schema.
    table: String,
    columns: Vec<String>,
    format: ColumnFormat,
}

/// What the policy says of one table column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnTreatment {
    /// A column rule masks it.
    Masked(MaskFormat),
    /// A date or time column of a PHI table that no rule names: redacted.
    PhiDate,
    /// A rule says `clear`, or none applies.
    Unmasked,
}

/// The SQL sections of a policy, checked and with names folded.
#[derive(Clone, Debug)]
pub struct SqlSections {
    /// Tables with masked columns and `phi_tables`: what `reads_phi` looks for.
    phi_tables: Vec<String>,
    not_phi_tables: Vec<String>,
    /// (table pattern, column, format), in file order.
    columns: Vec<(String, String, ColumnFormat)>,
    phi_dates: bool,
}

impl Family for Sql {
    type Conditions = SqlConditions;
    type Sections = SqlSections;
    type Subject = StatementClass;
    type Shapes = MessageShapes;

    fn sections(top: toml::Table, masking: toml::Table) -> Result<SqlSections, PolicyError> {
        let top = TopKeys::deserialize(toml::Value::Table(top))
            .map_err(|e| PolicyError::Syntax(e.to_string().trim().to_string()))?;
        let masking = MaskingKeys::deserialize(toml::Value::Table(masking))
            .map_err(|e| PolicyError::Masking(e.to_string().trim().to_string()))?;
        let mut phi_tables: Vec<String> = top.phi_tables.iter().map(|t| policy_name(t)).collect();
        let mut columns = Vec::new();
        for rule in &masking.columns {
            let table = policy_name(&rule.table);
            if table.is_empty() || rule.columns.is_empty() {
                return Err(PolicyError::Masking(format!(
                    "a column rule for table \"{}\" needs a table and at least one column",
                    rule.table
                )));
            }
            if rule.format != ColumnFormat::Clear {
                phi_tables.push(table.clone());
            }
            for c in &rule.columns {
                columns.push((table.clone(), policy_name(c), rule.format));
            }
        }
        Ok(SqlSections {
            phi_tables,
            not_phi_tables: top.not_phi_tables,
            columns,
            phi_dates: masking.phi_dates,
        })
    }

    fn matches(sections: &SqlSections, rule: &Rule<SqlConditions>, stmt: &StatementClass) -> bool {
        let conditions = &rule.conditions;
        // A rule that refuses covers an unqualified name whatever schema it
        // names (the search path may resolve it there); one that lets
        // through only covers what it names exactly.
        let lenience = if rule.action.forwards() {
            Lenience::Exact
        } else {
            Lenience::UnqualifiedMatchesAnySchema
        };
        let any_name = |patterns: &[String], names: &BTreeSet<String>| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| names.iter().any(|n| name_matches(p, n, lenience)))
        };
        let touched: BTreeSet<String> = stmt.reads.union(&stmt.writes).cloned().collect();
        (conditions.kinds.is_empty() || conditions.kinds.iter().any(|k| stmt.kinds.contains(k)))
            && any_name(&conditions.tables, &touched)
            && any_name(&conditions.reads, &stmt.reads)
            && any_name(&conditions.writes, &stmt.writes)
            && any_name(&conditions.functions, &stmt.functions)
            && conditions
                .unbounded_read
                .is_none_or(|want| stmt.unbounded_read == want)
            && conditions
                .reads_phi
                .is_none_or(|want| sections.reads_phi(stmt) == want)
            && conditions
                .moves_masked
                .is_none_or(|want| sections.moves_masked(stmt) == want)
            && conditions
                .filters_masked
                .is_none_or(|want| sections.filters_masked(stmt) == want)
    }
}

impl SqlSections {
    fn moves_masked(&self, stmt: &StatementClass) -> bool {
        let moves = ["write", "rename_column"].iter().any(|k| stmt.has_kind(k))
            || (stmt.main_kind() == "create" && !stmt.reads.is_empty());
        if !moves {
            return false;
        }
        let lenient = Lenience::UnqualifiedMatchesAnySchema;
        let touched: BTreeSet<&String> = stmt.reads.union(&stmt.writes).collect();
        self.columns.iter().any(|(table, column, format)| {
            format.mask().is_some()
                && (mentions(&stmt.columns, column) || stmt.copies_whole_rows)
                && touched.iter().any(|t| name_matches(table, t, lenient))
        })
    }

    fn filters_masked(&self, stmt: &StatementClass) -> bool {
        let lenient = Lenience::UnqualifiedMatchesAnySchema;
        let touched: BTreeSet<&String> = stmt.reads.union(&stmt.writes).collect();
        self.columns.iter().any(|(table, column, format)| {
            format.mask().is_some()
                && mentions(&stmt.filter_columns, column)
                && touched.iter().any(|t| name_matches(table, t, lenient))
        })
    }

    fn reads_phi(&self, stmt: &StatementClass) -> bool {
        let lenient = Lenience::UnqualifiedMatchesAnySchema;
        stmt.reads.iter().any(|r| {
            self.phi_tables.iter().any(|p| name_matches(p, r, lenient))
                && !self
                    .not_phi_tables
                    .iter()
                    .any(|p| name_matches(p, r, Lenience::Exact))
        })
    }

    fn is_phi_table(&self, qualified: &str) -> bool {
        self.phi_tables
            .iter()
            .any(|p| name_matches(p, qualified, Lenience::Exact))
            && !self
                .not_phi_tables
                .iter()
                .any(|p| name_matches(p, qualified, Lenience::Exact))
    }

    /// The first column rule naming `qualified.column`, if any.
    fn column_rule(&self, qualified: &str, column: &str) -> Option<ColumnFormat> {
        let column = policy_name(column);
        self.columns
            .iter()
            .find(|(t, c, _)| *c == column && name_matches(t, qualified, Lenience::Exact))
            .map(|(_, _, f)| *f)
    }
}

/// A name as a policy file's rules compare it: trimmed and lower-cased,
/// Unicode letters too. Policy names match case-insensitively whatever
/// the dialect folds: a column rule or a refusal that covers more is the
/// safe side (`Ärzte` quoted in the database and `ärzte` in the policy
/// are one column to the policy).
fn policy_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether the statement names `column` (a [`policy_name`]), in any case.
fn mentions(columns: &BTreeSet<String>, column: &str) -> bool {
    columns.iter().any(|c| policy_name(c) == column)
}

/// SQL-level prepared statements of one session (`PREPARE name AS ...`), so
/// that an `EXECUTE name` is judged by what it runs. Names are compared
/// exactly as the classifier normalised them (`"P"` and `p` differ). `None`
/// marks a name whose statement the proxy cannot be sure of (it was
/// prepared twice: PostgreSQL keeps the first and refuses the second), so
/// an EXECUTE of it fails closed.
pub type PreparedStatements = HashMap<String, Option<StatementClass>>;

/// A loaded, checked SQL policy.
#[derive(Clone, Debug)]
pub struct Policy {
    engine: PolicyEngine<Sql>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        Ok(Self {
            engine: PolicyEngine::parse(text)?,
        })
    }

    pub fn name(&self) -> &str {
        self.engine.name()
    }

    /// See [`PolicyEngine::review_settings`].
    pub fn review_settings(&self, rule: &str) -> Option<ReviewSettings> {
        self.engine.review_settings(rule)
    }

    /// Every review rule's settings (rules nobody can decide left out).
    pub fn all_review_settings(&self) -> Vec<ReviewSettings> {
        self.engine.all_review_settings()
    }

    pub fn limits(&self) -> &Limits {
        self.engine.limits()
    }

    /// The protocol-neutral keys of `[masking]` (detectors, scanning).
    pub fn masking(&self) -> &Masking {
        self.engine.masking()
    }

    /// Whether results may need masking at all under this policy.
    pub fn masks_anything(&self) -> bool {
        let sql = self.engine.family();
        self.engine.masking().scan_all_results
            || sql.columns.iter().any(|(_, _, f)| f.mask().is_some())
            || (sql.phi_dates && !sql.phi_tables.is_empty())
    }

    /// Whether `schema.table` holds PHI (`phi_tables` or a column rule's
    /// table, and not `not_phi_tables`).
    pub fn is_phi_table(&self, schema: &str, table: &str) -> bool {
        self.engine
            .family()
            .is_phi_table(&format!("{schema}.{table}"))
    }

    /// How the column `schema.table.column` is masked: the first column
    /// rule naming it decides; a date or time column (`is_date`, as the
    /// protocol's types tell) of a PHI table that no rule names is redacted
    /// (`phi_dates`).
    pub fn column_treatment(
        &self,
        schema: &str,
        table: &str,
        column: &str,
        is_date: bool,
    ) -> ColumnTreatment {
        let sql = self.engine.family();
        let qualified = format!("{schema}.{table}");
        match sql.column_rule(&qualified, column).map(ColumnFormat::mask) {
            Some(Some(format)) => ColumnTreatment::Masked(format),
            Some(None) => ColumnTreatment::Unmasked,
            None if sql.phi_dates && is_date && sql.is_phi_table(&qualified) => {
                ColumnTreatment::PhiDate
            }
            None => ColumnTreatment::Unmasked,
        }
    }

    /// The format for a result column that comes from `schema.table.column`.
    /// The first matching rule decides.
    pub fn column_format(&self, schema: &str, table: &str, column: &str) -> Option<MaskFormat> {
        self.engine
            .family()
            .column_rule(&format!("{schema}.{table}"), column)
            .and_then(ColumnFormat::mask)
    }

    /// Whether settings of `asker`'s sessions may hold values computed
    /// from tables: `set_config` and `pg_notify` with a computed value
    /// (`channel_write`) would not be denied outright. If they are, a
    /// setting holds only what the agent wrote as a literal (or the
    /// server's configuration), and reading one back masks nothing.
    pub fn settings_may_hold_data(&self, asker: Asker<'_>) -> bool {
        let write = StatementClass {
            kinds: vec!["select".into(), "set".into(), "channel_write".into()],
            ..StatementClass::default()
        };
        let class = Classification {
            statements: vec![write],
            unclassified: None,
        };
        self.evaluate(asker, &class, &PreparedStatements::new())
            .outcome
            != Outcome::Deny
    }

    /// Judges one client message.
    pub fn evaluate(
        &self,
        asker: Asker<'_>,
        class: &Classification,
        prepared: &PreparedStatements,
    ) -> Verdict {
        if let Some(why) = &class.unclassified {
            return self.engine.strictest(
                asker,
                &format!("the statement could not be classified ({why})"),
            );
        }
        let mut worst: Option<Verdict> = None;
        for stmt in &class.statements {
            let verdict = match self.evaluate_statement(asker, stmt, prepared) {
                Some(v) => v,
                None => {
                    return self.engine.strictest(
                        asker,
                        "EXECUTE names a statement this session did not PREPARE through Vigil",
                    )
                }
            };
            worst = Some(match worst {
                None => verdict,
                Some(w) => combine(w, verdict),
            });
        }
        worst.unwrap_or_else(|| self.engine.nothing_to_judge("empty statement"))
    }

    /// `None` when the statement executes an unknown prepared name.
    fn evaluate_statement(
        &self,
        asker: Asker<'_>,
        stmt: &StatementClass,
        prepared: &PreparedStatements,
    ) -> Option<Verdict> {
        let mut verdict = self.engine.first_match(asker, stmt);
        if let Some((_, inner)) = &stmt.prepares {
            verdict = combine(verdict, self.engine.first_match(asker, inner));
        }
        if let Some(name) = &stmt.executes {
            let inner = prepared.get(name)?.as_ref()?;
            verdict = combine(verdict, self.engine.first_match(asker, inner));
        }
        Some(verdict)
    }
}
