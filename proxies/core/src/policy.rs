//! Policy: what the gateway does with a classified statement.
//!
//! A policy is plain data (a TOML file, see `deploy/policy/`): an ordered list
//! of rules, a default outcome, result-size limits and the masking section.
//! For each statement the *first* rule whose every condition holds decides
//! (firewall order, so that a narrow exception can sit above a broad rule);
//! when none matches, `default` decides. A message holding several statements
//! gets the strictest of their outcomes.
//!
//! Outcomes, from least to most strict: `allow` (forward, results unmasked),
//! `mask` (forward, results masked), `review` (held for approvers; until the
//! approval service exists it is refused with a message saying so), `deny`
//! (refused, never reaches the database).
//!
//! Fail closed: a statement the classifier could not parse or classify, or an
//! SQL-level `EXECUTE` of a name this session never `PREPARE`d, gets the
//! strictest outcome of every rule that *could* apply to this identity and
//! connection, whatever the statement would have matched.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use crate::classify::{Classification, StatementClass};
use crate::mask::{DetectorConfig, MaskFormat};

/// What happens to a statement. Ordered from least to most strict.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Mask,
    Review,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Mask => "mask",
            Outcome::Review => "review",
            Outcome::Deny => "deny",
        }
    }

    /// The outcome as the event schema records it.
    pub fn to_event(self) -> vigil_proto::events::Outcome {
        use vigil_proto::events::Outcome as Recorded;
        match self {
            Outcome::Allow => Recorded::Allow,
            Outcome::Mask => Recorded::Mask,
            Outcome::Review => Recorded::Review,
            Outcome::Deny => Recorded::Deny,
        }
    }

    /// Whether the statement may reach the database.
    pub fn forwards(self) -> bool {
        matches!(self, Outcome::Allow | Outcome::Mask)
    }
}

/// A policy file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// A name for the policy, recorded in Decision reasons.
    pub name: String,
    /// The outcome when no rule matches.
    pub default: Outcome,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub masking: MaskingSection,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Tables holding PHI, for `reads_phi` conditions (besides every table
    /// named in a masking column rule). Patterns as in rules: `patients`,
    /// `clinical.*`, `*`.
    #[serde(default)]
    pub phi_tables: Vec<String>,
    /// Tables that never count as PHI even if a pattern above covers them
    /// (e.g. the system catalogs).
    #[serde(default)]
    pub not_phi_tables: Vec<String>,
    /// Who decides held statements, and how, unless a rule says otherwise.
    #[serde(default)]
    pub review: ReviewDefaults,
}

/// The policy-wide defaults for `review` rules.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewDefaults {
    #[serde(default)]
    pub approver_groups: Vec<String>,
    #[serde(default)]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub max_grant_secs: Option<u64>,
}

/// How one review rule's held statements are decided (defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewSettings {
    pub rule: String,
    /// OIDC groups or Vigil roles whose members may decide.
    pub approver_groups: Vec<String>,
    /// Distinct approvers needed; any one of them may deny.
    pub quorum: u32,
    /// How long a held statement waits before it expires.
    pub ttl: std::time::Duration,
    /// The longest time-boxed grant an approver may issue for this rule;
    /// zero: no grants. Rules with a quorum above one have none either.
    pub max_grant: std::time::Duration,
}

/// Defaults for review settings that neither the rule nor `[review]` set.
pub const DEFAULT_QUORUM: u32 = 1;
pub const DEFAULT_REVIEW_TTL_SECS: u64 = 15 * 60;
pub const DEFAULT_MAX_GRANT_SECS: u64 = 60 * 60;

/// Result-size limits: a result growing past `max_rows` is stopped, and no
/// row beyond the limit reaches the client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// What a result over the limit becomes: `review` or `deny`.
    #[serde(default = "default_over_limit")]
    pub over_limit: Outcome,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rows: None,
            over_limit: default_over_limit(),
        }
    }
}

fn default_over_limit() -> Outcome {
    Outcome::Review
}

