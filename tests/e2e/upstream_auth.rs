//! The gateway logs in upstream with its own credential over SCRAM-SHA-256,
//! against a real PostgreSQL cluster that this test creates with
//! `initdb --auth=scram-sha-256` (the machine's main cluster trusts loopback,
//! so it never asks for a password).

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_tests::{free_port, show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

const UPSTREAM_PASSWORD: &str = "gateway-only-s3cret";

/// A throwaway PostgreSQL cluster that demands SCRAM; stopped when dropped.
struct ScramCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
}

fn as_postgres(cmd: &Path) -> Command {
    // initdb and pg_ctl refuse to run as root.
    let mut c = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    };
    c.env_remove("PGPASSWORD");
    c
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl ScramCluster {
    fn start() -> Self {
        let bindir = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::Builder::new()
            .prefix("vigil-scram")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, UPSTREAM_PASSWORD).unwrap();
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = as_postgres(&bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", show(&out));
        let port = free_port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.path().display()
        );
        let out = as_postgres(&bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-w", "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", show(&out));
        ScramCluster { dir, bindir, port }
    }
}

impl Drop for ScramCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn the_gateway_logs_in_with_scram_and_the_agent_never_sees_the_password() {
    let cluster = ScramCluster::start();
    let secrets = tempfile::tempdir().unwrap();
    let good = secrets.path().join("good");
    std::fs::write(&good, format!("{UPSTREAM_PASSWORD}\n")).unwrap();

    let mut spec = GatewaySpec::new();
    spec.upstream_port = cluster.port;
    spec.upstream_password_file = Some(good);
    let gw = Gateway::start(spec);
    let out = gw.psql(
        AGENT,
        AGENT_PASSWORD,
        &["-d", "postgres", "-A", "-t", "-c", "SELECT current_user"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");
    drop(gw);

    // A wrong gateway credential is reported to the agent without revealing it.
    let bad = secrets.path().join("bad");
    std::fs::write(&bad, "not-the-password").unwrap();
    let mut spec = GatewaySpec::new();
    spec.upstream_port = cluster.port;
    spec.upstream_password_file = Some(bad);
    let gw = Gateway::start(spec);
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-d", "postgres", "-c", "SELECT 1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server refused the gateway's login (28P01"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}
