//! The task of one bridge: connects to an upstream address (TCP, then TLS when configured), attaches to the bridge's
//! session while connected, forwards its outbox upstream and publishes what comes down, and reconnects with
//! exponential backoff and jitter when the link fails.
//!
//! Every wait has a deadline: connecting and the TLS handshake ([`CONNECT_TIMEOUT`]), CONNACK, writes
//! ([`WRITE_TIMEOUT`]), journal waits, and the keep alive (a PINGREQ after half of it without traffic, the link
//! declared dead after one and a half without any packet from the upstream).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, Connect, Disconnect, List, Packet, PacketId, Properties, Property, PropertyContext, ProtocolVersion, Publish,
    QoS, QosPid, ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, frame_len,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::{BridgeSettings, Protocol, Shared, TryOrder, split_address};
use crate::journal::Lsn;
use crate::message::Message;
use crate::queue::Outgoing;
use crate::router::{ConnLink, SessionHandle};
use crate::session::Context;

/// The connection id [`super::Bridges::prepare`] attaches with (minus the bridge's index).
pub(super) const PREPARE_CONN_ID: u64 = u64::MAX - 1;
/// Connection ids of upstream links: far from those of network connections, which count up from 0.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(u64::MAX / 2);

/// TCP connect plus TLS handshake plus CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest an acknowledgement waits for the journal.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of PUBLISH packets gathered before a write.
const BATCH_BYTES: usize = 64 * 1024;
/// Largest packet accepted from the upstream.
const MAX_PACKET: u32 = 16 * 1024 * 1024;
/// How long a link must stay up for the reconnection backoff to start over.
const STABLE_LINK: Duration = Duration::from_secs(10);
/// How often a growing overflow count is logged.
const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(5);

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("refused by the upstream: {0:?}")]
    Refused(ReasonCode),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream sent DISCONNECT {0:?}")]
    Disconnected(ReasonCode),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("journal: {0}")]
    Journal(String),
    #[error("stopped")]
    Stopped,
}

/// One bridge's task.
pub(super) struct Task {
    pub(super) settings: Arc<BridgeSettings>,
    pub(super) shared: Arc<Shared>,
    pub(super) ctx: Context,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) stop: CancellationToken,
}

