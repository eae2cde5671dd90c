//! One walk over a parsed statement that gathers what it reads, writes and
//! calls, wherever in the tree that happens.
//!
//! The walk is sqlparser's derived visitor, so every expression, subquery
//! and table reference in every statement form is seen, including forms this
//! module never names (a subquery in a CHECK constraint, a function in a
//! DEFAULT, a table in ON CONFLICT). What the visitor does not tell us is
//! context, which is tracked here:
//!
//! - CTE scope. A name in FROM that matches a CTE in scope is not a table.
//!   Scope follows PostgreSQL: a CTE sees the CTEs before it in its WITH list
//!   (all of them, itself included, under WITH RECURSIVE), and the query body
//!   sees all of them, so `WITH patients AS (SELECT * FROM patients) ...`
//!   still reads the table. CTE bodies are recognised by address, since the
//!   visitor reports each body as a plain query.
//! - Targets. The FROM entry that names an UPDATE, DELETE or MERGE target is
//!   a write, not a read (see [`super::dml`]).
//! - Bulk reads, per query level (see [`Facts::unbounded_read`]).

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::ptr;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, Value, Visit, Visitor,
};

use super::dml::{dml, Dml};
use super::functions::{
    call_tags, is_collecting_aggregate, is_scalar_aggregate, is_set_config, is_sql_syntax_word,
    is_storable_function, is_utf8_name, relation_tags, setting_tags, NOT_UTF8,
};
use super::names::{
    from_function_name, ident, last_part, object_name, relation_name, single_part, UNREADABLE_TABLE,
};
use super::search_path::search_path_text_shadows_builtins;

const UNREADABLE_FUNCTION: &str =
    "a function name in FROM that is computed or that PostgreSQL would not read as one";

#[derive(Default)]
pub(crate) struct Facts {
    /// Derived kind tags found inside the statement.
    pub kinds: Vec<&'static str>,
    pub reads: BTreeSet<String>,
    pub writes: BTreeSet<String>,
    pub functions: BTreeSet<String>,
    /// Operator symbols used unqualified (`+`, `&&`, `|/`).
    pub operators: BTreeSet<String>,
    /// The last part of every qualified name (`p.name` -> `name`): a column,
    /// or PostgreSQL's attribute notation for a call `name(p)`.
    pub attributes: BTreeSet<String>,
    /// Every name in an expression, by its last part: the columns the
    /// statement mentions (and some other names).
    pub columns: BTreeSet<String>,
    /// The names in a WHERE, HAVING or JOIN ... ON (by their last part):
    /// columns whose values decide which rows come back.
    pub filter_columns: BTreeSet<String>,
    /// The names FROM items go by (aliases, or a table's own name): an
    /// expression naming one is a whole row.
    pub relation_aliases: BTreeSet<String>,
    /// A `*`, `t.*` or `t.*` inside a call: whole rows, every column of
    /// them under no name of its own.
    pub whole_rows: bool,
    /// Names seen in table positions outside FROM lists: statement targets,
    /// `REFERENCES`, `PARTITION OF`, `ANALYZE t`, ... The statement layer
    /// takes out those it accounts for; the rest count as reads.
    pub named: BTreeSet<String>,
    /// Some query level reads a table with no WHERE (or only a constant
    /// one, like `WHERE true`), no constant LIMIT/FETCH and is not a single
    /// row of scalar aggregates; or an UPDATE/DELETE returns every row.
    pub unbounded_read: bool,
    /// Reasons to fail closed; none holds SQL text.
    pub problems: Vec<&'static str>,
}

impl Facts {
    fn tag<I: IntoIterator<Item = &'static str>>(&mut self, tags: I) {
        for t in tags {
            if !self.kinds.contains(&t) {
                self.kinds.push(t);
            }
        }
    }
}

/// Walks `stmt`. `main_dml` is the data-modifying statement that *is* the
/// statement when it is written `WITH ... INSERT/UPDATE/DELETE/MERGE`; any
/// other data-modifying statement met on the way sits in a CTE.
pub(crate) fn collect(stmt: &Statement, main_dml: Option<&Statement>) -> Facts {
    let mut c = Collector {
        root: stmt,
        main_dml: main_dml.map(|s| s as *const Statement),
        frames: Vec::new(),
        target_factors: HashSet::new(),
        factor_name: None,
        boolean_queries: HashSet::new(),
        limited_queries: HashSet::new(),
        stores_expressions: stores_expressions(stmt),
        facts: Facts::default(),
    };
    let _ = stmt.visit(&mut c);
    c.facts
}

