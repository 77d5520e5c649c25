//! A byte-exact MQTT 5 client for these tests: packets are built with `mqtt-codec` (properties included) and what
//! the broker sends is kept as owned frames, decoded on demand, so every property and reason code can be checked.

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, Disconnect, List, Packet, PacketId, Properties, Property, ProtocolVersion, Publish,
    QoS, QosPid, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will, decode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use tests::raw::{Read, read_frame};
use tests::{WAIT, within};

/// One packet from the broker, owned.
#[derive(Clone)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub version: ProtocolVersion,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.packet())
    }
}

impl Frame {
    /// The decoded packet.
    pub fn packet(&self) -> Packet<'_> {
        decode(&self.bytes, self.version).expect("the broker sent a malformed packet")
    }

    pub fn connack(&self) -> ConnAck<'_> {
        match self.packet() {
            Packet::ConnAck(c) => c,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn publish(&self) -> Publish<'_> {
        match self.packet() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub fn suback(&self) -> SubAck<'_> {
        match self.packet() {
            Packet::SubAck(s) => s,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn unsuback(&self) -> UnsubAck<'_> {
        match self.packet() {
            Packet::UnsubAck(s) => s,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    pub fn auth(&self) -> Auth<'_> {
        match self.packet() {
            Packet::Auth(a) => a,
            other => panic!("expected AUTH, got {other:?}"),
        }
    }

    /// The reason code of a DISCONNECT, if this is one.
    pub fn disconnect_reason(&self) -> Option<ReasonCode> {
        match self.packet() {
            Packet::Disconnect(d) => Some(d.reason),
            _ => None,
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        self.publish().payload.to_vec()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.publish().payload).into_owned()
    }
}

/// The User Properties of a block, in order.
pub fn user_props(p: &Properties<'_>) -> Vec<(String, String)> {
    p.iter()
        .filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k.to_owned(), v.to_owned())),
            _ => None,
        })
        .collect()
}

/// Every Subscription Identifier of a block, sorted.
pub fn sub_ids(p: &Properties<'_>) -> Vec<u32> {
    let mut ids: Vec<u32> = p
        .iter()
        .filter_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// What reading gave.
#[derive(Debug)]
pub enum Ev {
    Frame(Frame),
    Closed,
    Silent,
}

pub fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet id")
}

