//! Policy: the protocol-neutral engine that decides what the gateway does
//! with one client message.
//!
//! A policy is plain data (a TOML file, see `deploy/policy/` and
//! docs/policy.md): an ordered list of rules, a default outcome, result-size
//! limits, review settings and the masking section. For each subject (a SQL
//! statement, an MCP tool call) the *first* rule whose every condition holds
//! decides (firewall order, so that a narrow exception can sit above a broad
//! rule); when none matches, `default` decides. A message holding several
//! subjects gets the strictest of their outcomes ([`combine`]).
//!
//! This module knows who asks and where (subjects, groups, connections) and
//! what a rule does; what a rule *looks at* belongs to a protocol family
//! ([`Family`]): the SQL family (crate `vigil-sql`) adds statement kinds,
//! tables, functions and column rules. A rule's keys that this module does
//! not know are its family's conditions; a family refuses keys it does not
//! know either, so a typo never silently widens a rule.
//!
//! Outcomes, from least to most strict: `allow` (forward, results unmasked),
//! `mask` (forward, results masked), `review` (held for approvers), `deny`
//! (refused, never reaches the server).
//!
//! Fail closed: a subject the family could not read gets
//! [`PolicyEngine::strictest`]: the strictest outcome of every rule that
//! *could* apply to this identity and connection, whatever the subject
//! would have matched.

use std::collections::BTreeSet;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::mask::DetectorConfig;

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

/// A protocol family: what its rules look at and what its policy file adds.
///
/// The engine reads the common keys of the file and of each rule; every
/// other key is handed to the family, which must refuse the ones it does
/// not know.
pub trait Family: Sized {
    /// The conditions a rule of this family may carry besides who and
    /// where (SQL: kinds, tables, functions ...): the rule's other keys.
    type Conditions: DeserializeOwned + Clone + Debug;
    /// The family's own sections of the file (top-level keys and keys of
    /// `[masking]` the engine does not know), checked and compiled.
    type Sections: Clone + Debug;
    /// What one rule is matched against: a classified SQL statement, an
    /// MCP message.
    type Subject: ?Sized;
    /// What a verdict tells result masking about the message's results
    /// (SQL: each output column's origin). `Default` means nothing is known
    /// and must be the safe side: two verdicts that disagree keep it.
    type Shapes: Clone + Debug + Default + PartialEq;

    /// Reads the family's sections: `top` holds the file's top-level keys
    /// the engine does not know, `masking` those of `[masking]`. Every key
    /// the family does not know must be refused (deserialize with
    /// `deny_unknown_fields`): a typo must never load as a policy that
    /// says less. `Conditions` must refuse unknown keys the same way.
    fn sections(top: toml::Table, masking: toml::Table) -> Result<Self::Sections, PolicyError>;

    /// Whether `subject` meets every condition of `rule` (a rule with no
    /// conditions matches every subject).
    fn matches(
        sections: &Self::Sections,
        rule: &Rule<Self::Conditions>,
        subject: &Self::Subject,
    ) -> bool;

    /// The family's own checks of a rule against the whole file (a key
    /// that only some actions or sections allow). None by default.
    fn check_rule(
        _sections: &Self::Sections,
        _rule: &Rule<Self::Conditions>,
    ) -> Result<(), PolicyError> {
        Ok(())
    }
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

/// The protocol-neutral keys of `[masking]`: how content is scanned.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Masking {
    /// Run the content detectors over every text value of every masked
    /// result (catches PHI computed from columns: casts, concatenations,
    /// JSON).
    #[serde(default)]
    pub scan_all_results: bool,
    #[serde(default)]
    pub detectors: DetectorConfig,
    /// The family's keys of `[masking]` (SQL: `columns`, `phi_dates`).
    #[serde(flatten)]
    family: toml::Table,
}

/// One rule: who and where it applies to, its family's conditions (all
/// must hold; a list holds if any entry matches) and an action.
#[derive(Clone, Debug, Deserialize)]
pub struct Rule<C> {
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
    /// Overrides `limits.max_rows` for what this rule lets through.
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
    // ---- what: the family's conditions ----
    #[serde(flatten)]
    pub conditions: C,
}

/// A policy file as written: the engine's keys, the rest kept for the family.
#[derive(Deserialize)]
struct FileText {
    name: String,
    default: Outcome,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    masking: Masking,
    #[serde(default)]
    rules: Vec<Rule<toml::Table>>,
    #[serde(default)]
    review: ReviewDefaults,
    #[serde(flatten)]
    family: toml::Table,
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

/// The policy's answer for one client message. `S` is what the protocol
/// family learned of the message's results ([`Family::Shapes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<S = ()> {
    pub outcome: Outcome,
    /// The deciding rule's name, or "default".
    pub rule: String,
    /// Why, in words safe to show the client and to log (no SQL text).
    pub reason: String,
    /// Stop results past this many rows.
    pub max_rows: Option<u64>,
    /// What a result over `max_rows` becomes.
    pub over_limit: Outcome,
    /// The results' shapes, for masking by origin: unknown (the strictest
    /// masking) unless the family fills them in.
    pub shapes: S,
}

