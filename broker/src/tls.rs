//! TLS for listeners: builds a rustls `ServerConfig` from PEM files and swaps it when the files change.
//!
//! Only the `ring` provider is compiled in, and it is named explicitly; TLS 1.2 and 1.3 only. A listener reads its
//! current config once per accepted connection ([`TlsReloader::current`]), so a swap affects new connections only
//! and live ones keep the session they negotiated. The files are polled for changes every second by the accept loop
//! ([`TlsReloader::poll_changes`]) and reloaded on demand (SIGHUP in `main`, [`TlsReloader::reload`]). A reload
//! that fails (a missing file, a key that does not match the certificate, an unparsable CA bundle) keeps the old
//! config and logs an error. Unlike Mosquitto, the CA bundle and the revocation lists are reloaded too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

use crate::config::{ClientAuth, TlsSettings};

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item of the expected kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates, the key or the CA bundle.
    #[error("{0}")]
    Rustls(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_owned(), reason: reason.to_string() }
}

/// The one crypto provider: ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Builds the server config of a listener: certificate chain and key, client certificate policy, ALPN.
///
/// `alpn` is the protocol offered: `mqtt` on MQTT listeners, `http/1.1` on WebSocket ones (browsers offer only
/// HTTP protocols, and a server that insists on another one fails their handshake).
///
/// # Errors
/// [`TlsError`] naming the file or the rustls reason.
pub fn server_config(s: &TlsSettings, alpn: &[u8]) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = load_certs(&s.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&s.key_file).map_err(|e| file_err(&s.key_file, e))?;
    let verifier = match (s.client_auth, &s.ca_file) {
        (ClientAuth::None, _) | (_, None) => WebPkiClientVerifier::no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|e| file_err(ca, e))?;
            }
            let mut crls = Vec::new();
            for path in &s.crl_files {
                for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
                    crls.push(crl.map_err(|e| file_err(path, e))?);
                }
            }
            // CRLs are checked for the client's own certificate; a CA with no list given is not an error.
            let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
            if auth == ClientAuth::Optional {
                builder = builder.allow_unauthenticated();
            }
            builder.build().map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{} / {}: {e}", s.cert_file.display(), s.key_file.display())))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// What the watched files looked like: modification time and length of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// A listener's TLS config, swappable at run time. Cloning gives another handle to the same config.
#[derive(Clone)]
pub struct TlsReloader {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsSettings,
    alpn: Vec<u8>,
    current: RwLock<Arc<ServerConfig>>,
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader").field("cert_file", &self.inner.settings.cert_file).finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Loads the files once.
    ///
    /// # Errors
    /// As [`server_config`].
    pub fn new(settings: TlsSettings, alpn: &[u8]) -> Result<Self, TlsError> {
        let stamp = stamp(&settings);
        let config = server_config(&settings, alpn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                alpn: alpn.to_vec(),
                current: RwLock::new(Arc::new(config)),
                stamp: Mutex::new(stamp),
            }),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.inner.settings
    }

    /// The config new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the files again and swaps the config in; on error the old config stays.
    ///
    /// # Errors
    /// As [`server_config`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&self.inner.settings);
        *self.inner.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let config = server_config(&self.inner.settings, &self.inner.alpn)?;
        *self.inner.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// Reloads when a file's modification time or length changed since the last load, and logs the outcome.
    /// Returns whether a new config is in force.
    pub fn poll_changes(&self) -> bool {
        let now = stamp(&self.inner.settings);
        {
            let last = self.inner.stamp.lock().unwrap_or_else(PoisonError::into_inner);
            if *last == now {
                return false;
            }
        }
        self.reload_logged("files changed")
    }

    /// Reloads and logs the outcome: info when the new config is in force, error when the old one stays.
    pub fn reload_logged(&self, why: &str) -> bool {
        let cert = self.inner.settings.cert_file.display();
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert_file = %cert, why, "TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::error!(cert_file = %cert, why, error = %e, "TLS reload failed; keeping the previous certificates");
                false
            }
        }
    }
}

fn stamp(s: &TlsSettings) -> Stamp {
    let files = [Some(&s.cert_file), Some(&s.key_file), s.ca_file.as_ref()].into_iter().flatten().chain(&s.crl_files);
    files
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// The identity a client certificate carries: the subject's first Common Name, else its first DNS, e-mail or URI
/// Subject Alternative Name. `None` when the certificate cannot be parsed or names nothing usable.
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().find_map(|cn| cn.as_str().ok().map(str::to_owned));
    if let Some(cn) = cn.filter(|c| !c.is_empty()) {
        return Some(cn);
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => Some((*s).to_owned()),
        _ => None,
    })
}
