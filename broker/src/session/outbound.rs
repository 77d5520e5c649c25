//! Deliveries from the session's outbox to the client, batched into the output buffer.

use std::sync::atomic::Ordering;

use mqtt_codec::{Ack, Packet, Properties, Property, Publish, QosPid, TopicName};
use tokio::time::Instant;

use super::notice::{Notice, truncated};
use super::{ProtocolError, Session, encode_into};
use crate::message::Shape;
use crate::queue::{Delivery, Outgoing};
use crate::router::RetainedStep;

/// Most bytes queued for writing per wakeup before the connection flushes and comes back for more.
const MAX_BATCH_BYTES: usize = 64 * 1024;

impl Session {
    /// Moves what the outbox has ready into the output buffer, up to a batch limit. Returns whether more is ready.
    ///
    /// # Errors
    /// [`ProtocolError::Encode`] on an internal encoding failure.
    pub fn poll_outbox(&mut self, now: Instant) -> Result<bool, ProtocolError> {
        self.flush_received();
        let retained_left = self.poll_retained(now);
        let handle = self.handle.clone();
        let mut state = handle.lock();
        if state.conn().is_none_or(|c| c.id != self.conn_id) {
            // Taken over: what is queued belongs to the new connection now; sending it here could lose it.
            return Ok(false);
        }
        let mut delivered = 0u64;
        let mut dropped = 0u64;
        let expired_before = state.outbox().expired();
        let counters = self.ctx.counters.clone();
        let metrics = &counters.obs;
        // Read once per batch, and only when there is something to time.
        let mut sent_at = None;
        let mut tally = crate::metrics::SentTally::default();
        let more = loop {
            if self.out.len() >= MAX_BATCH_BYTES {
                break state.outbox().has_pending();
            }
            let Some(next) = state.outbox_mut().next_send(now) else { break false };
            match next {
                Outgoing::Publish { id, delivery, dup } => {
                    let qos_pid = delivery.qos_pid(id);
                    let start = self.out.len();
                    if self.write_publish(&delivery, qos_pid, dup, now)? {
                        delivered += 1;
                        if metrics.enabled() {
                            tally.sent(delivery.qos, self.out.len().saturating_sub(start));
                            // Retained messages sent on subscribe waited in the store, not in the data path.
                            let sent_at = *sent_at.get_or_insert_with(crate::metrics::Stamp::now);
                            if let Some(us) = delivery.msg.read_at.micros_until(sent_at)
                                && !delivery.retain
                            {
                                tally.written_after_us(us);
                            }
                        }
                    } else {
                        // Larger than the client's Maximum Packet Size: never sent to it [MQTT-3.1.2-25].
                        dropped += 1;
                        match id {
                            Some(id) => state.outbox_mut().discard(id),
                            None => state.outbox_mut().count_dropped(),
                        }
                    }
                }
                Outgoing::PubRel(id) => encode_into(&mut self.out, &Packet::PubRel(Ack::new(id)), self.version)?,
            }
        };
        if delivered > 0 && metrics.enabled() {
            metrics.add_sent(&tally);
        }
        let expired = state.outbox().expired().saturating_sub(expired_before);
        if expired > 0 {
            metrics.drop_n(crate::metrics::DropReason::Expired, expired);
        }
        handle.release_publishers(&mut state);
        // A QoS 2 PUBLISH or PUBREL goes out once its record is durable (see `crate::persist`).
        let wait = state.outbox().send_wait();
        drop(state);
        self.wait_for(wait);
        let counters = &self.ctx.counters;
        counters.messages_delivered.fetch_add(delivered, Ordering::Relaxed);
        if dropped > 0 {
            counters.messages_dropped.fetch_add(dropped, Ordering::Relaxed);
            counters.messages_oversized.fetch_add(dropped, Ordering::Relaxed);
            static OVERSIZED: Notice = Notice::new();
            if let Some(count) = OVERSIZED.hit(now, dropped) {
                tracing::info!(
                    client_id = truncated(self.client_id()),
                    max_packet_size = self.client_max_packet,
                    count,
                    "messages dropped: larger than the client's Maximum Packet Size [MQTT-3.1.2-25]"
                );
            }
        }
        // A retained walk waiting for room goes on once this batch made some.
        let retained_more = match retained_left {
            RetainedStep::Done => false,
            RetainedStep::More => true,
            RetainedStep::Full => delivered + dropped > 0,
        };
        Ok(more || retained_more)
    }

