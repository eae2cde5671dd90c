//! What the gateway's own upstream role may do. Every statement a client
//! gets through runs as this role, and code the classifier cannot see into
//! (an existing function, a trigger, a view) runs with its privileges too.
//! A superuser, or a member of `pg_read_server_files`,
//! `pg_write_server_files` or `pg_execute_server_program`, turns any such
//! gap into reading the server's files or running its programs; CREATEROLE
//! into making new logins. The gateway checks this at start and refuses a
//! privileged role unless the operator overrides it explicitly.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::catalog::CatalogError;
use crate::codec;
use crate::login;
use crate::results;
use crate::server::{read_frame, UpstreamConfig};

/// One privileged attribute or membership of the upstream role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    Superuser,
    CreateRole,
    BypassRowSecurity,
    Replication,
    ReadServerFiles,
    WriteServerFiles,
    ExecuteServerProgram,
    ReadAllData,
    WriteAllData,
    SignalBackend,
}

impl Privilege {
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Superuser => "SUPERUSER",
            Privilege::CreateRole => "CREATEROLE",
            Privilege::BypassRowSecurity => "BYPASSRLS",
            Privilege::Replication => "REPLICATION",
            Privilege::ReadServerFiles => "member of pg_read_server_files",
            Privilege::WriteServerFiles => "member of pg_write_server_files",
            Privilege::ExecuteServerProgram => "member of pg_execute_server_program",
            Privilege::ReadAllData => "member of pg_read_all_data",
            Privilege::WriteAllData => "member of pg_write_all_data",
            Privilege::SignalBackend => "member of pg_signal_backend",
        }
    }
}

/// The upstream role and what it holds beyond least privilege.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleReport {
    pub role: String,
    pub privileges: Vec<Privilege>,
}

impl RoleReport {
    pub fn is_privileged(&self) -> bool {
        !self.privileges.is_empty()
    }

    /// `role "vigil_gw": no privileges beyond least privilege`, or the list.
    pub fn describe(&self) -> String {
        if self.privileges.is_empty() {
            format!(
                "upstream role {:?}: least privilege (no SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, server file/program, all-data or signal roles, held or reachable by SET ROLE)",
                self.role
            )
        } else {
            let list: Vec<&str> = self.privileges.iter().map(|p| p.name()).collect();
            format!(
                "upstream role {:?} is privileged: {}",
                self.role,
                list.join(", ")
            )
        }
    }
}

/// The query. Membership is MEMBER, not USAGE: a NOINHERIT member cannot
/// use a role's privileges directly but can SET ROLE to it, so whatever
/// any role the gateway can become holds, the gateway holds. Attributes
/// are read over every such role (the role itself included).
const QUERY: &str = "SELECT r.rolname, \
     bool_or(g.rolsuper), bool_or(g.rolcreaterole), bool_or(g.rolbypassrls), bool_or(g.rolreplication), \
     pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'MEMBER'), \
     pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'MEMBER'), \
     pg_catalog.pg_has_role(r.oid, 'pg_execute_server_program', 'MEMBER'), \
     pg_catalog.pg_has_role(r.oid, 'pg_read_all_data', 'MEMBER'), \
     pg_catalog.pg_has_role(r.oid, 'pg_write_all_data', 'MEMBER'), \
     pg_catalog.pg_has_role(r.oid, 'pg_signal_backend', 'MEMBER') \
     FROM pg_catalog.pg_roles r JOIN pg_catalog.pg_roles g \
       ON pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER') \
     WHERE r.rolname = current_user GROUP BY r.rolname, r.oid";

/// Reads one row of [`QUERY`] (text values) into a report.
pub fn report_from_row(values: &[Option<String>]) -> Option<RoleReport> {
    if values.len() != 11 {
        return None;
    }
    let role = values[0].clone()?;
    let flag = |i: usize| values[i].as_deref() == Some("t");
    let order = [
        (1, Privilege::Superuser),
        (2, Privilege::CreateRole),
        (3, Privilege::BypassRowSecurity),
        (4, Privilege::Replication),
        (5, Privilege::ReadServerFiles),
        (6, Privilege::WriteServerFiles),
        (7, Privilege::ExecuteServerProgram),
        (8, Privilege::ReadAllData),
        (9, Privilege::WriteAllData),
        (10, Privilege::SignalBackend),
    ];
    let privileges = order
        .into_iter()
        .filter(|(i, _)| flag(*i))
        .map(|(_, p)| p)
        .collect();
    Some(RoleReport { role, privileges })
}

/// Logs in as the gateway would and reads what its role holds. Any
/// database serves: role attributes and memberships are cluster-wide.
pub async fn check_upstream_role(upstream: &UpstreamConfig) -> Result<RoleReport, CatalogError> {
    let database = upstream
        .database
        .clone()
        .unwrap_or_else(|| "postgres".into());
    let params = [(
        "application_name".to_string(),
        "vigil-privilege-check".to_string(),
    )];
    let limit = std::time::Duration::from_millis(upstream.connect_timeout_ms.max(1) * 2);
    tokio::time::timeout(limit, async {
        let (mut stream, _) = login::login(upstream, &database, &params).await?;
        let mut buf = BytesMut::with_capacity(4096);
        stream.write_all(&codec::query(QUERY)).await?;
        let mut report = None;
        let mut error = None;
        loop {
            let frame = read_frame(&mut stream, &mut buf)
                .await?
                .ok_or(CatalogError::Closed)?;
            match frame.tag {
                b'D' => {
                    let body = frame.body();
                    let values: Vec<Option<String>> = results::data_row_values(&body)?
                        .into_iter()
                        .map(|r| r.map(|r| String::from_utf8_lossy(&body[r]).into_owned()))
                        .collect();
                    report = report_from_row(&values);
                }
                b'E' => {
                    let fields = codec::parse_error_fields(frame.body())?;
                    error = Some(format!("{}: {}", fields.code, fields.message));
                }
                b'Z' => break,
                _ => {}
            }
        }
        let _ = stream.write_all(&codec::terminate()).await;
        match (report, error) {
            (_, Some(e)) => Err(CatalogError::Server(e)),
            (Some(r), None) => Ok(r),
            (None, None) => Err(CatalogError::Server(
                "the upstream role is not in pg_roles".into(),
            )),
        }
    })
    .await
    .map_err(|_| CatalogError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn each_privilege_is_reported_by_name() {
        let least = report_from_row(&row(&[
            "gw", "f", "f", "f", "f", "f", "f", "f", "f", "f", "f",
        ]))
        .unwrap();
        assert!(!least.is_privileged());
        assert!(least.describe().contains("least privilege"));
        let superuser = report_from_row(&row(&[
            "postgres", "t", "t", "t", "t", "t", "t", "t", "t", "t", "t",
        ]))
        .unwrap();
        assert_eq!(superuser.privileges.len(), 10);
        let program = report_from_row(&row(&[
            "gw", "f", "f", "f", "f", "f", "f", "t", "f", "f", "f",
        ]))
        .unwrap();
        assert_eq!(program.privileges, vec![Privilege::ExecuteServerProgram]);
        assert!(program.describe().contains("pg_execute_server_program"));
    }

    #[test]
    fn malformed_rows_are_not_reports() {
        assert_eq!(report_from_row(&row(&["gw", "f"])), None);
        let mut no_name = row(&["gw", "f", "f", "f", "f", "f", "f", "f", "f", "f", "f"]);
        no_name[0] = None;
        assert_eq!(report_from_row(&no_name), None);
    }
}
