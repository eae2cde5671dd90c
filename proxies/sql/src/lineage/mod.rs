//! Column lineage: which table columns each output column of a statement is
//! computed from.
//!
//! A `RowDescription` names the table column behind a result column only
//! while it is a plain column; `encode(ssn::bytea, 'base64')` comes back as
//! a computed column with no origin, and a detector cannot recognise the
//! encoded value. Lineage follows the value through the statement instead:
//! every output column gets the set of table columns its expression reads
//! (through functions, casts, CASE, aggregates, window functions,
//! subqueries, CTEs, set operations, joins, `*` and `t.*`, row and array
//! constructors, LATERAL), and views are followed to their base columns
//! through their definitions. Masking then gives a computed value the rule
//! of the columns it comes from, and leaves a value computed from no column
//! at all (`now()`, a literal, a parameter) alone.
//!
//! Two steps, so that the costly one runs once per statement text:
//!
//! 1. [`statement_shape`] (at classification, from the parsed statement,
//!    no catalog): the query reduced to relations per level and the names
//!    each output expression mentions;
//! 2. [`resolve`] (when a result's columns are known): binds the names to
//!    the catalog's relations and columns ([`Relations`]).
//!
//! # Fail closed
//!
//! Lineage is [`Lineage::Unknown`] (and masking redacts) whenever a name
//! cannot be bound with certainty: a relation the catalog does not know, a
//! name found in no scope, a function that is not PostgreSQL's own or that
//! reads session state (`current_setting`, `SHOW`), a FROM item this module
//! does not read, a `*` whose width is unsure (NATURAL JOIN, USING, a
//! set-returning function), a view nested deeper than [`MAX_VIEW_DEPTH`] or
//! whose definition does not parse, FETCH and EXECUTE. Where a name could
//! mean more than one column (a table name in several schemas, a column of
//! a set-returning function), every candidate counts.
//!
//! Sources over-approximate on purpose: a name in a CASE condition, a
//! window's ORDER BY or an aggregate's FILTER is a source too (`CASE WHEN
//! ssn LIKE '1%' THEN 1 END` is masked). Predicates in WHERE, JOIN ... ON
//! and HAVING are not: inference from which rows match is not masking's
//! job (see docs/policy.md, `predicate_on_masked`).

mod resolve;
mod shape;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use resolve::{query_relation_names, relation_names, resolve, Outputs, MAX_VIEW_DEPTH};
pub use shape::{query_shape, statement_shape, QueryShape, StatementShape};

/// A table column, as masking rules name it, with its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// The column's type OID (`pg_attribute.atttypid`).
    pub type_oid: u32,
}

/// Where one output column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lineage {
    /// Exactly the value of this column, under whatever name (a view's
    /// column, a subquery's alias): the column's own rule applies whole.
    Copy(SourceColumn),
    /// Computed from these table columns only (none: from literals,
    /// parameters and PostgreSQL's own functions that read no table).
    Known(BTreeSet<SourceColumn>),
    /// Could not be established: treat as the most sensitive column.
    Unknown,
}

impl Lineage {
    pub fn none() -> Lineage {
        Lineage::Known(BTreeSet::new())
    }

    /// A table column itself.
    pub fn column(c: SourceColumn) -> Lineage {
        Lineage::Copy(c)
    }

    /// Adds `other`'s sources (the result is computed, no longer a copy);
    /// unknown absorbs everything.
    pub fn union(&mut self, other: &Lineage) {
        if let Lineage::Copy(c) = self {
            *self = Lineage::Known(BTreeSet::from([c.clone()]));
        }
        match (&mut *self, other) {
            (Lineage::Unknown, _) => {}
            (_, Lineage::Unknown) => *self = Lineage::Unknown,
            (Lineage::Known(a), Lineage::Known(b)) => a.extend(b.iter().cloned()),
            (Lineage::Known(a), Lineage::Copy(c)) => {
                a.insert(c.clone());
            }
            (Lineage::Copy(_), _) => unreachable!("turned into Known above"),
        }
    }

