//! Webhooks, both ways.
//!
//! **Outgoing**: every change of an operation (pending, approved, denied,
//! expired, withdrawn) is POSTed as JSON to each configured URL. The body
//! is a Slack incoming-webhook message (`text`) with the operation under
//! `vigil`; the statement in it has its literals masked (it is the text the
//! proxy put in the PendingOperation). Each request is signed:
//! `X-Vigil-Timestamp: <unix seconds>` and
//! `X-Vigil-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! A failed delivery is retried with exponential backoff (0.5 s doubling,
//! `tries` tries, six by default); a delivery that still fails, or one
//! dropped because the webhook's queue is full, is logged with the
//! operation id, counted, and recorded as a `NotificationFailed` event in
//! the ledger (approvers who rely on the webhook never heard of that state;
//! the auditor sees so). The operation itself is unaffected (approvers can
//! always use the API).
//!
//! **Incoming**: `POST /v1/decisions` with a JSON body
//! `{"operation_id", "verdict": "approve"|"deny", "reason", "approver"}`
//! signed the same way with the callback secret. The timestamp must be
//! within five minutes and a signature is accepted once, so a captured
//! request cannot be replayed. The approver is `approver` as the calling
//! system names them, under the callback's own issuer (`webhook:<name>`)
//! and groups: the book still refuses self-approval and double votes.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use vigil_approvals::{Approver, Operation, Principal, Verdict};
use vigil_proto::events::NotificationFailed;

use super::escape;
use super::grpc::to_pb;
use super::service::ApprovalService;

type HmacSha256 = Hmac<Sha256>;

/// How far a callback's timestamp may be from now.
pub const MAX_SKEW_SECS: i64 = 300;
/// Tries per notification unless the webhook's `tries` says otherwise.
pub const DEFAULT_TRIES: u32 = 6;
/// Failures waiting to be recorded; past it they are only logged and counted.
const FAILURE_QUEUE: usize = 10_000;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Notifications waiting per webhook before new ones are dropped (and counted).
const QUEUE: usize = 10_000;

/// `HMAC-SHA256(secret, "<timestamp>.<body>")`, hex: the `v1=` signature.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a `v1=<hex>` signature in constant time.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// The Slack-compatible body of a notification. `text` is what people
/// read: every value in it is agent-, approver- or operator-controlled, so
/// each goes into a code span (the statement into a code block) escaped by
/// [`escape`], where it can neither ping a channel, nor make a link, nor
/// close the span. `vigil` is for programs and carries the values as they
/// are (JSON escaping is all it needs).
pub fn payload(op: &Operation) -> serde_json::Value {
    let h = &op.hold;
    let code = escape::slack_inline;
    let text = match op.state {
        vigil_approvals::State::Pending => format!(
            "Vigil holds a statement for review: operation {} by {} on {} (rule {}, {} approval(s) needed, from {}):\n{}",
            code(&h.operation_id),
            code(&h.requester.to_string()),
            code(&h.connection),
            code(&h.rule),
            h.quorum,
            code(&h.approver_groups.join(", ")),
            escape::slack_block(&h.statement)
        ),
        state => match op.closure.as_ref().map(|c| c.reason.as_str()) {
            Some(reason) if !reason.is_empty() => format!(
                "Vigil operation {} is {}: {}",
                code(&h.operation_id),
                state,
                code(reason)
            ),
            _ => format!("Vigil operation {} is {}", code(&h.operation_id), state),
        },
    };
    let pb = to_pb(op);
    serde_json::json!({
        "text": text,
        "vigil": {
            "operation_id": pb.operation_id,
            "state": pb.state,
            "session_id": pb.session_id,
            "connection": pb.connection,
            "requester": { "subject": pb.requester_subject, "issuer": pb.requester_issuer },
            "statement": pb.statement,
            "rule": pb.rule,
            "approver_groups": pb.approver_groups,
            "quorum": pb.quorum,
            "approvals": pb.approvals,
            "opened_unix_nanos": pb.opened_unix_nanos,
            "expires_unix_nanos": pb.expires_unix_nanos,
            "closed_reason": pb.closed_reason,
        }
    })
}

/// One outgoing webhook.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub secret: Vec<u8>,
    /// Tries per notification before it is given up (at least 1).
    pub tries: u32,
}