pub fn encode(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; packet.encoded_len(version).unwrap()];
    let n = packet.encode(version, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A CONNECT under construction.
#[derive(Clone)]
pub struct Conn {
    pub version: ProtocolVersion,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user: Vec<(String, String)>,
    pub auth: Option<(String, Vec<u8>)>,
    /// Will: topic, payload, qos, retain, delay, extra properties.
    pub will: Option<WillSpec>,
    /// Payload Format Indicator of the will.
    pub will_pfi: Option<bool>,
}

#[derive(Clone, Default)]
pub struct WillSpec {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub delay: Option<u32>,
    pub content_type: Option<String>,
    pub user: Vec<(String, String)>,
    pub message_expiry: Option<u32>,
}

impl Conn {
    /// MQTT 5, clean start, keep alive 60 s, nothing else.
    pub fn new(client_id: &str) -> Self {
        Self {
            version: ProtocolVersion::V5,
            client_id: client_id.to_owned(),
            clean: true,
            keep_alive: 60,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            request_response_information: None,
            request_problem_information: None,
            user: Vec::new(),
            auth: None,
            will: None,
            will_pfi: None,
        }
    }

    pub fn v311(client_id: &str) -> Self {
        Self { version: ProtocolVersion::V311, ..Self::new(client_id) }
    }

    pub fn clean(mut self, c: bool) -> Self {
        self.clean = c;
        self
    }
    pub fn keep_alive(mut self, k: u16) -> Self {
        self.keep_alive = k;
        self
    }
    pub fn expiry(mut self, secs: u32) -> Self {
        self.session_expiry = Some(secs);
        self
    }
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.receive_maximum = Some(n);
        self
    }
    pub fn max_packet(mut self, n: u32) -> Self {
        self.maximum_packet_size = Some(n);
        self
    }
    pub fn aliases(mut self, n: u16) -> Self {
        self.topic_alias_maximum = Some(n);
        self
    }
    pub fn auth(mut self, method: &str, data: &[u8]) -> Self {
        self.auth = Some((method.to_owned(), data.to_vec()));
        self
    }
    pub fn will(mut self, w: WillSpec) -> Self {
        self.will = Some(w);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut props = Vec::new();
        if let Some(e) = self.session_expiry {
            props.push(Property::SessionExpiryInterval(e));
        }
        if let Some(r) = self.receive_maximum {
            props.push(Property::ReceiveMaximum(r));
        }
        if let Some(m) = self.maximum_packet_size {
            props.push(Property::MaximumPacketSize(m));
        }
        if let Some(a) = self.topic_alias_maximum {
            props.push(Property::TopicAliasMaximum(a));
        }
        if let Some(r) = self.request_response_information {
            props.push(Property::RequestResponseInformation(r));
        }
        if let Some(r) = self.request_problem_information {
            props.push(Property::RequestProblemInformation(r));
        }
        for (k, v) in &self.user {
            props.push(Property::UserProperty(k, v));
        }
        if let Some((m, d)) = &self.auth {
            props.push(Property::AuthenticationMethod(m));
            if !d.is_empty() {
                props.push(Property::AuthenticationData(d));
            }
        }
        let mut will_props = Vec::new();
        let will = self.will.as_ref().map(|w| {
            if let Some(d) = w.delay {
                will_props.push(Property::WillDelayInterval(d));
            }
            if let Some(p) = self.will_pfi {
                will_props.push(Property::PayloadFormatIndicator(p));
            }
            if let Some(e) = w.message_expiry {
                will_props.push(Property::MessageExpiryInterval(e));
            }
            if let Some(c) = &w.content_type {
                will_props.push(Property::ContentType(c));
            }
            for (k, v) in &w.user {
                will_props.push(Property::UserProperty(k, v));
            }
            (w, QoS::from_u8(w.qos).unwrap())
        });
        let v5 = self.version.is_v5();
        let will = will.map(|(w, qos)| Will {
            topic: TopicName::new(&w.topic).unwrap(),
            payload: &w.payload,
            qos,
            retain: w.retain,
            properties: if v5 { Properties::from_list(&will_props) } else { Properties::empty() },
        });
        let connect = Packet::Connect(Connect {
            protocol: self.version,
            clean_start: self.clean,
            keep_alive: self.keep_alive,
            properties: if v5 { Properties::from_list(&props) } else { Properties::empty() },
            client_id: &self.client_id,
            will,
            username: None,
            password: None,
        });
        encode(&connect, self.version)
    }
}

/// A PUBLISH under construction.
#[derive(Clone, Default)]
pub struct Pub {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pid: u16,
    pub alias: Option<u16>,
    pub expiry: Option<u32>,
    pub pfi: Option<bool>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation: Option<Vec<u8>>,
    pub user: Vec<(String, String)>,
}

