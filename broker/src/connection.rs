//! One client connection: the only place that reads and writes its socket.
//!
//! The task reads bytes, cuts them into frames with [`frame_len`], hands each frame to the [`Session`], and writes
//! what the session produced in one `write_all` per wakeup (responses and queued deliveries batched together).
//! It waits on four things at once: the socket, the session's wake signal (new messages queued), the keep alive
//! deadline, and takeover or shutdown.
//!
//! Memory follows the traffic. A plain TCP connection that has nothing buffered and little traffic holds no read or
//! write buffer while it waits: it waits for readability, then reads into a fresh buffer (see [`Stream`]). Busier
//! connections keep their buffers, and give them back after [`IDLE_SHRINK_AFTER`] without traffic.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{ReasonCode, frame_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::logging::{Untrusted, conn_event};
use crate::persist::HeldOutput;
use crate::router::ConnLink;
use crate::session::{Context, Flow, Handshake, ProtocolError, Session, handshake};

/// A connection's byte stream. Plain TCP can wait for readability without a buffer, so an idle connection holds
/// none; TLS and WebSocket streams read through their own layers and always read into a buffer.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Whether [`Stream::poll_read_ready`] and [`Stream::try_read_buf`] work.
    const WAITS_WITHOUT_BUFFER: bool = false;

    /// Ready when a read would not block (or the stream ended). Only called when `WAITS_WITHOUT_BUFFER`.
    fn poll_read_ready(&self, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Reads what is there without waiting; `WouldBlock` when nothing is. Only called when `WAITS_WITHOUT_BUFFER`.
    ///
    /// # Errors
    /// I/O errors, `WouldBlock`.
    fn try_read_buf(&mut self, _buf: &mut BytesMut) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Whether the peer's bytes (or its end of stream) wait in the kernel's receive buffer now, whatever the
    /// runtime has noticed so far: a connection taken over reads what it had already received (see [`last_words`]).
    fn input_pending(&self) -> bool {
        false
    }

    /// The client's address (for the failed-login backoff), when known.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
}

impl Stream for TcpStream {
    const WAITS_WITHOUT_BUFFER: bool = true;

    fn poll_read_ready(&self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    fn input_pending(&self) -> bool {
        use rustix::net::{RecvFlags, recv};
        let mut byte = [0u8; 1];
        // A byte to read, or the end of the stream (0), both count; "would block" and errors do not.
        recv(self, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT).is_ok()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }
}

impl<S: Stream> Stream for tokio_rustls::server::TlsStream<S> {
    fn input_pending(&self) -> bool {
        self.get_ref().0.input_pending()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.get_ref().0.peer_addr()
    }
}

impl<S: Stream> Stream for crate::ws::WsIo<S> {
    fn input_pending(&self) -> bool {
        self.buffered() || self.get_ref().input_pending()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.get_ref().peer_addr()
    }
}

/// Per-connection settings.
#[derive(Debug, Clone)]
pub(crate) struct ConnSettings {
    pub max_packet_size: u32,
    /// Largest packet read before CONNECT is accepted (CONNECT and MQTT 5 AUTH), at most `max_packet_size`.
    pub max_connect_packet_size: u32,
    pub connect_timeout: Duration,
    /// Longest a single write may block before the peer is considered dead.
    pub write_timeout: Duration,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("no CONNECT within {0:?}")]
    ConnectTimeout(Duration),
    #[error("first packet was not CONNECT [MQTT-3.1.0-1]")]
    NotConnect,
    #[error("refused with {0:?}")]
    Refused(ReasonCode, Box<str>),
    #[error("peer closed the connection")]
    Closed,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("write timed out")]
    WriteTimeout,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("ended by the broker ({0:?})")]
    Kicked(ReasonCode),
    #[error("server shutting down")]
    Shutdown,
    #[error("journal: {0}")]
    Store(#[from] crate::journal::JournalError),
}

