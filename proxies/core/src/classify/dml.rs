//! The target of a data-modifying statement (INSERT, UPDATE, DELETE, MERGE),
//! wherever it appears: at the top, after a WITH, or inside a CTE.

use sqlparser::ast::{Expr, FromTable, Statement, TableFactor, TableObject, TableWithJoins};

use super::names::{relation_name, UNREADABLE_TABLE};

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
        problem: None,
    };
    match stmt {
        Statement::Insert(ins) => {
            d.kind = "insert";
            d.returning = ins.returning.is_some() || ins.output.is_some();
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