/// Where failures go: a counter for the log lines, and a queue to the
/// service, which records each in the ledger.
#[derive(Clone)]
struct FailureSink {
    /// Notifications not delivered since the start (every log line of a
    /// loss says the running total).
    lost: Arc<AtomicU64>,
    record: tokio::sync::mpsc::Sender<NotificationFailed>,
}

impl FailureSink {
    /// Counts and queues one failure; returns the running total.
    fn report(&self, failure: NotificationFailed) -> u64 {
        let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
        if self.record.try_send(failure).is_err() {
            tracing::error!(
                lost,
                "webhook failures arrive faster than they are recorded: one is only logged"
            );
        }
        lost
    }
}

/// The outgoing webhooks: one delivery queue each, so a slow receiver holds
/// up only itself.
pub struct Webhooks {
    queues: Vec<(String, tokio::sync::mpsc::Sender<serde_json::Value>)>,
    failures: FailureSink,
    /// The service takes it once, to record failures as events.
    failed: Mutex<Option<tokio::sync::mpsc::Receiver<NotificationFailed>>>,
}

impl Webhooks {
    pub fn start(targets: Vec<Target>) -> Arc<Self> {
        let (record, failed) = tokio::sync::mpsc::channel(FAILURE_QUEUE);
        let failures = FailureSink {
            lost: Arc::new(AtomicU64::new(0)),
            record,
        };
        let queues = targets
            .into_iter()
            .map(|t| {
                let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
                tokio::spawn(deliver_loop(t.clone(), rx, failures.clone()));
                (t.url, tx)
            })
            .collect();
        Arc::new(Self {
            queues,
            failures,
            failed: Mutex::new(Some(failed)),
        })
    }

    /// The failures to record (once; `None` after the first call).
    pub fn take_failures(&self) -> Option<tokio::sync::mpsc::Receiver<NotificationFailed>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Queues a notification of `op`'s current state to every webhook.
    pub fn notify(&self, op: &Operation) {
        let body = payload(op);
        for (url, q) in &self.queues {
            if q.try_send(body.clone()).is_err() {
                let lost = self.failures.report(NotificationFailed {
                    operation_id: op.id().to_string(),
                    state: op.state.to_string(),
                    target: redact_url(url),
                    attempts: 0,
                    error: "the webhook's queue is full".into(),
                });
                tracing::error!(url = %redact_url(url), operation = %op.id(), lost, "webhook queue full: notification dropped");
            }
        }
    }
}

/// What of a webhook URL may be logged and recorded: its scheme, host and
/// port. Everything else can be a secret: Slack's token is the path, other
/// services put a key in the query or user:password before the host.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(a webhook URL)".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

