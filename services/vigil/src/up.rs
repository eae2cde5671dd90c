//! `vigil up`: every role in one process (the embedded bus, or Kafka when
//! configured); `vigil proxy` and `vigil ledger`: one role each, over Kafka.
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
use vigil_proxy_core::{Approvals, EventSink};
use vigil_proxy_postgres::PostgresProxy;
use vigil_runtime::drain::Drain;

use crate::config::{Config, DEV_BODY_KEYS_FILE, DEV_MASKING_KEY_FILE};
use vigil_approval_service::grpc::ApprovalsGrpc;
use vigil_approval_service::local::LocalApprovals;
use vigil_approval_service::remote::RemoteApprovals;
use vigil_approval_service::service::{grant_rules, ApprovalService, ServiceError};
use vigil_approval_service::settings::{read_secret, ApprovalsSection};
use vigil_approval_service::webhook;

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

/// `vigil proxy` / `vigil ledger`: one role, from a config with a Kafka bus.
#[derive(Args)]
pub struct RoleArgs {
    /// The config file (see deploy/vigil.example.toml); [bus] kind = "kafka".
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn run_role(args: RoleArgs, roles: Roles) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load(&args.config)?;
    let runtime = async_runtime()?;
    let outcome = runtime.block_on(serve_roles(config, roles));
    wait_for_writers(runtime);
    outcome
}

/// The async runtime of `vigil up` and of the roles: one worker fewer
/// than the machine has cores, unless `TOKIO_WORKER_THREADS` says
/// otherwise. The ledger's appender and syncer are threads of their own
/// and wake the sessions' tasks; with a worker a core, a woken task often
/// lands on a parked worker and pays for waking it (issue 25: +18 % a
/// client at one client with one worker on two cores, README). Work that
/// may block its thread runs in `vigil_runtime::blocking`, which hands the
/// worker's other tasks to another thread meanwhile.
fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let from_env = std::env::var("TOKIO_WORKER_THREADS").ok();
    let workers = worker_threads(cores, from_env.as_deref())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        // Threads in `may_block` count against this limit, and once it is
        // reached a worker's hand-over waits for one of them: above the
        // sum of the listeners' connection limits (an LLM or MCP listener
        // takes 512 at most, a PostgreSQL one 80 by default), so that
        // sessions queued for a large-input turn cannot reach it. Threads
        // start only when needed.
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The blocking pool's limit (tokio's default is 512).
const MAX_BLOCKING_THREADS: usize = 4096;

/// How many async workers: `TOKIO_WORKER_THREADS` when set, else one
/// fewer than `cores` (at least one).
fn worker_threads(cores: usize, from_env: Option<&str>) -> anyhow::Result<usize> {
    match from_env {
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => anyhow::bail!("TOKIO_WORKER_THREADS={text:?} is not a positive whole number"),
        },
        None => Ok(cores.saturating_sub(1).max(1)),
    }
}

/// Drops the runtime (its tasks, the proxies' sessions and every handle on
/// the writer threads go with it, which tells those threads to end), then
/// waits for the ledger's appender and the outbox's writer to let go of
/// their RocksDB stores: exiting while one is still closing its store
/// aborted the process now and then ("pthread lock: Invalid argument").
fn wait_for_writers(runtime: tokio::runtime::Runtime) {
    drop(runtime);
    let left = vigil_bus::own_thread::wait_for_all(Duration::from_secs(10));
    if left > 0 {
        tracing::error!(
            threads = left,
            "writer threads still running at exit; their last records may not be synced"
        );
    }
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
    let runtime = async_runtime()?;
    let outcome = runtime.block_on(serve(config));
    wait_for_writers(runtime);
    outcome
}

const DEV_BANNER: &str = "\
==================================================================
 VIGIL DEVELOPMENT MODE: not for real patient data.
 - identity dev / password dev, accepted from this machine only
 - the upstream is 127.0.0.1:5432 as postgres (trust auth), a SUPERUSER:
   any code the policy cannot see into runs with every privilege
 - event bodies are served to any local process without a token
 - the body encryption keyring is kept next to the data it protects
 - policy: the shipped PHI default (deny destructive/admin statements,
   review bulk exports, mask PHI) unless --policy names another
 Use `vigil up --config FILE` for anything else.