/// One query level's CTEs.
struct Frame {
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    /// How many of `ctes` are in scope right now.
    visible: usize,
    /// The query has a constant LIMIT or FETCH FIRST, or is a branch of a
    /// set operation (`(SELECT ...) UNION (SELECT ...) LIMIT 5`) that has.
    limited: bool,
    /// The query only feeds EXISTS, IN or ANY/ALL: its rows never reach
    /// the client, so it is no bulk read whatever its shape.
    boolean_only: bool,
}

struct Collector {
    root: *const Statement,
    main_dml: Option<*const Statement>,
    frames: Vec<Frame>,
    target_factors: HashSet<*const TableFactor>,
    /// The name of the table factor just handled: the visitor reports it
    /// again as a relation right after the factor.
    factor_name: Option<*const ObjectName>,
    /// Subqueries of EXISTS, IN and ANY/ALL met so far.
    boolean_queries: HashSet<*const Query>,
    /// Set-operation branches of a limited query.
    limited_queries: HashSet<*const Query>,
    /// The statement stores expressions the server evaluates later.
    stores_expressions: bool,
    facts: Facts,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        let this = stmt as *const Statement;
        let is_main = ptr::eq(this, self.root) || self.main_dml == Some(this);
        match dml(stmt) {
            Some(d) => self.on_dml(d, is_main),
            None if ptr::eq(this, self.root) => {}
            None => self
                .facts
                .problems
                .push("a statement nested inside another one, which is not classified"),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // FOR UPDATE/SHARE at any level takes row locks, in a subquery, a
        // derived table or a CTE as much as at the top.
        if !q.locks.is_empty() {
            self.facts.tag(["row_lock"]);
        }
        if let Some(top) = self.frames.last_mut() {
            if let Some(i) = top.ctes.iter().position(|c| ptr::eq(c.1, q)) {
                top.visible = if top.recursive { top.ctes.len() } else { i };
            }
        }
        if has_table_expression(&q.body) {
            self.facts
                .problems
                .push("a TABLE query, which is not classified");
        }
        let (ctes, recursive) = match &q.with {
            Some(w) => (
                w.cte_tables
                    .iter()
                    .map(|c| (ident(&c.alias.name), &*c.query as *const Query))
                    .collect(),
                w.recursive,
            ),
            None => (Vec::new(), false),
        };
        let visible = if recursive { ctes.len() } else { 0 };
        let this = q as *const Query;
        let limited = has_constant_limit(q) || self.limited_queries.contains(&this);
        if limited {
            branch_queries(&q.body, &mut self.limited_queries);
        }
        let boolean_only = self.boolean_queries.contains(&this)
            || self.frames.last().is_some_and(|f| f.boolean_only);
        self.frames.push(Frame {
            ctes,
            recursive,
            visible,
            limited,
            boolean_only,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.frames.pop();
        if let Some(top) = self.frames.last_mut() {
            if top.ctes.iter().any(|c| ptr::eq(c.1, q)) {
                // This CTE is done: the next one (and the body) see it.
                let done = top.ctes.iter().position(|c| ptr::eq(c.1, q)).unwrap_or(0);
                top.visible = top.visible.max(done + 1);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            // SELECT INTO creates a table from the result.
            self.facts.tag(["write", "create", "ddl"]);
            for target in &into.targets {
                match expr_name(target) {
                    Some(n) => {
                        self.facts.writes.insert(n);
                    }
                    None => self
                        .facts
                        .problems
                        .push("SELECT INTO an unrecognised target"),
                }
            }
        }
        let (limited, boolean_only) = self
            .frames
            .last()
            .map_or((false, false), |f| (f.limited, f.boolean_only));
        for e in s.selection.iter().chain(s.having.iter()) {
            names_in(e, &mut self.facts.filter_columns);
        }
        if s.projection.iter().any(|item| {
            matches!(
                item,
                sqlparser::ast::SelectItem::Wildcard(_)
                    | sqlparser::ast::SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.facts.whole_rows = true;
        }
        for twj in &s.from {
            for join in &twj.joins {
                if let Some(sqlparser::ast::JoinConstraint::On(on)) =
                    join_constraint(&join.join_operator)
                {
                    names_in(on, &mut self.facts.filter_columns);
                }
            }
        }
        // A LIMIT bounds rows, not what one row carries: a string_agg over
        // a whole table is one row.
        let limited = limited && !collects_rows(s);
        if !limited
            && !boolean_only
            && s.from.iter().any(|t| self.joins_read_table(t))
            && filters_nothing(s.selection.as_ref())
            && !is_single_row(s)
        {
            self.facts.unbounded_read = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        match f {
            TableFactor::Table { alias: Some(a), .. }
            | TableFactor::Derived { alias: Some(a), .. } => {
                self.facts.relation_aliases.insert(ident(&a.name));
            }
            TableFactor::Table { name, .. } => {
                if let Some(n) = relation_name(name) {
                    self.facts
                        .relation_aliases
                        .insert(last_part(&n).to_string());
                }
            }
            _ => {}
        }
        match f {
            TableFactor::Table { name, args, .. } => {
                self.factor_name = Some(name as *const ObjectName);
                if self.target_factors.contains(&(f as *const TableFactor)) {
                    return ControlFlow::Continue(());
                }
                if args.is_some() {
                    // `FROM pg_ls_dir('.')`: a function, not a table.
                    match from_function_name(name) {
                        Some(n) => self.call_in_from(n),
                        None => self.facts.problems.push(UNREADABLE_FUNCTION),
                    }
                    return ControlFlow::Continue(());
                }
                match relation_name(name) {
                    None => self.facts.problems.push(UNREADABLE_TABLE),
                    Some(_) if self.is_cte(name) => {}
                    Some(n) => {
                        self.facts.tag(relation_tags(&n).iter().copied());
                        self.facts.reads.insert(n);
                    }
                }
            }
            TableFactor::Function { name, .. } => match from_function_name(name) {
                Some(n) => self.call_in_from(n),
                None => self.facts.problems.push(UNREADABLE_FUNCTION),
            },
            TableFactor::UNNEST { .. } => self.call("unnest".to_string()),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if self.factor_name == Some(name as *const ObjectName) {
            self.factor_name = None;
            return ControlFlow::Continue(());
        }
        match relation_name(name) {
            Some(n) => {
                self.facts.named.insert(n);
            }
            None => self.facts.problems.push(UNREADABLE_TABLE),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Exists { subquery, .. } | Expr::InSubquery { subquery, .. } => {
                self.boolean_queries.insert(&**subquery as *const Query);
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if let Expr::Subquery(q) = &**right {
                    self.boolean_queries.insert(&**q as *const Query);
                }
            }
            _ => {}
        }
        if let Expr::Function(f) = e {
            match object_name(&f.name) {
                Some(n) => {
                    if is_set_config(&n) {
                        self.set_config(&f.args);
                    }
                    if last_part(&n) == "nullif" {
                        self.facts.operators.insert("=".into());
                    }
                    let f_name = last_part(&n);
                    let stores_computed_value = (f_name == "setval" || f_name.contains("advisory"))
                        && !all_args_literal(&f.args);
                    if stores_computed_value {
                        // A sequence's value and an advisory lock's key are
                        // read back by anyone (`currval`, `pg_locks`): a
                        // channel out that is not a masked result.
                        self.facts.tag(["channel_write"]);
                    }
                    if last_part(&n) == "pg_notify" && !arg_is_literal(&f.args, 1) {
                        // The payload goes to every listener as a
                        // NotificationResponse, which is not a result.
                        self.facts.tag(["channel_write"]);
                    }
                    let quoted = f.name.0.iter().any(|part| {
                        matches!(part, ObjectNamePart::Identifier(id) if id.quote_style.is_some())
                    });
                    if quoted && is_sql_syntax_word(last_part(&n)) {
                        // `"coalesce"(x)` is a call of whatever function
                        // has that name, not the syntax.
                        self.facts.tag(["opaque", "user_function"]);
                    }
                    self.call(n);
                }
                None => self.facts.problems.push("a computed function name"),
            }
        }
        match e {
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => match parts.as_slice() {
                [symbol] => {
                    self.facts.operators.insert(symbol.clone());
                }
                [schema, symbol] if schema.eq_ignore_ascii_case("pg_catalog") => {
                    let _ = symbol;
                }
                // OPERATOR(public.&&): somebody's operator, named.
                _ => self.facts.tag(["opaque", "user_function"]),
            },
            Expr::BinaryOp { op, .. } => {
                self.facts.operators.insert(op.to_string());
            }
            Expr::UnaryOp { op, .. } => {
                self.facts.operators.insert(op.to_string());
            }
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                self.facts.operators.insert(compare_op.to_string());
            }
            // Syntax that PostgreSQL runs as operators with no symbol in
            // the text: `=` for IN, simple CASE, IS [NOT] DISTINCT FROM
            // and NULLIF; `>=` and `<=` for BETWEEN; `~~` (`~~*`) for
            // [I]LIKE; `~` for SIMILAR TO.
            Expr::InList { .. }
            | Expr::InSubquery { .. }
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::Case {
                operand: Some(_), ..
            } => {
                self.facts.operators.insert("=".into());
                self.facts.operators.insert("<>".into());
            }
            Expr::Between { .. } => {
                self.facts
                    .operators
                    .extend([">=".to_string(), "<=".to_string()]);
            }
            Expr::Like { .. } => {
                self.facts
                    .operators
                    .extend(["~~".to_string(), "!~~".to_string()]);
            }
            Expr::ILike { .. } => {
                self.facts
                    .operators
                    .extend(["~~*".to_string(), "!~~*".to_string()]);
            }
            Expr::SimilarTo { .. } => {
                self.facts
                    .operators
                    .extend(["~".to_string(), "!~".to_string()]);
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                if let Some(last) = parts.last() {
                    self.facts.attributes.insert(ident(last));
                    self.facts.columns.insert(ident(last));
                }
            }
            Expr::Identifier(id) => {
                self.facts.columns.insert(ident(id));
            }
            Expr::QualifiedWildcard(..) => self.facts.whole_rows = true,
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    let whole = list.args.iter().any(|a| {
                        matches!(
                            a,
                            FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(_))
                                | FunctionArg::Named {
                                    arg: FunctionArgExpr::QualifiedWildcard(_),
                                    ..
                                }
                        )
                    });
                    self.facts.whole_rows |= whole;
                }
            }
            _ => {}
        }
        if let Expr::CompoundFieldAccess { root, .. } = e {
            if !matches!(**root, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                // `(x).f` is also PostgreSQL's attribute notation for the
                // call `f(x)`: `('/etc/hostname'::text).pg_read_file`.
                self.facts.problems.push(
                    "a field of a computed value, which PostgreSQL may read as a function call",
                );
            }
        }
        ControlFlow::Continue(())
    }
}

impl Collector {
    fn on_dml(&mut self, d: Dml<'_>, is_main: bool) {
        if let Some(p) = d.problem {
            self.facts.problems.push(p);
        }
        self.facts.tag([d.kind, "write"]);
        for target in &d.targets {
            // UPDATE pg_settings is SET by another name.
            self.facts.tag(relation_tags(target).iter().copied());
        }
        // A MERGE is judged like the UPDATE, DELETE or INSERT it performs.
        self.facts.tag(d.performs.iter().copied());
        if !is_main {
            self.facts.tag(["cte_write"]);
        }
        if let Some(Some(filter)) = d.filter {
            names_in(filter, &mut self.facts.filter_columns);
        }
        // UPDATE or DELETE of every row.
        let unfiltered =
            matches!(d.filter, Some(f) if filters_nothing(f)) || d.merge_unbounded || d.unselective;
        if unfiltered {
            self.facts.tag(["unbounded_write", "destructive"]);
        }
        if d.source.is_some_and(|f| self.factor_reads_table(f)) {
            // MERGE ... USING table: the whole table is read, like
            // INSERT ... SELECT * FROM table.
            self.facts.unbounded_read = true;
        }
        if d.returning {
            self.facts.reads.extend(d.targets.iter().cloned());
            if unfiltered {
                self.facts.unbounded_read = true;
            }
        }
        self.facts.writes.extend(d.targets);
        self.target_factors.extend(d.target_factors);
    }

    /// A function in FROM. `set_config` there changes a setting the way it
    /// does in the select list, but its arguments are table-function
    /// arguments this module does not read: fail closed.
    fn call_in_from(&mut self, name: String) {
        if is_set_config(&name) {
            self.facts
                .problems
                .push("set_config in FROM, which is not classified");
        }
        self.call(name);
    }

    fn call(&mut self, name: String) {
        self.facts.tag(call_tags(&name));
        if self.stores_expressions && !is_storable_function(&name) {
            self.facts.tag(["stored_code", "opaque"]);
        }
        self.facts.functions.insert(name);
    }

    /// `set_config('role', 'admin', false)` is `SET ROLE admin`.
    fn set_config(&mut self, args: &FunctionArguments) {
        self.facts.tag(["set"]);
        let literal = |arg: Option<&FunctionArg>| match arg {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
                v.value.clone().into_string()
            }
            _ => None,
        };
        let (setting, value) = match args {
            FunctionArguments::List(list) => {
                (literal(list.args.first()), literal(list.args.get(1)))
            }
            _ => (None, None),
        };
        if !arg_is_literal(args, 1) {
            // A value the statement computes (from a column, say) goes
            // into a setting the client reads back as a ParameterStatus or
            // through current_setting, outside any masked column.
            self.facts.tag(["channel_write"]);
        }
        let Some(setting) = setting.map(|s| s.to_ascii_lowercase()) else {
            self.facts
                .problems
                .push("set_config with a parameter name that is not a literal");
            return;
        };
        self.facts.tag(setting_tags(&setting).iter().copied());
        if setting == "client_encoding" && !value.as_deref().is_some_and(is_utf8_name) {
            self.facts.problems.push(NOT_UTF8);
        }
        if setting == "search_path" {
            match value.as_deref().and_then(search_path_text_shadows_builtins) {
                Some(true) => self.facts.tag(["admin"]),
                Some(false) => {}
                None => self
                    .facts
                    .problems
                    .push("set_config of search_path with a value that is not a literal list"),
            }
        }
    }

    fn is_cte(&self, name: &ObjectName) -> bool {
        let Some(n) = single_part(name) else {
            return false;
        };
        self.frames.iter().rev().any(|f| {
            f.ctes[..f.visible.min(f.ctes.len())]
                .iter()
                .any(|c| c.0 == n)
        })
    }

    fn joins_read_table(&self, t: &TableWithJoins) -> bool {
        self.factor_reads_table(&t.relation)
            || t.joins.iter().any(|j| self.factor_reads_table(&j.relation))
    }

    /// A FROM entry that reads a real table (not a CTE, function or subquery).
    fn factor_reads_table(&self, f: &TableFactor) -> bool {
        match f {
            TableFactor::Table {
                name, args: None, ..
            } => !self.is_cte(name),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.joins_read_table(table_with_joins),
            TableFactor::Pivot { table, .. }
            | TableFactor::Unpivot { table, .. }
            | TableFactor::MatchRecognize { table, .. } => self.factor_reads_table(table),
            _ => false,
        }
    }
}

/// Whether argument `index` of a call is a literal or a parameter the
/// client sends: a value it already knows.
/// Every argument is a literal (or a parameter).
fn all_args_literal(args: &FunctionArguments) -> bool {
    match args {
        FunctionArguments::List(list) => (0..list.args.len()).all(|i| arg_is_literal(args, i)),
        FunctionArguments::None => true,
        FunctionArguments::Subquery(_) => false,
    }
}

fn arg_is_literal(args: &FunctionArguments, index: usize) -> bool {
    let FunctionArguments::List(list) = args else {
        return false;
    };
    match list.args.get(index) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => {
            let mut e = e;
            // A cast of a literal is still the literal: '1'::text.
            while let Expr::Cast { expr, .. } | Expr::Nested(expr) = e {
                e = expr;
            }
            matches!(e, Expr::Value(_))
        }
        None => true,
        _ => false,
    }
}

/// Whether `stmt` stores expressions the server evaluates later, on rows
/// and in sessions the statement does not name: column defaults, checks
/// and generated columns, index expressions and predicates, domain checks,
/// partition keys, views. (CREATE TABLE AS runs its query once, now, in
/// plain sight.)
fn stores_expressions(stmt: &Statement) -> bool {
    match stmt {
        Statement::CreateTable(ct) => ct.query.is_none(),
        Statement::AlterTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateDomain(_)
        | Statement::CreateView(_)
        | Statement::AlterView { .. }
        | Statement::CreatePolicy(_)
        | Statement::AlterPolicy(_) => true,
        _ => false,
    }
}

fn has_table_expression(body: &SetExpr) -> bool {
    match body {
        SetExpr::Table(_) => true,
        SetExpr::SetOperation { left, right, .. } => {
            has_table_expression(left) || has_table_expression(right)
        }
        _ => false,
    }
}

/// The queries that make up a query body's set operation (its branches).
fn branch_queries(body: &SetExpr, out: &mut HashSet<*const Query>) {
    match body {
        SetExpr::Query(q) => {
            out.insert(&**q as *const Query);
        }
        SetExpr::SetOperation { left, right, .. } => {
            branch_queries(left, out);
            branch_queries(right, out);
        }
        _ => {}
    }
}

/// The select list uses an aggregate that gathers many rows into one value.
fn collects_rows(s: &Select) -> bool {
    struct FindCollector(bool);
    impl Visitor for FindCollector {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e {
                if object_name(&f.name).is_some_and(|n| is_collecting_aggregate(&n)) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = FindCollector(false);
    for item in &s.projection {
        let _ = item.visit(&mut finder);
    }
    finder.0
}

/// The last part of every name in `e`, subqueries included.
fn names_in(e: &Expr, out: &mut BTreeSet<String>) {
    struct Names<'a>(&'a mut BTreeSet<String>);
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(id) => {
                    self.0.insert(ident(id));
                }
                Expr::CompoundIdentifier(ids) => {
                    if let Some(last) = ids.last() {
                        self.0.insert(ident(last));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut Names(out));
}

fn join_constraint(op: &sqlparser::ast::JoinOperator) -> Option<&sqlparser::ast::JoinConstraint> {
    use sqlparser::ast::JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::CrossJoin(c)
        | J::StraightJoin(c)
        | J::AsOf { constraint: c, .. } => Some(c),
        _ => None,
    }
}

fn is_number(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Number(..)))
}

