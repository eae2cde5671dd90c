//! From a parsed statement to its [`QueryShape`]: the query reduced to what
//! lineage needs. Literals, predicates, ordering and grouping are dropped;
//! what stays is which relations each level reads (and under which alias)
//! and which names each output expression mentions.
//!
//! Built once per statement text, by the classifier's walk, before any
//! catalog is known: names are kept as written (normalised), and
//! [`resolve`](super::resolve) binds them to columns later.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Delete, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, Insert, JoinOperator,
    ObjectName, ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind,
    SetExpr, Statement, TableAlias, TableFactor, TableObject, TableWithJoins, Update,
    UpdateTableFromKind, Visit, Visitor,
};

use crate::classify::names::{ident, object_name, relation_name};
use crate::classify::{is_builtin_function, last_part};

/// What a statement returns, as far as lineage goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatementShape {
    /// No rows (INSERT without RETURNING, DDL, SET, ...).
    NoRows,
    /// Rows of this query (SELECT, VALUES, set operations, RETURNING).
    Rows(QueryShape),
    /// Rows computed from no table and no session state: EXPLAIN's plan.
    FromNothing,
    /// SHOW: a setting's value (see [`ExprRefs::settings`]).
    Show,
    /// Rows the gateway cannot follow to their columns: SHOW (settings an
    /// agent may have filled), FETCH, EXECUTE, CALL, anything unreadable.
    Opaque,
}

/// One query level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryShape {
    pub(crate) ctes: Vec<CteShape>,
    pub(crate) body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CteShape {
    pub name: String,
    pub columns: Vec<String>,
    pub shape: QueryShape,
    /// Declared in `WITH RECURSIVE`: it may read itself.
    pub recursive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    Select {
        from: Vec<FromItem>,
        outputs: Vec<Output>,
        /// A JOIN ... USING or NATURAL JOIN merges columns, so `*` does
        /// not expand to every column of every relation.
        merges_columns: bool,
    },
    /// UNION / INTERSECT / EXCEPT: each output column comes from either side.
    SetOperation(Box<Body>, Box<Body>),
    /// `VALUES (...), (...)`: one list of expressions per row.
    Values(Vec<Vec<ExprRefs>>),
    /// A parenthesised query with its own WITH.
    Nested(Box<QueryShape>),
    /// A form lineage does not follow: every output is unknown.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FromItem {
    /// A table, view or CTE, by name.
    Relation {
        schema: Option<String>,
        name: String,
        alias: Option<String>,
        columns: Vec<String>,
    },
    /// A subquery in FROM.
    Derived {
        shape: Box<QueryShape>,
        alias: Option<String>,
        columns: Vec<String>,
    },
    /// A set-returning function (`unnest(...)`, `generate_series(...)`):
    /// its columns are not known here, and every one of them is computed
    /// from its arguments.
    Function {
        refs: ExprRefs,
        alias: Option<String>,
        columns: Vec<String>,
    },
    /// A FROM item lineage does not read: any name may come from it.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `*`
    Star,
    /// `t.*` (or `s.t.*`)
    QualifiedStar(Vec<String>),
    /// An expression, with the column name PostgreSQL gives it; `bare`
    /// when it is just a column reference (its value is the column's).
    Expr {
        name: String,
        refs: ExprRefs,
        bare: bool,
    },
}

/// What one expression reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExprRefs {
    /// Column references as written: `ssn`, `p.ssn`, `public.patients.ssn`
    /// (or a relation name alone: a whole-row reference).
    pub names: Vec<Vec<String>>,
    /// `t.*` inside an expression (`row_to_json(p.*)`).
    pub whole_rows: Vec<Vec<String>>,
    /// Subqueries whose outputs feed the value.
    pub subqueries: Vec<QueryShape>,
    /// Calls code that may read tables or other sessions' state (a
    /// function not PostgreSQL's own, `pg_stat_*`, ...): the value's
    /// lineage is unknown.
    pub opaque: bool,
    /// Reads a setting (`current_setting`): unknown lineage where the
    /// session's settings may hold data an agent put there.
    pub settings: bool,
}

