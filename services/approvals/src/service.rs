//! The running approval service: the durable [`Book`] behind a lock, plus
//! the three things that make it live:
//!
//! - a **publisher** that ships the book's outbox (every transition's
//!   events) to the ledger through the event sink, in order, and forgets an
//!   event only once the sink has it durably;
//! - a **sweeper** that expires pending operations at their time to live;
//! - a **change feed** (a broadcast of every operation that changed), which
//!   proxies waiting on a held statement and `Watch` streams listen to.
//!
//! Every book call does a synced RocksDB write, so it runs on a blocking
//! thread; the lock is held only for that call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, Notify};
use vigil_approvals::book::{Book, BookError, Outgoing};
use vigil_approvals::{
    Approver, Decided, Grant, GrantRequest, GrantRule, Hold, Operation, Principal, State, Verdict,
};
use vigil_proxy_core::policy::ReviewSettings;
use vigil_proxy_core::EventSink;
use vigil_runtime::blocking::may_block;

/// How many changes a slow listener may fall behind before it re-reads
/// the book (a lagging waiter re-checks its operation; nothing is lost).
const CHANGE_FEED: usize = 4096;

pub struct ApprovalService {
    book: Mutex<Book>,
    /// Per review rule: who may grant and for how long.
    rules: BTreeMap<String, GrantRule>,
    changes: broadcast::Sender<Operation>,
    publish: Notify,
    sink: Arc<dyn EventSink>,
    hooks: Option<Arc<crate::webhook::Webhooks>>,
}

/// A request the service refused, or a failure of its store.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Book(#[from] BookError),
    #[error("rule {0:?} is not a review rule of any loaded policy")]
    UnknownRule(String),
    #[error("the approval service stopped: {0}")]
    Stopped(String),
}

pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64
}

/// The rules the service knows, from every loaded policy's review settings.
/// Two policies naming the same rule differently: the stricter wins (the
/// groups both name, the larger quorum, the shorter grant).
pub fn grant_rules(
    settings: impl IntoIterator<Item = ReviewSettings>,
) -> BTreeMap<String, GrantRule> {
    let mut rules: BTreeMap<String, GrantRule> = BTreeMap::new();
    for s in settings {
        let rule = GrantRule {
            rule: s.rule.clone(),
            approver_groups: s.approver_groups.clone(),
            quorum: s.quorum,
            max_grant_nanos: s.max_grant.as_nanos() as i64,
        };
        rules
            .entry(s.rule)
            .and_modify(|r| {
                r.approver_groups
                    .retain(|g| rule.approver_groups.contains(g));
                r.quorum = r.quorum.max(rule.quorum);
                r.max_grant_nanos = r.max_grant_nanos.min(rule.max_grant_nanos);
            })
            .or_insert(rule);
    }
    rules
}

impl ApprovalService {
    /// Opens the book in `dir` and starts the publisher and the sweeper.
    ///
    /// `in_process`: the proxies run in this process (`vigil up`), so an
    /// operation still pending from before a restart has no client waiting
    /// for it any more; it is withdrawn rather than left approvable.
    pub async fn start(
        dir: &Path,
        rules: BTreeMap<String, GrantRule>,
        sink: Arc<dyn EventSink>,
        hooks: Option<Arc<crate::webhook::Webhooks>>,
        in_process: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = dir.to_path_buf();
        let book = tokio::task::spawn_blocking(move || Book::open(&dir)).await??;
        let pending = book.pending_count();
        let (changes, _) = broadcast::channel(CHANGE_FEED);
        let service = Arc::new(Self {
            book: Mutex::new(book),
            rules,
            changes,
            publish: Notify::new(),
            sink,
            hooks,
        });
        // Weak: the registry lives as long as the process, the service not
        // necessarily.
        let weak = Arc::downgrade(&service);
        vigil_metrics::gauge_fn(
            "vigil_operations_pending",
            "Operations held for approval and not yet decided.",
            &[],
            move || {
                weak.upgrade()
                    .map_or(0.0, |s| s.read_book(|book| book.pending_count() as f64))
            },
        );
        if pending > 0 && in_process {
            let orphans: Vec<String> = service
                .operations(Some(State::Pending), usize::MAX)
                .iter()
                .map(|o| o.id().to_string())
                .collect();
            for id in orphans {
                service
                    .withdraw(
                        &id,
                        "the gateway restarted; the session that held the statement ended",
                    )
                    .await?;
            }
            tracing::info!(
                pending,
                "approval service: withdrew operations whose sessions ended with the restart"
            );
        } else if pending > 0 {
            tracing::info!(
                pending,
                "approval service: operations still pending from before the restart"
            );
        }
        tokio::spawn(service.clone().publish_loop());
        tokio::spawn(service.clone().sweep_loop());
        if let Some(failures) = service.hooks.as_ref().and_then(|h| h.take_failures()) {
            tokio::spawn(service.clone().record_failures(failures));
        }
        Ok(service)
    }