impl<S> Verdict<S> {
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

/// The stricter of two verdicts, with the smaller row limit. When the two
/// know different shapes (which one the server runs is the proxy's guess),
/// nothing is known.
pub fn stricter<S: Clone + Default + PartialEq>(a: &Verdict<S>, b: &Verdict<S>) -> Verdict<S> {
    let mut v = if b.outcome > a.outcome {
        b.clone()
    } else {
        a.clone()
    };
    v.max_rows = smaller_limit(a.max_rows, b.max_rows);
    if a.shapes != b.shapes {
        v.shapes = S::default();
    }
    v
}

/// The stricter of two verdicts of one message's subjects; on a tie the
/// first one's rule is named. The row limit is the smaller of both.
pub fn combine<S>(a: Verdict<S>, b: Verdict<S>) -> Verdict<S> {
    let max_rows = smaller_limit(a.max_rows, b.max_rows);
    let mut winner = if b.outcome > a.outcome { b } else { a };
    winner.max_rows = max_rows;
    winner
}

fn smaller_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The rule name under which a result stopped at the row limit is reviewed.
pub const ROW_LIMIT_RULE: &str = "row-limit";

/// The rule name a fail-closed verdict carries.
pub const FAIL_CLOSED_RULE: &str = "fail-closed";

/// Names no rule may take: the verdicts the engine and the gateway make
/// themselves.
pub const RESERVED_RULE_NAMES: [&str; 4] =
    ["default", FAIL_CLOSED_RULE, ROW_LIMIT_RULE, "token-expired"];

/// A loaded, checked policy of one protocol family.
#[derive(Debug)]
pub struct PolicyEngine<F: Family> {
    name: String,
    default: Outcome,
    limits: Limits,
    masking: Masking,
    review: ReviewDefaults,
    rules: Vec<Rule<F::Conditions>>,
    family: F::Sections,
}

impl<F: Family> Clone for PolicyEngine<F> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            default: self.default,
            limits: self.limits.clone(),
            masking: self.masking.clone(),
            review: self.review.clone(),
            rules: self.rules.clone(),
            family: self.family.clone(),
        }
    }
}