/// The shape of one statement.
pub fn statement_shape(stmt: &Statement) -> StatementShape {
    match stmt {
        // SELECT ... INTO makes a table and returns no rows.
        Statement::Query(q) if q.body.as_select().is_some_and(|s| s.into.is_some()) => {
            StatementShape::NoRows
        }
        Statement::Query(q) => StatementShape::Rows(query_shape(q)),
        Statement::Insert(insert) => match &insert.returning {
            Some(items) => insert_returning(insert, items),
            None => StatementShape::NoRows,
        },
        Statement::Update(update) => match &update.returning {
            Some(items) => update_returning(update, items),
            None => StatementShape::NoRows,
        },
        Statement::Delete(delete) => match &delete.returning {
            Some(items) => delete_returning(delete, items),
            None => StatementShape::NoRows,
        },
        Statement::Explain { .. } | Statement::ExplainTable { .. } => StatementShape::FromNothing,
        Statement::ShowVariable { .. } => StatementShape::Show,
        Statement::ShowVariables { .. }
        | Statement::Fetch { .. }
        | Statement::Execute { .. }
        | Statement::Call(_) => StatementShape::Opaque,
        // Anything else PostgreSQL answers with rows is not parsed into a
        // form the classifier accepts; DDL, SET, transaction control and
        // the like answer with a tag only.
        _ => StatementShape::NoRows,
    }
}

fn returning(from: Vec<FromItem>, items: &[SelectItem]) -> StatementShape {
    StatementShape::Rows(QueryShape {
        ctes: Vec::new(),
        body: Body::Select {
            from,
            outputs: items.iter().map(output).collect(),
            merges_columns: false,
        },
    })
}

fn insert_returning(insert: &Insert, items: &[SelectItem]) -> StatementShape {
    let TableObject::TableName(name) = &insert.table else {
        return StatementShape::Opaque;
    };
    let alias = insert.table_alias.as_ref().map(|a| ident(&a.alias));
    returning(vec![relation(name, alias, Vec::new())], items)
}

fn update_returning(update: &Update, items: &[SelectItem]) -> StatementShape {
    let mut from = Vec::new();
    table_with_joins(&update.table, &mut from, &mut false);
    match &update.from {
        Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) => {
            for twj in t {
                table_with_joins(twj, &mut from, &mut false);
            }
        }
        None => {}
    }
    returning(from, items)
}

fn delete_returning(delete: &Delete, items: &[SelectItem]) -> StatementShape {
    let mut from = Vec::new();
    let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &delete.from;
    for twj in tables.iter().chain(delete.using.iter().flatten()) {
        table_with_joins(twj, &mut from, &mut false);
    }
    returning(from, items)
}

/// The shape of a query (also a view's definition).
pub fn query_shape(q: &Query) -> QueryShape {
    let mut ctes = Vec::new();
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            ctes.push(CteShape {
                name: ident(&cte.alias.name),
                columns: alias_columns(&cte.alias),
                shape: query_shape(&cte.query),
                recursive: with.recursive,
            });
        }
    }
    QueryShape {
        ctes,
        body: set_expr(&q.body),
    }
}

fn set_expr(body: &SetExpr) -> Body {
    match body {
        SetExpr::Select(s) => select(s),
        SetExpr::Query(q) => Body::Nested(Box::new(query_shape(q))),
        SetExpr::SetOperation { left, right, .. } => {
            Body::SetOperation(Box::new(set_expr(left)), Box::new(set_expr(right)))
        }
        SetExpr::Values(values) => Body::Values(
            values
                .rows
                .iter()
                .map(|row| row.iter().map(expr_refs).collect())
                .collect(),
        ),
        // `TABLE name`, DML in a set position: not followed.
        _ => Body::Unknown,
    }
}

fn select(s: &Select) -> Body {
    let mut from = Vec::new();
    let mut merges_columns = false;
    for twj in &s.from {
        table_with_joins(twj, &mut from, &mut merges_columns);
    }
    Body::Select {
        from,
        outputs: s.projection.iter().map(output).collect(),
        merges_columns,
    }
}

fn table_with_joins(twj: &TableWithJoins, out: &mut Vec<FromItem>, merges: &mut bool) {
    table_factor(&twj.relation, out, merges);
    for join in &twj.joins {
        if join_merges_columns(&join.join_operator) {
            *merges = true;
        }
        table_factor(&join.relation, out, merges);
    }
}

