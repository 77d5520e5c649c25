//! Listeners: plain MQTT, MQTT over TLS, WebSocket and WebSocket over TLS.
//!
//! The accept loop only accepts, applies the connection caps and the per-address limits ([`crate::admission`]), and
//! spawns one task per client. It takes a connection only when a place under `limits.max_pending_handshakes` is
//! free, so a burst of clients (or of attackers holding sockets open) waits in the listen backlog rather than in
//! the broker's memory. The task does the TLS handshake and the WebSocket upgrade, then hands the stream to
//! `connection::serve`, which reads CONNECT: all three under one deadline, `limits.connect_timeout_secs` from
//! accept. A client that fails its handshake (plaintext on a TLS port, an untrusted or expired certificate,
//! TLS 1.1) costs one log line and its own task, nothing else.
//! The loop also polls a TLS listener's files every second and swaps in a new config when they change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::{AddressSlot, PerAddress, Refused};
use crate::config::{ListenerSettings, Transport};
use crate::conn_limits::{ConnLimits, LiveLimits};
use crate::connection::{self, Arrival, ConnSettings, Stream};
use crate::logging::{Untrusted, conn_event};
use crate::metrics::ArrivalRefusal;
use crate::router::ConnLink;
use crate::session::Context;
use crate::tls::{TlsError, TlsReloader, certificate_identity};
use crate::ws;

/// A bound listener with its transport and TLS config, ready for [`crate::Broker::serve_listeners`].
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    transport: Transport,
    tls: Option<TlsReloader>,
    max_connections: Option<usize>,
    auth: crate::auth::AuthSettings,
}

impl Listener {
    /// Binds `settings.bind` and loads its TLS files.
    ///
    /// # Errors
    /// The bind error, or [`TlsError`] (as an `InvalidInput` I/O error) when the TLS files are unusable.
    pub async fn bind(settings: &ListenerSettings) -> std::io::Result<Self> {
        let tcp = bind_tcp(settings.bind)?;
        Self::from_tcp(tcp, settings).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }

    /// Serves `settings`' transport and TLS on an already bound socket (its `bind` is ignored).
    ///
    /// # Errors
    /// [`TlsError`] when the TLS files are unusable.
    pub fn from_tcp(tcp: TcpListener, settings: &ListenerSettings) -> Result<Self, TlsError> {
        let alpn: &[u8] = match settings.transport {
            Transport::Mqtt => b"mqtt",
            Transport::WebSocket { .. } => b"http/1.1",
        };
        let tls = settings.tls.clone().map(|t| TlsReloader::new(t, alpn)).transpose()?;
        Ok(Self {
            tcp,
            transport: settings.transport.clone(),
            tls,
            max_connections: settings.max_connections,
            auth: settings.auth.clone(),
        })
    }

    /// Plain MQTT over TCP on an already bound socket.
    pub fn plain(tcp: TcpListener) -> Self {
        Self { tcp, transport: Transport::Mqtt, tls: None, max_connections: None, auth: Default::default() }
    }

    /// The address it is bound to.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// A handle to its TLS config, to reload it (on SIGHUP, say); `None` for a plaintext listener.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone()
    }

    /// A short name of what it speaks: `mqtt`, `mqtts`, `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        match (&self.transport, self.tls.is_some()) {
            (Transport::Mqtt, false) => "mqtt",
            (Transport::Mqtt, true) => "mqtts",
            (Transport::WebSocket { .. }, false) => "ws",
            (Transport::WebSocket { .. }, true) => "wss",
        }
    }

    /// This listener with a cap of its own on connections held at once.
    #[must_use]
    pub fn with_max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }

    pub(crate) fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// Its authentication settings.
    pub(crate) fn auth(&self) -> &crate::auth::AuthSettings {
        &self.auth
    }

    /// Whether a client certificate's identity is the client's username here.
    pub(crate) fn uses_identity(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.settings().use_identity_as_username)
    }
}

