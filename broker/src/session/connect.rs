//! The CONNECT handshake: checks, MQTT 5 enhanced authentication, session attach and CONNACK.

use std::sync::Arc;
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
    /// Another connection holds the client's session and has been told to close: wait until it has
    /// ([`crate::router::Router::connection_ended`]), then [`TakeOver::resume`].
    TakingOver(Box<TakeOver>),
}

/// An accepted CONNECT waiting for the connection that holds its session to close (see
/// [`crate::router::Router::try_connect`]).
pub struct TakeOver {
    ctx: Context,
    frame: Bytes,
    link: ConnLink,
    auth: Option<(String, Option<Vec<u8>>)>,
}

impl TakeOver {
    /// Notified whenever a connection detaches from its session (see
    /// [`crate::router::Router::connection_ended`]).
    pub fn connection_ended(&self) -> Arc<tokio::sync::Notify> {
        self.ctx.router().connection_ended()
    }

    /// The client identifier of the CONNECT, for logs.
    pub fn client_id(&self) -> String {
        match decode(&self.frame, ProtocolVersion::V311) {
            Ok(Packet::Connect(c)) => c.client_id.to_owned(),
            _ => String::new(),
        }
    }

    /// Tries to attach again. `force` takes the session even if the old connection is still attached (it did not
    /// end in time).
    ///
    /// # Errors
    /// A [`ProtocolError`] if the CONNECT no longer decodes (it did once; an internal error).
    pub fn resume(self, now: Instant, force: bool) -> Result<Handshake, ProtocolError> {
        // A CONNECT names its own protocol version.
        match decode(&self.frame, ProtocolVersion::V311)? {
            Packet::Connect(c) => Ok(accept(self.ctx, &c, &self.frame, self.link, now, self.auth, force)),
            other => Err(ProtocolError::Unexpected(other.packet_type())),
        }
    }
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
    if let Some((code, why)) = check(&ctx, &connect) {
        let client_id = super::notice::truncated(connect.client_id);
        tracing::info!(client_id, ?version, keep_alive = connect.keep_alive, reason = why, "CONNECT refused");
        return Ok(Handshake::Refused(refuse(version, code)));
    }
    let Some(method) = connect.properties.authentication_method() else {
        return Ok(accept(ctx, &connect, frame, link, now, None, false));
    };
    let Some(mut exchange) = ctx.auth.start(method, connect.client_id) else {
        return Ok(Handshake::Refused(refuse(version, ReasonCode::BadAuthenticationMethod)));
    };
    let step = exchange.step(connect.properties.authentication_data().unwrap_or_default());
    let method = method.to_owned();
    Ok(match step {
        AuthStep::Success(data) => accept(ctx, &connect, frame, link, now, Some((method, data)), false),
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
                Packet::Connect(c) => {
                    Ok(accept(self.ctx, &c, &self.frame, self.link, now, Some((self.method, data)), false))
                }
                other => Err(ProtocolError::Unexpected(other.packet_type())),
            },
        }
    }
}