impl Task {
    fn version(&self) -> ProtocolVersion {
        match self.settings.protocol {
            Protocol::V311 => ProtocolVersion::V311,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }

    /// Connects, serves, and reconnects until stopped.
    pub(super) async fn run(self) {
        let name = self.settings.name.clone();
        let mut failures: u32 = 0;
        let mut next = 0usize;
        let mut rng = seed();
        let mut overflow_logged = 0u64;
        loop {
            let n = self.settings.addresses.len().max(1);
            let Some(addr) = self.settings.addresses.get(next % n).cloned() else { return };
            let mut connected = None;
            let result = self.connect_and_serve(&addr, &mut connected).await;
            self.shared.connected.store(false, Ordering::Relaxed);
            let error = match result {
                Ok(()) | Err(LinkError::Stopped) => return,
                Err(e) => e,
            };
            if let Some(at) = connected {
                // A link that stayed up a while starts the backoff over; one the upstream closes at once (it refuses
                // what we send) keeps backing off.
                failures = if at.elapsed() >= STABLE_LINK { 0 } else { failures.saturating_add(1) };
                next = match self.settings.try_order {
                    TryOrder::InOrder => 0,
                    TryOrder::RoundRobin => next.wrapping_add(1),
                };
            } else {
                failures = failures.saturating_add(1);
                next = next.wrapping_add(1);
            }
            let delay = backoff(self.settings.reconnect_min, self.settings.reconnect_max, failures, &mut rng);
            let (queued, dropped) = self.queue_state();
            tracing::warn!(
                bridge = name,
                upstream = addr,
                error = %error,
                queued,
                retry_ms = delay.as_millis() as u64,
                "bridge down"
            );
            self.log_overflow(dropped, &mut overflow_logged);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Messages queued for the upstream and dropped so far by the overflow policy.
    fn queue_state(&self) -> (usize, u64) {
        let router = self.ctx.router();
        router.session(&self.settings.local_client_id()).map_or((0, 0), |s| {
            let state = s.lock();
            (state.outbox().queued(), state.outbox().dropped())
        })
    }

    fn log_overflow(&self, dropped: u64, logged: &mut u64) {
        if dropped > *logged {
            tracing::warn!(
                bridge = self.settings.name,
                dropped = dropped - *logged,
                dropped_total = dropped,
                policy = ?self.settings.overflow,
                max_queue_bytes = self.settings.max_queue_bytes,
                "bridge queue full; messages dropped"
            );
            *logged = dropped;
        }
    }

    async fn connect_and_serve(&self, addr: &str, connected: &mut Option<Instant>) -> Result<(), LinkError> {
        let (host, port) = split_address(addr).ok_or_else(|| LinkError::Connect(format!("bad address {addr:?}")))?;
        let tcp = tokio::select! {
            r = timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))) => {
                r.map_err(|_| LinkError::Timeout("TCP connect"))??
            }
            () = self.stop.cancelled() => return Err(LinkError::Stopped),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.serve(tcp, addr, connected).await,
            Some(config) => {
                let name = self.settings.tls.as_ref().and_then(|t| t.server_name.clone()).unwrap_or(host.to_owned());
                let name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| LinkError::Connect(format!("server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| LinkError::Timeout("TLS handshake"))?
                    .map_err(|e| LinkError::Connect(format!("TLS: {e}")))?;
                self.serve(tls, addr, connected).await
            }
        }
    }

    /// The CONNECT of this bridge, encoded.
    fn connect_packet(&self) -> Result<Vec<u8>, LinkError> {
        let s = &self.settings;
        let version = self.version();
        let props = [
            Property::SessionExpiryInterval(if s.clean_start { 0 } else { u32::MAX }),
            Property::ReceiveMaximum(65_535),
        ];
        let connect = Connect {
            protocol: version,
            clean_start: s.clean_start,
            keep_alive: u16::try_from(s.keepalive.as_secs()).unwrap_or(u16::MAX),
            properties: if version.is_v5() { Properties::from_list(&props) } else { Properties::empty() },
            client_id: &s.client_id,
            will: None,
            username: s.username.as_deref(),
            password: s.password.as_deref().map(str::as_bytes),
        };
        let mut out = Vec::new();
        encode(&mut out, &Packet::Connect(connect), version)?;
        if !version.is_v5() && s.try_private {
            mark_bridge(&mut out);
        }
        Ok(out)
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        addr: &str,
        connected: &mut Option<Instant>,
    ) -> Result<(), LinkError> {
        let version = self.version();
        let mut rx = BytesMut::with_capacity(8 * 1024);
        write(&mut stream, &self.connect_packet()?).await?;
        let connack = timeout(CONNECT_TIMEOUT, read_frame(&mut stream, &mut rx))
            .await
            .map_err(|_| LinkError::Timeout("CONNACK"))??;
        let (session_present, receive_max, max_packet) = match mqtt_codec::decode(&connack, version) {
            Ok(Packet::ConnAck(a)) if a.code == ReasonCode::Success => (
                a.session_present,
                a.properties.receive_maximum().unwrap_or(u16::MAX),
                a.properties.maximum_packet_size().unwrap_or(u32::MAX),
            ),
            Ok(Packet::ConnAck(a)) => return Err(LinkError::Refused(a.code)),
            Ok(other) => return Err(LinkError::Protocol(format!("{:?} before CONNACK", other.packet_type()))),
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };
        let link = ConnLink::new(NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed));
        let local_id = self.settings.local_client_id();
        let handle = {
            let mut router = self.ctx.router();
            let (handle, _) = router.connect(&local_id, false, None, link.clone(), Instant::now());
            handle
        };
        *connected = Some(Instant::now());
        let mut conn = Conn {
            task: self,
            handle: handle.clone(),
            link: link.clone(),
            version,
            max_packet: usize::try_from(max_packet).unwrap_or(usize::MAX),
            out: Vec::new(),
            acks: Vec::new(),
            ack_wait: None,
            sub_id: None,
        };
        let (queued, inflight) = {
            let mut state = handle.lock();
            state.outbox_mut().set_receive_maximum(receive_max);
            (state.outbox().queued(), state.outbox().inflight())
        };
        self.shared.connected.store(true, Ordering::Relaxed);
        self.shared.connects.fetch_add(1, Ordering::Relaxed);
        *self.shared.upstream.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr.to_owned());
        tracing::info!(
            bridge = self.settings.name,
            upstream = addr,
            session_present,
            queued,
            inflight,
            "bridge connected"
        );
        let result = conn.serve(&mut stream, &mut rx).await;
        {
            let mut router = self.ctx.router();
            router.disconnect(&handle, link.id, None, Instant::now());
        }
        if matches!(result, Err(LinkError::Stopped)) {
            let mut bye = Vec::new();
            if encode(&mut bye, &Packet::Disconnect(Disconnect::normal()), version).is_ok() {
                let _ = timeout(Duration::from_secs(1), stream.write_all(&bye)).await;
            }
            let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
        result
    }
}

/// One upstream connection, attached to the bridge's session.
struct Conn<'a> {
    task: &'a Task,
    handle: Arc<SessionHandle>,
    link: ConnLink,
    version: ProtocolVersion,
    max_packet: usize,
    /// PUBLISH and PUBREL packets from the outbox.
    out: Vec<u8>,
    /// Acknowledgements of upstream messages, sent once `ack_wait` is durable.
    acks: Vec<u8>,
    ack_wait: Option<Lsn>,
    /// The identifier of the SUBSCRIBE awaiting its SUBACK.
    sub_id: Option<PacketId>,
}

