//! The policy gate of one session: classifies what the client sends and asks
//! the policy, keeping the per-session state that judgement needs (SQL-level
//! `PREPARE`d statements, so that `EXECUTE name` is judged by what it runs).
//!
//! Pure: the relay calls it for every `Query` and `Parse` and acts on the
//! [`Verdict`].

use std::sync::Arc;

use vigil_sql::classify::{self, Classification, Shadows};
use vigil_sql::lineage::MessageShapes;
use vigil_sql::policy::{Asker, Outcome, Policy, PreparedStatements, Verdict};

use crate::refuse::Refusal;

pub struct Gate {
    policy: Arc<Policy>,
    subject: String,
    groups: Vec<String>,
    connection: String,
    prepared: PreparedStatements,
    /// What code outside pg_catalog calls itself (from the catalog).
    shadows: Arc<Shadows>,
    /// The policy lets this identity write computed values into settings,
    /// so reading a setting back is masked (see `lineage`).
    settings_may_hold_data: bool,
    last_names: SqlNames,
}

/// Names SQL statements create or drop in the namespaces the extended
/// protocol uses too (prepared statements, portals).
#[derive(Debug, Default, Clone)]
pub struct SqlNames {
    pub prepared: Vec<String>,
    pub cursors: Vec<String>,
    /// DEALLOCATE, DISCARD or CLOSE: any name may be gone, or hold something else
    /// soon.
    pub forgets: bool,
    /// It changes the schema (DDL, or text that could not be classified).
    pub changes_schema: bool,
}

impl SqlNames {
    fn of(class: &Classification) -> SqlNames {
        let mut names = SqlNames::default();
        for stmt in &class.statements {
            if let Some((name, _)) = &stmt.prepares {
                names.prepared.push(name.clone());
            }
            names.cursors.extend(stmt.declares.iter().cloned());
            // CLOSE of a cursor frees its name for a later DECLARE too.
            names.forgets |=
                stmt.has_kind("deallocate") || stmt.has_kind("discard") || stmt.has_kind("close");
            names.changes_schema |= stmt.has_kind("ddl") || stmt.has_kind("rename_column");
        }
        names.forgets |= class.unclassified.is_some();
        names.changes_schema |= class.unclassified.is_some();
        names
    }
}

/// A bound on SQL-level prepared statements remembered per session; past it,
/// new PREPAREs are still judged, but an EXECUTE of a forgotten name is
/// unclassifiable and so gets the strictest outcome (fail closed).
const MAX_PREPARED: usize = 10_000;

impl Gate {
    pub fn new(policy: Arc<Policy>, subject: &str, groups: &[String], connection: &str) -> Self {
        let groups = groups.to_vec();
        let settings_may_hold_data = policy.settings_may_hold_data(Asker {
            subject,
            groups: &groups,
            connection,
        });
        Self {
            policy,
            subject: subject.to_string(),
            groups,
            connection: connection.to_string(),
            prepared: PreparedStatements::new(),
            shadows: Arc::default(),
            settings_may_hold_data,
            last_names: SqlNames::default(),
        }
    }

    /// The names code outside pg_catalog defines in the session's
    /// database, as the catalog last said.
    pub fn set_shadows(&mut self, shadows: Arc<Shadows>) {
        self.shadows = shadows;
    }

    /// Whether a read may now run code the text does not name (see
    /// [`Shadows::may_run_hidden_code`]), as the catalog last said.
    pub fn may_run_hidden_code(&self) -> bool {
        self.shadows.may_run_hidden_code()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_arc(&self) -> Arc<Policy> {
        self.policy.clone()
    }

    fn asker(&self) -> Asker<'_> {
        Asker {
            subject: &self.subject,
            groups: &self.groups,
            connection: &self.connection,
        }
    }

    /// Judges an already classified message (e.g. one the proxy knows it
    /// cannot classify).
    pub fn judge_classification(&self, class: &Classification) -> Verdict {
        self.policy.evaluate(self.asker(), class, &self.prepared)
    }

