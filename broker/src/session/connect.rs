//! The CONNECT handshake: checks, MQTT 5 enhanced authentication, session attach and CONNACK.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{
    Auth, ConnAck, Connect, DecodeError, Packet, Properties, Property, PropertyContext, ProtocolVersion, QoS,
    ReasonCode, decode,
};
use tokio::time::Instant;

use super::auth::{AuthExchange, AuthStep};
use super::{Context, ProtocolError, Session, encode_into};
use crate::message::Message;
use crate::router::ConnLink;

/// A refused CONNECT: send `connack` and close.
#[derive(Debug)]
pub struct Refused {
    /// The encoded CONNACK.
    pub connack: Vec<u8>,
    /// The reason.
    pub code: ReasonCode,
}

/// Where the handshake stands after a packet.
pub enum Handshake {
    /// Connected: the CONNACK (and any resends) wait in the session's output.
    Accepted(Box<Session>),
    /// Refused: send the CONNACK and close.
    Refused(Refused),
    /// MQTT 5 enhanced authentication goes on: send `out` of the [`Pending`] and feed it the client's next packet.
    Auth(Pending),
}

/// A CONNECT waiting for the client's next AUTH packet.
pub struct Pending {
    ctx: Context,
    frame: Bytes,
    link: ConnLink,
    method: String,
    exchange: Box<dyn AuthExchange>,
    /// The AUTH packet to send now.
    pub out: Vec<u8>,
}

/// Encodes a CONNACK refusing a client. MQTT 3.x has six return codes; other reasons become "not authorized".
pub fn refuse(version: ProtocolVersion, code: ReasonCode) -> Refused {
    let code = if version.is_v5() || code.to_v3_connack().is_some() { code } else { ReasonCode::NotAuthorized };
    let mut connack = Vec::new();
    let packet = Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::empty() });
    // Every code above exists in the version; if encoding failed anyway the connection closes without a CONNACK.
    let _ = encode_into(&mut connack, &packet, version);
    Refused { connack, code }
}

/// A Session Expiry Interval in seconds as the broker grants it: 0xFFFFFFFF is "never", capped by the maximum.
pub(crate) fn expiry_from_secs(secs: u32, max: Option<Duration>) -> Option<Duration> {
    let asked = (secs != u32::MAX).then(|| Duration::from_secs(u64::from(secs)));
    match (asked, max) {
        (None, max) => max,
        (Some(a), Some(m)) => Some(a.min(m)),
        (Some(a), None) => Some(a),
    }
}

/// A client identifier for a client that sent an empty one.
fn assign_client_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    h.write_u128(nanos);
    format!("auto-{:016x}", h.finish())
}

/// Handles the first packet of a connection.
///
/// # Errors
/// A [`ProtocolError`] when the first packet is not a valid CONNECT: close without CONNACK.
pub fn handshake(ctx: Context, frame: &Bytes, link: ConnLink, now: Instant) -> Result<Handshake, ProtocolError> {
    let connect = match decode(frame, ProtocolVersion::V311) {
        Ok(Packet::Connect(c)) => c,
        Ok(other) => return Err(ProtocolError::Unexpected(other.packet_type())),
        // Answer in the 3.1.1 format with "unacceptable protocol version" [MQTT-3.1.2-2].
        Err(DecodeError::UnsupportedProtocolLevel(_)) => {
            return Ok(Handshake::Refused(refuse(ProtocolVersion::V311, ReasonCode::UnsupportedProtocolVersion)));
        }
        Err(e) => return Err(e.into()),
    };
    let version = connect.protocol;
    if let Some(code) = check(&ctx, &connect) {
        return Ok(Handshake::Refused(refuse(version, code)));
    }
    let Some(method) = connect.properties.authentication_method() else {
        return Ok(accept(ctx, &connect, frame, link, now, None));
    };
    let Some(mut exchange) = ctx.auth.start(method, connect.client_id) else {
        return Ok(Handshake::Refused(refuse(version, ReasonCode::BadAuthenticationMethod)));
    };
    let step = exchange.step(connect.properties.authentication_data().unwrap_or_default());
    let method = method.to_owned();
    Ok(match step {
        AuthStep::Success(data) => accept(ctx, &connect, frame, link, now, Some((method, data))),
        AuthStep::Failure => Handshake::Refused(refuse(version, ReasonCode::NotAuthorized)),
        AuthStep::Continue(data) => Handshake::Auth(Pending::new(ctx, frame.clone(), link, method, exchange, &data)?),
    })
}