/// Connections the kernel completes and queues before the accept loop takes them (capped by
/// `net.core.somaxconn`). `TcpListener::bind` asks for 128: a burst of clients (a gateway's devices reconnecting
/// after an outage) overflowed it and each dropped SYN cost its client a 1 s retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket the way `std` does (`SO_REUSEADDR` on Unix), with a [`LISTEN_BACKLOG`] backlog.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Grows the process's descriptor table to hold `count` descriptors now, before the runtime starts its threads.
///
/// Linux grows the table on demand, doubling it, and a process with several threads waits for an RCU grace period
/// at each growth (`expand_fdtable` calls `synchronize_rcu` when the table is shared): an `accept` that crosses a
/// power of two stalls every connection behind it for milliseconds. Growing it once, while the process has a single
/// thread, costs no grace period; the table never shrinks. Kernel memory: 8 bytes per slot, rounded up to a power of
/// two (128 KiB for the default 10,000 connections). Capped below the open-files limit; failures only cost the
/// pauses.
pub fn reserve_descriptors(count: usize) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let count = limit.map_or(count, |l| count.min(usize::try_from(l).unwrap_or(usize::MAX)));
    let Some(highest) = count.checked_sub(1).and_then(|h| i32::try_from(h).ok()) else {
        return;
    };
    let grown = std::fs::File::open("/dev/null")
        .and_then(|f| rustix::io::fcntl_dupfd_cloexec(&f, highest).map_err(std::io::Error::from));
    match grown {
        // Closing it leaves the table at its new size.
        Ok(fd) => drop(fd),
        Err(e) => tracing::debug!(error = %e, count, "could not grow the descriptor table up front"),
    }
}

/// Client certificate identities of live connections, by connection id.
pub(crate) type Identities = Arc<Mutex<HashMap<u64, String>>>;

/// What every accept loop shares (a listener with authentication has a copy whose context holds its gate).
#[derive(Clone)]
pub(crate) struct Accept {
    /// The listener's context; each connection gets a copy with the [`ConnLimits`] current when it is accepted.
    pub ctx: Context,
    pub limits: Arc<LiveLimits>,
    pub global_limit: Arc<Semaphore>,
    /// Places for connections between accept and an accepted CONNECT.
    pub handshakes: Arc<Semaphore>,
    pub per_address: Arc<PerAddress>,
    pub next_conn_id: Arc<AtomicU64>,
    pub identities: Identities,
    pub stop: CancellationToken,
    pub tracker: TaskTracker,
}

