//! What lineage costs next to the classification it rides on, per
//! statement, on one core:
//!
//! - `classify`: the whole classification of the text (tokenise, lexer
//!   guard, parse, walk; the lineage shape is built in this walk too);
//! - `shape`: building the lineage shape alone from the parsed statement
//!   (the part of `classify` that lineage adds);
//! - `resolve`: binding the shape to a catalog of a few tables and a view
//!   (done per result, after the catalog lookup, which is cached).
//!
//! The target (issue 19): `shape` + `resolve` well under `classify`.
//! Run: `cargo bench --bench lineage -p vigil-sql`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use vigil_sql::classify::classify;
use vigil_sql::lineage::{
    resolve, statement_shape, view_shape, ColumnInfo, RelationInfo, RelationKind, Relations,
};

const STATEMENTS: &[(&str, &str)] = &[
    ("point", "SELECT id, name, ssn FROM patients WHERE id = $1"),
    (
        "computed",
        "SELECT encode(convert_to(p.ssn, 'UTF8'), 'base64'), upper(p.name) || ' ' || p.email, \
         now() FROM patients p WHERE p.id = 1",
    ),
    (
        "joins_and_subqueries",
        "WITH recent AS (SELECT patient_id, max(admitted) AS last FROM visits GROUP BY patient_id) \
         SELECT p.name, r.last, (SELECT count(*) FROM visits v WHERE v.patient_id = p.id) AS n, \
         row_to_json(p) FROM patients p JOIN recent r ON r.patient_id = p.id \
         WHERE p.id > 10 ORDER BY r.last DESC LIMIT 20",
    ),
    ("view", "SELECT born, upper(name) FROM born_view WHERE id = 3"),
];

struct Catalog(HashMap<String, Vec<Arc<RelationInfo>>>);

impl Relations for Catalog {
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

fn relation(name: &str, cols: &[(&str, u32)], kind: RelationKind) -> Arc<RelationInfo> {
    Arc::new(RelationInfo {
        schema: "public".into(),
        name: name.into(),
        columns: cols
            .iter()
            .map(|(n, t)| ColumnInfo {
                name: (*n).into(),
                type_oid: *t,
            })
            .collect(),
        kind,
    })
}

fn catalog() -> Catalog {
    let view = view_shape("SELECT id, dob AS born, name FROM patients").map(Arc::new);
    let mut m = HashMap::new();
    m.insert(
        "patients".to_string(),
        vec![relation(
            "patients",
            &[
                ("id", 23),
                ("name", 25),
                ("ssn", 25),
                ("dob", 1082),
                ("email", 25),
            ],
            RelationKind::Table,
        )],
    );
    m.insert(
        "visits".to_string(),
        vec![relation(
            "visits",
            &[
                ("id", 23),
                ("patient_id", 23),
                ("admitted", 1184),
                ("note", 25),
            ],
            RelationKind::Table,
        )],
    );
    m.insert(
        "born_view".to_string(),
        vec![relation(
            "born_view",
            &[("id", 23), ("born", 1082), ("name", 25)],
            RelationKind::View(view),
        )],
    );
    Catalog(m)
}

fn benches(c: &mut Criterion) {
    let catalog = catalog();
    for (name, sql) in STATEMENTS {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        let shape = statement_shape(&stmt);
        c.bench_function(&format!("classify/{name}"), |b| {
            b.iter(|| classify(black_box(sql)))
        });
        c.bench_function(&format!("shape/{name}"), |b| {
            b.iter(|| statement_shape(black_box(&stmt)))
        });
        c.bench_function(&format!("resolve/{name}"), |b| {
            b.iter(|| resolve(black_box(&shape), &catalog, false))
        });
    }
}

criterion_group!(lineage, benches);
criterion_main!(lineage);