impl Pending {
    fn new(
        ctx: Context,
        frame: Bytes,
        link: ConnLink,
        method: String,
        exchange: Box<dyn AuthExchange>,
        data: &[u8],
    ) -> Result<Self, ProtocolError> {
        let mut out = Vec::new();
        let props = [Property::AuthenticationMethod(&method), Property::AuthenticationData(data)];
        let auth = Auth { reason: ReasonCode::ContinueAuthentication, properties: Properties::from_list(&props) };
        encode_into(&mut out, &Packet::Auth(auth), ProtocolVersion::V5)?;
        Ok(Self { ctx, frame, link, method, exchange, out })
    }

    /// Handles the client's answer during enhanced authentication.
    ///
    /// # Errors
    /// A [`ProtocolError`] for anything but an AUTH `0x18` with the same method.
    pub fn on_packet(mut self, frame: &Bytes, now: Instant) -> Result<Handshake, ProtocolError> {
        let auth = match decode(frame, ProtocolVersion::V5)? {
            Packet::Auth(a) if a.reason == ReasonCode::ContinueAuthentication => a,
            other => return Err(ProtocolError::Unexpected(other.packet_type())),
        };
        if auth.properties.authentication_method() != Some(self.method.as_str()) {
            return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "AUTH with another method"));
        }
        match self.exchange.step(auth.properties.authentication_data().unwrap_or_default()) {
            AuthStep::Continue(data) => {
                Self::new(self.ctx, self.frame, self.link, self.method, self.exchange, &data).map(Handshake::Auth)
            }
            AuthStep::Failure => Ok(Handshake::Refused(refuse(ProtocolVersion::V5, ReasonCode::NotAuthorized))),
            AuthStep::Success(data) => match decode(&self.frame, ProtocolVersion::V5)? {
                Packet::Connect(c) => Ok(accept(self.ctx, &c, &self.frame, self.link, now, Some((self.method, data)))),
                other => Err(ProtocolError::Unexpected(other.packet_type())),
            },
        }
    }
}

/// Checks that refuse a CONNECT with a CONNACK code.
fn check(ctx: &Context, c: &Connect<'_>) -> Option<ReasonCode> {
    let caps = &ctx.caps;
    let v5 = c.protocol.is_v5();
    if c.client_id.is_empty() && !c.clean_start && !v5 {
        // An empty id needs a clean session in MQTT 3.x [MQTT-3.1.3-8]; MQTT 5 assigns one either way.
        return Some(ReasonCode::ClientIdentifierNotValid);
    }
    if !v5 && caps.max_keepalive > 0 && (c.keep_alive == 0 || c.keep_alive > caps.max_keepalive) {
        // MQTT 3.x cannot be told a Server Keep Alive; refuse as Mosquitto does.
        return Some(ReasonCode::ClientIdentifierNotValid);
    }
    if caps.max_sessions > 0 {
        // A client that would add a session past the limit is refused; one resuming or replacing its own is not.
        let router = ctx.router();
        if router.session_count() >= caps.max_sessions && router.session(c.client_id).is_none() {
            return Some(if v5 { ReasonCode::QuotaExceeded } else { ReasonCode::ServerUnavailable });
        }
    }
    if let Some(w) = &c.will {
        if w.qos > caps.mqtt.maximum_qos {
            return Some(ReasonCode::QoSNotSupported); // [MQTT-3.2.2-12]
        }
        if w.retain && !caps.mqtt.retain_available {
            return Some(ReasonCode::RetainNotSupported); // [MQTT-3.2.2-13]
        }
        if w.properties.payload_format_indicator() == Some(true) && std::str::from_utf8(w.payload).is_err() {
            return Some(ReasonCode::PayloadFormatInvalid);
        }
    }
    None
}

