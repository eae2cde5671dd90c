//! `vigil retention prune`: run retention now, on a stopped gateway's data.
//!
//! A running `vigil up` holds the ledger open and runs the same job on its
//! own schedule (`[ledger.retention]`); this command is for running it by
//! hand, e.g. before a backup, or to check what a policy would delete.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_ledger_service::retention::{self, RetentionPeriod, RetentionPolicy};
use vigil_ledger_service::{checkpointer, Ledger};

use crate::config::Config;
use crate::timefmt::rfc3339;

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Delete bodies and salts of entries older than the period; leaves and
    /// proofs stay, and the run is recorded as an event in the log.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Retention period: `6y` (a year counts 366 days), `2200d`, `12h`, ...
    #[arg(long)]
    older_than: String,
    /// The gateway's config file.
    #[arg(long, short, required_unless_present = "dev_data_dir")]
    config: Option<PathBuf>,
    /// Or the data directory of `vigil up --dev`.
    #[arg(long, conflicts_with = "config")]
    dev_data_dir: Option<PathBuf>,
    /// Prune with a period shorter than `ledger.retention.minimum` (default
    /// 6y). The run is recorded as forced, and auditors see it.
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Prune(args) = cmd;
    let period = RetentionPeriod::parse(&args.older_than)
        .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
    let config = match (&args.config, &args.dev_data_dir) {
        (Some(path), _) => Config::load(path)?,
        (None, Some(dir)) => Config::dev(dir.clone()),
        (None, None) => anyhow::bail!("give --config FILE or --dev-data-dir DIR"),
    };
    let policy = RetentionPolicy::new(period, config.retention_minimum()?, args.force)
        .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
    let period = &policy.period;
    let ledger = Ledger::open(&config.data_dir, &config.ledger.origin, config.keyring()?).context(
        "cannot open the ledger (if `vigil up` is running on this data directory, \
             stop it first, or let its [ledger.retention] schedule do this)",
    )?;
    let summary = retention::prune(&ledger, &policy)?;
    if summary.runs.is_empty() {
        println!(
            "nothing to prune: no entry before the minimum index {} is older than {}",
            ledger.store.min_index()?,
            period.as_str()
        );
        return Ok(());
    }
    for r in &summary.runs {
        println!(
            "pruned bodies of entries {}..{} (older than {}, cutoff {}){}",
            r.from_index,
            r.end_index,
            period.as_str(),
            rfc3339(r.cutoff_unix_nanos),
            if policy.is_below_minimum() {
                format!(
                    "; FORCED below the minimum {}, recorded as forced",
                    policy.minimum.as_str()
                )
            } else {
                String::new()
            }
        );
    }
    checkpointer::sign_now(&ledger)?;
    println!(
        "{} entries pruned; minimum index now {}; each run is recorded as a retention_pruned event; \
         checkpoint signed at size {}",
        summary.entries_pruned(),
        ledger.store.min_index()?,
        ledger.store.size()
    );
    Ok(())
}