impl Conn<'_> {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        rx: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let keepalive = self.task.settings.keepalive;
        let mut wire = Vec::new();
        self.subscribe()?;
        let mut last_rx = Instant::now();
        let mut last_tx = Instant::now();
        let mut ping_sent = false;
        let mut overflow_logged = self.handle.lock().outbox().dropped();
        let mut overflow_at = Instant::now() + OVERFLOW_LOG_EVERY;
        loop {
            let now = Instant::now();
            while let Some(len) = frame_len(rx, MAX_PACKET).map_err(|e| LinkError::Protocol(e.to_string()))? {
                let frame = rx.split_to(len).freeze();
                last_rx = now;
                ping_sent &= !self.on_frame(&frame, now)?;
            }
            let more = self.fill(now)?;
            let send_wait = self.handle.lock().outbox().send_wait();
            if let Some(lsn) = send_wait.max(self.ack_wait.take())
                && let Some(durable) = &self.task.ctx.durable
            {
                match timeout(JOURNAL_TIMEOUT, durable.wait(lsn)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(LinkError::Journal(e.to_string())),
                    Err(_) => return Err(LinkError::Timeout("journal")),
                }
            }
            wire.clear();
            wire.append(&mut self.acks);
            wire.append(&mut self.out);
            if !wire.is_empty() {
                write(stream, &wire).await?;
                last_tx = Instant::now();
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let ping_at = if ping_sent { None } else { Some(last_tx.min(last_rx) + keepalive / 2) };
            let dead_at = last_rx + keepalive + keepalive / 2;
            let wake_at = ping_at.map_or(dead_at, |p| p.min(dead_at)).min(overflow_at);
            tokio::select! {
                r = stream.read_buf(rx) => {
                    if r? == 0 {
                        return Err(LinkError::Closed);
                    }
                }
                () = self.handle.wake.notified() => {}
                () = sleep_until(wake_at) => {
                    let now = Instant::now();
                    if now >= dead_at {
                        return Err(LinkError::Timeout("keep alive: no packet from the upstream"));
                    }
                    if ping_at.is_some_and(|p| now >= p) {
                        write(stream, &[0xc0, 0x00]).await?;
                        last_tx = now;
                        ping_sent = true;
                    }
                    if now >= overflow_at {
                        let dropped = self.handle.lock().outbox().dropped();
                        self.task.log_overflow(dropped, &mut overflow_logged);
                        overflow_at = now + OVERFLOW_LOG_EVERY;
                    }
                }
                () = self.task.stop.cancelled() => return Err(LinkError::Stopped),
                () = self.link.kick.cancelled() => return Err(LinkError::Protocol("session taken over".into())),
            }
        }
    }

    /// Subscribes upstream to the remote filters of the `in` rules (No Local and Retain As Published on MQTT 5).
    fn subscribe(&mut self) -> Result<(), LinkError> {
        let v5 = self.version.is_v5();
        let mut subs = Vec::new();
        for r in self.task.settings.topics.iter().filter(|r| r.direction.is_in()) {
            let filter = r.remote_filter();
            if subs.iter().any(|(f, _): &(String, QoS)| *f == filter) {
                continue;
            }
            subs.push((filter, r.qos));
        }
        if subs.is_empty() {
            return Ok(());
        }
        let list: Vec<Subscription<'_>> = subs
            .iter()
            .filter_map(|(f, qos)| {
                let filter = TopicFilter::new(f).ok()?;
                let options =
                    SubscriptionOptions { no_local: v5, retain_as_published: v5, ..SubscriptionOptions::qos(*qos) };
                Some(Subscription { filter, options })
            })
            .collect();
        // An identifier no message in flight uses.
        let id = {
            let state = self.handle.lock();
            (1..=u16::MAX).rev().filter_map(PacketId::new).find(|id| state.outbox().inflight_state(*id).is_none())
        };
        let Some(id) = id else { return Err(LinkError::Protocol("no free packet identifier".into())) };
        self.sub_id = Some(id);
        let subscribe =
            Subscribe { packet_id: id, properties: Properties::empty(), subscriptions: List::from_slice(&list) };
        encode(&mut self.acks, &Packet::Subscribe(subscribe), self.version)
    }

    /// Acts on one packet from the upstream; returns whether it was a PINGRESP.
    fn on_frame(&mut self, frame: &Bytes, now: Instant) -> Result<bool, LinkError> {
        let packet = mqtt_codec::decode(frame, self.version).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let shared = &self.task.shared;
        match packet {
            Packet::PubAck(a) => {
                if self.handle.lock().outbox_mut().on_puback(a.packet_id) {
                    self.done(Finish::Ack, a.reason);
                }
            }
            Packet::PubRec(a) => {
                let failed = a.reason.is_error();
                if self.handle.lock().outbox_mut().on_pubrec(a.packet_id, failed) && failed {
                    self.done(Finish::Rec, a.reason);
                }
            }
            Packet::PubComp(a) => {
                if self.handle.lock().outbox_mut().on_pubcomp(a.packet_id) {
                    self.done(Finish::Comp, a.reason);
                }
            }
            Packet::Publish(p) => self.on_publish(frame, &p, now)?,
            Packet::PubRel(a) => {
                let id = a.packet_id;
                let appended = self.handle.lock().release_inbound(id).unwrap_or(Ok(None));
                let lsn = appended.map_err(|e| LinkError::Journal(e.to_string()))?;
                self.ack_wait = self.ack_wait.max(lsn);
                encode(&mut self.acks, &Packet::PubComp(Ack::new(id)), self.version)?;
            }
            Packet::SubAck(s) if Some(s.packet_id) == self.sub_id => {
                self.sub_id = None;
                for code in s.codes.iter().filter(|c| c.is_error()) {
                    tracing::warn!(bridge = self.task.settings.name, ?code, "upstream refused a bridge subscription");
                }
            }
            Packet::PingResp => return Ok(true),
            Packet::Disconnect(d) => return Err(LinkError::Disconnected(d.reason)),
            Packet::SubAck(_) | Packet::UnsubAck(_) => {}
            other => return Err(LinkError::Protocol(format!("unexpected {:?}", other.packet_type()))),
        }
        let _ = shared;
        Ok(false)
    }

    /// A message the upstream acknowledged (or refused, which MQTT 5 says with a reason code: it is gone either way).
    fn done(&self, finish: Finish, reason: ReasonCode) {
        if reached_upstream(finish, reason) {
            self.task.shared.forwarded.fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::warn!(bridge = self.task.settings.name, ?reason, "upstream refused a bridged message");
        }
    }

    /// Publishes an upstream message locally, with the bridge's session as publisher (so its own `out` subscriptions,
    /// which have No Local, never send it back), and queues the acknowledgement until what it answers for is durable.
    fn on_publish(&mut self, frame: &Bytes, p: &Publish<'_>, now: Instant) -> Result<(), LinkError> {
        let qos = p.qos_pid.qos();
        let local =
            self.task.settings.topics.iter().filter(|r| r.direction.is_in()).find_map(|r| r.to_local(p.topic.as_str()));
        let first = match p.qos_pid {
            QosPid::ExactlyOnce(id) => !self.handle.lock().inbound_qos2().contains(&id),
            _ => true,
        };
        match (&local, first) {
            (Some(topic), true) if TopicName::new(topic).is_ok() => {
                let mut msg = Message::new(Bytes::from(topic.clone()), frame.slice_ref(p.payload), qos, p.retain);
                if let Some(wire) = p.properties.as_wire().filter(|b| !b.is_empty()) {
                    let expiry = p.properties.message_expiry_interval();
                    msg = msg.with_properties(frame.slice_ref(wire), PropertyContext::Publish, expiry, now);
                }
                let qos2_id = match p.qos_pid {
                    QosPid::ExactlyOnce(id) => Some(id),
                    _ => None,
                };
                let mut router = self.task.ctx.router();
                router.publish_from(msg, Some(&self.handle), qos2_id, now);
                self.ack_wait = self.ack_wait.max(router.take_lsn());
                drop(router);
                self.task.shared.received.fetch_add(1, Ordering::Relaxed);
            }
            (_, true) => {
                tracing::debug!(
                    bridge = self.task.settings.name,
                    topic = p.topic.as_str(),
                    "upstream message outside the in rules"
                );
            }
            (_, false) => {}
        }
        match p.qos_pid {
            QosPid::AtMostOnce => Ok(()),
            QosPid::AtLeastOnce(id) => encode(&mut self.acks, &Packet::PubAck(Ack::new(id)), self.version),
            QosPid::ExactlyOnce(id) => encode(&mut self.acks, &Packet::PubRec(Ack::new(id)), self.version),
        }
    }

    /// The upstream topic of a local one: the first `out` rule that matches maps it; one no rule matches (queued
    /// under rules since removed) keeps its topic.
    fn remote_topic(&self, local: &str) -> String {
        self.task
            .settings
            .topics
            .iter()
            .filter(|r| r.direction.is_out())
            .find_map(|r| r.to_remote(local))
            .unwrap_or_else(|| local.to_owned())
    }

    /// Encodes what the outbox has to send, up to [`BATCH_BYTES`]; returns whether more is ready.
    fn fill(&mut self, now: Instant) -> Result<bool, LinkError> {
        let handle = self.handle.clone();
        let mut state = handle.lock();
        if state.conn().is_none_or(|c| c.id != self.link.id) {
            return Ok(false);
        }
        let mut forwarded = 0u64;
        let more = loop {
            if self.out.len() >= BATCH_BYTES {
                break state.outbox().has_pending();
            }
            let Some(next) = state.outbox_mut().next_send(now) else { break false };
            match next {
                Outgoing::Publish { id, delivery, dup } => {
                    let qos_pid = delivery.qos_pid(id);
                    let remote = self.remote_topic(delivery.msg.topic());
                    let mut props = Vec::new();
                    if self.version.is_v5() {
                        delivery.msg.forwarded_properties(now, &mut props);
                    }
                    let sent = TopicName::new(&remote).ok().and_then(|topic| {
                        let publish = Publish {
                            dup: dup && qos_pid != QosPid::AtMostOnce,
                            qos_pid,
                            retain: delivery.retain,
                            topic,
                            properties: Properties::from_list(&props),
                            payload: &delivery.msg.payload,
                        };
                        let packet = Packet::Publish(publish);
                        let len = packet.encoded_len(self.version).ok().filter(|l| *l <= self.max_packet)?;
                        encode(&mut self.out, &packet, self.version).ok().map(|()| len)
                    });
                    match (sent, id) {
                        (Some(_), None) => forwarded += 1,
                        (Some(_), Some(_)) => {}
                        (None, Some(id)) => {
                            tracing::warn!(
                                bridge = self.task.settings.name,
                                topic = remote,
                                "message cannot be sent upstream (topic or size); dropped"
                            );
                            state.outbox_mut().discard(id);
                        }
                        (None, None) => state.outbox_mut().count_dropped(),
                    }
                }
                Outgoing::PubRel(id) => encode(&mut self.out, &Packet::PubRel(Ack::new(id)), self.version)?,
            }
        };
        handle.release_publishers(&mut state);
        drop(state);
        self.task.shared.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        Ok(more)
    }
}

