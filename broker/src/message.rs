//! An application message as the broker holds it: topic, payload and MQTT 5 properties share the bytes they
//! arrived in.

use bytes::Bytes;
use mqtt_codec::{Properties, Property, PropertyContext, PropertyId, QoS};
use tokio::time::Instant;

/// A message on its way from a publisher to subscribers. Cloning it copies no payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// MQTT 5 properties as they arrived (a PUBLISH or will property block, without its length prefix, validated
    /// by the codec for `ctx`). Forwarded without Topic Alias, Subscription Identifier, Message Expiry Interval and
    /// Will Delay Interval, which are per hop.
    props: Bytes,
    ctx: PropertyContext,
    /// The Message Expiry Interval it was published with, in seconds.
    expiry_secs: Option<u32>,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
}

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
        debug_assert!(std::str::from_utf8(&topic).is_ok());
        Self {
            topic,
            payload,
            qos,
            retain,
            props: Bytes::new(),
            ctx: PropertyContext::Publish,
            expiry_secs: None,
            expires_at: None,
        }
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
        self.props = props;
        self.ctx = ctx;
        self.expiry_secs = expiry_secs;
        self.published_at(now)
    }

    /// The same message with its expiry counted from `now`: a will's Message Expiry Interval starts when the will
    /// is published, not when the client connected.
    #[must_use]
    pub fn published_at(mut self, now: Instant) -> Self {
        self.expires_at = self.expiry_secs.map(|secs| now + std::time::Duration::from_secs(u64::from(secs)));
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
        self.payload.len().saturating_add(self.topic.len()).saturating_add(self.props.len())
    }

    /// Whether the message expired at `now` [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Whether the message carries properties to forward.
    pub fn has_properties(&self) -> bool {
        !self.props.is_empty() || self.expires_at.is_some()
    }

    /// The properties to forward to an MQTT 5 subscriber, in their original order, followed by the remaining
    /// Message Expiry Interval (the time spent in the broker subtracted) [MQTT-3.3.2-6].
    pub fn forwarded_properties<'a>(&'a self, now: Instant, out: &mut Vec<Property<'a>>) {
        // Validated on arrival; checked again here only because the bytes travel without their type.
        let block = Properties::from_wire(&self.props, self.ctx).unwrap_or_default();
        out.extend(block.iter().filter(|p| !per_hop(p.id())));
        if let Some(at) = self.expires_at {
            let left = at.saturating_duration_since(now).as_secs();
            out.push(Property::MessageExpiryInterval(u32::try_from(left).unwrap_or(u32::MAX).max(1)));
        }
    }
}