/// Which result values are masked, and how.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingSection {
    /// Run the content detectors over every text value of every masked result
    /// (catches PHI computed from columns: casts, concatenations, JSON).
    #[serde(default)]
    pub scan_all_results: bool,
    #[serde(default)]
    pub detectors: DetectorConfig,
    /// Column rules, matched on where a result column really comes from.
    #[serde(default)]
    pub columns: Vec<ColumnRule>,
    /// Date and time columns of PHI tables (`phi_tables`) are masked
    /// (`redact`: NULL) unless a column rule names them (`format =
    /// "clear"` keeps one): whatever they are called, they hold dates of
    /// birth, admission, discharge or death. On unless set to false.
    #[serde(default = "yes")]
    pub phi_dates: bool,
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

/// Date and time types (and their arrays): `date`, `timestamp`,
/// `timestamptz`.
pub fn is_date_type(type_oid: u32) -> bool {
    matches!(type_oid, 1082 | 1114 | 1184 | 1182 | 1115 | 1185)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// `table` or `schema.table`; an unqualified table matches in any schema.
    pub table: String,
    pub columns: Vec<String>,
    pub format: ColumnFormat,
}

/// One rule: conditions (all must hold; a list holds if any entry matches)
/// and an action.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub action: Outcome,
    /// Shown to the client when the action refuses, and recorded.
    #[serde(default)]
    pub reason: Option<String>,
    // ---- who and where ----
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Vigil roles: a static identity's groups, or an OIDC identity's
    /// groups after its issuer's `roles` mapping. `roles` is accepted too.
    #[serde(default, alias = "roles")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub connections: Vec<String>,
    // ---- what ----
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
    /// Overrides `limits.max_rows` for statements this rule lets through.
    #[serde(default)]
    pub max_rows: Option<u64>,
    // ---- review (action = "review"; each overrides `[review]`) ----
    #[serde(default)]
    pub approver_groups: Vec<String>,
    #[serde(default)]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub max_grant_secs: Option<u64>,
}

impl Rule {
    fn has_statement_conditions(&self) -> bool {
        !self.kinds.is_empty()
            || !self.tables.is_empty()
            || !self.reads.is_empty()
            || !self.writes.is_empty()
            || !self.functions.is_empty()
            || self.unbounded_read.is_some()
            || self.reads_phi.is_some()
            || self.moves_masked.is_some()
            || self.filters_masked.is_some()
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Syntax(String),
    #[error("rule \"{rule}\": {problem}")]
    Rule { rule: String, problem: String },
    #[error("masking: {0}")]
    Masking(String),
}

/// Who is asking, and on which connection.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    pub subject: &'a str,
    /// The identity's Vigil roles.
    pub groups: &'a [String],
    pub connection: &'a str,
}

/// The policy's answer for one client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The deciding rule's name, or "default".
    pub rule: String,
    /// Why, in words safe to show the client and to log (no SQL text).
    pub reason: String,
    /// Stop results past this many rows.
    pub max_rows: Option<u64>,
    /// What a result over `max_rows` becomes.
    pub over_limit: Outcome,
    /// The statements' shapes, for masking by lineage: unknown (every
    /// computed column redacted) unless the caller fills them in.
    pub shapes: crate::lineage::MessageShapes,
}

impl Verdict {
    /// The Decision event that records this verdict on request
    /// `request_seq`, taken under `policy` at `stage`.
    pub fn to_decision(
        &self,
        request_seq: u64,
        policy: &str,
        stage: vigil_proto::events::Stage,
    ) -> vigil_proto::events::Decision {
        vigil_proto::events::Decision {
            request_seq,
            outcome: self.outcome.to_event() as i32,
            rule: self.rule.clone(),
            reason: self.reason.clone(),
            policy: policy.to_string(),
            stage: stage as i32,
        }
    }
}

/// The stricter of two verdicts, with the smaller row limit.
pub fn stricter(a: &Verdict, b: &Verdict) -> Verdict {
    let mut v = if b.outcome > a.outcome {
        b.clone()
    } else {
        a.clone()
    };
    v.max_rows = match (a.max_rows, b.max_rows) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    // Which text the server holds under the name is the proxy's guess:
    // unless both agree, no lineage.
    if a.shapes != b.shapes {
        v.shapes = Default::default();
    }
    v
}
/// A loaded, checked policy.

