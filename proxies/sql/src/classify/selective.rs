//! Whether an UPDATE's or DELETE's WHERE picks rows of its target, or may
//! match every row.
//!
//! A WHERE "selects" when some part of it that must hold (a conjunct)
//! compares a target column with something that is not a target column:
//! `id = 5`, `t.id = u.id`, `lower(email) = $1`, `id IN (1, 2)`, `ward
//! BETWEEN 1 AND 3`, `name LIKE 'A%'`, `deleted_at IS NULL`, a bare
//! boolean column. Forms that match every row while naming a column do
//! not select: `id = id`, `id * 0 = 0`, `id IS NOT NULL`, `(id = id) IS
//! TRUE`, `id <> -1`, `NOT (...)`, `a = 1 OR true`, `ssn LIKE '%'`, any
//! subquery (`id = (SELECT id)`, `id IN (SELECT id FROM t)`, EXISTS), a
//! self-join of the target, a WHERE that names only the columns of UPDATE
//! ... FROM's or DELETE ... USING's other tables. This is a heuristic on
//! the text: `id > 0` still passes (it names a range); the policy's row
//! caps and approvals are the next line.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Value, Visit,
    Visitor,
};

use super::names::ident;

/// How a target's columns can be written in the WHERE.
pub(crate) struct Target {
    /// The alias, or else the table's own (last) name.
    pub qualifiers: Vec<String>,
    /// Whether an unqualified column is the target's: only when no other
    /// table is in scope (no FROM/USING/join), since it may be theirs.
    pub unqualified_is_target: bool,
    /// The target table itself is also in FROM/USING (a self-join): a
    /// comparison with "the other table" may compare a row with itself.
    pub self_joined: bool,
}

/// Whether `condition` selects rows of `target` (see the module text).
/// Deliberately narrow, since a tautology is easy to spell: one side of a
/// comparison must be a target column (bare, or inside a function call of
/// columns and constants: `lower(email)`), the other side must name no
/// target column and hold no subquery (`id = (SELECT id)` is the row's own
/// id). Subqueries make a WHERE unselective: which rows they pick cannot
/// be told from the text.
pub(crate) fn selects_rows(condition: &Expr, target: &Target) -> bool {
    use BinaryOperator as Op;
    if target.self_joined {
        return false;
    }
    let other = |e: &Expr| !names_target_column(e, target) && !has_subquery(e);
    let versus = |l: &Expr, r: &Expr| {
        (is_column_term(l, target) && other(r)) || (is_column_term(r, target) && other(l))
    };
    match condition {
        Expr::Nested(e) => selects_rows(e, target),
        Expr::BinaryOp {
            left,
            op: Op::And,
            right,
        } => selects_rows(left, target) || selects_rows(right, target),
        Expr::BinaryOp {
            left,
            op: Op::Or,
            right,
        } => selects_rows(left, target) && selects_rows(right, target),
        Expr::BinaryOp {
            left,
            op: Op::Eq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq,
            right,
        } => versus(left, right),
        Expr::IsNull(e) => is_bare_column(e, target),
        Expr::InList {
            expr,
            list,
            negated: false,
        } => is_column_term(expr, target) && list.iter().all(other),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => is_column_term(expr, target) && other(low) && other(high),
        Expr::Like {
            negated: false,
            expr,
            pattern,
            ..
        }
        | Expr::ILike {
            negated: false,
            expr,
            pattern,
            ..
        } => is_column_term(expr, target) && is_anchored_pattern(pattern),
        Expr::AnyOp {
            left,
            compare_op: Op::Eq,
            right,
            ..
        } => is_column_term(left, target) && other(right),
        // A boolean column alone: `WHERE archived`.
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => is_bare_column(condition, target),
        _ => false,
    }
}

/// A target column, bare.
fn is_bare_column(e: &Expr, target: &Target) -> bool {
    match e {
        Expr::Nested(inner) => is_bare_column(inner, target),
        Expr::Identifier(_) => target.unqualified_is_target,
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            target.qualifiers.contains(&ident(&parts[parts.len() - 2]))
        }
        _ => false,
    }
}

/// A target column, bare or as an argument of a function of columns and
/// literals (`lower(email)`, `date_trunc('day', at)`); no arithmetic, which
/// can turn any column into a constant (`id * 0`).
fn is_column_term(e: &Expr, target: &Target) -> bool {
    if is_bare_column(e, target) {
        return true;
    }
    let Expr::Function(f) = e else {
        return false;
    };
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    args.len() == list.args.len()
        && args.iter().any(|a| is_bare_column(a, target))
        && args
            .iter()
            .all(|a| is_bare_column(a, target) || matches!(a, Expr::Value(_)))
}

/// A LIKE pattern that is a literal not starting with a wildcard.
fn is_anchored_pattern(pattern: &Expr) -> bool {
    match pattern {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(p) => !p.is_empty() && !p.starts_with(['%', '_']),
            Value::Placeholder(_) => true,
            _ => false,
        },
        _ => false,
    }
}

fn has_subquery(e: &Expr) -> bool {
    struct Find;
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    e.visit(&mut Find).is_break()
}

/// Whether `e` mentions a column of `target` outside any subquery (a
/// subquery's unqualified names are its own tables' first).
pub(crate) fn names_target_column(e: &Expr, target: &Target) -> bool {
    struct Find<'a> {
        target: &'a Target,
        depth: usize,
    }
    impl Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.depth > 0 {
                return ControlFlow::Continue(());
            }
            let hit = match e {
                Expr::Identifier(_) => self.target.unqualified_is_target,
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => self
                    .target
                    .qualifiers
                    .contains(&ident(&parts[parts.len() - 2])),
                _ => false,
            };
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    e.visit(&mut Find { target, depth: 0 }).is_break()
}
