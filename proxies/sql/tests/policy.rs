//! The policy engine on classified statements: first match wins, a message
//! gets its strictest statement's outcome, PREPARE/EXECUTE are judged by
//! what they run, unclassifiable text gets the strictest outcome that could
//! apply to the caller, names match leniently only where that is the safe
//! side, and broken policy files are refused with a reason.

use vigil_proxy_core::mask::MaskFormat;
use vigil_proxy_core::policy::{name_matches, Lenience};
use vigil_sql::classify::classify;
use vigil_sql::policy::{Asker, Outcome, Policy, PreparedStatements, FAIL_CLOSED_RULE};

const POLICY: &str = r#"
name = "test"
default = "mask"
phi_tables = ["clinical.*"]
not_phi_tables = ["clinical.lookup"]

[limits]
max_rows = 100
over_limit = "deny"

[[masking.columns]]
table = "patients"
columns = ["ssn"]
format = "partial"

[[masking.columns]]
table = "billing.accounts"
columns = ["card", "SSN"]
format = "hash"

[[rules]]
name = "dba-may-drop"
action = "allow"
groups = ["dba"]
kinds = ["drop"]

[[rules]]
name = "no-drop"
action = "deny"
kinds = ["drop", "truncate"]
reason = "no dropping"

[[rules]]
name = "review-audit-reads"
action = "review"
reads = ["audit.events"]

[[rules]]
name = "bulk-phi"
action = "review"
unbounded_read = true
reads_phi = true

[[rules]]
name = "reports-unmasked"
action = "allow"
connections = ["reporting"]
reads = ["public.daily_counts"]
max_rows = 5000

[[rules]]
name = "only-on-ehr"
action = "deny"
connections = ["ehr"]
functions = ["pg_sleep"]
"#;

fn policy() -> Policy {
    Policy::parse(POLICY).unwrap()
}

fn judge(p: &Policy, groups: &[&str], connection: &str, sql: &str) -> (Outcome, String) {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let v = p.evaluate(
        Asker {
            subject: "agent-7",
            groups: &groups,
            connection,
        },
        &classify(sql),
        &PreparedStatements::new(),
    );
    (v.outcome, v.rule)
}

#[test]
fn the_first_matching_rule_decides_and_the_default_covers_the_rest() {
    let p = policy();
    let cases: &[(&[&str], &str, &str, Outcome, &str)] = &[
        (&[], "ehr", "DROP TABLE patients", Outcome::Deny, "no-drop"),
        (
            &["dba"],
            "ehr",
            "DROP TABLE patients",
            Outcome::Allow,
            "dba-may-drop",
        ),
        (
            &["dba"],
            "ehr",
            "TRUNCATE patients",
            Outcome::Deny,
            "no-drop",
        ),
        (
            &[],
            "ehr",
            "SELECT * FROM audit.events WHERE id = 1",
            Outcome::Review,
            "review-audit-reads",
        ),
        // Leaving the schema out does not dodge a refusing rule.
        (
            &[],
            "ehr",
            "SELECT * FROM events WHERE id = 1",
            Outcome::Review,
            "review-audit-reads",
        ),
        (
            &[],
            "ehr",
            "SELECT * FROM clinical.notes",
            Outcome::Review,
            "bulk-phi",
        ),
        (
            &[],
            "ehr",
            "SELECT * FROM clinical.notes WHERE id = 2",
            Outcome::Mask,
            "default",
        ),
        (
            &[],
            "ehr",
            "SELECT * FROM clinical.lookup",
            Outcome::Mask,
            "default",
        ),
        (
            &[],
            "reporting",
            "SELECT n FROM public.daily_counts WHERE d = now()",
            Outcome::Allow,
            "reports-unmasked",
        ),
        // ... but an allow rule covers only what it names exactly.
        (
            &[],
            "reporting",
            "SELECT n FROM daily_counts WHERE d = now()",
            Outcome::Mask,
            "default",
        ),
        (
            &[],
            "reporting",
            "SELECT n FROM public.daily_counts WHERE d = now()",
            Outcome::Allow,
            "reports-unmasked",
        ),
        (
            &[],
            "ehr",
            "SELECT pg_sleep(1)",
            Outcome::Deny,
            "only-on-ehr",
        ),
        (
            &[],
            "reporting",
            "SELECT pg_sleep(1)",
            Outcome::Mask,
            "default",
        ),
    ];
    for (groups, conn, sql, outcome, rule) in cases {
        assert_eq!(
            judge(&p, groups, conn, sql),
            (*outcome, rule.to_string()),
            "{sql} by {groups:?} on {conn}"
        );
    }
}