fn has_constant_limit(q: &Query) -> bool {
    let limit = match &q.limit_clause {
        Some(LimitClause::LimitOffset { limit: Some(l), .. }) => is_number(l),
        Some(LimitClause::OffsetCommaLimit { limit, .. }) => is_number(limit),
        _ => false,
    };
    // `FETCH FIRST ROW ONLY` (no quantity) is one row.
    let fetch = q.fetch.as_ref().is_some_and(|f| {
        !f.percent
            && match &f.quantity {
                Some(q) => is_number(q),
                None => true,
            }
    });
    limit || fetch
}

/// No WHERE, or one that names no column (`true`, `1 = 1`, `$1`).
fn filters_nothing(condition: Option<&Expr>) -> bool {
    match condition {
        Some(e) => is_constant(e),
        None => true,
    }
}

fn is_constant(e: &Expr) -> bool {
    struct FindColumn;
    impl Visitor for FindColumn {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut FindColumn).is_continue()
}

/// No GROUP BY and a select list computed from scalar aggregates and
/// constants only (`count(*)`, `round(avg(age), 1)`, `1 + max(a)`): one row.
fn is_single_row(s: &Select) -> bool {
    let no_grouping = matches!(&s.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let mut any_aggregate = false;
    let all_ok = !s.projection.is_empty()
        && s.projection.iter().all(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                aggregate_only(e).is_some_and(|has| {
                    any_aggregate |= has;
                    true
                })
            }
            _ => false,
        });
    no_grouping && all_ok && any_aggregate
}

/// `Some(found an aggregate)` if every column in `e` sits inside a scalar
/// aggregate; `None` otherwise (a bare column, a window, a subquery, ...).
fn aggregate_only(e: &Expr) -> Option<bool> {
    match e {
        Expr::Value(_) => Some(false),
        Expr::Nested(inner)
        | Expr::Cast { expr: inner, .. }
        | Expr::UnaryOp { expr: inner, .. } => aggregate_only(inner),
        Expr::BinaryOp { left, right, .. } => Some(aggregate_only(left)? | aggregate_only(right)?),
        Expr::Function(f) if f.over.is_none() => {
            let name = object_name(&f.name)?;
            if is_scalar_aggregate(&name) {
                return Some(true);
            }
            // A plain function of aggregates: `round(avg(age), 1)`.
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            let mut found = false;
            for arg in &list.args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(a)) => found |= aggregate_only(a)?,
                    _ => return None,
                }
            }
            Some(found)
        }
        _ => None,
    }
}

/// `SELECT ... INTO [TEMP] name` targets are written as expressions.
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => relation_name(&ObjectName::from(vec![id.clone()])),
        Expr::CompoundIdentifier(ids) => relation_name(&ObjectName::from(ids.clone())),
        _ => None,
    }
}
