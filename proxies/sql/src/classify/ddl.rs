//! The parts of schema statements that say more than their kind: the
//! language of a new function, what an ALTER TABLE does, which tables a
//! foreign key or a GRANT touches.

use sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnDef, ColumnOption, CreateFunction,
    FunctionSecurity, GrantObjects, TableConstraint,
};

use super::names::ident;
use super::statement::Builder;

pub(super) fn create_function(b: &mut Builder, cf: &CreateFunction) {
    // Its body is a string the classifier never sees run: whatever it does
    // happens later, under a name policy knows nothing about.
    b.kinds(&["create_function", "ddl", "define_code"]);
    let language = cf
        .language
        .as_ref()
        .map_or_else(|| "sql".to_string(), ident)
        .to_ascii_lowercase();
    match language.as_str() {
        // Trusted languages run with the caller's privileges, inside the
        // database's sandbox.
        "sql" | "plpgsql" | "plperl" | "pltcl" | "plv8" | "plrust" | "java" => {}
        // C and internal functions are native code: loading a library.
        "c" | "internal" => b.kinds(&["load_library", "admin"]),
        // Untrusted languages (plpython3u, plperlu, ...) reach the operating
        // system; so may any language we do not know.
        _ => b.kind("admin"),
    }
    if cf.using.is_some() || cf.remote_connection.is_some() {
        b.kinds(&["load_library", "admin"]);
    }
    if matches!(cf.security, Some(FunctionSecurity::Definer)) {
        b.kind("privilege_change");
    }
}

/// A foreign key reads the table it references on every write (and lets
/// the writer probe which keys exist there).
pub(super) fn column_references(b: &mut Builder, column: &ColumnDef) {
    for option in &column.options {
        if let ColumnOption::ForeignKey(fk) = &option.option {
            b.read(&fk.foreign_table);
        }
    }
}

pub(super) fn constraint_references(b: &mut Builder, constraint: &TableConstraint) {
    if let TableConstraint::ForeignKey(fk) = constraint {
        b.read(&fk.foreign_table);
    }
}

pub(super) fn alter_table(b: &mut Builder, at: &AlterTable) {
    b.kinds(&["alter", "ddl"]);
    b.write(&at.name);
    for op in &at.operations {
        match op {
            AlterTableOperation::AddConstraint { constraint, .. } => {
                constraint_references(b, constraint);
            }
            AlterTableOperation::AddColumn { column_def, .. } => column_references(b, column_def),
            AlterTableOperation::DropColumn { .. }
            | AlterTableOperation::DropConstraint { .. }
            | AlterTableOperation::DropPrimaryKey { .. }
            | AlterTableOperation::DropForeignKey { .. }
            | AlterTableOperation::DropIndex { .. }
            | AlterTableOperation::DropPartitions { .. }
            | AlterTableOperation::DropProjection { .. }
            | AlterTableOperation::DropClusteringKey
            // Changing a column's type converts (or, with USING, rewrites)
            // every stored value.
            | AlterTableOperation::ChangeColumn { .. }
            | AlterTableOperation::ModifyColumn { .. }
            | AlterTableOperation::AlterColumn {
                op: AlterColumnOperation::SetDataType { .. },
                ..
            } => b.kinds(&["destructive", "write"]),
            AlterTableOperation::DisableRowLevelSecurity
            | AlterTableOperation::EnableRowLevelSecurity
            | AlterTableOperation::ForceRowLevelSecurity
            | AlterTableOperation::NoForceRowLevelSecurity
            | AlterTableOperation::OwnerTo { .. } => b.kind("privilege_change"),
            // Audit triggers and rules are how tables guard themselves.
            AlterTableOperation::DisableTrigger { .. }
            | AlterTableOperation::DisableRule { .. }
            | AlterTableOperation::EnableReplicaTrigger { .. }
            | AlterTableOperation::EnableReplicaRule { .. } => b.kind("admin"),
            // Switching a trigger or rule on makes its code run on writes
            // that ran none before.
            // The column's values come back under a name no masking rule
            // may know.
            AlterTableOperation::RenameColumn {
                old_column_name, ..
            } => {
                b.kind("rename_column");
                b.class.columns.insert(ident(old_column_name));
            }
            AlterTableOperation::EnableTrigger { .. }
            | AlterTableOperation::EnableAlwaysTrigger { .. }
            | AlterTableOperation::EnableRule { .. }
            | AlterTableOperation::EnableAlwaysRule { .. } => b.kinds(&["admin", "define_code"]),
            _ => {}
        }
    }
}

pub(super) fn grant_objects(b: &mut Builder, objects: Option<&GrantObjects>) {
    if let Some(
        GrantObjects::Tables(names) | GrantObjects::Views(names) | GrantObjects::Sequences(names),
    ) = objects
    {
        for name in names {
            b.write(name);
        }
    }
}
