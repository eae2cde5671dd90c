//! The ledger's gRPC API over TLS with client certificates: a caller with a
//! certificate from the configured CA is served; one without a certificate,
//! one whose certificate another CA signed, and a plaintext caller are
//! refused. Certificates are made with the real openssl command.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_proto::ledger::ledger_client::LedgerClient;
use vigil_proto::ledger::GetCheckpointRequest;
use vigil_tests::certs::{ca, leaf};
use vigil_tests::{show, Gateway, GatewaySpec};

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The ledger's checkpoint over TLS, as `identity` (None: no client certificate).
async fn checkpoint(gw: &Gateway, certs: &Path, identity: Option<&str>) -> Result<u64, String> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(certs, "vigil-ca.pem")))
        .domain_name("localhost");
    if let Some(name) = identity {
        tls = tls.identity(Identity::from_pem(
            read(certs, &format!("{name}.pem")),
            read(certs, &format!("{name}.key")),
        ));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", gw.spec.grpc_port))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    LedgerClient::new(channel)
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map(|r| r.into_inner().size)
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn the_grpc_api_serves_only_callers_with_a_certificate_from_its_ca() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    ca(dir, "vigil");
    ca(dir, "rogue");
    leaf(
        dir,
        "vigil",
        "ledger",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    leaf(dir, "vigil", "proxy-a", "extendedKeyUsage=clientAuth\n");
    leaf(dir, "rogue", "intruder", "extendedKeyUsage=clientAuth\n");

    let mut spec = GatewaySpec::new();
    spec.ledger_extra = format!(
        "[ledger.grpc_tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        path(dir, "ledger.pem").display(),
        path(dir, "ledger.key").display(),
        path(dir, "vigil-ca.pem").display()
    );
    let gw = Gateway::start(spec);
    assert!(
        gw.banner
            .iter()
            .any(|l| l.contains("TLS, client certificates required")),
        "{:?}",
        gw.banner
    );

    let size = checkpoint(&gw, dir, Some("proxy-a")).await;
    assert!(
        size.is_ok(),
        "a caller with a certificate from the CA: {size:?}"
    );

    let refused = checkpoint(&gw, dir, None).await;
    assert!(
        refused.is_err(),
        "a caller without a certificate was served"
    );
    let refused = checkpoint(&gw, dir, Some("intruder")).await;
    assert!(
        refused.is_err(),
        "a caller with another CA's certificate was served"
    );

    // Plaintext gRPC is not served at all.
    let plain = async {
        let channel = tonic::transport::Channel::from_shared(format!(
            "http://127.0.0.1:{}",
            gw.spec.grpc_port
        ))
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
        LedgerClient::new(channel)
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(plain.is_err(), "plaintext gRPC was served");
}

#[test]
fn a_non_loopback_grpc_listener_without_tls_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = GatewaySpec::new();
    spec.write_config(dir.path());
    let config = dir.path().join("vigil.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("grpc_listen = \"127.0.0.1:{}\"", spec.grpc_port),
        &format!("grpc_listen = \"0.0.0.0:{}\"", spec.grpc_port),
    );
    std::fs::write(&config, text).unwrap();
    spec.grpc_port = 0;
    let out = Command::new(vigil_tests::vigil_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[ledger.grpc_tls]"),
        "{}",
        show(&out)
    );
}