impl<F: Family> PolicyEngine<F> {
    /// Reads and checks a policy file; the error names the rule or key at
    /// fault.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut file: FileText =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut names = BTreeSet::new();
        for rule in file.rules {
            check_rule(&rule, &mut names)?;
            rules.push(family_conditions::<F>(rule)?);
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
        let masking_keys = std::mem::take(&mut file.masking.family);
        let family = F::sections(file.family, masking_keys)?;
        for rule in &rules {
            F::check_rule(&family, rule)?;
        }
        Ok(Self {
            name: file.name,
            default: file.default,
            limits: file.limits,
            masking: file.masking,
            review: file.review,
            rules,
            family,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn default_outcome(&self) -> Outcome {
        self.default
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The protocol-neutral keys of `[masking]`.
    pub fn masking(&self) -> &Masking {
        &self.masking
    }

    /// The family's compiled sections.
    pub fn family(&self) -> &F::Sections {
        &self.family
    }

    pub fn rules(&self) -> &[Rule<F::Conditions>] {
        &self.rules
    }

    /// How statements held by `rule` are decided: the rule's own settings
    /// over `[review]`'s. `None` when no approver group is named anywhere, or
    /// `rule` is not a review rule: nobody could decide, so the proxy
    /// refuses the statement instead of holding it (fail closed). The row
    /// limit's review (`limits.over_limit`) uses `[review]` alone, under
    /// the rule name [`ROW_LIMIT_RULE`].
    pub fn review_settings(&self, rule: &str) -> Option<ReviewSettings> {
        let defaults = &self.review;
        let found = self
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
            None if rule == ROW_LIMIT_RULE || rule == "default" => {
                return self.review_defaults_as(rule)
            }
            None => return None,
        };
        settings(rule, groups, quorum, ttl, max_grant)
    }

    /// `[review]` alone, for a review the gateway itself asks for under the
    /// name `rule` (a row limit, a changed MCP tool definition): no rule of
    /// the file holds it, so only the policy-wide settings apply. `None`
    /// when `[review]` names no approver group.
    pub fn review_defaults_as(&self, rule: &str) -> Option<ReviewSettings> {
        let defaults = &self.review;
        settings(
            rule,
            &defaults.approver_groups,
            defaults.quorum,
            defaults.ttl_secs,
            defaults.max_grant_secs,
        )
    }

    /// Every review rule's settings (rules nobody can decide left out).
    pub fn all_review_settings(&self) -> Vec<ReviewSettings> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.action == Outcome::Review)
            .map(|r| r.name.as_str())
            .collect();
        names.push(ROW_LIMIT_RULE);
        if self.default == Outcome::Review {
            names.push("default");
        }
        names
            .into_iter()
            .filter_map(|n| self.review_settings(n))
            .collect()
    }

    /// The verdict of the first rule that applies to `asker` and matches
    /// `subject`, or the default's.
    pub fn first_match(&self, asker: Asker<'_>, subject: &F::Subject) -> Verdict<F::Shapes> {
        for rule in &self.rules {
            if asker_matches(rule, asker) && F::matches(&self.family, rule, subject) {
                return self.verdict(
                    rule.action,
                    &rule.name,
                    rule.reason
                        .clone()
                        .unwrap_or_else(|| format!("matched rule \"{}\"", rule.name)),
                    rule.max_rows.or(self.limits.max_rows),
                );
            }
        }
        self.verdict(
            self.default,
            "default",
            format!("no rule matched; policy \"{}\" default", self.name),
            self.limits.max_rows,
        )
    }

    /// Fail closed: the strictest outcome among every rule that could apply
    /// to this asker (whatever its family's conditions) and the default.
    pub fn strictest(&self, asker: Asker<'_>, why: &str) -> Verdict<F::Shapes> {
        let mut outcome = self.default;
        let mut source = format!("policy \"{}\" default", self.name);
        for rule in &self.rules {
            if asker_matches(rule, asker) && rule.action > outcome {
                outcome = rule.action;
                source = format!("rule \"{}\"", rule.name);
            }
        }
        self.verdict(
            outcome,
            FAIL_CLOSED_RULE,
            format!("{why}; the strictest outcome that could apply ({source}) is used"),
            self.limits.max_rows,
        )
    }

    /// The verdict on a message with nothing to judge (an empty query).
    pub fn nothing_to_judge(&self, reason: &str) -> Verdict<F::Shapes> {
        self.verdict(Outcome::Allow, "default", reason.into(), None)
    }

    fn verdict(
        &self,
        outcome: Outcome,
        rule: &str,
        reason: String,
        max_rows: Option<u64>,
    ) -> Verdict<F::Shapes> {
        Verdict {
            outcome,
            rule: rule.to_string(),
            reason,
            max_rows,
            over_limit: self.limits.over_limit,
            shapes: F::Shapes::default(),
        }
    }
}

fn asker_matches<C>(rule: &Rule<C>, asker: Asker<'_>) -> bool {
    (rule.subjects.is_empty() || rule.subjects.iter().any(|s| s == asker.subject))
        && (rule.groups.is_empty() || rule.groups.iter().any(|g| asker.groups.contains(g)))
        && (rule.connections.is_empty() || rule.connections.iter().any(|c| c == asker.connection))
}

/// The checks every rule passes whatever its family: a unique name, sane
/// numbers, review settings only on review rules.
fn check_rule<C>(rule: &Rule<C>, names: &mut BTreeSet<String>) -> Result<(), PolicyError> {
    let problem = |problem: &str| PolicyError::Rule {
        rule: rule.name.clone(),
        problem: problem.into(),
    };
    if rule.name.trim().is_empty() {
        return Err(PolicyError::Rule {
            rule: String::new(),
            problem: "every rule needs a name".into(),
        });
    }
    if !names.insert(rule.name.clone()) {
        return Err(problem("two rules have this name"));
    }
    // Verdicts the engine and the gateway make themselves go by these
    // names: a rule of the same name would be taken for them (and they
    // for it, in anything looked up by name).
    if RESERVED_RULE_NAMES.contains(&rule.name.as_str()) {
        return Err(problem(
            "this name is reserved for verdicts Vigil makes itself (default, fail-closed, row-limit, token-expired)",
        ));
    }
    if rule.max_rows == Some(0) {
        return Err(problem("max_rows must be at least 1"));
    }
    let sets_review = !rule.approver_groups.is_empty()
        || rule.quorum.is_some()
        || rule.ttl_secs.is_some()
        || rule.max_grant_secs.is_some();
    if sets_review && rule.action != Outcome::Review {
        return Err(problem(
            "approver_groups, quorum, ttl_secs and max_grant_secs apply only to action = \"review\"",
        ));
    }
    check_review_numbers(&rule.name, rule.quorum, rule.ttl_secs)
}

/// Reads a rule's keys the engine did not know as its family's conditions.
fn family_conditions<F: Family>(
    rule: Rule<toml::Table>,
) -> Result<Rule<F::Conditions>, PolicyError> {
    let conditions =
        F::Conditions::deserialize(toml::Value::Table(rule.conditions)).map_err(|e| {
            PolicyError::Rule {
                rule: rule.name.clone(),
                problem: e.to_string().trim().to_string(),
            }
        })?;
    Ok(Rule {
        name: rule.name,
        action: rule.action,
        reason: rule.reason,
        subjects: rule.subjects,
        groups: rule.groups,
        connections: rule.connections,
        max_rows: rule.max_rows,
        approver_groups: rule.approver_groups,
        quorum: rule.quorum,
        ttl_secs: rule.ttl_secs,
        max_grant_secs: rule.max_grant_secs,
        conditions,
    })
}

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

/// How a schema-qualified pattern treats an unqualified name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lenience {
    /// `clinical.patients` covers only `clinical.patients`.
    Exact,
    /// `clinical.patients` also covers an unqualified `patients`: used where
    /// covering too much is the safe side (refusals, PHI detection).
    UnqualifiedMatchesAnySchema,
}