==================================================================";

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Which roles this process runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Roles {
    /// `vigil up`: proxies and ledger (embedded bus, or Kafka if configured).
    #[value(name = "up")]
    All,
    /// `vigil proxy`: the PostgreSQL proxies, publishing through the outbox.
    Proxy,
    /// `vigil ledger`: the ledger, consuming from Kafka.
    Ledger,
    /// `vigil approvals serve`: the approval service, taking holds from
    /// Kafka and answering proxies and approvers over gRPC.
    Approvals,
}

async fn serve(config: Config) -> anyhow::Result<()> {
    serve_roles(config, Roles::All).await
}

/// Runs `roles` until a listener fails or the process is told to stop.
pub async fn serve_roles(config: Config, roles: Roles) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    config.check_role(roles)?;
    let kafka = config.kafka();
    if let Some(k) = &kafka {
        // The broker may still be starting (a whole stack coming up at
        // once): keep asking for a while before giving up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match vigil_bus::kafka::ensure_topic(k, Duration::from_secs(5)).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline && roles == Roles::Ledger => {
                    tracing::warn!(error = %e, "Kafka not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // A proxy does not need the broker to start: its outbox
                // holds events until the broker is back.
                Err(e) if roles != Roles::Ledger => {
                    tracing::warn!(error = %e, "Kafka not reachable; events wait in the outbox");
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(metrics) = &config.metrics {
        let listener = bind(metrics.listen, "the metrics endpoint").await?;
        tasks.spawn(async move {
            serve_metrics(listener)
                .await
                .context("metrics endpoint stopped")
        });
    }
    let mut ledger = None;
    let drain = Drain::new();
    let drain_period = config.shutdown_drain()?;
    let mut outbox_to_flush = None;
    let sink: Option<Arc<dyn EventSink>> = match (roles, &kafka) {
        (Roles::Ledger, _) => None,
        (_, Some(k)) => {
            let (dir, limits) = config.outbox();
            let outbox = vigil_bus::outbox::Outbox::open(&dir, limits)
                .with_context(|| format!("cannot open the outbox in {}", dir.display()))?;
            let _shipper = outbox.ship(k.clone(), format!("vigil-proxy-{}", hostname()));
            tokio::spawn(report_outbox(outbox.clone(), limits));
            outbox_to_flush = Some(outbox.clone());
            Some(Arc::new(
                outbox
                    .sink()
                    .context("cannot start the audit outbox's writer thread")?,
            ))
        }
        (_, None) => None, // the embedded bus, made with the ledger below
    };
    let mut sink = sink;
    if matches!(roles, Roles::All | Roles::Ledger) {
        let opened = open_ledger(&config).await?;
        let embedded = start_ledger(&config, &opened, kafka.as_ref(), &mut tasks).await?;
        if let Some(bus) = embedded {
            sink = Some(Arc::new(bus));
        }
        ledger = Some(opened);
    }
    if roles == Roles::Approvals {
        let sink = sink.clone().context("no event sink")?;
        let kafka = kafka.clone().context("no Kafka")?;
        let section = config.approvals.as_ref().context("no [approvals]")?;
        let auth = authenticator_with_keys(&config).await?;
        let service =
            start_approvals(&config, section, Vec::new(), sink, auth, false, &mut tasks).await?;
        consume_holds(&kafka, service, &mut tasks)?;
    }
    if matches!(roles, Roles::All | Roles::Proxy) {
        let sink = sink.context("no event sink")?;
        let auth = authenticator_with_keys(&config).await?;
        // Loaded once: the listeners, and the review rules the in-process
        // approval service decides, come from the same policies.
        let proxies = config.proxies()?;
        let gateways = config.mcp_gateways()?;
        let llm_gateways = config.llm_gateways()?;
        crate::upstream_check::check_upstream_roles(&config, &proxies).await?;
        let approvals: Option<Arc<dyn Approvals>> =
            match (&config.approvals, &config.approval_service) {
                (Some(section), _) if roles == Roles::All => {
                    let rules: Vec<_> = proxies
                        .iter()
                        .flat_map(|(_, p)| p.policy.all_review_settings())
                        .chain(
                            gateways
                                .iter()
                                .flat_map(|(_, g)| g.policy.all_review_settings()),
                        )
                        .chain(
                            llm_gateways
                                .iter()
                                .flat_map(|(_, g)| g.policy.all_review_settings()),
                        )
                        .collect();
                    let service = start_approvals(
                        &config,
                        section,
                        rules,
                        sink.clone(),
                        auth.clone(),
                        true,
                        &mut tasks,
                    )
                    .await?;
                    Some(LocalApprovals::new(service))
                }
                (_, Some(remote)) if roles == Roles::Proxy => {
                    Some(RemoteApprovals::new(&remote.url, remote.token()?)?)
                }
                _ => None,
            };
        start_mcp_gateways(gateways, &auth, &sink, &approvals, &drain, &mut tasks).await?;
        start_llm_gateways(llm_gateways, &auth, &sink, &approvals, &drain, &mut tasks).await?;
        start_proxies(proxies, auth, sink, approvals, &drain, &mut tasks).await?;
    }

    println!("{}", config.summary());
    if let Some(l) = &ledger {
        println!("ledger verifier key: {}", l.verifier_key());
    }
    println!("vigil is ready");

    let outcome = tokio::select! {
        r = tasks.join_next() => match r {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::anyhow!("a task failed: {e}")),
            _ => Ok(()),
        },
        _ = shutdown_signal() => {
            shut_down(&drain, drain_period, outbox_to_flush.as_ref()).await;
            Ok(())
        }
    };
    if let Some(ledger) = ledger {
        // A last checkpoint covers everything appended before the stop.
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || checkpointer::sign_now(&ledger)).await
        {
            tracing::error!(error = %e, "cannot sign the final checkpoint");
        }
    }
    outcome
}