pub(crate) async fn accept_loop(
    listener: Listener,
    local_limit: Option<Arc<Semaphore>>,
    a: Arc<Accept>,
    metrics: Arc<crate::metrics::ListenerMetrics>,
) {
    let addr = listener.tcp.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let listener = Arc::new(listener);
    loop {
        let handshake = tokio::select! {
            () = a.stop.cancelled() => break,
            p = a.handshakes.clone().acquire_owned() => p.ok(),
        };
        let accepted = tokio::select! {
            () = a.stop.cancelled() => break,
            _ = watch.tick(), if listener.tls.is_some() => {
                if let Some(tls) = listener.tls.clone() {
                    // File reads and key parsing block; keep them off the runtime's worker threads.
                    let _ = tokio::task::spawn_blocking(move || tls.poll_changes()).await;
                }
                continue;
            }
            r = listener.tcp.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, ?addr, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let local = match &local_limit {
            Some(sem) => sem.clone().try_acquire_owned().ok().map(Some),
            None => Some(None),
        };
        let global = a.global_limit.clone().try_acquire_owned().ok();
        let (Some(global), Some(local)) = (global, local) else {
            metrics.refused_arrival(ArrivalRefusal::ConnectionLimit);
            conn_event!(WARN, %peer, "connection limit reached; refusing connection");
            drop(stream);
            continue;
        };
        let now = tokio::time::Instant::now();
        let address = match a.per_address.admit(peer.ip(), now) {
            Ok(slot) => slot,
            Err(why) => {
                metrics.refused_arrival(match why {
                    Refused::TooMany => ArrivalRefusal::AddressConnectionLimit,
                    Refused::TooFast => ArrivalRefusal::AddressConnectionRate,
                });
                conn_event!(WARN, %peer, ?why, "per-address connection limit reached; refusing connection");
                drop(stream);
                continue;
            }
        };
        // Read once per connection, so a reload applies from the next client on.
        let ConnLimits { conn, caps } = a.limits.current();
        let ctx = Context { caps, ..a.ctx.clone() };
        let arrival =
            Arrival { peer: None, deadline: now + conn.connect_timeout, handshake, listener: metrics.clone() };
        let mut permits = Permits::new(global, local, &a.global_limit, local_limit.as_ref(), address);
        permits.open = Some(crate::metrics::OpenConnection::new(&metrics));
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let id = a.next_conn_id.fetch_add(1, Ordering::Relaxed);
        // The config is read per connection, so a reload applies from the next client on.
        let tls =
            listener.tls.as_ref().map(|t| (TlsAcceptor::from(t.current()), t.settings().use_identity_as_username));
        if tls.is_none() && matches!(listener.transport, Transport::Mqtt) {
            // Plain MQTT, the common case on a gateway with thousands of devices: the task is the connection's own
            // future, with no box in between and nothing else kept for the connection's lifetime. Its span exists
            // at `debug` level only: a live span costs about 500 bytes per connection, and the one `info` line of a
            // connection names its peer itself.
            let span = tracing::debug_span!(
                "conn",
                %peer,
                scheme = listener.scheme(),
                client_id = tracing::field::Empty
            );
            let link = conn_link(id, &a.stop);
            // The task is `serve` itself: a wrapping `async` block would keep what it captures (here the whole
            // connection future) in its own state next to the future it awaits.
            let arrival = Arrival { peer: Some(peer), ..arrival };
            let task = connection::serve(stream, ctx, conn, link, a.stop.clone(), permits, arrival);
            // A disabled span would still take its room in every task.
            if span.is_disabled() {
                a.tracker.spawn(task);
            } else {
                a.tracker.spawn(task.instrument(span));
            }
            continue;
        }
        let span = tracing::info_span!(
            "conn",
            %peer,
            scheme = listener.scheme(),
            identity = tracing::field::Empty,
            client_id = tracing::field::Empty
        );
        let (a2, listener) = (a.clone(), listener.clone());
        a.tracker.spawn(
            async move {
                let _permits = permits;
                let _identity = IdentityGuard { map: a2.identities.clone(), id };
                let incoming = Incoming { ctx, conn, arrival };
                if let Err(e) = handshake_and_serve(stream, &listener.transport, tls, id, &a2, incoming).await {
                    conn_event!(INFO, error = %e, "handshake failed");
                }
            }
            .instrument(span),
        );
    }
}

/// A connection's link whose kick token is a child of the shutdown token: cancelling `stop` also ends every
/// connection's one wait for "kicked", so a connection needs no second wait for shutdown.
fn conn_link(id: u64, stop: &CancellationToken) -> ConnLink {
    let mut link = ConnLink::new(id);
    link.kick = stop.child_token();
    link
}

/// A connection's places under the global and the listener's connection caps, and in its address's count, given
/// back when it ends. Two `Arc`s instead of two `OwnedSemaphorePermit`s: 16 bytes less in every connection's task.
struct Permits {
    global: Arc<Semaphore>,
    local: Option<Arc<Semaphore>>,
    _address: Option<AddressSlot>,
    /// Counts the connection as open on its listener.
    open: Option<crate::metrics::OpenConnection>,
}

impl Permits {
    fn new(
        global: OwnedSemaphorePermit,
        local: Option<OwnedSemaphorePermit>,
        global_sem: &Arc<Semaphore>,
        local_sem: Option<&Arc<Semaphore>>,
        address: Option<AddressSlot>,
    ) -> Self {
        global.forget();
        let local = local.map(|p| {
            p.forget();
        });
        Self { global: global_sem.clone(), local: local.and(local_sem.cloned()), _address: address, open: None }
    }
}

impl Drop for Permits {
    fn drop(&mut self) {
        self.global.add_permits(1);
        if let Some(local) = &self.local {
            local.add_permits(1);
        }
    }
}

/// Removes a connection's identity when its task ends.
struct IdentityGuard {
    map: Identities,
    id: u64,
}

impl Drop for IdentityGuard {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("WebSocket upgrade: {0}")]
    Ws(tokio_tungstenite::tungstenite::Error),
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("server shutting down")]
    Shutdown,
}

