//! `vigil up`: every role in one process on the embedded bus.
//!
//! Order matters: the ledger opens (and signs a first checkpoint) before any
//! listener binds, and every listener binds before any serves, so that a
//! broken data directory or a taken port stops the start with a clear error
//! instead of leaving half a gateway running.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use vigil_ledger_service::{
    appender, checkpointer, grpc::LedgerGrpc, http, retention, BodyAccess, Ledger,
};
use vigil_proxy_core::EventSink;
use vigil_proxy_postgres::PostgresProxy;

use crate::config::{Config, DEV_BODY_KEYS_FILE, DEV_MASKING_KEY_FILE};

/// Events that may wait on the embedded bus before publishers feel backpressure.
const BUS_CAPACITY: usize = 65_536;

#[derive(Args)]
pub struct UpArgs {
    /// The config file (see deploy/vigil.example.toml).
    #[arg(long, short, required_unless_present = "dev", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Development mode: no config; PostgreSQL clients on 127.0.0.1:6543 as
    /// dev/dev (loopback only), forwarded to 127.0.0.1:5432 as postgres.
    #[arg(long)]
    dev: bool,
    /// Data directory (dev mode; default ./vigil-data).
    #[arg(long, requires = "dev")]
    data_dir: Option<PathBuf>,
    /// Apply this policy on every listener: a file, or builtin:phi-default
    /// (what --dev applies by default) or builtin:allow-all.
    #[arg(long)]
    policy: Option<String>,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = match (&args.config, args.dev) {
        (Some(path), _) => Config::load(path)?,
        (None, _) => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("vigil-data"));
            eprintln!("{DEV_BANNER}");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            crate::body_key::create_if_missing(&dir.join(DEV_BODY_KEYS_FILE))?;
            crate::policy_setup::create_masking_key_if_missing(&dir.join(DEV_MASKING_KEY_FILE))?;
            Config::dev(dir)
        }
    };
    let mut config = config;
    if let Some(policy) = &args.policy {
        config.override_policy(policy);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

const DEV_BANNER: &str = "\
==================================================================
 VIGIL DEVELOPMENT MODE: not for real patient data.
 - identity dev / password dev, accepted from this machine only
 - the upstream is 127.0.0.1:5432 as postgres (trust auth)
 - event bodies are served to any local process without a token
 - the body encryption keyring is kept next to the data it protects
 - policy: the shipped PHI default (deny destructive/admin statements,
   review bulk exports, mask PHI) unless --policy names another
 Use `vigil up --config FILE` for anything else.
==================================================================";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let auth = config.authenticator()?;
    if let Some(tokens) = auth.token_verifier().cloned() {
        // Fetch every issuer's keys before taking clients. An issuer that
        // does not answer does not stop the gateway: its tokens are refused
        // (with the reason) until a later refresh reaches it.
        let results = tokio::task::spawn_blocking(move || tokens.refresh_all()).await?;
        for (issuer, result) in results {
            match result {
                Ok(n) => tracing::info!(%issuer, keys = n, "OIDC issuer keys fetched"),
                Err(e) => {
                    tracing::warn!(%issuer, error = %e, "OIDC issuer keys not fetched; its tokens are refused until they are")
                }
            }
        }
    }
    let proxies = config.proxies()?;
    let access = BodyAccess::new(&config.ledger.auditor_tokens_sha256)?;

    let keyring = config.keyring()?;
    let ledger = Arc::new(Ledger::open(
        &config.data_dir,
        &config.ledger.origin,
        keyring,
    )?);
    let vkey = ledger.verifier_key();
    std::fs::write(
        config.data_dir.join("ledger-verifier.key"),
        format!("{vkey}\n"),
    )
    .context("cannot write the verifier key file")?;
    {
        let l = ledger.clone();
        tokio::task::spawn_blocking(move || checkpointer::sign_now(&l))
            .await?
            .context("cannot sign the first checkpoint")?;
    }

    let http_listener = bind(config.ledger.http_listen, "the ledger's HTTP API").await?;
    let grpc_listener = bind(config.ledger.grpc_listen, "the ledger's gRPC API").await?;
    let mut pg_listeners = Vec::new();
    for (addr, proxy_config) in proxies {
        let listener = bind(addr, &format!("postgres \"{}\"", proxy_config.name)).await?;
        pg_listeners.push((listener, proxy_config));
    }

    let (bus, subscriber) = vigil_bus::embedded(BUS_CAPACITY);
    let sink: Arc<dyn EventSink> = Arc::new(bus);
    tokio::spawn(appender::run(ledger.store.clone(), subscriber));
    tokio::spawn(checkpointer::run(
        ledger.clone(),
        Duration::from_millis(config.ledger.checkpoint_interval_ms),
    ));
    if let Some((period, every)) = config.retention() {
        tokio::spawn(retention::run(ledger.clone(), period, every));
    }
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (ledger, access) = (ledger.clone(), access.clone());
        tasks.spawn(async move {
            http::serve(http_listener, ledger, access)
                .await
                .context("ledger HTTP API stopped")
        });
    }
    {
        let svc = LedgerGrpc::server(ledger.clone(), access);
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                    grpc_listener,
                ))
                .await
                .context("ledger gRPC API stopped")
        });
    }
    for (listener, proxy_config) in pg_listeners {
        let proxy = PostgresProxy::new(proxy_config, auth.clone(), sink.clone());
        tasks.spawn(async move {
            let name = proxy.name().to_string();
            proxy
                .serve(listener)
                .await
                .with_context(|| format!("postgres \"{name}\" stopped"))
        });
    }

    println!("{}", config.summary());
    println!("ledger verifier key: {vkey}");
    println!("vigil is ready");

    let outcome = tokio::select! {
        r = tasks.join_next() => match r {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::anyhow!("a listener task failed: {e}")),
            _ => Ok(()),
        },
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    // A last checkpoint covers everything appended before the stop.
    let l = ledger.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || checkpointer::sign_now(&l)).await {
        tracing::error!(error = %e, "cannot sign the final checkpoint");
    }
    outcome
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
