//! Whether an UPDATE's or DELETE's WHERE picks rows of its target, or may
//! match every row.
//!
//! A WHERE "selects" when some part of it that must hold (a conjunct)
//! compares a target column with something that is not a target column:
//! `id = 5`, `t.id = u.id`, `lower(email) = $1`, `id IN (...)`, `ward
//! BETWEEN 1 AND 3`, `name LIKE 'A%'`, `deleted_at IS NULL`, a bare
//! boolean column, a correlated EXISTS. Forms that match every row while
//! naming a column do not select: `id = id`, `id IS NOT NULL`, `id <> -1`,
//! `NOT (...)`, `a = 1 OR true`, a WHERE that names only the columns of
//! UPDATE ... FROM's or DELETE ... USING's other tables. This is a
//! heuristic on the text: `id > 0` still passes (it names a range); the
//! policy's row caps and approvals are the next line.

use std::ops::ControlFlow;

use sqlparser::ast::{BinaryOperator, Expr, Query, Visit, Visitor};

use super::names::ident;

/// How a target's columns can be written in the WHERE.
pub(crate) struct Target {
    /// The alias, or else the table's own (last) name.
    pub qualifiers: Vec<String>,
    /// Whether an unqualified column is the target's: only when no other
    /// table is in scope (no FROM/USING/join), since it may be theirs.
    pub unqualified_is_target: bool,
}

/// Whether `condition` selects rows of `target` (see the module text).
pub(crate) fn selects_rows(condition: &Expr, target: &Target) -> bool {
    use BinaryOperator as Op;
    let names = |e: &Expr| names_target_column(e, target);
    let versus = |l: &Expr, r: &Expr| (names(l) && !names(r)) || (names(r) && !names(l));
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
            op: Op::Eq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq | Op::Spaceship,
            right,
        } => versus(left, right),
        Expr::IsNull(e) | Expr::IsTrue(e) | Expr::IsFalse(e) => names(e),
        Expr::InList {
            expr,
            list,
            negated: false,
        } => names(expr) && !list.iter().any(names),
        Expr::InSubquery {
            expr,
            negated: false,
            ..
        }
        | Expr::InUnnest {
            expr,
            negated: false,
            ..
        } => names(expr),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => names(expr) && !names(low) && !names(high),
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
        }
        | Expr::SimilarTo {
            negated: false,
            expr,
            pattern,
            ..
        } => names(expr) && !names(pattern),
        Expr::AnyOp {
            left,
            compare_op: Op::Eq,
            right,
            ..
        } => names(left) && !names(right),
        // Bounded by another table's rows: EXISTS (SELECT 1 FROM u WHERE
        // u.id = t.id). An uncorrelated EXISTS is as wide as `true`, but
        // telling them apart needs the subquery's scope.
        Expr::Exists { negated: false, .. } => true,
        // A boolean column alone: `WHERE archived`.
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => names(condition),
        _ => false,
    }
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
