//! The target of a data-modifying statement (INSERT, UPDATE, DELETE, MERGE),
//! wherever it appears: at the top, after a WITH, or inside a CTE.

use sqlparser::ast::{
    Expr, FromTable, Merge, MergeAction, OnConflict, OnConflictAction, OnInsert, Statement,
    TableFactor, TableObject, TableWithJoins,
};

use super::names::{ident, relation_name, UNREADABLE_TABLE};
use super::selective::{names_target_column, selects_rows, Target};

pub(crate) struct Dml<'a> {
    pub kind: &'static str,
    /// Normalised names of the modified tables.
    pub targets: Vec<String>,
    /// The FROM-list entries that name the target, so they are not also
    /// counted as reads (their address is their identity during the walk).
    pub target_factors: Vec<*const TableFactor>,
    /// RETURNING hands the modified rows back: a read of the target.
    pub returning: bool,
    /// `None` for INSERT and MERGE, which have no WHERE of their own.
    pub filter: Option<Option<&'a Expr>>,
    /// MERGE's source: every row of it is read.
    pub source: Option<&'a TableFactor>,
    /// What else the statement does, so it is judged like that too: a
    /// MERGE's WHEN clauses (`update`, `delete`, `insert`), an INSERT ...
    /// ON CONFLICT DO UPDATE (`update`).
    pub performs: Vec<&'static str>,
    /// A MERGE that may UPDATE or DELETE every row of its target: an
    /// UPDATE/DELETE clause whose row is chosen by nothing that names a
    /// target column (`ON true`, `ON s.one = 1`).
    pub merge_unbounded: bool,
    /// An UPDATE or DELETE whose WHERE names columns but selects no rows
    /// of its target by them (`id = id`, `id IS NOT NULL`, only the FROM
    /// or USING table's columns): see [`super::selective`].
    pub unselective: bool,
    /// Set when the statement has a shape PostgreSQL does not accept and we
    /// do not model (e.g. MySQL's multi-table DELETE): fail closed.
    pub problem: Option<&'static str>,
}

pub(crate) fn dml(stmt: &Statement) -> Option<Dml<'_>> {
    let mut d = Dml {
        kind: "",
        targets: Vec::new(),
        target_factors: Vec::new(),
        returning: false,
        filter: None,
        source: None,
        performs: Vec::new(),
        merge_unbounded: false,
        unselective: false,
        problem: None,
    };
    match stmt {
        Statement::Insert(ins) => {
            d.kind = "insert";
            d.returning = ins.returning.is_some() || ins.output.is_some();
            if let Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoUpdate(_),
                ..
            })) = &ins.on
            {
                // It rewrites the existing rows it collides with.
                d.performs.push("update");
            }
            match &ins.table {
                TableObject::TableName(name) => d.add_name(relation_name(name)),
                _ => d.problem = Some("INSERT into something other than a table name"),
            }
        }
        Statement::Update(up) => {
            d.kind = "update";
            d.returning = up.returning.is_some() || up.output.is_some();
            d.filter = Some(up.selection.as_ref());
            d.add_factor(&up.table.relation);
            let others: Vec<&TableFactor> = up
                .table
                .joins
                .iter()
                .map(|j| &j.relation)
                .chain(update_from(up).flat_map(factors))
                .collect();
            let target = Target {
                qualifiers: target_qualifiers(&up.table.relation),
                unqualified_is_target: others.is_empty(),
                self_joined: joins_itself(&up.table.relation, &others),
            };
            d.unselective = up
                .selection
                .as_ref()
                .is_some_and(|w| !selects_rows(w, &target));
            // PostgreSQL has no joins on the UPDATE target itself; anything
            // joined there is read like a FROM entry.
        }
        Statement::Delete(del) => {
            d.kind = "delete";
            d.returning = del.returning.is_some() || del.output.is_some();
            d.filter = Some(del.selection.as_ref());
            let from = match &del.from {
                FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
            };
            if del.tables.is_empty() {
                for TableWithJoins { relation, .. } in from {
                    d.add_factor(relation);
                }
                if let [only] = from.as_slice() {
                    let others: Vec<&TableFactor> = only
                        .joins
                        .iter()
                        .map(|j| &j.relation)
                        .chain(del.using.iter().flatten().flat_map(factors))
                        .collect();
                    let target = Target {
                        qualifiers: target_qualifiers(&only.relation),
                        unqualified_is_target: others.is_empty(),
                        self_joined: joins_itself(&only.relation, &others),
                    };
                    d.unselective = del
                        .selection
                        .as_ref()
                        .is_some_and(|w| !selects_rows(w, &target));
                }
            } else {
                // `DELETE t1 FROM t1 JOIN t2` (MySQL): the named tables are
                // the targets, every FROM entry is read.
                for name in &del.tables {
                    d.add_name(relation_name(name));
                }
            }
        }
        Statement::Merge(m) => {
            d.kind = "merge";
            d.returning = m.output.is_some();
            d.source = Some(&m.source);
            d.add_factor(&m.table);
            merge_clauses(&mut d, m);
        }
        _ => return None,
    }
    if d.targets.is_empty() && d.problem.is_none() {
        d.problem = Some("a data-modifying statement without a recognisable target table");
    }
    Some(d)
}

