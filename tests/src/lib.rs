//! The end-to-end test harness: starts the real `vigil` binary on free ports
//! with a config in a temporary directory, runs real clients against it, and
//! reads the ledger back over its public HTTP API.
//!
//! The binary is found next to the test executable (`target/<profile>/vigil`)
//! or at `$VIGIL_BIN`; the test command builds it first (`cargo build -p vigil`).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vigil_proto::events::Event;

pub const AGENT: &str = "agent";
pub const AGENT_PASSWORD: &str = "correct horse battery staple";
/// Argon2id of AGENT_PASSWORD (made with `vigil hash-password`).
pub const AGENT_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$iqsy4O4Ol4VAH/VXv6VdpA$1SwGaLpokOXrpFNH2hvPVwbl941eoFPEYyCxTF0kZnc";

/// Path of the vigil binary under test.
pub fn vigil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/vigil
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vigil"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p vigil` (or set VIGIL_BIN)",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now, and handed out to no other test
/// running now (one gateway asks for three at once).
///
/// Drawn at random below Linux's ephemeral range (32768 and up), not from
/// `bind(0)`: nextest runs each test in a process of its own, and a port
/// `bind(0)` handed out and released here was sometimes taken by another
/// test's outgoing connection (its source port) before the gateway under
/// test could listen on it ("Address already in use"). Two test processes
/// could still draw the same port between one's check and its gateway's
/// listen (it happened), so each port is also claimed with a lock on a
/// file of its own, held until this process exits.
pub fn free_port() -> u16 {
    use rand::Rng as _;
    static CLAIMED: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("vigil-test-ports");
    std::fs::create_dir_all(&dir).expect("port claims directory");
    let mut rng = rand::thread_rng();
    loop {
        let port = rng.gen_range(20_000..32_000);
        let claim = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .expect("port claim file");
        // A lock is per open file: this process's own claims refuse too.
        if claim.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        CLAIMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(claim);
        return port;
    }
}

/// Ports and paths of one gateway under test.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    pub pg_port: u16,
    pub http_port: u16,
    pub grpc_port: u16,
    pub upstream_port: u16,
    /// A file with the gateway's upstream password (None: trust auth).
    pub upstream_password_file: Option<PathBuf>,
    /// Extra TOML for the end of the `[ledger]` table (sub-tables allowed).
    pub ledger_extra: String,
    /// Extra keys for the `[[postgres]]` table (e.g. `tls = { ... }`).
    pub pg_extra: String,
    /// The listener's policy. Tests of protocol fidelity run under
    /// `builtin:allow-all` (they COPY, call functions by OID and read whole
    /// tables on purpose); policy tests set the shipped PHI default or their
    /// own file.
    pub policy: String,
    /// Extra keys inside the `upstream = { ... }` inline table (starting
    /// with a comma), e.g. `, tls = { mode = "require" }`.
    pub upstream_extra: String,
    /// Tables appended at the end of the config (e.g. `[[oidc.issuers]]`).
    pub tables_extra: String,
    /// Whether the config allows (and lists) the static test identity.
    pub static_identities: bool,
    /// The address the PostgreSQL listener binds (default 127.0.0.1).
    pub listen_host: String,
    /// The upstream login (default `postgres`, a superuser).
    pub upstream_user: String,
    /// Whether the config allows a privileged upstream role (default true:
    /// most tests log in upstream as `postgres`; the least-privilege tests
    /// turn it off).
    pub privileged_upstream_ok: bool,
}

impl GatewaySpec {
    pub fn new() -> Self {
        Self {
            pg_port: free_port(),
            http_port: free_port(),
            grpc_port: free_port(),
            upstream_port: 5432,
            upstream_password_file: None,
            ledger_extra: String::new(),
            pg_extra: String::new(),
            policy: "builtin:allow-all".into(),
            upstream_extra: String::new(),
            tables_extra: String::new(),
            static_identities: true,
            listen_host: "127.0.0.1".into(),
            upstream_user: "postgres".into(),
            privileged_upstream_ok: true,
        }
    }

