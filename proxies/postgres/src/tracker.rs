//! Pairs each statement a client runs with the result the server reports.
//!
//! PostgreSQL answers strictly in order, so a FIFO of outstanding runs is
//! enough: the frontend side pushes a run for every `Query` and `Execute` (and
//! a marker for every `Sync`), and the backend side completes the run at the
//! front as results arrive. Pure bookkeeping: no I/O, no clock but the
//! `Instant` a run started, so it can be tested message by message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_proto::events::MaskedColumn;

use crate::codec::{BindParam, ErrorFields};

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
    pub masked_columns: Vec<MaskedColumn>,
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
    pub verdict: Option<Arc<vigil_proxy_core::policy::Verdict>>,
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
    statement_seq: u64,
    started: Instant,
    tags: Vec<String>,
    rows: u64,
    error: Option<ErrorFields>,
    masked_columns: Vec<MaskedColumn>,
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
    /// A forwarded `Parse` or `Bind`, answered by ParseComplete/BindComplete
    /// or an error; kept so that its error is not taken for the error of
    /// the Execute behind it (that Execute is skipped, not failed).
    Step,
}

/// Who a RowDescription or NoData from the server is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionFor {
    /// The client asked (a Describe, or a simple Query's result): forward it.
    Client,
    /// The proxy's own Describe before an Execute: keep it from the client.
    Proxy,
}

/// What a bound portal will run: its statement text and parameters.
#[derive(Debug, Clone)]
pub struct PortalInfo {
    pub statement_name: String,
    pub query: Arc<str>,
    pub params: Vec<BindParam>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    statements: HashMap<String, Arc<str>>,
    portals: HashMap<String, PortalInfo>,
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

    /// A `Parse`: remember the text of the (named or unnamed) statement.
    pub fn on_parse(&mut self, statement: String, query: String) {
        self.statements.insert(statement, Arc::from(query));
    }

    /// A `Bind`: remember what the portal will run.
    pub fn on_bind(&mut self, portal: String, statement: String, params: Vec<BindParam>) {
        let query = self
            .statements
            .get(&statement)
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        self.portals.insert(
            portal,
            PortalInfo {
                statement_name: statement,
                query,
                params,
            },
        );
    }

    /// A `Close` of a statement or portal.
    pub fn on_close(&mut self, is_portal: bool, name: &str) {
        if is_portal {
            self.portals.remove(name);
        } else {
            self.statements.remove(name);
        }
    }

    /// What an `Execute` of `portal` will run (`None` for a portal never bound:
    /// the server will refuse it, and the run records that error).
    pub fn portal(&self, portal: &str) -> Option<&PortalInfo> {
        self.portals.get(portal)
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

    /// A `Parse` or `Bind` about to be forwarded.
    pub fn push_step(&mut self) {
        self.outstanding.push_back(Outstanding::Step);
    }

    /// A ParseComplete or BindComplete.
    pub fn on_step_complete(&mut self) {
        if matches!(self.outstanding.front(), Some(Outstanding::Step)) {
            self.outstanding.pop_front();
        }
    }

    /// The client ends a COPY FROM STDIN (CopyDone or CopyFail).
    pub fn on_client_copy_end(&mut self) {
        self.client_copy_ends += 1;
    }

    /// A `CopyInResponse`: the server now reads COPY data and ignores every
    /// Sync until the copy ends, so the Syncs the client sent before ending
    /// this copy will never be answered. The client's copy ends already
    /// counted when the current run was queued all belong to earlier copies.
    pub fn on_copy_in(&mut self) {
        let Some(Outstanding::Run(run)) = self.outstanding.front() else {
            return;
        };
        let before = run.copy_ends_before;
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
            Some(Outstanding::Run(run)) => Some(*run),
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

    /// The attributes of the run the server is answering now.
    pub fn front_attrs(&self) -> Option<&RunAttrs> {
        match self.outstanding.front() {
            Some(Outstanding::Run(run)) => Some(&run.attrs),
            _ => None,
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
    pub fn add_masked(&mut self, columns: Vec<MaskedColumn>) {
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
            Some(Outstanding::ClientDescribe | Outstanding::Step)
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
    pub fn on_ready_for_query(&mut self) -> Vec<Completed> {
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
                if let Some(run) = self.pop_run() {
                    done.push(run.complete(false));
                }
                return done;
            }
        }
        while let Some(item) = self.outstanding.pop_front() {
            match item {
                Outstanding::Sync { .. } => break,
                Outstanding::ClientDescribe | Outstanding::Step => {}
                Outstanding::Run(mut run) => {
                    run.error = run.error.or_else(|| cycle_error.clone());
                    done.push(run.complete(true));
                }
            }
        }
        // The unnamed portal does not survive the end of a transaction cycle;
        // named ones live until Close, which the client sends.
        self.portals.remove("");
        done
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
        let done = t.on_ready_for_query();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].statement_seq, 0);
        assert_eq!(done[0].tags, vec!["SELECT 1", "INSERT 0 2"]);
        assert!(!done[0].not_executed);
    }

    #[test]
    fn pipelined_executes_complete_in_order() {
        let mut t = Tracker::new();
        t.on_parse("s1".into(), "select $1".into());
        t.on_bind("".into(), "s1".into(), vec![]);
        assert_eq!(&*t.portal("").unwrap().query, "select $1");
        t.push_execute(0);
        t.push_execute(1);
        t.push_sync();
        t.on_data_row();
        t.on_data_row();
        let a = t.on_command_complete("SELECT 2".into()).unwrap();
        assert_eq!((a.statement_seq, a.rows), (0, 2));
        let b = t.on_command_complete("SELECT 0".into()).unwrap();
        assert_eq!((b.statement_seq, b.rows), (1, 0));
        assert!(t.on_ready_for_query().is_empty());
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
        let skipped = t.on_ready_for_query();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].statement_seq, 1);
        assert!(skipped[0].not_executed);
        // The next cycle starts clean.
        let ok = t.on_command_complete("SELECT 0".into()).unwrap();
        assert_eq!(ok.statement_seq, 2);
        assert!(ok.error.is_none());
        assert!(t.on_ready_for_query().is_empty());
    }

    #[test]
    fn an_execute_behind_a_failed_bind_is_skipped_not_failed() {
        let mut t = Tracker::new();
        t.push_step(); // Parse
        t.push_step(); // Bind
        t.push_execute(0);
        t.push_sync();
        t.on_step_complete(); // ParseComplete
        assert_eq!(
            t.on_error(err("08P01")),
            None,
            "the Bind failed, not the Execute"
        );
        let done = t.on_ready_for_query();
        assert_eq!(done.len(), 1);
        assert!(done[0].not_executed);
        assert_eq!(done[0].error.as_ref().unwrap().code, "08P01");
    }

    #[test]
    fn query_error_is_reported_at_ready() {
        let mut t = Tracker::new();
        t.push_query(7);
        assert_eq!(t.on_error(err("42601")), None);
        let done = t.on_ready_for_query();
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
        assert!(t.on_ready_for_query().is_empty());
    }

    #[test]
    fn copy_rows_come_from_the_tag() {
        let mut t = Tracker::new();
        t.push_query(0);
        t.on_command_complete("COPY 42".into());
        assert_eq!(t.on_ready_for_query()[0].rows, 42);
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