/// Graceful shutdown: listeners stop accepting, open sessions get
/// `drain_period` to finish and are then ended (each records SessionClosed
/// with reason `shutdown`), and the outbox gets a last chance to reach the
/// broker (what it cannot send stays on disk for the next start).
async fn shut_down(
    drain: &Drain,
    drain_period: Duration,
    outbox: Option<&vigil_bus::outbox::Outbox>,
) {
    tracing::info!(
        open_sessions = drain.open_sessions(),
        drain_secs = drain_period.as_secs_f64(),
        "shutting down: no new connections; open sessions end at the end of the drain period"
    );
    drain.begin(drain_period);
    // Past the deadline a session still needs to record its SessionClosed.
    let left = drain
        .wait_for_sessions(drain_period + Duration::from_secs(10))
        .await;
    if left > 0 {
        tracing::error!(
            open_sessions = left,
            "sessions did not end in time; their SessionClosed may be missing"
        );
    }
    if let Some(outbox) = outbox {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while outbox.status().waiting_events > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waiting = outbox.status().waiting_events;
        if waiting > 0 {
            tracing::warn!(
                waiting_events = waiting,
                "events still in the outbox: they go to the broker at the next start"
            );
        }
    }
    tracing::info!("shut down");
}

/// Warns every 10 s while the outbox is more than 5% full: in normal
/// running it holds only what is in flight to the broker (well under that),
/// so this is a broker outage or a slow broker, seen before statements are
/// refused.
async fn report_outbox(outbox: vigil_bus::outbox::Outbox, limits: vigil_bus::outbox::OutboxLimits) {
    let filling = |s: vigil_bus::outbox::OutboxStatus| {
        s.waiting_events > limits.max_events / 20 || s.waiting_bytes > limits.max_bytes / 20
    };
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut was_filling = false;
    loop {
        tick.tick().await;
        let now = outbox.status();
        if filling(now) {
            tracing::warn!(
                waiting_events = now.waiting_events,
                waiting_bytes = now.waiting_bytes,
                max_events = limits.max_events,
                max_bytes = limits.max_bytes,
                "the audit outbox is filling: Kafka is not acknowledging events; statements are refused when it is full"
            );
        } else if was_filling {
            tracing::info!(
                waiting_events = now.waiting_events,
                "the audit outbox is draining normally again"
            );
        }
        was_filling = filling(now);
    }
}

