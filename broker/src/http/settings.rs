//! The `[http]` section (`/metrics`, `/healthz`, `/readyz`): its file form and its validated settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Bool, ClientAuth, ConfigError, TlsSettings};

/// Validated `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Whether the broker serves HTTP. Off in code ([`Default`]); the embedded default configuration turns it on,
    /// on the loopback interface.
    pub enabled: bool,
    /// Address and port.
    pub bind: SocketAddr,
    /// Whether the broker keeps its per-message metrics (messages and bytes by QoS, delivery latencies, drops by
    /// reason; see [`crate::metrics::Metrics`]). Off: that work is skipped on the data path and `/metrics` answers
    /// 404 saying so.
    pub metrics: bool,
    /// HTTPS: the certificate chain and key (`[http.tls]`), reloaded like a listener's (on SIGHUP and when the
    /// files change). `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Users who may use the endpoint, with HTTP basic authentication (a password file as for MQTT). `None`:
    /// read-only, and only on a loopback address.
    pub password_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            metrics: true,
            tls: None,
            password_file: None,
        }
    }
}

/// The file form of `[http.auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttpAuth {
    password_file: String,
}

/// The file form of `[http.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttpTls {
    cert_file: String,
    key_file: String,
}

/// The file form of `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp {
    enabled: Bool,
    bind: String,
    metrics: Bool,
    tls: Option<FileHttpTls>,
    auth: Option<FileHttpAuth>,
}

impl Default for FileHttp {
    fn default() -> Self {
        let s = HttpSettings::default();
        Self { enabled: Bool(s.enabled), bind: s.bind.to_string(), metrics: Bool(s.metrics), tls: None, auth: None }
    }
}

impl FileHttp {
    /// Validates the section.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<HttpSettings, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid { key: key.to_owned(), reason, env: None };
        let bind: SocketAddr = self.bind.trim().parse().map_err(|_| {
            invalid("http.bind", format!("not an IP address and port such as \"127.0.0.1:8081\" (got {:?})", self.bind))
        })?;
        let password_file = match &self.auth {
            Some(a) if a.password_file.trim().is_empty() => {
                return Err(invalid("http.auth.password_file", "must name a file".into()));
            }
            Some(a) => Some(PathBuf::from(a.password_file.trim())),
            None => None,
        };
        let tls = match &self.tls {
            None => None,
            Some(t) => {
                let file = |key: &str, v: &str| {
                    let v = v.trim();
                    if v.is_empty() { Err(invalid(key, "must name a PEM file".into())) } else { Ok(PathBuf::from(v)) }
                };
                Some(TlsSettings {
                    cert_file: file("http.tls.cert_file", &t.cert_file)?,
                    key_file: file("http.tls.key_file", &t.key_file)?,
                    client_auth: ClientAuth::None,
                    ca_file: None,
                    crl_files: Vec::new(),
                    use_identity_as_username: false,
                })
            }
        };
        let s = HttpSettings { enabled: self.enabled.0, bind, metrics: self.metrics.0, tls, password_file };
        if s.enabled {
            s.check_exposure().map_err(|reason| invalid("http.auth.password_file", reason))?;
        }
        Ok(s)
    }
}

impl HttpSettings {
    /// Refuses an endpoint other hosts can reach without authentication.
    ///
    /// # Errors
    /// Why, naming `http.bind`.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.password_file.is_none() && !self.bind.ip().is_loopback() {
            return Err(format!(
                "required when http.bind ({}) is not a loopback address: the metrics and the admin API would be \
                 open to the network",
                self.bind
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn an_endpoint_other_hosts_reach_needs_a_password_file() {
        let err = Config::from_toml("[http]\nbind = \"0.0.0.0:8081\"\n").unwrap_err();
        assert_eq!(err.key(), Some("http.auth.password_file"), "{err}");
        assert!(err.to_string().contains("not a loopback address"), "{err}");
        let ok =
            Config::from_toml("[http]\nbind = \"0.0.0.0:8081\"\n[http.auth]\npassword_file = \"/etc/p\"\n").unwrap();
        assert_eq!(ok.settings.http.password_file.as_deref(), Some(std::path::Path::new("/etc/p")));
        // Off, it may say anything.
        assert!(Config::from_toml("[http]\nenabled = false\nbind = \"0.0.0.0:8081\"\n").is_ok());
        let err = Config::from_toml("[http]\nbind = \"localhost\"\n").unwrap_err();
        assert_eq!(err.key(), Some("http.bind"));
        let err = Config::from_toml("[http.auth]\npassword_file = \" \"\n").unwrap_err();
        assert_eq!(err.key(), Some("http.auth.password_file"));
    }

    #[test]
    fn https_names_its_certificate_and_key() {
        let ok = Config::from_toml("[http.tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n").unwrap();
        let tls = ok.settings.http.tls.unwrap();
        assert_eq!((tls.cert_file.to_str(), tls.key_file.to_str()), (Some("/c.pem"), Some("/k.pem")));
        let err = Config::from_toml("[http.tls]\ncert_file = \"\"\nkey_file = \"/k.pem\"\n").unwrap_err();
        assert_eq!(err.key(), Some("http.tls.cert_file"), "{err}");
        assert!(Config::from_toml("[http.tls]\ncert_file = \"/c.pem\"\n").is_err());
    }
}
