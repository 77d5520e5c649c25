//! The validated settings the broker runs with, and their defaults: the embedded default configuration, but
//! persistence, which that file turns on, is off in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mqtt_codec::QoS;

use super::AuthSettings;
use crate::persist::PersistenceSettings;
use crate::router::SharedStrategy;

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
    /// A level, or `target=level` directives (`tracing_subscriber`'s `Targets` syntax), used when `RUST_LOG` is not
    /// set.
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