fn accept(
    ctx: Context,
    connect: &Connect<'_>,
    frame: &Bytes,
    link: ConnLink,
    now: Instant,
    auth: Option<(String, Option<Vec<u8>>)>,
) -> Handshake {
    let caps = ctx.caps.clone();
    let version = connect.protocol;
    let v5 = version.is_v5();
    let assigned = connect.client_id.is_empty().then(assign_client_id);
    let client_id = assigned.as_deref().unwrap_or(connect.client_id);

    let asked_keep_alive = connect.keep_alive;
    let keep_alive = if v5 && caps.max_keepalive > 0 && (asked_keep_alive == 0 || asked_keep_alive > caps.max_keepalive)
    {
        caps.max_keepalive
    } else if v5 && asked_keep_alive == 0 {
        // No keep alive would let an idle or half-sent connection be held forever: MQTT 5 is told to ping.
        caps.idle_timeout_secs
    } else {
        asked_keep_alive
    };
    let props = &connect.properties;
    let asked_expiry = props.session_expiry_interval().unwrap_or(0);
    let expiry = if v5 {
        expiry_from_secs(asked_expiry, caps.mqtt.max_session_expiry)
    } else if connect.clean_start {
        Some(Duration::ZERO)
    } else {
        caps.persistent_session_expiry
    };
    let will = connect.will.map(|w| {
        let mut msg =
            Message::new(frame.slice_ref(w.topic.as_str().as_bytes()), frame.slice_ref(w.payload), w.qos, w.retain);
        if let Some(wire) = w.properties.as_wire().filter(|b| !b.is_empty()) {
            let expiry = w.properties.message_expiry_interval();
            msg = msg.with_properties(frame.slice_ref(wire), PropertyContext::Will, expiry, now);
        }
        Box::new((msg, Duration::from_secs(u64::from(w.properties.will_delay_interval().unwrap_or(0)))))
    });

    let conn_id = link.id;
    let (handle, session_present) = ctx.router().connect(client_id, connect.clean_start, expiry, link, now);
    handle.lock().outbox.set_receive_maximum(if v5 { props.receive_maximum().unwrap_or(u16::MAX) } else { u16::MAX });
    ctx.counters.clients_connected.fetch_add(1, Ordering::Relaxed);

    let mut session = Session {
        ctx,
        version,
        handle,
        conn_id,
        // The server allows one and a half keep alive periods [MQTT-3.1.2-24].
        keep_alive: if keep_alive > 0 {
            Some(Duration::from_millis(u64::from(keep_alive) * 1500))
        } else {
            // MQTT 3.x with keep alive 0 cannot be told: closed after the idle timeout without a packet.
            (caps.idle_timeout_secs > 0).then(|| Duration::from_secs(u64::from(caps.idle_timeout_secs)))
        },
        last_rx: now,
        will,
        out: Vec::with_capacity(64),
        session_expiry: expiry,
        client_max_packet: props.maximum_packet_size().unwrap_or(u32::MAX),
        // Our own alias table is bounded too: a client offering 65,535 aliases does not make us keep that many topics.
        client_topic_alias_max: if caps.mqtt.server_topic_aliases {
            props.topic_alias_maximum().unwrap_or(0).min(caps.mqtt.topic_alias_maximum)
        } else {
            0
        },
        problem_information: props.request_problem_information().unwrap_or(true),
        aliases: None,
        auth_method: None,
        reauth: None,
        backlogged: None,
        retained: None,
    };

    // CONNACK properties (MQTT 5): what the server grants and offers.
    let response_information = caps
        .mqtt
        .response_information
        .as_ref()
        .filter(|_| props.request_response_information() == Some(true))
        .map(|prefix| format!("{prefix}/{client_id}"));
    let mut p: Vec<Property<'_>> = Vec::new();
    if v5 {
        if expiry_from_secs(asked_expiry, None) != expiry {
            let secs = expiry.map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1));
            p.push(Property::SessionExpiryInterval(secs));
        }
        if caps.mqtt.receive_maximum < u16::MAX {
            p.push(Property::ReceiveMaximum(caps.mqtt.receive_maximum));
        }
        if caps.mqtt.maximum_qos < QoS::ExactlyOnce {
            p.push(Property::MaximumQoS(caps.mqtt.maximum_qos));
        }
        if !caps.mqtt.retain_available {
            p.push(Property::RetainAvailable(false));
        }
        p.push(Property::MaximumPacketSize(caps.max_packet_size));
        if let Some(id) = &assigned {
            p.push(Property::AssignedClientIdentifier(id));
        }
        if caps.mqtt.topic_alias_maximum > 0 {
            p.push(Property::TopicAliasMaximum(caps.mqtt.topic_alias_maximum));
        }
        if !caps.mqtt.wildcard_subscriptions {
            p.push(Property::WildcardSubscriptionAvailable(false));
        }
        if !caps.mqtt.subscription_identifiers {
            p.push(Property::SubscriptionIdentifierAvailable(false));
        }
        if !caps.mqtt.shared_subscriptions {
            p.push(Property::SharedSubscriptionAvailable(false));
        }
        if keep_alive != asked_keep_alive {
            p.push(Property::ServerKeepAlive(keep_alive));
        }
        if let Some(info) = &response_information {
            p.push(Property::ResponseInformation(info));
        }
        if let Some((method, data)) = &auth {
            p.push(Property::AuthenticationMethod(method));
            if let Some(d) = data {
                p.push(Property::AuthenticationData(d));
            }
        }
    }
    let connack =
        Packet::ConnAck(ConnAck { session_present, code: ReasonCode::Success, properties: Properties::from_list(&p) });
    if let Err(e) = encode_into(&mut session.out, &connack, version) {
        tracing::error!(error = %e, "CONNACK could not be encoded");
        session.will = None;
        session.close(now);
        return Handshake::Refused(refuse(version, ReasonCode::ImplementationSpecificError));
    }
    session.auth_method = auth.map(|(m, _)| m);
    tracing::debug!(client_id, session_present, ?version, keep_alive, "connected");
    Handshake::Accepted(Box::new(session))
}
