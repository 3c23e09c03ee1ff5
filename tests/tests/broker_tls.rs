//! `ssl://` broker URLs: TLS to a real Mosquitto with a test CA.
//!
//! The certificates are made by the `openssl` command line for each run
//! (a CA and a server certificate for 127.0.0.1), so nothing secret is
//! checked in.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use amesh_runtime::broker::{Broker, DevBus, UserProperties};
use amesh_tests::mosquitto::MosquittoBroker;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes ca.pem, server.pem, server.key into `dir`.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=amesh test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test]
async fn ssl_url_connects_with_the_configured_ca_and_refuses_an_unknown_one() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = certs.path().display()
    );
    let mq = MosquittoBroker::start_with(
        &[("tls", "tls-pass")],
        "user tls\ntopic readwrite tls/#\n",
        &extra,
    )
    .expect("mosquitto with TLS");

    let mut cfg = mq.broker_config("tls", "tls-pass");
    cfg.broker_url = Some(format!("ssl://127.0.0.1:{tls_port}"));
    cfg.trust_store_file = Some(certs.path().join("ca.pem"));
    let (client, mut rx) = Broker::connect(&cfg, "tls-client", &DevBus::new())
        .await
        .expect("TLS connect with the test CA");
    client.subscribe("tls/echo").await.unwrap();
    client
        .publish("tls/echo", "over tls", UserProperties::new(), false)
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"over tls");
    client.disconnect().await;

    // mqtts:// is the same scheme; without our CA the server is not trusted.
    let mut untrusted = mq.broker_config("tls", "tls-pass");
    untrusted.broker_url = Some(format!("mqtts://127.0.0.1:{tls_port}"));
    let err = Broker::connect(&untrusted, "tls-untrusted", &DevBus::new())
        .await
        .err()
        .expect("an unknown CA must be refused");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{tls_port}")), "{text}");
}
