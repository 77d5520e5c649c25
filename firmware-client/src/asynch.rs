//! The async front end over `embedded_io_async::{Read, Write}` (feature `async`), for embassy-net, tokio adapters
//! and the like.
//!
//! The client never waits on a clock of its own: run [`Client::poll`] against a timer for
//! [`Client::next_deadline`] (for example `embassy_futures::select` with `embassy_time::Timer::at`), then call
//! `poll` again with the new `now`; a `read` that has nothing to return just keeps waiting.
//!
//! # Cancel safety
//! [`Client::poll`] and [`Client::flush`] are cancel-safe when the transport's `read` and `write` are (embassy-net's
//! `TcpSocket` and tokio's streams are): received bytes stay in the receive buffer and the transmit cursor only moves
//! after a `write` returns, so a dropped future loses nothing and the next call carries on. [`Client::connect`] and
//! [`Client::disconnect`] are not cancel-safe: after cancelling one, call `connect` again.

use embedded_io_async::{Read, Write};

use crate::blocking::ClientError;
use crate::conn::Buffers;
use crate::{Event, Instant, Message, PacketId, QoS, Rejected, Session, SubId};

/// An async MQTT client: a [`Session`] plus a transport and the receive and transmit buffers.
pub struct Client<'a, T, const INFLIGHT: usize, const SUBS: usize, const TOPIC: usize> {
    transport: Option<T>,
    session: Session<'a, INFLIGHT, SUBS, TOPIC>,
    bufs: Buffers<'a>,
}

impl<'a, T: Read + Write, const INFLIGHT: usize, const SUBS: usize, const TOPIC: usize>
    Client<'a, T, INFLIGHT, SUBS, TOPIC>
{
    /// A client without a transport yet. `rx` must hold the largest packet the broker may send, `tx` the largest
    /// the client sends; at most 65,535 bytes of each are used.
    pub fn new(mut session: Session<'a, INFLIGHT, SUBS, TOPIC>, rx: &'a mut [u8], tx: &'a mut [u8]) -> Self {
        let bufs = Buffers::new(rx, tx);
        let (rx_len, tx_len) = bufs.limits();
        session.set_buffer_limits(rx_len, tx_len);
        Self { transport: None, session, bufs }
    }

    /// The sans-IO session, for everything the client does not forward.
    pub fn session(&mut self) -> &mut Session<'a, INFLIGHT, SUBS, TOPIC> {
        &mut self.session
    }

    /// When `poll` must be called again even if nothing arrives (keepalive, response timeouts).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.session.next_deadline()
    }

    /// Starts a connection over a freshly opened transport and sends CONNECT; [`Event::Connected`] comes from
    /// [`Client::poll`]. Returns the previous transport, if any.
    ///
    /// # Errors
    /// When CONNECT cannot be written.
    pub async fn connect(&mut self, transport: T, now: Instant) -> Result<Option<T>, ClientError<T::Error>> {
        let old = self.transport.replace(transport);
        self.bufs.reset();
        self.session.connect(now);
        self.flush(now).await?;
        Ok(old)
    }

    /// Starts a new connection over the current transport, which the caller has reopened in place (an
    /// embassy-net `TcpSocket`, for example, is reused: `abort`, then `connect` again); see
    /// [`Client::transport_mut`].
    ///
    /// # Errors
    /// [`ClientError::NoTransport`], or when CONNECT cannot be written.
    pub async fn reconnect(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        if self.transport.is_none() {
            return Err(ClientError::NoTransport);
        }
        self.bufs.reset();
        self.session.connect(now);
        self.flush(now).await
    }

    /// The transport, to reopen it in place before [`Client::reconnect`].
    pub fn transport_mut(&mut self) -> Option<&mut T> {
        self.transport.as_mut()
    }

    /// Queues a publish (see [`Session::publish`]).
    ///
    /// # Errors
    /// As [`Session::publish`].
    pub fn publish<'m>(&mut self, msg: Message<'m>) -> Result<Option<PacketId>, Rejected<Message<'m>>> {
        self.session.publish(msg)
    }

    /// Adds a subscription (see [`Session::subscribe`]).
    ///
    /// # Errors
    /// As [`Session::subscribe`].
    pub fn subscribe<'f>(&mut self, filter: &'f str, qos: QoS) -> Result<SubId, Rejected<&'f str>> {
        self.session.subscribe(filter, qos)
    }

    /// Removes a subscription (see [`Session::unsubscribe`]).
    pub fn unsubscribe(&mut self, sub: SubId) {
        self.session.unsubscribe(sub);
    }

    /// Writes everything the session has to send. Cancel-safe (see the module doc).
    ///
    /// # Errors
    /// Transport errors; the link is then down.
    pub async fn flush(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        let r = self.flush_inner(now).await;
        if r.is_err() {
            self.session.on_connection_lost();
        }
        r
    }

    async fn flush_inner(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        let t = self.transport.as_mut().ok_or(ClientError::NoTransport)?;
        let mut wrote = false;
        loop {
            let pending = self.bufs.pending_tx(&mut self.session, now)?;
            if pending.is_empty() {
                break;
            }
            let n = t.write(pending).await.map_err(ClientError::Transport)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.bufs.sent(n);
            wrote = true;
        }
        if wrote {
            t.flush().await.map_err(ClientError::Transport)?;
        }
        Ok(())
    }

    /// Does one round of work: keepalive, sending everything queued, then either handling one buffered packet or
    /// waiting for one `read`. Returns the event the packet produced, if any. Cancel-safe (see the module doc).
    ///
    /// # Errors
    /// The link is dead: reconnect with [`Client::connect`]. The session keeps its state.
    pub async fn poll(&mut self, now: Instant) -> Result<Option<Event<'_>>, ClientError<T::Error>> {
        self.bufs.release();
        if let Err(e) = self.drive(now).await {
            self.session.on_connection_lost();
            return Err(e);
        }
        self.bufs.next_event(&mut self.session, now).map_err(ClientError::Session)
    }

    async fn drive(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        self.session.poll_timeout(now)?;
        self.flush_inner(now).await?;
        if self.bufs.has_frame()? {
            return Ok(());
        }
        let t = self.transport.as_mut().ok_or(ClientError::NoTransport)?;
        match t.read(self.bufs.read_buf()).await {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.bufs.received(n);
                Ok(())
            }
            Err(e) => Err(ClientError::Transport(e)),
        }
    }

    /// Sends DISCONNECT and hands the transport back for closing. The session is kept for a later `connect`.
    ///
    /// # Errors
    /// Transport errors while sending DISCONNECT.
    pub async fn disconnect(&mut self, now: Instant) -> Result<Option<T>, ClientError<T::Error>> {
        self.session.disconnect();
        let r = self.flush(now).await;
        self.session.on_connection_lost();
        r.map(|()| self.transport.take())
    }
}
