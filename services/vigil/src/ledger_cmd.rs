//! `vigil ledger`: the ledger role (from a config with a Kafka bus), and
//! `vigil ledger rotate-key` on a stopped gateway's data.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_ledger_service::Ledger;

use crate::config::Config;
use crate::up;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LedgerArgs {
    #[command(subcommand)]
    action: Option<LedgerAction>,
    /// The config file (see deploy/vigil.example.toml); [bus] kind = "kafka".
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Replace the checkpoint signing key, on a stopped gateway's data: the
    /// log records a checkpoint signed by the old and the new key, so an
    /// auditor who trusts the old key follows it to the new one.
    RotateKey {
        /// The gateway's config file.
        #[arg(long, short, required_unless_present = "dev_data_dir")]
        config: Option<PathBuf>,
        /// Or the data directory of `vigil up --dev`.
        #[arg(long, conflicts_with = "config")]
        dev_data_dir: Option<PathBuf>,
    },
}

pub fn run(args: LedgerArgs) -> anyhow::Result<()> {
    match (args.action, args.config) {
        (None, Some(config)) => up::run_role(up::RoleArgs { config }, up::Roles::Ledger),
        (None, None) => anyhow::bail!("give --config FILE to run the ledger, or a subcommand"),
        (
            Some(LedgerAction::RotateKey {
                config,
                dev_data_dir,
            }),
            _,
        ) => {
            let config = match (&config, &dev_data_dir) {
                (Some(path), _) => Config::load(path)?,
                (None, Some(dir)) => Config::dev(dir.clone()),
                (None, None) => anyhow::bail!("give --config FILE or --dev-data-dir DIR"),
            };
            rotate_key(&config)
        }
    }
}

fn rotate_key(config: &Config) -> anyhow::Result<()> {
    let ledger = Ledger::open(&config.data_dir, &config.ledger.origin, config.keyring()?).context(
        "cannot open the ledger (if vigil is running on this data directory, stop it first)",
    )?;
    let old = ledger.verifier_key();
    let (ledger, note) = ledger
        .rotate_key(&config.data_dir)
        .context("cannot rotate the signing key")?;
    let new = ledger.verifier_key();
    std::fs::write(
        config.data_dir.join("ledger-verifier.key"),
        format!("{new}\n"),
    )
    .context("cannot write the verifier key file")?;
    println!("signing key rotated at size {}", ledger.store.size());
    println!("old verifier key: {old}");
    println!("new verifier key: {new}");
    println!("the rotation, signed by both keys (served at /vigil/v1/key-rotations):");
    print!("{note}");
    println!(
        "auditors who trust the old key follow the rotation to the new one; the old key is kept \
         beside the new as ledger-signing.key.retired-<key id>"
    );
    Ok(())
}
