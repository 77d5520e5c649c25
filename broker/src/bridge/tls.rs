//! TLS towards an upstream broker: a rustls client config (ring provider, TLS 1.2 and 1.3) from the bridge's PEM
//! files, built once when the bridge starts.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use super::BridgeTls;
use crate::tls::{TlsError, load_certs, provider};

/// Builds the client config: the upstream must present a certificate chaining to `ca_file`; the client certificate
/// and key are offered when given; ALPN as configured.
///
/// # Errors
/// [`TlsError`] naming the file or the rustls reason.
pub(super) fn client_config(t: &BridgeTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&t.ca_file)? {
        roots.add(cert).map_err(|e| TlsError::Rustls(format!("{}: {e}", t.ca_file.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Rustls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = t.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}