#[derive(Clone, Debug)]
pub struct Policy {
    file: PolicyFile,
    /// Tables with masked columns and `phi_tables`: what `reads_phi` looks for.
    phi_tables: Vec<String>,
    /// (table pattern, column, format), in file order.
    columns: Vec<(String, String, ColumnFormat)>,
}

/// The rule name under which a result stopped at the row limit is reviewed.
pub const ROW_LIMIT_RULE: &str = "row-limit";

/// A quorum of 0 would approve with nobody deciding; a time to live of 0
/// would expire before anyone could.
fn check_review_numbers(
    rule: &str,
    quorum: Option<u32>,
    ttl_secs: Option<u64>,
) -> Result<(), PolicyError> {
    let problem = if quorum == Some(0) {
        "quorum must be at least 1"
    } else if ttl_secs == Some(0) {
        "ttl_secs must be at least 1"
    } else {
        return Ok(());
    };
    Err(PolicyError::Rule {
        rule: rule.to_string(),
        problem: problem.into(),
    })
}

/// The rule name a fail-closed verdict carries.
pub const FAIL_CLOSED_RULE: &str = "fail-closed";

/// SQL-level prepared statements of one session (`PREPARE name AS ...`), so
/// that an `EXECUTE name` is judged by what it runs. Names are compared
/// exactly as the classifier normalised them (`"P"` and `p` differ). `None`
/// marks a name whose statement the proxy cannot be sure of (it was
/// prepared twice: PostgreSQL keeps the first and refuses the second), so
/// an EXECUTE of it fails closed.
pub type PreparedStatements = HashMap<String, Option<StatementClass>>;

