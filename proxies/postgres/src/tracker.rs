//! Pairs each statement a client runs with the result the server reports,
//! and keeps the one registry of what each prepared statement and portal
//! holds, with the verdict it was judged under.
//!
//! PostgreSQL answers strictly in order, so a FIFO of outstanding runs is
//! enough: the frontend side pushes a run for every `Query` and `Execute` (and
//! a marker for every `Sync`), and the backend side completes the run at the
//! front as results arrive. Pure bookkeeping: no I/O, no clock but the
//! `Instant` a run started, so it can be tested message by message.
//!
//! **Names change when the server confirms, not when the proxy sends.** A
//! Parse, Bind or Close is queued as a pending change; ParseComplete,
//! BindComplete or CloseComplete applies it to the confirmed registry, and
//! an error (after which the server skips everything up to the Sync)
//! drops it with the rest of the cycle. The frontend judges new messages
//! against the confirmed registry plus the changes still pending (what the
//! server will hold if nothing fails); the backend checks each Execute's
//! result against the confirmed portal, and a result whose portal the
//! server holds under another verdict than the one the Execute was sent
//! with is handled fail-closed. Without this, a Close and Parse the server
//! skipped after an error left the proxy judging a name by text the server
//! never accepted, while the server ran the older, stricter statement.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_proto::events::MaskedField;
use vigil_sql::policy::{stricter, Outcome, Verdict};

use crate::codec::ErrorFields;
use vigil_proto::events::Parameter;

/// A statement the server has finished with, ready to become a Response event.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub statement_seq: u64,
    pub tags: Vec<String>,
    pub rows: u64,
    pub error: Option<ErrorFields>,
    pub duration: Duration,
    /// The server skipped it (an earlier message of the same pipeline failed).
    pub not_executed: bool,
    /// What masking changed in the result.
    pub masked_columns: Vec<MaskedField>,
    /// The gateway stopped the result after this many rows (0: not stopped).
    pub stopped_after_rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// A simple-protocol `Query`: may hold several statements, ends at ReadyForQuery.
    Query,
    /// An extended-protocol `Execute`: ends at CommandComplete, EmptyQuery,
    /// PortalSuspended or ErrorResponse.
    Execute,
    /// A `Parse` policy refused: the proxy forwarded a probe in its place
    /// (see `refuse`), which ends at its ErrorResponse.
    RefusedParse,
}

/// What the backend side needs to know about a run beyond pairing: set by
/// the frontend from the policy's verdict.
#[derive(Debug, Clone, Default)]
pub struct RunAttrs {
    /// Mask this run's results.
    pub mask: bool,
    /// Stop the result after this many rows.
    pub max_rows: Option<u64>,
    /// The proxy added a `Describe` of the portal before this `Execute`: the
    /// next RowDescription/NoData is the proxy's, not the client's.
    pub own_describe: bool,
    /// The verdict that let this run through (rule, over-limit outcome).
    pub verdict: Option<Arc<Verdict>>,
    /// Extended protocol: the portal this Execute runs, and whether it was
    /// (re)bound since its last Execute. A portal's rows count towards the
    /// row limit across Executes, so fetching in chunks (`Execute` with a
    /// row count, PortalSuspended, `Execute` again) cannot dodge it.
    pub portal: Option<(String, bool)>,
}

#[derive(Debug)]
struct Run {
    kind: RunKind,
    attrs: RunAttrs,
    /// The client's COPY-in ends before this run was queued.
    copy_ends_before: u64,
    /// The server has said anything about this run (a row, a tag, an
    /// error, a description, an empty-query answer).
    answered: bool,
    /// CopyInResponses the server has sent for this run so far (a simple
    /// Query may hold several COPY FROM STDIN).
    copies_in: u64,
    statement_seq: u64,
    started: Instant,
    tags: Vec<String>,
    rows: u64,
    error: Option<ErrorFields>,
    masked_columns: Vec<MaskedField>,
    stopped_after_rows: u64,
    /// RowDescriptions the server sent for this run so far: a simple Query
    /// of several statements answers with one per statement that returns
    /// rows.
    descriptions: usize,
}

impl Run {
    fn complete(self, not_executed: bool) -> Completed {
        Completed {
            statement_seq: self.statement_seq,
            tags: self.tags,
            // A stopped result: only rows up to the limit reached the client.
            rows: if self.stopped_after_rows > 0 {
                self.stopped_after_rows
            } else {
                self.rows
            },
            error: self.error,
            duration: self.started.elapsed(),
            not_executed,
            masked_columns: self.masked_columns,
            stopped_after_rows: self.stopped_after_rows,
        }
    }
}