    /// Runs `f` on the book on a blocking thread.
    async fn with_book<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Book) -> Result<T, BookError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut book = me.book.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut book)
        })
        .await
        .map_err(|e| ServiceError::Stopped(e.to_string()))?
        .map_err(ServiceError::from)
    }

    fn changed(&self, op: &Operation, new_events: bool) {
        let _ = self.changes.send(op.clone());
        if new_events {
            self.publish.notify_one();
        }
        if let Some(hooks) = &self.hooks {
            hooks.notify(op);
        }
    }

    // ---- reading ----

    /// Reads the book. Every change holds its lock across a synced write,
    /// for as long as the disk takes: a read that finds it held waits in
    /// `may_block`, so the sessions on the same async worker go on.
    fn read_book<T>(&self, read: impl FnOnce(&Book) -> T) -> T {
        match self.book.try_lock() {
            Ok(book) => read(&book),
            Err(TryLockError::Poisoned(p)) => read(&p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                may_block(|| read(&self.book.lock().unwrap_or_else(|e| e.into_inner())))
            }
        }
    }

    pub fn operation(&self, id: &str) -> Option<Operation> {
        self.read_book(|book| book.operation(id).cloned())
    }

    /// Operations in `state` (all when `None`), newest first.
    pub fn operations(&self, state: Option<State>, limit: usize) -> Vec<Operation> {
        let mut ops: Vec<Operation> =
            self.read_book(|book| book.operations(state).into_iter().cloned().collect());
        ops.sort_by_key(|o| std::cmp::Reverse(o.hold.opened_unix_nanos));
        ops.truncate(limit);
        ops
    }

    /// What policy says about granting `rule`.
    pub fn rule(&self, rule: &str) -> Option<&GrantRule> {
        self.rules.get(rule)
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.read_book(|book| book.grants().cloned().collect())
    }

    pub fn covering_grant(&self, who: &Principal, connection: &str, rule: &str) -> Option<String> {
        self.read_book(|book| {
            book.covering_grant(who, connection, rule, unix_nanos_now())
                .map(|g| g.id.clone())
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Operation> {
        self.changes.subscribe()
    }

    /// Resolves once operation `id` is no longer pending. `wait_unknown`:
    /// an operation not in the book yet is waited for (a remote proxy's
    /// PendingOperation comes through Kafka and may arrive after the
    /// proxy asks); otherwise it is an error.
    pub async fn closed(&self, id: &str, wait_unknown: bool) -> Result<Operation, ServiceError> {
        let mut feed = self.subscribe();
        loop {
            // Checked after subscribing, so a change between the two is seen.
            match self.operation(id) {
                Some(op) if op.state != State::Pending => return Ok(op),
                Some(_) => {}
                None if wait_unknown => {}
                None => return Err(BookError::UnknownOperation(id.into()).into()),
            }
            loop {
                match feed.recv().await {
                    Ok(op) if op.id() == id && op.state != State::Pending => return Ok(op),
                    Ok(_) => continue,
                    // Fell behind: read the book again.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ServiceError::Stopped("the change feed closed".into()))
                    }
                }
            }
        }
    }

    // ---- changing ----

    /// A proxy's hold (idempotent: a replayed PendingOperation changes nothing).
    pub async fn hold(self: &Arc<Self>, hold: Hold) -> Result<Operation, ServiceError> {
        let id = hold.operation_id.clone();
        let known = self.operation(&id).is_some();
        let op = self.with_book(move |b| b.hold(hold).cloned()).await?;
        if !known {
            tracing::info!(operation = %id, rule = %op.hold.rule, requester = %op.hold.requester, "operation pending review");
            self.changed(&op, false);
        }
        Ok(op)
    }

    /// One approver's vote. Runs to the end in a task of its own, so that
    /// a caller who goes away (a cancelled gRPC call, a closed callback
    /// connection) cannot leave a recorded decision untold to the proxy
    /// that waits for it.
    pub async fn decide(
        self: &Arc<Self>,
        id: &str,
        approver: Approver,
        verdict: Verdict,
        reason: String,
    ) -> Result<(Decided, Operation), ServiceError> {
        let (me, id) = (self.clone(), id.to_string());
        tokio::spawn(async move { me.decide_now(id, approver, verdict, reason).await })
            .await
            .map_err(|e| ServiceError::Stopped(e.to_string()))?
    }

    async fn decide_now(
        self: &Arc<Self>,
        id: String,
        approver: Approver,
        verdict: Verdict,
        reason: String,
    ) -> Result<(Decided, Operation), ServiceError> {
        let result = self
            .with_book({
                let id = id.clone();
                move |b| {
                    let (decided, _out) =
                        b.decide(&id, &approver, verdict, &reason, unix_nanos_now())?;
                    let op = b.operation(&id).cloned().expect("decided operation exists");
                    Ok((decided, op))
                }
            })
            .await;
        match &result {
            Ok((_, op)) => {
                tracing::info!(operation = %id, state = %op.state, verdict = verdict.as_str(), "approval decision recorded");
                self.changed(op, true);
            }
            Err(ServiceError::Book(BookError::Decide(vigil_approvals::DecideError::Expired {
                ..
            }))) => {
                // The late vote expired the operation: tell the waiters.
                if let Some(op) = self.operation(&id) {
                    self.changed(&op, true);
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Withdraws a pending operation (in a task of its own, as `decide`).
    pub async fn withdraw(self: &Arc<Self>, id: &str, reason: &str) -> Result<(), ServiceError> {
        let (me, id, reason) = (self.clone(), id.to_string(), reason.to_string());
        tokio::spawn(async move { me.withdraw_now(id, reason).await })
            .await
            .map_err(|e| ServiceError::Stopped(e.to_string()))?
    }

    async fn withdraw_now(
        self: &Arc<Self>,
        id: String,
        reason: String,
    ) -> Result<(), ServiceError> {
        let withdrawn = self
            .with_book({
                let id = id.clone();
                move |b| Ok(b.withdraw(&id, &reason, unix_nanos_now())?.is_some())
            })
            .await?;
        if withdrawn {
            if let Some(op) = self.operation(&id) {
                tracing::info!(operation = %id, "operation withdrawn");
                self.changed(&op, true);
            }
        }
        Ok(())
    }

    pub async fn grant(
        self: &Arc<Self>,
        request: GrantRequest,
        approver: Approver,
    ) -> Result<Grant, ServiceError> {
        let rule = self
            .rules
            .get(&request.rule)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownRule(request.rule.clone()))?;
        let grant = self
            .with_book(move |b| {
                b.issue_grant(request, &approver, &rule, unix_nanos_now())
                    .map(|(g, _)| g)
            })
            .await?;
        tracing::info!(grant = %grant.id, grantee = %grant.grantee, rule = %grant.rule, "access granted");
        self.publish.notify_one();
        Ok(grant)
    }

    pub async fn revoke(
        self: &Arc<Self>,
        id: &str,
        by: Approver,
        reason: String,
    ) -> Result<Grant, ServiceError> {
        let id = id.to_string();
        let rule_name = self
            .read_book(|book| book.grant(&id).map(|g| g.rule.clone()))
            .ok_or_else(|| BookError::UnknownGrant(id.clone()))?;
        let rule = self
            .rules
            .get(&rule_name)
            .cloned()
            .ok_or(ServiceError::UnknownRule(rule_name))?;
        let grant = self
            .with_book(move |b| {
                b.revoke_grant(&id, &by, &rule, &reason, unix_nanos_now())?;
                Ok(b.grant(&id).cloned().expect("revoked grant exists"))
            })
            .await?;
        tracing::info!(grant = %grant.id, "grant revoked");
        self.publish.notify_one();
        Ok(grant)
    }

    // ---- background ----

    /// Records every webhook notification that failed as an event (through
    /// the book's outbox, so the ledger gets it even across a crash).
    async fn record_failures(
        self: Arc<Self>,
        mut failures: tokio::sync::mpsc::Receiver<vigil_proto::events::NotificationFailed>,
    ) {
        while let Some(failure) = failures.recv().await {
            let operation = failure.operation_id.clone();
            match self
                .with_book(move |b| b.notification_failed(failure, unix_nanos_now()))
                .await
            {
                Ok(_) => self.publish.notify_one(),
                Err(e) => {
                    tracing::error!(%operation, error = %e, "cannot record a failed webhook notification")
                }
            }
        }
    }

    /// Ships the outbox to the ledger, in order, forever. An event leaves
    /// the outbox only once the sink holds it durably; on failure the rest
    /// waits and is tried again (the ledger deduplicates by event id).
    async fn publish_loop(self: Arc<Self>) {
        loop {
            let outgoing: Vec<Outgoing> = match self.with_book(|b| b.unpublished()).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "approval service: cannot read its outbox");
                    Vec::new()
                }
            };
            if !outgoing.is_empty() {
                let pending: Vec<_> = outgoing
                    .iter()
                    .map(|o| (o.key, self.sink.record(o.event.clone())))
                    .collect();
                let mut done = Vec::new();
                let mut failed = false;
                for (key, p) in pending {
                    match p.await {
                        Ok(()) if !failed => done.push(key),
                        Ok(()) => {}
                        Err(e) => {
                            if !failed {
                                tracing::warn!(error = %e, "approval service: the ledger did not take its events; retrying");
                            }
                            failed = true;
                        }
                    }
                }
                if !done.is_empty() {
                    if let Err(e) = self.with_book(move |b| b.published(&done)).await {
                        tracing::error!(error = %e, "approval service: cannot clear its outbox");
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                continue; // more may have arrived meanwhile
            }
            tokio::select! {
                _ = self.publish.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Expires pending operations at their time to live (to the millisecond;
    /// at least once a second in case a new one expires sooner).
    async fn sweep_loop(self: Arc<Self>) {
        loop {
            let next = self.read_book(|book| book.next_expiry());
            let now = unix_nanos_now();
            let wait = match next {
                Some(at) if at <= now => Duration::ZERO,
                Some(at) => Duration::from_nanos((at - now) as u64).min(Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            tokio::time::sleep(wait).await;
            let expired = self
                .with_book(|b| {
                    let before: Vec<String> = b
                        .operations(Some(State::Pending))
                        .iter()
                        .map(|o| o.id().to_string())
                        .collect();
                    b.expire_due(unix_nanos_now())?;
                    Ok(before
                        .into_iter()
                        .filter_map(|id| {
                            b.operation(&id)
                                .filter(|o| o.state == State::Expired)
                                .cloned()
                        })
                        .collect::<Vec<_>>())
                })
                .await;
            match expired {
                Ok(ops) => {
                    for op in ops {
                        tracing::info!(operation = %op.id(), "operation expired");
                        self.changed(&op, true);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "approval service: cannot expire operations");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
