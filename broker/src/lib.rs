//! An MQTT 3.1 / 3.1.1 / 5.0 broker for edge devices and IoT gateways.
//!
//! Data flows socket -> codec -> session -> router -> per-subscriber queues -> socket:
//!
//! - [`config`]: validated [`Settings`] with the embedded defaults.
//! - [`tls`]: rustls server configs from PEM files, reloaded when the files change.
//! - `admission`: per-source-address connection counts and rates, checked at accept.
//! - `listener`: accepts connections under a connection cap; the connection's task does TLS and the WebSocket
//!   upgrade (`ws`) before MQTT.
//! - `connection`: one task per client; the only module that does I/O on the socket.
//! - [`auth`]: who may connect (password files, certificate identities) and what each client may publish and read
//!   (ACL files), per listener; checked by the connection before the session, and by the session and the router.
//! - [`session`]: the sans-IO MQTT state machine of one client (packets and `now` in, actions out).
//! - [`router`]: subscriptions, retained messages and the sessions' queues, behind one storage interface.
//! - [`queue`]: the bounded per-session outbound queue and in-flight window, of [`message`]s shared between queues.
//! - `persist`: what must survive a restart, journaled as typed records in the [`journal`] (the storage engine),
//!   and rebuilt from it at startup.
//! - [`budget`]: the broker-wide memory budget for message bytes, and drops by reason.
//! - `logging`: lines about clients, cut to size and rate-limited.
//! - [`bridge`]: bridges to upstream brokers; each is a persistent session whose outbox is the durable
//!   store-and-forward queue, driven upstream by a task of its own.
//!
//! Beside the data path, [`migrate`] translates a Mosquitto configuration (`broker migrate-config`), [`metrics`]
//! counts what operators watch, [`http`] serves it (`/metrics`, `/healthz`, `/readyz`) and [`sys`] publishes it
//! under `$SYS`.
//!
//! [`run`] serves until the shutdown future resolves.

// In the order data flows through them; see the list above.
pub mod config;

pub mod tls;

pub(crate) mod admission;
mod conn_limits;
mod listener;
mod ws;

mod connection;

pub mod auth;

pub mod session;

pub mod router;

pub mod queue;

pub mod message;

pub(crate) mod persist;

pub mod journal;

pub mod budget;
pub(crate) mod logging;

pub mod bridge;

pub mod migrate;

pub mod http;
pub mod metrics;
pub mod sys;

pub use config::{Config, ConfigError, Limits, ListenerSettings, MqttSettings, SessionSettings, Settings};
pub use listener::{Listener, reserve_descriptors};

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn_limits::{ConnLimits, LiveLimits};
use crate::listener::{Accept, Identities};
use crate::queue::OutboxLimits;
use crate::router::{Counters, Router, RouterLimits};
use crate::session::auth::{Authenticator, NoMethods};
use crate::session::{Capabilities, Context};

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
    /// The persistence directory cannot be used.
    #[error("persistence: {0}")]
    Persistence(String),
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
    /// Messages dropped because a session's queue was full or the message exceeds the client's Maximum Packet Size.
    pub messages_dropped: u64,
    /// PUBLISH packets refused and not routed: a topic deeper than `mqtt.max_topic_levels`, a `$SYS` or `$share`
    /// topic, a payload that is not UTF-8 though its Payload Format Indicator says so.
    pub messages_refused: u64,
    /// Messages not sent to a client because they exceed its Maximum Packet Size (included in `messages_dropped`).
    pub messages_oversized: u64,
    /// Retained messages held.
    pub retained_messages: usize,
    /// Bytes of messages held now (queued, in flight, retained), as charged to `limits.max_message_memory`.
    pub message_memory: usize,
    /// Messages refused because `limits.max_message_memory` was used up.
    pub dropped_over_budget: u64,
    /// Retained messages not stored because the retained store was at a limit (the message was still routed).
    pub retained_refused: u64,
    /// Wills published at once, without their delay, because `limits.max_pending_wills` were waiting.
    pub wills_not_delayed: u64,
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

