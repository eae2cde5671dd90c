//! `vigil`: one binary, every role. This file only parses the command line
//! and hands off; each command lives in its own module.
#![forbid(unsafe_code)]

mod audit;
mod config;
mod up;

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
enum Command {
    /// Run every role in one process: PostgreSQL proxy, embedded bus, ledger.
    Up(up::UpArgs),
    /// Auditor tools: check the ledger without trusting the gateway.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check a config file and print what it would run.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a secret from standard input and print its Argon2id hash for the
    /// `password_hash` of a static identity.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Audit(cmd) => return audit::run(cmd),
        Command::CheckConfig { config } => config::Config::load(&config).map(|c| {
            println!("{}", c.summary());
        }),
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