/// Checks that refuse a CONNECT with a CONNACK code, and what the log says about it.
fn check(ctx: &Context, c: &Connect<'_>) -> Option<(ReasonCode, &'static str)> {
    let caps = &ctx.caps;
    let v5 = c.protocol.is_v5();
    if c.client_id.is_empty() && c.protocol == ProtocolVersion::V31 {
        // MQTT 3.1 requires 1 to 23 characters; like Mosquitto, longer ones are accepted and empty ones refused with
        // "identifier rejected" (the broker cannot assign one: 3.1 has no way to tell the client).
        return Some((ReasonCode::ClientIdentifierNotValid, "empty client identifier in MQTT 3.1"));
    }
    if c.client_id.starts_with(crate::bridge::CLIENT_ID_PREFIX) {
        return Some((
            ReasonCode::ClientIdentifierNotValid,
            "client identifiers starting with $bridge/ are the broker's",
        ));
    }
    if c.client_id.is_empty() && !c.clean_start && !v5 {
        // An empty id needs a clean session in MQTT 3.x [MQTT-3.1.3-8]; MQTT 5 assigns one either way.
        return Some((ReasonCode::ClientIdentifierNotValid, "empty client identifier without clean session"));
    }
    if !v5 && caps.max_keepalive > 0 && (c.keep_alive == 0 || c.keep_alive > caps.max_keepalive) {
        // MQTT 3.x cannot be told a Server Keep Alive; refuse with "identifier rejected", as Mosquitto does.
        let why = if c.keep_alive == 0 {
            "keep alive 0 (none) while max_keepalive is set"
        } else {
            "keep alive exceeds max_keepalive"
        };
        return Some((ReasonCode::ClientIdentifierNotValid, why));
    }
    if caps.max_sessions > 0 {
        // A client that would add a session past the limit is refused; one resuming or replacing its own is not.
        let router = ctx.router();
        if router.session_count() >= caps.max_sessions && router.session(c.client_id).is_none() {
            let code = if v5 { ReasonCode::QuotaExceeded } else { ReasonCode::ServerUnavailable };
            return Some((code, "max_sessions reached"));
        }
    }
    if let Some(w) = &c.will {
        if w.qos > caps.mqtt.maximum_qos {
            return Some((ReasonCode::QoSNotSupported, "will QoS above maximum_qos")); // [MQTT-3.2.2-12]
        }
        if w.retain && !caps.mqtt.retain_available {
            return Some((ReasonCode::RetainNotSupported, "will retain while retain is not available")); // [MQTT-3.2.2-13]
        }
        if w.properties.payload_format_indicator() == Some(true) && std::str::from_utf8(w.payload).is_err() {
            return Some((ReasonCode::PayloadFormatInvalid, "will payload is not UTF-8 as its format indicator says"));
        }
        // A will goes where its client could publish: the rules of PUBLISH ($SYS, $share, topic depth).
        if let Some(refused) = super::inbound::refuse_topic(w.topic.as_str(), caps.mqtt.max_topic_levels) {
            return Some((refused.code, refused.why));
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
    force: bool,
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
        Arc::new((msg, Duration::from_secs(u64::from(w.properties.will_delay_interval().unwrap_or(0)))))
    });

    // Authorization (see `crate::auth`): the client's permissions, and its will topic checked like a PUBLISH.
    let access = match crate::auth::admit(&ctx, client_id, connect.will.as_ref().map(|w| w.topic.as_str())) {
        Ok(access) => access,
        Err(code) => return Handshake::Refused(refuse(version, code)),
    };

    // A session another user left is not resumed by this one: its subscriptions and queued messages are not theirs.
    let clean_start = connect.clean_start || access.as_ref().is_some_and(|a| ctx.router().held_by_another_user(a));
    let conn_id = link.id;
    if let Some(info) = &link.info {
        let _ = info.connect.set((version, connect.username.map(str::to_owned)));
        if let (Some(_), Some(key)) = (&access, ctx.gate.as_ref().and_then(|g| g.acl_key())) {
            let _ = info.acl.set(key.clone());
        }
    }
    let attached = {
        let mut router = ctx.router();
        let attached = if force {
            Ok(router.connect(client_id, clean_start, expiry, link.clone(), now))
        } else {
            router.try_connect(client_id, clean_start, expiry, link.clone(), now)
        };
        // What the CONNACK answers for (a new persistent session, a cancelled will, the will it accepts) is
        // durable before it goes out.
        attached.map(|(handle, present)| {
            router.note_will(&handle, will.as_ref(), now);
            (handle, present, router.take_lsn())
        })
    };
    let Ok((handle, session_present, opened)) = attached else {
        let frame = frame.clone();
        return Handshake::TakingOver(Box::new(TakeOver { ctx, frame, link, auth }));
    };
    if ctx.gate.is_some() {
        ctx.router().attach_access(&handle, access.clone());
    }
    handle.lock().outbox_mut().set_receive_maximum(if v5 {
        props.receive_maximum().unwrap_or(u16::MAX)
    } else {
        u16::MAX
    });
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
        received: None,
        durable_wait: None,
        access,
        retained: None,
    };
    session.wait_for(opened);

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
    if !fit_connack(&mut p, session_present, version, session.client_max_packet) {
        // Not even the properties the client cannot do without fit: nothing may be sent to it [MQTT-3.1.2-24].
        tracing::info!(
            client_id,
            max_packet_size = session.client_max_packet,
            "CONNACK exceeds the client's Maximum Packet Size"
        );
        session.will = None;
        session.close(now);
        return Handshake::Refused(Refused { connack: Vec::new(), code: ReasonCode::PacketTooLarge });
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

/// Leaves out CONNACK properties, the least needed first, until the CONNACK fits the client's Maximum Packet Size
/// [MQTT-3.1.2-24]. Returns `false` when it cannot fit.
pub(super) fn fit_connack(
    props: &mut Vec<Property<'_>>,
    session_present: bool,
    version: ProtocolVersion,
    max: u32,
) -> bool {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    loop {
        let connack =
            ConnAck { session_present, code: ReasonCode::Success, properties: Properties::from_list(props.as_slice()) };
        if Packet::ConnAck(connack).encoded_len(version).is_ok_and(|n| n <= max) {
            return true;
        }
        let Some((at, _)) =
            props.iter().enumerate().filter_map(|(i, p)| leave_out_rank(p).map(|r| (i, r))).min_by_key(|&(_, r)| r)
        else {
            return false;
        };
        props.remove(at);
    }
}

/// In which order a CONNACK property may be left out (lowest first), by what the client assumes without it; `None`
/// for those it cannot do without: its assigned identifier, the keep alive it must use, the authentication.
fn leave_out_rank(p: &Property<'_>) -> Option<u8> {
    Some(match p {
        // Information only.
        Property::ReasonString(_) | Property::UserProperty(..) | Property::ResponseInformation(_) => 0,
        // Absent, the client uses no aliases.
        Property::TopicAliasMaximum(_) => 1,
        // Absent, the client assumes these available, and learns otherwise from the SUBACK reason codes.
        Property::WildcardSubscriptionAvailable(_)
        | Property::SubscriptionIdentifierAvailable(_)
        | Property::SharedSubscriptionAvailable(_) => 2,
        // Absent, the client assumes its own value; the broker keeps the session for as long as it granted.
        Property::SessionExpiryInterval(_) => 3,
        // Absent, the client assumes no limit; a packet over it closes the connection (0x95).
        Property::MaximumPacketSize(_) => 4,
        // Absent, the client assumes 65,535, QoS 2 and retain: going over closes the connection.
        Property::ReceiveMaximum(_) => 5,
        Property::MaximumQoS(_) | Property::RetainAvailable(_) => 6,
        _ => return None,
    })
}
