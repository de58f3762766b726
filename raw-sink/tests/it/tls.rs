//! TLS modes against a fake TLS-only server (the test PostgreSQL has no TLS).
//!
//! `tests/fixtures`: `ca.crt` (test CA, key discarded) signed `server.crt` (localhost,
//! 127.0.0.1, valid until 2126) whose key is `server.key`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use raw_sink::{PgConfig, Sink, SslMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// PostgreSQL's SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// Accepts one connection, answers the SSLRequest with `S`, runs the TLS handshake and reports
/// whether it completed; then closes (the client's startup fails afterwards, which is fine).
fn fake_tls_server() -> (u16, mpsc::Receiver<Result<(), String>>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = [0_u8; 8];
        tcp.read_exact(&mut request).unwrap();
        assert_eq!(request, SSL_REQUEST);
        tcp.write_all(b"S").unwrap();
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        let outcome = loop {
            if !conn.is_handshaking() {
                break Ok(());
            }
            match conn.complete_io(&mut tcp) {
                Ok((0, 0)) => break Err("connection closed during handshake".to_owned()),
                Ok(_) => {}
                Err(e) => break Err(e.to_string()),
            }
        };
        let _ = tx.send(outcome);
    });
    (port, rx)
}

fn config(port: u16, host: &str, mode: &str, root: Option<PathBuf>) -> PgConfig {
    let url = format!("postgres://loader:pw@{host}:{port}/qb");
    let root = root.map(|p| p.to_str().unwrap().to_owned());
    PgConfig::from_lookup(move |k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PG_SSLMODE" => Some(mode.to_owned()),
        "PG_SSLROOTCERT" => root.clone(),
        _ => None,
    })
    .unwrap()
    .with_connect_timeout(Duration::from_secs(5))
}

fn handshake(rx: &mpsc::Receiver<Result<(), String>>) -> Result<(), String> {
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn require_verifies_against_the_given_roots() {
    for host in ["localhost", "127.0.0.1"] {
        let (port, rx) = fake_tls_server();
        let cfg = config(port, host, "require", Some(fixture("ca.crt")));
        assert_eq!(cfg.ssl_mode(), SslMode::Require);
        // The fake server hangs up after the handshake, so connect() itself fails.
        let _ = Sink::connect(&cfg).await;
        assert_eq!(handshake(&rx), Ok(()), "{host}");
    }
}

#[tokio::test]
async fn require_rejects_an_unknown_issuer() {
    let (port, rx) = fake_tls_server();
    let e = Sink::connect(&config(port, "localhost", "require", None))
        .await
        .unwrap_err();
    assert!(handshake(&rx).is_err());
    assert!(e.is_connect() && !e.is_retryable(), "{e:?}");
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
}

#[tokio::test]
async fn require_checks_the_host_name() {
    let (port, rx) = fake_tls_server();
    // The right server (hostaddr), reached under a name its certificate does not carry.
    let url = format!("host=db.example.invalid hostaddr=127.0.0.1 port={port} user=u dbname=d");
    let root = fixture("ca.crt").to_str().unwrap().to_owned();
    let cfg = PgConfig::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PG_SSLMODE" => Some("require".to_owned()),
        "PG_SSLROOTCERT" => Some(root.clone()),
        _ => None,
    })
    .unwrap();
    let e = Sink::connect(&cfg).await.unwrap_err();
    assert!(handshake(&rx).is_err());
    assert!(!e.is_retryable(), "{e:?}");
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
}

#[tokio::test]
async fn prefer_encrypts_without_verifying() {
    let (port, rx) = fake_tls_server();
    let _ = Sink::connect(&config(port, "localhost", "prefer", None)).await;
    assert_eq!(handshake(&rx), Ok(()));
}