    /// What the SQL of the last judged text does to names the extended
    /// protocol shares: statement names it PREPAREs, portal names it
    /// DECLAREs, and whether it may DEALLOCATE or DISCARD any of them.
    pub fn sql_names(&self) -> &SqlNames {
        &self.last_names
    }

    /// Judges the text of a `Query` or a `Parse`. When the verdict lets the
    /// statement through, SQL-level PREPAREs and DEALLOCATEs in it update the
    /// session's map.
    pub fn judge(&mut self, sql: &str) -> Verdict {
        let mut class = classify::classify(sql);
        self.shadows.apply(&mut class);
        let mut verdict = self.judge_classification(&class);
        let free_read = class.is_free_read() && !self.shadows.may_run_hidden_code();
        verdict.shapes = MessageShapes::of(&class, self.settings_may_hold_data, free_read);
        self.last_names = SqlNames::of(&class);
        if verdict.outcome.forwards() {
            self.remember_prepares(&class);
        }
        verdict
    }

    fn remember_prepares(&mut self, class: &Classification) {
        for stmt in &class.statements {
            if let Some((name, inner)) = &stmt.prepares {
                if self.prepared.contains_key(name) {
                    // PostgreSQL refuses a second PREPARE of a name and
                    // keeps the first; which one the name runs is no longer
                    // certain here, so EXECUTE of it fails closed.
                    self.prepared.insert(name.clone(), None);
                } else if self.prepared.len() < MAX_PREPARED {
                    self.prepared.insert(name.clone(), Some((**inner).clone()));
                }
            }
            if stmt.has_kind("deallocate") {
                // A DEALLOCATE may fail upstream (an unknown name, an
                // aborted transaction), leaving the old statement in place:
                // every name it may have touched becomes uncertain, and an
                // EXECUTE of it fails closed.
                for class in self.prepared.values_mut() {
                    *class = None;
                }
            }
        }
    }
}

/// What the client is told when a verdict does not let a statement through.
pub fn refusal_for(verdict: &Verdict) -> Refusal {
    match verdict.outcome {
        Outcome::Review => Refusal {
            code: "42501",
            message: format!(
                "Vigil holds this statement for review (rule \"{}\"), and no approval service is configured, so it is refused",
                verdict.rule
            ),
            detail: verdict.reason.clone(),
            hint: "Ask an approver, or narrow the statement (a LIMIT, a WHERE clause) so that policy allows it.".into(),
        },
        _ => Refusal {
            code: "42501",
            message: format!("Vigil denied this statement (rule \"{}\")", verdict.rule),
            detail: verdict.reason.clone(),
            hint: String::new(),
        },
    }
}

/// What the client is told when a result grew past the policy's row limit.
/// What the client is told when a masked result is too large to mask
/// (`why`: "a row is larger than the 4 MiB it masks per row").
pub fn too_large_to_mask(rule: &str, why: &str) -> Refusal {
    Refusal {
        code: "54000",
        message: format!("Vigil stopped this result: {why} (rule \"{rule}\")"),
        detail: "no row from that one on was sent".into(),
        hint: "Select fewer rows, fewer or smaller columns, or substrings of large values.".into(),
    }
}

pub fn row_limit_refusal(verdict: &Verdict, limit: u64) -> Refusal {
    let held = verdict.over_limit == Outcome::Review;
    Refusal {
        code: "42501",
        message: if held {
            format!(
                "Vigil stopped this result after {limit} rows (rule \"{}\"): larger results need review, and no approval service is configured, so it is refused",
                verdict.rule
            )
        } else {
            format!(
                "Vigil stopped this result after {limit} rows (rule \"{}\"): larger results are denied",
                verdict.rule
            )
        },
        detail: format!("no row beyond the first {limit} was sent"),
        hint: "Add a LIMIT or a narrower WHERE clause.".into(),
    }
}
