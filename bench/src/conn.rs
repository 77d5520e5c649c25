//! One MQTT client connection driven by hand: packets are encoded with `mqtt-codec` into a write buffer, bytes are
//! moved with non-blocking `try_read`/`try_write` after one readiness wait, and received packets are decoded in
//! place from the read buffer. One task owns a connection, so a publisher reads its acks and writes its next
//! messages without a second task or a channel.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mqtt_codec::{
    Ack, Connect, List, Packet, PacketId, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter,
};
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

/// The protocol version the generator speaks: MQTT 3.1.1, which every broker under test serves.
pub const VERSION: ProtocolVersion = ProtocolVersion::V311;
const MAX_PACKET: u32 = 16 * 1024 * 1024;
const READ_CHUNK: usize = 128 * 1024;

/// Errors of one connection.
#[derive(Debug)]
pub enum ConnError {
    /// Socket error.
    Io(io::Error),
    /// The broker closed the connection.
    Closed,
    /// The broker sent bytes that do not decode.
    Decode(mqtt_codec::DecodeError),
    /// A packet could not be encoded (a bug in the generator).
    Encode(mqtt_codec::EncodeError),
    /// The broker refused or answered out of turn.
    Protocol(String),
    /// A wait ran out.
    Timeout(&'static str),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Closed => f.write_str("connection closed by the broker"),
            Self::Decode(e) => write!(f, "decode: {e:?}"),
            Self::Encode(e) => write!(f, "encode: {e:?}"),
            Self::Protocol(s) => write!(f, "protocol: {s}"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Where packets to send are encoded.
pub struct Out<'a> {
    buf: &'a mut Vec<u8>,
}

impl Out<'_> {
    /// Appends one encoded packet.
    ///
    /// # Errors
    /// [`ConnError::Encode`] when the codec refuses the packet.
    pub fn send(&mut self, p: &Packet<'_>) -> Result<(), ConnError> {
        encode_into(self.buf, p)
    }
}

fn encode_into(buf: &mut Vec<u8>, p: &Packet<'_>) -> Result<(), ConnError> {
    let n = p.encoded_len(VERSION).map_err(ConnError::Encode)?;
    let start = buf.len();
    buf.resize(start + n, 0);
    let dst = buf.get_mut(start..).ok_or(ConnError::Protocol("buffer".into()))?;
    p.encode(VERSION, dst).map_err(ConnError::Encode)?;
    Ok(())
}

/// A client connection with its buffers.
pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl Conn {
    /// Opens a TCP connection, from `source` when given (any port).
    ///
    /// # Errors
    /// Socket errors.
    pub async fn open(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, ConnError> {
        Self::open_with(addr, source, READ_CHUNK).await
    }

    /// As [`Conn::open`], with buffers of `buf` bytes to start with (they grow when needed). Thousands of idle
    /// connections take small ones: two 128 KiB buffers per connection are two `mmap` calls and their page faults.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn open_with(addr: SocketAddr, source: Option<IpAddr>, buf: usize) -> Result<Self, ConnError> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        let buf = buf.max(64);
        Ok(Self { stream, rbuf: vec![0; buf], rpos: 0, rend: 0, wbuf: Vec::with_capacity(buf), wpos: 0 })
    }

    /// Opens a connection and completes CONNECT/CONNACK. Returns the connection and the Session Present flag.
    ///
    /// # Errors
    /// Socket errors, a refused CONNECT, or no CONNACK within `wait`.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        client_id: &str,
        clean: bool,
        keep_alive: u16,
        wait: Duration,
    ) -> Result<(Self, bool), ConnError> {
        let mut c = Self::open(addr, source).await?;
        let present = c.handshake(client_id, clean, keep_alive, wait).await?;
        Ok((c, present))
    }

    /// Sends CONNECT on an open connection and waits for the CONNACK; returns the Session Present flag.
    ///
    /// # Errors
    /// Socket errors, a refused CONNECT, or no CONNACK within `wait`.
    pub async fn handshake(
        &mut self,
        client_id: &str,
        clean: bool,
        keep_alive: u16,
        wait: Duration,
    ) -> Result<bool, ConnError> {
        self.queue(&Packet::Connect(Connect {
            protocol: VERSION,
            clean_start: clean,
            keep_alive,
            properties: Properties::empty(),
            client_id,
            will: None,
            username: None,
            password: None,
        }))?;
        self.expect(wait, "CONNACK", |p| match p {
            Packet::ConnAck(a) if a.code == ReasonCode::Success => Some(Ok(a.session_present)),
            Packet::ConnAck(a) => Some(Err(ConnError::Protocol(format!("CONNECT refused: {:?}", a.code)))),
            _ => None,
        })
        .await?
    }

