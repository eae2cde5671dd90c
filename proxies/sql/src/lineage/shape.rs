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
    /// SHOW of one setting (its name): the setting's value (see
    /// [`ExprRefs::settings`]).
    Show(String),
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
    /// A subquery in FROM; only a LATERAL one sees the FROM items before
    /// it.
    Derived {
        shape: Box<QueryShape>,
        alias: Option<String>,
        columns: Vec<String>,
        lateral: bool,
    },
    /// A set-returning function (`unnest(...)`, `generate_series(...)`):
    /// its columns are not known here, and every one of them is computed
    /// from its arguments.
    Function {
        refs: ExprRefs,
        alias: Option<String>,
        columns: Vec<String>,
    },
    /// A FROM item lineage does not read, under its alias if it has one:
    /// any name may come from it.
    Unknown { alias: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `*`
    Star,
    /// `t.*` (or `s.t.*`)
    QualifiedStar(Vec<String>),
    /// An expression, with the column name PostgreSQL gives it (`None`
    /// where this module cannot be sure of it); `bare` when it is just a
    /// column reference (its value is the column's).
    Expr {
        name: Option<String>,
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
        // A WITH ... INSERT/UPDATE/DELETE parses as a query: it returns
        // rows only through RETURNING, which is not followed there; a
        // SELECT ... INTO anywhere in the query makes a table instead.
        Statement::Query(q) if query_may_return_nothing(q) => StatementShape::Opaque,
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
        Statement::Explain { .. } => StatementShape::FromNothing,
        Statement::ShowVariable { variable } => {
            StatementShape::Show(variable.iter().map(ident).collect::<Vec<_>>().join("."))
        }
        s if returns_no_rows(s) => StatementShape::NoRows,
        // Anything else may answer with rows lineage cannot follow (FETCH,
        // EXECUTE, CALL, SHOW ALL, ...): the results of a message holding
        // one can no longer be paired with statements.
        _ => StatementShape::Opaque,
    }
}

/// Statements PostgreSQL answers with a command tag and never with a
/// RowDescription (COPY's data is not a RowDescription either).
fn returns_no_rows(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Set(..)
            | Statement::Reset(..)
            | Statement::Truncate(..)
            | Statement::Close { .. }
            | Statement::Copy { .. }
            | Statement::Merge(..)
            | Statement::CreateView(..)
            | Statement::CreateTable(..)
            | Statement::CreateIndex(..)
            | Statement::CreateRole(..)
            | Statement::CreateServer(..)
            | Statement::CreatePolicy(..)
            | Statement::CreateExtension(..)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction(..)
            | Statement::CreateProcedure { .. }
            | Statement::CreateTrigger(..)
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain(..)
            | Statement::CreateType { .. }
            | Statement::CreateOperator(..)
            | Statement::AlterTable(..)
            | Statement::AlterSchema(..)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterType(..)
            | Statement::AlterRole { .. }
            | Statement::AlterPolicy(..)
            | Statement::AlterFunction(..)
            | Statement::AlterOperator(..)
            | Statement::Drop { .. }
            | Statement::DropFunction(..)
            | Statement::DropDomain(..)
            | Statement::DropProcedure { .. }
            | Statement::DropPolicy(..)
            | Statement::DropExtension(..)
            | Statement::DropTrigger(..)
            | Statement::DropOperator(..)
            | Statement::Declare { .. }
            | Statement::Discard { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Comment { .. }
            | Statement::Grant(..)
            | Statement::Revoke(..)
            | Statement::Deallocate { .. }
            | Statement::Prepare { .. }
            | Statement::Lock(..)
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Vacuum(..)
            | Statement::Analyze(..)
    )
}

