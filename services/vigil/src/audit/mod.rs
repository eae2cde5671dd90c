//! `vigil audit ...`: tools for auditors, who should trust nothing but the
//! verifier key they were given.
//!
//! - `verify`: the whole log, end to end ([`verify`]);
//! - `prove`: one event's inclusion proof as JSON ([`prove`]);
//! - `export` / `check-bundle`: offline evidence bundles ([`bundle`]);
//! - `replay`: a session's proven transcript ([`replay`]).
//!
//! Exit codes: 0 all checks passed, 1 a check failed (tampering or a
//! broken log), 2 the check could not be made (bad arguments, unreachable
//! ledger, unreadable file).

pub mod bundle;
pub mod client;
pub mod prove;
pub mod pruning;
pub mod replay;
pub mod report;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::timefmt::parse_time;
use bundle::Selection;
use client::Client;
use vigil_ledger_service::retention::RetentionPeriod;

#[derive(Args, Clone)]
pub struct LedgerArgs {
    /// The ledger's HTTP address, e.g. http://127.0.0.1:6580
    #[arg(long)]
    ledger: String,
    /// The verifier key (name+keyid+base64), as printed at the ledger's first start.
    #[arg(long)]
    key: String,
    /// Auditor bearer token, for ledgers that require one to read bodies.
    #[arg(long, env = "VIGIL_AUDITOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl LedgerArgs {
    fn client(&self) -> Client {
        Client::new(&self.ledger, self.token.clone())
    }
}

#[derive(Args, Clone)]
pub struct SelectArgs {
    /// A session id: its events, checked for completeness by their seq numbers.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    session: Option<String>,
    /// Start of a time range (RFC 3339 UTC, e.g. 2026-11-22T00:00:00Z, or ns).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the time range (exclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
}