    /// Subscribes to one filter and waits for the SUBACK.
    ///
    /// # Errors
    /// Socket errors, a refused subscription, or no SUBACK within `wait`.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS, wait: Duration) -> Result<(), ConnError> {
        let filter = TopicFilter::new(filter).map_err(ConnError::Decode)?;
        let subs = [Subscription { filter, options: SubscriptionOptions::qos(qos) }];
        let id = PacketId::new(1).ok_or(ConnError::Protocol("packet id".into()))?;
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: Properties::empty(),
            subscriptions: List::from_slice(&subs),
        }))?;
        self.expect(wait, "SUBACK", |p| match p {
            Packet::SubAck(a) => Some(match a.codes.iter().next() {
                Some(code) if (code as u8) < 0x80 => Ok(()),
                other => Err(ConnError::Protocol(format!("SUBSCRIBE refused: {other:?}"))),
            }),
            _ => None,
        })
        .await?
    }

    /// Sends DISCONNECT and flushes (best effort: the broker may already be gone).
    pub async fn disconnect(&mut self) {
        let _ = self.queue(&Packet::Disconnect(mqtt_codec::Disconnect {
            reason: ReasonCode::Success,
            properties: Properties::empty(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
    }

    /// Appends one encoded packet to the write buffer.
    ///
    /// # Errors
    /// [`ConnError::Encode`].
    pub fn queue(&mut self, p: &Packet<'_>) -> Result<(), ConnError> {
        encode_into(&mut self.wbuf, p)
    }

    /// Bytes waiting to be written.
    pub fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        while self.pending_write() > 0 {
            self.io(false).await?;
        }
        Ok(())
    }

    /// Waits until the socket is ready for what is wanted (reading when `read`, writing when bytes are queued),
    /// then moves bytes once each way. Returns at once when there is nothing to wait for.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes are only moved after the wait, without awaiting.
    ///
    /// # Errors
    /// Socket errors; [`ConnError::Closed`] at end of stream.
    pub async fn io(&mut self, read: bool) -> Result<(), ConnError> {
        let write = self.pending_write() > 0;
        let interest = match (read, write) {
            (true, true) => Interest::READABLE.add(Interest::WRITABLE),
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => return Ok(()),
        };
        let ready = self.stream.ready(interest).await?;
        if write && ready.is_writable() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(n) => {
                    self.wpos += n;
                    if self.wpos == self.wbuf.len() {
                        self.wbuf.clear();
                        self.wpos = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if read && (ready.is_readable() || ready.is_read_closed()) {
            if self.rend == self.rbuf.len() {
                if self.rpos > 0 {
                    self.rbuf.copy_within(self.rpos..self.rend, 0);
                    self.rend -= self.rpos;
                    self.rpos = 0;
                } else {
                    self.rbuf.resize(self.rbuf.len() * 2, 0);
                }
            }
            match self.stream.try_read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.rend += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Decodes every whole packet received so far and hands each to `f` with the write buffer for replies.
    /// `f` returns `false` to stop early (the rest stays buffered).
    ///
    /// # Errors
    /// Decode errors, and whatever `f` returns.
    pub fn drain<F>(&mut self, mut f: F) -> Result<(), ConnError>
    where
        F: FnMut(Packet<'_>, &mut Out<'_>) -> Result<bool, ConnError>,
    {
        let Self { rbuf, rpos, rend, wbuf, .. } = self;
        let mut out = Out { buf: wbuf };
        while *rpos < *rend {
            let avail = &rbuf[*rpos..*rend];
            match Packet::decode_from(avail, VERSION, MAX_PACKET).map_err(ConnError::Decode)? {
                Some((p, n)) => {
                    *rpos += n;
                    if !f(p, &mut out)? {
                        break;
                    }
                }
                None => break,
            }
        }
        if *rpos == *rend {
            *rpos = 0;
            *rend = 0;
        } else if *rpos > rbuf.len() / 2 {
            rbuf.copy_within(*rpos..*rend, 0);
            *rend -= *rpos;
            *rpos = 0;
        }
        Ok(())
    }

    /// Reads until `f` returns `Some` for a packet (answering PINGREQ-free handshakes), within `wait`.
    ///
    /// # Errors
    /// Socket and decode errors, [`ConnError::Timeout`].
    pub async fn expect<T, F>(&mut self, wait: Duration, what: &'static str, mut f: F) -> Result<T, ConnError>
    where
        F: FnMut(Packet<'_>) -> Option<T>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let mut found = None;
        loop {
            self.drain(|p, _| {
                found = f(p);
                Ok(found.is_none())
            })?;
            if let Some(v) = found.take() {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, self.io(true)).await {
                Ok(r) => r?,
                Err(_) => return Err(ConnError::Timeout(what)),
            }
        }
    }

    /// Answers the broker's side of QoS 1/2 flows for a received packet: PUBACK or PUBREC for a PUBLISH, PUBCOMP
    /// for a PUBREL. Returns the PUBLISH's payload, retain flag and dup flag when it was one.
    ///
    /// # Errors
    /// Encode errors.
    pub fn ack_inbound<'p>(p: &Packet<'p>, out: &mut Out<'_>) -> Result<Option<(&'p [u8], bool)>, ConnError> {
        match p {
            Packet::Publish(m) => {
                match m.qos_pid {
                    mqtt_codec::QosPid::AtMostOnce => {}
                    mqtt_codec::QosPid::AtLeastOnce(id) => out.send(&Packet::PubAck(ack(id)))?,
                    mqtt_codec::QosPid::ExactlyOnce(id) => out.send(&Packet::PubRec(ack(id)))?,
                }
                Ok(Some((m.payload, m.retain)))
            }
            Packet::PubRel(a) => {
                out.send(&Packet::PubComp(ack(a.packet_id)))?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// A success acknowledgement for a packet identifier.
pub fn ack(id: PacketId) -> Ack<'static> {
    Ack { packet_id: id, reason: ReasonCode::Success, properties: Properties::empty() }
}
