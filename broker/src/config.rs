//! Settings: what the broker runs with, validated once.
//!
//! `Settings::default()` is the embedded default configuration ([`DEFAULT_CONFIG`]): local only, anonymous; but
//! persistence, which the embedded configuration turns on, is off in code, so a library user chooses where data goes.
//!
//! [`Config::load`] layers three sources, later ones winning: the embedded default TOML, the user's TOML file,
//! then `BROKER__<SECTION>__<KEY>` environment variables. The merged tree is deserialized into private serde
//! structs that reject unknown keys, then validated once into [`Settings`] and [`LogSettings`]. Every error
//! names the key it is about, as in `limits.max_packet_size: must be between 16 and 268435460 (got 3)`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use mqtt_codec::QoS;

pub use crate::auth::AuthSettings;
pub use crate::auth::jwt::JwtSettings;
use crate::persist::{FilePersistence, PersistenceSettings};
use crate::router::SharedStrategy;

/// The default configuration, commented; `broker --print-default-config` prints it.
///
/// It parses to [`Settings::default()`] (with `persistence.enabled`) and [`LogSettings::default()`].
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override the file, as in `BROKER__LIMITS__MAX_CONNECTIONS=500`.
pub const ENV_PREFIX: &str = "BROKER";

/// Separator between prefix, section and key in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Largest MQTT packet: a 268,435,455-byte Remaining Length plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;

/// Validated settings the broker runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where to listen. `main` binds these; [`crate::run`] takes the bound sockets.
    pub listeners: Vec<ListenerSettings>,
    /// Limits that protect the broker and its clients.
    pub limits: Limits,
    /// Session behaviour.
    pub sessions: SessionSettings,
    /// Protocol features offered (advertised to MQTT 5 clients in CONNACK, enforced for every version).
    pub mqtt: MqttSettings,
    /// Crash-safe persistence: off in code, on in the embedded default configuration.
    pub persistence: PersistenceSettings,
    /// `/metrics`, `/healthz` and `/readyz` over HTTP: off in code, on (loopback only) in the embedded default.
    pub http: crate::http::HttpSettings,
    /// How often the `$SYS` tree is published (`sys_interval`); `None` (0): never. Off in code, 10 s in the
    /// embedded default (Mosquitto's).
    pub sys_interval: Option<Duration>,
    /// Bridges to upstream brokers (`[[bridges]]`, see [`crate::bridge`]).
    pub bridges: Vec<crate::bridge::BridgeSettings>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Address and port.
    pub bind: SocketAddr,
    /// Connections this listener accepts at once (within `limits.max_connections`).
    pub max_connections: Option<usize>,
    /// MQTT straight over the stream, or inside WebSocket binary frames.
    pub transport: Transport,
    /// TLS on this listener (`mqtts`, `wss`); `None` is plaintext.
    pub tls: Option<TlsSettings>,
    /// Who may connect and what they may do: `allow_anonymous`, `password_file`, `acl_file`.
    pub auth: AuthSettings,
}

impl ListenerSettings {
    /// A plaintext MQTT listener on `bind` with no cap of its own and no authentication (anonymous clients are then
    /// allowed on a loopback address only).
    pub fn plain(bind: SocketAddr) -> Self {
        Self { bind, max_connections: None, transport: Transport::Mqtt, tls: None, auth: AuthSettings::default() }
    }

    /// Whether clients connect as a user: a password file, JWTs, or certificate identities.
    pub fn authenticates(&self) -> bool {
        self.auth.password_file.is_some()
            || self.auth.jwt.is_some()
            || self.tls.as_ref().is_some_and(|t| t.use_identity_as_username)
    }
}

/// What a listener speaks above TCP (or TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// MQTT packets directly on the stream.
    Mqtt,
    /// An HTTP upgrade to WebSocket on `path` (subprotocol `mqtt`), then MQTT in binary frames.
    WebSocket {
        /// Request path accepted for the upgrade, such as `/mqtt`.
        path: String,
    },
}

/// Whether a TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A certificate is requested; one that is sent must chain to the CA bundle, none is also accepted.
    Optional,
    /// A certificate chaining to the CA bundle is required.
    Required,
}

/// TLS settings of one listener. The files are read at start and again when they change (or on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// PEM CA bundle that client certificates must chain to; required unless `client_auth` is `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate revocation lists checked against client certificates.
    pub crl_files: Vec<PathBuf>,
    /// A verified client certificate's subject CN (or first DNS/e-mail/URI SAN) becomes the client's identity.
    pub use_identity_as_username: bool,
}

/// Limits with sane defaults for an edge box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections the broker holds at once, over all listeners.
    pub max_connections: usize,
    /// Largest packet accepted, fixed header included.
    pub max_packet_size: u32,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Outbound QoS 1/2 messages in flight per session (sent, not yet acknowledged).
    pub max_inflight_messages: u16,
    /// Messages waiting per session behind the in-flight window.
    pub max_queued_messages: usize,
    /// Bytes (topic, payload and properties) waiting per session behind the in-flight window.
    pub max_queued_bytes: usize,
    /// Retained messages held by the broker.
    pub max_retained_messages: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
    /// Topic filters one SUBSCRIBE packet may carry; more close the connection.
    pub max_filters_per_subscribe: usize,
    /// Largest packet accepted before the connection is accepted (CONNECT, and MQTT 5 AUTH during CONNECT).
    pub max_connect_packet_size: u32,
    /// Connections between TCP accept and an accepted CONNECT (TLS, WebSocket upgrade, CONNECT) at once.
    pub max_pending_handshakes: usize,
    /// Connections one source address (IPv4 address, IPv6 /64) may hold at once; 0: no limit.
    pub max_connections_per_address: usize,
    /// New connections one source address may open per second; 0: no limit.
    pub max_connection_rate_per_address: u32,
    /// Apply the per-address limits to loopback addresses too.
    pub per_address_limits_on_loopback: bool,
    /// Sessions held at once (connected and offline); 0: no limit.
    pub max_sessions: usize,
    /// Bytes of retained messages held; 0: no limit.
    pub max_retained_bytes: usize,
    /// Delayed wills waiting at once; 0: no limit.
    pub max_pending_wills: usize,
    /// Bytes of messages the broker holds (queued, in flight, retained) over all sessions; 0: no limit.
    pub max_message_memory: usize,
    /// Disconnect a connected client whose queue overflows, instead of only dropping messages for it.
    pub disconnect_slow_consumers: bool,
}

