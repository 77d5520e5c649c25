//! The blocking front end over `embedded_io::{Read, Write}`.
//!
//! # What the transport must do when no data is available
//! [`Client::poll`] calls `read` at most once, and only when no whole packet is buffered. `read` may block, but it
//! must return within a bounded time (well under the keep alive interval) so that keepalive and outgoing messages
//! are served: give the socket a read timeout and return an error whose [`embedded_io::ErrorKind`] is `TimedOut`.
//! The client treats `TimedOut` as "nothing arrived" and `Ok(0)` as the end of the connection. Any other error ends
//! the connection: call [`Client::connect`] with a new transport to resume the session.

use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::conn::Buffers;
use crate::{Error, Event, Instant, Message, PacketId, QoS, Rejected, Session, SubId};

/// What went wrong in a front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError<E> {
    /// The transport failed.
    Transport(E),
    /// The session declared the link dead (protocol error, refusal, timeout).
    Session(Error),
    /// The broker closed the connection.
    Closed,
    /// No transport: call `connect` first.
    NoTransport,
}

impl<E> From<Error> for ClientError<E> {
    fn from(e: Error) -> Self {
        Self::Session(e)
    }
}

/// A blocking MQTT client: a [`Session`] plus a transport and the receive and transmit buffers.
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

    /// Starts a connection over a freshly opened transport and sends CONNECT; [`Event::Connected`] comes from
    /// [`Client::poll`]. Returns the previous transport, if any.
    ///
    /// # Errors
    /// When CONNECT cannot be written; the session then waits for the next `connect`.
    pub fn connect(&mut self, transport: T, now: Instant) -> Result<Option<T>, ClientError<T::Error>> {
        let old = self.transport.replace(transport);
        self.bufs.reset();
        self.session.connect(now);
        self.flush(now)?;
        Ok(old)
    }

    /// Starts a new connection over the current transport, which the caller has reopened in place (an
    /// embassy-net `TcpSocket`, for example, is reused: `abort`, then `connect` again); see
    /// [`Client::transport_mut`].
    ///
    /// # Errors
    /// [`ClientError::NoTransport`], or when CONNECT cannot be written.
    pub fn reconnect(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        if self.transport.is_none() {
            return Err(ClientError::NoTransport);
        }
        self.bufs.reset();
        self.session.connect(now);
        self.flush(now)
    }

    /// The transport, to reopen it in place before [`Client::reconnect`].
    pub fn transport_mut(&mut self) -> Option<&mut T> {
        self.transport.as_mut()
    }

    /// Queues a publish (see [`Session::publish`]); it goes out on the next `poll` or `flush`.
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

    /// Writes everything the session has to send.
    ///
    /// # Errors
    /// Transport errors; the link is then down.
    pub fn flush(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        let r = self.flush_inner(now);
        if r.is_err() {
            self.session.on_connection_lost();
        }
        r
    }

    fn flush_inner(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        let t = self.transport.as_mut().ok_or(ClientError::NoTransport)?;
        let mut wrote = false;
        loop {
            let pending = self.bufs.pending_tx(&mut self.session, now)?;
            if pending.is_empty() {
                break;
            }
            let n = t.write(pending).map_err(ClientError::Transport)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.bufs.sent(n);
            wrote = true;
        }
        if wrote {
            t.flush().map_err(ClientError::Transport)?;
        }
        Ok(())
    }

    /// Does one round of work: keepalive, sending everything queued, then either handling one buffered packet or
    /// one `read`. Returns the event the packet produced, if any; call it in a loop.
    ///
    /// # Errors
    /// The link is dead: reconnect with [`Client::connect`]. The session keeps its state.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Event<'_>>, ClientError<T::Error>> {
        self.bufs.release();
        if let Err(e) = self.drive(now) {
            self.session.on_connection_lost();
            return Err(e);
        }
        self.bufs.next_event(&mut self.session, now).map_err(ClientError::Session)
    }

    fn drive(&mut self, now: Instant) -> Result<(), ClientError<T::Error>> {
        self.session.poll_timeout(now)?;
        self.flush_inner(now)?;
        if self.bufs.has_frame()? {
            return Ok(());
        }
        let t = self.transport.as_mut().ok_or(ClientError::NoTransport)?;
        match t.read(self.bufs.read_buf()) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.bufs.received(n);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => Ok(()),
            Err(e) => Err(ClientError::Transport(e)),
        }
    }

    /// Sends DISCONNECT and hands the transport back for closing. The session is kept for a later `connect`.
    ///
    /// # Errors
    /// Transport errors while sending DISCONNECT.
    pub fn disconnect(&mut self, now: Instant) -> Result<Option<T>, ClientError<T::Error>> {
        self.session.disconnect();
        let r = self.flush(now);
        self.session.on_connection_lost();
        r.map(|()| self.transport.take())
    }
}