    /// Writes `vigil.toml` (data in `dir/data`) and its body keyring
    /// `body.keys` into `dir`; returns the config's path.
    pub fn write_config(&self, dir: &Path) -> PathBuf {
        let config = dir.join("vigil.toml");
        std::fs::write(&config, self.config(&dir.join("data"))).expect("write config");
        std::fs::write(
            dir.join("body.keys"),
            vigil_ledger::Keyring::generate_line("e2e-1"),
        )
        .expect("write body keyring");
        std::fs::write(
            dir.join("masking.key"),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        )
        .expect("write masking key");
        config
    }

    pub fn config(&self, data_dir: &Path) -> String {
        format!(
            r#"
data_dir = "{data}"
allow_static_identities = {statics}
[ledger]
origin = "test.vigil/e2e"
http_listen = "127.0.0.1:{http}"
grpc_listen = "127.0.0.1:{grpc}"
checkpoint_interval = "50ms"
body_keys_file = "{data}/../body.keys"
{ledger_extra}
[[postgres]]
name = "e2e-pg"
listen = "{listen_host}:{pg}"
policy = "{policy}"
{pg_extra}
upstream = {{ host = "127.0.0.1", port = {up}, user = "{upstream_user}", connect_timeout = "2s", allow_privileged_role = {privileged_ok}{pwfile}{upstream_extra} }}
{identities}
[masking]
hash_key_file = "{data}/../masking.key"
{tables_extra}
"#,
            tables_extra = self.tables_extra,
            policy = self.policy,
            upstream_extra = self.upstream_extra,
            upstream_user = self.upstream_user,
            privileged_ok = self.privileged_upstream_ok,
            data = data_dir.display(),
            http = self.http_port,
            grpc = self.grpc_port,
            pg = self.pg_port,
            up = self.upstream_port,
            statics = self.static_identities,
            listen_host = self.listen_host,
            identities = if self.static_identities {
                format!(
                    "[[identities]]\nname = \"{AGENT}\"\npassword_hash = \"{AGENT_HASH}\"\ngroups = [\"agents\", \"research\"]"
                )
            } else {
                String::new()
            },
            ledger_extra = self.ledger_extra,
            pg_extra = self.pg_extra,
            pwfile = self
                .upstream_password_file
                .as_ref()
                .map(|p| format!(", password_file = \"{}\"", p.display()))
                .unwrap_or_default(),
        )
    }
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self::new()
    }
}

/// What vigil prints on stdout once every listener serves.
pub const READY: &str = "vigil is ready";

/// A vigil process started by [`spawn_vigil`].
pub struct Started {
    pub child: Child,
    /// Lines printed on stdout up to and including the awaited one.
    pub banner: Vec<String>,
    /// The lines printed after it, as they come.
    pub lines: mpsc::Receiver<String>,
    pub stderr_path: PathBuf,
}

impl Started {
    /// Waits (up to `within`) for the line `line` on stdout.
    pub fn wait_for_line(&mut self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let done = l == line;
                    self.banner.push(l);
                    if done {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "vigil exited with {status} before printing {line:?}:\n{}",
                            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "vigil did not print {line:?} within {within:?}:\n{}",
                        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    panic!(
                        "vigil closed stdout before printing {line:?}:\n{}",
                        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                    );
                }
            }
        }
    }
}

/// Starts `vigil <args>` in `dir` (stderr into `dir/<stderr_name>`) and
/// waits up to 30 s for the stdout line `until`.
pub fn spawn_vigil(dir: &Path, args: &[String], stderr_name: &str, until: &str) -> Started {
    let mut command = Command::new(vigil_bin());
    command.args(args);
    spawn_vigil_command(dir, command, stderr_name, until)
}