#[derive(Clone)]
struct Shared {
    settings: Settings,
    ctx: Context,
    global_limit: Arc<Semaphore>,
    next_conn_id: Arc<AtomicU64>,
    /// Client certificate identities of live TLS connections (`use_identity_as_username`).
    identities: Identities,
    /// Authentication shared by every listener: a backend installed by the embedding application, failed logins.
    auth: AuthShared,
    /// When the broker was made (uptime).
    started: std::time::Instant,
    /// Every listener is being served (`/readyz`); the journal was recovered before the broker existed.
    ready: Arc<AtomicBool>,
    /// The HTTP endpoint's socket, served with the listeners ([`Broker::with_http_listener`]).
    http: Arc<Mutex<Option<TcpListener>>>,
    /// The HTTP endpoint's users, once served (reloaded with the MQTT password files).
    http_auth: Arc<std::sync::OnceLock<Arc<http::Auth>>>,
    /// The HTTP endpoint's TLS config, once it is served with `[http.tls]`.
    http_tls: Arc<std::sync::OnceLock<tls::TlsReloader>>,
    /// The limits new connections read (see [`conn_limits`]).
    limits: Arc<LiveLimits>,
    /// Bridges to upstream brokers.
    bridges: bridge::Bridges,
}

#[derive(Clone, Default)]
struct AuthShared {
    /// Replaces the file-based backend on every listener ([`Broker::with_auth_backend`]).
    backend: Option<Arc<dyn auth::AuthBackend>>,
    backoff: Arc<auth::backoff::Backoff>,
    failed_logins: Arc<AtomicU64>,
    /// The listeners served now that have authentication (for reloads).
    listeners: Arc<Mutex<Vec<Arc<auth::ListenerAuth>>>>,
}

