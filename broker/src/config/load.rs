//! Layering the sources (embedded default, file, environment) and naming the key at fault in every error.

use std::collections::HashMap;
use std::path::Path;

use super::file::FileConfig;
use super::{Config, ConfigError, DEFAULT_CONFIG, ENV_PREFIX, ENV_SEPARATOR};

impl Config {
    /// Loads the embedded default, then the TOML file at `path` if given, then `BROKER__*` environment variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or variable at fault.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => {
                Some(std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })?)
            }
            None => None,
        };
        let name = path.map(|p| p.display().to_string());
        let file = name.as_deref().zip(text.as_deref());
        Self::from_sources(file, broker_env_vars())
    }

    /// Loads the embedded default, then `toml`; no environment variables. Handy in tests.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(("config", toml)), HashMap::new())
    }

    /// Loads the embedded default, then `file` (a name for messages and its TOML text), then the `BROKER__*`
    /// entries of `env` (other entries are ignored).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_sources(file: Option<(&str, &str)>, env: HashMap<String, String>) -> Result<Self, ConfigError> {
        use ::config::{Environment, File, FileFormat};
        let env_keys: HashMap<String, String> =
            env.keys().filter_map(|var| env_key(var).map(|key| (key, var.clone()))).collect();
        let mut builder = ::config::Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml));
        if let Some((_, text)) = file {
            builder = builder.add_source(File::from_str(text, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(env.into_iter().collect())),
        );
        let origin = file.map_or("default config", |(name, _)| name);
        let parsed = builder
            .build()
            .and_then(|c| c.try_deserialize::<FileConfig>())
            .map_err(|e| from_config_error(e, origin))
            .and_then(FileConfig::validate);
        parsed.map_err(|e| match e {
            ConfigError::Invalid { key, reason, env: None } => {
                let env = env_keys.get(&key).cloned();
                ConfigError::Invalid { key, reason, env }
            }
            other => other,
        })
    }
}

/// The `BROKER__*` variables of the process environment.
fn broker_env_vars() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| env_key(k).is_some())
        .collect()
}

/// `BROKER__LIMITS__MAX_CONNECTIONS` -> `limits.max_connections`, the way the `config` crate maps it.
fn env_key(var: &str) -> Option<String> {
    let lower = var.to_lowercase();
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    let rest = lower.strip_prefix(&prefix)?;
    Some(rest.replace(ENV_SEPARATOR, "."))
}

/// Turns the `config` crate's errors into ours, keeping the key path.
fn from_config_error(e: ::config::ConfigError, origin: &str) -> ConfigError {
    use ::config::ConfigError as E;
    match e {
        E::FileParse { cause, .. } => {
            ConfigError::Syntax { origin: origin.to_owned(), message: one_line(&cause.to_string()) }
        }
        E::Type { unexpected, expected, key, .. } => {
            ConfigError::invalid(key.unwrap_or_default(), format!("expected {expected}, found {unexpected}"))
        }
        E::At { error, key, .. } => {
            let inner = from_config_error(*error, origin);
            match (key, inner) {
                (Some(outer), ConfigError::Invalid { key, reason, env }) => {
                    ConfigError::Invalid { key: join_key(&outer, &key), reason, env }
                }
                (_, inner) => inner,
            }
        }
        other => {
            let message = other.to_string();
            // serde's words for a key the struct does not have: "unknown field `x`, expected one of ...".
            match message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')) {
                Some((field, rest)) => {
                    let expected = rest.trim_start_matches(", ");
                    ConfigError::invalid(field, format!("unknown key ({expected})"))
                }
                None => ConfigError::invalid("", message),
            }
        }
    }
}

pub(super) fn join_key(outer: &str, inner: &str) -> String {
    let joined = match (outer.is_empty(), inner.is_empty()) {
        (_, true) => outer.to_owned(),
        (true, false) => inner.to_owned(),
        (false, false) if inner.starts_with('[') => format!("{outer}{inner}"),
        (false, false) => format!("{outer}.{inner}"),
    };
    // The config crate writes an index followed by a key as `[0]tls`; we write `[0].tls`.
    let mut out = String::with_capacity(joined.len() + 2);
    let mut after_index = false;
    for c in joined.chars() {
        if after_index && c != '.' && c != '[' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}

/// TOML parser messages span several lines with a source excerpt; keep the position and the reason.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
        _ => message.trim().to_owned(),
    }
}