/// This process among the group's members: host and process id (a
/// standby on the same host must not look like the member it replaces).
fn process_name() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Opens the ledger. Another ledger process holding the same data directory
/// (the active one, when this is a standby) makes this wait until it is
/// gone: only one process ever appends, so the log cannot fork.
async fn open_ledger(config: &Config) -> anyhow::Result<Arc<Ledger>> {
    let mut waiting = false;
    loop {
        let keyring = config.keyring()?;
        let (dir, origin) = (config.data_dir.clone(), config.ledger.origin.clone());
        match tokio::task::spawn_blocking(move || Ledger::open(&dir, &origin, keyring)).await? {
            Ok(mut l) => {
                l.witnesses = Arc::new(config.witnesses()?);
                l.store
                    .set_tile_cache_limit(config.ledger.tile_cache_mib.saturating_mul(1 << 20));
                l.warm_tile_cache_in_background();
                if waiting {
                    tracing::info!(
                        "standby: the data directory is free; this ledger is now active"
                    );
                    if let Some(k) = config.kafka() {
                        // The broker notices the previous ledger is gone only
                        // once its session has timed out; joining the group
                        // after that makes this ledger its leader with every
                        // partition (tansu has no session timer of its own).
                        let wait = k.session_timeout + Duration::from_millis(500);
                        tracing::info!(
                            ?wait,
                            "standby: waiting for the previous ledger's group session to expire"
                        );
                        tokio::time::sleep(wait).await;
                    }
                }
                return Ok(Arc::new(l));
            }
            Err(e) if is_held_by_another(&e) && config.kafka().is_some() => {
                if !waiting {
                    tracing::info!(dir = %config.data_dir.display(), "standby: another ledger process holds the data directory; waiting to take over");
                    println!("vigil ledger is standing by");
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_held_by_another(e: &vigil_ledger_service::OpenError) -> bool {
    let text = e.to_string();
    text.contains("lock") && (text.contains("unavailable") || text.contains("Resource"))
}

/// Starts the ledger's listeners and jobs. Returns the embedded bus's
/// publishing side when the ledger consumes the embedded bus.
async fn start_ledger(
    config: &Config,
    ledger: &Arc<Ledger>,
    kafka: Option<&vigil_bus::kafka::KafkaSettings>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Option<vigil_bus::EmbeddedBus>> {
    let access = BodyAccess::new(&config.ledger.auditor_tokens_sha256)?;
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

    let embedded = match kafka {
        Some(k) => {
            let subscriber =
                vigil_bus::kafka::subscribe(k, &format!("vigil-ledger-{}", process_name()))?;
            let store = ledger.store.clone();
            let stopped = appender::start(store, subscriber)
                .context("cannot start the ledger appender's thread")?;
            tasks.spawn(async move {
                stopped.await;
                anyhow::bail!("the ledger stopped consuming Kafka (see the log); the offsets of what it did not append are not committed")
            });
            None
        }
        None => {
            let (bus, subscriber) = vigil_bus::embedded(BUS_CAPACITY);
            let stopped = appender::start(ledger.store.clone(), subscriber)
                .context("cannot start the ledger appender's thread")?;
            tokio::spawn(stopped);
            Some(bus)
        }
    };
    tokio::spawn(checkpointer::run(
        ledger.clone(),
        Duration::from_millis(config.ledger.checkpoint_interval_ms),
    ));
    if let Some((policy, every)) = config.retention() {
        tokio::spawn(retention::run(ledger.clone(), policy, every));
    }
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
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &config.ledger.grpc_tls {
            server = server
                .tls_config(tls.server_config()?)
                .context("ledger.grpc_tls")?;
        }
        tasks.spawn(async move {
            server
                .add_service(svc)
                .serve_with_incoming(nodelay(grpc_listener))
                .await
                .context("ledger gRPC API stopped")
        });
    }
    Ok(embedded)
}

/// The authenticator of every entry point (proxies, approvals API), with
/// each OIDC issuer's keys fetched before anyone is let in.
async fn authenticator_with_keys(
    config: &Config,
) -> anyhow::Result<vigil_proxy_core::Authenticator> {
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
    Ok(auth)
}

/// The consumer group of `vigil approvals serve` processes.
const APPROVALS_GROUP: &str = "vigil-approvals";

/// `vigil approvals serve`: takes the proxies' PendingOperations from
/// Kafka into the book. An offset is committed only after the hold is
/// durable in the book, so a service killed mid-stream re-reads what it had
/// not yet recorded (holds are idempotent).
fn consume_holds(
    kafka: &vigil_bus::kafka::KafkaSettings,
    service: Arc<ApprovalService>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use vigil_bus::Subscriber;
    let mut settings = kafka.clone();
    settings.consumer_group = APPROVALS_GROUP.into();
    let mut subscriber =
        vigil_bus::kafka::subscribe(&settings, &format!("vigil-approvals-{}", process_name()))?;
    tasks.spawn(async move {
        while let Some(batch) = subscriber.recv_batch(256).await {
            for delivery in batch {
                let result = match vigil_approvals::hold_of(&delivery.event) {
                    None => Ok(()),
                    Some(hold) => match service.hold(hold).await {
                        Ok(_) => Ok(()),
                        // A hold that can never be decided (no approver
                        // group, ...) is skipped; its proxy's wait runs
                        // out and refuses the statement.
                        Err(ServiceError::Book(vigil_approvals::BookError::Hold(e))) => {
                            tracing::error!(error = %e, "a PendingOperation that cannot be held; skipped");
                            Ok(())
                        }
                        Err(e) => Err(vigil_proxy_core::SinkError::Rejected(e.to_string())),
                    },
                };
                let failed = result.is_err();
                delivery.ack(result);
                if failed {
                    anyhow::bail!("the approvals book failed; stopping before committing past it");
                }
            }
        }
        anyhow::bail!("the approval service stopped consuming Kafka (see the log)")
    });
    Ok(())
}

/// Starts an approval service in this process: its book, the approvers'
/// gRPC API, webhooks and the signed callback. `listener_policies`: the
/// policies of the proxies in this process (their review rules can be
/// granted); `in_process`: the proxies run here too (`vigil up`).
#[allow(clippy::too_many_arguments)]
async fn start_approvals(
    config: &Config,
    section: &ApprovalsSection,
    listener_rules: Vec<vigil_proxy_core::policy::ReviewSettings>,
    sink: Arc<dyn EventSink>,
    auth: vigil_proxy_core::Authenticator,
    in_process: bool,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Arc<ApprovalService>> {
    let grpc_listener = bind(section.grpc_listen, "the approvals gRPC API").await?;
    let callback = match &section.callback {
        Some(c) => {
            let secret = read_secret("approvals.callback.secret", &c.secret_env, &c.secret_file)?;
            let listener = bind(c.listen, "the approvals callback").await?;
            Some((
                listener,
                webhook::Callback {
                    name: c.name.clone(),
                    secret,
                    approver_groups: c.approver_groups.clone(),
                },
            ))
        }
        None => None,
    };
    let mut targets = Vec::new();
    for (i, w) in section.webhooks.iter().enumerate() {
        targets.push(webhook::Target {
            url: w.url.clone(),
            secret: read_secret(
                &format!("approvals.webhooks[{i}].secret"),
                &w.secret_env,
                &w.secret_file,
            )?,
            tries: w.tries,
        });
    }
    let hooks = (!targets.is_empty()).then(|| webhook::Webhooks::start(targets));
    let mut policies = Vec::new();
    for spec in &section.policies {
        policies.push(
            crate::policy_setup::load_policy(spec)
                .with_context(|| format!("approvals.policies: {spec}"))?,
        );
    }
    let rules = grant_rules(
        listener_rules
            .into_iter()
            .chain(policies.iter().flat_map(|p| p.all_review_settings())),
    );
    let dir = section.dir(&config.data_dir);
    let service = ApprovalService::start(&dir, rules, sink, hooks, in_process)
        .await
        .with_context(|| format!("cannot open the approvals book in {}", dir.display()))?;

    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &section.grpc_tls {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).with_context(|| {
                format!("approvals.grpc_tls.{what}: cannot read {}", path.display())
            })
        };
        let identity = tonic::transport::Identity::from_pem(
            read("cert_file", &tls.cert_file)?,
            read("key_file", &tls.key_file)?,
        );
        server = server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .context("approvals.grpc_tls")?;
    }
    let svc = ApprovalsGrpc::server(service.clone(), auth, section.proxy_tokens()?);
    tasks.spawn(async move {
        server
            .add_service(svc)
            .serve_with_incoming(nodelay(grpc_listener))
            .await
            .context("approvals gRPC API stopped")
    });
    if let Some((listener, callback)) = callback {
        let service = service.clone();
        tasks.spawn(async move {
            webhook::serve_callback(listener, service, callback)
                .await
                .context("approvals callback stopped")
        });
    }
    Ok(service)
}

/// Binds every PostgreSQL listener, then serves them all.
async fn start_proxies(
    proxies: Vec<(SocketAddr, vigil_proxy_postgres::ProxyConfig)>,
    auth: vigil_proxy_core::Authenticator,
    sink: Arc<dyn EventSink>,
    approvals: Option<Arc<dyn Approvals>>,
    drain: &Arc<Drain>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut pg_listeners = Vec::new();
    for (addr, mut proxy_config) in proxies {
        proxy_config.approvals = approvals.clone();
        let listener = bind(addr, &format!("postgres \"{}\"", proxy_config.name)).await?;
        pg_listeners.push((listener, proxy_config));
    }
    for (listener, proxy_config) in pg_listeners {
        let proxy = PostgresProxy::new(proxy_config, auth.clone(), sink.clone());
        let drain = drain.clone();
        tasks.spawn(async move {
            let name = proxy.name().to_string();
            proxy
                .serve(listener, drain)
                .await
                .with_context(|| format!("postgres \"{name}\" stopped"))
        });
    }
    Ok(())
}

/// Binds every MCP listener, then serves them all.
async fn start_mcp_gateways(
    gateways: Vec<(SocketAddr, vigil_proxy_mcp::GatewayConfig)>,
    auth: &vigil_proxy_core::Authenticator,
    sink: &Arc<dyn EventSink>,
    approvals: &Option<Arc<dyn Approvals>>,
    drain: &Arc<Drain>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut bound = Vec::new();
    for (addr, mut gateway) in gateways {
        gateway.approvals = approvals.clone();
        let listener = bind(addr, &format!("mcp \"{}\"", gateway.name)).await?;
        bound.push((listener, gateway));
    }
    for (listener, gateway) in bound {
        let gateway = vigil_proxy_mcp::McpGateway::new(gateway, auth.clone(), sink.clone()).await?;
        let drain = drain.clone();
        tasks.spawn(async move {
            let name = gateway.name().to_string();
            gateway
                .serve(listener, drain)
                .await
                .with_context(|| format!("mcp \"{name}\" stopped"))
        });
    }
    Ok(())
}

/// Binds every model-API listener, then serves them all.
async fn start_llm_gateways(
    gateways: Vec<(SocketAddr, vigil_proxy_llm::GatewayConfig)>,
    auth: &vigil_proxy_core::Authenticator,
    sink: &Arc<dyn EventSink>,
    approvals: &Option<Arc<dyn Approvals>>,
    drain: &Arc<Drain>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut bound = Vec::new();
    for (addr, mut gateway) in gateways {
        gateway.approvals = approvals.clone();
        let listener = bind(addr, &format!("llm \"{}\"", gateway.name)).await?;
        bound.push((listener, gateway));
    }
    for (listener, gateway) in bound {
        let gateway = vigil_proxy_llm::LlmGateway::new(gateway, auth.clone(), sink.clone())?;
        let drain = drain.clone();
        tasks.spawn(async move {
            let name = gateway.name().to_string();
            gateway
                .serve(listener, drain)
                .await
                .with_context(|| format!("llm \"{name}\" stopped"))
        });
    }
    Ok(())
}

/// A gRPC listener's connections with Nagle's algorithm off: a reply's
/// frames go out at once instead of waiting for the caller's delayed ACK
/// (measured: 40 ms added to every proxy's wait for an approval).
fn nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    })
}

/// `GET /metrics`: every series of this process, whatever roles it runs
/// (the ledger's HTTP API serves the same at its own `/metrics`).
async fn serve_metrics(listener: TcpListener) -> std::io::Result<()> {
    async fn metrics() -> impl axum::response::IntoResponse {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            vigil_metrics::global().render(),
        )
    }
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    vigil_runtime::http::serve(
        listener,
        app,
        vigil_runtime::http::ServeLimits::SMALL_REQUESTS,
    )
    .await;
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn one_worker_fewer_than_cores_unless_the_environment_says() {
        assert_eq!(worker_threads(1, None).unwrap(), 1);
        assert_eq!(worker_threads(2, None).unwrap(), 1);
        assert_eq!(worker_threads(8, None).unwrap(), 7);
        assert_eq!(worker_threads(2, Some("3")).unwrap(), 3);
        assert_eq!(worker_threads(2, Some(" 2\n")).unwrap(), 2);
        for bad in ["0", "-1", "two", ""] {
            let e = worker_threads(2, Some(bad)).unwrap_err().to_string();
            assert!(e.contains("TOKIO_WORKER_THREADS"), "{bad}: {e}");
        }
    }
}
