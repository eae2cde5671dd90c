//! Table tests: a statement, a small catalog, and the columns each output
//! is computed from (`?` for unknown).

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;

const TEXT: u32 = 25;
const DATE: u32 = 1082;
const INT4: u32 = 23;

struct Fake(HashMap<String, Vec<Arc<RelationInfo>>>);

impl Relations for Fake {
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Arc<RelationInfo>> {
        self.0
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|r| schema.is_none_or(|s| s == r.schema))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn table(schema: &str, name: &str, cols: &[(&str, u32)]) -> RelationInfo {
    RelationInfo {
        schema: schema.into(),
        name: name.into(),
        columns: cols
            .iter()
            .map(|(n, t)| ColumnInfo {
                name: (*n).into(),
                type_oid: *t,
            })
            .collect(),
        kind: RelationKind::Table,
    }
}

fn view(name: &str, cols: &[&str], def: &str) -> RelationInfo {
    RelationInfo {
        schema: "public".into(),
        name: name.into(),
        columns: cols
            .iter()
            .map(|n| ColumnInfo {
                name: (*n).into(),
                type_oid: TEXT,
            })
            .collect(),
        kind: RelationKind::View(view_shape(def).map(Arc::new)),
    }
}

fn catalog() -> Fake {
    let mut m: HashMap<String, Vec<Arc<RelationInfo>>> = HashMap::new();
    for r in [
        table(
            "public",
            "patients",
            &[
                ("id", INT4),
                ("name", TEXT),
                ("ssn", TEXT),
                ("dob", DATE),
                ("email", TEXT),
            ],
        ),
        table(
            "public",
            "visits",
            &[
                ("id", INT4),
                ("patient_id", INT4),
                ("admitted", DATE),
                ("note", TEXT),
            ],
        ),
        table(
            "other",
            "visits",
            &[
                ("id", INT4),
                ("patient_id", INT4),
                ("admitted", DATE),
                ("note", TEXT),
            ],
        ),
        table("public", "codes", &[("code", TEXT), ("label", TEXT)]),
        view(
            "born",
            &["id", "born"],
            "SELECT id, dob AS born FROM patients",
        ),
        view("born2", &["pid", "b"], "SELECT id, born FROM born"),
        view("loop1", &["x"], "SELECT x FROM loop1"),
        view("broken", &["x"], "this is not sql"),
    ] {
        m.entry(r.name.clone()).or_default().push(Arc::new(r));
    }
    Fake(m)
}

/// `table.column` names of each output, `?` for unknown, `-` for none.
fn lineage_of(sql: &str) -> Vec<String> {
    let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0);
    match resolve(&statement_shape(&stmt), &catalog(), false) {
        Outputs::Columns(cols) => cols
            .iter()
            .map(|(l, _)| match l {
                Lineage::Unknown => "?".to_string(),
                Lineage::Copy(c) if c.schema == "public" => format!("{}.{}", c.table, c.column),
                Lineage::Copy(c) => format!("{}.{}.{}", c.schema, c.table, c.column),
                Lineage::Known(s) if s.is_empty() => "-".to_string(),
                Lineage::Known(s) => s
                    .iter()
                    .map(|c| {
                        if c.schema == "public" {
                            format!("{}.{}", c.table, c.column)
                        } else {
                            format!("{}.{}.{}", c.schema, c.table, c.column)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("+"),
            })
            .collect(),
        Outputs::FromNothing { column } => vec![format!("nothing ({column})")],
        Outputs::Unknown => vec!["unknown".into()],
    }
}

#[test]
fn lineage_table() {
    let cases: &[(&str, &[&str])] = &[
        // Computed from nothing: left alone.
        (
            "SELECT now(), current_user, 1, 'x', $1",
            &["-", "-", "-", "-", "-"],
        ),
        ("SELECT now()::date + 1 AS tomorrow", &["-"]),
        // Plain and computed columns.
        (
            "SELECT id, ssn FROM patients",
            &["patients.id", "patients.ssn"],
        ),
        (
            "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM patients WHERE id = 1",
            &["patients.ssn"],
        ),
        (
            "SELECT translate(p.ssn, '0123', 'abcd') FROM patients p",
            &["patients.ssn"],
        ),
        (
            "SELECT array_to_string(string_to_array(ssn, NULL), ' ') FROM patients",
            &["patients.ssn"],
        ),
        (
            "SELECT upper(name) || ssn FROM patients",
            &["patients.name+patients.ssn"],
        ),
        (
            "SELECT CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END FROM patients",
            &["patients.ssn"],
        ),
        (
            "SELECT count(*), max(dob) FROM patients",
            &["-", "patients.dob"],
        ),
        (
            "SELECT row_number() OVER (ORDER BY dob) FROM patients",
            &["patients.dob"],
        ),
        (
            "SELECT ROW(id, ssn) FROM patients",
            &["patients.id+patients.ssn"],
        ),
        ("SELECT ARRAY[email] FROM patients", &["patients.email"]),
        (
            "SELECT json_build_object('s', ssn) FROM patients",
            &["patients.ssn"],
        ),
        // Whole rows.
        (
            "SELECT row_to_json(p) FROM patients p",
            &["patients.dob+patients.email+patients.id+patients.name+patients.ssn"],
        ),
        (
            "SELECT to_jsonb(p.*) FROM patients p",
            &["patients.dob+patients.email+patients.id+patients.name+patients.ssn"],
        ),
        // Stars.
        ("SELECT * FROM codes", &["codes.code", "codes.label"]),
        (
            "SELECT c.*, 1 FROM codes c",
            &["codes.code", "codes.label", "-"],
        ),
        ("SELECT * FROM codes JOIN patients USING (id)", &["unknown"]),
        // Subqueries, CTEs, set operations, derived tables, LATERAL.
        (
            "SELECT (SELECT ssn FROM patients p2 WHERE p2.id = c.code::int) FROM codes c",
            &["patients.ssn"],
        ),
        (
            "SELECT x FROM (SELECT ssn AS x FROM patients) s",
            &["patients.ssn"],
        ),
        (
            "SELECT s.a FROM (SELECT upper(ssn), id FROM patients) AS s(a, b)",
            &["patients.ssn"],
        ),
        (
            "WITH t AS (SELECT md5(ssn) AS h FROM patients) SELECT h FROM t",
            &["patients.ssn"],
        ),
        (
            "WITH t(h) AS (SELECT ssn FROM patients) SELECT upper(h) FROM t",
            &["patients.ssn"],
        ),
        (
            "SELECT label FROM codes UNION SELECT ssn FROM patients",
            &["codes.label+patients.ssn"],
        ),
        (
            "SELECT x FROM patients p, LATERAL (SELECT p.ssn AS x) l",
            &["patients.ssn"],
        ),
        (
            "SELECT u FROM patients p, unnest(string_to_array(p.ssn, '-')) AS u",
            &["patients.ssn"],
        ),
        ("SELECT g FROM generate_series(1, 3) AS g", &["-"]),
        (
            "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)",
            &["-", "-"],
        ),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
            &["?"],
        ),
        // Views, to their base columns.
        ("SELECT born FROM born", &["patients.dob"]),
        ("SELECT b, pid FROM born2", &["patients.dob", "patients.id"]),
        ("SELECT x FROM loop1", &["?"]),
        ("SELECT x FROM broken", &["?"]),
        // A name in two schemas: either's column.
        (
            "SELECT admitted FROM visits",
            &["other.visits.admitted+visits.admitted"],
        ),
        ("SELECT admitted FROM public.visits", &["visits.admitted"]),
        // Fail closed.
        ("SELECT my_func(id) FROM patients", &["?"]),
        // Settings: nothing a table holds, where the policy keeps computed
        // values out of them (see `settings_may_hold_data`).
        ("SELECT current_setting('my.x')", &["-"]),
        ("SHOW search_path", &["nothing (search_path)"]),
        ("SELECT query FROM pg_stat_get_activity(NULL)", &["?"]),
        ("SELECT nosuch FROM codes", &["?"]),
        ("SELECT c.nosuch FROM codes c", &["?"]),
        ("SELECT x FROM unknown_table", &["?"]),
        // The review's: a forward reference in WITH RECURSIVE, a name
        // PostgreSQL gives that this module cannot be sure of, an unread
        // FROM item's alias, a non-LATERAL subquery that must not see its
        // siblings, a function's default alias.
        (
            "WITH RECURSIVE a AS (SELECT code FROM codes), codes AS (SELECT reverse(ssn) AS code FROM patients) SELECT code FROM a",
            &["?"],
        ),
        (
            "SELECT (SELECT name FROM (SELECT (reverse(ssn) || '')::name FROM patients) s) FROM patients",
            &["patients.name+patients.ssn"],
        ),
        (
            "SELECT (SELECT t.label FROM ((SELECT 1) q CROSS JOIN (SELECT 2) z) AS t) FROM codes t",
            &["?"],
        ),
        (
            "SELECT (SELECT d.u FROM codes, (SELECT label AS u) d) FROM (SELECT reverse(ssn) AS label FROM patients) o",
            &["patients.ssn"],
        ),
        (
            "SELECT (SELECT unnest.unnest FROM unnest(ARRAY[reverse(p.ssn)])) FROM patients p, (SELECT 'x'::text AS unnest) AS unnest",
            &["patients.ssn"],
        ),
        // DML RETURNING.
        (
            "UPDATE patients SET name = name WHERE id = 1 RETURNING encode(ssn::bytea, 'hex')",
            &["patients.ssn"],
        ),
        (
            "DELETE FROM patients p WHERE id = 1 RETURNING p.email",
            &["patients.email"],
        ),
        (
            "INSERT INTO codes VALUES ('a', 'b') RETURNING label",
            &["codes.label"],
        ),
        // What cannot be followed.
        ("FETCH 1 FROM c", &["unknown"]),
        // Statements that return no rows, or may not, whatever they look
        // like: not paired with a result.
        ("WITH x AS (SELECT 1) INSERT INTO codes SELECT 'a', 'b' FROM x", &["unknown"]),
        ("(SELECT 1 AS a INTO t2)", &["unknown"]),
        ("SELECT 1 AS a INTO t1 UNION SELECT 2", &["unknown"]),
        ("EXPLAIN SELECT ssn FROM patients", &["nothing (QUERY PLAN)"]),
    ];
    let mut failures = Vec::new();
    for (sql, want) in cases {
        let got = lineage_of(sql);
        if got != *want {
            failures.push(format!("{sql}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn relation_names_include_subqueries_and_ctes() {
    let stmt = Parser::parse_sql(
        &PostgreSqlDialect {},
        "WITH t AS (SELECT * FROM a.x) SELECT (SELECT 1 FROM y), z.* FROM z, t",
    )
    .unwrap()
    .remove(0);
    let names = relation_names(&statement_shape(&stmt));
    let names: Vec<String> = names
        .into_iter()
        .map(|(s, n)| format!("{}.{n}", s.unwrap_or_default()))
        .collect();
    assert_eq!(names, [".t", ".y", ".z", "a.x"]);
}

fn outputs(sql: &str, settings_hold_data: bool) -> Outputs {
    let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0);
    resolve(&statement_shape(&stmt), &catalog(), settings_hold_data)
}

#[test]
fn settings_may_hold_data() {
    assert_eq!(outputs("SHOW my.x", true), Outputs::Unknown);
    assert_eq!(
        outputs("SELECT current_setting('my.x'), 1", true),
        Outputs::Columns(vec![
            (Lineage::Unknown, Some("current_setting".into())),
            (Lineage::none(), None)
        ])
    );
}

#[test]
fn a_column_under_another_name_is_a_copy_and_a_computed_one_is_not() {
    let Outputs::Columns(cols) = outputs(
        "SELECT s, (p.ssn), upper(ssn), b.born, x FROM patients p, born b, \
         (SELECT ssn AS x FROM patients) q WHERE false",
        false,
    ) else {
        panic!("resolved");
    };
    let cols: Vec<Lineage> = cols.into_iter().map(|(l, _)| l).collect();
    let copy = |l: &Lineage| matches!(l, Lineage::Copy(_));
    // `s` does not exist: unknown.
    assert_eq!(cols[0], Lineage::Unknown);
    assert!(copy(&cols[1]), "{:?}", cols[1]);
    assert!(!copy(&cols[2]), "{:?}", cols[2]);
    assert!(copy(&cols[3]) && copy(&cols[4]), "{cols:?}");
    // A view's renamed column is a copy of the base column.
    let Outputs::Columns(cols) = outputs("SELECT born FROM born", false) else {
        panic!("resolved");
    };
    assert!(
        matches!(&cols[0].0, Lineage::Copy(c) if c.column == "dob"),
        "{cols:?}"
    );
}
