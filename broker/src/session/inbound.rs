//! What the client sends: PUBLISH (with its acknowledgement), SUBSCRIBE and UNSUBSCRIBE.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{
    Ack, List, Packet, PacketId, Properties, Property, PropertyContext, Publish, QoS, QosPid, ReasonCode, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use tokio::time::Instant;

use super::{ProtocolError, Session};
use crate::message::Message;
use crate::router::{Routed, SubOpts, SubscribeError};

impl Session {
    /// Resolves the topic of a PUBLISH, applying and recording MQTT 5 topic aliases.
    fn resolve_topic(&mut self, frame: &Bytes, p: &Publish<'_>) -> Result<Bytes, ProtocolError> {
        let Some(alias) = p.properties.topic_alias() else {
            return Ok(frame.slice_ref(p.topic.as_str().as_bytes()));
        };
        if alias > self.ctx.caps.mqtt.topic_alias_maximum {
            return Err(ProtocolError::Violation(ReasonCode::TopicAliasInvalid, "topic alias above the maximum"));
        }
        if p.topic.is_empty() {
            return self
                .aliases
                .as_ref()
                .and_then(|a| a.inbound.get(&alias))
                .cloned()
                .ok_or(ProtocolError::Violation(ReasonCode::ProtocolError, "unknown topic alias"));
        }
        let topic = frame.slice_ref(p.topic.as_str().as_bytes());
        // A copy, so the alias table does not pin the whole frame the topic arrived in.
        self.aliases().inbound.insert(alias, Bytes::copy_from_slice(&topic));
        Ok(topic)
    }

