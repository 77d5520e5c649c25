//! One client connection: the only place that reads and writes its socket.
//!
//! The task reads bytes, cuts them into frames with [`frame_len`], hands each frame to the [`Session`], and writes
//! what the session produced in one `write_all` per wakeup (responses and queued deliveries batched together).
//! It waits on four things at once: the socket, the session's wake signal (new messages queued), the keep alive
//! deadline, and takeover or shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{ReasonCode, frame_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::router::ConnLink;
use crate::session::{Context, Flow, Handshake, ProtocolError, Session, handshake};

/// Per-connection settings.
#[derive(Debug, Clone)]
pub(crate) struct ConnSettings {
    pub max_packet_size: u32,
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
    Refused(ReasonCode),
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

/// Serves one connection until it ends. Errors are logged here; nothing propagates to the listener.
pub(crate) async fn serve<S>(stream: S, ctx: Context, cfg: Arc<ConnSettings>, link: ConnLink, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match run(stream, ctx, &cfg, link, &stop).await {
        Ok(()) => tracing::debug!("disconnected"),
        Err(e @ (ConnError::Closed | ConnError::Kicked(ReasonCode::SessionTakenOver) | ConnError::Shutdown)) => {
            tracing::debug!(reason = %e, "closed")
        }
        Err(e) => tracing::info!(reason = %e, "connection closed"),
    }
}

async fn run<S>(
    stream: S,
    ctx: Context,
    cfg: &ConnSettings,
    link: ConnLink,
    stop: &CancellationToken,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut rx = BytesMut::new();

    let first = tokio::select! {
        r = timeout(cfg.connect_timeout, read_frame(&mut rd, &mut rx, cfg.max_packet_size)) => {
            r.map_err(|_| ConnError::ConnectTimeout(cfg.connect_timeout))?
        }
        () = stop.cancelled() => return Err(ConnError::Shutdown),
    };
    let Some(mut frame) = first? else { return Err(ConnError::Closed) };
    let kick = link.clone();
    let mut step = handshake(ctx, &frame, link, Instant::now()).map_err(|e| match e {
        ProtocolError::Unexpected(_) => ConnError::NotConnect,
        e => ConnError::Protocol(e),
    })?;
    // MQTT 5 enhanced authentication may take several AUTH round trips, all within the CONNECT deadline.
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut session = loop {
        match step {
            Handshake::Accepted(session) => break *session,
            Handshake::Refused(refused) => {
                write_all(&mut wr, &refused.connack, cfg.write_timeout).await?;
                let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
                return Err(ConnError::Refused(refused.code));
            }
            Handshake::Auth(pending) => {
                write_all(&mut wr, &pending.out, cfg.write_timeout).await?;
                let next = tokio::select! {
                    r = tokio::time::timeout_at(deadline, read_frame(&mut rd, &mut rx, cfg.max_packet_size)) => {
                        r.map_err(|_| ConnError::ConnectTimeout(cfg.connect_timeout))?
                    }
                    () = stop.cancelled() => return Err(ConnError::Shutdown),
                };
                let Some(next) = next? else { return Err(ConnError::Closed) };
                frame = next;
                step = pending.on_packet(&frame, Instant::now())?;
            }
        }
    };
    tracing::Span::current().record("client_id", session.client_id());
    drop(frame);

    let result = serve_session(&mut session, &mut rd, &mut wr, &mut rx, cfg, &kick, stop).await;
    // Tell an MQTT 5 client why the server is closing, as far as the socket still takes it.
    let reason = match &result {
        Err(ConnError::Protocol(e)) => Some(e.reason_code()),
        Err(ConnError::Kicked(reason)) => Some(*reason),
        Err(ConnError::Shutdown) => Some(ReasonCode::ServerShuttingDown),
        _ => None,
    };
    if let Some(bytes) = reason.and_then(|r| session.disconnect_packet(r)) {
        let _ = write_all(&mut wr, &bytes, Duration::from_secs(1)).await;
    }
    let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
    session.close(Instant::now());
    result
}

async fn serve_session<R, W>(
    session: &mut Session,
    rd: &mut R,
    wr: &mut W,
    rx: &mut BytesMut,
    cfg: &ConnSettings,
    kick: &ConnLink,
    stop: &CancellationToken,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let handle = session.handle().clone();
    let mut read_size = MIN_READ;
    loop {
        // Everything already buffered, in order; one clock reading serves the whole batch.
        let now = Instant::now();
        while let Some(len) = frame_len(rx, cfg.max_packet_size).map_err(ProtocolError::from)? {
            let frame = rx.split_to(len).freeze();
            if session.on_packet(now, &frame)? == Flow::Disconnect {
                let out = std::mem::take(session.output());
                write_all(wr, &out, cfg.write_timeout).await?;
                return Ok(());
            }
        }
        let more = session.poll_outbox(now)?;
        let out = session.output();
        if !out.is_empty() {
            let bytes = std::mem::take(out);
            tokio::select! {
                r = write_all(wr, &bytes, cfg.write_timeout) => r?,
                () = kick.kick.cancelled() => return Err(ConnError::Kicked(kick.kick_reason())),
                () = stop.cancelled() => return Err(ConnError::Shutdown),
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
        // An idle connection gives its buffers back after a while: most devices send a few bytes a minute, and a
        // gateway holds thousands of them. The next read starts small and grows again with the traffic.
        let holds_buffers = rx.is_empty() && (rx.capacity() > IDLE_BUFFER || session.output().capacity() > IDLE_BUFFER);
        let shrink_at = holds_buffers.then(|| now + IDLE_SHRINK_AFTER);
        if !(rx.is_empty() && rx.capacity() == 0) && rx.capacity() - rx.len() < read_size / 2 {
            rx.reserve(read_size);
        }
        let spare = rx.capacity() - rx.len();
        let deadline = match (session.next_deadline(), shrink_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            r = rd.read_buf(rx) => {
                let n = r?;
                if n == 0 {
                    return Err(ConnError::Closed);
                }
                // Reads grow while they fill the buffer (a busy publisher) and shrink back when they don't (a sensor
                // sending a few bytes), so memory follows the traffic.
                read_size = if n >= spare { (read_size * 2).min(MAX_READ) } else if n < read_size / 4 { (read_size / 2).max(MIN_READ) } else { read_size };
            }
            () = handle.wake.notified() => {}
            () = sleep_until_opt(deadline) => {
                let now = Instant::now();
                session.on_timeout(now)?;
                if shrink_at.is_some_and(|t| now >= t) && rx.is_empty() {
                    *rx = BytesMut::new();
                    *session.output() = Vec::new();
                }
            }
            () = kick.kick.cancelled() => return Err(ConnError::Kicked(kick.kick_reason())),
            () = stop.cancelled() => return Err(ConnError::Shutdown),
        }
    }
}

/// Smallest and largest buffer space offered to one `read`. Payloads are slices of the read buffer, so a queued
/// message keeps its whole buffer alive: 8 KiB bounds that overhead (64 KiB reads raised the peak memory of a
/// backlogged fan-in tenfold) while still taking many small packets per system call.
const MIN_READ: usize = 512;
const MAX_READ: usize = 8 * 1024;
/// Buffers larger than this are released when the connection is idle.
const IDLE_BUFFER: usize = 256;
/// How long a connection is idle before it releases its buffers.
const IDLE_SHRINK_AFTER: Duration = Duration::from_secs(2);

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}