/// Reads until one whole frame is buffered; `Ok(None)` when the peer closed first.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    rx: &mut BytesMut,
    max: u32,
) -> Result<Option<bytes::Bytes>, ConnError> {
    loop {
        if let Some(len) = frame_len(rx, max).map_err(ProtocolError::from)? {
            return Ok(Some(rx.split_to(len).freeze()));
        }
        // CONNECT packets are small; a larger one grows the buffer as it arrives.
        rx.reserve(256);
        if rd.read_buf(rx).await? == 0 {
            return Ok(None);
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> Result<(), ConnError> {
    match timeout(limit, wr.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnError::WriteTimeout),
    }
}

/// What a connection brings from the accept loop: its peer (given where no `info` span names the connection, see
/// [`log_end`]), the one deadline for everything before an accepted CONNECT (TLS, WebSocket upgrade and CONNECT
/// together), and its place under the cap on pending handshakes, given back once CONNECT is accepted.
pub(crate) struct Arrival {
    pub peer: Option<SocketAddr>,
    pub deadline: Instant,
    pub handshake: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The listener's counters (a refused CONNECT is counted there).
    pub listener: Arc<crate::metrics::ListenerMetrics>,
}

/// Serves one connection until it ends. Errors are logged here; nothing propagates to the listener.
///
/// Its future is what a connection costs while it waits, so it stays small: the CONNECT exchange runs in a boxed
/// future of its own that owns the stream, the context and the link until it hands back the session, and the
/// session loop pins its timer and waits once. `link.kick` should be a child of `stop` (see [`crate::listener`]):
/// then one wait covers both takeover and shutdown.
///
/// `guard` (the connection's places under the connection caps) is held until the connection has ended.
pub(crate) fn serve<S: Stream, G: Send + 'static>(
    stream: S,
    ctx: Context,
    cfg: Arc<ConnSettings>,
    link: ConnLink,
    stop: CancellationToken,
    guard: G,
    arrival: Arrival,
) -> impl Future<Output = ()> {
    let kick = link.clone();
    let Arrival { peer, deadline, handshake, listener } = arrival;
    let accept = Box::pin(accept(stream, ctx, cfg.clone(), link, stop.clone(), (deadline, handshake)));
    async move {
        let _guard = guard;
        let (mut stream, mut rx, mut session) = match accept.await {
            Ok(accepted) => accepted,
            Err(e) => {
                if let ConnError::Refused(code, _) = &e {
                    listener.refused_connect(code.to_u8());
                }
                return log_end(Err(e), peer, None);
            }
        };
        tracing::Span::current().record("client_id", tracing::field::debug(Untrusted(session.client_id())));
        let mut result = serve_session(&mut session, &mut stream, &mut rx, &cfg, &kick, &stop).await;
        if matches!(result, Err(ConnError::Kicked(ReasonCode::SessionTakenOver))) && !stop.is_cancelled() {
            if let Some(last) = last_words(&mut session, &mut stream, &mut rx, &cfg).await {
                result = last;
            }
        }
        // The session's last acts come before any more I/O: a connection waiting to take the session over goes on
        // as soon as this one has detached.
        let mut out = std::mem::take(session.output());
        let durable = session.take_durable_wait().zip(session.durable().cloned());
        let farewell = farewell_reason(&result).and_then(|r| session.disconnect_packet(r));
        let client_id = session.handle().client_id.clone();
        session.close(Instant::now());
        // Acknowledgements go out only once what they answer for is durable; else they are not sent at all.
        if let Some((lsn, durable)) = durable
            && !matches!(timeout(FAREWELL_TIMEOUT, durable.wait(lsn)).await, Ok(Ok(())))
        {
            out.clear();
        }
        out.extend_from_slice(&farewell.unwrap_or_default());
        if !out.is_empty() {
            let _ = write_all(&mut stream, &out, FAREWELL_TIMEOUT).await;
        }
        let _ = timeout(FAREWELL_TIMEOUT, stream.shutdown()).await;
        log_end(result, peer, Some(&client_id));
    }
}

/// The reason an MQTT 5 client is told in a DISCONNECT before the server closes, if the server closes.
fn farewell_reason(result: &Result<(), ConnError>) -> Option<ReasonCode> {
    match result {
        Err(ConnError::Protocol(e)) => Some(e.reason_code()),
        Err(ConnError::Kicked(reason)) => Some(*reason),
        Err(ConnError::Shutdown) => Some(ReasonCode::ServerShuttingDown),
        Err(ConnError::Store(_)) => Some(ReasonCode::UnspecifiedError),
        _ => None,
    }
}

/// Acts on what a connection that was taken over had already received when it was told to close: its last
/// PUBLISH packets are routed, and a DISCONNECT among them discards the will and may end the session, as it would
/// have had the connection read it earlier. Reads only what has arrived (and at most [`LAST_WORDS_MAX`] bytes):
/// nothing that comes later belongs to this connection. `Some` is how the connection ended when its last words
/// say so (a DISCONNECT, or a protocol error); `None` leaves it taken over.
async fn last_words<S: Stream>(
    session: &mut Session,
    stream: &mut S,
    rx: &mut BytesMut,
    cfg: &ConnSettings,
) -> Option<Result<(), ConnError>> {
    let mut budget = LAST_WORDS_MAX;
    loop {
        let now = Instant::now();
        loop {
            let len = match frame_len(rx, cfg.max_packet_size) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return Some(Err(ProtocolError::from(e).into())),
            };
            let frame = rx.split_to(len).freeze();
            match session.on_packet(now, &frame) {
                Ok(Flow::Disconnect) => return Some(Ok(())),
                Ok(Flow::Continue) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
        if budget == 0 {
            return None;
        }
        rx.reserve(MIN_READ);
        // What the stream has buffered is read at once; what waits in the kernel, which the runtime may not have
        // noticed yet, within a short wait.
        let read = match timeout(Duration::ZERO, stream.read_buf(rx)).await {
            Ok(read) => read,
            Err(_) if stream.input_pending() => timeout(LAST_WORDS_WAIT, stream.read_buf(rx)).await.ok()?,
            Err(_) => return None,
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}

/// Logs how a connection ended. A plain TCP connection has a `conn` span only at `debug` level (a span costs about
/// 500 bytes per connection for as long as it lives), so its `info` line names the peer and client id itself;
/// TLS and WebSocket connections keep an `info` span that names them.
fn log_end(result: Result<(), ConnError>, peer: Option<SocketAddr>, client_id: Option<&str>) {
    match result {
        Ok(()) => tracing::debug!("disconnected"),
        Err(e @ (ConnError::Closed | ConnError::Kicked(ReasonCode::SessionTakenOver) | ConnError::Shutdown)) => {
            tracing::debug!(reason = %e, "closed")
        }
        Err(e) => match peer {
            Some(peer) => {
                let refused_id = match &e {
                    ConnError::Refused(_, id) => Some(&**id),
                    _ => None,
                };
                let client_id = Untrusted(client_id.or(refused_id).unwrap_or_default());
                conn_event!(INFO, %peer, ?client_id, reason = %e, "connection closed");
            }
            None => conn_event!(INFO, reason = %e, "connection closed"),
        },
    }
}

/// Reads CONNECT (and AUTH packets) by the connection's deadline and answers it: the stream, what is buffered
/// after the CONNECT and the session when accepted; a refused client has had its CONNACK and the stream is shut
/// down. The handshake permit is given back when this ends.
async fn accept<S: Stream>(
    mut stream: S,
    ctx: Context,
    cfg: Arc<ConnSettings>,
    link: ConnLink,
    stop: CancellationToken,
    (deadline, _handshake): (Instant, Option<tokio::sync::OwnedSemaphorePermit>),
) -> Result<(S, BytesMut, Session), ConnError> {
    let mut rx = BytesMut::new();
    let session = handshake_on(&mut stream, &mut rx, ctx, &cfg, link, &stop, deadline).await?;
    Ok((stream, rx, session))
}

async fn handshake_on<S: Stream>(
    stream: &mut S,
    rx: &mut BytesMut,
    ctx: Context,
    cfg: &ConnSettings,
    link: ConnLink,
    stop: &CancellationToken,
    deadline: Instant,
) -> Result<Session, ConnError> {
    let mut link = link;
    link.info = Some(Arc::new(crate::router::ConnInfo::new(stream.peer_addr())));
    // Before CONNECT is accepted, packets are held to the smaller pre-CONNECT limit: a connection that has not
    // identified itself cannot make the broker buffer a maximum-size packet.
    let max = cfg.max_connect_packet_size.min(cfg.max_packet_size);
    let first = tokio::select! {
        r = tokio::time::timeout_at(deadline, read_frame(stream, rx, max)) => {
            r.map_err(|_| ConnError::ConnectTimeout(cfg.connect_timeout))?
        }
        () = stop.cancelled() => return Err(ConnError::Shutdown),
    };
    let Some(mut frame) = first? else { return Err(ConnError::Closed) };
    let connect = frame.clone();
    // Authentication (may await a backend and the failed-login backoff) before the session sees the CONNECT.
    let login = crate::auth::login(ctx, &frame, stream.peer_addr(), link.id, deadline);
    let mut step = match login.await {
        Ok(ctx) => handshake(ctx, &frame, link, Instant::now()).map_err(|e| match e {
            ProtocolError::Unexpected(_) => ConnError::NotConnect,
            e => ConnError::Protocol(e),
        })?,
        Err(refused) => Handshake::Refused(refused),
    };
    // MQTT 5 enhanced authentication may take several AUTH round trips, all within the same deadline.
    let mut takeover_deadline = None;
    loop {
        match step {
            Handshake::Accepted(session) => return Ok(*session),
            Handshake::Refused(refused) => {
                write_all(stream, &refused.connack, cfg.write_timeout).await?;
                let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
                // The log names the client (no session that would know it came to be).
                let client_id = match mqtt_codec::decode(&connect, mqtt_codec::ProtocolVersion::V311) {
                    Ok(mqtt_codec::Packet::Connect(c)) => c.client_id.into(),
                    _ => Box::default(),
                };
                return Err(ConnError::Refused(refused.code, client_id));
            }
            Handshake::Auth(pending) => {
                write_all(stream, &pending.out, cfg.write_timeout).await?;
                let next = tokio::select! {
                    r = tokio::time::timeout_at(deadline, read_frame(stream, rx, max)) => {
                        r.map_err(|_| ConnError::ConnectTimeout(cfg.connect_timeout))?
                    }
                    () = stop.cancelled() => return Err(ConnError::Shutdown),
                };
                let Some(next) = next? else { return Err(ConnError::Closed) };
                frame = next;
                step = pending.on_packet(&frame, Instant::now())?;
            }
            Handshake::TakingOver(takeover) => {
                // Another connection holds the session and was told to close: the CONNACK waits until it has
                // closed and its last acts (its will, the end of its session) are applied, or until it failed to
                // within TAKEOVER_WAIT.
                let ended = takeover.connection_ended();
                let notified = ended.notified();
                tokio::pin!(notified);
                // Listening before looking again, so an end in between is not missed.
                notified.as_mut().enable();
                step = takeover.resume(Instant::now(), false)?;
                if let Handshake::TakingOver(takeover) = step {
                    let deadline = *takeover_deadline.get_or_insert_with(|| Instant::now() + TAKEOVER_WAIT);
                    let force = tokio::select! {
                        r = tokio::time::timeout_at(deadline, notified) => r.is_err(),
                        () = stop.cancelled() => return Err(ConnError::Shutdown),
                    };
                    if force {
                        tracing::warn!(
                            client_id = takeover.client_id(),
                            "the connection taken over did not close in time"
                        );
                    }
                    step = takeover.resume(Instant::now(), force)?;
                }
            }
        }
    }
}

/// Serves the session until the connection ends. Output still held for the journal when it ends (see
/// [`HeldOutput`]) goes back to the session, in front of what it left, to go out at the farewell once durable.
async fn serve_session<S: Stream>(
    session: &mut Session,
    stream: &mut S,
    rx: &mut BytesMut,
    cfg: &ConnSettings,
    kick: &ConnLink,
    stop: &CancellationToken,
) -> Result<(), ConnError> {
    let mut held = HeldOutput::default();
    let result = serve_loop(session, stream, rx, cfg, kick, stop, &mut held).await;
    if let Some(lsn) = held.into_output(session.output()) {
        session.wait_until_durable(lsn);
    }
    result
}

async fn serve_loop<S: Stream>(
    session: &mut Session,
    stream: &mut S,
    rx: &mut BytesMut,
    cfg: &ConnSettings,
    kick: &ConnLink,
    stop: &CancellationToken,
    held: &mut HeldOutput,
) -> Result<(), ConnError> {
    let handle = session.handle().clone();
    let durable = session.durable().cloned();
    let mut read_size = MIN_READ;
    // One timer, one takeover wait and one shutdown wait serve every turn of the loop (the timer for the keep alive
    // deadline, the buffer release and the write timeout alike): fewer futures in this state machine, and no timer
    // registered and dropped per wakeup.
    // The kick token is a child of the shutdown token, so this one wait ends the connection for either reason.
    let kicked = kick.kick.cancelled();
    let ended = || if stop.is_cancelled() { ConnError::Shutdown } else { ConnError::Kicked(kick.kick_reason()) };
    let timer = sleep_until(Instant::now() + IDLE_SHRINK_AFTER);
    tokio::pin!(kicked, timer);
    loop {
        // Everything already buffered, in order; one clock reading serves the whole batch.
        let now = Instant::now();
        while let Some(len) = frame_len(rx, cfg.max_packet_size).map_err(ProtocolError::from)? {
            let frame = rx.split_to(len).freeze();
            if session.on_packet(now, &frame)? == Flow::Disconnect {
                // What the DISCONNECT left in the output goes out after the session has closed (see `serve`).
                return Ok(());
            }
        }
        let more = session.poll_outbox(now)?;
        // Acknowledgements wait until what they answer for is durable (see `crate::persist`); one fsync of the
        // journal covers every connection waiting at the time. The output waits in `held`, in order, while the
        // connection goes on reading: what the client sends meanwhile is journaled for the next commit.
        let wait = session.take_durable_wait();
        if let Some(durable) = &durable {
            let out = session.output();
            held.hold(durable, wait, out);
            held.release(durable, out);
        }
        let out = session.output();
        if !out.is_empty() {
            let bytes = std::mem::take(out);
            timer.as_mut().reset(now + cfg.write_timeout);
            tokio::select! {
                r = stream.write_all(&bytes) => r?,
                () = &mut timer => return Err(ConnError::WriteTimeout),
                () = &mut kicked => return Err(ended()),
            }
            // Keep the allocation for the next batch.
            let mut bytes = bytes;
            bytes.clear();
            *session.output() = bytes;
        }
        if more {
            // Come back for the rest after giving the socket's read side a turn.
            handle.wake.notify_one();
        }
        // Messages published here left a subscriber far behind: wait for it (bounded) before reading more, so that
        // TCP holds the publisher's backlog rather than the broker's memory.
        if let Some(slow) = session.take_backlogged() {
            tokio::select! {
                // Boxed: a rare wait, and the largest future of this loop.
                () = Box::pin(slow.caught_up(BACKLOG_WAIT)) => {}
                () = &mut kicked => return Err(ended()),
            }
        }
        // A quiet connection with nothing buffered waits without buffers: most devices send a few bytes a minute, and
        // a gateway holds thousands of them. Busier ones keep theirs and give them back after a while without
        // traffic; the next read starts small and grows again with the traffic.
        let lean = S::WAITS_WITHOUT_BUFFER && rx.is_empty() && read_size == MIN_READ;
        let shrink_at = if lean {
            if rx.capacity() > 0 {
                *rx = BytesMut::new();
            }
            if session.output().capacity() > 0 {
                *session.output() = Vec::new();
            }
            None
        } else {
            let holds_buffers =
                rx.is_empty() && (rx.capacity() > IDLE_BUFFER || session.output().capacity() > IDLE_BUFFER);
            if !(rx.is_empty() && rx.capacity() == 0) && rx.capacity() - rx.len() < read_size / 2 {
                rx.reserve(read_size);
            }
            holds_buffers.then(|| now + IDLE_SHRINK_AFTER)
        };
        let deadline = match (session.next_deadline(), shrink_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline
            && timer.deadline() != d
        {
            timer.as_mut().reset(d);
        }
        // Output held for the journal bounds what is read meanwhile (a client ignoring its window).
        let reading = held.bytes() < HELD_MAX;
        let held_wait = held.next_wait().zip(durable.as_ref());
        tokio::select! {
            r = async { held_wait?.1.wait(held_wait?.0).await.err() }, if held_wait.is_some() => {
                if let Some(e) = r {
                    return Err(e.into());
                }
            }
            r = read_some(stream, rx, lean, read_size), if reading => {
                // Readable, yet nothing to read: wait again (without a buffer).
                let Some((n, spare)) = r? else { continue };
                if n == 0 {
                    return Err(ConnError::Closed);
                }
                // Reads grow while they fill the buffer (a busy publisher) and shrink back when they don't (a sensor
                // sending a few bytes), so memory follows the traffic.
                read_size = if n >= spare { (read_size * 2).min(MAX_READ) } else if n < read_size / 4 { (read_size / 2).max(MIN_READ) } else { read_size };
            }
            () = handle.wake.notified(), if reading => {}
            () = &mut timer, if deadline.is_some() => {
                let now = Instant::now();
                session.on_timeout(now)?;
                if shrink_at.is_some_and(|t| now >= t) && rx.is_empty() {
                    *rx = BytesMut::new();
                    *session.output() = Vec::new();
                }
            }
            () = &mut kicked => return Err(ended()),
        }
    }
}

/// One read: `Some((bytes read, room offered))`, or `None` when a lean wait saw readiness but the read found
/// nothing. A `lean` read waits for readability first and only then takes a buffer of `size` bytes.
///
/// # Cancel safety
/// Cancel safe: a lean read moves bytes only after its one wait, without awaiting; `read_buf` is cancel safe.
async fn read_some<S: Stream>(
    stream: &mut S,
    rx: &mut BytesMut,
    lean: bool,
    size: usize,
) -> io::Result<Option<(usize, usize)>> {
    if lean {
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        rx.reserve(size);
        let spare = rx.capacity() - rx.len();
        match stream.try_read_buf(rx) {
            Ok(n) => Ok(Some((n, spare))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    } else {
        let spare = rx.capacity() - rx.len();
        stream.read_buf(rx).await.map(|n| Some((n, spare)))
    }
}

/// Smallest and largest buffer space offered to one `read`. Payloads are slices of the read buffer, so a queued
/// message keeps its whole buffer alive: 8 KiB bounds that overhead (64 KiB reads raised the peak memory of a
/// backlogged fan-in tenfold) while still taking many small packets per system call.
const MIN_READ: usize = 512;
const MAX_READ: usize = 8 * 1024;
/// Most output bytes held for the journal (see [`HeldOutput`]) before the connection stops reading until some is
/// released: a client within its window never gets there (a window of 65,535 PUBACKs is 262,140 bytes).
const HELD_MAX: usize = 512 * 1024;
/// Longest a publisher waits for a backlogged subscriber (see [`Session::take_backlogged`]) before it reads again.
const BACKLOG_WAIT: Duration = Duration::from_millis(50);
/// Buffers larger than this are released when the connection is idle.
const IDLE_BUFFER: usize = 256;
/// How long a connection is idle before it releases its buffers.
const IDLE_SHRINK_AFTER: Duration = Duration::from_secs(2);
/// How long a connection taking a session over waits for the connection that holds it to close before it takes
/// the session anyway. Closing takes no I/O but reading what was already received, so this is ample.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// Most bytes a connection taken over reads of what it had received (see [`last_words`]).
const LAST_WORDS_MAX: usize = 64 * 1024;
/// How long a connection taken over waits for bytes that the kernel already holds.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(100);
/// Longest the last write (the DISCONNECT, what the session left) and the shutdown of a closing connection take.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