/// The acknowledgement that finished a message in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// PUBACK.
    Ack,
    /// A PUBREC with an error reason (one without goes on to PUBREL).
    Rec,
    /// PUBCOMP.
    Comp,
}

/// Whether the message an acknowledgement finished reached the upstream (it counts as forwarded): a PUBACK or
/// PUBREC without an error reason, and every PUBCOMP, since the PUBREC before it already said the upstream has the
/// message. A PUBCOMP can carry `0x92` (Packet Identifier not found): the answer to a PUBREL resent after a
/// reconnection for a flow the upstream completed before the link dropped.
fn reached_upstream(finish: Finish, reason: ReasonCode) -> bool {
    finish == Finish::Comp || !reason.is_error()
}

/// Appends one encoded packet to `out`.
fn encode(out: &mut Vec<u8>, packet: &Packet<'_>, version: ProtocolVersion) -> Result<(), LinkError> {
    let len = packet.encoded_len(version).map_err(|e| LinkError::Protocol(e.to_string()))?;
    let start = out.len();
    out.resize(start + len, 0);
    let slot = out.get_mut(start..).unwrap_or_default();
    packet.encode(version, slot).map_err(|e| LinkError::Protocol(e.to_string()))?;
    Ok(())
}

/// Sets Mosquitto's bridge bit (`0x80`) in the protocol level of an encoded MQTT 3.1.1 CONNECT: the level follows
/// the fixed header (type byte and Remaining Length) and the protocol name (`00 04 M Q T T`).
fn mark_bridge(connect: &mut [u8]) {
    let varint = connect.iter().skip(1).take(4).take_while(|b| **b & 0x80 != 0).count() + 1;
    if let Some(level) = connect.get_mut(1 + varint + 6) {
        *level |= 0x80;
    }
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), LinkError> {
    match timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Timeout("write")),
    }
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, rx: &mut BytesMut) -> Result<Bytes, LinkError> {
    loop {
        if let Some(len) = frame_len(rx, MAX_PACKET).map_err(|e| LinkError::Protocol(e.to_string()))? {
            return Ok(rx.split_to(len).freeze());
        }
        if stream.read_buf(rx).await? == 0 {
            return Err(LinkError::Closed);
        }
    }
}