impl SelectArgs {
    fn selection(&self) -> anyhow::Result<Selection> {
        match (&self.session, &self.from, &self.to) {
            (Some(s), None, None) => Ok(Selection::Session {
                session_id: s.clone(),
            }),
            (None, Some(f), Some(t)) => {
                let from_unix_nanos = parse_time(f).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
                let to_unix_nanos = parse_time(t).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
                anyhow::ensure!(
                    from_unix_nanos < to_unix_nanos,
                    "--from must be before --to"
                );
                Ok(Selection::TimeRange {
                    from_unix_nanos,
                    to_unix_nanos,
                })
            }
            _ => anyhow::bail!("give --session ID, or --from and --to"),
        }
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole ledger against its verifier key; exit 0 only if all holds.
    Verify {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// A state file holding the last checkpoint you verified: the new one
        /// must extend it (no rollback, no fork). Created on first use and
        /// advanced only when every check passes.
        #[arg(long)]
        state: Option<PathBuf>,
        /// How long you expect evidence to be kept (HIPAA: six years): a
        /// retention run that deleted younger bodies is warned about.
        #[arg(long, default_value = "6y")]
        retention_period: String,
        #[command(flatten)]
        witness: WitnessArgs,
    },
    /// Print the inclusion proof of one event as JSON (verified first).
    Prove {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The event's id (a UUID, as in the event).
        #[arg(long)]
        event_id: String,
    },
    /// Write an evidence bundle (events, proofs, checkpoint, key) for a
    /// session or a time range, for `check-bundle` to verify offline.
    Export {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        select: SelectArgs,
        /// Where to write the bundle (JSON).
        #[arg(long, short)]
        out: PathBuf,
        /// Your state file (from `verify --state`): the bundle then carries
        /// a consistency proof from the checkpoint you trust.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Verify an evidence bundle offline.
    CheckBundle {
        /// The bundle file.
        bundle: PathBuf,
        /// The verifier key you trust (else the bundle's own key is used, with a warning).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// A session's transcript, statement by statement, from proven events.
    Replay {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The session id.
        #[arg(long)]
        session: String,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// The witnesses an auditor requires.
#[derive(Args, Clone)]
pub struct WitnessArgs {
    /// A witness's cosigner key (name+keyid+base64, from `vigil witness`);
    /// repeat for several.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// How many of them must have cosigned the checkpoint (default: all).
    #[arg(long)]
    min_witnesses: Option<usize>,
}

impl WitnessArgs {
    fn policy(&self) -> anyhow::Result<client::WitnessPolicy> {
        client::WitnessPolicy::parse(&self.witnesses, self.min_witnesses)
    }
}

/// What an auditor brings to a bundle besides the key.
#[derive(Args, Clone)]
pub struct TrustArgs {
    #[command(flatten)]
    witness: WitnessArgs,
    /// Your state file (from `verify --state`): a bundle whose checkpoint is
    /// older than the one you trust, or not shown to extend it, is refused.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Accept a session whose end (SessionClosed) is not in the log: it was
    /// open at the checkpoint. Nothing then proves there were no more events.
    #[arg(long)]
    allow_open: bool,
    /// How long you expect evidence to be kept (HIPAA: six years): bodies
    /// of the bundle pruned younger than that are warned about.
    #[arg(long, default_value = "6y")]
    retention_period: String,
}

impl TrustArgs {
    fn options(&self) -> anyhow::Result<bundle::CheckOptions> {
        Ok(bundle::CheckOptions {
            witnesses: self.witness.policy()?,
            trusted: trusted_state(self.state.as_deref())?,
            allow_open: self.allow_open,
            expected_retention: Some(
                RetentionPeriod::parse(&self.retention_period)
                    .map_err(|e| anyhow::anyhow!("--retention-period: {e}"))?,
            ),
        })
    }
}

fn trusted_state(path: Option<&std::path::Path>) -> anyhow::Result<Option<verify::TrustedState>> {
    match path {
        Some(p) => verify::TrustedState::load(p),
        None => Ok(None),
    }
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    match execute(cmd) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("vigil audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true): all checks passed; Ok(false): a check failed.
fn execute(cmd: AuditCommand) -> anyhow::Result<bool> {
    match cmd {
        AuditCommand::Verify {
            ledger,
            state,
            retention_period,
            witness,
        } => {
            let expected = RetentionPeriod::parse(&retention_period)
                .map_err(|e| anyhow::anyhow!("--retention-period: {e}"))?;
            let report = verify::verify(
                &ledger.client(),
                &ledger.key,
                state.as_deref(),
                &expected,
                &witness.policy()?,
            )?;
            print!("{}", report.render(""));
            Ok(report.is_clean())
        }
        AuditCommand::Prove { ledger, event_id } => {
            let doc = prove::prove(&ledger.client(), &ledger.key, &event_id)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(true)
        }
        AuditCommand::Export {
            ledger,
            select,
            out,
            state,
        } => {
            let trusted = trusted_state(state.as_deref())?;
            let options = bundle::ExportOptions {
                trusted: trusted.clone(),
            };
            let b = bundle::export(&ledger.client(), &ledger.key, select.selection()?, &options)?;
            // Check what we wrote with the same code an auditor runs. An
            // open session is not the exporter's problem: it is written,
            // and the auditor decides.
            let check_options = bundle::CheckOptions {
                witnesses: Default::default(),
                trusted,
                allow_open: true,
                expected_retention: None,
            };
            let report = bundle::check(&b, Some(&ledger.key), &check_options)?;
            std::fs::write(&out, serde_json::to_string_pretty(&b)? + "\n")
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote {} with {} entries ({} events proven); check it with `vigil audit check-bundle {}`.\n\
                 It holds event bodies (exact statements and parameters: possibly PHI); store and send it as such.",
                out.display(),
                b.entries.len(),
                report.events.len(),
                out.display()
            );
            if !report.checks.is_clean() {
                print!("{}", report.checks.render("bundle "));
            }
            Ok(report.checks.is_clean())
        }
        AuditCommand::CheckBundle {
            bundle: path,
            key,
            trust,
        } => {
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            anyhow::ensure!(
                meta.len() <= bundle::MAX_BUNDLE_BYTES,
                "{} is larger than {} bytes",
                path.display(),
                bundle::MAX_BUNDLE_BYTES
            );
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let b = bundle::parse(&text)?;
            let report = bundle::check(&b, key.as_deref(), &trust.options()?)?;
            print!("{}", report.checks.render("bundle "));
            Ok(report.checks.is_clean())
        }
        AuditCommand::Replay {
            ledger,
            session,
            trust,
        } => {
            let selection = Selection::Session {
                session_id: session,
            };
            let options = trust.options()?;
            let export_options = bundle::ExportOptions {
                trusted: options.trusted.clone(),
            };
            let b = bundle::export(&ledger.client(), &ledger.key, selection, &export_options)?;
            let report = bundle::check(&b, Some(&ledger.key), &options)?;
            print!("{}", replay::transcript(&report.events));
            let pruned = b.entries.iter().filter(|e| e.body.is_none()).count();
            if pruned > 0 {
                println!(
                    "{pruned} event(s) of this session were pruned by retention: their place is proven, their content deleted"
                );
            }
            if !report.checks.is_clean() || !report.checks.warnings.is_empty() {
                eprint!("{}", report.checks.render("bundle "));
            }
            Ok(report.checks.is_clean())
        }
    }
}