/// `vigil <args>` that may neither create nor grow any file past
/// `max_file_bytes` (RLIMIT_FSIZE, SIGXFSZ ignored): a write past it fails
/// with EFBIG, as on a full disk, for the ledger's RocksDB first of all.
pub fn vigil_with_file_limit(args: &[String], max_file_bytes: u64) -> Command {
    let mut command = Command::new("bash");
    command
        .args([
            "-c",
            r#"trap '' XFSZ; exec prlimit --fsize="$1" -- "${@:2}""#,
            "bash",
            &max_file_bytes.to_string(),
        ])
        .arg(vigil_bin())
        .args(args);
    command
}

/// [`spawn_vigil`] for a command line of the caller's making.
pub fn spawn_vigil_command(
    dir: &Path,
    mut command: Command,
    stderr_name: &str,
    until: &str,
) -> Started {
    let stderr_path = dir.join(stderr_name);
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = command
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start vigil");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut started = Started {
        child,
        banner: Vec::new(),
        lines: rx,
        stderr_path,
    };
    started.wait_for_line(until, Duration::from_secs(30));
    started
}

/// A running `vigil up`; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub spec: GatewaySpec,
    pub dir: tempfile::TempDir,
    /// Lines vigil printed on stdout up to "vigil is ready".
    pub banner: Vec<String>,
    stderr_path: PathBuf,
}