    /// The columns it comes from; `None` when unknown.
    pub fn sources(&self) -> Option<Vec<&SourceColumn>> {
        match self {
            Lineage::Copy(c) => Some(vec![c]),
            Lineage::Known(s) => Some(s.iter().collect()),
            Lineage::Unknown => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Lineage::Unknown)
    }
}

/// A column of a relation in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub type_oid: u32,
}

/// What a relation is, as far as lineage goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelationKind {
    /// Rows stored in it: a table, a partitioned or foreign table.
    Table,
    /// A view or materialized view, with the shape of its definition
    /// (`None`: the definition did not parse, so its columns are unknown).
    View(Option<Arc<QueryShape>>),
}

/// A relation the catalog knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationInfo {
    pub schema: String,
    pub name: String,
    /// In column-number order, dropped columns left out.
    pub columns: Vec<ColumnInfo>,
    pub kind: RelationKind,
}

/// The catalog, as lineage asks it.
pub trait Relations {
    /// Every relation called `name`: in `schema`, or in any schema when
    /// `schema` is `None` (the session's search path is not known here, so
    /// every schema's relation of that name is a candidate).
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Arc<RelationInfo>>;
}

/// The shapes of one client message's statements that return rows, in
/// order: the k-th `RowDescription` of the message's run describes the k-th
/// of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MessageShapes {
    /// Not known (or which statement a result belongs to is not certain):
    /// every computed column is redacted.
    #[default]
    Unknown,
    Known {
        shapes: Arc<Vec<Arc<StatementShape>>>,
        /// Whether the session's settings may hold values an agent
        /// computed from tables (its policy lets `channel_write` through):
        /// then `SHOW` and `current_setting` are unknown lineage.
        settings_hold_data: bool,
        /// The message is a read that changes nothing (see
        /// `classify::free_read`), its relations checked against the
        /// catalog: its record may become durable while it runs, its
        /// results waiting for the record. Unknown shapes never are.
        free_read: bool,
    },
}

impl MessageShapes {
    /// From a message's classification. Unknown when it is unclassified,
    /// when a statement calls code that is not PostgreSQL's own (its body
    /// may read any table), and when a statement that may or may not
    /// return rows (EXECUTE, FETCH, CALL, SHOW) shares the message with
    /// another: the results could no longer be paired with statements.
    pub fn of(
        class: &crate::classify::Classification,
        settings_hold_data: bool,
        free_read: bool,
    ) -> MessageShapes {
        if class.unclassified.is_some() {
            return MessageShapes::Unknown;
        }
        let several = class.statements.len() > 1;
        let mut shapes = Vec::new();
        for stmt in &class.statements {
            let Some(shape) = &stmt.shape else {
                return MessageShapes::Unknown;
            };
            let shape = if stmt.has_kind("user_function") {
                Arc::new(StatementShape::Opaque)
            } else {
                shape.clone()
            };
            match &*shape {
                StatementShape::NoRows => {}
                StatementShape::Opaque if several => return MessageShapes::Unknown,
                _ => shapes.push(shape),
            }
        }
        MessageShapes::Known {
            shapes: Arc::new(shapes),
            settings_hold_data,
            free_read,
        }
    }

    /// Whether the message is a free read (see the `free_read` field).
    pub fn is_free_read(&self) -> bool {
        matches!(
            self,
            MessageShapes::Known {
                free_read: true,
                ..
            }
        )
    }

    /// The shape of the statement whose result is the `index`-th of the
    /// message, and whether settings may hold data.
    pub fn nth(&self, index: usize) -> Option<(&StatementShape, bool)> {
        match self {
            MessageShapes::Known {
                shapes,
                settings_hold_data,
                ..
            } => shapes.get(index).map(|s| (&**s, *settings_hold_data)),
            MessageShapes::Unknown => None,
        }
    }
}

/// The shape of a view definition as `pg_get_viewdef` prints it; `None`
/// when it does not parse as one query.
pub fn view_shape(definition: &str) -> Option<QueryShape> {
    use sqlparser::parser::Parser;
    let statements = Parser::parse_sql(crate::Dialect::PostgreSql.parser(), definition).ok()?;
    match statements.as_slice() {
        [sqlparser::ast::Statement::Query(q)] => Some(query_shape(q)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
