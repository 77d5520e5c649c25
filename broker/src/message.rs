//! An application message as the broker holds it: topic, payload and MQTT 5 properties share the bytes they
//! arrived in.
//!
//! A message routed to several subscribers is shared between their queues (`Arc<Message>`), and the PUBLISH
//! packet that most of them receive is encoded once ([`Message::encoded`]) and copied into each connection's
//! output, with the packet identifier and DUP flag patched per delivery.

use std::sync::OnceLock;

use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{Packet, PacketId, Properties, Property, PropertyContext, PropertyId, ProtocolVersion, Publish};
use mqtt_codec::{QoS, QosPid, TopicName};
use tokio::time::Instant;

use crate::budget::{Budget, Charge};

/// Messages of at most this many bytes are copied out of their read buffer (see [`Message::compact`]).
pub const COMPACT_BELOW: usize = 8 * 1024;

/// What makes two deliveries of one message the same bytes on the wire (apart from packet identifier and DUP).
/// Deliveries with Subscription Identifiers, a topic alias or a Message Expiry Interval are never of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// MQTT 5 (a property block) or 3.x (none; 3.1 and 3.1.1 encode PUBLISH alike).
    pub v5: bool,
    /// QoS of the delivery.
    pub qos: QoS,
    /// RETAIN flag of the delivery.
    pub retain: bool,
}

/// A PUBLISH encoded for one [`Shape`]; QoS 1/2 with a placeholder packet identifier at `pid_at`.
#[derive(Debug)]
struct Wire {
    shape: Shape,
    pid_at: usize,
    bytes: Box<[u8]>,
}

/// MQTT 5 properties of a message, apart from the message: most messages have none.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Props {
    /// The property block as it arrived (a PUBLISH or will property block, without its length prefix, validated
    /// by the codec for `ctx`). Forwarded without Topic Alias, Subscription Identifier, Message Expiry Interval and
    /// Will Delay Interval, which are per hop.
    wire: Bytes,
    ctx: PropertyContext,
    /// The Message Expiry Interval it was published with, in seconds.
    expiry_secs: Option<u32>,
}

/// A message on its way from a publisher to subscribers. Cloning it copies no payload.
///
/// A queued message costs this struct (in an `Arc`, shared by its subscribers), so it stays small (112 bytes): the
/// properties and the encoded PUBLISH live behind pointers, present only when used.
#[derive(Debug)]
pub struct Message {
    topic: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
    props: Option<Box<Props>>,
    /// Only for a message routed to more than one subscriber (worth encoding once for all of them): the PUBLISH
    /// for the first shape asked for (see [`Message::encoded`]).
    wire: Option<Box<OnceLock<Wire>>>,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Its bytes charged to the broker's memory budget, shared by its clones (the retained copy shares the
    /// payload), given back when the last one goes.
    charge: Option<Arc<Charge>>,
    /// When the broker read it (for the delivery latency metrics); in the struct's padding.
    pub read_at: crate::metrics::Stamp,
}

impl Clone for Message {
    /// A copy without the encoded PUBLISH (it belongs to the deliveries of the original).
    fn clone(&self) -> Self {
        Self {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            props: self.props.clone(),
            expires_at: self.expires_at,
            wire: None,
            charge: self.charge.clone(),
            read_at: self.read_at,
        }
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        (&self.topic, &self.payload, self.qos, self.retain, &self.props, self.expires_at)
            == (&other.topic, &other.payload, other.qos, other.retain, &other.props, other.expires_at)
    }
}

impl Eq for Message {}

/// Properties that never travel with a message from one hop to the next.
fn per_hop(id: PropertyId) -> bool {
    matches!(
        id,
        PropertyId::TopicAlias
            | PropertyId::SubscriptionIdentifier
            | PropertyId::MessageExpiryInterval
            | PropertyId::WillDelayInterval
    )
}

impl Message {
    /// A message without properties; `topic` must be a valid topic name (the codec checked it on the way in).
    pub fn new(topic: Bytes, payload: Bytes, qos: QoS, retain: bool) -> Self {
        Self::read_at(topic, payload, qos, retain, crate::metrics::Stamp::now())
    }

    /// [`Message::new`] read at `read_at` (for the delivery latency metrics; [`crate::metrics::Stamp::NONE`]: not
    /// timed).
    pub fn read_at(topic: Bytes, payload: Bytes, qos: QoS, retain: bool, read_at: crate::metrics::Stamp) -> Self {
        debug_assert!(std::str::from_utf8(&topic).is_ok());
        Self { topic, payload, qos, retain, props: None, expires_at: None, wire: None, charge: None, read_at }
    }

