//! `vigil witness`: a C2SP tlog-witness for Vigil logs (or any log that
//! signs C2SP checkpoints with Ed25519), run by a party other than the
//! log's operator. See `vigil_ledger_service::witness`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use vigil_ledger::NoteVerifier;
use vigil_ledger_service::witness::{self, Witness};

#[derive(Args)]
pub struct WitnessArgs {
    /// Where to take checkpoints (`POST /add-checkpoint`).
    #[arg(long)]
    listen: SocketAddr,
    /// The witness's own directory: its key (created on first start) and
    /// the largest checkpoint it cosigned for each log.
    #[arg(long)]
    data_dir: PathBuf,
    /// The witness's name, e.g. witness.example.org/w1.
    #[arg(long)]
    name: String,
    /// A verifier key of a log this witness cosigns for (repeat for several
    /// logs, or for a log's next key after a rotation).
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<String>,
}

pub fn run(args: WitnessArgs) -> anyhow::Result<()> {
    crate::up::init_tracing();
    let logs = args
        .log_keys
        .iter()
        .map(|k| {
            NoteVerifier::from_vkey_text(k.trim())
                .map_err(|e| anyhow::anyhow!("--log-key {k:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness = Witness::open(&args.data_dir, &args.name, logs).map_err(anyhow::Error::msg)?;
    println!("witness verifier key: {}", witness.verifier_key());
    let witness = Arc::new(witness);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            println!("vigil witness is ready");
            vigil_runtime::http::serve(
                listener,
                witness::router(witness),
                vigil_runtime::http::ServeLimits::SMALL_REQUESTS,
            )
            .await;
            Ok(())
        })
}
