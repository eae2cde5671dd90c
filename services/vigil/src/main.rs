//! `vigil`: one binary, every role. This file only parses the command line
//! and hands off; each command lives in its own module.
#![forbid(unsafe_code)]

mod approvals_cmd;
mod audit;
mod body_key;
mod config;
mod ledger_cmd;
mod logins;
mod mcp_cmd;
mod policy_setup;
mod retention_cmd;
mod timefmt;
mod up;
mod upstream_check;
mod witness_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "An audited, identity-aware gateway between AI agents and PHI datastores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum BodyKeyCommand {
    /// Print `<id> <base64 key>`: one line for the keyring file.
    New {
        /// The key's id, recorded with every body it seals (e.g. 2026-11).
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: PostgreSQL proxy, bus (embedded unless
    /// [bus] says Kafka), ledger.
    Up(up::UpArgs),
    /// Run the PostgreSQL proxies alone, publishing to Kafka through a
    /// durable outbox (config: [bus] kind = "kafka").
    Proxy(up::RoleArgs),
    /// Run the ledger alone, consuming from Kafka; a second one on the same
    /// data directory stands by and takes over when the first dies.
    Ledger(ledger_cmd::LedgerArgs),
    /// Approvers' tools: list, show, approve, deny and watch held
    /// statements; grant and revoke time-boxed access.
    Approvals(approvals_cmd::ApprovalsArgs),
    /// Auditor tools: check the ledger without trusting the gateway.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check a config file and print what it would run.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// The role the config is for: up (every role), proxy or ledger.
        #[arg(long, default_value = "up")]
        role: up::Roles,
    },
    /// Print a new key line for the event body keyring (put it first to rotate).
    #[command(subcommand)]
    BodyKey(BodyKeyCommand),
    /// A C2SP tlog-witness: cosigns a log's checkpoints only while they
    /// stay consistent with what it cosigned before (run it elsewhere).
    Witness(witness_cmd::WitnessArgs),
    /// Retention: delete event bodies past the retention period.
    #[command(subcommand)]
    Retention(retention_cmd::RetentionCommand),
    /// MCP listeners: tool definitions pinned at first sight.
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCommand),
    /// Read a secret from standard input and print its Argon2id hash for the
    /// `password_hash` of a static identity.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Proxy(args) => up::run_role(args, up::Roles::Proxy),
        Command::Ledger(args) => ledger_cmd::run(args),
        Command::Audit(cmd) => return audit::run(cmd),
        Command::Approvals(args) => approvals_cmd::run(args),
        Command::CheckConfig { config, role } => check_config(&config, role),
        Command::HashPassword => hash_password(),
        Command::BodyKey(BodyKeyCommand::New { id }) => {
            body_key::new_line(&id).map(|line| println!("{line}"))
        }
        Command::Retention(cmd) => retention_cmd::run(cmd),
        Command::Witness(args) => witness_cmd::run(args),
        Command::Mcp(cmd) => mcp_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vigil check-config`: the config's own checks, what it would run, and
/// (for roles that proxy) what each upstream role may do, refused as at
/// start.
fn check_config(path: &std::path::Path, role: up::Roles) -> anyhow::Result<()> {
    let c = config::Config::load(path)?;
    c.check_role(role)?;
    println!("{}", c.summary());
    if matches!(role, up::Roles::All | up::Roles::Proxy) && !c.postgres.is_empty() {
        let proxies = c.proxies()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(upstream_check::check_upstream_roles(&c, &proxies))?;
    }
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let mut secret = String::new();
    std::io::stdin().read_line(&mut secret)?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!secret.is_empty(), "no secret on standard input");
    println!(
        "{}",
        vigil_proxy_core::identity::hash_password(secret.as_bytes())
    );
    Ok(())
}
