//! An application message as the broker holds it: topic and payload share the bytes they arrived in.

use bytes::Bytes;
use mqtt_codec::QoS;

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
}

impl Message {
    /// A message; `topic` must be a valid topic name (the codec checked it on the way in).
    pub fn new(topic: Bytes, payload: Bytes, qos: QoS, retain: bool) -> Self {
        debug_assert!(std::str::from_utf8(&topic).is_ok());
        Self { topic, payload, qos, retain }
    }

    /// A message from owned parts (wills, tests).
    pub fn from_parts(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Self {
        Self::new(Bytes::copy_from_slice(topic.as_bytes()), Bytes::copy_from_slice(payload), qos, retain)
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        // Validated UTF-8 on decode; never empty for a routed message.
        std::str::from_utf8(&self.topic).unwrap_or_default()
    }

    /// Bytes the message costs in a queue (payload and topic).
    pub fn cost(&self) -> usize {
        self.payload.len().saturating_add(self.topic.len())
    }
}