/// Runs `f` until the connection's deadline (the one that also bounds its CONNECT), or until shutdown.
async fn bounded<T>(
    a: &Accept,
    incoming: &Incoming,
    f: impl Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    let (deadline, limit) = (incoming.arrival.deadline, incoming.conn.connect_timeout);
    tokio::select! {
        r = tokio::time::timeout_at(deadline, f) => r.map_err(|_| HandshakeError::Timeout(limit))?,
        () = a.stop.cancelled() => Err(HandshakeError::Shutdown),
    }
}

/// An accepted connection: its context and limits (read when it was accepted) and its arrival.
struct Incoming {
    ctx: Context,
    conn: Arc<ConnSettings>,
    arrival: Arrival,
}

async fn handshake_and_serve(
    stream: TcpStream,
    transport: &Transport,
    tls: Option<(TlsAcceptor, bool)>,
    id: u64,
    a: &Accept,
    incoming: Incoming,
) -> Result<(), HandshakeError> {
    // Each transport's future is boxed: the task's own state machine would otherwise be as large as the largest
    // variant (WebSocket over TLS, ~20 KiB) for every connection, plain ones included.
    match tls {
        None => Box::pin(upgrade_and_serve(stream, transport, id, a, incoming)).await,
        Some((acceptor, use_identity)) => {
            Box::pin(tls_and_serve(stream, acceptor, (use_identity, transport), id, a, incoming)).await
        }
    }
}

async fn tls_and_serve(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    (use_identity, transport): (bool, &Transport),
    id: u64,
    a: &Accept,
    incoming: Incoming,
) -> Result<(), HandshakeError> {
    let stream = bounded(a, &incoming, async { acceptor.accept(stream).await.map_err(HandshakeError::Tls) }).await?;
    let (_, conn) = stream.get_ref();
    tracing::debug!(version = ?conn.protocol_version(), alpn = ?conn.alpn_protocol().map(String::from_utf8_lossy), "TLS established");
    if use_identity {
        let identity = conn.peer_certificates().and_then(|c| c.first()).and_then(certificate_identity);
        if let Some(identity) = identity {
            let shown = Untrusted(&identity);
            tracing::Span::current().record("identity", tracing::field::display(shown));
            tracing::info!(identity = %shown, "client certificate identity");
            a.identities.lock().unwrap_or_else(PoisonError::into_inner).insert(id, identity);
        }
    }
    Box::pin(upgrade_and_serve(stream, transport, id, a, incoming)).await
}

async fn upgrade_and_serve<S>(
    stream: S,
    transport: &Transport,
    id: u64,
    a: &Accept,
    incoming: Incoming,
) -> Result<(), HandshakeError>
where
    S: Stream + Send,
{
    let link = conn_link(id, &a.stop);
    let stop = a.stop.clone();
    match transport {
        Transport::Mqtt => {
            let Incoming { ctx, conn, arrival } = incoming;
            Box::pin(connection::serve(stream, ctx, conn, link, stop, (), arrival)).await;
        }
        Transport::WebSocket { path } => {
            // Room for the largest packet plus framing; a message may hold more than one packet.
            let max = usize::try_from(incoming.conn.max_packet_size).unwrap_or(usize::MAX).saturating_add(64 * 1024);
            let upgrade = async { ws::accept(stream, path, max).await.map_err(HandshakeError::Ws) };
            let ws = Box::pin(bounded(a, &incoming, upgrade)).await?;
            let Incoming { ctx, conn, arrival } = incoming;
            Box::pin(connection::serve(ws, ctx, conn, link, stop, (), arrival)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of this process's descriptor table, from `/proc/self/status`.
    fn fd_table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line.trim_start_matches("FDSize:").trim().parse().unwrap()
    }

    #[test]
    fn the_descriptor_table_is_grown_up_front_and_stays_grown() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
        let want = 4000.min(usize::try_from(limit).unwrap());
        reserve_descriptors(want);
        assert!(fd_table_size() >= want, "FDSize {} after reserving {want}", fd_table_size());
        // A count beyond the open-files limit is capped, not an error.
        reserve_descriptors(usize::MAX);
        assert!(fd_table_size() >= want);
    }
}