    /// Charges the message's cost to `budget` (see [`crate::budget`]).
    ///
    /// # Errors
    /// The message back, uncharged, when the budget cannot take it.
    pub fn charge_to(mut self, budget: &Arc<Budget>) -> Result<Self, Self> {
        match budget.charge(self.cost()) {
            Some(charge) => {
                self.charge = Some(Arc::new(charge));
                Ok(self)
            }
            None => Err(self),
        }
    }

    /// Charges the cost of a message recovered from the journal to `budget`, whatever its limit (see
    /// [`Budget::charge_recovered`]).
    pub fn charge_recovered(mut self, budget: &Arc<Budget>) -> Self {
        self.charge = Some(Arc::new(budget.charge_recovered(self.cost())));
        self
    }

    /// The message with its bytes copied into one allocation of their own when it is small (at most
    /// [`COMPACT_BELOW`]): its topic, payload and properties are slices of the buffer they were read into, and a
    /// 100-byte message kept in a queue would otherwise keep that whole buffer (8 KiB, or more after a large
    /// packet) alive, memory that neither the queue limits nor the budget would see. Larger messages are most of
    /// their buffer anyway and stay where they are.
    #[must_use]
    pub fn compact(mut self) -> Self {
        if self.cost() > COMPACT_BELOW {
            return self;
        }
        let props = self.props.as_ref().map_or(&[][..], |p| &p.wire[..]);
        let mut buf = Vec::with_capacity(self.cost());
        buf.extend_from_slice(&self.topic);
        buf.extend_from_slice(&self.payload);
        buf.extend_from_slice(props);
        let all = Bytes::from(buf);
        let (t, p) = (self.topic.len(), self.payload.len());
        self.topic = all.slice(..t);
        self.payload = all.slice(t..t + p);
        if let Some(props) = self.props.as_mut() {
            props.wire = all.slice(t + p..);
        }
        self
    }

    /// Attaches MQTT 5 properties: the validated wire bytes of a PUBLISH or will block (`ctx`) and the Message
    /// Expiry Interval they hold, which starts counting at `now`.
    pub fn with_properties(
        mut self,
        props: Bytes,
        ctx: PropertyContext,
        expiry_secs: Option<u32>,
        now: Instant,
    ) -> Self {
        self.props =
            (!props.is_empty() || expiry_secs.is_some()).then(|| Box::new(Props { wire: props, ctx, expiry_secs }));
        self.published_at(now)
    }

    /// The same message with its expiry counted from `now`: a will's Message Expiry Interval starts when the will
    /// is published, not when the client connected.
    #[must_use]
    pub fn published_at(mut self, now: Instant) -> Self {
        let expiry_secs = self.props.as_ref().and_then(|p| p.expiry_secs);
        self.expires_at = expiry_secs.map(|secs| now + std::time::Duration::from_secs(u64::from(secs)));
        self
    }

    /// A message from owned parts (wills of MQTT 3 clients, tests).
    pub fn from_parts(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Self {
        Self::new(Bytes::copy_from_slice(topic.as_bytes()), Bytes::copy_from_slice(payload), qos, retain)
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        // Validated UTF-8 on decode; never empty for a routed message.
        std::str::from_utf8(&self.topic).unwrap_or_default()
    }

    /// Bytes the message costs in a queue.
    pub fn cost(&self) -> usize {
        let props = self.props.as_ref().map_or(0, |p| p.wire.len());
        self.payload.len().saturating_add(self.topic.len()).saturating_add(props)
    }

    /// Whether the message expired at `now` [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Whether the message carries properties to forward.
    pub fn has_properties(&self) -> bool {
        self.props.as_ref().is_some_and(|p| !p.wire.is_empty()) || self.expires_at.is_some()
    }

    /// The properties to forward to an MQTT 5 subscriber, in their original order, followed by the remaining
    /// Message Expiry Interval (the time spent in the broker subtracted) [MQTT-3.3.2-6].
    pub fn forwarded_properties<'a>(&'a self, now: Instant, out: &mut Vec<Property<'a>>) {
        // Validated on arrival; checked again here only because the bytes travel without their type.
        if let Some(props) = &self.props {
            let block = Properties::from_wire(&props.wire, props.ctx).unwrap_or_default();
            out.extend(block.iter().filter(|p| !per_hop(p.id())));
        }
        if let Some(at) = self.expires_at {
            let left = at.saturating_duration_since(now).as_secs();
            out.push(Property::MessageExpiryInterval(u32::try_from(left).unwrap_or(u32::MAX).max(1)));
        }
    }