async fn deliver_loop(
    target: Target,
    mut rx: tokio::sync::mpsc::Receiver<serde_json::Value>,
    failures: FailureSink,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    while let Some(body) = rx.recv().await {
        let operation = body["vigil"]["operation_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let state = body["vigil"]["state"].as_str().unwrap_or("").to_string();
        let tries = target.tries.max(1);
        let mut last_error = String::new();
        let bytes = serde_json::to_vec(&body).expect("JSON value serialises");
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=tries {
            let (agent, url, secret, bytes) = (
                agent.clone(),
                target.url.clone(),
                target.secret.clone(),
                bytes.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                let ts = unix_secs();
                agent
                    .post(&url)
                    .set("Content-Type", "application/json")
                    .set("X-Vigil-Timestamp", &ts.to_string())
                    .set(
                        "X-Vigil-Signature",
                        &format!("v1={}", sign(&secret, ts, &bytes)),
                    )
                    .send_bytes(&bytes)
                    .map(|_| ())
                    .map_err(|e| match e {
                        ureq::Error::Status(code, _) => format!("HTTP {code}"),
                        // Not the error's text: it names the URL, whose path is
                        // a Slack webhook's secret.
                        ureq::Error::Transport(t) => format!("{:?}", t.kind()),
                    })
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match result {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(url = %redact_url(&target.url), %operation, attempt, error = %e, "webhook delivery failed");
                    last_error = e;
                    if attempt < tries {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        if !delivered {
            let lost = failures.report(NotificationFailed {
                operation_id: operation.clone(),
                state,
                target: redact_url(&target.url),
                attempts: tries,
                error: last_error,
            });
            tracing::error!(url = %redact_url(&target.url), %operation, tries, lost, "webhook notification not delivered; giving up");
        }
    }
}

/// The incoming callback's settings.
#[derive(Clone)]
pub struct Callback {
    pub name: String,
    pub secret: Vec<u8>,
    pub approver_groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackBody {
    operation_id: String,
    verdict: String,
    #[serde(default)]
    reason: String,
    approver: String,
}

/// Signatures seen within the skew window (each is accepted once).
#[derive(Default)]
struct SeenSignatures {
    order: VecDeque<(i64, String)>,
    set: HashSet<String>,
}

impl SeenSignatures {
    /// Whether `sig` is new (and remembers it).
    fn first_time(&mut self, ts: i64, sig: &str, now: i64) -> bool {
        while let Some((t, _)) = self.order.front() {
            if *t >= now - MAX_SKEW_SECS {
                break;
            }
            let (_, s) = self.order.pop_front().expect("front exists");
            self.set.remove(&s);
        }
        if !self.set.insert(sig.to_string()) {
            return false;
        }
        self.order.push_back((ts.max(now), sig.to_string()));
        true
    }
}

struct CallbackState {
    service: Arc<ApprovalService>,
    callback: Callback,
    seen: Mutex<SeenSignatures>,
}

/// Serves the incoming webhook until the listener fails.
pub async fn serve_callback(
    listener: tokio::net::TcpListener,
    service: Arc<ApprovalService>,
    callback: Callback,
) -> std::io::Result<()> {
    let state = Arc::new(CallbackState {
        service,
        callback,
        seen: Mutex::new(SeenSignatures::default()),
    });
    let app = axum::Router::new()
        .route("/v1/decisions", axum::routing::post(decide))
        .with_state(state);
    vigil_runtime::http::serve(
        listener,
        app,
        vigil_runtime::http::ServeLimits::SMALL_REQUESTS,
    )
    .await;
    Ok(())
}

type Reply = (axum::http::StatusCode, String);

async fn decide(
    axum::extract::State(state): axum::extract::State<Arc<CallbackState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    use axum::http::StatusCode;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let Ok(ts) = header("x-vigil-timestamp").trim().parse::<i64>() else {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or malformed X-Vigil-Timestamp\n".into(),
        );
    };
    let signature = header("x-vigil-signature").to_string();
    if !verify(&state.callback.secret, ts, &body, &signature) {
        return (StatusCode::UNAUTHORIZED, "bad signature\n".into());
    }
    let now = unix_secs();
    if now.abs_diff(ts) > MAX_SKEW_SECS as u64 {
        return (
            StatusCode::UNAUTHORIZED,
            format!("timestamp is more than {MAX_SKEW_SECS} s from now\n"),
        );
    }
    if !state
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        // Keyed on the signature as verified (case and spaces do not make
        // a captured request new).
        .first_time(ts, &signature.trim().to_ascii_lowercase(), now)
    {
        return (
            StatusCode::CONFLICT,
            "this signed request was already used\n".into(),
        );
    }
    let parsed: CallbackBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad body: {e}\n")),
    };
    let Some(verdict) = Verdict::parse(&parsed.verdict) else {
        return (
            StatusCode::BAD_REQUEST,
            "verdict must be \"approve\" or \"deny\"\n".into(),
        );
    };
    if parsed.approver.trim().is_empty() {
        return (StatusCode::BAD_REQUEST, "approver is empty\n".into());
    }
    let approver = Approver {
        principal: Principal {
            subject: parsed.approver,
            issuer: format!("webhook:{}", state.callback.name),
        },
        groups: state.callback.approver_groups.clone(),
    };
    match state
        .service
        .decide(&parsed.operation_id, approver, verdict, parsed.reason)
        .await
    {
        Ok((_, op)) => (
            StatusCode::OK,
            format!("operation {} is {}\n", op.id(), op.state),
        ),
        Err(e) => {
            let status = super::grpc::status_of(e);
            let code = match status.code() {
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (code, format!("{}\n", status.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_same_secret_timestamp_and_body() {
        let sig = format!("v1={}", sign(b"s3cret", 1_700_000_000, b"{\"a\":1}"));
        assert!(verify(b"s3cret", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"other", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"s3cret", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify(b"s3cret", 1_700_000_000, b"{\"a\":2}", &sig));
        for bad in ["", "v1=", "v1=zz", "v0=00", &sig[3..]] {
            assert!(
                !verify(b"s3cret", 1_700_000_000, b"{\"a\":1}", bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_signature_is_accepted_once_within_the_window() {
        let mut seen = SeenSignatures::default();
        assert!(seen.first_time(1000, "v1=aa", 1000));
        assert!(!seen.first_time(1000, "v1=aa", 1010));
        assert!(seen.first_time(1001, "v1=bb", 1010));
        // Long after the window, the memory is pruned (the timestamp check
        // refuses such a request anyway).
        assert!(seen.first_time(2000, "v1=cc", 2000));
        assert_eq!(seen.set.len(), 1);
    }

    fn hostile_operation() -> Operation {
        let hostile =
            "\x1b[2J\r\n<!channel> <https://evil.example|Approve here> ```*ok*` &amp; \u{202e}";
        Operation::open(vigil_approvals::Hold {
            operation_id: "op-1".into(),
            session_id: "s-1".into(),
            connection: hostile.into(),
            requester: Principal {
                subject: hostile.into(),
                issuer: "https://idp.example".into(),
            },
            statement: format!("SELECT \"{hostile}\" FROM t"),
            rule: hostile.into(),
            approver_groups: vec![hostile.into()],
            quorum: 1,
            opened_unix_nanos: 0,
            expires_unix_nanos: i64::MAX,
        })
        .unwrap()
    }

    /// The text people read can ping nobody, link nowhere, and break out of
    /// none of its code spans; the machine-readable part keeps the values.
    fn assert_inert_text(body: &serde_json::Value) {
        let text = body["text"].as_str().unwrap();
        assert!(!text.contains(['<', '>']), "{text}");
        // One line break of ours (before a statement's code block), and
        // nothing else that moves, hides or reorders text.
        assert!(text.matches('\n').count() <= 1, "{text}");
        let rest = text.replacen('\n', "", 1);
        assert!(!rest.chars().any(escape::is_unsafe_char), "{text}");
    }

    #[test]
    fn the_slack_text_holds_agent_text_only_inside_code_it_cannot_leave() {
        let mut op = hostile_operation();
        let body = payload(&op);
        assert_inert_text(&body);
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(text.contains("&amp;amp;"), "{text}");
        assert!(text.contains("\\x1b[2J\\r\\n"), "{text}");
        assert!(text.contains("\\u{202e}"), "{text}");
        // Our own delimiters only: five inline spans and one block.
        assert_eq!(text.matches('`').count(), 5 * 2 + 6, "{text}");
        assert_eq!(text.matches("```").count(), 2, "{text}");
        assert!(text.ends_with("```"), "{text}");
        // The JSON for programs is unchanged.
        assert_eq!(body["vigil"]["statement"], op.hold.statement.as_str());
        assert_eq!(body["vigil"]["rule"], op.hold.rule.as_str());
        assert!(serde_json::to_string(&body).unwrap().contains("\\u001b[2J"));

        let approver = Approver {
            principal: Principal {
                subject: "alice".into(),
                issuer: "https://idp.example".into(),
            },
            groups: op.hold.approver_groups.clone(),
        };
        let reason = "\x1b[32mfine <!here> `x`";
        op.decide(&approver, Verdict::Deny, reason, 1).unwrap();
        let body = payload(&op);
        assert_inert_text(&body);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!here&gt;") && text.contains("\\x1b[32m"),
            "{text}"
        );
        assert_eq!(text.matches('`').count(), 4, "{text}");
    }

    #[test]
    fn webhook_urls_keep_only_scheme_host_and_port_in_logs_and_events() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com"
        );
        for (url, shown) in [
            ("http://127.0.0.1:9/x", "http://127.0.0.1:9"),
            ("https://h.example?token=SECRET", "https://h.example"),
            (
                "https://user:SECRET@h.example:8443/p",
                "https://h.example:8443",
            ),
            ("https://h.example#SECRET", "https://h.example"),
            ("no scheme SECRET", "(a webhook URL)"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
