//! Settings: what the broker runs with, validated once.
//!
//! `Settings::default()` is the embedded default configuration: local only, anonymous.

use std::net::SocketAddr;
use std::time::Duration;

/// Validated settings the broker runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where to listen. `main` binds these; [`crate::run`] takes the bound sockets.
    pub listeners: Vec<ListenerSettings>,
    /// Limits that protect the broker and its clients.
    pub limits: Limits,
    /// Session behaviour.
    pub sessions: SessionSettings,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Address and port.
    pub bind: SocketAddr,
    /// Connections this listener accepts at once (within `limits.max_connections`).
    pub max_connections: Option<usize>,
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
    /// Payload bytes waiting per session behind the in-flight window.
    pub max_queued_bytes: usize,
    /// Retained messages held by the broker.
    pub max_retained_messages: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
}

/// Session behaviour. The defaults are Mosquitto's: no offline QoS 0 queueing, no keep alive cap, sessions kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0_offline: bool,
    /// Largest keep alive granted (MQTT 5 Server Keep Alive); 0 means the client's value is kept.
    pub max_keepalive: u16,
    /// How long an offline MQTT 3.x persistent session is kept; `None` keeps it forever.
    pub persistent_session_expiry: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listeners: vec![ListenerSettings { bind: SocketAddr::from(([127, 0, 0, 1], 1883)), max_connections: None }],
            limits: Limits::default(),
            sessions: SessionSettings::default(),
        }
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
        }
    }
}