#[derive(Debug)]
enum Outstanding {
    // Boxed: a run is far larger than the markers beside it.
    Run(Box<Run>),
    /// A `Sync`, with how many COPY-in ends (CopyDone/CopyFail) the client
    /// had sent before it: a Sync sent while a COPY FROM STDIN is still
    /// open is ignored by the server (see [`Tracker::on_copy_in`]).
    Sync {
        copy_ends_before: u64,
    },
    /// A client's own `Describe`: its RowDescription/NoData goes to the client.
    ClientDescribe,
    /// A forwarded `Parse`, `Bind` or `Close`, answered by ParseComplete,
    /// BindComplete, CloseComplete or an error; kept so that its error is
    /// not taken for the error of the Execute behind it (that Execute is
    /// skipped, not failed), and carrying the change it makes to the
    /// registry once the server confirms it.
    Step(Change),
}

/// What a Parse, Bind or Close does to the registry once confirmed.
#[derive(Debug, Clone)]
pub enum Change {
    Parse {
        name: String,
        prepared: Prepared,
    },
    Bind {
        portal: String,
        info: PortalInfo,
    },
    Close {
        is_portal: bool,
        name: String,
    },
    /// A step with no effect on the registry (tests, other messages).
    None,
}

/// What a prepared statement holds: its text and the verdict it was
/// judged (or released) under.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub query: Arc<str>,
    pub verdict: Arc<Verdict>,
}

/// Who a RowDescription or NoData from the server is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionFor {
    /// The client asked (a Describe, or a simple Query's result): forward it.
    Client,
    /// The proxy's own Describe before an Execute: keep it from the client.
    Proxy,
}

/// What a bound portal will run: its statement text, parameters and the
/// verdict of the statement it was bound to (fixed at Bind: a later Parse
/// of the statement's name does not change what the portal runs).
#[derive(Debug, Clone)]
pub struct PortalInfo {
    pub statement_name: String,
    pub query: Arc<str>,
    /// The bound values as every Execute of the portal records them,
    /// made once at Bind (raw values of up to 64 MiB are not kept).
    pub params: Arc<[Parameter]>,
    /// `None`: the statement is unknown to the proxy (the server refuses
    /// the Bind, or holds something the proxy never judged).
    pub verdict: Option<Arc<Verdict>>,
}

