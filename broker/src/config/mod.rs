//! Settings: what the broker runs with, validated once.
//!
//! `Settings::default()` is the embedded default configuration ([`DEFAULT_CONFIG`]): local only, anonymous; but
//! persistence, which the embedded configuration turns on, is off in code, so a library user chooses where data goes.
//!
//! [`Config::load`] layers three sources, later ones winning: the embedded default TOML, the user's TOML file,
//! then `BROKER__<SECTION>__<KEY>` environment variables. The merged tree is deserialized into private serde
//! structs that reject unknown keys, then validated once into [`Settings`] and [`LogSettings`]. Every error
//! names the key it is about, as in `limits.max_packet_size: must be between 16 and 268435460 (got 3)`.
//!
//! The module follows those steps: `settings` holds the validated types and their defaults (written once: the
//! file schema's defaults derive from them), `load` layers the sources, `file` is the schema they are read into,
//! and `validate` turns it into [`Settings`].

mod file;
mod load;
mod settings;
mod validate;

use std::path::PathBuf;

pub use crate::auth::AuthSettings;
pub use crate::auth::jwt::JwtSettings;
pub(crate) use file::{Bool, Int};
pub use settings::{
    ClientAuth, Limits, ListenerSettings, LogFormat, LogSettings, MAX_TOPIC_LEVELS, MqttSettings, SessionSettings,
    Settings, TlsSettings, Transport, check_anonymous,
};

/// The default configuration, commented; `broker --print-default-config` prints it.
///
/// It parses to [`Settings::default()`] (with `persistence.enabled`) and [`LogSettings::default()`].
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override the file, as in `BROKER__LIMITS__MAX_CONNECTIONS=500`.
pub const ENV_PREFIX: &str = "BROKER";

/// Separator between prefix, section and key in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Largest MQTT packet: a 268,435,455-byte Remaining Length plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;

/// Everything a configuration file sets: the broker's [`Settings`] and the binary's [`LogSettings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// What [`crate::run`] takes.
    pub settings: Settings,
    /// How the binary logs.
    pub log: LogSettings,
}

/// A configuration that cannot be used. The message names the file, key or variable at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, or its value has the wrong type or is out of range.
    #[error("{key}: {reason}{}", env.as_ref().map(|v| format!(" (set by {v})")).unwrap_or_default())]
    Invalid {
        /// Dotted path of the key, as in `limits.max_packet_size` or `listeners[0].bind`.
        key: String,
        /// What is wrong, with the value found.
        reason: String,
        /// The environment variable that set the value, if one did.
        env: Option<String>,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), reason: reason.into(), env: None }
    }

    /// The dotted key path this error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