impl Gateway {
    /// Starts `vigil up --config` with a fresh data directory.
    pub fn start(spec: GatewaySpec) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("vigil.toml");
        assert_eq!(spec.write_config(dir.path()), config);
        let args = Self::config_args(dir.path());
        debug_assert!(args.contains(&config.display().to_string()));
        Self::spawn(spec, dir, args)
    }

    /// Starts `vigil` with the given arguments in `dir`, waiting for "vigil is ready".
    pub fn spawn(spec: GatewaySpec, dir: tempfile::TempDir, args: Vec<String>) -> Self {
        let started = spawn_vigil(dir.path(), &args, "vigil.stderr", READY);
        Self::started(spec, dir, started)
    }

    fn started(spec: GatewaySpec, dir: tempfile::TempDir, started: Started) -> Self {
        Gateway {
            child: started.child,
            spec,
            dir,
            banner: started.banner,
            stderr_path: started.stderr_path,
        }
    }

    /// [`Gateway::start`] with every file vigil writes limited to
    /// `max_file_bytes` ([`vigil_with_file_limit`]).
    pub fn start_with_file_limit(spec: GatewaySpec, max_file_bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        spec.write_config(dir.path());
        let command = vigil_with_file_limit(&Self::config_args(dir.path()), max_file_bytes);
        let started = spawn_vigil_command(dir.path(), command, "vigil.stderr", READY);
        Self::started(spec, dir, started)
    }

    /// Kills this gateway and starts it again on the same data directory.
    pub fn restart(mut self, args: Vec<String>) -> Gateway {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let spec = self.spec.clone();
        drop(self);
        Gateway::spawn(spec, dir, args)
    }

    /// Stops vigil (SIGKILL: as abrupt as a crash) and hands back the spec
    /// and the directory, so a test can work on the data offline and start
    /// it again with [`Gateway::spawn`].
    pub fn stop(mut self) -> (GatewaySpec, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (self.spec.clone(), dir)
    }

    /// The arguments to start a stopped gateway again (the spec's config).
    pub fn config_args_for(_spec: &GatewaySpec) -> Vec<String> {
        // `spawn` runs in the gateway's directory; the config is there.
        vec!["up".to_string(), "--config".into(), "vigil.toml".into()]
    }

    /// `up --config <dir>/vigil.toml`, the arguments [`Gateway::start`] used.
    pub fn config_args(dir: &Path) -> Vec<String> {
        vec![
            "up".to_string(),
            "--config".into(),
            dir.join("vigil.toml").display().to_string(),
        ]
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The verifier key from the start banner.
    pub fn verifier_key(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix("ledger verifier key: "))
            .expect("verifier key in banner")
            .to_string()
    }

    pub fn ledger_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.http_port)
    }

    /// psql against the gateway with the given user and password.
    pub fn psql(&self, user: &str, password: &str, args: &[&str]) -> Output {
        self.psql_command(user, password, args)
            .output()
            .expect("run psql")
    }

    /// Like [`Gateway::psql`], with extra environment variables (e.g.
    /// `PGCLIENTENCODING`, `PGOPTIONS`).
    pub fn psql_command_env(
        &self,
        user: &str,
        password: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        let mut cmd = self.psql_command(user, password, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run psql")
    }

    /// Like [`Gateway::psql`], with `input` on psql's standard input (for
    /// `-f -` scripts and `\copy ... FROM STDIN`).
    pub fn psql_with_stdin(
        &self,
        user: &str,
        password: &str,
        args: &[&str],
        input: &str,
    ) -> Output {
        use std::io::Write as _;
        let mut child = self
            .psql_command(user, password, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("psql stdin")
            .write_all(input.as_bytes())
            .expect("write psql stdin");
        child.wait_with_output().expect("wait for psql")
    }

    /// A psql command line for this gateway (not started).
    pub fn psql_command(&self, user: &str, password: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("psql");
        cmd.env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.spec.pg_port.to_string(),
                "-U",
                user,
                "-d",
                "test",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(args);
        cmd
    }

    /// Runs `vigil` with the given arguments (e.g. the audit tools).
    pub fn vigil(&self, args: &[&str]) -> Output {
        Command::new(vigil_bin())
            .args(args)
            .output()
            .expect("run vigil")
    }

    /// `vigil audit <args[0]> --ledger <this ledger> --key <its verifier key> <args[1..]>`.
    pub fn audit(&self, args: &[&str]) -> Output {
        let (url, key) = (self.ledger_url(), self.verifier_key());
        let mut all = vec!["audit", args[0], "--ledger", &url, "--key", &key];
        all.extend_from_slice(&args[1..]);
        self.vigil(&all)
    }

    /// The latest checkpoint's size.
    pub fn checkpoint_size(&self) -> u64 {
        self.try_checkpoint_size()
            .expect("GET /checkpoint with a size line")
    }

    /// The latest checkpoint's size, or `None` while no ledger answers.
    pub fn try_checkpoint_size(&self) -> Option<u64> {
        let note = ureq::get(&format!("{}/checkpoint", self.ledger_url()))
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        note.lines().nth(1).and_then(|l| l.parse().ok())
    }

    /// Waits until a signed checkpoint covers the events that satisfy `done`,
    /// then returns every event in the ledger in order.
    pub fn wait_for_events(&self, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        self.wait_for_events_within(Duration::from_secs(20), done)
    }

    /// [`Gateway::wait_for_events`] with a deadline of the caller's.
    pub fn wait_for_events_within(
        &self,
        within: Duration,
        done: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "ledger never got the expected events; it has {} events: {:#?}",
                events.len(),
                events.iter().map(|e| e.kind_name()).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every event covered by the latest checkpoint, decoded from the bodies
    /// (events whose bodies retention pruned are skipped).
    pub fn events(&self) -> Vec<Event> {
        #[derive(serde::Deserialize)]
        struct Body {
            body: String,
            #[serde(default)]
            pruned: Option<serde_json::Value>,
        }
        #[derive(serde::Deserialize)]
        struct Page {
            entries: Vec<Body>,
        }
        let size = self.checkpoint_size();
        let mut events = Vec::new();
        let mut start = 0;
        while start < size {
            // Only what the checkpoint covers: the log may have grown since.
            let count = 1024.min(size - start);
            let page: Page = ureq::get(&format!(
                "{}/vigil/v1/bodies?start={start}&count={count}",
                self.ledger_url()
            ))
            .call()
            .expect("GET bodies")
            .into_json()
            .expect("bodies JSON");
            for b in page.entries.into_iter().filter(|b| b.pruned.is_none()) {
                let bytes = B64.decode(b.body).expect("base64 body");
                events.push(vigil_proto::events::decode(bytes.as_slice()).expect("event body"));
            }
            start += count;
        }
        events
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each Request's statement text by its statement number, for pairing
/// Response events with what they answer.
pub fn statements_by_seq(events: &[Event]) -> std::collections::HashMap<u64, String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(vigil_proto::events::event::Kind::Request(r)) => {
                Some((r.request_seq, r.statement().to_string()))
            }
            _ => None,
        })
        .collect()
}

/// psql straight to the upstream PostgreSQL (database `test`, as postgres):
/// for setting up and checking what the gateway must not have changed.
pub fn direct_psql(sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql")
}

/// [`direct_psql`] for set-up that test processes may run at once (nextest
/// runs every test in a process of its own): `CREATE TABLE IF NOT EXISTS`
/// races with itself, so the whole text runs in one transaction under a
/// transaction-scoped advisory lock, released only once it has committed.
pub fn direct_psql_setup(sql: &str) -> Output {
    direct_psql(&format!(
        "SELECT pg_advisory_xact_lock(hashtext('vigil-tests set-up')); {sql}"
    ))
}

/// Runs one of the Python driver scripts in `tests/clients/` against `gw`
/// as the static agent, with `env` added (table names and the like).
pub fn python_client(script: &str, gw: &Gateway, env: &[(&str, &str)]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script);
    Command::new("python3")
        .arg(path)
        .env("VIGIL_PG_PORT", gw.spec.pg_port.to_string())
        .env("VIGIL_USER", AGENT)
        .env("VIGIL_PASSWORD", AGENT_PASSWORD)
        .envs(env.iter().copied())
        .output()
        .expect("run python3")
}