    /// Encodes one PUBLISH. Returns `false` (writing nothing) when it exceeds the client's Maximum Packet Size: only
    /// a packet over the limit is dropped [MQTT-3.1.2-25], so a Topic Alias is added only where it still fits.
    fn write_publish(&mut self, d: &Delivery, qos_pid: QosPid, dup: bool, now: Instant) -> Result<bool, ProtocolError> {
        let v5 = self.version.is_v5();
        let max_packet = usize::try_from(self.client_max_packet).unwrap_or(usize::MAX);
        let aliases = v5 && self.client_topic_alias_max > 0;
        // Topic aliases and Subscription Identifiers are per subscriber: those deliveries are encoded one by one.
        if d.sub_ids.is_empty() && !aliases {
            let shape = Shape { v5, qos: qos_pid.qos(), retain: d.retain };
            if let Some((bytes, pid_at)) = d.msg.encoded(shape) {
                if bytes.len() > max_packet {
                    return Ok(false);
                }
                let start = self.out.len();
                self.out.extend_from_slice(bytes);
                if let Some(id) = qos_pid.packet_id() {
                    let at = start.saturating_add(pid_at);
                    if let Some(slot) = self.out.get_mut(at..at.saturating_add(2)) {
                        slot.copy_from_slice(&id.get().to_be_bytes());
                    }
                    if dup && let Some(first) = self.out.get_mut(start) {
                        *first |= 0b1000;
                    }
                }
                return Ok(true);
            }
        }
        let topic_str = d.msg.topic();
        let topic = TopicName::new(topic_str).map_err(|_| mqtt_codec::EncodeError::InvalidValue)?;
        let mut props: Vec<Property<'_>> = Vec::new();
        if v5 {
            d.msg.forwarded_properties(now, &mut props);
            props.extend(d.sub_ids.iter().map(|&id| Property::SubscriptionIdentifier(id)));
        }
        let dup = dup && qos_pid != QosPid::AtMostOnce;
        let retain = d.retain;
        let payload: &[u8] = &d.msg.payload;
        let base = Publish { dup, qos_pid, retain, topic, properties: Properties::empty(), payload };
        let len = |p: Publish<'_>| Packet::Publish(p).encoded_len(self.version);
        // Broker-to-client topic aliases: the first message on a topic sets an alias, later ones send it alone.
        let known = if aliases { self.aliases.as_ref().and_then(|a| a.outbound.get(topic_str)).copied() } else { None };
        if let Some(alias) = known {
            props.push(Property::TopicAlias(alias));
            let publish = Publish { topic: TopicName::empty(), properties: Properties::from_list(&props), ..base };
            if len(publish)? > max_packet {
                return Ok(false);
            }
            encode_into(&mut self.out, &Packet::Publish(publish), self.version)?;
            return Ok(true);
        }
        if len(Publish { properties: Properties::from_list(&props), ..base })? > max_packet {
            return Ok(false);
        }
        let next = self.aliases.as_ref().map_or(0, |a| a.outbound.len());
        let next = u16::try_from(next)
            .ok()
            .and_then(|n| n.checked_add(1))
            .filter(|&n| aliases && n <= self.client_topic_alias_max);
        if let Some(alias) = next {
            props.push(Property::TopicAlias(alias));
            // A new alias only where the packet still fits with it; otherwise the topic goes without one this time.
            if len(Publish { properties: Properties::from_list(&props), ..base })? <= max_packet {
                self.aliases().outbound.insert(topic_str.into(), alias);
            } else {
                props.pop();
            }
        }
        let publish = Publish { properties: Properties::from_list(&props), ..base };
        encode_into(&mut self.out, &Packet::Publish(publish), self.version)?;
        Ok(true)
    }
}