/// Session behaviour. The defaults are Mosquitto's: no offline QoS 0 queueing, no keep alive cap, sessions kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0_offline: bool,
    /// Largest keep alive granted (MQTT 5 Server Keep Alive); 0 means the client's value is kept.
    pub max_keepalive: u16,
    /// Seconds a connection whose client asked for keep alive 0 may go without a packet (MQTT 5 clients are given
    /// it as Server Keep Alive); 0: forever.
    pub idle_timeout_secs: u16,
    /// How long an offline MQTT 3.x persistent session is kept; `None` keeps it forever.
    pub persistent_session_expiry: Option<Duration>,
}

/// Protocol features: what the broker offers and enforces. MQTT 5 clients learn them from CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Retained messages accepted.
    pub retain_available: bool,
    /// Highest QoS accepted from publishers.
    pub maximum_qos: QoS,
    /// Subscriptions with `+` and `#` accepted.
    pub wildcard_subscriptions: bool,
    /// MQTT 5 Subscription Identifiers accepted.
    pub subscription_identifiers: bool,
    /// Shared subscriptions (`$share/{group}/{filter}`) accepted.
    pub shared_subscriptions: bool,
    /// How a shared subscription group picks the member that gets a message.
    pub shared_subscription_strategy: SharedStrategy,
    /// Inbound QoS 1/2 publications a client may have unacknowledged (MQTT 5 Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases an MQTT 5 client may use towards the broker; also bounds the broker's aliases towards it.
    pub topic_alias_maximum: u16,
    /// Whether the broker uses topic aliases towards MQTT 5 clients that allow them.
    pub server_topic_aliases: bool,
    /// Largest MQTT 5 Session Expiry Interval granted; `None` lets clients ask for "never".
    pub max_session_expiry: Option<Duration>,
    /// Prefix of the Response Information sent to MQTT 5 clients that ask for it (`{prefix}/{client id}`).
    pub response_information: Option<String>,
    /// Most levels a topic name or filter may have (at most [`MAX_TOPIC_LEVELS`]).
    pub max_topic_levels: usize,
}

/// The highest `mqtt.max_topic_levels` accepted, and its default: five times Mosquitto's 200 separators. Matching a
/// topic recurses once per level; at this depth it takes under 768 KiB of stack in a debug build (the session test
/// `a_topic_at_the_most_levels_allowed_is_matched_on_a_small_stack`), well inside a tokio worker's 2 MiB.
pub const MAX_TOPIC_LEVELS: usize = 1024;

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            retain_available: true,
            maximum_qos: QoS::ExactlyOnce,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
            shared_subscription_strategy: SharedStrategy::RoundRobin,
            receive_maximum: 1024,
            topic_alias_maximum: 32,
            server_topic_aliases: true,
            max_session_expiry: None,
            response_information: None,
            max_topic_levels: MAX_TOPIC_LEVELS,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listeners: vec![ListenerSettings::plain(SocketAddr::from(([127, 0, 0, 1], 1883)))],
            limits: Limits::default(),
            sessions: SessionSettings::default(),
            mqtt: MqttSettings::default(),
            persistence: PersistenceSettings::default(),
            http: crate::http::HttpSettings::default(),
            sys_interval: None,
            bridges: Vec::new(),
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self { queue_qos0_offline: false, max_keepalive: 0, idle_timeout_secs: 600, persistent_session_expiry: None }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_packet_size: 2 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_inflight_messages: 32,
            max_queued_messages: 1_000,
            max_queued_bytes: 8 * 1024 * 1024,
            max_retained_messages: 100_000,
            max_subscriptions_per_client: 1_000,
            max_filters_per_subscribe: 1_000,
            max_connect_packet_size: 64 * 1024,
            max_pending_handshakes: 512,
            max_connections_per_address: 1_000,
            max_connection_rate_per_address: 100,
            per_address_limits_on_loopback: false,
            max_sessions: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_pending_wills: 10_000,
            max_message_memory: 256 * 1024 * 1024,
            disconnect_slow_consumers: false,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event, fields as `key=value`.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Log output settings; the binary installs the subscriber, the library only emits `tracing` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directives (`EnvFilter` syntax) used when `RUST_LOG` is not set.
    pub level: String,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("must be \"text\" or \"json\" (got {s:?})")),
        }
    }
}