/// A query that is really a data-modifying statement, or that holds a
/// SELECT ... INTO at any level of its set operations.
fn query_may_return_nothing(q: &Query) -> bool {
    fn body(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(s) => s.into.is_some(),
            SetExpr::Query(q) => query_may_return_nothing(q),
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            SetExpr::Values(_) | SetExpr::Table(_) => false,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
        }
    }
    body(&q.body)
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
                out.push(function_item(refs, alias.as_ref(), Some(name)));
            }
        },
        TableFactor::Derived {
            lateral,
            subquery,
            alias,
            ..
        } => out.push(FromItem::Derived {
            shape: Box::new(query_shape(subquery)),
            alias: alias.as_ref().map(|a| ident(&a.name)),
            columns: alias.as_ref().map(alias_columns).unwrap_or_default(),
            lateral: *lateral,
        }),
        TableFactor::Function {
            name, args, alias, ..
        } => {
            let mut refs = ExprRefs::default();
            function_name_refs(name, &mut refs);
            for arg in args {
                function_arg_refs(arg, &mut refs);
            }
            out.push(function_item(refs, alias.as_ref(), Some(name)));
        }
        TableFactor::TableFunction { expr, alias } => {
            out.push(function_item(expr_refs(expr), alias.as_ref(), None));
        }
        TableFactor::UNNEST {
            alias, array_exprs, ..
        } => {
            let mut refs = ExprRefs::default();
            for e in array_exprs {
                refs.absorb(expr_refs(e));
            }
            // PostgreSQL names an unaliased unnest(...) `unnest`.
            let unnest = ObjectName::from(vec![sqlparser::ast::Ident::new("unnest")]);
            out.push(function_item(refs, alias.as_ref(), Some(&unnest)));
        }
        TableFactor::NestedJoin {
            table_with_joins: inner,
            alias: None,
        } => table_with_joins(inner, out, merges),
        other => out.push(FromItem::Unknown {
            alias: factor_alias(other),
        }),
    }
}

/// The alias of a FROM item lineage does not read, so that a qualified
/// name cannot pass it by to bind in an outer scope.
fn factor_alias(f: &TableFactor) -> Option<String> {
    let alias = match f {
        TableFactor::Table { alias, .. }
        | TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::JsonTable { alias, .. }
        | TableFactor::OpenJsonTable { alias, .. }
        | TableFactor::NestedJoin { alias, .. }
        | TableFactor::Pivot { alias, .. }
        | TableFactor::Unpivot { alias, .. }
        | TableFactor::MatchRecognize { alias, .. } => alias.as_ref(),
        _ => None,
    };
    alias.map(|a| ident(&a.name))
}

/// A set-returning function in FROM: without an alias, PostgreSQL calls it
/// by the function's name.
fn function_item(
    refs: ExprRefs,
    alias: Option<&TableAlias>,
    name: Option<&ObjectName>,
) -> FromItem {
    let default = name
        .and_then(object_name)
        .map(|n| last_part(&n).to_string());
    FromItem::Function {
        refs,
        alias: alias.map(|a| ident(&a.name)).or(default),
        columns: alias.map(alias_columns).unwrap_or_default(),
    }
}

fn relation(name: &ObjectName, alias: Option<String>, columns: Vec<String>) -> FromItem {
    // A name PostgreSQL would not read as a table (the classifier refuses
    // those statements anyway) or one with a database part: not followed.
    let Some(_) = relation_name(name) else {
        return FromItem::Unknown { alias };
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
        _ => FromItem::Unknown { alias },
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
            name: Some(ident(alias)),
            refs: expr_refs(expr),
            bare: is_bare(expr),
        },
        SelectItem::Wildcard(_) => Output::Star,
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
            Output::QualifiedStar(name_parts(n))
        }
        // Forms PostgreSQL does not have: unknown.
        _ => Output::Expr {
            name: None,
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
/// (`FigureColname`), where this module can be sure of it: a column's name,
/// a function's name, the inner name of a cast, `case`, `array`, `exists`.
/// `None` otherwise (PostgreSQL's `?column?`, a type's name, the names of
/// forms sqlparser does not parse as calls such as `substring` and
/// `trim`): a reference to such a column by name cannot be bound to it
/// with certainty.
fn figure_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(ident(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident),
        Expr::Function(f) => object_name(&f.name).map(|n| last_part(&n).to_string()),
        Expr::Cast { expr, .. } | Expr::Nested(expr) | Expr::Collate { expr, .. } => {
            figure_name(expr)
        }
        Expr::Case { .. } => Some("case".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Exists { .. } => Some("exists".into()),
        _ => None,
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