impl Broker {
    /// Creates a broker with these settings.
    ///
    /// # Errors
    /// [`Error::Settings`] when a limit is zero where it must not be.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let l = &settings.limits;
        if l.max_inflight_messages == 0
            || l.max_connections == 0
            || l.max_pending_handshakes == 0
            || l.max_packet_size < 16
            || l.max_connect_packet_size < 16
        {
            return Err(Error::Settings(
                "max_inflight_messages, max_connections and max_pending_handshakes must be at least 1, \
                 max_packet_size and max_connect_packet_size at least 16"
                    .into(),
            ));
        }
        let outbox = OutboxLimits {
            max_inflight: l.max_inflight_messages,
            max_queued: l.max_queued_messages,
            max_queued_bytes: l.max_queued_bytes,
            queue_qos0_offline: settings.sessions.queue_qos0_offline,
        };
        let caps = Arc::new(Capabilities::from_settings(&settings));
        let limits = RouterLimits {
            outbox,
            max_retained: l.max_retained_messages,
            max_retained_bytes: l.max_retained_bytes,
            max_pending_wills: l.max_pending_wills,
            max_subscriptions: l.max_subscriptions_per_client,
            shared_strategy: caps.mqtt.shared_subscription_strategy,
            disconnect_slow_consumers: l.disconnect_slow_consumers,
        };
        let obs = if settings.http.metrics { metrics::Metrics::default() } else { metrics::Metrics::disabled() };
        let counters =
            Arc::new(Counters { budget: budget::Budget::new(l.max_message_memory), obs, ..Counters::default() });
        let mut router = Router::new(limits, counters.clone());
        let durable = if settings.persistence.enabled {
            let (durable, stats) = persist::open(&settings.persistence, &mut router).map_err(Error::Persistence)?;
            tracing::info!(
                path = %settings.persistence.path.display(),
                sessions = stats.sessions,
                queued = stats.queued,
                retained = stats.retained,
                wills = stats.wills,
                expired_sessions = stats.expired_sessions,
                expired_messages = stats.expired_messages,
                skipped_records = stats.skipped,
                ms = stats.duration.as_millis(),
                "recovered"
            );
            Some(durable)
        } else {
            None
        };
        let bridges = bridge::Bridges::prepare(&mut router, &settings.bridges);
        let router = Arc::new(Mutex::new(router));
        let ctx = Context { router, counters, caps, auth: Arc::new(NoMethods), gate: None, durable };
        let global_limit = Arc::new(Semaphore::new(l.max_connections));
        let limits = Arc::new(LiveLimits::new(ConnLimits::new(&settings, &ctx.caps)));
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                ctx,
                global_limit,
                next_conn_id: Arc::default(),
                identities: Identities::default(),
                auth: AuthShared::default(),
                started: std::time::Instant::now(),
                ready: Arc::default(),
                http: Arc::default(),
                http_auth: Arc::default(),
                http_tls: Arc::default(),
                limits,
                bridges,
            }),
        })
    }

    /// Installs the MQTT 5 enhanced authentication methods (none by default: a CONNECT naming a method is refused
    /// with `0x8C Bad authentication method`). Call before [`Broker::serve`].
    #[must_use]
    pub fn with_authenticator(self, auth: Arc<dyn Authenticator>) -> Self {
        // Other handles to this broker keep the authenticator they had; this one and its clones use `auth`.
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| (*arc).clone());
        shared.ctx.auth = auth;
        Self { shared: Arc::new(shared) }
    }

    /// Installs an authentication and authorization backend on every listener, in place of the password and ACL
    /// files of the settings (`allow_anonymous` and `use_identity_as_username` are then the backend's business:
    /// it gets the certificate identity in [`auth::Credentials`]). Call before [`Broker::serve`].
    #[must_use]
    pub fn with_auth_backend(self, backend: Arc<dyn auth::AuthBackend>) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| (*arc).clone());
        shared.auth.backend = Some(backend);
        Self { shared: Arc::new(shared) }
    }

    /// Logins refused since start (wrong password, unknown user, anonymous where refused, no certificate identity).
    pub fn failed_logins(&self) -> u64 {
        self.shared.auth.failed_logins.load(Ordering::Relaxed)
    }

    /// Re-reads every listener's password and ACL files (as on SIGHUP), then gives connected clients their new
    /// permissions and re-checks their subscriptions. A file that cannot be used keeps its previous contents and is
    /// logged. Blocks on file I/O: call it off the async runtime.
    pub fn reload_auth(&self) {
        let listeners = self.shared.auth.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for l in &listeners {
            l.backend().reload();
        }
        self.recheck_auth(&listeners);
        if let Some(http) = self.shared.http_auth.get() {
            http.reload();
        }
    }

    /// Gives the connections accepted from now on the connection limits of `settings` (SIGHUP; see
    /// [`conn_limits`] for which): open connections keep theirs. Other keys of `settings` are not looked at.
    ///
    /// # Errors
    /// [`Error::Settings`] when `max_packet_size` or `max_connect_packet_size` is under 16; nothing changes then.
    pub fn reload_limits(&self, settings: &Settings) -> Result<(), Error> {
        let l = &settings.limits;
        if l.max_packet_size < 16 || l.max_connect_packet_size < 16 {
            return Err(Error::Settings("max_packet_size and max_connect_packet_size must be at least 16".into()));
        }
        self.shared.limits.set(ConnLimits::new(settings, &self.shared.ctx.caps));
        Ok(())
    }

    /// Reloads the authentication files that changed since the last look; returns whether any did.
    fn poll_auth_changes(&self) -> bool {
        let listeners = self.shared.auth.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let changed = listeners.iter().fold(false, |changed, l| l.backend().poll_changes() | changed);
        if changed {
            self.recheck_auth(&listeners);
        }
        changed
    }

    fn recheck_auth(&self, listeners: &[Arc<auth::ListenerAuth>]) {
        let mut router = self.shared.ctx.router();
        for l in listeners {
            l.recheck(&mut router);
        }
    }

    /// The authentication of a listener, if it has any.
    fn listener_auth(&self, listener: &Listener) -> Result<Option<Arc<auth::ListenerAuth>>, String> {
        let shared = &self.shared.auth;
        let use_identity = listener.uses_identity();
        let settings = listener.auth();
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Listeners with the same ACL give a user the same permissions (see `ListenerAuth::acl_key`).
        let acl_key: Option<Arc<str>> = match (&shared.backend, &settings.acl_file) {
            (Some(_), _) => Some(Arc::from("backend")),
            (None, Some(file)) => Some(Arc::from(format!("acl_file {}", file.display()))),
            (None, None) => None,
        };
        let backend: Arc<dyn auth::AuthBackend> = match &shared.backend {
            Some(custom) => custom.clone(),
            None if !settings.is_configured(use_identity) => {
                if !addr.ip().is_loopback() && settings.allow_anonymous.is_none() {
                    let mut l = config::ListenerSettings::plain(addr);
                    l.auth = settings.clone();
                    config::check_anonymous(&l)?;
                }
                return Ok(None);
            }
            None => Arc::new(auth::FileAuth::new(settings, use_identity, addr.ip().is_loopback())?),
        };
        Ok(Some(Arc::new(auth::ListenerAuth::new(
            backend,
            use_identity,
            self.shared.identities.clone(),
            shared.backoff.clone(),
            shared.failed_logins.clone(),
            acl_key,
        ))))
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// A snapshot of the broker-wide counters.
    pub fn stats(&self) -> Stats {
        let ctx = &self.shared.ctx;
        let c = &ctx.counters;
        let router = ctx.router();
        Stats {
            clients_connected: c.clients_connected.load(Ordering::Relaxed),
            sessions: router.session_count(),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            messages_delivered: c.messages_delivered.load(Ordering::Relaxed),
            messages_dropped: c.messages_dropped.load(Ordering::Relaxed),
            messages_refused: c.messages_refused.load(Ordering::Relaxed),
            messages_oversized: c.messages_oversized.load(Ordering::Relaxed),
            retained_messages: router.retained_count(),
            message_memory: c.budget.used(),
            dropped_over_budget: c.budget.dropped(budget::DropReason::Budget),
            retained_refused: c.budget.dropped(budget::DropReason::RetainedFull),
            wills_not_delayed: c.budget.dropped(budget::DropReason::WillNotDelayed),
        }
    }

    /// Each bridge's state and counters (connected, queue length and bytes, drops), in configuration order.
    pub fn bridge_stats(&self) -> Vec<bridge::BridgeStats> {
        self.shared.bridges.stats(&self.shared.ctx.router())
    }

    /// A snapshot of one session's counters, if the session exists.
    pub fn session_stats(&self, client_id: &str) -> Option<SessionStats> {
        let router = self.shared.ctx.router();
        let state = router.session(client_id)?.lock();
        Some(SessionStats {
            queued_messages: state.outbox().queued(),
            inflight_messages: state.outbox().inflight(),
            dropped_messages: state.outbox().dropped(),
        })
    }

    /// The client certificate identities of the connections open now, on listeners with
    /// `use_identity_as_username` (the certificate's subject CN, else its first SAN).
    ///
    /// The identity is also the client's username for authentication and ACLs (see [`auth`]), and each connection's
    /// log lines carry it as the `identity` field.
    pub fn connected_identities(&self) -> Vec<String> {
        let map = self.shared.identities.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids: Vec<String> = map.values().cloned().collect();
        ids.sort();
        ids
    }

    /// Writes a checkpoint of the durable state on a blocking thread (nothing without persistence).
    async fn checkpoint(&self) -> Result<(), String> {
        let Some(durable) = self.shared.ctx.durable.clone() else { return Ok(()) };
        let router = self.shared.ctx.router.clone();
        match tokio::task::spawn_blocking(move || persist::checkpoint(&router, &durable)).await {
            Ok(written) => written.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Serves MQTT on these bound sockets until `shutdown` resolves. Socket `i` gets the transport, TLS and
    /// connection cap of `settings.listeners[i]` (plain MQTT when there is no such entry).
    ///
    /// # Errors
    /// [`Error::Settings`] when a listener's TLS files are unusable; [`Error::Io`] when a listener fails for good.
    pub async fn serve(
        &self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let mut built = Vec::with_capacity(listeners.len());
        for (i, tcp) in listeners.into_iter().enumerate() {
            built.push(match self.shared.settings.listeners.get(i) {
                Some(l) => Listener::from_tcp(tcp, l).map_err(|e| Error::Settings(format!("listeners[{i}]: {e}")))?,
                None => Listener::plain(tcp),
            });
        }
        self.serve_listeners(built, shutdown).await
    }

    /// Serves MQTT on these listeners (plain, TLS, WebSocket, WSS) until `shutdown` resolves.
    ///
    /// # Errors
    /// [`Error::Settings`] when a listener's password or ACL file is unusable, or a listener that other hosts can
    /// reach has no authentication and does not say `allow_anonymous = true`; [`Error::Io`] when a listener fails
    /// for good.
    pub async fn serve_listeners(
        &self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let settings = &self.shared.settings;
        let accept = Arc::new(Accept {
            ctx: self.shared.ctx.clone(),
            limits: self.shared.limits.clone(),
            global_limit: self.shared.global_limit.clone(),
            handshakes: Arc::new(Semaphore::new(settings.limits.max_pending_handshakes)),
            per_address: admission::PerAddress::new(admission::AddressLimits {
                max_connections: settings.limits.max_connections_per_address,
                rate: settings.limits.max_connection_rate_per_address,
                on_loopback: settings.limits.per_address_limits_on_loopback,
            }),
            next_conn_id: self.shared.next_conn_id.clone(),
            identities: self.shared.identities.clone(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let mut gated = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.iter().enumerate() {
            let auth = self.listener_auth(listener).map_err(|e| Error::Settings(format!("listeners[{i}]: {e}")))?;
            gated.push(auth);
        }
        let auths: Vec<Arc<auth::ListenerAuth>> = gated.iter().flatten().cloned().collect();
        // Recovered sessions get their permissions back from the ACL they were attached under.
        self.shared.ctx.router().restore_access(|owner, client_id| {
            let key = owner.acl.as_ref()?;
            let listener = auths.iter().find(|l| l.acl_key() == Some(key))?;
            listener.access(owner.username.as_deref().map(Arc::from), client_id)
        });
        *self.shared.auth.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = auths;
        for (listener, auth) in listeners.into_iter().zip(gated) {
            let local_limit = listener.max_connections().map(|n| Arc::new(Semaphore::new(n)));
            tracing::debug!(addr = ?listener.local_addr().ok(), scheme = listener.scheme(), auth = auth.is_some(), "serving");
            let accept = match auth {
                Some(auth) => {
                    let mut gated = (*accept).clone();
                    gated.ctx.gate = Some(Arc::new(auth::Gate::new(auth)));
                    Arc::new(gated)
                }
                None => accept.clone(),
            };
            let label = listener.local_addr().map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
            let metrics = self.shared.ctx.counters.obs.listener(label);
            accept.tracker.spawn(listener::accept_loop(listener, local_limit, accept.clone(), metrics));
        }
        self.shared.bridges.spawn(&self.shared.ctx, &accept.tracker, &accept.stop);
        let http = self.shared.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(http) = http {
            let (auth, tls) = (self.http_auth(&http)?, self.http_tls()?);
            let tracker = accept.tracker.clone();
            accept.tracker.spawn(http::serve(http, self.clone(), (auth, tls), accept.stop.clone(), tracker));
        }
        if let Some(every) = self.shared.settings.sys_interval {
            accept.tracker.spawn(self.clone().publish_sys(every, accept.stop.clone()));
        }
        self.shared.ready.store(true, Ordering::Relaxed);
        // Once a second: delayed wills and session expiry, a checkpoint when the journal asks for one, and password
        // and ACL files re-read when they changed.
        let watch_auth =
            !self.shared.auth.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty();
        let broker = self.clone();
        let stop = accept.stop.clone();
        accept.tracker.spawn(async move {
            let ctx = &broker.shared.ctx;
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = interval.tick() => {
                        ctx.router().tick(tokio::time::Instant::now());
                        if ctx.durable.as_ref().is_some_and(|d| d.journal().wants_checkpoint()) {
                            match broker.checkpoint().await {
                                Ok(()) => tracing::debug!("checkpoint written"),
                                Err(e) => tracing::error!(error = %e, "checkpoint failed; the journal keeps growing"),
                            }
                        }
                        if watch_auth {
                            let b = broker.clone();
                            let _ = tokio::task::spawn_blocking(move || b.poll_auth_changes()).await;
                        }
                    }
                }
            }
        });
        shutdown.await;
        self.shared.ready.store(false, Ordering::Relaxed);
        tracing::info!("shutting down");
        accept.stop.cancel();
        accept.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), accept.tracker.wait()).await.is_err() {
            tracing::warn!("connections did not close within 5 s");
        }
        if let Some(durable) = &self.shared.ctx.durable {
            // A checkpoint makes the next start fast; the journal is complete without it.
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "no checkpoint at shutdown");
            }
            if let Err(e) = durable.journal().close() {
                tracing::error!(error = %e, "journal not closed cleanly");
            }
            // The journal's counters since start, for benchmarks (messages per fsync, bytes per message).
            let j = durable.journal().stats();
            tracing::info!(
                appended_records = j.appended_records,
                appended_bytes = j.appended_bytes,
                writes = j.writes,
                fsyncs = j.fsyncs,
                fsynced_records = j.fsynced_records,
                fsync_ms_sum = j.fsync_nanos_sum / 1_000_000,
                fsync_us_max = j.fsync_nanos_max / 1_000,
                refused_appends = j.refused_appends,
                bytes_on_disk = j.bytes_on_disk,
                "journal counters"
            );
        }
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
