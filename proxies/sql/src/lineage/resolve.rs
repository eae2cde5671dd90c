//! Binding a [`StatementShape`]'s names to catalog columns.
//!
//! Scopes nest as PostgreSQL's do: a query level sees its own FROM items
//! first, then those of the levels around it (correlated subqueries); CTE
//! names shadow tables of the same name. Every step that cannot be bound
//! with certainty gives [`Lineage::Unknown`] (see the module documentation
//! of [`lineage`](super)).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::shape::{Body, ExprRefs, FromItem, Output, QueryShape, StatementShape};
use super::{Lineage, RelationInfo, RelationKind, Relations, SourceColumn};

/// Views are followed through at most this many levels of views.
pub const MAX_VIEW_DEPTH: usize = 8;

/// The lineage of a statement's result columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// One per result column, in order, with the name PostgreSQL gives the
    /// column where it is certain (the caller checks it against the
    /// result's, to catch a result paired with the wrong statement).
    Columns(Vec<(Lineage, Option<String>)>),
    /// One column computed from nothing a table or a session holds
    /// (EXPLAIN's plan, a setting under SHOW), called `column`.
    FromNothing { column: String },
    /// Neither the columns nor their number could be established.
    Unknown,
}

/// The lineage of each column `shape` returns, bound against `relations`.
/// `settings_hold_data`: the session's settings may hold values an agent
/// computed from tables, so what reads a setting has unknown lineage.
pub fn resolve(
    shape: &StatementShape,
    relations: &dyn Relations,
    settings_hold_data: bool,
) -> Outputs {
    match shape {
        StatementShape::Rows(q) => {
            let r = Resolver {
                relations,
                settings_hold_data,
            };
            let cols = r.query(q, &Env::root(), 0);
            if cols.complete {
                Outputs::Columns(cols.cols.into_iter().map(|c| (c.lineage, c.name)).collect())
            } else {
                Outputs::Unknown
            }
        }
        StatementShape::FromNothing => Outputs::FromNothing {
            column: "QUERY PLAN".into(),
        },
        StatementShape::Show(name) if !settings_hold_data => Outputs::FromNothing {
            column: name.clone(),
        },
        StatementShape::Show(_) | StatementShape::NoRows | StatementShape::Opaque => {
            Outputs::Unknown
        }
    }
}

/// Every relation name a shape reads (`(schema, name)`, schema as
/// written), CTE names included: what the catalog must know to resolve it.
pub fn relation_names(shape: &StatementShape) -> BTreeSet<(Option<String>, String)> {
    let mut out = BTreeSet::new();
    if let StatementShape::Rows(q) = shape {
        query_relation_names(q, &mut out);
    }
    out
}

/// As [`relation_names`], for one query (a view's definition).
pub fn query_relation_names(q: &QueryShape, out: &mut BTreeSet<(Option<String>, String)>) {
    for cte in &q.ctes {
        query_relation_names(&cte.shape, out);
    }
    names_in_body(&q.body, out);
}

fn names_in_body(b: &Body, out: &mut BTreeSet<(Option<String>, String)>) {
    match b {
        Body::Select { from, outputs, .. } => {
            for item in from {
                match item {
                    FromItem::Relation { schema, name, .. } => {
                        out.insert((schema.clone(), name.clone()));
                    }
                    FromItem::Derived { shape, .. } => query_relation_names(shape, out),
                    FromItem::Function { refs, .. } => names_in_refs(refs, out),
                    FromItem::Unknown { .. } => {}
                }
            }
            for o in outputs {
                if let Output::Expr { refs, .. } = o {
                    names_in_refs(refs, out);
                }
            }
        }
        Body::SetOperation(l, r) => {
            names_in_body(l, out);
            names_in_body(r, out);
        }
        Body::Values(rows) => {
            for refs in rows.iter().flatten() {
                names_in_refs(refs, out);
            }
        }
        Body::Nested(q) => query_relation_names(q, out),
        Body::Unknown => {}
    }
}

fn names_in_refs(refs: &ExprRefs, out: &mut BTreeSet<(Option<String>, String)>) {
    for q in &refs.subqueries {
        query_relation_names(q, out);
    }
}