/// Stdout and stderr of a command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the crash test's load generator (`src/bin/vigil-ledger-load.rs`)
/// appends and the crash test (`e2e/crash.rs`) checks: both sides derive ids
/// and bodies from the same pure functions.
pub mod certs;
pub mod kafka;
pub mod llm;
pub mod mcp;
pub mod oidc;
pub mod rewriting_proxy;

pub mod crash_load {
    /// Event id of fresh event `seq` of run `run`: `run (u64 BE) || seq (u64 BE)`.
    pub fn event_id(run: u64, seq: u64) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&run.to_be_bytes());
        id[8..].copy_from_slice(&seq.to_be_bytes());
        id
    }

    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Body of event `(run, seq)`: 896..=1151 pseudo-random bytes, a pure
    /// function of the id.
    pub fn event_body(run: u64, seq: u64) -> Vec<u8> {
        let mut state = run.wrapping_mul(0x1000_0000_01B3) ^ seq;
        let len = 896 + (splitmix64(&mut state) % 256) as usize;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The SQL detail of a Request, read the way the tests assert on it: the
/// statement's text, path, names and parameters (empty for a Request of
/// another family).
pub trait SqlRequestView {
    fn statement(&self) -> &str;
    fn protocol_path(&self) -> &'static str;
    fn statement_name(&self) -> &str;
    fn parameters(&self) -> &[vigil_proto::events::Parameter];
}

impl SqlRequestView for vigil_proto::events::Request {
    fn statement(&self) -> &str {
        self.sql().map_or("", |s| s.text.as_str())
    }
    fn protocol_path(&self) -> &'static str {
        self.sql().map_or("", |s| s.path().label())
    }
    fn statement_name(&self) -> &str {
        self.sql().map_or("", |s| s.statement_name.as_str())
    }
    fn parameters(&self) -> &[vigil_proto::events::Parameter] {
        self.sql().map_or(&[], |s| s.parameters.as_slice())
    }
}

/// The SQL detail of a Response: command tags and row counts.
pub trait SqlResponseView {
    fn command_tags(&self) -> &[String];
    fn rows(&self) -> u64;
    fn stopped_after_rows(&self) -> u64;
}

impl SqlResponseView for vigil_proto::events::Response {
    fn command_tags(&self) -> &[String] {
        self.sql().map_or(&[], |s| s.command_tags.as_slice())
    }
    fn rows(&self) -> u64 {
        self.sql().map_or(0, |s| s.rows)
    }
    fn stopped_after_rows(&self) -> u64 {
        self.sql().map_or(0, |s| s.stopped_after_rows)
    }
}
