//! One parsed statement -> its [`StatementClass`]: the main kind and the
//! tags and objects that follow from the statement's form. What sits inside
//! it (subqueries, function calls, CTEs) comes from [`super::collect`].

use std::collections::BTreeSet;

use sqlparser::ast::{
    AlterFunctionAction, AlterFunctionOperation, AlterSchemaOperation, CommentObject, CopySource,
    CopyTarget, CreateTableLikeKind, DiscardObject, Expr, FunctionSecurity, ObjectName, ObjectType,
    Reset, SetExpr, Statement, UserDefinedTypeRepresentation, UtilityOption, Value,
};

use super::collect::collect;
use super::ddl::{
    alter_table, column_references, constraint_references, create_function, grant_objects,
};
use super::dml::dml;
use super::functions::call_tags;
use super::names::{ident, object_name, relation_name, UNREADABLE_TABLE};
use super::session::{is_role_setting, set};
use super::StatementClass;

/// Classifies one statement. The second value lists reasons to fail closed
/// (none holds SQL text); the class is still filled in as far as it goes.
pub(crate) fn classify_statement(stmt: &Statement) -> (StatementClass, Vec<&'static str>) {
    let mut b = Builder::default();
    match stmt {
        // Both wrap a whole statement that is classified on its own.
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => explain(&mut b, *analyze, options.as_deref(), statement),
        Statement::Prepare {
            name, statement, ..
        } => {
            b.kind("prepare");
            let (inner, problems) = classify_statement(statement);
            b.problems.extend(problems);
            b.class.prepares = Some((ident(name), Box::new(inner)));
        }
        _ => {
            let main_dml = describe(&mut b, stmt);
            let facts = collect(stmt, main_dml);
            b.kinds(&facts.kinds);
            b.class.reads.extend(facts.reads);
            b.class.writes.extend(facts.writes);
            b.class.functions.extend(facts.functions);
            b.class.operators.extend(facts.operators);
            b.class.attributes.extend(facts.attributes);
            b.class.columns.extend(facts.columns);
            b.class.filter_columns.extend(facts.filter_columns);
            b.class.copies_whole_rows |= facts.whole_rows
                || facts
                    .relation_aliases
                    .iter()
                    .any(|a| b.class.columns.contains(a));
            b.class.unbounded_read |= facts.unbounded_read;
            b.problems.extend(facts.problems);
            // Names in table positions the statement's own form does not
            // account for (REFERENCES, PARTITION OF, ANALYZE t) count as reads.
            for name in facts.named {
                if !b.accounted.contains(&name) && !b.class.writes.contains(&name) {
                    b.class.reads.insert(name);
                }
            }
        }
    }
    b.finish()
}

#[derive(Default)]
pub(super) struct Builder {
    pub(super) class: StatementClass,
    pub(super) problems: Vec<&'static str>,
    /// Names the statement's form already placed in reads or writes.
    accounted: BTreeSet<String>,
}

impl Builder {
    pub(super) fn kind(&mut self, k: &str) {
        self.class.add_kind(k);
    }

    pub(super) fn kinds(&mut self, ks: &[&str]) {
        for k in ks {
            self.kind(k);
        }
    }

    pub(super) fn write(&mut self, name: &ObjectName) {
        match relation_name(name) {
            Some(n) => {
                self.accounted.insert(n.clone());
                self.class.writes.insert(n);
            }
            None => self.problems.push(UNREADABLE_TABLE),
        }
    }

    pub(super) fn read(&mut self, name: &ObjectName) {
        match relation_name(name) {
            Some(n) => {
                self.accounted.insert(n.clone());
                self.class.reads.insert(n);
            }
            None => self.problems.push(UNREADABLE_TABLE),
        }
    }

    pub(super) fn function(&mut self, name: &ObjectName) {
        match object_name(name) {
            Some(n) => {
                self.kinds(&call_tags(&n));
                self.class.functions.insert(n);
            }
            None => self.problems.push("a computed function name"),
        }
    }

    pub(super) fn unclassified(&mut self, why: &'static str) {
        self.kind("other");
        self.problems.push(why);
    }

    fn finish(mut self) -> (StatementClass, Vec<&'static str>) {
        if !self.class.reads.is_empty() {
            self.kind("read");
        }
        if self.class.kinds.is_empty() {
            self.unclassified("a statement without a kind");
        }
        (self.class, self.problems)
    }
}