#[test]
fn a_message_gets_the_strictest_outcome_of_its_statements() {
    let p = policy();
    assert_eq!(
        judge(&p, &[], "ehr", "SELECT 1; DROP TABLE t; SELECT 2"),
        (Outcome::Deny, "no-drop".into())
    );
    let v = p.evaluate(
        Asker {
            subject: "a",
            groups: &[],
            connection: "reporting",
        },
        &classify("SELECT n FROM public.daily_counts WHERE d = now(); SELECT 1"),
        &PreparedStatements::new(),
    );
    // The smaller row limit of the two applies.
    assert_eq!(v.max_rows, Some(100));
    assert_eq!(v.over_limit, Outcome::Deny);
}

#[test]
fn prepared_statements_are_judged_by_what_they_run() {
    let p = policy();
    let asker = Asker {
        subject: "a",
        groups: &[],
        connection: "ehr",
    };
    let prep = classify("PREPARE p AS DELETE FROM t; PREPARE q AS TRUNCATE t");
    assert_eq!(
        p.evaluate(asker, &prep, &PreparedStatements::new()).outcome,
        Outcome::Deny,
        "a PREPARE of a denied statement is denied"
    );
    let mut prepared = PreparedStatements::new();
    let inner = classify("PREPARE q AS TRUNCATE t").statements[0]
        .prepares
        .clone()
        .unwrap();
    prepared.insert(inner.0.clone(), Some(*inner.1));
    let exec = classify("EXECUTE q");
    assert_eq!(p.evaluate(asker, &exec, &prepared).rule, "no-drop");
    // Unknown or ambiguous names fail closed.
    let v = p.evaluate(asker, &classify("EXECUTE nobody_prepared_me"), &prepared);
    assert_eq!(
        (v.outcome, v.rule.as_str()),
        (Outcome::Deny, FAIL_CLOSED_RULE)
    );
    prepared.insert("q".into(), None);
    assert_eq!(p.evaluate(asker, &exec, &prepared).rule, FAIL_CLOSED_RULE);
}

#[test]
fn what_cannot_be_classified_gets_the_strictest_outcome_that_could_apply() {
    let p = policy();
    // DO blocks are unclassifiable: deny is the strictest rule for anyone.
    let (outcome, rule) = judge(&p, &[], "ehr", "DO $$ BEGIN PERFORM 1; END $$");
    assert_eq!((outcome, rule.as_str()), (Outcome::Deny, FAIL_CLOSED_RULE));
    // A policy whose strictest rule for this caller is review gives review.
    let mild = Policy::parse(
        r#"
name = "mild"
default = "allow"
[[rules]]
name = "hold-everything-from-bots"
action = "review"
groups = ["bots"]
[[rules]]
name = "deny-for-others"
action = "deny"
groups = ["others"]
"#,
    )
    .unwrap();
    assert_eq!(
        judge(&mild, &["bots"], "x", "DO $$ BEGIN END $$").0,
        Outcome::Review
    );
    assert_eq!(
        judge(&mild, &[], "x", "DO $$ BEGIN END $$").0,
        Outcome::Allow
    );
    let v = mild.evaluate(
        Asker {
            subject: "s",
            groups: &["bots".to_string()],
            connection: "x",
        },
        &classify("DO $$ BEGIN END $$"),
        &PreparedStatements::new(),
    );
    assert!(v.reason.contains("could not be classified"), "{}", v.reason);
    assert!(
        v.reason.contains("hold-everything-from-bots"),
        "{}",
        v.reason
    );
}

#[test]
fn column_rules_match_the_real_origin_of_a_column() {
    let p = policy();
    assert_eq!(
        p.column_format("public", "patients", "ssn"),
        Some(MaskFormat::Partial)
    );
    assert_eq!(
        p.column_format("clinical", "patients", "ssn"),
        Some(MaskFormat::Partial)
    );
    assert_eq!(p.column_format("public", "patients", "name"), None);
    assert_eq!(
        p.column_format("billing", "accounts", "card"),
        Some(MaskFormat::Hash)
    );
    // Column names compare without case (a quoted "SSN" is still masked).
    assert_eq!(
        p.column_format("billing", "accounts", "Ssn"),
        Some(MaskFormat::Hash)
    );
    assert_eq!(p.column_format("public", "accounts", "card"), None);
    assert!(p.masks_anything());
}