/// A column of a relation in scope; `name` is `None` where PostgreSQL's
/// name for it is not known for sure (a reference by any name that finds
/// no other column may mean it).
#[derive(Clone, Debug)]
struct Col {
    name: Option<String>,
    lineage: Lineage,
}

impl Col {
    fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }
}

/// The columns a query level returns; `complete` is false when their number
/// is not known (a `*` over a relation of unknown width).
struct Cols {
    cols: Vec<Col>,
    complete: bool,
}

/// A FROM item in scope.
struct Rel {
    /// The name it is referred to by: its alias, or its own name.
    alias: String,
    /// For `schema.table.column`.
    schema: Option<String>,
    /// `None`: columns unknown (a set-returning function, an unreadable
    /// item); every name may be one of them, computed from `open`.
    cols: Option<Vec<Col>>,
    open: Lineage,
}

struct Env<'p> {
    parent: Option<&'p Env<'p>>,
    ctes: Vec<(String, Arc<Cols>)>,
    rels: Vec<Rel>,
}

impl<'p> Env<'p> {
    fn root() -> Env<'static> {
        Env {
            parent: None,
            ctes: Vec::new(),
            rels: Vec::new(),
        }
    }

    fn child(&'p self) -> Env<'p> {
        Env {
            parent: Some(self),
            ctes: Vec::new(),
            rels: Vec::new(),
        }
    }

    fn cte(&self, name: &str) -> Option<&Arc<Cols>> {
        let mut env = Some(self);
        while let Some(e) = env {
            if let Some((_, cols)) = e.ctes.iter().rev().find(|(n, _)| n == name) {
                return Some(cols);
            }
            env = e.parent;
        }
        None
    }

    /// The FROM item called `alias`, innermost scope first. A scope that
    /// holds an item lineage could not read and that has no name answers
    /// for any name (it may hide one): its lineage is unknown.
    fn rel(&self, alias: &str) -> Option<&Rel> {
        let mut env = Some(self);
        while let Some(e) = env {
            if let Some(r) = e.rels.iter().find(|r| r.alias == alias) {
                return Some(r);
            }
            if let Some(r) = e
                .rels
                .iter()
                .find(|r| r.alias.is_empty() && r.open.is_unknown())
            {
                return Some(r);
            }
            env = e.parent;
        }
        None
    }
}

struct Resolver<'a> {
    relations: &'a dyn Relations,
    settings_hold_data: bool,
}