/// Sets the main kind and the form's own tags and objects. Returns the
/// data-modifying statement a `WITH ... DELETE` (etc.) consists of.
fn describe<'s>(b: &mut Builder, stmt: &'s Statement) -> Option<&'s Statement> {
    match stmt {
        Statement::Query(q) => {
            if let SetExpr::Insert(s)
            | SetExpr::Update(s)
            | SetExpr::Delete(s)
            | SetExpr::Merge(s) = &*q.body
            {
                b.kind(dml(s).map_or("other", |d| d.kind));
                return Some(s);
            }
            b.kind("select");
            if !q.locks.is_empty() {
                // SELECT ... FOR UPDATE/SHARE takes row locks.
                b.kind("row_lock");
            }
        }
        Statement::Insert(_) => b.kind("insert"),
        Statement::Update(_) => b.kind("update"),
        Statement::Delete(_) => b.kind("delete"),
        Statement::Merge(_) => b.kind("merge"),
        Statement::Copy {
            source, to, target, ..
        } => copy(b, source, *to, target),

        Statement::CreateTable(ct) => {
            b.kinds(&["create", "ddl"]);
            b.write(&ct.name);
            if ct.query.is_some() || ct.clone.is_some() {
                b.kind("write");
            }
            if let Some(
                CreateTableLikeKind::Parenthesized(like) | CreateTableLikeKind::Plain(like),
            ) = &ct.like
            {
                b.read(&like.name);
            }
            for column in &ct.columns {
                column_references(b, column);
            }
            for constraint in &ct.constraints {
                constraint_references(b, constraint);
            }
        }
        Statement::CreateView(cv) => {
            b.kinds(&["create", "ddl"]);
            b.write(&cv.name);
            if cv.materialized {
                // A materialized view stores a copy of the rows.
                b.kind("write");
            }
        }
        Statement::CreateIndex(ci) => {
            b.kinds(&["create", "ddl"]);
            b.write(&ci.table_name);
        }
        Statement::CreateTrigger(ct) => {
            // A trigger runs its function on other sessions' writes.
            b.kinds(&["create", "ddl", "define_code"]);
            b.write(&ct.table_name);
            if let Some(body) = &ct.exec_body {
                b.function(&body.func_desc.name);
            }
        }
        Statement::CreatePolicy(p) => {
            b.kinds(&["create", "ddl", "privilege_change"]);
            b.write(&p.table_name);
        }
        Statement::CreateFunction(cf) => create_function(b, cf),
        Statement::CreateProcedure { .. } => {
            b.kinds(&["create_function", "ddl", "define_code"]);
            b.problems
                .push("CREATE PROCEDURE, whose body is not classified");
        }
        Statement::CreateExtension(_) => {
            // Extensions install C code and run their own scripts as superuser.
            b.kinds(&["create_extension", "ddl", "admin", "load_library"]);
        }
        Statement::CreateRole(_) | Statement::CreateUser(_) => {
            b.kinds(&["create_role", "admin", "privilege_change"]);
        }
        Statement::CreateDatabase { .. } | Statement::CreateServer(_) => {
            // A foreign server opens access to data elsewhere.
            b.kinds(&["create", "ddl", "admin"]);
        }
        Statement::CreateType { representation, .. } => {
            b.kinds(&["create", "ddl"]);
            // A base type names input/output functions, a range type a
            // subtype-difference and canonical function: code that runs on
            // every value of the type.
            if !matches!(
                representation,
                None | Some(
                    UserDefinedTypeRepresentation::Composite { .. }
                        | UserDefinedTypeRepresentation::Enum { .. }
                )
            ) {
                b.kind("define_code");
            }
        }
        // An operator is a function under a symbol (`|/ x` can call
        // anything); classes and families wire functions into indexes.
        Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_) => b.kinds(&["create", "ddl", "define_code"]),
        Statement::CreateSchema { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateCollation(_)
        | Statement::CreateTextSearch(_) => b.kinds(&["create", "ddl"]),

        Statement::AlterTable(at) => alter_table(b, at),
        Statement::AlterIndex { name, .. } | Statement::AlterView { name, .. } => {
            b.kinds(&["alter", "ddl"]);
            b.write(name);
        }
        Statement::AlterSchema(s) => {
            b.kinds(&["alter", "ddl"]);
            if s.operations
                .iter()
                .any(|op| matches!(op, AlterSchemaOperation::OwnerTo { .. }))
            {
                b.kind("privilege_change");
            }
        }
        Statement::AlterFunction(af) => {
            // Any change of a function or aggregate changes what calls of a
            // name run: a rename launders `pg_read_file` as `harmless`, SET
            // SCHEMA moves it onto the search path, SET changes its settings.
            b.kinds(&["alter", "ddl", "define_code"]);
            let escalates = match &af.operation {
                AlterFunctionOperation::OwnerTo(_) => true,
                AlterFunctionOperation::Actions { actions, .. } => actions.iter().any(|a| {
                    matches!(
                        a,
                        AlterFunctionAction::Security {
                            security: FunctionSecurity::Definer,
                            ..
                        }
                    )
                }),
                _ => false,
            };
            if escalates {
                b.kind("privilege_change");
            }
        }
        Statement::AlterPolicy(p) => {
            b.kinds(&["alter", "ddl", "privilege_change"]);
            b.write(&p.table_name);
        }
        Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_) => b.kinds(&["alter", "ddl", "define_code"]),
        Statement::AlterType(_) | Statement::AlterCollation(_) | Statement::AlterTextSearch(_) => {
            b.kinds(&["alter", "ddl"])
        }
        Statement::AlterRole { .. } | Statement::AlterUser(_) => {
            b.kinds(&["alter_role", "admin", "privilege_change"]);
        }

        Statement::Drop {
            object_type,
            names,
            table,
            ..
        } => {
            match object_type {
                ObjectType::Role | ObjectType::User => {
                    b.kinds(&["drop_role", "destructive", "admin", "privilege_change"]);
                }
                ObjectType::Database => b.kinds(&["drop", "ddl", "destructive", "admin"]),
                _ => b.kinds(&["drop", "ddl", "destructive"]),
            }
            if !matches!(object_type, ObjectType::Role | ObjectType::User) {
                for name in names {
                    b.write(name);
                }
            }
            if let Some(t) = table {
                b.write(t);
            }
        }
        Statement::DropTrigger(t) => {
            b.kinds(&["drop", "ddl", "destructive"]);
            if let Some(table) = &t.table_name {
                b.write(table);
            }
        }
        Statement::DropPolicy(p) => {
            b.kinds(&["drop", "ddl", "destructive", "privilege_change"]);
            b.write(&p.table_name);
        }
        Statement::DropExtension(_) => b.kinds(&["drop", "ddl", "destructive", "admin"]),
        Statement::DropFunction(_)
        | Statement::DropProcedure { .. }
        | Statement::DropDomain(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_) => b.kinds(&["drop", "ddl", "destructive"]),
        Statement::Truncate(t) => {
            b.kinds(&["truncate", "write", "destructive"]);
            for target in &t.table_names {
                b.write(&target.name);
            }
        }

        Statement::Grant(g) => {
            b.kinds(&["grant", "admin", "privilege_change"]);
            grant_objects(b, g.objects.as_ref());
        }
        Statement::Revoke(r) => {
            b.kinds(&["revoke", "admin", "privilege_change"]);
            grant_objects(b, r.objects.as_ref());
        }

        Statement::Set(s) => set(b, s),
        Statement::Reset(r) => match &r.reset {
            Reset::ALL | Reset::SessionAuthorization => {
                b.kinds(&["reset", "role_reset", "privilege_change"]);
            }
            Reset::ConfigurationParameter(name) => {
                b.kind("reset");
                if is_role_setting(name) {
                    b.kinds(&["role_reset", "privilege_change"]);
                }
            }
        },
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => b.kind("show"),
        Statement::Discard { object_type } => {
            b.kind("discard");
            if matches!(object_type, DiscardObject::ALL) {
                // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT.
                b.kinds(&["role_reset", "privilege_change"]);
            }
        }

        Statement::StartTransaction {
            statements,
            exception,
            ..
        } => {
            b.kind("begin");
            if !statements.is_empty() || exception.is_some() {
                b.problems
                    .push("a BEGIN ... END block, which is not classified");
            }
        }
        Statement::Commit { .. } => b.kind("commit"),
        Statement::Rollback { .. } => b.kind("rollback"),
        Statement::Savepoint { .. } => b.kind("savepoint"),
        Statement::ReleaseSavepoint { .. } => b.kind("release"),

        Statement::Execute {
            name,
            immediate,
            into,
            using,
            output,
            ..
        } => {
            b.kind("execute");
            match name.as_ref().and_then(object_name) {
                Some(n) if !*immediate && into.is_empty() && using.is_empty() && !*output => {
                    b.class.executes = Some(n);
                }
                _ => b.problems.push("an EXECUTE form PostgreSQL does not have"),
            }
        }
        Statement::Deallocate { .. } => b.kind("deallocate"),
        Statement::Call(f) => {
            // A procedure body is code the gateway cannot see into.
            b.kinds(&["call", "opaque"]);
            b.function(&f.name);
        }

        Statement::LISTEN { .. } => b.kind("listen"),
        Statement::UNLISTEN { .. } => b.kind("unlisten"),
        Statement::NOTIFY { .. } => b.kind("notify"),
        Statement::Load { .. } => b.kinds(&["load", "admin", "load_library"]),

        Statement::Vacuum(v) => {
            b.kinds(&["vacuum", "maintenance"]);
            if v.full {
                // VACUUM FULL rewrites the table under an exclusive lock.
                b.kind("admin");
            }
            if let Some(t) = &v.table_name {
                b.read(t);
            }
        }
        Statement::Analyze(_) => b.kinds(&["analyze", "maintenance"]),
        Statement::Lock(l) => {
            b.kind("lock");
            for t in &l.tables {
                b.write(&t.name);
            }
        }
        Statement::Comment {
            object_type,
            object_name: name,
            ..
        } => {
            b.kinds(&["comment", "ddl"]);
            match object_type {
                CommentObject::Table | CommentObject::View | CommentObject::MaterializedView => {
                    b.write(name);
                }
                CommentObject::Column if name.0.len() > 1 => {
                    b.write(&ObjectName(name.0[..name.0.len() - 1].to_vec()));
                }
                _ => {}
            }
        }
        Statement::Declare { stmts } => {
            b.kind("declare");
            if stmts.iter().any(|d| d.for_query.is_none()) {
                b.problems.push("a DECLARE that is not a cursor");
            }
        }
        Statement::Fetch { into, .. } => {
            b.kind("fetch");
            if into.is_some() {
                b.problems.push("FETCH INTO, which is not classified");
            }
        }
        Statement::Close { .. } => b.kind("close"),

        _ => b.unclassified("a statement form that is not classified"),
    }
    None
}