#[test]
fn name_patterns() {
    use Lenience::*;
    for (pattern, name, lenience, want) in [
        ("patients", "patients", Exact, true),
        ("patients", "clinical.patients", Exact, true),
        ("clinical.patients", "clinical.patients", Exact, true),
        ("clinical.patients", "other.patients", Exact, false),
        ("clinical.patients", "patients", Exact, false),
        (
            "clinical.patients",
            "patients",
            UnqualifiedMatchesAnySchema,
            true,
        ),
        ("clinical.*", "clinical.notes", Exact, true),
        (
            "clinical.*",
            "billing.notes",
            UnqualifiedMatchesAnySchema,
            false,
        ),
        ("pg_*", "pg_class", Exact, true),
        ("pg_*", "patients", Exact, false),
        ("*", "anything", Exact, true),
        ("Patients", "patients", Exact, true),
    ] {
        assert_eq!(
            name_matches(pattern, name, lenience),
            want,
            "{pattern} ~ {name} ({lenience:?})"
        );
    }
}

#[test]
fn broken_policies_are_refused_with_a_reason() {
    for (text, want) in [
        ("default = \"allow\"", "missing field `name`"),
        ("name = \"x\"\ndefault = \"permit\"", "unknown variant"),
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"deny\"\n[[rules]]\nname = \"a\"\naction = \"allow\"", "two rules have this name"),
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"\"\naction = \"deny\"", "needs a name"),
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"deny\"\nkinds = \"drop\"", "invalid type"),
        ("name = \"x\"\ndefault = \"allow\"\n[limits]\nover_limit = \"allow\"", "over_limit"),
        ("name = \"x\"\ndefault = \"allow\"\n[[masking.columns]]\ntable = \"t\"\ncolumns = []\nformat = \"redact\"", "at least one column"),
        ("name = \"x\"\ndefault = \"allow\"\n[[masking.columns]]\ntable = \"t\"\ncolumns = [\"a\"]\nformat = \"scramble\"", "unknown variant"),
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"deny\"\nmax_rows = 0", "max_rows must be at least 1"),
        ("not toml at all [", "expected"),
        // A key neither the engine nor the SQL family knows is refused,
        // naming the rule: a typo never silently widens a rule.
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"deny\"\nkind = [\"drop\"]", "rule \"a\": unknown field `kind`"),
        ("name = \"x\"\ndefault = \"allow\"\nphi_table = [\"t\"]", "unknown field `phi_table`"),
        ("name = \"x\"\ndefault = \"allow\"\n[masking]\nscan_all = true", "unknown field `scan_all`"),
        ("name = \"x\"\ndefault = \"allow\"\n[masking.detectors]\nkinds = [\"ssn\"]\nbogus = 1", "bogus"),
        ("name = \"x\"\ndefault = \"allow\"\n[[rules]]\nname = \"a\"\naction = \"deny\"\nreads_phi = \"yes\"", "rule \"a\": invalid type"),
    ] {
        let err = Policy::parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn the_shipped_policies_parse_and_mean_what_they_say() {
    let phi = Policy::parse(include_str!("../../../deploy/policy/phi-default.toml")).unwrap();
    let all = Policy::parse(include_str!("../../../deploy/policy/allow-all.toml")).unwrap();
    for (sql, outcome) in [
        ("DROP TABLE patients", Outcome::Deny),
        ("ALTER TABLE patients DROP COLUMN ssn", Outcome::Deny),
        ("DELETE FROM patients", Outcome::Deny),
        ("CREATE ROLE x", Outcome::Deny),
        ("SELECT pg_read_file('/etc/passwd')", Outcome::Deny),
        ("COPY patients TO PROGRAM 'curl x'", Outcome::Deny),
        ("COPY patients TO STDOUT", Outcome::Review),
        ("SELECT * FROM patients", Outcome::Review),
        ("SELECT count(*) FROM patients", Outcome::Mask),
        ("SELECT * FROM patients WHERE id = 1", Outcome::Mask),
        ("SELECT * FROM pg_class", Outcome::Mask),
        ("DISCARD ALL", Outcome::Mask),
        ("BEGIN", Outcome::Mask),
        // A masked column moved where its rule no longer follows it.
        ("ALTER TABLE patients RENAME COLUMN ssn TO s", Outcome::Deny),
        (
            "ALTER TABLE patients RENAME COLUMN note TO remark",
            Outcome::Mask,
        ),
        (
            "INSERT INTO notes (id, body) SELECT id, ssn FROM patients WHERE id = 1",
            Outcome::Deny,
        ),
        (
            "INSERT INTO notes (id, body) SELECT id, name FROM patients WHERE id = 1",
            Outcome::Mask,
        ),
        (
            "UPDATE patients SET note = dob::text WHERE id = 1",
            Outcome::Deny,
        ),
        ("UPDATE patients SET ssn = NULL WHERE id = 1", Outcome::Mask),
        (
            "CREATE TABLE c AS SELECT mrn AS m FROM patients WHERE id = 1",
            Outcome::Deny,
        ),
        (
            "CREATE VIEW v AS SELECT email AS e FROM patients",
            Outcome::Deny,
        ),
        ("CREATE TABLE t (ssn text)", Outcome::Mask),
    ] {
        assert_eq!(
            judge(&phi, &[], "ehr", sql).0,
            outcome,
            "phi-default: {sql}"
        );
        assert_eq!(
            judge(&all, &[], "ehr", sql).0,
            Outcome::Allow,
            "allow-all: {sql}"
        );
    }
}

#[test]
fn review_rules_take_their_own_settings_over_the_policy_defaults() {
    use std::time::Duration;
    let p = Policy::parse(
        r#"
name = "r"
default = "allow"
[review]
approver_groups = ["dba"]
ttl_secs = 600
[[rules]]
name = "deletes"
action = "review"
kinds = ["delete"]
approver_groups = ["privacy-office", " "]
quorum = 2
max_grant_secs = 0
[[rules]]
name = "exports"
action = "review"
kinds = ["copy_out"]
[[rules]]
name = "no-drop"
action = "deny"
kinds = ["drop"]
"#,
    )
    .unwrap();
    let deletes = p.review_settings("deletes").unwrap();
    assert_eq!(deletes.approver_groups, ["privacy-office"]);
    assert_eq!(deletes.quorum, 2);
    assert_eq!(deletes.ttl, Duration::from_secs(600), "from [review]");
    assert_eq!(deletes.max_grant, Duration::ZERO);
    let exports = p.review_settings("exports").unwrap();
    assert_eq!(exports.approver_groups, ["dba"]);
    assert_eq!(exports.quorum, 1);
    assert_eq!(exports.max_grant, Duration::from_secs(3600));
    assert!(p.review_settings("no-drop").is_none(), "not a review rule");
    assert!(p.review_settings("nonexistent").is_none());
    assert_eq!(
        p.review_settings("row-limit").unwrap().approver_groups,
        ["dba"]
    );
    let names: Vec<String> = p
        .all_review_settings()
        .into_iter()
        .map(|s| s.rule)
        .collect();
    assert_eq!(names, ["deletes", "exports", "row-limit"]);

    // Without approver groups anywhere, nobody could decide: no settings, so
    // the proxy refuses instead of holding.
    let undecidable = Policy::parse(
        "name = \"u\"\ndefault = \"allow\"\n[[rules]]\nname = \"x\"\naction = \"review\"\nkinds = [\"delete\"]\n",
    )
    .unwrap();
    assert!(undecidable.review_settings("x").is_none());
}

#[test]
fn review_settings_that_could_never_work_are_refused() {
    let cases = [
        ("quorum = 0", "quorum must be at least 1"),
        ("ttl_secs = 0", "ttl_secs must be at least 1"),
    ];
    for (line, expected) in cases {
        let text = format!(
            "name = \"b\"\ndefault = \"allow\"\n[[rules]]\nname = \"x\"\naction = \"review\"\napprover_groups = [\"dba\"]\n{line}\n"
        );
        let err = Policy::parse(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{line}: {err}");
    }
    let on_deny = "name = \"b\"\ndefault = \"allow\"\n[[rules]]\nname = \"x\"\naction = \"deny\"\nquorum = 2\n";
    let err = Policy::parse(on_deny).unwrap_err().to_string();
    assert!(err.contains("apply only to action = \"review\""), "{err}");
    let defaults = "name = \"b\"\ndefault = \"allow\"\n[review]\nquorum = 0\n";
    assert!(Policy::parse(defaults).is_err());
}

#[test]
fn dates_of_phi_tables_are_masked_unless_a_rule_keeps_them() {
    use vigil_sql::policy::ColumnTreatment;
    // The protocol tells which columns hold dates; the policy is told.
    const DATE: bool = true;
    const TIMESTAMPTZ: bool = true;
    let p = Policy::parse(
        r#"
name = "dates"
default = "mask"
phi_tables = ["clinical.*"]
not_phi_tables = ["clinical.lookup"]
[[masking.columns]]
table = "clinical.visits"
columns = ["created_at"]
format = "clear"
"#,
    )
    .unwrap();
    let t = |s: &str, tb: &str, c: &str, ty: bool| p.column_treatment(s, tb, c, ty);
    assert_eq!(
        t("clinical", "visits", "admitted", DATE),
        ColumnTreatment::PhiDate
    );
    assert_eq!(
        t("clinical", "visits", "seen", TIMESTAMPTZ),
        ColumnTreatment::PhiDate
    );
    // A rule says otherwise; not a PHI table; not a date.
    assert_eq!(
        t("clinical", "visits", "created_at", TIMESTAMPTZ),
        ColumnTreatment::Unmasked
    );
    assert_eq!(
        t("clinical", "lookup", "valid_from", DATE),
        ColumnTreatment::Unmasked
    );
    assert_eq!(
        t("public", "holidays", "day", DATE),
        ColumnTreatment::Unmasked
    );
    assert_eq!(
        t("clinical", "visits", "note", false),
        ColumnTreatment::Unmasked
    );
    assert!(p.masks_anything());
    // Switched off.
    let off = Policy::parse(
        "name = \"x\"\ndefault = \"mask\"\nphi_tables = [\"*\"]\n[masking]\nphi_dates = false\n",
    )
    .unwrap();
    assert_eq!(
        off.column_treatment("public", "visits", "admitted", DATE),
        ColumnTreatment::Unmasked
    );
}

#[test]
fn predicates_on_masked_columns_can_be_refused() {
    let p = Policy::parse(
        r#"
name = "no-inference"
default = "mask"
[[masking.columns]]
table = "*"
columns = ["ssn"]
format = "partial"
[[rules]]
name = "no-predicates-on-masked"
action = "deny"
filters_masked = true
"#,
    )
    .unwrap();
    let denied = |sql: &str| judge(&p, &[], "db", sql).0 == Outcome::Deny;
    for sql in [
        "SELECT count(*) FROM patients WHERE ssn LIKE '1%'",
        "SELECT id FROM patients p WHERE p.ssn > '5'",
        "SELECT 1 FROM patients GROUP BY id HAVING max(ssn) < '2'",
        "SELECT a.id FROM patients a JOIN guesses g ON a.ssn = g.value",
        "UPDATE patients SET name = name WHERE ssn = '123-45-6789'",
        "SELECT id FROM visits WHERE patient_id IN (SELECT id FROM patients WHERE ssn LIKE '9%')",
    ] {
        assert!(denied(sql), "{sql}");
    }
    for sql in [
        "SELECT ssn FROM patients WHERE id = 1",
        "SELECT count(*) FROM patients WHERE name LIKE 'A%'",
    ] {
        assert!(!denied(sql), "{sql}");
    }
}

#[test]
fn policy_column_names_match_in_any_case_unicode_letters_too() {
    // A quoted column keeps its case in the database ("Ärzte"); a policy
    // writes it as it likes. Matching more is the safe side for masking
    // and for refusals alike.
    let p = Policy::parse(
        r#"
name = "case"
default = "mask"
[[masking.columns]]
table = "staff"
columns = ["ärzte", "SSN"]
format = "redact"
[[rules]]
name = "no-predicates-on-masked"
action = "deny"
filters_masked = true
"#,
    )
    .unwrap();
    assert_eq!(
        p.column_format("public", "staff", "Ärzte"),
        Some(MaskFormat::Redact)
    );
    assert_eq!(
        p.column_format("public", "staff", "ssn"),
        Some(MaskFormat::Redact)
    );
    let denied = |sql: &str| judge(&p, &[], "db", sql).0 == Outcome::Deny;
    assert!(denied(
        r#"SELECT count(*) FROM staff WHERE "Ärzte" LIKE 'M%'"#
    ));
    assert!(denied(
        r#"SELECT count(*) FROM staff WHERE "SSN" LIKE '1%'"#
    ));
    assert!(!denied("SELECT count(*) FROM staff WHERE name LIKE 'M%'"));
}
