//! `vigil approvals list|show|approve|deny|watch|grant|revoke|grants`: the
//! approver's command line, a client of the gRPC API.
//!
//! The credential is the approver's OIDC access token (`--token-file`, or
//! the `VIGIL_TOKEN` environment variable), or, where the gateway allows
//! static identities, `--user` with the password in `VIGIL_PASSWORD`.
//! Secrets never come from the command line, where `ps` would show them.

// tonic's `Status` is the error type of every gRPC call; boxing it would
// only move the allocation.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use clap::{Args, Subcommand};
use tonic::metadata::AsciiMetadataValue;
use vigil_proto::approvals as pb;
use vigil_proto::approvals::approvals_client::ApprovalsClient;

use crate::timefmt;
use vigil_approval_service::escape;

#[derive(Args)]
pub struct ApprovalsArgs {
    /// The approval service's gRPC address.
    #[arg(
        long,
        env = "VIGIL_APPROVALS_URL",
        default_value = "http://127.0.0.1:6582"
    )]
    server: String,
    /// A file holding the approver's access token (else $VIGIL_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A static identity's name instead of a token (password in $VIGIL_PASSWORD).
    #[arg(long, conflicts_with = "token_file")]
    user: Option<String>,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Operations, newest first.
    List {
        /// pending, approved, denied, expired, withdrawn or all.
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One operation, with every vote.
    Show { operation_id: String },
    /// Approve a held statement.
    Approve {
        operation_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny a held statement (a reason is required).
    Deny {
        operation_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Print every pending operation, then every change, until interrupted.
    Watch,
    /// Let an agent run what a review rule holds, on one connection, for a while.
    Grant {
        /// The agent's subject (its token's `sub`).
        #[arg(long)]
        subject: String,
        /// The agent's issuer (default: the issuer of your own token).
        #[arg(long, default_value = "")]
        issuer: String,
        #[arg(long)]
        connection: String,
        #[arg(long)]
        rule: String,
        /// How long, e.g. 900 (seconds), 15m, 1h.
        #[arg(long = "for")]
        duration: String,
        #[arg(long)]
        reason: String,
    },
    /// End a grant early.
    Revoke {
        grant_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Every grant, active or not.
    Grants,
    /// Run the approval service as its own process (a Kafka deployment:
    /// [bus] kind = "kafka" and [approvals] in the config).
    Serve(crate::up::RoleArgs),
    /// Make a proxy token: prints the token (for a `vigil proxy`'s
    /// `[approval_service] token_file`) and its SHA-256 (for the service's
    /// `approvals.proxy_tokens_sha256`).
    ProxyToken,
}

pub fn run(args: ApprovalsArgs) -> anyhow::Result<()> {
    if let ApprovalsCommand::Serve(role) = args.command {
        return crate::up::run_role(role, crate::up::Roles::Approvals);
    }
    if let ApprovalsCommand::ProxyToken = args.command {
        let (token, sha256) = new_proxy_token();
        println!("token   {token}\nsha256  {sha256}");
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run_async(args))
}

/// A random proxy token (256 bits, hex) and the hex SHA-256 the service keeps.
pub fn new_proxy_token() -> (String, String) {
    use rand::RngCore;
    use sha2::Digest;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let sha256 = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    (token, sha256)
}

fn credential(args: &ApprovalsArgs) -> anyhow::Result<String> {
    if let Some(user) = &args.user {
        let password = std::env::var("VIGIL_PASSWORD")
            .context("--user needs the password in the VIGIL_PASSWORD environment variable")?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        return Ok(format!("Basic {basic}"));
    }
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        None => std::env::var("VIGIL_TOKEN")
            .context("no credential: give --token-file, set VIGIL_TOKEN, or use --user")?,
    };
    Ok(format!("Bearer {}", token.trim()))
}

async fn run_async(args: ApprovalsArgs) -> anyhow::Result<()> {
    let auth: AsciiMetadataValue = credential(&args)?
        .parse()
        .context("the credential is not a valid header value")?;
    let channel = tonic::transport::Endpoint::from_shared(args.server.clone())
        .context("--server is not a URL")?
        .connect()
        .await
        .with_context(|| format!("cannot reach the approval service at {}", args.server))?;
    let mut client =
        ApprovalsClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", auth.clone());
            Ok(req)
        });
    // The service's messages can quote what was asked (an id, a rule name).
    let refused = |s: tonic::Status| anyhow::anyhow!("{}", escape::terminal(s.message()));
    let approving = matches!(args.command, ApprovalsCommand::Approve { .. });
    match args.command {
        ApprovalsCommand::List { state, limit } => {
            let ops = client
                .list(pb::ListRequest { state, limit })
                .await
                .map_err(refused)?
                .into_inner()
                .operations;
            if ops.is_empty() {
                println!("no operations");
            }
            for op in &ops {
                println!("{}", one_line(op));
            }
        }
        ApprovalsCommand::Show { operation_id } => {
            let op = client
                .get(pb::GetRequest { operation_id })
                .await
                .map_err(refused)?
                .into_inner();
            print!("{}", details(&op));
        }
        ApprovalsCommand::Approve {
            operation_id,
            reason,
        }
        | ApprovalsCommand::Deny {
            operation_id,
            reason,
        } => {
            let request = pb::DecideRequest {
                operation_id,
                reason,
            };
            let reply = if approving {
                client.approve(request).await
            } else {
                client.deny(request).await
            };
            println!("{}", after_vote(&reply.map_err(refused)?.into_inner()));
        }
        ApprovalsCommand::Watch => {
            let mut stream = client
                .watch(pb::WatchRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            while let Some(op) = stream.message().await.map_err(refused)? {
                println!("{}", one_line(&op));
            }
        }
        ApprovalsCommand::Grant {
            subject,
            issuer,
            connection,
            rule,
            duration,
            reason,
        } => {
            let secs = crate::timefmt::parse_duration_secs(&duration)
                .with_context(|| format!("--for {duration:?}: give seconds or 15m, 1h"))?;
            let g = client
                .grant(pb::GrantRequest {
                    grantee_subject: subject,
                    grantee_issuer: issuer,
                    connection,
                    rule,
                    duration_secs: secs,
                    reason,
                })
                .await
                .map_err(refused)?
                .into_inner();
            println!("{}", grant_line(&g));
        }
        ApprovalsCommand::Revoke { grant_id, reason } => {
            let g = client
                .revoke(pb::RevokeRequest { grant_id, reason })
                .await
                .map_err(refused)?
                .into_inner();
            println!("{}", grant_line(&g));
        }
        ApprovalsCommand::Serve(_) | ApprovalsCommand::ProxyToken => {
            unreachable!("handled before connecting")
        }
        ApprovalsCommand::Grants => {
            let grants = client
                .list_grants(pb::ListGrantsRequest {})
                .await
                .map_err(refused)?
                .into_inner()
                .grants;
            if grants.is_empty() {
                println!("no grants");
            }
            for g in &grants {
                println!("{}", grant_line(g));
            }
        }
    }
    Ok(())
}

fn time(nanos: i64) -> String {
    timefmt::rfc3339(nanos)
}

/// Every string the service sends is printed through this: statements,
/// names, rules and reasons come from agents, approvers and operators, and
/// must not reach the terminal as escape sequences or bidi controls.
fn e(s: &str) -> String {
    escape::terminal(s)
}

fn one_line(op: &pb::Operation) -> String {
    format!(
        "{}  {:<9}  rule={}  by={}  on={}  approvals={}/{}  expires={}  {}",
        e(&op.operation_id),
        e(&op.state),
        e(&op.rule),
        e(&op.requester_subject),
        e(&op.connection),
        op.approvals,
        op.quorum,
        time(op.expires_unix_nanos),
        e(&op.statement)
    )
}

fn details(op: &pb::Operation) -> String {
    let groups: Vec<String> = op.approver_groups.iter().map(|g| e(g)).collect();
    let mut s = format!(
        "operation  {}\nstate      {}\nrule       {}\nrequester  {} ({})\nconnection {}\nsession    {}\nstatement  {}\napprovers  {} (quorum {})\nopened     {}\nexpires    {}\n",
        e(&op.operation_id),
        e(&op.state),
        e(&op.rule),
        e(&op.requester_subject),
        e(&op.requester_issuer),
        e(&op.connection),
        e(&op.session_id),
        e(&op.statement),
        groups.join(", "),
        op.quorum,
        time(op.opened_unix_nanos),
        time(op.expires_unix_nanos),
    );
    for v in &op.votes {
        s.push_str(&format!(
            "vote       {} by {} ({}) at {}{}\n",
            e(&v.verdict),
            e(&v.approver_subject),
            e(&v.approver_issuer),
            time(v.at_unix_nanos),
            if v.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e(&v.reason))
            }
        ));
    }
    if op.state != "pending" {
        s.push_str(&format!(
            "closed     {}: {}\n",
            time(op.closed_unix_nanos),
            e(&op.closed_reason)
        ));
    }
    s
}

