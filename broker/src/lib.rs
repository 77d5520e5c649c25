//! An MQTT 3.1 / 3.1.1 / 5.0 broker for edge devices and IoT gateways.
//!
//! Data flows socket -> codec -> session -> router -> per-subscriber queues -> socket:
//!
//! - [`config`]: validated [`Settings`] with the embedded defaults.
//! - `listener`: accepts connections under a connection cap.
//! - `connection`: one task per client; the only module that does I/O on the socket.
//! - `session`: the sans-IO MQTT state machine of one client (packets and `now` in, actions out).
//! - `router`: subscriptions, retained messages and the sessions' queues, behind one storage interface.
//! - `queue`: the bounded per-session outbound queue and in-flight window.
//!
//! [`run`] serves until the shutdown future resolves.

pub mod config;

pub use config::{Limits, ListenerSettings, SessionSettings, Settings};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Errors that stop the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings are unusable.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Broker-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clients connected now.
    pub clients_connected: usize,
    /// Sessions held (connected and offline persistent ones).
    pub sessions: usize,
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients.
    pub messages_delivered: u64,
    /// Messages dropped because a session's queue was full.
    pub messages_dropped: u64,
    /// Retained messages held.
    pub retained_messages: usize,
}

/// Counters of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages waiting behind the in-flight window.
    pub queued_messages: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight_messages: usize,
    /// Messages dropped because this session's queue was full.
    pub dropped_messages: u64,
}

/// A broker instance. Cloning gives another handle to the same broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
}

impl Broker {
    /// Creates a broker with these settings.
    ///
    /// # Errors
    /// [`Error::Settings`] when a limit is zero where it must not be.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        Ok(Self { shared: Arc::new(Shared { settings }) })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// A snapshot of the broker-wide counters.
    pub fn stats(&self) -> Stats {
        Stats::default()
    }

    /// A snapshot of one session's counters, if the session exists.
    pub fn session_stats(&self, _client_id: &str) -> Option<SessionStats> {
        None
    }

    /// Serves MQTT on these bound listeners until `shutdown` resolves.
    ///
    /// # Errors
    /// [`Error::Io`] when a listener fails for good.
    pub async fn serve(
        &self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let _ = listeners;
        shutdown.await;
        Ok(())
    }
}

/// Runs a broker with these settings on these bound listeners until `shutdown` resolves.
///
/// # Errors
/// As [`Broker::new`] and [`Broker::serve`].
pub async fn run(
    listeners: Vec<TcpListener>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    Broker::new(settings)?.serve(listeners, shutdown).await
}