/// Whether a policy name pattern covers a dotted name (a table, a function,
/// an MCP tool), case-insensitively.
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

/// Review settings with the defaults filled in; `None` without an approver
/// group (nobody could decide).
fn settings(
    rule: &str,
    groups: &[String],
    quorum: Option<u32>,
    ttl: Option<u64>,
    max_grant: Option<u64>,
) -> Option<ReviewSettings> {
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

#[cfg(test)]
mod tests {
    //! The engine with a family of its own (tool names, as an MCP family
    //! would match them): what the engine does is the same for every
    //! family.
    use super::*;

    #[derive(Clone, Debug)]
    struct Tools;

    #[derive(Clone, Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ToolConditions {
        #[serde(default)]
        tools: Vec<String>,
    }

    impl Family for Tools {
        type Conditions = ToolConditions;
        type Sections = ();
        type Subject = str;
        type Shapes = ();

        fn sections(top: toml::Table, masking: toml::Table) -> Result<(), PolicyError> {
            match top.keys().chain(masking.keys()).next() {
                Some(key) => Err(PolicyError::Syntax(format!("unknown field `{key}`"))),
                None => Ok(()),
            }
        }

        fn matches(_: &(), rule: &Rule<ToolConditions>, tool: &str) -> bool {
            let tools = &rule.conditions.tools;
            tools.is_empty() || tools.iter().any(|t| name_matches(t, tool, Lenience::Exact))
        }
    }

    const POLICY: &str = r#"
name = "tools"
default = "review"
[review]
approver_groups = ["privacy"]
[[rules]]
name = "oncall-may-delete"
action = "allow"
groups = ["oncall"]
tools = ["ehr.delete_*"]
[[rules]]
name = "no-delete"
action = "deny"
tools = ["ehr.delete_*"]
[[rules]]
name = "reads"
action = "mask"
tools = ["ehr.read_*", "search"]
"#;

    fn asker<'a>(groups: &'a [String]) -> Asker<'a> {
        Asker {
            subject: "agent",
            groups,
            connection: "mcp",
        }
    }

    #[test]
    fn the_first_matching_rule_decides_for_any_family() {
        let p = PolicyEngine::<Tools>::parse(POLICY).unwrap();
        let none: Vec<String> = Vec::new();
        let oncall = vec!["oncall".to_string()];
        let judge = |groups: &[String], tool: &str| {
            let v = p.first_match(asker(groups), tool);
            (v.outcome, v.rule)
        };
        assert_eq!(
            judge(&none, "ehr.delete_patient"),
            (Outcome::Deny, "no-delete".into())
        );
        assert_eq!(
            judge(&oncall, "ehr.delete_patient"),
            (Outcome::Allow, "oncall-may-delete".into())
        );
        assert_eq!(
            judge(&none, "ehr.read_chart"),
            (Outcome::Mask, "reads".into())
        );
        assert_eq!(judge(&none, "weather"), (Outcome::Review, "default".into()));
        // Fail closed: the strictest outcome any rule could give the asker.
        let v = p.strictest(asker(&none), "the message could not be read");
        assert_eq!(
            (v.outcome, v.rule.as_str()),
            (Outcome::Deny, FAIL_CLOSED_RULE)
        );
        assert!(p.review_settings("default").is_some());
    }

    #[test]
    fn keys_neither_the_engine_nor_the_family_knows_are_refused() {
        let typo =
            format!("{POLICY}\n[[rules]]\nname = \"x\"\naction = \"deny\"\ntool = [\"a\"]\n");
        let err = PolicyEngine::<Tools>::parse(&typo).unwrap_err().to_string();
        assert!(
            err.contains("rule \"x\"") && err.contains("unknown field `tool`"),
            "{err}"
        );
        let top = format!("phi_tables = [\"t\"]\n{POLICY}");
        let err = PolicyEngine::<Tools>::parse(&top).unwrap_err().to_string();
        assert!(err.contains("phi_tables"), "{err}");
    }
}