impl LogFormat {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

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

fn join_key(outer: &str, inner: &str) -> String {
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

/// The file form: what TOML and the environment may say, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    sys_interval: Int,
    listeners: Vec<FileListener>,
    limits: FileLimits,
    sessions: FileSessions,
    mqtt: FileMqtt,
    persistence: FilePersistence,
    http: crate::http::FileHttp,
    log: FileLog,
    bridges: Vec<crate::bridge::FileBridge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    bind: String,
    #[serde(default)]
    max_connections: Option<Int>,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    tls: Option<FileTls>,
    #[serde(default)]
    allow_anonymous: Option<Bool>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    acl_file: Option<String>,
    #[serde(default)]
    jwt: Option<FileJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    public_key_files: Vec<String>,
    audience: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    username_claim: Option<String>,
    #[serde(default)]
    leeway_secs: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    crl_files: Vec<String>,
    #[serde(default)]
    use_identity_as_username: Option<Bool>,
}

impl FileListener {
    fn validate_auth(&self, i: usize) -> Result<AuthSettings, ConfigError> {
        let file = |k: &str, v: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some("") => Err(ConfigError::invalid(format!("listeners[{i}].{k}"), "must name a file")),
                Some(p) => Ok(Some(PathBuf::from(p))),
            }
        };
        let jwt = match &self.jwt {
            None => None,
            Some(j) => {
                let key = |k: &str| format!("listeners[{i}].jwt.{k}");
                if j.public_key_files.is_empty() {
                    return Err(ConfigError::invalid(key("public_key_files"), "needs at least one PEM public key"));
                }
                if j.public_key_files.iter().any(|f| f.trim().is_empty()) {
                    return Err(ConfigError::invalid(key("public_key_files"), "must name files"));
                }
                if j.audience.trim().is_empty() {
                    return Err(ConfigError::invalid(key("audience"), "must name the audience tokens are for"));
                }
                let username_claim = j.username_claim.as_deref().map_or("sub", str::trim).to_owned();
                if username_claim.is_empty() {
                    return Err(ConfigError::invalid(key("username_claim"), "must name a claim, such as \"sub\""));
                }
                Some(JwtSettings {
                    public_key_files: j.public_key_files.iter().map(|f| PathBuf::from(f.trim())).collect(),
                    audience: j.audience.trim().to_owned(),
                    issuer: j.issuer.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned),
                    username_claim,
                    leeway_secs: match j.leeway_secs {
                        Some(v) => ranged(&key("leeway_secs"), v, 0, 3600)?,
                        None => 60,
                    },
                })
            }
        };
        Ok(AuthSettings {
            allow_anonymous: self.allow_anonymous.map(|b| b.0),
            password_file: file("password_file", &self.password_file)?,
            acl_file: file("acl_file", &self.acl_file)?,
            jwt,
        })
    }

    fn validate(&self, i: usize) -> Result<(Transport, Option<TlsSettings>), ConfigError> {
        let key = |k: &str| format!("listeners[{i}].{k}");
        let transport = match self.transport.as_deref().map(str::trim) {
            None | Some("mqtt") => {
                if self.path.is_some() {
                    return Err(ConfigError::invalid(key("path"), "only a \"websocket\" listener has a path"));
                }
                Transport::Mqtt
            }
            Some("websocket") => {
                let path = self.path.as_deref().unwrap_or("/mqtt").trim();
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        key("path"),
                        format!("must start with / and have no spaces, as in \"/mqtt\" (got {path:?})"),
                    ));
                }
                Transport::WebSocket { path: path.to_owned() }
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    key("transport"),
                    format!("must be \"mqtt\" or \"websocket\" (got {other:?})"),
                ));
            }
        };
        let Some(t) = &self.tls else { return Ok((transport, None)) };
        let file = |k: &str, v: &str| -> Result<PathBuf, ConfigError> {
            let v = v.trim();
            if v.is_empty() {
                return Err(ConfigError::invalid(key(&format!("tls.{k}")), "must name a PEM file"));
            }
            Ok(PathBuf::from(v))
        };
        let client_auth = match t.client_auth.as_deref().map(str::trim) {
            None | Some("none") => ClientAuth::None,
            Some("optional") => ClientAuth::Optional,
            Some("required") => ClientAuth::Required,
            Some(other) => {
                return Err(ConfigError::invalid(
                    key("tls.client_auth"),
                    format!("must be \"none\", \"optional\" or \"required\" (got {other:?})"),
                ));
            }
        };
        let ca_file = t.ca_file.as_deref().map(|v| file("ca_file", v)).transpose()?;
        if client_auth != ClientAuth::None && ca_file.is_none() {
            return Err(ConfigError::invalid(
                key("tls.ca_file"),
                "is needed when client_auth is \"optional\" or \"required\"",
            ));
        }
        let use_identity_as_username = t.use_identity_as_username.is_some_and(|b| b.0);
        if use_identity_as_username && client_auth == ClientAuth::None {
            return Err(ConfigError::invalid(
                key("tls.use_identity_as_username"),
                "needs client_auth \"optional\" or \"required\"",
            ));
        }
        let crl_files = t.crl_files.iter().map(|v| file("crl_files", v)).collect::<Result<Vec<_>, _>>()?;
        let tls = TlsSettings {
            cert_file: file("cert_file", &t.cert_file)?,
            key_file: file("key_file", &t.key_file)?,
            client_auth,
            ca_file,
            crl_files,
            use_identity_as_username,
        };
        Ok((transport, Some(tls)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLimits {
    max_connections: Int,
    max_packet_size: Int,
    connect_timeout_secs: Int,
    max_inflight_messages: Int,
    max_queued_messages: Int,
    max_queued_bytes: Int,
    max_retained_messages: Int,
    max_subscriptions_per_client: Int,
    max_filters_per_subscribe: Int,
    max_connect_packet_size: Int,
    max_pending_handshakes: Int,
    max_connections_per_address: Int,
    max_connection_rate_per_address: Int,
    per_address_limits_on_loopback: Bool,
    max_sessions: Int,
    max_retained_bytes: Int,
    max_pending_wills: Int,
    max_message_memory: Int,
    disconnect_slow_consumers: Bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSessions {
    queue_qos0_offline: Bool,
    max_keepalive: Int,
    idle_timeout_secs: Int,
    persistent_session_expiry_secs: Int,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileMqtt {
    retain_available: Bool,
    maximum_qos: Int,
    wildcard_subscriptions: Bool,
    subscription_identifiers: Bool,
    shared_subscriptions: Bool,
    shared_subscription_strategy: String,
    receive_maximum: Int,
    topic_alias_maximum: Int,
    server_topic_aliases: Bool,
    max_session_expiry_secs: Int,
    response_information: String,
    max_topic_levels: Int,
}

impl Default for FileMqtt {
    fn default() -> Self {
        let m = MqttSettings::default();
        Self {
            retain_available: Bool(m.retain_available),
            maximum_qos: to_int(m.maximum_qos as u8),
            wildcard_subscriptions: Bool(m.wildcard_subscriptions),
            subscription_identifiers: Bool(m.subscription_identifiers),
            shared_subscriptions: Bool(m.shared_subscriptions),
            shared_subscription_strategy: strategy_name(m.shared_subscription_strategy).to_owned(),
            receive_maximum: to_int(m.receive_maximum),
            topic_alias_maximum: to_int(m.topic_alias_maximum),
            server_topic_aliases: Bool(m.server_topic_aliases),
            max_session_expiry_secs: to_int(m.max_session_expiry.map_or(0, |d| d.as_secs())),
            response_information: m.response_information.unwrap_or_default(),
            max_topic_levels: to_int(m.max_topic_levels),
        }
    }
}

fn strategy_name(s: SharedStrategy) -> &'static str {
    match s {
        SharedStrategy::RoundRobin => "round_robin",
        SharedStrategy::Random => "random",
    }
}

impl FileMqtt {
    fn validate(&self) -> Result<MqttSettings, ConfigError> {
        let maximum_qos = match ranged::<u8>("mqtt.maximum_qos", self.maximum_qos, 0, 2)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let shared_subscription_strategy = match self.shared_subscription_strategy.trim() {
            "round_robin" => SharedStrategy::RoundRobin,
            "random" => SharedStrategy::Random,
            other => {
                return Err(ConfigError::invalid(
                    "mqtt.shared_subscription_strategy",
                    format!("must be \"round_robin\" or \"random\" (got {other:?})"),
                ));
            }
        };
        let expiry = ranged::<u64>("mqtt.max_session_expiry_secs", self.max_session_expiry_secs, 0, u32::MAX.into())?;
        let info = self.response_information.trim();
        if info.contains(['+', '#', '\0']) {
            return Err(ConfigError::invalid(
                "mqtt.response_information",
                "must be usable as a topic prefix (no '+', '#' or NUL)",
            ));
        }
        Ok(MqttSettings {
            retain_available: self.retain_available.0,
            maximum_qos,
            wildcard_subscriptions: self.wildcard_subscriptions.0,
            subscription_identifiers: self.subscription_identifiers.0,
            shared_subscriptions: self.shared_subscriptions.0,
            shared_subscription_strategy,
            receive_maximum: ranged("mqtt.receive_maximum", self.receive_maximum, 1, u16::MAX)?,
            topic_alias_maximum: ranged("mqtt.topic_alias_maximum", self.topic_alias_maximum, 0, u16::MAX)?,
            server_topic_aliases: self.server_topic_aliases.0,
            max_session_expiry: (expiry > 0).then(|| Duration::from_secs(expiry)),
            response_information: (!info.is_empty()).then(|| info.to_owned()),
            max_topic_levels: ranged::<u64>("mqtt.max_topic_levels", self.max_topic_levels, 1, MAX_TOPIC_LEVELS as u64)
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX))?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLog {
    format: String,
    level: String,
}

/// An integer, also from a string (environment variables without `try_parsing`); a float is an error rather
/// than being rounded, which is what the `config` crate would do for an `i64` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim().parse().map(Int).map_err(|_| E::invalid_type(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` or `false`, also as a string; the `config` crate alone would take `3` or `"on"` as `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bool(pub(crate) bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Bool(true)),
                    "false" => Ok(Bool(false)),
                    _ => Err(E::invalid_type(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn to_int<T: TryInto<i64>>(v: T) -> Int {
    Int(v.try_into().unwrap_or(i64::MAX))
}

impl Default for FileConfig {
    fn default() -> Self {
        let s = Settings::default();
        let listeners = s
            .listeners
            .iter()
            .map(|l| FileListener {
                bind: l.bind.to_string(),
                max_connections: l.max_connections.map(to_int),
                transport: None,
                path: None,
                tls: None,
                allow_anonymous: None,
                password_file: None,
                acl_file: None,
                jwt: None,
            })
            .collect();
        Self {
            listeners,
            limits: FileLimits::default(),
            sessions: FileSessions::default(),
            mqtt: FileMqtt::default(),
            persistence: FilePersistence::default(),
            http: crate::http::FileHttp::default(),
            sys_interval: Int(0),
            log: FileLog::default(),
            bridges: Vec::new(),
        }
    }
}

impl Default for FileLimits {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_connections: to_int(l.max_connections),
            max_packet_size: to_int(l.max_packet_size),
            connect_timeout_secs: to_int(l.connect_timeout.as_secs()),
            max_inflight_messages: to_int(l.max_inflight_messages),
            max_queued_messages: to_int(l.max_queued_messages),
            max_queued_bytes: to_int(l.max_queued_bytes),
            max_retained_messages: to_int(l.max_retained_messages),
            max_subscriptions_per_client: to_int(l.max_subscriptions_per_client),
            max_filters_per_subscribe: to_int(l.max_filters_per_subscribe),
            max_connect_packet_size: to_int(l.max_connect_packet_size),
            max_pending_handshakes: to_int(l.max_pending_handshakes),
            max_connections_per_address: to_int(l.max_connections_per_address),
            max_connection_rate_per_address: to_int(l.max_connection_rate_per_address),
            per_address_limits_on_loopback: Bool(l.per_address_limits_on_loopback),
            max_sessions: to_int(l.max_sessions),
            max_retained_bytes: to_int(l.max_retained_bytes),
            max_pending_wills: to_int(l.max_pending_wills),
            max_message_memory: to_int(l.max_message_memory),
            disconnect_slow_consumers: Bool(l.disconnect_slow_consumers),
        }
    }
}

impl Default for FileSessions {
    fn default() -> Self {
        let s = SessionSettings::default();
        Self {
            queue_qos0_offline: Bool(s.queue_qos0_offline),
            max_keepalive: to_int(s.max_keepalive),
            idle_timeout_secs: to_int(s.idle_timeout_secs),
            persistent_session_expiry_secs: to_int(s.persistent_session_expiry.map_or(0, |d| d.as_secs())),
        }
    }
}

impl Default for FileLog {
    fn default() -> Self {
        let l = LogSettings::default();
        Self { format: l.format.as_str().to_owned(), level: l.level }
    }
}

/// Mosquitto 2's rule: a listener that other hosts can reach, with no way for clients to authenticate, does not
/// start unless it says `allow_anonymous = true`. Without it, anyone on the network could read and publish
/// everything.
///
/// # Errors
/// The reason, for the listener's key.
pub fn check_anonymous(l: &ListenerSettings) -> Result<(), String> {
    if l.bind.ip().is_loopback() || l.auth.allow_anonymous.is_some() || l.authenticates() {
        return Ok(());
    }
    Err(format!(
        "{} is not a loopback address and the listener has no password_file or tls.use_identity_as_username: \
         set allow_anonymous = true on it to let anyone connect, or configure authentication (docs/security.md)",
        l.bind
    ))
}

/// Largest connection cap: what a tokio semaphore can count.
const MAX_CONNECTIONS_LIMIT: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// `value` as a `T` within `min..=max`, or an error naming `key`.
fn ranged<T>(key: &str, Int(value): Int, min: T, max: T) -> Result<T, ConfigError>
where
    T: TryFrom<i64> + Into<i128> + Copy + std::fmt::Display,
{
    let ok = i128::from(value) >= min.into() && i128::from(value) <= max.into();
    match T::try_from(value) {
        Ok(v) if ok => Ok(v),
        _ => Err(ConfigError::invalid(key, format!("must be between {min} and {max} (got {value})"))),
    }
}

/// `value` as a `usize` of at least `min`, or an error naming `key`.
fn at_least(key: &str, Int(value): Int, min: usize) -> Result<usize, ConfigError> {
    match usize::try_from(value) {
        Ok(v) if v >= min => Ok(v),
        _ => Err(ConfigError::invalid(key, format!("must be at least {min} (got {value})"))),
    }
}

impl FileConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let l = &self.limits;
        let max_connections_limit = u64::try_from(MAX_CONNECTIONS_LIMIT).unwrap_or(u64::MAX);
        let conn_cap = |key: &str, v: Int| -> Result<usize, ConfigError> {
            let n = ranged::<u64>(key, v, 1, max_connections_limit)?;
            usize::try_from(n).map_err(|_| ConfigError::invalid(key, "too large"))
        };
        let limits = Limits {
            max_connections: conn_cap("limits.max_connections", l.max_connections)?,
            max_packet_size: ranged("limits.max_packet_size", l.max_packet_size, 16, MAX_PACKET_SIZE_LIMIT)?,
            connect_timeout: Duration::from_secs(ranged(
                "limits.connect_timeout_secs",
                l.connect_timeout_secs,
                1,
                3600,
            )?),
            max_inflight_messages: ranged("limits.max_inflight_messages", l.max_inflight_messages, 1, u16::MAX)?,
            max_queued_messages: at_least("limits.max_queued_messages", l.max_queued_messages, 1)?,
            max_queued_bytes: at_least("limits.max_queued_bytes", l.max_queued_bytes, 1)?,
            max_retained_messages: at_least("limits.max_retained_messages", l.max_retained_messages, 0)?,
            max_subscriptions_per_client: at_least(
                "limits.max_subscriptions_per_client",
                l.max_subscriptions_per_client,
                1,
            )?,
            max_filters_per_subscribe: at_least("limits.max_filters_per_subscribe", l.max_filters_per_subscribe, 1)?,
            max_connect_packet_size: ranged(
                "limits.max_connect_packet_size",
                l.max_connect_packet_size,
                16,
                MAX_PACKET_SIZE_LIMIT,
            )?,
            max_pending_handshakes: conn_cap("limits.max_pending_handshakes", l.max_pending_handshakes)?,
            max_connections_per_address: at_least(
                "limits.max_connections_per_address",
                l.max_connections_per_address,
                0,
            )?,
            max_connection_rate_per_address: ranged(
                "limits.max_connection_rate_per_address",
                l.max_connection_rate_per_address,
                0,
                u32::MAX,
            )?,
            per_address_limits_on_loopback: l.per_address_limits_on_loopback.0,
            max_sessions: at_least("limits.max_sessions", l.max_sessions, 0)?,
            max_retained_bytes: at_least("limits.max_retained_bytes", l.max_retained_bytes, 0)?,
            max_pending_wills: at_least("limits.max_pending_wills", l.max_pending_wills, 0)?,
            max_message_memory: at_least("limits.max_message_memory", l.max_message_memory, 0)?,
            disconnect_slow_consumers: l.disconnect_slow_consumers.0,
        };
        // A message bigger than the whole queue could never be delivered; refuse that setup up front.
        let packet = usize::try_from(limits.max_packet_size).unwrap_or(usize::MAX);
        if limits.max_queued_bytes < packet {
            return Err(ConfigError::invalid(
                "limits.max_queued_bytes",
                format!(
                    "must be at least limits.max_packet_size ({packet}) so that the largest message fits (got {})",
                    limits.max_queued_bytes
                ),
            ));
        }

        if self.listeners.is_empty() {
            return Err(ConfigError::invalid("listeners", "at least one listener is needed"));
        }
        let mut listeners: Vec<ListenerSettings> = Vec::with_capacity(self.listeners.len());
        for (i, l) in self.listeners.iter().enumerate() {
            let key = format!("listeners[{i}].bind");
            let bind: SocketAddr = l.bind.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    &key,
                    format!(
                        "not an IP address and port such as \"127.0.0.1:1883\" or \"[::]:1883\" (got {:?})",
                        l.bind
                    ),
                )
            })?;
            if let Some(j) = listeners.iter().position(|o| o.bind == bind && bind.port() != 0) {
                return Err(ConfigError::invalid(&key, format!("{bind} is already listeners[{j}].bind")));
            }
            let max_connections = match l.max_connections {
                Some(v) => Some(conn_cap(&format!("listeners[{i}].max_connections"), v)?),
                None => None,
            };
            let (transport, tls) = l.validate(i)?;
            let auth = l.validate_auth(i)?;
            let listener = ListenerSettings { bind, max_connections, transport, tls, auth };
            check_anonymous(&listener).map_err(|reason| ConfigError::invalid(format!("listeners[{i}]"), reason))?;
            listeners.push(listener);
        }

        let s = &self.sessions;
        let expiry = ranged::<u64>(
            "sessions.persistent_session_expiry_secs",
            s.persistent_session_expiry_secs,
            0,
            u32::MAX.into(),
        )?;
        let sessions = SessionSettings {
            queue_qos0_offline: s.queue_qos0_offline.0,
            max_keepalive: ranged("sessions.max_keepalive", s.max_keepalive, 0, u16::MAX)?,
            idle_timeout_secs: ranged("sessions.idle_timeout_secs", s.idle_timeout_secs, 0, u16::MAX)?,
            persistent_session_expiry: (expiry > 0).then(|| Duration::from_secs(expiry)),
        };

        let mqtt = self.mqtt.validate()?;
        let persistence = self.persistence.validate()?;
        let http = self.http.validate()?;
        let sys = ranged::<u64>("sys_interval", self.sys_interval, 0, 86_400)?;
        let sys_interval = (sys > 0).then(|| Duration::from_secs(sys));
        let bridges = crate::bridge::validate(&self.bridges).map_err(|(key, why)| ConfigError::invalid(key, why))?;

        let level = self.log.level.trim();
        if level.is_empty() {
            return Err(ConfigError::invalid("log.level", "must not be empty (for example \"info\")"));
        }
        let format = self.log.format.parse().map_err(|reason| ConfigError::invalid("log.format", reason))?;
        let log = LogSettings { format, level: level.to_owned() };
        let settings = Settings { listeners, limits, sessions, mqtt, persistence, http, sys_interval, bridges };
        Ok(Config { settings, log })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn err(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    /// Every leaf key of a TOML text, dotted (`limits.max_connections`, `listeners.bind`).
    fn leaf_keys(toml: &str) -> Vec<String> {
        fn walk(prefix: &str, v: &::config::Value, out: &mut Vec<String>) {
            match &v.kind {
                ::config::ValueKind::Table(t) => {
                    for (k, v) in t {
                        walk(&join_key(prefix, k), v, out);
                    }
                }
                ::config::ValueKind::Array(a) => a.iter().for_each(|v| walk(prefix, v, out)),
                _ => out.push(prefix.to_owned()),
            }
        }
        let c = ::config::Config::builder()
            .add_source(::config::File::from_str(toml, ::config::FileFormat::Toml))
            .build()
            .unwrap();
        let mut out = Vec::new();
        walk("", &c.cache, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// The embedded default configuration: [`Settings::default`] with persistence on.
    fn embedded_default() -> Config {
        let mut c = Config::default();
        c.settings.persistence.enabled = true;
        c.settings.http.enabled = true;
        c.settings.sys_interval = Some(Duration::from_secs(10));
        c
    }

    #[test]
    fn default_toml_is_exactly_the_default_settings_with_persistence_on() {
        let c = Config::from_sources(None, HashMap::new()).unwrap();
        assert_eq!(c.settings, embedded_default().settings);
        assert_eq!(c.log, LogSettings::default());
        // The default TOML spells out every key rather than leaning on serde defaults.
        let keys = leaf_keys(DEFAULT_CONFIG);
        let want = [
            "http.bind",
            "http.enabled",
            "http.metrics",
            "limits.connect_timeout_secs",
            "limits.disconnect_slow_consumers",
            "limits.max_connect_packet_size",
            "limits.max_connection_rate_per_address",
            "limits.max_connections",
            "limits.max_connections_per_address",
            "limits.max_filters_per_subscribe",
            "limits.max_inflight_messages",
            "limits.max_message_memory",
            "limits.max_packet_size",
            "limits.max_pending_handshakes",
            "limits.max_pending_wills",
            "limits.max_queued_bytes",
            "limits.max_queued_messages",
            "limits.max_retained_bytes",
            "limits.max_retained_messages",
            "limits.max_sessions",
            "limits.max_subscriptions_per_client",
            "limits.per_address_limits_on_loopback",
            "listeners.bind",
            "log.format",
            "log.level",
            "mqtt.max_session_expiry_secs",
            "mqtt.max_topic_levels",
            "mqtt.maximum_qos",
            "mqtt.receive_maximum",
            "mqtt.response_information",
            "mqtt.retain_available",
            "mqtt.server_topic_aliases",
            "mqtt.shared_subscription_strategy",
            "mqtt.shared_subscriptions",
            "mqtt.subscription_identifiers",
            "mqtt.topic_alias_maximum",
            "mqtt.wildcard_subscriptions",
            "persistence.enabled",
            "persistence.fsync",
            "persistence.fsync_interval_ms",
            "persistence.max_bytes",
            "persistence.path",
            "sessions.idle_timeout_secs",
            "sessions.max_keepalive",
            "sessions.persistent_session_expiry_secs",
            "sessions.queue_qos0_offline",
            "sys_interval",
        ];
        assert_eq!(keys, want);
        // And those values are the defaults: the file form parsed alone gives the same settings.
        let alone: FileConfig = ::config::Config::builder()
            .add_source(::config::File::from_str(DEFAULT_CONFIG, ::config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(alone.validate().unwrap(), embedded_default());
    }

    #[test]
    fn mqtt_section_is_validated_and_applied() {
        let c = Config::from_toml(
            "[mqtt]\nmaximum_qos = 1\nshared_subscription_strategy = \"random\"\nmax_session_expiry_secs = 60\nresponse_information = \"resp\"",
        )
        .unwrap();
        assert_eq!(c.settings.mqtt.maximum_qos, QoS::AtLeastOnce);
        assert_eq!(c.settings.mqtt.shared_subscription_strategy, SharedStrategy::Random);
        assert_eq!(c.settings.mqtt.max_session_expiry, Some(Duration::from_secs(60)));
        assert_eq!(c.settings.mqtt.response_information.as_deref(), Some("resp"));
        for (toml, key) in [
            ("[mqtt]\nmaximum_qos = 3", "mqtt.maximum_qos"),
            ("[mqtt]\nshared_subscription_strategy = \"first\"", "mqtt.shared_subscription_strategy"),
            ("[mqtt]\nreceive_maximum = 0", "mqtt.receive_maximum"),
            ("[mqtt]\nresponse_information = \"a/#\"", "mqtt.response_information"),
            ("[mqtt]\nmax_topic_levels = 0", "mqtt.max_topic_levels"),
            ("[mqtt]\nmax_topic_levels = 1025", "mqtt.max_topic_levels"),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert_eq!(err.key(), Some(key), "{toml}: {err}");
        }
    }

    #[test]
    fn docs_describe_every_key_of_the_default_config() {
        let docs = include_str!("../../docs/configuration.md");
        for key in leaf_keys(DEFAULT_CONFIG) {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(docs.contains(&format!("`{leaf}`")), "docs/configuration.md does not describe {key}");
        }
        // The commented-out listener key too.
        assert!(docs.contains("`max_connections`"));
    }

    #[test]
    fn a_file_changes_only_the_keys_it_sets() {
        let c =
            Config::from_toml("[limits]\nmax_inflight_messages = 8\n[sessions]\nqueue_qos0_offline = true\n").unwrap();
        let mut want = embedded_default();
        want.settings.limits.max_inflight_messages = 8;
        want.settings.sessions.queue_qos0_offline = true;
        assert_eq!(c, want);
    }

    #[test]
    fn websocket_and_tls_listeners() {
        let c = Config::from_toml(
            "[[listeners]]\nbind = \"127.0.0.1:8083\"\ntransport = \"websocket\"\n\
             [[listeners]]\nbind = \"127.0.0.1:8884\"\ntransport = \"websocket\"\npath = \"/ws\"\n\
             [listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
             [[listeners]]\nbind = \"0.0.0.0:8883\"\n[listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
             client_auth = \"required\"\nca_file = \"ca.pem\"\ncrl_files = [\"ca.crl\"]\n\
             use_identity_as_username = true\n",
        )
        .unwrap();
        let l = &c.settings.listeners;
        assert_eq!(l[0].transport, Transport::WebSocket { path: "/mqtt".into() });
        assert_eq!(l[0].tls, None);
        assert_eq!(l[1].transport, Transport::WebSocket { path: "/ws".into() });
        let tls = l[1].tls.as_ref().unwrap();
        assert_eq!((tls.client_auth, tls.ca_file.as_ref()), (ClientAuth::None, None));
        assert_eq!(l[2].transport, Transport::Mqtt);
        assert_eq!(
            l[2].tls,
            Some(TlsSettings {
                cert_file: "s.pem".into(),
                key_file: "s.key".into(),
                client_auth: ClientAuth::Required,
                ca_file: Some("ca.pem".into()),
                crl_files: vec!["ca.crl".into()],
                use_identity_as_username: true,
            })
        );
    }

    #[test]
    fn bad_listener_transport_and_tls_keys_are_named() {
        let tls = "[listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n";
        let cases = [
            ("transport = \"quic\"\n", "listeners[0].transport: must be \"mqtt\" or \"websocket\" (got \"quic\")"),
            ("path = \"/x\"\n", "listeners[0].path: only a \"websocket\" listener has a path"),
            ("transport = \"websocket\"\npath = \"mqtt\"\n", "listeners[0].path: must start with /"),
            (&format!("{tls}client_auth = \"maybe\"\n"), "listeners[0].tls.client_auth: must be \"none\""),
            (&format!("{tls}client_auth = \"required\"\n"), "listeners[0].tls.ca_file: is needed when"),
            (&format!("{tls}use_identity_as_username = true\n"), "listeners[0].tls.use_identity_as_username: needs"),
            ("[listeners.tls]\ncert_file = \"\"\nkey_file = \"k\"\n", "listeners[0].tls.cert_file: must name"),
            (&format!("{tls}verify = true\n"), "listeners[0].tls.verify: unknown key"),
        ];
        for (extra, want) in cases {
            let got = err(&format!("[[listeners]]\nbind = \"127.0.0.1:1\"\n{extra}"));
            assert!(got.starts_with(want), "{extra:?}: got {got:?}, want {want:?}");
        }
        let missing = err("[[listeners]]\nbind = \"127.0.0.1:1\"\n[listeners.tls]\ncert_file = \"s.pem\"\n");
        assert!(missing.contains("missing") && missing.contains("tls.key_file"), "{missing}");
    }

    #[test]
    fn authentication_keys_per_listener() {
        let c = Config::from_toml(
            "[[listeners]]\nbind = \"0.0.0.0:1883\"\npassword_file = \"/etc/p\"\nacl_file = \"/etc/a\"\n\
             [[listeners]]\nbind = \"127.0.0.1:1884\"\nallow_anonymous = false\n\
             [listeners.jwt]\npublic_key_files = [\"k.pem\"]\naudience = \"gw\"\n",
        )
        .unwrap();
        let l = &c.settings.listeners;
        assert_eq!(l[0].auth.password_file.as_deref(), Some(Path::new("/etc/p")));
        assert_eq!(l[0].auth.acl_file.as_deref(), Some(Path::new("/etc/a")));
        assert_eq!(l[1].auth.allow_anonymous, Some(false));
        let jwt = l[1].auth.jwt.as_ref().unwrap();
        assert_eq!((jwt.audience.as_str(), jwt.username_claim.as_str(), jwt.leeway_secs), ("gw", "sub", 60));
        let bind = "[[listeners]]\nbind = \"127.0.0.1:1\"\n";
        for (extra, want) in [
            ("password_file = \" \"\n", "listeners[0].password_file: must name a file"),
            ("[listeners.jwt]\npublic_key_files = []\naudience = \"a\"\n", "listeners[0].jwt.public_key_files: needs"),
            ("[listeners.jwt]\npublic_key_files = [\"k\"]\naudience = \"\"\n", "listeners[0].jwt.audience: must"),
            (
                "[listeners.jwt]\npublic_key_files = [\"k\"]\naudience = \"a\"\nalg = \"HS256\"\n",
                "listeners[0].jwt.alg: unknown key",
            ),
        ] {
            let got = err(&format!("{bind}{extra}"));
            assert!(got.starts_with(want), "{extra:?}: got {got:?}");
        }
        // A listener other hosts can reach needs authentication or allow_anonymous.
        let open = err("[[listeners]]\nbind = \"0.0.0.0:1883\"\n");
        assert!(
            open.starts_with("listeners[0]: 0.0.0.0:1883 is not a loopback address")
                && open.contains("allow_anonymous = true"),
            "{open}"
        );
    }

    #[test]
    fn listeners_in_a_file_replace_the_default_listener() {
        let c = Config::from_toml(
            "[[listeners]]\nbind = \"0.0.0.0:1884\"\nmax_connections = 5\nallow_anonymous = true\n\
             [[listeners]]\nbind = \"[::1]:0\"\n",
        )
        .unwrap();
        assert_eq!(
            c.settings.listeners,
            vec![
                ListenerSettings {
                    max_connections: Some(5),
                    auth: AuthSettings { allow_anonymous: Some(true), ..AuthSettings::default() },
                    ..ListenerSettings::plain("0.0.0.0:1884".parse().unwrap())
                },
                ListenerSettings::plain("[::1]:0".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn durations_log_and_expiry_are_converted() {
        let c = Config::from_toml(
            "[limits]\nconnect_timeout_secs = 3\n[sessions]\npersistent_session_expiry_secs = 3600\n\
             max_keepalive = 120\n[log]\nformat = \"json\"\nlevel = \"debug,broker=trace\"\n",
        )
        .unwrap();
        assert_eq!(c.settings.limits.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.settings.sessions.persistent_session_expiry, Some(Duration::from_secs(3600)));
        assert_eq!(c.settings.sessions.max_keepalive, 120);
        assert_eq!(c.log, LogSettings { format: LogFormat::Json, level: "debug,broker=trace".into() });
    }

    #[test]
    fn bridges_are_validated_with_the_key_at_fault() {
        let base =
            "[[bridges]]\nname = \"cloud\"\naddresses = [\"up.example:8883\"]\ntopics = [\"a/# both 1 l/ r/\"]\n";
        let c = Config::from_toml(base).unwrap();
        let b = &c.settings.bridges[0];
        assert_eq!((b.name.as_str(), b.max_inflight, b.clean_start), ("cloud", 100, false));
        assert_eq!(b.topics[0].remote_filter(), "r/a/#");
        let v311 = Config::from_toml(&format!("{base}protocol = \"3.1.1\"\n")).unwrap();
        assert_eq!(v311.settings.bridges[0].max_inflight, 20);
        for (extra, key) in [
            ("protocol = \"4\"\n", "bridges[0].protocol"),
            ("overflow = \"spill\"\n", "bridges[0].overflow"),
            ("topics = [\"a/# sideways\"]\n", "bridges[0].topics[0]"),
            ("max_queue_bytes = 10\n", "bridges[0].max_queue_bytes"),
            ("colour = 1\n", "colour"),
        ] {
            let toml = if extra.starts_with("topics") {
                base.replace("topics = [\"a/# both 1 l/ r/\"]\n", extra)
            } else {
                format!("{base}{extra}")
            };
            let e = err(&toml);
            assert!(e.contains(key), "{extra:?}: {e}");
        }
        assert!(err(&format!("{base}{}", &base)).contains("bridges[1].name"), "two bridges of one name");
        assert!(!format!("{b:?}").contains("secret"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        assert!(err("[limits]\nmax_conections = 5\n").starts_with("limits.max_conections: unknown key (expected"));
        assert!(err("verbose = true\n").starts_with("verbose: unknown key"));
        assert!(err("[tls]\ncert = \"x\"\n").starts_with("tls: unknown key"));
        assert!(err("[[listeners]]\nbind = \"127.0.0.1:1\"\nport = 2\n").starts_with("listeners[0].port: unknown key"));
        // Keys are case-sensitive in files.
        assert!(err("[LIMITS]\nmax_connections = 5\n").starts_with("LIMITS: unknown key"));
        let e = Config::from_toml("[sessions]\nqueue_qos0 = true\n").unwrap_err();
        assert_eq!(e.key(), Some("sessions.queue_qos0"));
    }

    #[test]
    fn bad_values_name_the_key_and_why() {
        let cases = [
            ("[limits]\nmax_packet_size = 3", "limits.max_packet_size: must be between 16 and 268435460 (got 3)"),
            (
                "[limits]\nmax_packet_size = 268435461",
                "limits.max_packet_size: must be between 16 and 268435460 (got 268435461)",
            ),
            (
                "[limits]\nmax_inflight_messages = 0",
                "limits.max_inflight_messages: must be between 1 and 65535 (got 0)",
            ),
            (
                "[limits]\nmax_inflight_messages = 65536",
                "limits.max_inflight_messages: must be between 1 and 65535 (got 65536)",
            ),
            (
                "[limits]\nmax_connections = 0",
                "limits.max_connections: must be between 1 and 2305843009213693951 (got 0)",
            ),
            ("[limits]\nmax_queued_messages = -1", "limits.max_queued_messages: must be at least 1 (got -1)"),
            ("[limits]\nconnect_timeout_secs = 0", "limits.connect_timeout_secs: must be between 1 and 3600 (got 0)"),
            (
                "[limits]\nmax_subscriptions_per_client = 0",
                "limits.max_subscriptions_per_client: must be at least 1 (got 0)",
            ),
            ("[limits]\nmax_retained_messages = -5", "limits.max_retained_messages: must be at least 0 (got -5)"),
            ("[sessions]\nmax_keepalive = 70000", "sessions.max_keepalive: must be between 0 and 65535 (got 70000)"),
            (
                "[sessions]\npersistent_session_expiry_secs = -1",
                "sessions.persistent_session_expiry_secs: must be between 0 and 4294967295 (got -1)",
            ),
            (
                "[limits]\nmax_connections = \"many\"",
                "limits.max_connections: invalid type: string \"many\", expected an integer",
            ),
            (
                "[limits]\nmax_connections = 1.5",
                "limits.max_connections: invalid type: floating point `1.5`, expected an integer",
            ),
            (
                "[sessions]\nqueue_qos0_offline = 1",
                "sessions.queue_qos0_offline: invalid type: integer `1`, expected true or false",
            ),
            ("[log]\nformat = \"xml\"", "log.format: must be \"text\" or \"json\" (got \"xml\")"),
            ("[log]\nlevel = \" \"", "log.level: must not be empty (for example \"info\")"),
            ("listeners = []", "listeners: at least one listener is needed"),
            (
                "[[listeners]]\nbind = \"localhost:1883\"",
                "listeners[0].bind: not an IP address and port such as \"127.0.0.1:1883\" or \"[::]:1883\" (got \"localhost:1883\")",
            ),
            (
                "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:1\"",
                "listeners[1].bind: 127.0.0.1:1 is already listeners[0].bind",
            ),
            (
                "[[listeners]]\nbind = \"127.0.0.1:1\"\nmax_connections = 0",
                "listeners[0].max_connections: must be between 1 and 2305843009213693951 (got 0)",
            ),
            (
                "[limits]\nmax_queued_bytes = 1000",
                "limits.max_queued_bytes: must be at least limits.max_packet_size (2097152) so that the largest \
                 message fits (got 1000)",
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(err(toml), want, "for {toml:?}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file_and_position_on_one_line() {
        let e = Config::from_sources(Some(("site.toml", "[limits\n")), HashMap::new()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("site.toml: TOML parse error at line 1, column "), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::from_sources(
            Some(("f", "[limits]\nmax_connections = 100\nmax_queued_messages = 7\n")),
            env(&[
                ("BROKER__LIMITS__MAX_CONNECTIONS", "5"),
                ("BROKER__SESSIONS__QUEUE_QOS0_OFFLINE", "true"),
                ("BROKER__LOG__FORMAT", "json"),
                ("PATH", "/usr/bin"),
                ("BROKERAGE", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.settings.limits.max_connections, 5);
        assert_eq!(c.settings.limits.max_queued_messages, 7, "keys the environment does not set keep the file's");
        assert!(c.settings.sessions.queue_qos0_offline);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn environment_errors_name_the_key_and_the_variable() {
        let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONNECTIONS", "0")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "limits.max_connections: must be between 1 and 2305843009213693951 (got 0) \
             (set by BROKER__LIMITS__MAX_CONNECTIONS)"
        );
        let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONECTIONS", "5")])).unwrap_err();
        assert!(
            e.to_string().starts_with("limits.max_conections: unknown key")
                && e.to_string().ends_with("(set by BROKER__LIMITS__MAX_CONECTIONS)"),
            "{e}"
        );
        let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONNECTIONS", "lots")])).unwrap_err();
        assert_eq!(e.key(), Some("limits.max_connections"));
    }

    #[test]
    fn load_reads_the_file_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("broker-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(&path, "[limits]\nmax_retained_messages = 0\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.settings.limits.max_retained_messages, 0);
        let missing = dir.join("missing.toml");
        let e = Config::load(Some(&missing)).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with(&format!("cannot read config file {}: ", missing.display())));
        let e = Config::load(Some(&{
            std::fs::write(dir.join("bad.toml"), "[limits]\nmax_packet_size = 3\n").unwrap();
            dir.join("bad.toml")
        }))
        .unwrap_err();
        assert_eq!(e.key(), Some("limits.max_packet_size"));
    }

    #[test]
    fn printed_default_config_parses_back() {
        assert_eq!(Config::from_toml(DEFAULT_CONFIG).unwrap(), embedded_default());
        // Uncommenting the commented-out listener cap gives a valid file too.
        let edited = DEFAULT_CONFIG.replace("# max_connections = 1000", "max_connections = 1000");
        let c = Config::from_toml(&edited).unwrap();
        assert_eq!(c.settings.listeners[0].max_connections, Some(1000));
    }
}
