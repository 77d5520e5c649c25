//! What the client sends: PUBLISH (with its acknowledgement), SUBSCRIBE and UNSUBSCRIBE.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{
    Ack, List, Packet, PacketId, Properties, Property, PropertyContext, Publish, QoS, QosPid, ReasonCode, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use tokio::time::Instant;

use super::notice::{Notice, truncated};
use super::{ProtocolError, Session};
use crate::auth::{Access, FilterAccess};
use crate::message::Message;
use crate::router::{Routed, SubOpts, SubscribeError};

/// Why a PUBLISH is refused: the code an MQTT 5 client gets, the text of its Reason String and log line, and the
/// rate limit of that line.
pub(super) struct Refusal {
    pub(super) code: ReasonCode,
    pub(super) why: &'static str,
    notice: &'static Notice,
}

/// Refuses a topic clients may not publish to. `$` topics are open to clients (`$aws/things/...` and the like), as
/// in Mosquitto, except `$SYS` (the broker's own) and `$share` (a subscription prefix, not a topic name); a topic
/// with more than `max_levels` levels is refused too.
pub(super) fn refuse_topic(topic: &str, max_levels: usize) -> Option<Refusal> {
    static SYS: Notice = Notice::new();
    static SHARE: Notice = Notice::new();
    static DEPTH: Notice = Notice::new();
    let first = topic.split('/').next().unwrap_or_default();
    if first == "$SYS" {
        return Some(Refusal {
            code: ReasonCode::NotAuthorized,
            why: "$SYS topics are reserved for the broker",
            notice: &SYS,
        });
    }
    if first == "$share" {
        return Some(Refusal {
            code: ReasonCode::TopicNameInvalid,
            why: "$share/ starts a shared subscription filter, not a topic name",
            notice: &SHARE,
        });
    }
    // Levels are one more than the separators.
    if topic.bytes().filter(|b| *b == b'/').count() >= max_levels {
        return Some(Refusal {
            code: ReasonCode::TopicNameInvalid,
            why: "topic has more levels than mqtt.max_topic_levels",
            notice: &DEPTH,
        });
    }
    None
}