    /// The message as the journal stores it: its expiry as wall-clock time, so that it still expires after a
    /// restart (see [`crate::persist`]).
    pub(crate) fn stored(&self, now: Instant) -> crate::persist::record::StoredMessage<'_> {
        let props = self.props.as_ref().map(|p| {
            let ctx = if p.ctx == PropertyContext::Will { 1 } else { 0 };
            (ctx, &p.wire[..], p.expiry_secs)
        });
        crate::persist::record::StoredMessage {
            topic: self.topic(),
            payload: &self.payload,
            qos: self.qos,
            retain: self.retain,
            props,
            expires_at_ms: self.expires_at.map(|at| crate::persist::wall_ms(at, now)),
        }
    }

    /// A message read back from the journal; `None` once it has expired. Properties that do not parse (a damaged
    /// record that still passed its checksum) are left out rather than forwarded.
    pub(crate) fn from_stored(m: &crate::persist::record::StoredMessage<'_>, now: Instant) -> Option<Self> {
        let expires_at = match m.expires_at_ms {
            Some(ms) => Some(crate::persist::instant_of(ms, now).filter(|at| *at > now)?),
            None => None,
        };
        let topic = Bytes::copy_from_slice(m.topic.as_bytes());
        let mut msg = Self::new(topic, Bytes::copy_from_slice(m.payload), m.qos, m.retain);
        if let Some((ctx, wire, expiry_secs)) = m.props {
            let ctx = if ctx == 1 { PropertyContext::Will } else { PropertyContext::Publish };
            if Properties::from_wire(wire, ctx).is_ok() {
                let wire = Bytes::copy_from_slice(wire);
                msg.props = Some(Box::new(Props { wire, ctx, expiry_secs }));
            }
        }
        msg.expires_at = expires_at;
        Some(msg)
    }

    /// Marks a message that goes to several subscribers, so that [`Message::encoded`] encodes it once for them.
    pub fn set_fanout(&mut self, fanout: bool) {
        if fanout != self.wire.is_some() {
            self.wire = fanout.then(Box::default);
        }
    }

    /// The PUBLISH of a fanned-out message for a delivery of `shape`, encoded on the first call and shared by
    /// every later one of the same shape (the first shape asked for wins; others get `None` and encode their own).
    /// `None` also for a message that is not fanned out or has an expiry (the remaining interval differs per
    /// delivery). Returns the bytes and, for QoS 1/2, where the two bytes of the packet identifier go.
    pub fn encoded(&self, shape: Shape) -> Option<(&[u8], usize)> {
        let cache = self.wire.as_ref().filter(|_| self.expires_at.is_none())?;
        let wire = cache.get_or_init(|| self.encode(shape));
        (wire.shape == shape && !wire.bytes.is_empty()).then_some((&wire.bytes, wire.pid_at))
    }

    /// Encodes the PUBLISH for `shape` (with packet identifier 1 for QoS 1/2); empty bytes if it cannot be encoded.
    fn encode(&self, shape: Shape) -> Wire {
        let failed = Wire { shape, pid_at: 0, bytes: Box::default() };
        let Ok(topic) = TopicName::new(self.topic()) else { return failed };
        let mut props = Vec::new();
        let version = if shape.v5 {
            // No expiry here (see `encoded`), so the forwarded properties do not depend on the time.
            self.forwarded_properties(Instant::now(), &mut props);
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let Some(placeholder) = PacketId::new(1) else { return failed };
        let qos_pid = match shape.qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(placeholder),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(placeholder),
        };
        let publish = Packet::Publish(Publish {
            dup: false,
            qos_pid,
            retain: shape.retain,
            topic,
            properties: Properties::from_list(&props),
            payload: &self.payload,
        });
        let Ok(len) = publish.encoded_len(version) else { return failed };
        let mut bytes = vec![0; len].into_boxed_slice();
        if publish.encode(version, &mut bytes).is_err() {
            return failed;
        }
        // Fixed header byte, Remaining Length (1-4 bytes), topic length (2 bytes) and topic, then the identifier.
        let varint = bytes.iter().skip(1).take(4).take_while(|b| **b & 0x80 != 0).count() + 1;
        let pid_at = 1 + varint + 2 + self.topic.len();
        Wire { shape, pid_at, bytes }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mqtt_codec::decode;

    use super::*;

    fn fanned(mut m: Message) -> Message {
        m.set_fanout(true);
        m
    }

    /// The cached bytes with the identifier patched in, as the session copies them.
    fn patched(m: &Message, shape: Shape, id: u16, dup: bool) -> Vec<u8> {
        let (bytes, pid_at) = m.encoded(shape).unwrap();
        let mut out = bytes.to_vec();
        if shape.qos != QoS::AtMostOnce {
            out[pid_at..pid_at + 2].copy_from_slice(&id.to_be_bytes());
            out[0] |= u8::from(dup) << 3;
        }
        out
    }

    fn direct(m: &Message, shape: Shape, id: u16, dup: bool) -> Vec<u8> {
        let id = PacketId::new(id).unwrap();
        let qos_pid = match shape.qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(id),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(id),
        };
        let mut props = Vec::new();
        m.forwarded_properties(Instant::now(), &mut props);
        let version = if shape.v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let properties = if shape.v5 { Properties::from_list(&props) } else { Properties::empty() };
        let dup = dup && shape.qos != QoS::AtMostOnce;
        let topic = TopicName::new(m.topic()).unwrap();
        let p = Packet::Publish(Publish { dup, qos_pid, retain: shape.retain, topic, properties, payload: &m.payload });
        let mut out = vec![0; p.encoded_len(version).unwrap()];
        p.encode(version, &mut out).unwrap();
        out
    }

    fn with_user_property(m: Message) -> Message {
        let list = [Property::UserProperty("k", "v"), Property::ContentType("text/plain")];
        let block = Properties::from_list(&list);
        // Encode a whole PUBLISH to get the property block's wire bytes as a client would send them.
        let p = Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: TopicName::new("x").unwrap(),
            properties: block,
            payload: b"",
        };
        let mut frame = vec![0; Packet::Publish(p).encoded_len(ProtocolVersion::V5).unwrap()];
        Packet::Publish(p).encode(ProtocolVersion::V5, &mut frame).unwrap();
        let Ok(Packet::Publish(back)) = decode(&frame, ProtocolVersion::V5) else { panic!("no publish") };
        let wire = Bytes::copy_from_slice(back.properties.as_wire().unwrap());
        m.with_properties(wire, PropertyContext::Publish, None, Instant::now())
    }

    #[test]
    fn a_message_is_small() {
        assert!(std::mem::size_of::<Message>() <= 112, "{}", std::mem::size_of::<Message>());
    }

    #[test]
    fn encoded_once_equals_the_packet_encoded_per_delivery() {
        // A long topic and payload push the Remaining Length to two bytes, which moves the identifier.
        let topic = "fan/out/".repeat(10);
        let payload = vec![7u8; 300];
        for v5 in [false, true] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for retain in [false, true] {
                    for m in [
                        Message::from_parts("a/b", b"hello", QoS::ExactlyOnce, true),
                        Message::from_parts(&topic, &payload, QoS::ExactlyOnce, true),
                        with_user_property(Message::from_parts("p", b"q", QoS::ExactlyOnce, false)),
                    ] {
                        let m = fanned(m);
                        let shape = Shape { v5, qos, retain };
                        for (id, dup) in [(1, false), (0x1234, false), (0xfffe, true)] {
                            assert_eq!(patched(&m, shape, id, dup), direct(&m, shape, id, dup), "{shape:?} {id} {dup}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_the_first_shape_is_cached_and_only_for_fanned_out_messages_without_expiry() {
        let one = Shape { v5: false, qos: QoS::AtMostOnce, retain: false };
        let other = Shape { v5: true, ..one };
        assert!(Message::from_parts("t", b"x", QoS::AtMostOnce, false).encoded(one).is_none(), "single delivery");
        let m = fanned(Message::from_parts("t", b"x", QoS::AtMostOnce, false));
        assert!(m.encoded(one).is_some());
        assert!(m.encoded(other).is_none());
        assert!(m.clone().encoded(one).is_none(), "a copy is not fanned out and carries no bytes");
        let expiring = fanned(Message::from_parts("t", b"x", QoS::AtMostOnce, false)).with_properties(
            Bytes::new(),
            PropertyContext::Publish,
            Some(60),
            Instant::now() + Duration::from_secs(1),
        );
        assert!(expiring.encoded(one).is_none(), "the remaining expiry differs per delivery");
    }
}
