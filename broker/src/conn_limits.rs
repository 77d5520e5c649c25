//! The limits each new connection reads once, when it is accepted, and keeps for its lifetime: SIGHUP swaps them
//! ([`crate::Broker::reload_limits`]) so the next connections get the new values while open ones keep theirs.
//!
//! Swapped: `limits.max_packet_size`, `limits.max_connect_packet_size`, `limits.connect_timeout_secs` (the
//! connection's reading and its CONNECT deadline), and `sessions.max_keepalive`, `sessions.idle_timeout_secs`,
//! `limits.max_filters_per_subscribe`, `limits.max_sessions` (checked by the session). Everything else is read at
//! start: the connection caps and per-address limits are counted across connections, and queue and retained limits
//! bind state that outlives a connection.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::Settings;
use crate::connection::ConnSettings;
use crate::session::Capabilities;

/// What one connection reads when it is accepted.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    /// Its reading and its CONNECT deadline.
    pub conn: Arc<ConnSettings>,
    /// What its session offers and enforces.
    pub caps: Arc<Capabilities>,
}

/// Longest a single write may block before the peer is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnLimits {
    /// The limits of `settings` over `caps` (the start-time capabilities, whose protocol features stay).
    pub fn new(settings: &Settings, caps: &Capabilities) -> Self {
        let l = &settings.limits;
        let conn = ConnSettings {
            max_packet_size: l.max_packet_size,
            max_connect_packet_size: l.max_connect_packet_size,
            connect_timeout: l.connect_timeout,
            write_timeout: WRITE_TIMEOUT,
        };
        let caps = Capabilities {
            max_packet_size: l.max_packet_size,
            max_keepalive: settings.sessions.max_keepalive,
            max_filters_per_subscribe: l.max_filters_per_subscribe,
            idle_timeout_secs: settings.sessions.idle_timeout_secs,
            max_sessions: l.max_sessions,
            ..caps.clone()
        };
        Self { conn: Arc::new(conn), caps: Arc::new(caps) }
    }
}

/// The current [`ConnLimits`], shared by every listener.
#[derive(Debug)]
pub(crate) struct LiveLimits(RwLock<ConnLimits>);

impl LiveLimits {
    pub fn new(limits: ConnLimits) -> Self {
        Self(RwLock::new(limits))
    }

    /// What a connection accepted now gets.
    pub fn current(&self) -> ConnLimits {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the limits for the connections accepted from now on.
    pub fn set(&self, limits: ConnLimits) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_reaches_new_readers_and_leaves_taken_copies_alone() {
        let mut settings = Settings::default();
        let caps = Capabilities::from_settings(&settings);
        let live = LiveLimits::new(ConnLimits::new(&settings, &caps));
        let before = live.current();
        settings.limits.max_packet_size = 1000;
        settings.sessions.max_keepalive = 30;
        settings.limits.connect_timeout = Duration::from_secs(3);
        live.set(ConnLimits::new(&settings, &caps));
        let after = live.current();
        assert_eq!((after.conn.max_packet_size, after.caps.max_packet_size), (1000, 1000));
        assert_eq!(after.caps.max_keepalive, 30);
        assert_eq!(after.conn.connect_timeout, Duration::from_secs(3));
        assert_eq!(before.conn.max_packet_size, Settings::default().limits.max_packet_size);
        assert_eq!(after.caps.mqtt, caps.mqtt);
    }
}