impl Policy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Self::new(file)
    }

    pub fn new(file: PolicyFile) -> Result<Self, PolicyError> {
        let mut names = BTreeSet::new();
        for rule in &file.rules {
            if rule.name.trim().is_empty() {
                return Err(PolicyError::Rule {
                    rule: String::new(),
                    problem: "every rule needs a name".into(),
                });
            }
            if !names.insert(rule.name.clone()) {
                return Err(PolicyError::Rule {
                    rule: rule.name.clone(),
                    problem: "two rules have this name".into(),
                });
            }
            if rule.max_rows == Some(0) {
                return Err(PolicyError::Rule {
                    rule: rule.name.clone(),
                    problem: "max_rows must be at least 1".into(),
                });
            }
            let sets_review = !rule.approver_groups.is_empty()
                || rule.quorum.is_some()
                || rule.ttl_secs.is_some()
                || rule.max_grant_secs.is_some();
            if sets_review && rule.action != Outcome::Review {
                return Err(PolicyError::Rule {
                    rule: rule.name.clone(),
                    problem: "approver_groups, quorum, ttl_secs and max_grant_secs apply only to action = \"review\"".into(),
                });
            }
            check_review_numbers(&rule.name, rule.quorum, rule.ttl_secs)?;
        }
        check_review_numbers("[review]", file.review.quorum, file.review.ttl_secs)?;
        if !matches!(file.limits.over_limit, Outcome::Review | Outcome::Deny) {
            return Err(PolicyError::Syntax(
                "limits.over_limit must be \"review\" or \"deny\"".into(),
            ));
        }
        if file.limits.max_rows == Some(0) {
            return Err(PolicyError::Syntax(
                "limits.max_rows must be at least 1".into(),
            ));
        }
        let mut columns = Vec::new();
        let mut phi_tables: Vec<String> = file.phi_tables.iter().map(|t| normalise(t)).collect();
        for rule in &file.masking.columns {
            let table = normalise(&rule.table);
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
                columns.push((table.clone(), normalise(c), rule.format));
            }
        }
        Ok(Self {
            file,
            phi_tables,
            columns,
        })
    }

    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// How statements held by `rule` are decided: the rule's own settings
    /// over `[review]`'s. `None` when no approver group is named anywhere, or
    /// `rule` is not a review rule: nobody could decide, so the proxy
    /// refuses the statement instead of holding it (fail closed). The row
    /// limit's review (`limits.over_limit`) uses `[review]` alone, under
    /// the rule name [`ROW_LIMIT_RULE`].
    pub fn review_settings(&self, rule: &str) -> Option<ReviewSettings> {
        let defaults = &self.file.review;
        let found = self
            .file
            .rules
            .iter()
            .find(|r| r.name == rule && r.action == Outcome::Review);
        let (groups, quorum, ttl, max_grant) = match found {
            Some(r) => (
                if r.approver_groups.is_empty() {
                    &defaults.approver_groups
                } else {
                    &r.approver_groups
                },
                r.quorum.or(defaults.quorum),
                r.ttl_secs.or(defaults.ttl_secs),
                r.max_grant_secs.or(defaults.max_grant_secs),
            ),
            None if rule == ROW_LIMIT_RULE || rule == "default" => (
                &defaults.approver_groups,
                defaults.quorum,
                defaults.ttl_secs,
                defaults.max_grant_secs,
            ),
            None => return None,
        };
        let groups: Vec<String> = groups
            .iter()
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        if groups.is_empty() {
            return None;
        }
        Some(ReviewSettings {
            rule: rule.to_string(),
            approver_groups: groups,
            quorum: quorum.unwrap_or(DEFAULT_QUORUM),
            ttl: std::time::Duration::from_secs(ttl.unwrap_or(DEFAULT_REVIEW_TTL_SECS)),
            max_grant: std::time::Duration::from_secs(max_grant.unwrap_or(DEFAULT_MAX_GRANT_SECS)),
        })
    }

    /// Every review rule's settings (rules nobody can decide left out).
    pub fn all_review_settings(&self) -> Vec<ReviewSettings> {
        let mut names: Vec<&str> = self
            .file
            .rules
            .iter()
            .filter(|r| r.action == Outcome::Review)
            .map(|r| r.name.as_str())
            .collect();
        names.push(ROW_LIMIT_RULE);
        if self.file.default == Outcome::Review {
            names.push("default");
        }
        names
            .into_iter()
            .filter_map(|n| self.review_settings(n))
            .collect()
    }

    pub fn limits(&self) -> &Limits {
        &self.file.limits
    }

    pub fn masking(&self) -> &MaskingSection {
        &self.file.masking
    }

    /// Whether results may need masking at all under this policy.
    pub fn masks_anything(&self) -> bool {
        self.file.masking.scan_all_results
            || self.columns.iter().any(|(_, _, f)| f.mask().is_some())
            || (self.file.masking.phi_dates && !self.phi_tables.is_empty())
    }

    /// Whether `schema.table` holds PHI (`phi_tables` or a column rule's
    /// table, and not `not_phi_tables`).
    pub fn is_phi_table(&self, schema: &str, table: &str) -> bool {
        let qualified = format!("{schema}.{table}");
        self.phi_tables
            .iter()
            .any(|p| name_matches(p, &qualified, Lenience::Exact))
            && !self
                .file
                .not_phi_tables
                .iter()
                .any(|p| name_matches(p, &qualified, Lenience::Exact))
    }

    /// How the column `schema.table.column` of type `type_oid` is masked:
    /// the first column rule naming it decides; a date column of a PHI
    /// table that no rule names is redacted (`phi_dates`).
    pub fn column_treatment(
        &self,
        schema: &str,
        table: &str,
        column: &str,
        type_oid: u32,
    ) -> ColumnTreatment {
        let qualified = format!("{schema}.{table}");
        let column = column.to_lowercase();
        let rule = self
            .columns
            .iter()
            .find(|(t, c, _)| *c == column && name_matches(t, &qualified, Lenience::Exact));
        match rule.map(|(_, _, f)| f.mask()) {
            Some(Some(format)) => ColumnTreatment::Masked(format),
            Some(None) => ColumnTreatment::Unmasked,
            None if self.file.masking.phi_dates
                && is_date_type(type_oid)
                && self.is_phi_table(schema, table) =>
            {
                ColumnTreatment::PhiDate
            }
            None => ColumnTreatment::Unmasked,
        }
    }

    /// The format for a result column that comes from `schema.table.column`.
    /// The first matching rule decides.
    pub fn column_format(&self, schema: &str, table: &str, column: &str) -> Option<MaskFormat> {
        let qualified = format!("{schema}.{table}");
        let column = column.to_lowercase();
        self.columns
            .iter()
            .find(|(t, c, _)| *c == column && name_matches(t, &qualified, Lenience::Exact))
            .and_then(|(_, _, f)| f.mask())
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
            return self.strictest(
                asker,
                &format!("the statement could not be classified ({why})"),
            );
        }
        let mut worst: Option<Verdict> = None;
        for stmt in &class.statements {
            let verdict = match self.evaluate_statement(asker, stmt, prepared) {
                Some(v) => v,
                None => {
                    return self.strictest(
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
        worst.unwrap_or_else(|| Verdict {
            outcome: Outcome::Allow,
            rule: "default".into(),
            reason: "empty statement".into(),
            max_rows: None,
            over_limit: self.file.limits.over_limit,
            shapes: Default::default(),
        })
    }

    /// `None` when the statement executes an unknown prepared name.
    fn evaluate_statement(
        &self,
        asker: Asker<'_>,
        stmt: &StatementClass,
        prepared: &PreparedStatements,
    ) -> Option<Verdict> {
        let mut verdict = self.first_match(asker, stmt);
        if let Some((_, inner)) = &stmt.prepares {
            verdict = combine(verdict, self.first_match(asker, inner));
        }
        if let Some(name) = &stmt.executes {
            let inner = prepared.get(name)?.as_ref()?;
            verdict = combine(verdict, self.first_match(asker, inner));
        }
        Some(verdict)
    }

    fn first_match(&self, asker: Asker<'_>, stmt: &StatementClass) -> Verdict {
        for rule in &self.file.rules {
            if self.asker_matches(rule, asker) && self.statement_matches(rule, stmt) {
                return Verdict {
                    outcome: rule.action,
                    rule: rule.name.clone(),
                    reason: rule
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("matched rule \"{}\"", rule.name)),
                    max_rows: rule.max_rows.or(self.file.limits.max_rows),
                    over_limit: self.file.limits.over_limit,
                    shapes: Default::default(),
                };
            }
        }
        Verdict {
            outcome: self.file.default,
            rule: "default".into(),
            reason: format!("no rule matched; policy \"{}\" default", self.file.name),
            max_rows: self.file.limits.max_rows,
            over_limit: self.file.limits.over_limit,
            shapes: Default::default(),
        }
    }

    /// Fail closed: the strictest outcome among every rule that could apply to
    /// this asker (whatever its statement conditions) and the default.
    fn strictest(&self, asker: Asker<'_>, why: &str) -> Verdict {
        let mut outcome = self.file.default;
        let mut source = format!("policy \"{}\" default", self.file.name);
        for rule in &self.file.rules {
            if self.asker_matches(rule, asker) && rule.action > outcome {
                outcome = rule.action;
                source = format!("rule \"{}\"", rule.name);
            }
        }
        Verdict {
            outcome,
            rule: FAIL_CLOSED_RULE.into(),
            reason: format!("{why}; the strictest outcome that could apply ({source}) is used"),
            max_rows: self.file.limits.max_rows,
            over_limit: self.file.limits.over_limit,
            shapes: Default::default(),
        }
    }

    fn asker_matches(&self, rule: &Rule, asker: Asker<'_>) -> bool {
        (rule.subjects.is_empty() || rule.subjects.iter().any(|s| s == asker.subject))
            && (rule.groups.is_empty() || rule.groups.iter().any(|g| asker.groups.contains(g)))
            && (rule.connections.is_empty()
                || rule.connections.iter().any(|c| c == asker.connection))
    }

    fn statement_matches(&self, rule: &Rule, stmt: &StatementClass) -> bool {
        if !rule.has_statement_conditions() {
            return true;
        }
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
        (rule.kinds.is_empty() || rule.kinds.iter().any(|k| stmt.kinds.contains(k)))
            && any_name(&rule.tables, &touched)
            && any_name(&rule.reads, &stmt.reads)
            && any_name(&rule.writes, &stmt.writes)
            && any_name(&rule.functions, &stmt.functions)
            && rule
                .unbounded_read
                .is_none_or(|want| stmt.unbounded_read == want)
            && rule
                .reads_phi
                .is_none_or(|want| self.reads_phi(stmt) == want)
            && rule
                .moves_masked
                .is_none_or(|want| self.moves_masked(stmt) == want)
            && rule
                .filters_masked
                .is_none_or(|want| self.filters_masked(stmt) == want)
    }

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
                && (stmt.columns.contains(column) || stmt.copies_whole_rows)
                && touched.iter().any(|t| name_matches(table, t, lenient))
        })
    }

    fn filters_masked(&self, stmt: &StatementClass) -> bool {
        let lenient = Lenience::UnqualifiedMatchesAnySchema;
        let touched: BTreeSet<&String> = stmt.reads.union(&stmt.writes).collect();
        self.columns.iter().any(|(table, column, format)| {
            format.mask().is_some()
                && stmt.filter_columns.contains(column)
                && touched.iter().any(|t| name_matches(table, t, lenient))
        })
    }

    fn reads_phi(&self, stmt: &StatementClass) -> bool {
        let lenient = Lenience::UnqualifiedMatchesAnySchema;
        stmt.reads.iter().any(|r| {
            self.phi_tables.iter().any(|p| name_matches(p, r, lenient))
                && !self
                    .file
                    .not_phi_tables
                    .iter()
                    .any(|p| name_matches(p, r, Lenience::Exact))
        })
    }
}