impl Pub {
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Self {
        Self { topic: topic.to_owned(), payload: payload.to_vec(), qos, ..Self::default() }
    }
    pub fn retain(mut self) -> Self {
        self.retain = true;
        self
    }
    pub fn alias(mut self, a: u16) -> Self {
        self.alias = Some(a);
        self
    }
    pub fn expiry(mut self, secs: u32) -> Self {
        self.expiry = Some(secs);
        self
    }
    pub fn user(mut self, k: &str, v: &str) -> Self {
        self.user.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn encode(&self, version: ProtocolVersion) -> Vec<u8> {
        let mut props = Vec::new();
        if let Some(p) = self.pfi {
            props.push(Property::PayloadFormatIndicator(p));
        }
        if let Some(e) = self.expiry {
            props.push(Property::MessageExpiryInterval(e));
        }
        if let Some(a) = self.alias {
            props.push(Property::TopicAlias(a));
        }
        if let Some(r) = &self.response_topic {
            props.push(Property::ResponseTopic(r));
        }
        if let Some(c) = &self.correlation {
            props.push(Property::CorrelationData(c));
        }
        for (k, v) in &self.user {
            props.push(Property::UserProperty(k, v));
        }
        if let Some(c) = &self.content_type {
            props.push(Property::ContentType(c));
        }
        let qos = QoS::from_u8(self.qos).unwrap();
        let p = Packet::Publish(Publish {
            dup: self.dup,
            qos_pid: if qos == QoS::AtMostOnce { QosPid::AtMostOnce } else { QosPid::from_parts(qos, pid(self.pid)) },
            retain: self.retain,
            topic: if self.topic.is_empty() { TopicName::empty() } else { TopicName::new(&self.topic).unwrap() },
            properties: if version.is_v5() { Properties::from_list(&props) } else { Properties::empty() },
            payload: &self.payload,
        });
        encode(&p, version)
    }
}

/// One SUBSCRIBE entry.
#[derive(Clone, Copy)]
pub struct Sub<'a> {
    pub filter: &'a str,
    pub qos: u8,
    pub no_local: bool,
    pub rap: bool,
    pub rh: u8,
}

impl<'a> Sub<'a> {
    pub fn new(filter: &'a str, qos: u8) -> Self {
        Self { filter, qos, no_local: false, rap: false, rh: 0 }
    }
}

/// A raw MQTT 5 (or 3.1.1) connection.
pub struct C5 {
    stream: TcpStream,
    rx: Vec<u8>,
    pub version: ProtocolVersion,
    next_pid: u16,
    /// Broker-to-client topic aliases seen so far.
    pub aliases: std::collections::HashMap<u16, String>,
    /// Packets read while waiting for something else, handed out first by [`C5::next_event`].
    skipped: Vec<Frame>,
}

impl C5 {
    pub async fn tcp(addr: SocketAddr) -> Self {
        let stream = within("TCP connect", TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            rx: Vec::new(),
            version: ProtocolVersion::V5,
            next_pid: 1,
            aliases: Default::default(),
            skipped: Vec::new(),
        }
    }

    /// Sends CONNECT; returns the connection and whatever came back first.
    pub async fn connect_with(addr: SocketAddr, c: &Conn) -> (Self, Frame) {
        let mut s = Self::tcp(addr).await;
        s.version = c.version;
        s.send_raw(&c.encode()).await;
        let f = s.recv().await;
        (s, f)
    }

    /// Connects and asserts success; returns the CONNACK.
    pub async fn connect(addr: SocketAddr, c: &Conn) -> (Self, Frame) {
        let (s, f) = Self::connect_with(addr, c).await;
        assert_eq!(f.connack().code, ReasonCode::Success, "{}: CONNACK {f:?}", c.client_id);
        (s, f)
    }

    /// A plain MQTT 5 client with clean start.
    pub async fn v5(addr: SocketAddr, id: &str) -> Self {
        Self::connect(addr, &Conn::new(id)).await.0
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("write", self.stream.write_all(bytes)).await.unwrap();
    }

