//! SET and RESET: which settings change who the session is, what it may
//! load, or which safeguards apply.

use sqlparser::ast::{Expr, ObjectName, Set, SetSessionAuthorizationParamKind, Value};

use super::functions::{is_utf8_name, setting_tags, NOT_UTF8};
use super::names::object_name;
use super::search_path::catalog_not_first;
use super::statement::Builder;

pub(super) fn is_role_setting(name: &ObjectName) -> bool {
    object_name(name).is_some_and(|n| {
        matches!(
            n.to_ascii_lowercase().as_str(),
            "role" | "session_authorization"
        )
    })
}

pub(super) fn set(b: &mut Builder, s: &Set) {
    match s {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name(variable).map(|n| n.to_ascii_lowercase());
            match name {
                Some(n) if is_role_setting(variable) => {
                    b.kind("set_role");
                    if values.iter().any(is_default_or_none) {
                        b.kinds(&["role_reset", "privilege_change"]);
                    } else {
                        b.kinds(setting_tags(&n));
                    }
                }
                Some(n) => {
                    b.kind("set");
                    b.kinds(setting_tags(&n));
                    if n == "client_encoding" && !values.iter().all(is_utf8_or_default) {
                        b.problems.push(NOT_UTF8);
                    }
                    if n == "search_path" {
                        search_path(b, values);
                    }
                }
                None => b.unclassified("SET of a computed name"),
            }
        }
        Set::ParenthesizedAssignments { variables, .. } => {
            b.kind("set");
            for v in variables {
                set_name(b, v);
            }
        }
        Set::MultipleAssignments { assignments } => {
            b.kind("set");
            for a in assignments {
                set_name(b, &a.name);
            }
        }
        Set::SetSessionAuthorization(p) => {
            b.kind("set_role");
            match p.kind {
                SetSessionAuthorizationParamKind::Default => {
                    b.kinds(&["role_reset", "privilege_change"]);
                }
                SetSessionAuthorizationParamKind::User(_) => {
                    b.kinds(&["admin", "privilege_change"]);
                }
            }
        }
        Set::SetRole { role_name, .. } => {
            b.kind("set_role");
            match role_name {
                None => b.kinds(&["role_reset", "privilege_change"]),
                Some(_) => b.kinds(&["admin", "privilege_change"]),
            }
        }
        Set::SetNames { charset_name, .. } => {
            b.kind("set");
            if !is_utf8_name(&charset_name.value) {
                b.problems.push(NOT_UTF8);
            }
        }
        Set::SetTimeZone { .. } | Set::SetNamesDefault {} | Set::SetTransaction { .. } => {
            b.kind("set")
        }
        Set::SetSessionParam(_) => b.unclassified("a SET form PostgreSQL does not have"),
    }
}

/// `SET search_path = a, b`: each value is one schema name. A path that
/// puts another schema before `pg_catalog` lets its functions shadow
/// PostgreSQL's own (see [`super::search_path`]): administration.
fn search_path(b: &mut Builder, values: &[Expr]) {
    let mut names = Vec::new();
    for v in values {
        match v {
            Expr::Identifier(id) if id.quote_style.is_some() => names.push(id.value.clone()),
            Expr::Identifier(id) => names.push(id.value.to_ascii_lowercase()),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => names.push(s.clone()),
                _ => {
                    return b
                        .problems
                        .push("a search_path value that is not a schema name")
                }
            },
            _ => {
                return b
                    .problems
                    .push("a search_path value that is not a schema name")
            }
        }
    }
    if catalog_not_first(&names) {
        b.kind("admin");
    }
}

fn set_name(b: &mut Builder, name: &ObjectName) {
    match object_name(name) {
        Some(n) => {
            if is_role_setting(name) {
                b.kind("set_role");
            }
            b.kinds(setting_tags(&n.to_ascii_lowercase()));
        }
        None => b.problems.push("SET of a computed name"),
    }
}

/// `SET role = DEFAULT` / `SET ROLE NONE` return to the login role.
fn is_default_or_none(e: &Expr) -> bool {
    match e {
        Expr::Identifier(id) => {
            let v = id.value.to_ascii_lowercase();
            id.quote_style.is_none() && (v == "default" || v == "none")
        }
        _ => false,
    }
}

/// `'UTF8'`, `utf8`, `'UTF-8'`, `'unicode'` or `DEFAULT` (the connection's
/// own, which the gateway checked at startup).
fn is_utf8_or_default(e: &Expr) -> bool {
    match e {
        Expr::Identifier(id) => {
            is_utf8_name(&id.value)
                || (id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
        }
        Expr::Value(v) => matches!(&v.value, Value::SingleQuotedString(s) if is_utf8_name(s)),
        _ => false,
    }
}