fn join_merges_columns(op: &JoinOperator) -> bool {
    use sqlparser::ast::JoinConstraint;
    let constraint = match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c) => c,
        _ => return false,
    };
    matches!(
        constraint,
        JoinConstraint::Using(_) | JoinConstraint::Natural
    )
}

fn table_factor(f: &TableFactor, out: &mut Vec<FromItem>, merges: &mut bool) {
    match f {
        TableFactor::Table {
            name, alias, args, ..
        } => match args {
            None => out.push(relation(
                name,
                alias.as_ref().map(|a| ident(&a.name)),
                alias.as_ref().map(alias_columns).unwrap_or_default(),
            )),
            Some(args) => {
                let mut refs = ExprRefs::default();
                function_name_refs(name, &mut refs);
                for arg in &args.args {
                    function_arg_refs(arg, &mut refs);
                }
                out.push(function_item(refs, alias.as_ref()));
            }
        },
        TableFactor::Derived {
            subquery, alias, ..
        } => out.push(FromItem::Derived {
            shape: Box::new(query_shape(subquery)),
            alias: alias.as_ref().map(|a| ident(&a.name)),
            columns: alias.as_ref().map(alias_columns).unwrap_or_default(),
        }),
        TableFactor::Function {
            name, args, alias, ..
        } => {
            let mut refs = ExprRefs::default();
            function_name_refs(name, &mut refs);
            for arg in args {
                function_arg_refs(arg, &mut refs);
            }
            out.push(function_item(refs, alias.as_ref()));
        }
        TableFactor::TableFunction { expr, alias } => {
            out.push(function_item(expr_refs(expr), alias.as_ref()));
        }
        TableFactor::UNNEST {
            alias, array_exprs, ..
        } => {
            let mut refs = ExprRefs::default();
            for e in array_exprs {
                refs.absorb(expr_refs(e));
            }
            out.push(function_item(refs, alias.as_ref()));
        }
        TableFactor::NestedJoin {
            table_with_joins: inner,
            alias: None,
        } => table_with_joins(inner, out, merges),
        _ => out.push(FromItem::Unknown),
    }
}

fn function_item(refs: ExprRefs, alias: Option<&TableAlias>) -> FromItem {
    FromItem::Function {
        refs,
        alias: alias.map(|a| ident(&a.name)),
        columns: alias.map(alias_columns).unwrap_or_default(),
    }
}

fn relation(name: &ObjectName, alias: Option<String>, columns: Vec<String>) -> FromItem {
    // A name PostgreSQL would not read as a table (the classifier refuses
    // those statements anyway) or one with a database part: not followed.
    let Some(_) = relation_name(name) else {
        return FromItem::Unknown;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(ident(id)),
            ObjectNamePart::Function(_) => None,
        })
        .collect();
    match parts.as_slice() {
        [table] => FromItem::Relation {
            schema: None,
            name: table.clone(),
            alias,
            columns,
        },
        [schema, table] => FromItem::Relation {
            schema: Some(schema.clone()),
            name: table.clone(),
            alias,
            columns,
        },
        _ => FromItem::Unknown,
    }
}

fn alias_columns(alias: &TableAlias) -> Vec<String> {
    alias.columns.iter().map(|c| ident(&c.name)).collect()
}

fn output(item: &SelectItem) -> Output {
    match item {
        SelectItem::UnnamedExpr(e) => Output::Expr {
            name: figure_name(e),
            refs: expr_refs(e),
            bare: is_bare(e),
        },
        SelectItem::ExprWithAlias { expr, alias } => Output::Expr {
            name: ident(alias),
            refs: expr_refs(expr),
            bare: is_bare(expr),
        },
        SelectItem::Wildcard(_) => Output::Star,
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
            Output::QualifiedStar(name_parts(n))
        }
        // Forms PostgreSQL does not have: unknown.
        _ => Output::Expr {
            name: "?column?".into(),
            refs: ExprRefs {
                opaque: true,
                ..ExprRefs::default()
            },
            bare: false,
        },
    }
}

/// A column reference and nothing else (parentheses aside).
fn is_bare(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Nested(inner) => is_bare(inner),
        _ => false,
    }
}

fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => ident(id),
            // Never a real name: resolves to nothing, so unknown.
            ObjectNamePart::Function(_) => "\0".to_string(),
        })
        .collect()
}

/// The column name PostgreSQL gives an unaliased expression
/// (`FigureColname`): a column's name, a function's name, the inner name
/// of a cast, `case`, `array`, `row`, else `?column?`.
fn figure_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => ident(id),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident).unwrap_or_default(),
        Expr::Function(f) => object_name(&f.name)
            .map(|n| last_part(&n).to_string())
            .unwrap_or_else(|| "?column?".into()),
        // PostgreSQL names a cast of an unnamed value after the type;
        // `?column?` here only means an outer reference by that name is
        // unknown.
        Expr::Cast { expr, .. } | Expr::Nested(expr) => figure_name(expr),
        Expr::Case { .. } => "case".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Subquery(q) => match q.body.as_select().and_then(|s| s.projection.first()) {
            Some(SelectItem::UnnamedExpr(inner)) => figure_name(inner),
            Some(SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
            _ => "?column?".into(),
        },
        _ => "?column?".into(),
    }
}

/// Builtins that read settings, which an agent may have filled.
const SETTING_READERS: &[&str] = &["current_setting", "pg_show_all_settings"];

/// Builtins whose value comes from other sessions or other storage, not
/// from their arguments.
const STATE_READERS: &[&str] = &[
    "current_query",
    "pg_listening_channels",
    "pg_cursor",
    "pg_prepared_statement",
];

fn reads_state(function: &str) -> bool {
    let f = last_part(function);
    STATE_READERS.contains(&f) || f.starts_with("pg_stat_") || f.starts_with("lo_")
}

impl ExprRefs {
    fn absorb(&mut self, other: ExprRefs) {
        self.names.extend(other.names);
        self.whole_rows.extend(other.whole_rows);
        self.subqueries.extend(other.subqueries);
        self.opaque |= other.opaque;
        self.settings |= other.settings;
    }
}

fn function_name_refs(name: &ObjectName, refs: &mut ExprRefs) {
    match object_name(name) {
        Some(n) if is_builtin_function(&n) && SETTING_READERS.contains(&last_part(&n)) => {
            refs.settings = true;
        }
        Some(n) if is_builtin_function(&n) && !reads_state(&n) => {}
        _ => refs.opaque = true,
    }
}

fn function_arg_refs(arg: &FunctionArg, refs: &mut ExprRefs) {
    let arg = match arg {
        FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
        FunctionArg::Unnamed(arg) => arg,
    };
    match arg {
        FunctionArgExpr::Expr(e) => refs.absorb(expr_refs(e)),
        FunctionArgExpr::QualifiedWildcard(n) => refs.whole_rows.push(name_parts(n)),
        // count(*) counts rows: no value flows.
        FunctionArgExpr::Wildcard => {}
        FunctionArgExpr::WildcardWithOptions(_) => refs.opaque = true,
    }
}

/// What one expression reads: every name, whole row and subquery in it.
/// Over-approximates on purpose: names in a CASE condition, a window's
/// ORDER BY or an aggregate's FILTER count as sources too.
pub(crate) fn expr_refs(e: &Expr) -> ExprRefs {
    let mut v = RefCollector {
        refs: ExprRefs::default(),
        query_depth: 0,
    };
    let _ = e.visit(&mut v);
    v.refs
}

struct RefCollector {
    refs: ExprRefs,
    /// Inside a subquery: its names are its own, resolved with its shape.
    query_depth: usize,
}

impl Visitor for RefCollector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.query_depth == 0 {
            self.refs.subqueries.push(query_shape(q));
        }
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.query_depth > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Identifier(id) => self.refs.names.push(vec![ident(id)]),
            Expr::CompoundIdentifier(ids) => self.refs.names.push(ids.iter().map(ident).collect()),
            Expr::QualifiedWildcard(n, _) => self.refs.whole_rows.push(name_parts(n)),
            Expr::Function(f) => {
                function_name_refs(&f.name, &mut self.refs);
                if let FunctionArguments::List(list) = &f.args {
                    for arg in &list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(n))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::QualifiedWildcard(n),
                            ..
                        } = arg
                        {
                            self.refs.whole_rows.push(name_parts(n));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
