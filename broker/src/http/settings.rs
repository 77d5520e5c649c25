//! The `[http]` section (`/metrics`, `/healthz`, `/readyz`): its file form and its validated settings.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::{Bool, ConfigError};

/// Validated `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Whether the broker serves HTTP. Off in code ([`Default`]); the embedded default configuration turns it on,
    /// on the loopback interface.
    pub enabled: bool,
    /// Address and port.
    pub bind: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { enabled: false, bind: SocketAddr::from(([127, 0, 0, 1], 8081)) }
    }
}

/// The file form of `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp {
    enabled: Bool,
    bind: String,
}

impl Default for FileHttp {
    fn default() -> Self {
        let s = HttpSettings::default();
        Self { enabled: Bool(s.enabled), bind: s.bind.to_string() }
    }
}

impl FileHttp {
    /// Validates the section.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<HttpSettings, ConfigError> {
        let bind = self.bind.trim().parse().map_err(|_| ConfigError::Invalid {
            key: "http.bind".to_owned(),
            reason: format!("not an IP address and port such as \"127.0.0.1:8081\" (got {:?})", self.bind),
            env: None,
        })?;
        Ok(HttpSettings { enabled: self.enabled.0, bind })
    }
}
