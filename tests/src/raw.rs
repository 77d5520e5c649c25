//! A byte-exact MQTT client over a plain TCP socket: packets are encoded with `mqtt-codec`, or written as raw bytes,
//! and what the broker sends back is decoded into owned values ([`Rx`]) that tests compare directly.

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_codec::{
    Ack, Connect, Disconnect, List, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::WAIT;

pub use mqtt_codec::{ProtocolVersion as Version, QoS as Qos};

/// A PUBLISH as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxPublish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// Packet id for QoS 1 and 2.
    pub pid: Option<u16>,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

impl RxPublish {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A packet received from the broker, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rx {
    /// CONNACK with the session present flag and the wire return code (MQTT 3.x: 0..=5).
    ConnAck { session_present: bool, code: u8 },
    /// PUBLISH.
    Publish(RxPublish),
    /// PUBACK with its packet id.
    PubAck(u16),
    /// PUBREC with its packet id.
    PubRec(u16),
    /// PUBREL with its packet id.
    PubRel(u16),
    /// PUBCOMP with its packet id.
    PubComp(u16),
    /// SUBACK with its packet id and return codes.
    SubAck { pid: u16, codes: Vec<u8> },
    /// UNSUBACK with its packet id.
    UnsubAck(u16),
    /// PINGRESP.
    PingResp,
    /// DISCONNECT (MQTT 5 only) or any packet a server should not send.
    Other(String),
}

/// What reading from the socket gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet.
    Packet(Rx),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived in time.
    Silent,
}

/// What [`read_frame`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// One whole frame (fixed header included), which the codec decodes.
    Frame(Vec<u8>),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing whole arrived before the deadline.
    Silent,
}

