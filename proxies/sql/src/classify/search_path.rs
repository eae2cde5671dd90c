//! `search_path`: which schemas an unqualified function or operator name is
//! looked up in. PostgreSQL searches `pg_catalog` first unless the path
//! names it somewhere else; a path that puts another schema before it
//! (`public, pg_catalog`) lets a same-named function there shadow
//! PostgreSQL's own, so `lower(x)` may run anybody's code while the
//! classifier takes it for the built-in.

/// Whether a search_path given as PostgreSQL's list text (`set_config`,
/// a startup option: `"$user", public`) puts another schema before
/// `pg_catalog`. `None` when the text is not a list PostgreSQL would read
/// the way this reads it (an unterminated quote).
pub fn search_path_text_shadows_builtins(value: &str) -> Option<bool> {
    let mut names = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        let (name, after) = if let Some(quoted) = rest.strip_prefix('"') {
            // "" inside quotes is one quote.
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            name.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => name.push(c),
                    None => return None,
                }
            };
            (name, &quoted[end..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().to_ascii_lowercase(), &rest[end..])
        };
        names.push(name);
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(catalog_not_first(&names))
}

/// Whether `pg_catalog` is named, and not first, among `names` (schema
/// names as PostgreSQL resolves them: unquoted ones folded to lower case).
pub fn catalog_not_first(names: &[String]) -> bool {
    names
        .iter()
        .position(|n| n == "pg_catalog")
        .is_some_and(|i| i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_as_postgresql_reads_them() {
        for (text, shadows) in [
            ("public", Some(false)),
            ("\"$user\", public", Some(false)),
            ("pg_catalog, public", Some(false)),
            ("public, pg_catalog", Some(true)),
            ("public,PG_CATALOG", Some(true)),
            ("public, \"PG_CATALOG\"", Some(false)),
            ("\"a,b\", pg_catalog", Some(true)),
            ("\"pg_catalog\", public", Some(false)),
            ("\"x\"\"y\", pg_catalog", Some(true)),
            ("", Some(false)),
            ("\"unterminated, pg_catalog", None),
        ] {
            assert_eq!(search_path_text_shadows_builtins(text), shadows, "{text:?}");
        }
    }
}