impl Resolver<'_> {
    fn query(&self, q: &QueryShape, outer: &Env<'_>, view_depth: usize) -> Cols {
        let mut env = outer.child();
        let recursive = q.ctes.iter().any(|c| c.recursive);
        if recursive {
            // In WITH RECURSIVE every CTE sees every other, those after it
            // too: until each is resolved, a reference to it is unknown.
            for cte in &q.ctes {
                let placeholder = Arc::new(Cols {
                    cols: cte
                        .columns
                        .iter()
                        .map(|n| Col {
                            name: Some(n.clone()),
                            lineage: Lineage::Unknown,
                        })
                        .collect(),
                    complete: false,
                });
                env.ctes.push((cte.name.clone(), placeholder));
            }
        }
        for (i, cte) in q.ctes.iter().enumerate() {
            let cols = rename(self.query(&cte.shape, &env, view_depth), &cte.columns);
            let cols = Arc::new(cols);
            if recursive {
                // It may have read itself (or a later one) as unknown; its
                // own columns stay as resolved, others see them from now on.
                env.ctes[i] = (cte.name.clone(), cols);
            } else {
                env.ctes.push((cte.name.clone(), cols));
            }
        }
        self.body(&q.body, env, view_depth)
    }

    fn body(&self, body: &Body, mut env: Env<'_>, view_depth: usize) -> Cols {
        match body {
            Body::Select {
                from,
                outputs,
                merges_columns,
            } => {
                for item in from {
                    let rel = self.bind_from_item(item, &env, view_depth);
                    env.rels.push(rel);
                }
                let mut out = Cols {
                    cols: Vec::new(),
                    complete: true,
                };
                for o in outputs {
                    match o {
                        Output::Star => {
                            if *merges_columns {
                                out.complete = false;
                            }
                            for rel in &env.rels {
                                match &rel.cols {
                                    Some(cols) => out.cols.extend(cols.iter().cloned()),
                                    None => out.complete = false,
                                }
                            }
                        }
                        Output::QualifiedStar(parts) => match self.rel_by_parts(parts, &env) {
                            Some(Rel {
                                cols: Some(cols), ..
                            }) => out.cols.extend(cols.iter().cloned()),
                            _ => out.complete = false,
                        },
                        Output::Expr { name, refs, bare } => {
                            let lineage = match refs.names.as_slice() {
                                // The column's own lineage: a copy stays one.
                                [only] if *bare => self.name(only, &env),
                                _ => self.refs(refs, &env, view_depth),
                            };
                            out.cols.push(Col {
                                name: name.clone(),
                                lineage,
                            })
                        }
                    }
                }
                out
            }
            Body::SetOperation(left, right) => {
                // Both sides see this level's CTEs, neither sees the other.
                let l = self.body(left, env.child(), view_depth);
                let r = self.body(right, env.child(), view_depth);
                if !l.complete || !r.complete || l.cols.len() != r.cols.len() {
                    return Cols {
                        cols: l.cols,
                        complete: false,
                    };
                }
                let cols = l
                    .cols
                    .into_iter()
                    .zip(r.cols)
                    .map(|(mut a, b)| {
                        a.lineage.union(&b.lineage);
                        a
                    })
                    .collect();
                Cols {
                    cols,
                    complete: true,
                }
            }
            Body::Values(rows) => {
                let Some(width) = rows.first().map(Vec::len) else {
                    return Cols {
                        cols: Vec::new(),
                        complete: false,
                    };
                };
                let mut cols: Vec<Col> = (1..=width)
                    .map(|i| Col {
                        name: Some(format!("column{i}")),
                        lineage: Lineage::none(),
                    })
                    .collect();
                let mut complete = true;
                for row in rows {
                    if row.len() != width {
                        complete = false;
                    }
                    for (col, refs) in cols.iter_mut().zip(row) {
                        col.lineage.union(&self.refs(refs, &env, view_depth));
                    }
                }
                Cols { cols, complete }
            }
            Body::Nested(q) => self.query(q, &env, view_depth),
            Body::Unknown => Cols {
                cols: Vec::new(),
                complete: false,
            },
        }
    }

    fn bind_from_item(&self, item: &FromItem, env: &Env<'_>, view_depth: usize) -> Rel {
        match item {
            FromItem::Relation {
                schema,
                name,
                alias,
                columns,
            } => {
                let effective = alias.clone().unwrap_or_else(|| name.clone());
                if schema.is_none() {
                    if let Some(cte) = env.cte(name) {
                        return closed_rel(effective, None, rename_ref(cte, columns));
                    }
                }
                match self.relation(schema.as_deref(), name, view_depth) {
                    Some(cols) => closed_rel(effective, schema.clone(), rename(cols, columns)),
                    None => open_rel(effective, Lineage::Unknown),
                }
            }
            FromItem::Derived {
                shape,
                alias,
                columns,
                lateral,
            } => {
                // Only a LATERAL subquery sees the FROM items before it.
                let cols = if *lateral {
                    self.query(shape, env, view_depth)
                } else {
                    let level = Env {
                        parent: env.parent,
                        ctes: env.ctes.clone(),
                        rels: Vec::new(),
                    };
                    self.query(shape, &level, view_depth)
                };
                let cols = rename(cols, columns);
                let alias = alias.clone().unwrap_or_default();
                if cols.complete {
                    closed_rel(alias, None, cols)
                } else {
                    let mut all = Lineage::none();
                    for c in &cols.cols {
                        all.union(&c.lineage);
                    }
                    all.union(&Lineage::Unknown);
                    open_rel(alias, all)
                }
            }
            FromItem::Function {
                refs,
                alias,
                columns: _,
            } => {
                let lineage = self.refs(refs, env, view_depth);
                // Its width is unknown even with column aliases (a record
                // type may have more): open, every column from its
                // arguments.
                open_rel(alias.clone().unwrap_or_default(), lineage)
            }
            FromItem::Unknown { alias } => {
                open_rel(alias.clone().unwrap_or_default(), Lineage::Unknown)
            }
        }
    }

    /// The columns of a catalog relation; `None` when the catalog does not
    /// know it or the candidates disagree on their columns.
    fn relation(&self, schema: Option<&str>, name: &str, view_depth: usize) -> Option<Cols> {
        let candidates = self.relations.find(schema, name);
        let mut merged: Option<Cols> = None;
        for rel in candidates {
            let cols = self.relation_cols(&rel, view_depth);
            merged = Some(match merged {
                None => cols,
                Some(mut m) => {
                    let same = m.cols.len() == cols.cols.len()
                        && m.cols.iter().zip(&cols.cols).all(|(a, b)| a.name == b.name);
                    if !same {
                        return None;
                    }
                    for (a, b) in m.cols.iter_mut().zip(&cols.cols) {
                        a.lineage.union(&b.lineage);
                    }
                    m.complete &= cols.complete;
                    m
                }
            });
        }
        merged
    }

    fn relation_cols(&self, rel: &RelationInfo, view_depth: usize) -> Cols {
        let unknown_view = || Cols {
            cols: rel
                .columns
                .iter()
                .map(|c| Col {
                    name: Some(c.name.clone()),
                    lineage: Lineage::Unknown,
                })
                .collect(),
            complete: true,
        };
        match &rel.kind {
            RelationKind::Table => Cols {
                cols: rel
                    .columns
                    .iter()
                    .map(|c| Col {
                        name: Some(c.name.clone()),
                        lineage: Lineage::column(SourceColumn {
                            schema: rel.schema.clone(),
                            table: rel.name.clone(),
                            column: c.name.clone(),
                            type_oid: c.type_oid,
                        }),
                    })
                    .collect(),
                complete: true,
            },
            RelationKind::View(Some(shape)) if view_depth < MAX_VIEW_DEPTH => {
                // A view's names were resolved where it was defined, not in
                // this statement's scopes.
                let inner = self.query(shape, &Env::root(), view_depth + 1);
                if !inner.complete || inner.cols.len() != rel.columns.len() {
                    return unknown_view();
                }
                Cols {
                    cols: rel
                        .columns
                        .iter()
                        .zip(inner.cols)
                        .map(|(c, i)| Col {
                            name: Some(c.name.clone()),
                            lineage: i.lineage,
                        })
                        .collect(),
                    complete: true,
                }
            }
            RelationKind::View(_) => unknown_view(),
        }
    }

    fn rel_by_parts<'e>(&self, parts: &[String], env: &'e Env<'_>) -> Option<&'e Rel> {
        match parts {
            [alias] => env.rel(alias),
            [schema, table] => {
                let mut e = Some(env);
                while let Some(cur) = e {
                    if let Some(r) = cur
                        .rels
                        .iter()
                        .find(|r| r.schema.as_deref() == Some(schema) && &r.alias == table)
                    {
                        return Some(r);
                    }
                    e = cur.parent;
                }
                None
            }
            _ => None,
        }
    }

    fn refs(&self, refs: &ExprRefs, env: &Env<'_>, view_depth: usize) -> Lineage {
        if refs.opaque || (refs.settings && self.settings_hold_data) {
            return Lineage::Unknown;
        }
        let mut out = Lineage::none();
        for name in &refs.names {
            out.union(&self.name(name, env));
            if out.is_unknown() {
                return out;
            }
        }
        for parts in &refs.whole_rows {
            match self.rel_by_parts(parts, env) {
                Some(rel) => out.union(&whole_row(rel)),
                None => return Lineage::Unknown,
            }
        }
        for q in &refs.subqueries {
            let cols = self.query(q, env, view_depth);
            if !cols.complete {
                return Lineage::Unknown;
            }
            for c in &cols.cols {
                out.union(&c.lineage);
            }
        }
        out
    }

    /// A column reference as written.
    fn name(&self, parts: &[String], env: &Env<'_>) -> Lineage {
        match parts {
            [column] => {
                let mut opens = Lineage::none();
                let mut saw_open = false;
                let mut e = Some(env);
                while let Some(cur) = e {
                    let mut matches: Vec<&Lineage> = Vec::new();
                    for rel in &cur.rels {
                        match &rel.cols {
                            Some(cols) => {
                                matches.extend(
                                    cols.iter().filter(|c| c.is(column)).map(|c| &c.lineage),
                                );
                                // A column whose name is not certain may be
                                // the one meant.
                                for c in cols.iter().filter(|c| c.name.is_none()) {
                                    opens.union(&c.lineage);
                                    saw_open = true;
                                }
                            }
                            None => {
                                opens.union(&rel.open);
                                saw_open = true;
                            }
                        }
                    }
                    match matches.as_slice() {
                        [] => {}
                        [only] if !saw_open => return (*only).clone(),
                        several => {
                            let mut found = opens;
                            for l in several {
                                found.union(l);
                            }
                            return found;
                        }
                    }
                    e = cur.parent;
                }
                // Not a column anywhere: a whole-row reference to a FROM
                // item, or a column of a set-returning function.
                if let Some(rel) = env.rel(column) {
                    let mut l = whole_row(rel);
                    l.union(&opens);
                    return l;
                }
                if saw_open {
                    opens
                } else {
                    Lineage::Unknown
                }
            }
            [qualifier, column] => match env.rel(qualifier) {
                Some(Rel {
                    cols: Some(cols), ..
                }) => {
                    let matches: Vec<&Col> = cols.iter().filter(|c| c.is(column)).collect();
                    let unsure: Vec<&Col> = cols.iter().filter(|c| c.name.is_none()).collect();
                    match matches.as_slice() {
                        // A column whose name is not certain may be it.
                        [] if !unsure.is_empty() => {
                            let mut found = Lineage::none();
                            for c in unsure {
                                found.union(&c.lineage);
                            }
                            found
                        }
                        // Not a column of it: attribute notation calls a
                        // function `column(qualifier)`.
                        [] => Lineage::Unknown,
                        [only] => only.lineage.clone(),
                        several => {
                            let mut found = Lineage::none();
                            for c in several {
                                found.union(&c.lineage);
                            }
                            found
                        }
                    }
                }
                Some(rel) => rel.open.clone(),
                // `(composite).field` written without parentheses is not
                // valid SQL; `composite.field` names a table first.
                None => Lineage::Unknown,
            },
            [schema, table, column] => {
                match self.rel_by_parts(&[schema.clone(), table.clone()], env) {
                    Some(rel) => match &rel.cols {
                        Some(cols) => cols
                            .iter()
                            .find(|c| c.is(column))
                            .map_or(Lineage::Unknown, |c| c.lineage.clone()),
                        None => rel.open.clone(),
                    },
                    None => Lineage::Unknown,
                }
            }
            _ => Lineage::Unknown,
        }
    }
}

fn whole_row(rel: &Rel) -> Lineage {
    match &rel.cols {
        Some(cols) => {
            let mut l = Lineage::none();
            for c in cols {
                l.union(&c.lineage);
            }
            l
        }
        None => rel.open.clone(),
    }
}

fn closed_rel(alias: String, schema: Option<String>, cols: Cols) -> Rel {
    if cols.complete {
        Rel {
            alias,
            schema,
            cols: Some(cols.cols),
            open: Lineage::none(),
        }
    } else {
        open_rel(alias, Lineage::Unknown)
    }
}

fn open_rel(alias: String, open: Lineage) -> Rel {
    Rel {
        alias,
        schema: None,
        cols: None,
        open,
    }
}

/// Column aliases (`AS t(a, b)`) rename the first columns.
fn rename(mut cols: Cols, names: &[String]) -> Cols {
    for (c, n) in cols.cols.iter_mut().zip(names) {
        c.name = Some(n.clone());
    }
    cols
}

fn rename_ref(cols: &Cols, names: &[String]) -> Cols {
    rename(
        Cols {
            cols: cols.cols.clone(),
            complete: cols.complete,
        },
        names,
    )
}