/// Reads the next whole MQTT frame the broker sent: first from `pending` (bytes received earlier and not used yet),
/// then from `stream` until `deadline`. A frame the codec rejects fails the test: the broker must never send one.
pub async fn read_frame(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    version: ProtocolVersion,
    deadline: Instant,
) -> Read {
    loop {
        match mqtt_codec::frame_len(pending, 1 << 28) {
            Ok(Some(n)) => {
                let frame: Vec<u8> = pending.drain(..n).collect();
                if let Err(e) = mqtt_codec::decode(&frame, version) {
                    panic!("broker sent a malformed packet: {e:?} in {frame:02x?}");
                }
                return Read::Frame(frame);
            }
            Ok(None) => {}
            Err(e) => panic!("broker sent a bad frame: {e:?} in {pending:02x?}"),
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Read::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
            Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("packet ids in tests are non-zero")
}

fn owned(p: &Packet<'_>, version: ProtocolVersion) -> Rx {
    match p {
        Packet::ConnAck(c) => {
            let code = if version.is_v5() { c.code.to_u8() } else { c.code.to_v3_connack().unwrap_or(0xff) };
            Rx::ConnAck { session_present: c.session_present, code }
        }
        Packet::Publish(p) => Rx::Publish(RxPublish {
            dup: p.dup,
            qos: p.qos_pid.qos(),
            pid: p.qos_pid.packet_id().map(PacketId::get),
            retain: p.retain,
            topic: p.topic.as_str().to_owned(),
            payload: p.payload.to_vec(),
        }),
        Packet::PubAck(a) => Rx::PubAck(a.packet_id.get()),
        Packet::PubRec(a) => Rx::PubRec(a.packet_id.get()),
        Packet::PubRel(a) => Rx::PubRel(a.packet_id.get()),
        Packet::PubComp(a) => Rx::PubComp(a.packet_id.get()),
        Packet::SubAck(s) => Rx::SubAck { pid: s.packet_id.get(), codes: s.codes.iter().map(|c| c.to_u8()).collect() },
        Packet::UnsubAck(u) => Rx::UnsubAck(u.packet_id.get()),
        Packet::PingResp => Rx::PingResp,
        other => Rx::Other(format!("{other:?}")),
    }
}

/// Options of a CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Client identifier.
    pub client_id: String,
    /// Clean session.
    pub clean: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// Will: topic, payload, QoS, retain.
    pub will: Option<(String, Vec<u8>, QoS, bool)>,
    /// User Name and Password.
    pub login: Option<(String, Option<Vec<u8>>)>,
}

impl ConnectOpts {
    /// MQTT 3.1.1, clean session, keep alive 60 s, no will.
    pub fn new(client_id: &str) -> Self {
        Self {
            version: ProtocolVersion::V311,
            client_id: client_id.to_owned(),
            clean: true,
            keep_alive: 60,
            will: None,
            login: None,
        }
    }

    /// With a User Name and (if given) a Password.
    pub fn login(mut self, username: &str, password: Option<&str>) -> Self {
        self.login = Some((username.to_owned(), password.map(|p| p.as_bytes().to_vec())));
        self
    }

    /// With this protocol version.
    pub fn version(mut self, v: ProtocolVersion) -> Self {
        self.version = v;
        self
    }

    /// With this clean session flag.
    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }

    /// With this keep alive.
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    /// With a will.
    pub fn will(mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Self {
        self.will = Some((topic.to_owned(), payload.to_vec(), qos, retain));
        self
    }

    /// The encoded CONNECT.
    pub fn encode(&self) -> Vec<u8> {
        let will = self.will.as_ref().map(|(topic, payload, qos, retain)| Will {
            topic: TopicName::new(topic).unwrap(),
            payload,
            qos: *qos,
            retain: *retain,
            properties: Properties::empty(),
        });
        let connect = Packet::Connect(Connect {
            protocol: self.version,
            clean_start: self.clean,
            keep_alive: self.keep_alive,
            properties: Properties::empty(),
            client_id: &self.client_id,
            will,
            username: self.login.as_ref().map(|(u, _)| u.as_str()),
            password: self.login.as_ref().and_then(|(_, p)| p.as_deref()),
        });
        encode(&connect, self.version)
    }
}

/// Encodes one packet.
pub fn encode(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; packet.encoded_len(version).unwrap()];
    let n = packet.encode(version, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// An encoded PUBLISH.
pub fn publish_bytes(
    version: ProtocolVersion,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    packet_id: u16,
    retain: bool,
    dup: bool,
) -> Vec<u8> {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(packet_id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(packet_id)),
    };
    let p = Packet::Publish(Publish {
        dup,
        qos_pid,
        retain,
        topic: TopicName::new(topic).unwrap(),
        properties: Properties::empty(),
        payload,
    });
    encode(&p, version)
}

/// A raw MQTT client on one TCP connection.
pub struct RawClient {
    stream: TcpStream,
    rx: Vec<u8>,
    /// Version used to encode and decode packets after CONNECT.
    pub version: ProtocolVersion,
    next_pid: u16,
}

impl RawClient {
    /// Opens a TCP connection (no MQTT yet).
    pub async fn tcp(addr: SocketAddr) -> Self {
        let stream = crate::within("TCP connect", TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, rx: Vec::new(), version: ProtocolVersion::V311, next_pid: 1 }
    }

    /// Opens a TCP connection, or `None` when nothing accepts it (a broker that was just killed).
    pub async fn try_tcp(addr: SocketAddr) -> Option<Self> {
        let stream = timeout(WAIT, TcpStream::connect(addr)).await.ok()?.ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Self { stream, rx: Vec::new(), version: ProtocolVersion::V311, next_pid: 1 })
    }

    /// Opens a TCP connection from `source` (an address of this host, such as 127.0.0.2), no MQTT yet.
    pub async fn tcp_from(source: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket = if source.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
        let socket = socket.unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = crate::within("TCP connect", socket.connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, rx: Vec::new(), version: ProtocolVersion::V311, next_pid: 1 }
    }

    /// Sends CONNECT on an open connection and returns the CONNACK it got.
    pub async fn handshake(&mut self, opts: &ConnectOpts) -> Rx {
        self.version = opts.version;
        self.send_raw(&opts.encode()).await;
        self.recv().await
    }

    /// The next whole frame the broker sent, as bytes (for fields [`Rx`] leaves out, such as MQTT 5 reason codes).
    pub async fn recv_frame(&mut self) -> Vec<u8> {
        match read_frame(&mut self.stream, &mut self.rx, self.version, Instant::now() + WAIT).await {
            Read::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Opens a connection, sends CONNECT and returns the client with the CONNACK it got.
    pub async fn connect_with(addr: SocketAddr, opts: &ConnectOpts) -> (Self, Rx) {
        let mut c = Self::tcp(addr).await;
        c.version = opts.version;
        c.send_raw(&opts.encode()).await;
        let ack = c.recv().await;
        (c, ack)
    }

    /// Connects and asserts the CONNACK accepts the client; returns the session present flag.
    pub async fn connect(addr: SocketAddr, opts: &ConnectOpts) -> (Self, bool) {
        let (c, ack) = Self::connect_with(addr, opts).await;
        match ack {
            Rx::ConnAck { session_present, code: 0 } => (c, session_present),
            other => panic!("{}: expected an accepting CONNACK, got {other:?}", opts.client_id),
        }
    }

    /// Connects with MQTT 3.1.1, clean session, and the default keep alive.
    pub async fn connect_v311(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect(addr, &ConnectOpts::new(client_id)).await.0
    }

    /// The local address of the connection (what the broker sees as the peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        crate::within("write", self.stream.write_all(bytes)).await.unwrap();
    }

    /// Writes bytes; returns false if the broker already closed the socket.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        matches!(timeout(WAIT, self.stream.write_all(bytes)).await, Ok(Ok(())))
    }

    /// Encodes and sends one packet.
    pub async fn send(&mut self, packet: &Packet<'_>) {
        let bytes = encode(packet, self.version);
        self.send_raw(&bytes).await;
    }

    /// A fresh packet id.
    pub fn next_pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
        p
    }

    /// Sends a PUBLISH.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, packet_id: u16, retain: bool, dup: bool) {
        let bytes = publish_bytes(self.version, topic, payload, qos, packet_id, retain, dup);
        self.send_raw(&bytes).await;
    }

    /// Publishes and completes the QoS flow as a well-behaved client (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    ///
    /// PUBLISH packets that arrive meanwhile are kept and returned.
    pub async fn publish_acked(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Vec<RxPublish> {
        let id = self.next_pid();
        self.publish(topic, payload, qos, id, retain, false).await;
        let mut others = Vec::new();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.expect_skipping(&Rx::PubAck(id), &mut others).await,
            QoS::ExactlyOnce => {
                self.expect_skipping(&Rx::PubRec(id), &mut others).await;
                self.send(&Packet::PubRel(Ack::new(pid(id)))).await;
                self.expect_skipping(&Rx::PubComp(id), &mut others).await;
            }
        }
        others
    }

    async fn expect_skipping(&mut self, want: &Rx, others: &mut Vec<RxPublish>) {
        loop {
            match self.recv().await {
                Rx::Publish(p) => others.push(p),
                got if &got == want => return,
                got => panic!("expected {want:?}, got {got:?}"),
            }
        }
    }

    /// Sends SUBSCRIBE and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<u8> {
        let id = self.next_pid();
        let subs: Vec<Subscription<'_>> = filters
            .iter()
            .map(|(f, q)| Subscription { filter: TopicFilter::new(f).unwrap(), options: SubscriptionOptions::qos(*q) })
            .collect();
        let p = Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            properties: Properties::empty(),
            subscriptions: List::from_slice(&subs),
        });
        self.send(&p).await;
        match self.recv().await {
            Rx::SubAck { pid, codes } if pid == id => codes,
            other => panic!("expected SUBACK {id}, got {other:?}"),
        }
    }

    /// Subscribes to one filter and asserts the granted QoS equals the requested one.
    pub async fn subscribe_one(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe(&[(filter, qos)]).await;
        assert_eq!(codes, vec![qos as u8], "SUBACK for {filter}");
    }

    /// Sends UNSUBSCRIBE and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filters: &[&str]) {
        let id = self.next_pid();
        let fs: Vec<TopicFilter<'_>> = filters.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
        let p = Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id),
            properties: Properties::empty(),
            filters: List::from_slice(&fs),
        });
        self.send(&p).await;
        assert_eq!(self.recv().await, Rx::UnsubAck(id));
    }

    /// Sends PUBACK.
    pub async fn puback(&mut self, id: u16) {
        self.send(&Packet::PubAck(Ack::new(pid(id)))).await;
    }

    /// Sends PUBREC.
    pub async fn pubrec(&mut self, id: u16) {
        self.send(&Packet::PubRec(Ack::new(pid(id)))).await;
    }

    /// Sends PUBREL.
    pub async fn pubrel(&mut self, id: u16) {
        self.send(&Packet::PubRel(Ack::new(pid(id)))).await;
    }

    /// Sends PUBCOMP.
    pub async fn pubcomp(&mut self, id: u16) {
        self.send(&Packet::PubComp(Ack::new(pid(id)))).await;
    }

    /// Sends PINGREQ.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
    }

    /// Sends PINGREQ and expects PINGRESP: proof that the connection is alive and served. PUBLISH packets that
    /// arrive first are returned.
    pub async fn assert_alive(&mut self) -> Vec<RxPublish> {
        self.ping().await;
        let mut skipped = Vec::new();
        loop {
            match self.recv().await {
                Rx::PingResp => return skipped,
                Rx::Publish(p) => skipped.push(p),
                other => panic!("expected PINGRESP (connection still served), got {other:?}"),
            }
        }
    }

    /// Sends DISCONNECT and closes the socket.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::normal())).await;
        let _ = timeout(WAIT, self.stream.shutdown()).await;
    }

    /// Reads the next event, waiting at most `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Event {
        match read_frame(&mut self.stream, &mut self.rx, self.version, Instant::now() + limit).await {
            Read::Frame(frame) => {
                let packet = mqtt_codec::decode(&frame, self.version).expect("read_frame checked the frame");
                Event::Packet(owned(&packet, self.version))
            }
            Read::Closed => Event::Closed,
            Read::Silent => Event::Silent,
        }
    }

    /// The next packet within [`WAIT`]; panics on timeout or close.
    pub async fn recv(&mut self) -> Rx {
        match self.next_event(WAIT).await {
            Event::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> RxPublish {
        match self.recv().await {
            Rx::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives `n` PUBLISH packets as a well-behaved subscriber: PUBACK for QoS 1, PUBREC then PUBCOMP for QoS 2,
    /// until every flow it started is complete.
    pub async fn recv_acking(&mut self, n: usize) -> Vec<RxPublish> {
        let mut got = Vec::with_capacity(n);
        let mut open_qos2 = 0usize;
        while got.len() < n || open_qos2 > 0 {
            match self.recv().await {
                Rx::Publish(p) => {
                    match (p.qos, p.pid) {
                        (QoS::AtLeastOnce, Some(id)) => self.puback(id).await,
                        (QoS::ExactlyOnce, Some(id)) => {
                            self.pubrec(id).await;
                            open_qos2 += 1;
                        }
                        _ => {}
                    }
                    got.push(p);
                }
                Rx::PubRel(id) => {
                    self.pubcomp(id).await;
                    open_qos2 = open_qos2.saturating_sub(1);
                }
                other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
            }
        }
        assert_eq!(got.len(), n, "more PUBLISH packets than expected: {got:?}");
        got
    }

    /// Asserts nothing arrives for `d` (and the connection stays open).
    pub async fn expect_silence(&mut self, d: Duration) {
        match self.next_event(d).await {
            Event::Silent => {}
            other => panic!("expected silence for {d:?}, got {other:?}"),
        }
    }

    /// Waits until the broker closes the connection, skipping packets it sends first (returned). Panics if it is
    /// still open after `limit`.
    pub async fn expect_closed(&mut self, limit: Duration) -> Vec<Rx> {
        match self.closed_within(limit).await {
            Ok(seen) => seen,
            Err(seen) => panic!("connection still open after {limit:?} (received {seen:?})"),
        }
    }

    /// `Ok` with the packets received before the broker closed the connection within `limit`, else `Err` with
    /// the packets received while it stayed open.
    pub async fn closed_within(&mut self, limit: Duration) -> Result<Vec<Rx>, Vec<Rx>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Closed => return Ok(seen),
                Event::Packet(p) => seen.push(p),
                Event::Silent => return Err(seen),
            }
        }
    }

    /// Drops the socket without DISCONNECT (an ungraceful close).
    pub fn drop_connection(self) {
        drop(self);
    }
}