/// The wait before reconnection attempt `failures`: `min` doubled per failure up to `max`, then a random point in
/// its upper half, so that gateways cut off together do not come back together.
fn backoff(min: Duration, max: Duration, failures: u32, rng: &mut u64) -> Duration {
    let base = min.saturating_mul(1u32 << failures.min(20)).min(max);
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let half = base / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(*rng % nanos)
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let mut rng = 12345;
        for failures in 0..30 {
            let base = (min * 2u32.pow(failures.min(20))).min(max);
            let d = backoff(min, max, failures, &mut rng);
            assert!(d >= base / 2 && d <= base, "{failures}: {d:?} not in [{:?}, {base:?}]", base / 2);
        }
    }

    #[test]
    fn a_pubcomp_counts_as_forwarded_even_for_a_flow_the_upstream_already_completed() {
        // A PUBREL resent after a reconnection, for a message the upstream released before the link dropped.
        assert!(reached_upstream(Finish::Comp, ReasonCode::PacketIdentifierNotFound));
        assert!(reached_upstream(Finish::Comp, ReasonCode::Success));
        assert!(reached_upstream(Finish::Ack, ReasonCode::Success));
        assert!(reached_upstream(Finish::Ack, ReasonCode::NoMatchingSubscribers));
        assert!(!reached_upstream(Finish::Ack, ReasonCode::QuotaExceeded));
        assert!(!reached_upstream(Finish::Rec, ReasonCode::NotAuthorized));
    }

    #[test]
    fn bridge_bit_lands_on_the_protocol_level() {
        let connect = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: false,
            keep_alive: 60,
            properties: Properties::empty(),
            client_id: &"x".repeat(200),
            will: None,
            username: None,
            password: None,
        };
        let mut out = Vec::new();
        encode(&mut out, &Packet::Connect(connect), ProtocolVersion::V311).unwrap();
        assert!(out[1] & 0x80 != 0, "a two-byte Remaining Length");
        mark_bridge(&mut out);
        assert_eq!(&out[3..9], b"\x00\x04MQTT");
        assert_eq!(out[9], 0x84);
    }
}