    pub(super) fn on_publish(&mut self, frame: &Bytes, p: &Publish<'_>, now: Instant) -> Result<(), ProtocolError> {
        self.ctx.counters.messages_received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let caps = self.ctx.caps.clone();
        let v5 = self.version.is_v5();
        let qos = p.qos_pid.qos();
        if qos > caps.mqtt.maximum_qos {
            return Err(ProtocolError::Violation(ReasonCode::QoSNotSupported, "QoS above Maximum QoS"));
        }
        if p.retain && !caps.mqtt.retain_available {
            return Err(ProtocolError::Violation(ReasonCode::RetainNotSupported, "retain not available"));
        }
        if p.properties.subscription_identifier().is_some() {
            return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "subscription identifier from a client"));
        }
        let topic = self.resolve_topic(frame, p)?;
        // Inbound QoS 2 flow control: PUBLISH beyond our Receive Maximum [MQTT-3.3.4-8].
        if let QosPid::ExactlyOnce(id) = p.qos_pid {
            let state = self.handle.lock();
            if v5
                && !state.inbound_qos2.contains(&id)
                && state.inbound_qos2.len() >= usize::from(caps.mqtt.receive_maximum)
            {
                return Err(ProtocolError::Violation(ReasonCode::ReceiveMaximumExceeded, "receive maximum exceeded"));
            }
        }

        let reason = if topic.first() == Some(&b'$') {
            // Clients cannot publish into `$` topics.
            tracing::debug!(client_id = self.client_id(), "publish to a $ topic refused");
            ReasonCode::NotAuthorized
        } else if topic.iter().filter(|b| **b == b'/').count() >= caps.mqtt.max_topic_levels {
            tracing::debug!(client_id = self.client_id(), "publish to a topic with too many levels refused");
            ReasonCode::TopicNameInvalid
        } else if p.properties.payload_format_indicator() == Some(true) && std::str::from_utf8(p.payload).is_err() {
            if qos == QoS::AtMostOnce {
                return Err(ProtocolError::Violation(ReasonCode::PayloadFormatInvalid, "payload is not UTF-8"));
            }
            ReasonCode::PayloadFormatInvalid
        } else {
            ReasonCode::Success
        };

        let route = |s: &mut Self| -> Option<Routed> {
            let mut msg = Message::new(topic.clone(), frame.slice_ref(p.payload), qos, p.retain);
            if let Some(wire) = p.properties.as_wire().filter(|b| !b.is_empty()) {
                let expiry = p.properties.message_expiry_interval();
                msg = msg.with_properties(frame.slice_ref(wire), PropertyContext::Publish, expiry, now);
            }
            // Within the broker's memory budget, or not taken at all (see crate::budget).
            let msg = s.within_budget(msg)?;
            let mut router = s.ctx.router();
            let routed = router.publish(msg, Some(&s.handle), now);
            if let Some(slow) = router.take_backlogged()
                && !Arc::ptr_eq(&slow, &s.handle)
            {
                s.backlogged = Some(slow);
            }
            Some(routed)
        };
        let outcome = |routed: Option<Routed>| {
            let Some(routed) = routed else {
                // The memory budget is used up: an MQTT 5 publisher may retry later.
                return ReasonCode::QuotaExceeded;
            };
            if routed.matched == 0 {
                ReasonCode::NoMatchingSubscribers
            } else if routed.dropped == routed.matched {
                // Nobody could take it: tell an MQTT 5 publisher, which may retry later.
                ReasonCode::QuotaExceeded
            } else {
                ReasonCode::Success
            }
        };
        match p.qos_pid {
            QosPid::AtMostOnce => {
                if reason == ReasonCode::Success {
                    route(self);
                }
            }
            QosPid::AtLeastOnce(id) => {
                let reason = if reason == ReasonCode::Success { outcome(route(self)) } else { reason };
                self.send_ack(true, id, reason)?;
            }
            QosPid::ExactlyOnce(id) => {
                // Exactly once: the id is remembered until PUBREL, so a resent PUBLISH is not routed again.
                let first = !self.handle.lock().inbound_qos2.contains(&id);
                let reason = match (first, reason) {
                    (true, ReasonCode::Success) => outcome(route(self)),
                    (false, _) => ReasonCode::Success,
                    (true, refused) => refused,
                };
                if !reason.is_error() {
                    self.handle.lock().inbound_qos2.insert(id);
                }
                self.send_ack(false, id, reason)?;
            }
        }
        Ok(())
    }

    /// Sends PUBACK (or PUBREC); MQTT 5 gets the reason code, and a Reason String for a failure when the client
    /// allows problem information.
    fn send_ack(&mut self, puback: bool, id: PacketId, reason: ReasonCode) -> Result<(), ProtocolError> {
        let v5 = self.version.is_v5();
        let reason = if v5 { reason } else { ReasonCode::Success };
        let text = match reason {
            _ if !self.problem_information || !reason.is_error() => None,
            ReasonCode::NotAuthorized => Some("clients cannot publish to $ topics"),
            ReasonCode::TopicNameInvalid => Some("topic has too many levels"),
            ReasonCode::PayloadFormatInvalid => Some("payload format indicator says UTF-8 but the payload is not"),
            ReasonCode::QuotaExceeded => Some("the message could not be queued"),
            _ => None,
        };
        let list;
        let properties = match text {
            Some(t) => {
                list = [Property::ReasonString(t)];
                Properties::from_list(&list)
            }
            None => Properties::empty(),
        };
        let mut ack = Ack { packet_id: id, reason, properties };
        // A Reason String is left out rather than exceed the client's Maximum Packet Size [MQTT-3.4.2-2].
        let oversize = |a: Ack<'_>| {
            Packet::PubAck(a).encoded_len(self.version).map_or(true, |n| n > self.client_max_packet as usize)
        };
        if !ack.properties.is_empty() && oversize(ack) {
            ack.properties = Properties::empty();
        }
        self.send(&if puback { Packet::PubAck(ack) } else { Packet::PubRec(ack) })
    }

    pub(super) fn on_subscribe(&mut self, s: &Subscribe<'_>) -> Result<(), ProtocolError> {
        let caps = self.ctx.caps.clone();
        let v5 = self.version.is_v5();
        let id = s.properties.subscription_identifier();
        self.check_filter_count(s)?;
        let mut codes = Vec::new();
        let mut scans = Vec::new();
        {
            let mut router = self.ctx.router();
            for sub in s.subscriptions.iter() {
                let filter = sub.filter;
                let shared = filter.shared();
                let bare = shared.map_or(filter, |s| s.filter);
                let code = if id.is_some() && !caps.mqtt.subscription_identifiers {
                    ReasonCode::SubscriptionIdentifiersNotSupported
                } else if shared.is_some() && !caps.mqtt.shared_subscriptions {
                    ReasonCode::SharedSubscriptionsNotSupported
                } else if bare.has_wildcards() && !caps.mqtt.wildcard_subscriptions {
                    ReasonCode::WildcardSubscriptionsNotSupported
                } else if bare.as_str().split('/').count() > caps.mqtt.max_topic_levels {
                    ReasonCode::TopicFilterInvalid
                } else {
                    let opts = SubOpts {
                        qos: sub.options.qos.min(caps.mqtt.maximum_qos),
                        no_local: sub.options.no_local,
                        retain_as_published: sub.options.retain_as_published,
                        id,
                    };
                    let retain = sub.options.retain_handling;
                    match router.subscribe_deferred(&self.handle, filter.as_str(), opts, retain) {
                        Ok((qos, scan)) => {
                            scans.extend(scan);
                            match qos {
                                QoS::AtMostOnce => ReasonCode::Success,
                                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                            }
                        }
                        Err(SubscribeError::TooMany) => ReasonCode::QuotaExceeded,
                    }
                };
                // MQTT 3.x knows one failure code [MQTT-3.9.3-2].
                codes.push(if v5 || !code.is_error() { code } else { ReasonCode::UnspecifiedError });
            }
        }
        for scan in scans {
            self.queue_retained(scan);
        }
        let ack = SubAck { packet_id: s.packet_id, properties: Properties::empty(), codes: List::from_slice(&codes) };
        self.send(&Packet::SubAck(ack))
    }

    pub(super) fn on_unsubscribe(&mut self, u: &Unsubscribe<'_>) -> Result<(), ProtocolError> {
        let mut codes = Vec::new();
        {
            let mut router = self.ctx.router();
            for f in u.filters.iter() {
                let existed = router.unsubscribe(&self.handle, f.as_str());
                codes.push(if existed { ReasonCode::Success } else { ReasonCode::NoSubscriptionExisted });
            }
        }
        let codes = if self.version.is_v5() { List::from_slice(&codes) } else { List::from_slice(&[]) };
        for f in u.filters.iter() {
            self.cancel_retained(f.as_str());
        }
        let ack = UnsubAck { packet_id: u.packet_id, properties: Properties::empty(), codes };
        self.send(&Packet::UnsubAck(ack))
    }
}
