//! rustls connectors for the three `PG_SSLMODE`s.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgConfig, SslMode};
use crate::error::SinkError;

/// The connector for `cfg`, or `None` for plain TCP ([`SslMode::Disable`]).
pub(crate) fn connector(cfg: &PgConfig) -> Result<Option<MakeRustlsConnect>, SinkError> {
    if cfg.ssl_mode() == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(SinkError::Tls)?;
    let config = match cfg.ssl_mode() {
        SslMode::Disable | SslMode::Prefer => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        SslMode::Require => match cfg.ssl_root_cert() {
            Some(path) => builder
                .with_root_certificates(load_roots(path)?)
                .with_no_client_auth(),
            None => {
                let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                    .map_err(SinkError::Tls)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
        },
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn load_roots(path: &Path) -> Result<RootCertStore, SinkError> {
    let fail = |source: io::Error| SinkError::TlsRoots {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_to_io(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_to_io(e)))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "no usable PEM certificate in the file",
        )));
    }
    Ok(roots)
}

fn pem_to_io(e: rustls::pki_types::pem::Error) -> io::Error {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// `prefer`: encrypt opportunistically like libpq, without authenticating the server; the
/// handshake signatures are still checked so the session keys belong to the presented key.
#[derive(Debug)]
struct Unverified {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_builds_a_connector() {
        let base = PgConfig::from_url("postgres://u@localhost/d").unwrap();
        assert!(
            connector(&base.clone().with_ssl_mode(SslMode::Disable))
                .unwrap()
                .is_none()
        );
        assert!(
            connector(&base.clone().with_ssl_mode(SslMode::Prefer))
                .unwrap()
                .is_some()
        );
        assert!(
            connector(&base.with_ssl_mode(SslMode::Require))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn missing_or_empty_root_bundle_is_a_named_error() {
        let err = load_roots(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("PG_SSLROOTCERT"), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = std::env::temp_dir().join(format!("raw-sink-empty-{}.pem", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let err = load_roots(&dir).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(err, SinkError::TlsRoots { .. }), "{err:?}");
    }
}
