//! The `[persistence]` section: its file form and its validated settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Bool, ConfigError, Int};
use crate::journal::FsyncMode;

/// When the journal is fsynced, and so when an acknowledgement may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncSetting {
    /// After every group of records: nothing acknowledged is lost, also on power loss.
    Always,
    /// Every interval; acknowledgements go out once the records are written to the operating system. A crash of
    /// the broker loses nothing; power loss loses at most about the interval.
    Interval(Duration),
    /// Never (the operating system writes back when it likes); a crash of the broker loses nothing, power loss
    /// loses what the kernel had not written.
    Never,
}

impl FsyncSetting {
    /// The journal's mode.
    pub fn mode(self) -> FsyncMode {
        match self {
            Self::Always => FsyncMode::Always,
            Self::Interval(d) => FsyncMode::Interval(d),
            Self::Never => FsyncMode::Never,
        }
    }
}

/// Validated `[persistence]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceSettings {
    /// Whether sessions, queues and retained messages are journaled. Off in code ([`Default`]); the embedded
    /// default configuration turns it on.
    pub enabled: bool,
    /// The journal's directory.
    pub path: PathBuf,
    /// When the journal is fsynced.
    pub fsync: FsyncSetting,
    /// Bound on the journal's files; past it, messages for persistent sessions and retained messages are refused
    /// (MQTT 5: `0x97`), counted and logged.
    pub max_bytes: u64,
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        Self { enabled: false, path: PathBuf::from("data"), fsync: FsyncSetting::Always, max_bytes: 1 << 30 }
    }
}

/// The file form of `[persistence]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePersistence {
    enabled: Bool,
    path: String,
    fsync: String,
    fsync_interval_ms: Int,
    max_bytes: Int,
}

impl Default for FilePersistence {
    fn default() -> Self {
        let s = PersistenceSettings::default();
        Self {
            enabled: Bool(s.enabled),
            path: s.path.display().to_string(),
            fsync: "always".to_owned(),
            fsync_interval_ms: Int(100),
            max_bytes: Int(i64::try_from(s.max_bytes).unwrap_or(i64::MAX)),
        }
    }
}

impl FilePersistence {
    /// Validates the section.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<PersistenceSettings, ConfigError> {
        let path = self.path.trim();
        if path.is_empty() {
            return Err(invalid("persistence.path", "must name a directory"));
        }
        let interval =
            u64::try_from(self.fsync_interval_ms.0).ok().filter(|ms| (1..=60_000).contains(ms)).ok_or_else(|| {
                invalid(
                    "persistence.fsync_interval_ms",
                    format!("must be between 1 and 60000 (got {})", self.fsync_interval_ms.0),
                )
            })?;
        let fsync = match self.fsync.trim() {
            "always" => FsyncSetting::Always,
            "interval" => FsyncSetting::Interval(Duration::from_millis(interval)),
            "never" => FsyncSetting::Never,
            other => {
                return Err(invalid(
                    "persistence.fsync",
                    format!("must be \"always\", \"interval\" or \"never\" (got {other:?})"),
                ));
            }
        };
        let max_bytes = u64::try_from(self.max_bytes.0).ok().filter(|b| *b >= 1 << 20).ok_or_else(|| {
            invalid("persistence.max_bytes", format!("must be at least 1048576 (got {})", self.max_bytes.0))
        })?;
        Ok(PersistenceSettings { enabled: self.enabled.0, path: PathBuf::from(path), fsync, max_bytes })
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), reason: reason.into(), env: None }
}