    /// Writes bytes; false if the broker already closed the socket.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        matches!(timeout(WAIT, self.stream.write_all(bytes)).await, Ok(Ok(())))
    }

    pub async fn send(&mut self, p: &Packet<'_>) {
        let b = encode(p, self.version);
        self.send_raw(&b).await;
    }

    pub fn next_pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
        p
    }

    /// Sends a PUBLISH as built (a packet id is taken for QoS > 0 when none is set); returns the id.
    pub async fn publish(&mut self, mut p: Pub) -> u16 {
        if p.qos > 0 && p.pid == 0 {
            p.pid = self.next_pid();
        }
        let b = p.encode(self.version);
        self.send_raw(&b).await;
        p.pid
    }

    /// Publishes and returns the PUBACK / PUBREC reason (completing QoS 2 with PUBREL / PUBCOMP when accepted).
    pub async fn publish_ack(&mut self, p: Pub) -> (ReasonCode, Frame) {
        let qos = p.qos;
        let id = self.publish(p).await;
        match qos {
            0 => panic!("publish_ack needs QoS 1 or 2"),
            1 => {
                let f = self.recv_skipping_publish().await;
                let reason = match f.packet() {
                    Packet::PubAck(a) if a.packet_id.get() == id => a.reason,
                    _ => panic!("expected PUBACK {id}, got {f:?}"),
                };
                (reason, f)
            }
            _ => {
                let f = self.recv_skipping_publish().await;
                let reason = match f.packet() {
                    Packet::PubRec(a) if a.packet_id.get() == id => a.reason,
                    _ => panic!("expected PUBREC {id}, got {f:?}"),
                };
                if !reason.is_error() {
                    self.send(&Packet::PubRel(Ack::new(pid(id)))).await;
                    let c = self.recv_skipping_publish().await;
                    assert!(matches!(c.packet(), Packet::PubComp(a) if a.packet_id.get() == id), "PUBCOMP: {c:?}");
                }
                (reason, f)
            }
        }
    }

    /// Publishes and asserts the acknowledgement is a success (0x00, or 0x10 with `allow_no_match`).
    pub async fn publish_ok(&mut self, p: Pub) {
        if p.qos == 0 {
            self.publish(p).await;
            return;
        }
        let (r, f) = self.publish_ack(p).await;
        assert!(matches!(r, ReasonCode::Success | ReasonCode::NoMatchingSubscribers), "ack {f:?}");
    }

    /// Skipped publishes are kept here, in order.
    async fn recv_skipping_publish(&mut self) -> Frame {
        loop {
            let f = match self.read_event(WAIT).await {
                Ev::Frame(f) => f,
                other => panic!("expected a packet, got {other:?}"),
            };
            if matches!(f.packet(), Packet::Publish(_)) {
                self.skipped.push(f);
                continue;
            }
            return f;
        }
    }

    pub async fn subscribe_with(&mut self, subs: &[Sub<'_>], id: Option<u32>) -> Vec<ReasonCode> {
        let pid_ = self.next_pid();
        let list: Vec<Subscription<'_>> = subs
            .iter()
            .map(|s| Subscription {
                filter: TopicFilter::new(s.filter).unwrap(),
                options: SubscriptionOptions {
                    qos: QoS::from_u8(s.qos).unwrap(),
                    no_local: s.no_local,
                    retain_as_published: s.rap,
                    retain_handling: match s.rh {
                        0 => RetainHandling::SendAtSubscribe,
                        1 => RetainHandling::SendAtNewSubscribe,
                        _ => RetainHandling::DoNotSend,
                    },
                },
            })
            .collect();
        let idp = id.map(Property::SubscriptionIdentifier);
        let props: Vec<Property<'_>> = idp.into_iter().collect();
        let p = Packet::Subscribe(Subscribe {
            packet_id: pid(pid_),
            properties: Properties::from_list(&props),
            subscriptions: List::from_slice(&list),
        });
        self.send(&p).await;
        let f = self.recv_skipping_publish().await;
        let ack = f.suback();
        assert_eq!(ack.packet_id.get(), pid_);
        ack.codes.iter().collect()
    }

    /// Subscribes to one filter and asserts the granted QoS.
    pub async fn sub(&mut self, filter: &str, qos: u8) {
        let codes = self.subscribe_with(&[Sub::new(filter, qos)], None).await;
        assert_eq!(codes.iter().map(|c| c.to_u8()).collect::<Vec<_>>(), vec![qos], "SUBACK for {filter}");
    }

    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Vec<ReasonCode> {
        let id = self.next_pid();
        let fs: Vec<TopicFilter<'_>> = filters.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
        let p = Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id),
            properties: Properties::empty(),
            filters: List::from_slice(&fs),
        });
        self.send(&p).await;
        let f = self.recv_skipping_publish().await;
        let ack = f.unsuback();
        assert_eq!(ack.packet_id.get(), id);
        ack.codes.iter().collect()
    }

    pub async fn puback(&mut self, id: u16) {
        self.send(&Packet::PubAck(Ack::new(pid(id)))).await;
    }

    /// Acknowledges a received PUBLISH as a well-behaved client (QoS 2: PUBREC, PUBREL, PUBCOMP).
    pub async fn ack(&mut self, f: &Frame) {
        let p = f.publish();
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(&Packet::PubAck(Ack::new(id))).await,
            QosPid::ExactlyOnce(id) => {
                self.send(&Packet::PubRec(Ack::new(id))).await;
                let rel = self.recv().await;
                assert!(matches!(rel.packet(), Packet::PubRel(a) if a.packet_id == id), "PUBREL: {rel:?}");
                self.send(&Packet::PubComp(Ack::new(id))).await;
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::normal())).await;
        let _ = timeout(WAIT, self.stream.shutdown()).await;
    }

    pub async fn disconnect_with(mut self, reason: ReasonCode, props: &[Property<'_>]) {
        let d = Disconnect { reason, properties: Properties::from_list(props) };
        self.send(&Packet::Disconnect(d)).await;
        let _ = timeout(WAIT, self.stream.shutdown()).await;
    }

    /// The next packet (one kept aside while waiting for an acknowledgement first), or close, or silence.
    pub async fn next_event(&mut self, limit: Duration) -> Ev {
        if !self.skipped.is_empty() {
            return Ev::Frame(self.skipped.remove(0));
        }
        self.read_event(limit).await
    }

    /// The next packet from the socket.
    async fn read_event(&mut self, limit: Duration) -> Ev {
        match read_frame(&mut self.stream, &mut self.rx, self.version, Instant::now() + limit).await {
            Read::Frame(bytes) => Ev::Frame(Frame { bytes, version: self.version }),
            Read::Closed => Ev::Closed,
            Read::Silent => Ev::Silent,
        }
    }

    pub async fn recv(&mut self) -> Frame {
        match self.next_event(WAIT).await {
            Ev::Frame(f) => f,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next PUBLISH, with a broker-set topic alias resolved into [`C5::topic_of`].
    pub async fn recv_publish(&mut self) -> Frame {
        let f = self.recv().await;
        let p = f.publish();
        if let Some(a) = p.properties.topic_alias() {
            if !p.topic.is_empty() {
                self.aliases.insert(a, p.topic.as_str().to_owned());
            }
        }
        f
    }

    /// The topic of a received PUBLISH, through the alias table when it came with an empty topic.
    pub fn topic_of(&self, f: &Frame) -> String {
        let p = f.publish();
        if p.topic.is_empty() {
            let a = p.properties.topic_alias().expect("empty topic without alias");
            self.aliases.get(&a).cloned().expect("unknown alias from the broker")
        } else {
            p.topic.as_str().to_owned()
        }
    }

    pub async fn expect_silence(&mut self, d: Duration) {
        match self.next_event(d).await {
            Ev::Silent => {}
            other => panic!("expected silence for {d:?}, got {other:?}"),
        }
    }

    /// Waits for the broker to close; returns the packets it sent first.
    pub async fn expect_closed(&mut self, limit: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Ev::Closed => return seen,
                Ev::Frame(f) => seen.push(f),
                Ev::Silent => panic!("connection still open after {limit:?} (received {seen:?})"),
            }
        }
    }

    /// Asserts the broker sends DISCONNECT with `reason` (after any other packets) and closes.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode, limit: Duration) {
        let seen = self.expect_closed(limit).await;
        let last = seen.last().and_then(Frame::disconnect_reason);
        assert_eq!(last, Some(reason), "expected DISCONNECT {reason:?} before close; got {seen:?}");
    }
}