/// The server answered something the proxy's model of the session does
/// not expect: the two views have parted, and the session must end
/// (judging further results by a wrong model could unmask them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server's answers are out of step with the session ({0})")]
pub struct Desync(pub &'static str);

#[derive(Debug, Default)]
pub struct Tracker {
    /// Prepared statements and portals as the server has confirmed them.
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, PortalInfo>,
    /// Portals the server has (re)bound since an Execute of them last
    /// finished: their row count starts again. Set at BindComplete, so a
    /// re-Bind the server skipped does not reset a portal's row limit.
    fresh_portals: std::collections::HashSet<String>,
    outstanding: VecDeque<Outstanding>,
    /// The error that aborted the current extended-protocol cycle, if any.
    cycle_error: Option<ErrorFields>,
    /// CopyDone/CopyFail messages the client has sent so far.
    client_copy_ends: u64,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    // ---- frontend side ----

    /// What `name` will hold when the server reaches the next message: the
    /// confirmed statement with the pending Parses and Closes applied.
    pub fn statement(&self, name: &str) -> Option<&Prepared> {
        for o in self.outstanding.iter().rev() {
            match o {
                Outstanding::Step(Change::Parse { name: n, prepared }) if n == name => {
                    return Some(prepared)
                }
                Outstanding::Step(Change::Close {
                    is_portal: false,
                    name: n,
                }) if n == name => return None,
                _ => {}
            }
        }
        self.statements.get(name)
    }

    /// What an `Execute` of `portal` will run, as [`Tracker::statement`]
    /// (`None` for a portal never bound: the server will refuse it, and the
    /// run records that error).
    pub fn portal(&self, portal: &str) -> Option<&PortalInfo> {
        for o in self.outstanding.iter().rev() {
            match o {
                Outstanding::Step(Change::Bind { portal: p, info }) if p == portal => {
                    return Some(info)
                }
                Outstanding::Step(Change::Close {
                    is_portal: true,
                    name,
                }) if name == portal => return None,
                _ => {}
            }
        }
        self.portals.get(portal)
    }

    /// A `Parse` about to be forwarded: `name` holds `query` under
    /// `verdict` once the server answers ParseComplete.
    pub fn push_parse(&mut self, name: String, query: String, verdict: Arc<Verdict>) {
        self.push_step(Change::Parse {
            name,
            prepared: Prepared {
                query: Arc::from(query),
                verdict,
            },
        });
    }

    /// A `Bind` about to be forwarded; returns what the portal will run.
    pub fn push_bind(
        &mut self,
        portal: String,
        statement: String,
        params: Arc<[Parameter]>,
    ) -> PortalInfo {
        let (query, verdict) = match self.statement(&statement) {
            Some(p) => (p.query.clone(), Some(p.verdict.clone())),
            None => (Arc::from(""), None),
        };
        let info = PortalInfo {
            statement_name: statement,
            query,
            params,
            verdict,
        };
        self.push_step(Change::Bind {
            portal,
            info: info.clone(),
        });
        info
    }

    /// A `Close` of a statement or portal about to be forwarded.
    pub fn push_close(&mut self, is_portal: bool, name: String) {
        self.push_step(Change::Close { is_portal, name });
    }

    /// SQL that creates or replaces names the protocol shares (`PREPARE`,
    /// `DECLARE`) or drops them (`DEALLOCATE ALL`, `DISCARD`): the server
    /// runs it when the Query gets there, which the proxy cannot pair with
    /// confirmation, so it only ever makes names stricter, at once, in the
    /// confirmed registry and every pending change alike.
    /// `tighten(old)` gives the stricter verdict; `created` names take
    /// `tighten` of what they held (or `fresh` when new) with `text`.
    pub fn tighten_names(
        &mut self,
        all: bool,
        statements: &[String],
        portals: &[String],
        text: &str,
        fresh: &Arc<Verdict>,
        tighten: impl Fn(&Verdict) -> Verdict,
    ) {
        let tighten = |v: &mut Arc<Verdict>| *v = Arc::new(tighten(v));
        for o in self.outstanding.iter_mut() {
            match o {
                Outstanding::Step(Change::Parse { name, prepared })
                    if all || statements.contains(name) =>
                {
                    tighten(&mut prepared.verdict)
                }
                Outstanding::Step(Change::Bind { portal, info })
                    if all || portals.contains(portal) =>
                {
                    if let Some(v) = info.verdict.as_mut() {
                        tighten(v)
                    }
                }
                _ => {}
            }
        }
        for (name, prepared) in self.statements.iter_mut() {
            if all || statements.contains(name) {
                tighten(&mut prepared.verdict);
            }
        }
        for (name, info) in self.portals.iter_mut() {
            if all || portals.contains(name) {
                if let Some(v) = info.verdict.as_mut() {
                    tighten(v)
                }
            }
        }
        for name in statements {
            self.statements
                .entry(name.clone())
                .or_insert_with(|| Prepared {
                    query: Arc::from(text),
                    verdict: fresh.clone(),
                });
        }
        for name in portals {
            self.portals
                .entry(name.clone())
                .or_insert_with(|| PortalInfo {
                    statement_name: String::new(),
                    query: Arc::from(text),
                    params: Arc::from([]),
                    verdict: Some(fresh.clone()),
                });
        }
    }

    /// A `Query` the proxy is about to forward.
    pub fn push_query(&mut self, statement_seq: u64) {
        self.push_run(RunKind::Query, statement_seq, RunAttrs::default());
    }

    /// A `Query` with the policy's attributes for its results.
    pub fn push_query_with(&mut self, statement_seq: u64, attrs: RunAttrs) {
        self.push_run(RunKind::Query, statement_seq, attrs);
    }

    /// An `Execute` the proxy is about to forward.
    pub fn push_execute(&mut self, statement_seq: u64) {
        self.push_run(RunKind::Execute, statement_seq, RunAttrs::default());
    }

    /// An `Execute` with the policy's attributes for its results.
    pub fn push_execute_with(&mut self, statement_seq: u64, attrs: RunAttrs) {
        self.push_run(RunKind::Execute, statement_seq, attrs);
    }

    /// A refused `Parse` whose probe the proxy is about to forward.
    pub fn push_refused_parse(&mut self, statement_seq: u64) {
        self.push_run(RunKind::RefusedParse, statement_seq, RunAttrs::default());
    }

    /// A `Parse`, `Bind` or `Close` about to be forwarded.
    pub fn push_step(&mut self, change: Change) {
        self.outstanding.push_back(Outstanding::Step(change));
    }

    /// A ParseComplete, BindComplete or CloseComplete: the server did
    /// what the step at the front asked. An answer to a step the proxy
    /// does not have at the front means its view and the server's have
    /// parted: [`Desync`], and the session must end.
    pub fn on_step_complete(&mut self) -> Result<(), Desync> {
        if !matches!(self.outstanding.front(), Some(Outstanding::Step(_))) {
            return Err(Desync("a completion the proxy did not expect"));
        }
        let Some(Outstanding::Step(change)) = self.outstanding.pop_front() else {
            return Err(Desync("a completion the proxy did not expect"));
        };
        match change {
            Change::Parse { name, prepared } => {
                self.statements.insert(name, prepared);
            }
            Change::Bind { portal, mut info } => {
                // The portal runs what the server holds under the name now,
                // whatever the proxy expected when it sent the Bind.
                let held = self.statements.get(&info.statement_name);
                info.query = held.map_or_else(|| Arc::from(""), |p| p.query.clone());
                info.verdict = held.map(|p| p.verdict.clone());
                self.fresh_portals.insert(portal.clone());
                self.portals.insert(portal, info);
            }
            Change::Close {
                is_portal: true,
                name,
            } => {
                self.fresh_portals.remove(&name);
                self.portals.remove(&name);
            }
            Change::Close {
                is_portal: false,
                name,
            } => {
                self.statements.remove(&name);
            }
            Change::None => {}
        }
        Ok(())
    }

    /// The client ends a COPY FROM STDIN (CopyDone or CopyFail).
    pub fn on_client_copy_end(&mut self) {
        self.client_copy_ends += 1;
    }

    /// A `CopyInResponse`: the server now reads COPY data and ignores every
    /// Sync until the copy ends, so the Syncs the client sent before ending
    /// this copy will never be answered. The client's copy ends already
    /// counted when the current run was queued all belong to earlier copies.
    /// The k-th CopyInResponse of a run (from 0) is open while the client
    /// has sent `k` copy ends since the run was queued: Syncs sent then
    /// are the ignored ones.
    pub fn on_copy_in(&mut self) {
        let Some(Outstanding::Run(run)) = self.outstanding.front_mut() else {
            return;
        };
        let before = run.copy_ends_before + run.copies_in;
        run.copies_in += 1;
        self.outstanding.retain(
            |o| !matches!(o, Outstanding::Sync { copy_ends_before } if *copy_ends_before == before),
        );
    }

    /// A client's `Describe` (statement or portal) about to be forwarded.
    pub fn push_client_describe(&mut self) {
        self.outstanding.push_back(Outstanding::ClientDescribe);
    }

    /// A `Sync`: the server will answer with ReadyForQuery.
    pub fn push_sync(&mut self) {
        self.outstanding.push_back(Outstanding::Sync {
            copy_ends_before: self.client_copy_ends,
        });
    }

    fn push_run(&mut self, kind: RunKind, statement_seq: u64, attrs: RunAttrs) {
        self.outstanding.push_back(Outstanding::Run(Box::new(Run {
            kind,
            attrs,
            copy_ends_before: self.client_copy_ends,
            answered: false,
            copies_in: 0,
            statement_seq,
            started: Instant::now(),
            tags: Vec::new(),
            rows: 0,
            error: None,
            masked_columns: Vec::new(),
            stopped_after_rows: 0,
            descriptions: 0,
        })));
    }

    // ---- backend side ----

    fn front_run(&mut self) -> Option<&mut Run> {
        match self.outstanding.front_mut() {
            Some(Outstanding::Run(run)) => Some(run),
            _ => None,
        }
    }

    fn pop_run(&mut self) -> Option<Run> {
        match self.outstanding.pop_front() {
            Some(Outstanding::Run(run)) => {
                // The portal's next Execute continues its count.
                if let Some((portal, _)) = &run.attrs.portal {
                    self.fresh_portals.remove(portal);
                }
                Some(*run)
            }
            Some(other) => {
                self.outstanding.push_front(other);
                None
            }
            None => None,
        }
    }

    /// A `DataRow`; returns the run's row count so far.
    pub fn on_data_row(&mut self) -> u64 {
        match self.front_run() {
            Some(run) => {
                run.rows += 1;
                run.answered = true;
                run.rows
            }
            None => 0,
        }
    }

    /// The attributes of the run the server is answering now; `None` when
    /// there is none (the caller then handles the result fail-closed).
    /// An Execute of a portal the server holds under another verdict than
    /// the one the Execute was sent with runs under the stricter of both,
    /// without lineage, and masked unless both allow.
    pub fn front_attrs(&self) -> Option<RunAttrs> {
        let Some(Outstanding::Run(run)) = self.outstanding.front() else {
            return None;
        };
        let Some((portal, _)) = &run.attrs.portal else {
            return Some(run.attrs.clone());
        };
        let fresh = Some((portal.clone(), self.fresh_portals.contains(portal)));
        let held = self.portals.get(portal).and_then(|p| p.verdict.as_ref())?;
        let sent = run.attrs.verdict.as_ref()?;
        if Arc::ptr_eq(held, sent) || **held == **sent {
            return Some(RunAttrs {
                portal: fresh,
                ..run.attrs.clone()
            });
        }
        let merged = Verdict {
            shapes: Default::default(),
            ..stricter(held, sent)
        };
        Some(RunAttrs {
            mask: run.attrs.mask || merged.outcome != Outcome::Allow,
            max_rows: merged.max_rows,
            own_describe: run.attrs.own_describe,
            verdict: Some(Arc::new(merged)),
            portal: fresh,
        })
    }

    /// A FunctionCallResponse: the server answered the fast-path call.
    pub fn on_function_result(&mut self) {
        if let Some(run) = self.front_run() {
            run.answered = true;
        }
    }

    /// Rows the run the server is answering now has returned so far.
    pub fn front_rows(&self) -> u64 {
        match self.outstanding.front() {
            Some(Outstanding::Run(run)) => run.rows,
            _ => 0,
        }
    }

    /// How many runs are waiting for the server.
    pub fn outstanding_runs(&self) -> usize {
        self.outstanding
            .iter()
            .filter(|o| matches!(o, Outstanding::Run(_)))
            .count()
    }

    /// Adds what masking changed to the run the server is answering now.
    pub fn add_masked(&mut self, columns: Vec<MaskedField>) {
        if let Some(run) = self.front_run() {
            run.masked_columns.extend(columns);
        }
    }

    /// Notes that the gateway stopped the current run's result.
    pub fn mark_stopped(&mut self, after_rows: u64) {
        if let Some(run) = self.front_run() {
            run.stopped_after_rows = after_rows;
        }
    }

    /// The statement number of the run the server is answering now.
    pub fn front_statement_seq(&self) -> Option<u64> {
        match self.outstanding.front() {
            Some(Outstanding::Run(run)) => Some(run.statement_seq),
            _ => None,
        }
    }

    /// A `RowDescription` or `NoData`: says who asked for it, and retires the
    /// client Describe or the proxy's own Describe it answers.
    pub fn on_description(&mut self) -> DescriptionFor {
        self.on_row_description().0
    }

    /// As [`Tracker::on_description`], for a `RowDescription`: also which
    /// of its run's results it describes (0 for the first), so that a
    /// result is paired with its statement in a message of several.
    pub fn on_row_description(&mut self) -> (DescriptionFor, usize) {
        match self.outstanding.front_mut() {
            Some(Outstanding::ClientDescribe) => {
                self.outstanding.pop_front();
                (DescriptionFor::Client, 0)
            }
            Some(Outstanding::Run(run)) if run.attrs.own_describe => {
                run.attrs.own_describe = false;
                (DescriptionFor::Proxy, 0)
            }
            Some(Outstanding::Run(run)) => {
                run.answered = true;
                run.descriptions += 1;
                (DescriptionFor::Client, run.descriptions - 1)
            }
            _ => (DescriptionFor::Client, 0),
        }
    }

    /// A `CommandComplete` with its tag.
    pub fn on_command_complete(&mut self, tag: String) -> Option<Completed> {
        let run = self.front_run()?;
        // COPY and other commands report rows only in the tag.
        if let Some(n) = crate::codec::rows_in_tag(&tag) {
            if run.rows == 0 || tag.starts_with("COPY") {
                run.rows = run.rows.max(n);
            }
        }
        run.tags.push(tag);
        run.answered = true;
        if run.kind == RunKind::Execute {
            return self.pop_run().map(|r| r.complete(false));
        }
        None
    }

    /// An `EmptyQueryResponse` or `PortalSuspended`: ends an Execute.
    pub fn on_execute_end(&mut self) -> Option<Completed> {
        let run = self.front_run()?;
        run.answered = true;
        if run.kind == RunKind::Execute {
            return self.pop_run().map(|r| r.complete(false));
        }
        None
    }

    /// An `ErrorResponse`.
    pub fn on_error(&mut self, error: ErrorFields) -> Option<Completed> {
        self.cycle_error = Some(error.clone());
        // A failed Parse, Bind or client Describe: the server skips the rest
        // of the cycle (Executes behind it are settled at ReadyForQuery).
        if matches!(
            self.outstanding.front(),
            Some(Outstanding::ClientDescribe | Outstanding::Step(_))
        ) {
            self.outstanding.pop_front();
            return None;
        }
        let run = self.front_run()?;
        run.error = Some(error);
        run.answered = true;
        if matches!(run.kind, RunKind::Execute | RunKind::RefusedParse) {
            return self.pop_run().map(|r| r.complete(false));
        }
        None
    }

    /// A `ReadyForQuery`: ends a Query, or the extended cycle up to its Sync.
    /// Executes still outstanding before that Sync were skipped by the server.
    /// `idle`: the session is outside any transaction now (status `I`), so
    /// every portal the protocol created is gone. A Query the server never
    /// answered (not even with an error), outside a skipped cycle, means
    /// the proxy's view and the server's have parted: [`Desync`].
    pub fn on_ready_for_query(&mut self, idle: bool) -> Result<Vec<Completed>, Desync> {
        let done = self.ready_for_query()?;
        if idle {
            self.portals.clear();
            self.fresh_portals.clear();
        }
        Ok(done)
    }

    fn ready_for_query(&mut self) -> Result<Vec<Completed>, Desync> {
        let mut done = Vec::new();
        let cycle_error = self.cycle_error.take();
        if let Some(Outstanding::Run(run)) = self.outstanding.front() {
            // A Query the server never answered, after an error in an
            // extended cycle and before its Sync, was skipped with the rest
            // of the cycle: this ReadyForQuery belongs to that Sync.
            let skipped = !run.answered
                && cycle_error.is_some()
                && self
                    .outstanding
                    .iter()
                    .any(|o| matches!(o, Outstanding::Sync { .. }));
            if run.kind == RunKind::Query && !skipped {
                if !run.answered {
                    return Err(Desync(
                        "a ReadyForQuery for a query the server never answered",
                    ));
                }
                if let Some(run) = self.pop_run() {
                    done.push(run.complete(false));
                }
                return Ok(done);
            }
        }
        while let Some(item) = self.outstanding.pop_front() {
            match item {
                Outstanding::Sync { .. } => break,
                // Skipped by the server: its change never happened.
                Outstanding::ClientDescribe | Outstanding::Step(_) => {}
                Outstanding::Run(mut run) => {
                    run.error = run.error.or_else(|| cycle_error.clone());
                    done.push(run.complete(true));
                }
            }
        }
        // The unnamed portal does not survive the end of a transaction cycle;
        // named ones live until Close or the end of the transaction.
        self.portals.remove("");
        Ok(done)
    }

    /// Runs the server never answered (the session ended mid-statement).
    pub fn drain_unfinished(&mut self) -> Vec<Completed> {
        let mut done = Vec::new();
        while let Some(item) = self.outstanding.pop_front() {
            if let Outstanding::Run(run) = item {
                done.push(run.complete(true));
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(rule: &str) -> Arc<Verdict> {
        Arc::new(Verdict {
            outcome: vigil_sql::policy::Outcome::Mask,
            rule: rule.into(),
            reason: String::new(),
            max_rows: None,
            over_limit: vigil_sql::policy::Outcome::Deny,
            shapes: Default::default(),
        })
    }

    /// Attributes of an Execute of `portal` sent under `verdict`.
    fn execute_attrs(portal: &str, verdict: Option<Arc<Verdict>>) -> RunAttrs {
        RunAttrs {
            mask: true,
            verdict,
            portal: Some((portal.into(), true)),
            ..Default::default()
        }
    }

    #[test]
    fn names_change_when_the_server_confirms() {
        let mut t = Tracker::new();
        t.push_parse("s".into(), "select ssn".into(), verdict("strict"));
        // Pending: the frontend already judges by it.
        assert_eq!(t.statement("s").unwrap().verdict.rule, "strict");
        t.push_sync();
        t.on_step_complete().unwrap();
        assert!(t.on_ready_for_query(false).unwrap().is_empty());
        assert_eq!(t.statement("s").unwrap().verdict.rule, "strict");

        // An error skips the Close and the Parse behind it: the name keeps
        // what the server kept, although the frontend saw them go by.
        t.push_execute(0);
        t.push_close(false, "s".into());
        t.push_parse("s".into(), "select 'harmless'".into(), verdict("lax"));
        t.push_sync();
        assert_eq!(t.statement("s").unwrap().verdict.rule, "lax");
        // A Bind sent in the next cycle, before the error came back.
        let sent = t.push_bind("p".into(), "s".into(), Arc::from([]));
        assert_eq!(sent.verdict.as_ref().unwrap().rule, "lax");
        t.push_execute_with(1, execute_attrs("p", sent.verdict.clone()));
        t.push_sync();

        assert!(t.on_error(err("22012")).is_some());
        let skipped = t.on_ready_for_query(false).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(t.statement("s").unwrap().verdict.rule, "strict");
        assert_eq!(&*t.statement("s").unwrap().query, "select ssn");

        // BindComplete: the portal runs the kept statement, and the Execute
        // sent under the skipped one's verdict is not trusted.
        t.on_step_complete().unwrap();
        assert_eq!(
            t.portal("p").unwrap().verdict.as_ref().unwrap().rule,
            "strict"
        );
        let attrs = t.front_attrs().expect("attributes");
        assert_eq!(
            attrs.verdict.as_ref().unwrap().rule,
            "strict",
            "the stricter verdict"
        );
        assert!(attrs.mask);
        assert!(t.on_command_complete("SELECT 1".into()).is_some());
        assert!(t.on_ready_for_query(false).unwrap().is_empty());

        // A portal bound and executed after the resync runs as judged.
        let sent = t.push_bind("q".into(), "s".into(), Arc::from([]));
        t.push_execute_with(2, execute_attrs("q", sent.verdict.clone()));
        t.on_step_complete().unwrap();
        assert_eq!(
            t.front_attrs().unwrap().verdict.as_ref().unwrap().rule,
            "strict"
        );
    }

    #[test]
    fn a_confirmed_close_and_parse_replace_the_name() {
        let mut t = Tracker::new();
        t.push_parse("s".into(), "a".into(), verdict("first"));
        t.on_step_complete().unwrap();
        t.push_close(false, "s".into());
        assert!(t.statement("s").is_none());
        t.push_parse("s".into(), "b".into(), verdict("second"));
        t.on_step_complete().unwrap(); // CloseComplete
        assert!(t.statement("s").is_some());
        t.on_step_complete().unwrap(); // ParseComplete
        assert_eq!(t.statement("s").unwrap().verdict.rule, "second");
        t.push_close(true, "p".into());
        t.on_step_complete().unwrap();
        assert!(t.portal("p").is_none());
    }

    #[test]
    fn sql_that_touches_names_only_tightens_them() {
        let mut t = Tracker::new();
        t.push_parse("s".into(), "select ssn".into(), verdict("strict"));
        t.on_step_complete().unwrap();
        t.push_parse("u".into(), "select 1".into(), verdict("pending"));
        let fresh = verdict("sql");
        t.tighten_names(
            false,
            &["s".into(), "n".into()],
            &["c".into()],
            "PREPARE ...",
            &fresh,
            |old| Verdict {
                rule: format!("{}+sql", old.rule),
                ..old.clone()
            },
        );
        assert_eq!(t.statement("s").unwrap().verdict.rule, "strict+sql");
        assert_eq!(&*t.statement("s").unwrap().query, "select ssn");
        assert_eq!(t.statement("n").unwrap().verdict.rule, "sql");
        assert_eq!(t.statement("u").unwrap().verdict.rule, "pending");
        assert_eq!(t.portal("c").unwrap().verdict.as_ref().unwrap().rule, "sql");
        t.tighten_names(true, &[], &[], "DISCARD ALL", &fresh, |old| Verdict {
            rule: format!("{}!", old.rule),
            ..old.clone()
        });
        assert_eq!(t.statement("u").unwrap().verdict.rule, "pending!");
        assert_eq!(t.statement("s").unwrap().verdict.rule, "strict+sql!");
    }

    #[test]
    fn answers_out_of_step_with_the_session_end_it() {
        let mut t = Tracker::new();
        assert!(t.on_step_complete().is_err(), "nothing was sent");
        t.push_query(0);
        assert!(t.on_step_complete().is_err(), "a query has no steps");
        // A ReadyForQuery for a query the server never answered: an extra
        // ReadyForQuery (e.g. a Sync the server did not ignore after all).
        assert!(t.on_ready_for_query(false).is_err());
    }

    #[test]
    fn syncs_sent_during_each_copy_of_a_query_are_the_ignored_ones() {
        let mut t = Tracker::new();
        // One Query with two COPY FROM STDIN; the client ends the first,
        // sends a Sync (during the second copy: ignored), ends the second,
        // then a real Sync after the Query.
        t.push_query(0);
        t.on_client_copy_end();
        t.push_sync(); // ignored by the server
        t.on_client_copy_end();
        t.push_parse("s".into(), "select 1".into(), verdict("v"));
        t.push_sync();
        t.on_copy_in();
        t.on_command_complete("COPY 1".into());
        t.on_copy_in();
        t.on_command_complete("COPY 2".into());
        let done = t.on_ready_for_query(false).unwrap();
        assert_eq!(done.len(), 1);
        // The step after the ignored Sync is at the front, in step.
        t.on_step_complete().unwrap();
        assert!(t.on_ready_for_query(false).unwrap().is_empty());
    }

    #[test]
    fn a_portal_counts_afresh_only_when_the_server_confirms_its_bind() {
        let mut t = Tracker::new();
        t.push_parse("s".into(), "select 1".into(), verdict("v"));
        let sent = t.push_bind("p".into(), "s".into(), Arc::from([]));
        t.push_execute_with(0, execute_attrs("p", sent.verdict.clone()));
        t.push_sync();
        t.on_step_complete().unwrap();
        t.on_step_complete().unwrap();
        assert_eq!(t.front_attrs().unwrap().portal, Some(("p".into(), true)));
        t.on_execute_end().unwrap();
        t.on_ready_for_query(false).unwrap();
        // A re-Bind the server skips (an error before it) is no reset.
        t.push_execute(1);
        let sent = t.push_bind("p".into(), "s".into(), Arc::from([]));
        t.push_execute_with(2, execute_attrs("p", sent.verdict.clone()));
        t.push_sync();
        t.on_error(err("22012")).unwrap();
        assert_eq!(t.on_ready_for_query(false).unwrap().len(), 1);
        let again = t.portal("p").unwrap().verdict.clone();
        t.push_execute_with(3, execute_attrs("p", again));
        assert_eq!(t.front_attrs().unwrap().portal, Some(("p".into(), false)));
    }

    #[test]
    fn portals_end_with_the_transaction() {
        let mut t = Tracker::new();
        t.push_parse("s".into(), "select 1".into(), verdict("v"));
        t.push_bind("p".into(), "s".into(), Arc::from([]));
        t.push_sync();
        t.on_step_complete().unwrap();
        t.on_step_complete().unwrap();
        t.on_ready_for_query(false).unwrap();
        assert!(t.portal("p").is_some(), "in a transaction block");
        t.push_sync();
        t.on_ready_for_query(true).unwrap();
        assert!(t.portal("p").is_none(), "idle: the portal is gone");
        assert!(t.statement("s").is_some(), "statements stay");
    }

    fn err(code: &str) -> ErrorFields {
        ErrorFields {
            severity: "ERROR".into(),
            code: code.into(),
            message: "boom".into(),
        }
    }

    #[test]
    fn simple_query_with_two_statements_is_one_completion_at_ready() {
        let mut t = Tracker::new();
        t.push_query(0);
        t.on_data_row();
        assert_eq!(t.on_command_complete("SELECT 1".into()), None);
        assert_eq!(t.on_command_complete("INSERT 0 2".into()), None);
        let done = t.on_ready_for_query(false).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].statement_seq, 0);
        assert_eq!(done[0].tags, vec!["SELECT 1", "INSERT 0 2"]);
        assert!(!done[0].not_executed);
    }

    #[test]
    fn pipelined_executes_complete_in_order() {
        let mut t = Tracker::new();
        t.push_parse("s1".into(), "select $1".into(), verdict("a"));
        t.push_bind("".into(), "s1".into(), Arc::from([]));
        assert_eq!(&*t.portal("").unwrap().query, "select $1");
        t.on_step_complete().unwrap();
        t.on_step_complete().unwrap();
        t.push_execute(0);
        t.push_execute(1);
        t.push_sync();
        t.on_data_row();
        t.on_data_row();
        let a = t.on_command_complete("SELECT 2".into()).unwrap();
        assert_eq!((a.statement_seq, a.rows), (0, 2));
        let b = t.on_command_complete("SELECT 0".into()).unwrap();
        assert_eq!((b.statement_seq, b.rows), (1, 0));
        assert!(t.on_ready_for_query(false).unwrap().is_empty());
    }

    #[test]
    fn error_in_pipeline_marks_the_rest_as_not_executed() {
        let mut t = Tracker::new();
        t.push_execute(0);
        t.push_execute(1);
        t.push_sync();
        t.push_execute(2);
        t.push_sync();
        let failed = t.on_error(err("42P01")).unwrap();
        assert_eq!(failed.statement_seq, 0);
        assert_eq!(failed.error.as_ref().unwrap().code, "42P01");
        let skipped = t.on_ready_for_query(false).unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].statement_seq, 1);
        assert!(skipped[0].not_executed);
        // The next cycle starts clean.
        let ok = t.on_command_complete("SELECT 0".into()).unwrap();
        assert_eq!(ok.statement_seq, 2);
        assert!(ok.error.is_none());
        assert!(t.on_ready_for_query(false).unwrap().is_empty());
    }

    #[test]
    fn an_execute_behind_a_failed_bind_is_skipped_not_failed() {
        let mut t = Tracker::new();
        t.push_step(Change::None); // Parse
        t.push_step(Change::None); // Bind
        t.push_execute(0);
        t.push_sync();
        t.on_step_complete().unwrap(); // ParseComplete
        assert_eq!(
            t.on_error(err("08P01")),
            None,
            "the Bind failed, not the Execute"
        );
        let done = t.on_ready_for_query(false).unwrap();
        assert_eq!(done.len(), 1);
        assert!(done[0].not_executed);
        assert_eq!(done[0].error.as_ref().unwrap().code, "08P01");
    }

    #[test]
    fn query_error_is_reported_at_ready() {
        let mut t = Tracker::new();
        t.push_query(7);
        assert_eq!(t.on_error(err("42601")), None);
        let done = t.on_ready_for_query(false).unwrap();
        assert_eq!(done[0].error.as_ref().unwrap().code, "42601");
        assert!(!done[0].not_executed);
    }

    #[test]
    fn messages_without_outstanding_runs_are_ignored() {
        let mut t = Tracker::new();
        t.on_data_row();
        assert_eq!(t.on_command_complete("SELECT 1".into()), None);
        assert_eq!(t.on_execute_end(), None);
        assert_eq!(t.on_error(err("XX000")), None);
        assert!(t.on_ready_for_query(false).unwrap().is_empty());
    }

    #[test]
    fn copy_rows_come_from_the_tag() {
        let mut t = Tracker::new();
        t.push_query(0);
        t.on_command_complete("COPY 42".into());
        assert_eq!(t.on_ready_for_query(false).unwrap()[0].rows, 42);
    }

    #[test]
    fn unfinished_runs_are_drained_when_the_session_ends() {
        let mut t = Tracker::new();
        t.push_query(3);
        let d = t.drain_unfinished();
        assert_eq!(d.len(), 1);
        assert!(d[0].not_executed);
    }
}