impl Dml<'_> {
    fn add_name(&mut self, name: Option<String>) {
        match name {
            Some(n) => self.targets.push(n),
            None => self.problem = Some(UNREADABLE_TABLE),
        }
    }

    fn add_factor(&mut self, factor: &TableFactor) {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => {
                self.add_name(relation_name(name));
                self.target_factors.push(factor as *const TableFactor);
            }
            _ => {
                self.problem = Some("a data-modifying statement whose target is not a plain table")
            }
        }
    }
}

/// The tables of an UPDATE's FROM list.
fn update_from(up: &sqlparser::ast::Update) -> impl Iterator<Item = &TableWithJoins> {
    use sqlparser::ast::UpdateTableFromKind;
    up.from.iter().flat_map(|f| match f {
        UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t) => t.iter(),
    })
}

/// A FROM entry and the tables joined to it.
fn factors(t: &TableWithJoins) -> impl Iterator<Item = &TableFactor> {
    std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
}

/// Whether the target table appears again among `others`.
fn joins_itself(target: &TableFactor, others: &[&TableFactor]) -> bool {
    let name = |f: &TableFactor| match f {
        TableFactor::Table { name, .. } => relation_name(name),
        _ => None,
    };
    let Some(target) = name(target) else {
        return false;
    };
    let last = |n: &str| n.rsplit('.').next().unwrap_or(n).to_string();
    others
        .iter()
        .filter_map(|f| name(f))
        .any(|n| last(&n) == last(&target))
}

/// Fills in what a MERGE's clauses do, and whether an UPDATE or DELETE
/// clause could reach every row of the target.
fn merge_clauses(d: &mut Dml<'_>, m: &Merge) {
    // An unqualified column may belong to the source (`ON one = 1`
    // matches every target row when `one` is the source's), so it does not
    // count: the safe side is to call such a MERGE unbounded.
    let target = Target {
        qualifiers: target_qualifiers(&m.table),
        unqualified_is_target: false,
        self_joined: false,
    };
    let on_bounds = names_target_column(&m.on, &target);
    for clause in &m.clauses {
        let action = match clause.action {
            MergeAction::Update(_) => "update",
            MergeAction::Delete { .. } => "delete",
            MergeAction::Insert(_) => "insert",
            MergeAction::DoNothing { .. } => continue,
        };
        if !d.performs.contains(&action) {
            d.performs.push(action);
        }
        let bounded = on_bounds
            || clause
                .predicate
                .as_ref()
                .is_some_and(|p| names_target_column(p, &target));
        if action != "insert" && !bounded {
            d.merge_unbounded = true;
        }
    }
}

/// The names a target's columns can be qualified with: its alias if it has
/// one (PostgreSQL then hides the table name), else the table's own name.
fn target_qualifiers(table: &TableFactor) -> Vec<String> {
    match table {
        TableFactor::Table {
            alias: Some(alias), ..
        } => vec![ident(&alias.name)],
        TableFactor::Table { name, .. } => relation_name(name)
            .map(|n| vec![n.rsplit('.').next().unwrap_or(&n).to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