fn copy(b: &mut Builder, source: &CopySource, to: bool, target: &CopyTarget) {
    b.kind("copy");
    if to {
        b.kind("copy_out");
        if let CopySource::Table { table_name, .. } = source {
            b.read(table_name);
            // The whole table leaves the database.
            b.class.unbounded_read = true;
        }
    } else {
        b.kinds(&["copy_in", "write"]);
        match source {
            CopySource::Table { table_name, .. } => b.write(table_name),
            CopySource::Query(_) => b.problems.push("COPY from a query into nothing"),
        }
    }
    match target {
        CopyTarget::Stdin | CopyTarget::Stdout => {}
        CopyTarget::File { .. } => b.kinds(&["file_access", "admin"]),
        CopyTarget::Program { .. } => b.kinds(&["program_execution", "file_access", "admin"]),
    }
}

/// EXPLAIN plans a statement; with ANALYZE it also runs it.
fn explain(b: &mut Builder, analyze: bool, options: Option<&[UtilityOption]>, inner: &Statement) {
    b.kind("explain");
    let (inner_class, problems) = classify_statement(inner);
    b.problems.extend(problems);
    let runs = analyze || options.unwrap_or_default().iter().any(option_is_analyze);
    if runs {
        b.kind("explain_analyze");
        for k in &inner_class.kinds {
            b.kind(k);
        }
        b.class.writes.extend(inner_class.writes);
        b.class.unbounded_read |= inner_class.unbounded_read;
    } else {
        // Planning still folds constant calls of immutable functions: a
        // user function in the statement runs even without ANALYZE.
        for k in ["opaque", "user_function"] {
            if inner_class.has_kind(k) {
                b.kind(k);
            }
        }
        // Nothing runs, but the plan describes the tables it would touch.
        b.class.reads.extend(inner_class.writes);
    }
    b.class.reads.extend(inner_class.reads);
    b.class.functions.extend(inner_class.functions);
    b.class.operators.extend(inner_class.operators);
    b.class.attributes.extend(inner_class.attributes);
    b.class.columns.extend(inner_class.columns);
    b.class.executes = inner_class.executes;
}

/// `ANALYZE` / `ANALYSE` in an EXPLAIN option list, unless explicitly off.
/// PostgreSQL accepts true/false/on/off and 1/0 (and errors on anything
/// else, so treating anything else as "on" costs nothing).
fn option_is_analyze(o: &UtilityOption) -> bool {
    let name = o.name.value.to_ascii_lowercase();
    if name != "analyze" && name != "analyse" {
        return false;
    }
    let off = match &o.arg {
        None => false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(b) => !b,
            Value::Number(n, _) => n == "0",
            Value::SingleQuotedString(s) => is_off_word(s),
            _ => false,
        },
        Some(Expr::Identifier(id)) => is_off_word(&id.value),
        _ => false,
    };
    !off
}

fn is_off_word(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s == "off" || s == "false" || s == "0"
}