impl Session {
    /// Whether the ACL lets this client publish to `topic` (always, without one).
    fn may_publish(&self, topic: &[u8]) -> bool {
        let Some(access) = &self.access else { return true };
        std::str::from_utf8(topic).is_ok_and(|t| access.allows(Access::Write, t))
    }

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
        if self.ctx.counters.obs.enabled() {
            let tally = self.received.get_or_insert_with(Box::default);
            if let Some((n, b)) = tally.get_mut(p.qos_pid.qos() as usize) {
                *n += 1;
                *b += frame.len() as u64;
            }
        }
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
                && !state.inbound_qos2().contains(&id)
                && state.inbound_qos2().len() >= usize::from(caps.mqtt.receive_maximum)
            {
                return Err(ProtocolError::Violation(ReasonCode::ReceiveMaximumExceeded, "receive maximum exceeded"));
            }
        }

        let topic_str = std::str::from_utf8(&topic).unwrap_or_default();
        let refused = if let Some(refused) = refuse_topic(topic_str, caps.mqtt.max_topic_levels) {
            Some(refused)
        } else if !self.may_publish(&topic) {
            static ACL: Notice = Notice::new();
            Some(Refusal {
                code: ReasonCode::NotAuthorized,
                why: "not authorized to publish to this topic",
                notice: &ACL,
            })
        } else if p.properties.payload_format_indicator() == Some(true) && std::str::from_utf8(p.payload).is_err() {
            if qos == QoS::AtMostOnce {
                return Err(ProtocolError::Violation(ReasonCode::PayloadFormatInvalid, "payload is not UTF-8"));
            }
            static FORMAT: Notice = Notice::new();
            Some(Refusal {
                code: ReasonCode::PayloadFormatInvalid,
                why: "payload format indicator says UTF-8 but the payload is not",
                notice: &FORMAT,
            })
        } else {
            None
        };
        if let Some(r) = &refused {
            self.ctx.counters.messages_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if r.code == ReasonCode::NotAuthorized {
                self.ctx.counters.obs.drop_n(crate::metrics::DropReason::AclDenied, 1);
            }
            if let Some(count) = r.notice.hit(now, 1) {
                tracing::info!(
                    client_id = truncated(self.client_id()),
                    topic = truncated(topic_str),
                    ?qos,
                    count,
                    reason = r.why,
                    "PUBLISH refused, not routed"
                );
            }
        }
        let reason = refused.as_ref().map_or(ReasonCode::Success, |r| r.code);
        let why = refused.as_ref().map(|r| r.why);

        // `qos2_id`: the QoS 2 packet identifier the session holds until PUBREL, journaled with the message.
        let route = |s: &mut Self, qos2_id: Option<PacketId>| -> Option<Routed> {
            // The connection's one clock reading for the batch of packets this one came in.
            let read_at = s.ctx.counters.obs.stamp_at(now.into_std());
            let mut msg = Message::read_at(topic.clone(), frame.slice_ref(p.payload), qos, p.retain, read_at);
            if let Some(wire) = p.properties.as_wire().filter(|b| !b.is_empty()) {
                let expiry = p.properties.message_expiry_interval();
                msg = msg.with_properties(frame.slice_ref(wire), PropertyContext::Publish, expiry, now);
            }
            // Within the broker's memory budget, or not taken at all (see crate::budget).
            let msg = s.within_budget(msg)?;
            let mut router = s.ctx.router();
            let routed = router.publish_from(msg, Some(&s.handle), qos2_id, now);
            let lsn = router.take_lsn();
            if let Some(slow) = router.take_backlogged()
                && !Arc::ptr_eq(&slow, &s.handle)
            {
                s.backlogged = Some(slow);
            }
            drop(router);
            s.wait_for(lsn);
            // A retained message nobody subscribes to yet is kept, not dropped.
            if routed.matched == 0 && !p.retain {
                s.ctx.counters.obs.drop_n(crate::metrics::DropReason::NoSubscribers, 1);
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
                    route(self, None);
                }
            }
            QosPid::AtLeastOnce(id) => {
                let reason = if reason == ReasonCode::Success { outcome(route(self, None)) } else { reason };
                self.send_ack(true, id, reason, why)?;
            }
            QosPid::ExactlyOnce(id) => {
                // Exactly once: the id is remembered until PUBREL, so a resent PUBLISH is not routed again.
                let first = !self.handle.lock().inbound_qos2().contains(&id);
                let reason = match (first, reason) {
                    (true, ReasonCode::Success) => {
                        // The router holds the id, journaled in the message's own record: after a crash the
                        // publisher's resend is recognised exactly when the message was queued.
                        let reason = outcome(route(self, Some(id)));
                        if reason.is_error() {
                            self.release_inbound(id)?;
                        }
                        reason
                    }
                    (false, _) => ReasonCode::Success,
                    (true, refused) => refused,
                };
                self.send_ack(false, id, reason, why)?;
            }
        }
        Ok(())
    }

    /// Sends PUBACK (or PUBREC); MQTT 5 gets the reason code, and a Reason String (`why`) for a failure when the
    /// client allows problem information.
    fn send_ack(
        &mut self,
        puback: bool,
        id: PacketId,
        reason: ReasonCode,
        why: Option<&'static str>,
    ) -> Result<(), ProtocolError> {
        let v5 = self.version.is_v5();
        let reason = if v5 { reason } else { ReasonCode::Success };
        let text = match reason {
            _ if !self.problem_information || !reason.is_error() => None,
            ReasonCode::QuotaExceeded => Some("no matching subscriber could queue the message"),
            _ => why,
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
        let mut wait = None;
        let mut scans = Vec::new();
        {
            let mut router = self.ctx.router();
            for sub in s.subscriptions.iter() {
                let filter = sub.filter;
                let shared = filter.shared();
                let bare = shared.map_or(filter, |s| s.filter);
                let read = self.access.as_ref().map_or(FilterAccess::All, |a| a.filter_access(bare.as_str()));
                let code = if id.is_some() && !caps.mqtt.subscription_identifiers {
                    ReasonCode::SubscriptionIdentifiersNotSupported
                } else if shared.is_some() && !caps.mqtt.shared_subscriptions {
                    ReasonCode::SharedSubscriptionsNotSupported
                } else if bare.has_wildcards() && !caps.mqtt.wildcard_subscriptions {
                    ReasonCode::WildcardSubscriptionsNotSupported
                } else if bare.as_str().split('/').count() > caps.mqtt.max_topic_levels {
                    ReasonCode::TopicFilterInvalid
                } else if read == FilterAccess::Denied {
                    tracing::debug!(client_id = &*self.handle.client_id, "subscription refused by the ACL");
                    ReasonCode::NotAuthorized
                } else {
                    let opts = SubOpts {
                        qos: sub.options.qos.min(caps.mqtt.maximum_qos),
                        no_local: sub.options.no_local,
                        retain_as_published: sub.options.retain_as_published,
                        id,
                        acl_check: read == FilterAccess::Partial,
                    };
                    let retain = sub.options.retain_handling;
                    let granted = router.subscribe_deferred(&self.handle, filter.as_str(), opts, retain);
                    if let Some(lsn) = router.take_lsn() {
                        wait = Some(wait.map_or(lsn, |w: crate::journal::Lsn| w.max(lsn)));
                    }
                    match granted {
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
        self.wait_for(wait);
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
                if let Some(lsn) = router.take_lsn() {
                    self.durable_wait = Some(self.durable_wait.map_or(lsn, |w| w.max(lsn)));
                }
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
