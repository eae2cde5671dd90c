//! MCP sessions at the gateway. A session of the handshake revisions
//! (2025-03-26 to 2025-11-25) begins with `initialize` and is named by the
//! `Mcp-Session-Id` the gateway gives the agent: a random id of its own,
//! bound to the agent's verified subject and issuer, mapped to the
//! server's id, which the agent never sees. The stateless revision
//! (2026-07-28) has no session on the wire; the gateway records the
//! requests of one agent's HTTP connection as one session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_mcp::correlate::Correlator;
use vigil_mcp::jsonrpc::Id;
use vigil_mcp::policy::Verdict;
use vigil_proxy_core::identity::VerifiedIdentity;
use vigil_runtime::recorder::{EndReason, SessionRecorder};

/// A client request sent upstream and not yet answered.
#[derive(Debug, Clone)]
pub struct Asked {
    pub seq: u64,
    pub method: String,
    pub verdict: Arc<Verdict>,
    pub started: Instant,
}

/// One session: its recorder, who opened it, and its id maps.
pub struct Session {
    pub recorder: Arc<SessionRecorder>,
    pub identity: VerifiedIdentity,
    /// The roles of the latest token the agent presented: policy judges
    /// by these, so a group taken away applies to an open session too.
    roles: Mutex<Vec<String>>,
    /// The id the agent holds; empty for the stateless revision.
    pub gateway_id: String,
    upstream_id: Mutex<Option<String>>,
    ids: Mutex<Correlator<Asked>>,
    /// Server requests forwarded to the agent: their method, for the
    /// record of the agent's answer.
    server_asked: Mutex<HashMap<Id, String>>,
    /// Requests held for review, by the agent's id: a
    /// `notifications/cancelled` naming one withdraws it.
    held: Mutex<HashMap<Id, Arc<tokio::sync::Notify>>>,
    last_used: Mutex<Instant>,
    ended: AtomicBool,
}

impl Session {
    pub fn new(
        recorder: Arc<SessionRecorder>,
        identity: VerifiedIdentity,
        gateway_id: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            recorder,
            roles: Mutex::new(identity.roles.clone()),
            identity,
            gateway_id,
            upstream_id: Mutex::new(None),
            ids: Mutex::new(Correlator::default()),
            server_asked: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
            ended: AtomicBool::new(false),
        })
    }

    /// Whether `identity` may use this session: the one who opened it.
    pub fn belongs_to(&self, identity: &VerifiedIdentity) -> bool {
        self.identity.subject == identity.subject && self.identity.issuer == identity.issuer
    }

    /// The roles policy judges by now.
    pub fn roles(&self) -> Vec<String> {
        self.roles.lock().expect("session lock").clone()
    }

    /// A request of the session's agent with a (possibly newer) token.
    pub fn presented(&self, identity: &VerifiedIdentity) {
        *self.roles.lock().expect("session lock") = identity.roles.clone();
        self.touch();
    }

    pub fn upstream_id(&self) -> Option<String> {
        self.upstream_id.lock().expect("session lock").clone()
    }

    pub fn set_upstream_id(&self, id: Option<String>) {
        *self.upstream_id.lock().expect("session lock") = id;
    }

    pub fn ids(&self) -> std::sync::MutexGuard<'_, Correlator<Asked>> {
        self.ids.lock().expect("session lock")
    }

    /// A server request passed to the agent (its answer will be let back).
    pub fn server_asked(&self, id: Id, method: &str) -> bool {
        if self.ids().server_asked(id.clone()).is_err() {
            return false;
        }
        self.server_asked
            .lock()
            .expect("session lock")
            .insert(id, method.to_string());
        true
    }

    /// The method of the server request the agent answers with `id`;
    /// `None` when no such request was forwarded (or it was answered).
    pub fn client_answers(&self, id: &Id) -> Option<String> {
        if !self.ids().client_answered(id) {
            return None;
        }
        self.server_asked.lock().expect("session lock").remove(id)
    }

    /// The agent's request `id` is held: what cancels its wait. (Held
    /// requests are few and end with their decision; a map entry left by
    /// one lasts as long as the session.)
    pub fn hold_started(&self, id: &Id) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.held
            .lock()
            .expect("session lock")
            .insert(id.clone(), notify.clone());
        notify
    }

    /// The cancel of a request held now.
    pub fn held(&self, id: &Id) -> Option<Arc<tokio::sync::Notify>> {
        self.held.lock().expect("session lock").remove(id)
    }

    pub fn touch(&self) {
        *self.last_used.lock().expect("session lock") = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().expect("session lock").elapsed()
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Records SessionClosed, once.
    pub async fn end(&self, reason: &EndReason) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            tracing::info!(session = %self.recorder.session().session_id(), reason = %reason.to_reason_text(), "MCP session ended");
            self.recorder.close(reason).await;
        }
    }
}

/// The handshake sessions of one listener, by the id the agents hold.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    max: usize,
}

/// The most sessions one listener keeps open.
pub const MAX_SESSIONS: usize = 10_000;
/// The most sessions one identity keeps open on a listener.
pub const MAX_PER_IDENTITY: usize = 64;

impl Sessions {
    pub fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// A new id an agent cannot guess: 128 random bits, hex.
    pub fn new_id() -> String {
        random_hex::<16>()
    }

    /// Whether `identity` may open another session: the listener's cap,
    /// and a share per identity, so that one agent cannot take them all.
    pub fn has_room(&self, identity: &VerifiedIdentity) -> bool {
        let map = self.map.lock().expect("sessions lock");
        map.len() < self.max
            && map.values().filter(|s| s.belongs_to(identity)).count() < MAX_PER_IDENTITY
    }

    /// Takes a place for `session` if its identity and the listener have
    /// room, in one step (two initializes at once cannot both take the
    /// last place). The agent learns the id only once the server accepted
    /// the session; it is removed again if the server refuses.
    pub fn try_insert(&self, session: Arc<Session>) -> bool {
        let mut map = self.map.lock().expect("sessions lock");
        let mine = map
            .values()
            .filter(|s| s.belongs_to(&session.identity))
            .count();
        if map.len() >= self.max || mine >= MAX_PER_IDENTITY {
            return false;
        }
        map.insert(session.gateway_id.clone(), session);
        true
    }

    /// The session `id` if `identity` opened it. Another agent's id is
    /// answered as unknown: whether it exists is not for them to learn.
    pub fn get(&self, id: &str, identity: &VerifiedIdentity) -> Option<Arc<Session>> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id)
            .filter(|s| s.belongs_to(identity) && !s.has_ended())
            .cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().expect("sessions lock").remove(id)
    }

    /// Takes out the sessions idle longer than `idle`.
    pub fn take_idle(&self, idle: Duration) -> Vec<Arc<Session>> {
        let mut map = self.map.lock().expect("sessions lock");
        let ids: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.idle_for() > idle)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| map.remove(id)).collect()
    }

    /// Takes out every session (shutdown).
    pub fn take_all(&self) -> Vec<Arc<Session>> {
        self.map
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s)
            .collect()
    }
}

/// `N` random bytes, hex: ids and tokens nobody can guess.
pub fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