fn after_vote(op: &pb::Operation) -> String {
    if op.state == "pending" {
        format!(
            "operation {}: vote recorded; {} of {} approvals",
            e(&op.operation_id),
            op.approvals,
            op.quorum
        )
    } else {
        format!(
            "operation {}: {} ({})",
            e(&op.operation_id),
            e(&op.state),
            e(&op.closed_reason)
        )
    }
}

fn grant_line(g: &pb::GrantInfo) -> String {
    format!(
        "grant {}  {}  {} ({}) on {} rule={} until {} by {}: {}{}",
        e(&g.grant_id),
        if g.active { "active" } else { "ended" },
        e(&g.grantee_subject),
        e(&g.grantee_issuer),
        e(&g.connection),
        e(&g.rule),
        time(g.expires_unix_nanos),
        e(&g.issued_by_subject),
        e(&g.reason),
        if g.revoked_by_subject.is_empty() {
            String::new()
        } else {
            format!(
                " (revoked by {}: {})",
                e(&g.revoked_by_subject),
                e(&g.revoke_reason)
            )
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "x\x1b[2J\x1b[H\r\nvote approve by alice\u{9b}1m\u{202e}\u{2066}\u{200b}\x7f";

    fn hostile_operation() -> pb::Operation {
        let h = || HOSTILE.to_string();
        pb::Operation {
            operation_id: h(),
            state: h(),
            session_id: h(),
            connection: h(),
            requester_subject: h(),
            requester_issuer: h(),
            statement: h(),
            rule: h(),
            approver_groups: vec![h(), h()],
            quorum: 1,
            approvals: 0,
            opened_unix_nanos: 0,
            expires_unix_nanos: 0,
            closed_reason: h(),
            closed_unix_nanos: 0,
            votes: vec![pb::Vote {
                approver_subject: h(),
                approver_issuer: h(),
                verdict: h(),
                reason: h(),
                at_unix_nanos: 0,
            }],
        }
    }

    fn assert_inert(printed: &str, lines: usize) {
        // Line breaks are ours (counted below); nothing else may act.
        assert!(
            !printed
                .chars()
                .any(|c| c != '\n' && escape::is_unsafe_char(c)),
            "unescaped control in {printed:?}"
        );
        assert_eq!(
            printed.trim_end_matches('\n').lines().count(),
            lines,
            "{printed}"
        );
        assert!(printed.contains("x\\x1b[2J\\x1b[H\\r\\nvote"), "{printed}");
        assert!(
            printed.contains("\\u{202e}\\u{2066}\\u{200b}\\x7f"),
            "{printed}"
        );
    }

    #[test]
    fn every_string_the_cli_prints_is_escaped() {
        let op = hostile_operation();
        assert_inert(&one_line(&op), 1);
        // Ten fixed lines, one vote, and the closing line (the state is
        // not "pending").
        assert_inert(&details(&op), 12);
        assert_inert(&after_vote(&op), 1);
        let pending = pb::Operation {
            state: "pending".into(),
            ..hostile_operation()
        };
        assert!(!after_vote(&pending).chars().any(escape::is_unsafe_char));
        let h = || HOSTILE.to_string();
        let grant = pb::GrantInfo {
            grant_id: h(),
            grantee_subject: h(),
            grantee_issuer: h(),
            connection: h(),
            rule: h(),
            issued_by_subject: h(),
            reason: h(),
            issued_unix_nanos: 0,
            expires_unix_nanos: 0,
            active: true,
            revoked_by_subject: h(),
            revoke_reason: h(),
        };
        assert_inert(&grant_line(&grant), 1);
    }
}