/// The stricter of two verdicts; on a tie the first one's rule is named.
/// The row limit is the smaller of both.
fn combine(a: Verdict, b: Verdict) -> Verdict {
    let max_rows = match (a.max_rows, b.max_rows) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let mut winner = if b.outcome > a.outcome { b } else { a };
    winner.max_rows = max_rows;
    winner
}

/// PostgreSQL folds unquoted names to lower case; the policy file's names are
/// written unquoted.
fn normalise(name: &str) -> String {
    name.trim().to_lowercase()
}

/// How a schema-qualified pattern treats an unqualified name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lenience {
    /// `clinical.patients` covers only `clinical.patients`.
    Exact,
    /// `clinical.patients` also covers an unqualified `patients`: used where
    /// covering too much is the safe side (refusals, PHI detection).
    UnqualifiedMatchesAnySchema,
}

/// Whether a policy name pattern covers a name the classifier reported.
///
/// `patients` covers `patients` in any schema; `clinical.patients` covers
/// `clinical.patients` (and, leniently, an unqualified `patients`); the
/// object part may end in `*` (`clinical.*`, `pg_*`, `*`).
pub fn name_matches(pattern: &str, name: &str, lenience: Lenience) -> bool {
    let pattern = pattern.to_lowercase();
    let name = name.to_lowercase();
    let (p_schema, p_obj) = split_last(&pattern);
    let (n_schema, n_obj) = split_last(&name);
    let obj_ok = match p_obj.strip_suffix('*') {
        Some(prefix) => n_obj.starts_with(prefix),
        None => p_obj == n_obj,
    };
    let schema_ok = match (p_schema, n_schema) {
        (Some(p), Some(n)) => p == n,
        (Some(_), None) => lenience == Lenience::UnqualifiedMatchesAnySchema,
        (None, _) => true,
    };
    obj_ok && schema_ok
}

fn split_last(name: &str) -> (Option<&str>, &str) {
    match name.rsplit_once('.') {
        Some((schema, obj)) => (Some(schema.rsplit('.').next().unwrap_or(schema)), obj),
        None => (None, name),
    }
}
