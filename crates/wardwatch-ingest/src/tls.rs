//! TLS for the engine's broker connections (`mqtts://`): rustls with the
//! ring provider, trusting the CA file an operator names (a private CA, as
//! most brokers on a hospital network use) or, without one, the Mozilla
//! root set. Shared by the ingest session and every rumqttc client (the
//! alert publisher, the load generator, the simulator).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use thiserror::Error;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Why a TLS client configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file named in the configuration.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads every certificate in a PEM file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::CaFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CaFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::CaFile {
            path: shown,
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// A client configuration that verifies the server against `ca_file` (or
/// the Mozilla roots) and its host name.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::CaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sets a rumqttc client to TLS with `config` (none: plain TCP).
pub fn apply(options: &mut rumqttc::MqttOptions, config: Option<Arc<ClientConfig>>) {
    if let Some(config) = config {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named_in_the_error() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("ww-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        assert!(client_config(None).is_ok(), "the Mozilla roots");
    }
}
