//! Property tests: every packet type in MQTT 3.1, 3.1.1 and 5.0, with arbitrary valid fields.
//!
//! Strategies generate owned models (Strings and Vecs); each test builds the borrowed `Packet` from its model and
//! checks that:
//! - `decode(encode(p)) == p`, consuming every byte, and `encoded_len` equals the bytes written;
//! - every strict prefix of the encoding gives `Packet::decode_from(prefix, v, u32::MAX) == Ok(None)`;
//! - encoding into any shorter buffer gives `BufferTooSmall` and writes nothing;
//! - `frame_len` with a maximum of one byte less than the packet gives `PacketTooLarge`;
//! - the client's decoders (`decode_from_server_v311`, `decode_from_server_v5`) give what `decode` gives for the
//!   packet types a server sends, and refuse the others, on valid and on mutated encodings.

use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError, List, Packet, PacketId, PacketType, Properties,
    Property, PropertyContext, PropertyId, ProtocolVersion, Publish, QoS, QosPid, ReasonCode, RetainHandling, SubAck,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, Will, decode,
    decode_from_server_v5, decode_from_server_v311, frame_len,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases per packet type (per `proptest!` test below).
const CASES: u32 = 1024;

/// Cases for each test that mutates encodings.
const MUTATION_CASES: u32 = 4096;

const MAX_VARINT: u32 = 268_435_455;

// ------------------------------------------------------------------------------------------------ owned models

/// An owned property.
#[derive(Debug, Clone, PartialEq)]
enum P {
    PayloadFormatIndicator(bool),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Vec<u8>),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Vec<u8>),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl P {
    fn borrow(&self) -> Property<'_> {
        match self {
            Self::PayloadFormatIndicator(v) => Property::PayloadFormatIndicator(*v),
            Self::MessageExpiryInterval(v) => Property::MessageExpiryInterval(*v),
            Self::ContentType(v) => Property::ContentType(v),
            Self::ResponseTopic(v) => Property::ResponseTopic(v),
            Self::CorrelationData(v) => Property::CorrelationData(v),
            Self::SubscriptionIdentifier(v) => Property::SubscriptionIdentifier(*v),
            Self::SessionExpiryInterval(v) => Property::SessionExpiryInterval(*v),
            Self::AssignedClientIdentifier(v) => Property::AssignedClientIdentifier(v),
            Self::ServerKeepAlive(v) => Property::ServerKeepAlive(*v),
            Self::AuthenticationMethod(v) => Property::AuthenticationMethod(v),
            Self::AuthenticationData(v) => Property::AuthenticationData(v),
            Self::RequestProblemInformation(v) => Property::RequestProblemInformation(*v),
            Self::WillDelayInterval(v) => Property::WillDelayInterval(*v),
            Self::RequestResponseInformation(v) => Property::RequestResponseInformation(*v),
            Self::ResponseInformation(v) => Property::ResponseInformation(v),
            Self::ServerReference(v) => Property::ServerReference(v),
            Self::ReasonString(v) => Property::ReasonString(v),
            Self::ReceiveMaximum(v) => Property::ReceiveMaximum(*v),
            Self::TopicAliasMaximum(v) => Property::TopicAliasMaximum(*v),
            Self::TopicAlias(v) => Property::TopicAlias(*v),
            Self::MaximumQoS(v) => Property::MaximumQoS(*v),
            Self::RetainAvailable(v) => Property::RetainAvailable(*v),
            Self::UserProperty(k, v) => Property::UserProperty(k, v),
            Self::MaximumPacketSize(v) => Property::MaximumPacketSize(*v),
            Self::WildcardSubscriptionAvailable(v) => Property::WildcardSubscriptionAvailable(*v),
            Self::SubscriptionIdentifierAvailable(v) => Property::SubscriptionIdentifierAvailable(*v),
            Self::SharedSubscriptionAvailable(v) => Property::SharedSubscriptionAvailable(*v),
        }
    }
}

fn borrow_all(props: &[P]) -> Vec<Property<'_>> {
    props.iter().map(P::borrow).collect()
}

#[derive(Debug, Clone)]
struct WillM {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    props: Vec<P>,
}

#[derive(Debug, Clone)]
struct ConnectM {
    clean: bool,
    keep_alive: u16,
    props: Vec<P>,
    client_id: String,
    will: Option<WillM>,
    username: Option<String>,
    password: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct PublishM {
    dup: bool,
    qos: QoS,
    pid: u16,
    retain: bool,
    topic: String,
    props: Vec<P>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct AckM {
    pid: u16,
    reason: ReasonCode,
    props: Vec<P>,
}

#[derive(Debug, Clone)]
struct SubscribeM {
    pid: u16,
    props: Vec<P>,
    subs: Vec<(String, SubscriptionOptions)>,
}

#[derive(Debug, Clone)]
struct CodesM {
    pid: u16,
    props: Vec<P>,
    codes: Vec<ReasonCode>,
}

#[derive(Debug, Clone)]
struct UnsubscribeM {
    pid: u16,
    props: Vec<P>,
    filters: Vec<String>,
}

#[derive(Debug, Clone)]
struct ReasonPropsM {
    reason: ReasonCode,
    props: Vec<P>,
}

// ------------------------------------------------------------------------------------------------ the checks

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// The properties every packet must have; see the module doc.
fn check_packet(p: Packet<'_>, v: ProtocolVersion) -> Result<(), TestCaseError> {
    let len = p.encoded_len(v).map_err(|e| TestCaseError::fail(format!("encoded_len of {p:?}: {e:?}")))?;
    let mut buf = vec![0u8; len];
    let n = p.encode(v, &mut buf).map_err(|e| TestCaseError::fail(format!("encode of {p:?}: {e:?}")))?;
    prop_assert_eq!(n, len);
    prop_assert_eq!(decode(&buf, v), Ok(p));
    // The decoded packet (borrowing the wire bytes) encodes back to the same bytes.
    let decoded = decode(&buf, v).unwrap();
    prop_assert_eq!(decoded.encoded_len(v), Ok(n));
    prop_assert_eq!(encode_packet(decoded, v), Ok(buf.clone()));
    // In a stream, with the next packet behind it, exactly this packet is consumed.
    let mut stream = buf.clone();
    stream.extend_from_slice(&[0xc0, 0x00]);
    prop_assert_eq!(Packet::decode_from(&stream, v, u32::MAX), Ok(Some((p, n))));
    for k in 0..n {
        prop_assert_eq!(Packet::decode_from(&buf[..k], v, u32::MAX), Ok(None), "prefix of {} bytes", k);
    }
    let n32 = u32::try_from(n).unwrap();
    prop_assert_eq!(frame_len(&buf, n32), Ok(Some(n)));
    prop_assert_eq!(frame_len(&buf, n32 - 1), Err(DecodeError::PacketTooLarge { len: n32 }));
    prop_assert_eq!(Packet::decode_from(&buf, v, n32 - 1), Err(DecodeError::PacketTooLarge { len: n32 }));
    let mut small = vec![0xa5u8; n];
    for k in 0..n {
        prop_assert_eq!(p.encode(v, &mut small[..k]), Err(EncodeError::BufferTooSmall { needed: n }));
    }
    prop_assert!(small.iter().all(|&b| b == 0xa5), "a failed encode wrote into the buffer");
    check_client_decoders(&buf, v)
}

/// The client's decoder for `v` agrees with `decode`: the same packet or error for the types a server sends in that
/// version, and `InvalidPacketType` for the others.
fn check_client_decoders(bytes: &[u8], v: ProtocolVersion) -> Result<(), TestCaseError> {
    let client = match v {
        ProtocolVersion::V311 => decode_from_server_v311(bytes),
        ProtocolVersion::V5 => decode_from_server_v5(bytes),
        ProtocolVersion::V31 => return Ok(()),
    };
    match decode(bytes, v) {
        Ok(p) => {
            let from_server = match p.packet_type() {
                PacketType::Connect | PacketType::Subscribe | PacketType::Unsubscribe | PacketType::PingReq => false,
                PacketType::Disconnect | PacketType::Auth => v == ProtocolVersion::V5,
                _ => true,
            };
            if from_server {
                prop_assert_eq!(client, Ok(p));
            } else {
                prop_assert_eq!(client, Err(DecodeError::InvalidPacketType(p.packet_type() as u8)));
            }
        }
        Err(_) => prop_assert!(client.is_err(), "client decoder accepted {:02x?} as {:?}", bytes, client),
    }
    Ok(())
}

fn with_connect<R>(m: &ConnectM, v: ProtocolVersion, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let will_props = m.will.as_ref().map(|w| borrow_all(&w.props)).unwrap_or_default();
    let will = m.will.as_ref().map(|w| Will {
        topic: TopicName::new(&w.topic).unwrap(),
        payload: &w.payload,
        qos: w.qos,
        retain: w.retain,
        properties: Properties::from_list(&will_props),
    });
    let p = Packet::Connect(Connect {
        protocol: v,
        clean_start: m.clean,
        keep_alive: m.keep_alive,
        properties: Properties::from_list(&props),
        client_id: &m.client_id,
        will,
        username: m.username.as_deref(),
        password: m.password.as_deref(),
    });
    f(p)
}

fn with_publish<R>(m: &PublishM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let topic = if m.topic.is_empty() { TopicName::empty() } else { TopicName::new(&m.topic).unwrap() };
    let p = Packet::Publish(Publish {
        dup: m.dup,
        qos_pid: QosPid::from_parts(m.qos, pid(m.pid)),
        retain: m.retain,
        topic,
        properties: Properties::from_list(&props),
        payload: &m.payload,
    });
    f(p)
}

fn with_ack<R>(kind: PacketType, m: &AckM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let ack = Ack { packet_id: pid(m.pid), reason: m.reason, properties: Properties::from_list(&props) };
    let p = match kind {
        PacketType::PubAck => Packet::PubAck(ack),
        PacketType::PubRec => Packet::PubRec(ack),
        PacketType::PubRel => Packet::PubRel(ack),
        _ => Packet::PubComp(ack),
    };
    f(p)
}

fn with_subscribe<R>(m: &SubscribeM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let subs: Vec<_> = m
        .subs
        .iter()
        .map(|(f, options)| Subscription { filter: TopicFilter::new(f).unwrap(), options: *options })
        .collect();
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(m.pid),
        properties: Properties::from_list(&props),
        subscriptions: List::from_slice(&subs),
    });
    f(p)
}

fn with_suback<R>(m: &CodesM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let p = Packet::SubAck(SubAck {
        packet_id: pid(m.pid),
        properties: Properties::from_list(&props),
        codes: List::from_slice(&m.codes),
    });
    f(p)
}

fn with_unsubscribe<R>(m: &UnsubscribeM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let filters: Vec<_> = m.filters.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(m.pid),
        properties: Properties::from_list(&props),
        filters: List::from_slice(&filters),
    });
    f(p)
}

fn with_unsuback<R>(m: &CodesM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let p = Packet::UnsubAck(UnsubAck {
        packet_id: pid(m.pid),
        properties: Properties::from_list(&props),
        codes: List::from_slice(&m.codes),
    });
    f(p)
}

/// A CONNACK model.
#[derive(Debug, Clone)]
struct ConnAckM {
    session_present: bool,
    code: ReasonCode,
    props: Vec<P>,
}

fn with_connack<R>(m: &ConnAckM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    f(Packet::ConnAck(ConnAck {
        session_present: m.session_present,
        code: m.code,
        properties: Properties::from_list(&props),
    }))
}

fn with_reason_props<R>(kind: PacketType, m: &ReasonPropsM, f: impl FnOnce(Packet<'_>) -> R) -> R {
    let props = borrow_all(&m.props);
    let properties = Properties::from_list(&props);
    f(if kind == PacketType::Auth {
        Packet::Auth(Auth { reason: m.reason, properties })
    } else {
        Packet::Disconnect(Disconnect { reason: m.reason, properties })
    })
}

/// Any packet model, for the tests that mutate encodings.
#[derive(Debug, Clone)]
enum AnyM {
    Connect(ConnectM),
    ConnAck(ConnAckM),
    Publish(PublishM),
    Ack(PacketType, AckM),
    Subscribe(SubscribeM),
    SubAck(CodesM),
    Unsubscribe(UnsubscribeM),
    UnsubAck(CodesM),
    ReasonProps(PacketType, ReasonPropsM),
}

fn with_any<R>(m: &AnyM, v: ProtocolVersion, f: impl FnOnce(Packet<'_>) -> R) -> R {
    match m {
        AnyM::Connect(m) => with_connect(m, v, f),
        AnyM::ConnAck(m) => with_connack(m, f),
        AnyM::Publish(m) => with_publish(m, f),
        AnyM::Ack(kind, m) => with_ack(*kind, m, f),
        AnyM::Subscribe(m) => with_subscribe(m, f),
        AnyM::SubAck(m) => with_suback(m, f),
        AnyM::Unsubscribe(m) => with_unsubscribe(m, f),
        AnyM::UnsubAck(m) => with_unsuback(m, f),
        AnyM::ReasonProps(kind, m) => with_reason_props(*kind, m, f),
    }
}

fn encode_any(m: &AnyM, v: ProtocolVersion) -> Vec<u8> {
    with_any(m, v, |p| {
        let mut buf = vec![0u8; p.encoded_len(v).unwrap()];
        p.encode(v, &mut buf).unwrap();
        buf
    })
}

/// Whatever the decoder accepts, the encoder can write again, and that encoding is stable: decoding it gives the
/// same packet, and encoding that gives the same bytes. Streaming decode agrees with `decode`.
fn check_decoded_consistency(bytes: &[u8], v: ProtocolVersion) -> Result<(), TestCaseError> {
    check_client_decoders(bytes, v)?;
    let decoded = decode(bytes, v);
    if frame_len(bytes, u32::MAX) == Ok(Some(bytes.len())) {
        prop_assert_eq!(Packet::decode_from(bytes, v, u32::MAX), decoded.map(|p| Some((p, bytes.len()))));
    }
    let Ok(p) = decoded else { return Ok(()) };
    let again = encode_packet(p, v)
        .map_err(|e| TestCaseError::fail(format!("decoded {p:?} from {bytes:02x?} but encoding it failed: {e:?}")))?;
    prop_assert_eq!(decode(&again, v), Ok(p));
    let Ok(p2) = decode(&again, v) else { unreachable!() };
    prop_assert_eq!(encode_packet(p2, v), Ok(again));
    Ok(())
}

fn encode_packet(p: Packet<'_>, v: ProtocolVersion) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; p.encoded_len(v)?];
    let n = p.encode(v, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

// ------------------------------------------------------------------------------------------------ strategies

fn versions() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V31), Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}

/// A UTF-8 string without U+0000 (any other scalar value, unicode included).
fn text() -> BoxedStrategy<String> {
    "[^\\x00]{0,10}".boxed()
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..max).boxed()
}

/// One topic level: possibly empty, possibly unicode, without `/`, `+`, `#` or U+0000.
fn level() -> BoxedStrategy<String> {
    prop_oneof![3 => "[^\\x00+#/]{0,6}", 1 => "[a-z]{1,3}", 1 => Just(String::new())].boxed()
}

/// A valid topic name: one or more levels, not empty (empty levels such as `a//b` or `/` allowed).
fn topic_name() -> BoxedStrategy<String> {
    vec(level(), 1..5).prop_map(|l| l.join("/")).prop_filter("empty topic", |t| !t.is_empty()).boxed()
}

/// A valid topic filter: levels, `+` levels, an optional final `#`, optionally as `$share/{group}/{filter}`.
fn topic_filter() -> BoxedStrategy<String> {
    let lvl = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    let group = "[^\\x00+#/]{1,6}";
    (vec(lvl, 0..5), any::<bool>(), proptest::option::weighted(0.2, group))
        .prop_map(|(mut levels, hash, group)| {
            if hash || levels.is_empty() {
                levels.push("#".into());
            }
            let f = levels.join("/");
            match group {
                Some(g) => format!("$share/{g}/{f}"),
                None => f,
            }
        })
        .prop_filter("invalid filter", |f| TopicFilter::new(f).is_ok())
        .boxed()
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn nonzero_u16() -> impl Strategy<Value = u16> {
    1u16..=u16::MAX
}

/// The value of one property that may appear once.
fn single(id: PropertyId) -> BoxedStrategy<P> {
    use PropertyId as I;
    match id {
        I::PayloadFormatIndicator => any::<bool>().prop_map(P::PayloadFormatIndicator).boxed(),
        I::MessageExpiryInterval => any::<u32>().prop_map(P::MessageExpiryInterval).boxed(),
        I::ContentType => text().prop_map(P::ContentType).boxed(),
        I::ResponseTopic => topic_name().prop_map(P::ResponseTopic).boxed(),
        I::CorrelationData => bytes(16).prop_map(P::CorrelationData).boxed(),
        I::SubscriptionIdentifier => (1..=MAX_VARINT).prop_map(P::SubscriptionIdentifier).boxed(),
        I::SessionExpiryInterval => any::<u32>().prop_map(P::SessionExpiryInterval).boxed(),
        I::AssignedClientIdentifier => text().prop_map(P::AssignedClientIdentifier).boxed(),
        I::ServerKeepAlive => any::<u16>().prop_map(P::ServerKeepAlive).boxed(),
        I::AuthenticationMethod => text().prop_map(P::AuthenticationMethod).boxed(),
        I::AuthenticationData => bytes(16).prop_map(P::AuthenticationData).boxed(),
        I::RequestProblemInformation => any::<bool>().prop_map(P::RequestProblemInformation).boxed(),
        I::WillDelayInterval => any::<u32>().prop_map(P::WillDelayInterval).boxed(),
        I::RequestResponseInformation => any::<bool>().prop_map(P::RequestResponseInformation).boxed(),
        I::ResponseInformation => text().prop_map(P::ResponseInformation).boxed(),
        I::ServerReference => text().prop_map(P::ServerReference).boxed(),
        I::ReasonString => text().prop_map(P::ReasonString).boxed(),
        I::ReceiveMaximum => nonzero_u16().prop_map(P::ReceiveMaximum).boxed(),
        I::TopicAliasMaximum => any::<u16>().prop_map(P::TopicAliasMaximum).boxed(),
        I::TopicAlias => nonzero_u16().prop_map(P::TopicAlias).boxed(),
        I::MaximumQoS => prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)].prop_map(P::MaximumQoS).boxed(),
        I::RetainAvailable => any::<bool>().prop_map(P::RetainAvailable).boxed(),
        I::UserProperty => (text(), text()).prop_map(|(k, v)| P::UserProperty(k, v)).boxed(),
        I::MaximumPacketSize => (1..=u32::MAX).prop_map(P::MaximumPacketSize).boxed(),
        I::WildcardSubscriptionAvailable => any::<bool>().prop_map(P::WildcardSubscriptionAvailable).boxed(),
        I::SubscriptionIdentifierAvailable => any::<bool>().prop_map(P::SubscriptionIdentifierAvailable).boxed(),
        I::SharedSubscriptionAvailable => any::<bool>().prop_map(P::SharedSubscriptionAvailable).boxed(),
    }
}

fn all_property_ids() -> impl Iterator<Item = PropertyId> {
    (0..=0x2a).filter_map(PropertyId::from_u32)
}

/// Arbitrary valid properties for a context, in arbitrary order: each allowed property at most once, User
/// Properties repeated (sometimes with the same name and value twice), and in PUBLISH several Subscription
/// Identifiers.
fn properties(ctx: PropertyContext) -> BoxedStrategy<Vec<P>> {
    let singles: Vec<_> = all_property_ids()
        .filter(|id| id.allowed_in(ctx) && !id.repeatable_in(ctx))
        .map(|id| proptest::option::weighted(0.3, single(id)))
        .collect();
    let users = (vec((text(), text()), 0..4), any::<bool>()).prop_map(|(mut pairs, twice)| {
        if twice && let Some(first) = pairs.first().cloned() {
            pairs.push(first);
        }
        pairs.into_iter().map(|(k, v)| P::UserProperty(k, v)).collect::<Vec<_>>()
    });
    let sub_ids = if PropertyId::SubscriptionIdentifier.repeatable_in(ctx) {
        vec(1..=MAX_VARINT, 0..4).prop_map(|ids| ids.into_iter().map(P::SubscriptionIdentifier).collect()).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (singles, users, sub_ids)
        .prop_map(|(singles, users, ids)| {
            let mut all: Vec<P> = singles.into_iter().flatten().collect();
            // The decoder requires an Authentication Method wherever Authentication Data appears.
            if !all.iter().any(|p| matches!(p, P::AuthenticationMethod(_))) {
                all.retain(|p| !matches!(p, P::AuthenticationData(_)));
            }
            all.extend(users);
            all.extend(ids);
            all
        })
        .prop_shuffle()
        .boxed()
}

fn props_if_v5(v: ProtocolVersion, ctx: PropertyContext) -> BoxedStrategy<Vec<P>> {
    if v.is_v5() { properties(ctx) } else { Just(Vec::new()).boxed() }
}

fn reason_codes(kind: PacketType) -> Vec<ReasonCode> {
    (0..=255).filter_map(ReasonCode::from_u8).filter(|r| r.allowed_in(kind)).collect()
}

fn connect() -> impl Strategy<Value = (ProtocolVersion, ConnectM)> {
    versions().prop_flat_map(|v| {
        let will = (topic_name(), bytes(32), qos(), any::<bool>(), props_if_v5(v, PropertyContext::Will))
            .prop_map(|(topic, payload, qos, retain, props)| WillM { topic, payload, qos, retain, props });
        let m = (
            any::<bool>(),
            any::<u16>(),
            props_if_v5(v, PropertyContext::Connect),
            text(),
            proptest::option::of(will),
            proptest::option::of(text()),
            proptest::option::of(bytes(16)),
        )
            .prop_map(move |(clean, keep_alive, props, client_id, will, mut username, password)| {
                // MQTT 3.x needs a user name for a password; MQTT 5 does not.
                if !v.is_v5() && password.is_some() && username.is_none() {
                    username = Some("user".into());
                }
                ConnectM { clean, keep_alive, props, client_id, will, username, password }
            });
        (Just(v), m)
    })
}

fn publish() -> impl Strategy<Value = (ProtocolVersion, PublishM)> {
    versions().prop_flat_map(|v| {
        let m = (
            any::<bool>(),
            qos(),
            nonzero_u16(),
            any::<bool>(),
            topic_name(),
            props_if_v5(v, PropertyContext::Publish),
            bytes(64),
            any::<bool>(),
        )
            .prop_map(move |(dup, qos, pid, retain, topic, mut props, payload, use_alias)| {
                // An empty topic name is valid only in MQTT 5, and only with a Topic Alias.
                let topic = if v.is_v5() && use_alias {
                    if !props.iter().any(|p| matches!(p, P::TopicAlias(_))) {
                        props.push(P::TopicAlias(1));
                    }
                    String::new()
                } else {
                    topic
                };
                PublishM { dup: dup && qos != QoS::AtMostOnce, qos, pid, retain, topic, props, payload }
            });
        (Just(v), m)
    })
}

fn ack(kind: PacketType, ctx: PropertyContext) -> impl Strategy<Value = (ProtocolVersion, AckM)> {
    versions().prop_flat_map(move |v| {
        let reason = if v.is_v5() {
            proptest::sample::select(reason_codes(kind)).boxed()
        } else {
            Just(ReasonCode::Success).boxed()
        };
        let m =
            (nonzero_u16(), reason, props_if_v5(v, ctx)).prop_map(|(pid, reason, props)| AckM { pid, reason, props });
        (Just(v), m)
    })
}

fn subscription(v: ProtocolVersion) -> BoxedStrategy<(String, SubscriptionOptions)> {
    let handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendAtNewSubscribe),
        Just(RetainHandling::DoNotSend)
    ];
    (topic_filter(), qos(), any::<bool>(), any::<bool>(), handling)
        .prop_map(move |(filter, qos, no_local, rap, retain_handling)| {
            let options = if v.is_v5() {
                // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
                let shared = TopicFilter::new(&filter).unwrap().shared().is_some();
                SubscriptionOptions { qos, no_local: no_local && !shared, retain_as_published: rap, retain_handling }
            } else {
                SubscriptionOptions::qos(qos)
            };
            (filter, options)
        })
        .boxed()
}

fn subscribe() -> impl Strategy<Value = (ProtocolVersion, SubscribeM)> {
    versions().prop_flat_map(|v| {
        let m = (nonzero_u16(), props_if_v5(v, PropertyContext::Subscribe), vec(subscription(v), 1..5))
            .prop_map(|(pid, props, subs)| SubscribeM { pid, props, subs });
        (Just(v), m)
    })
}

fn suback() -> impl Strategy<Value = (ProtocolVersion, CodesM)> {
    versions().prop_flat_map(|v| {
        let codes = if v.is_v5() {
            reason_codes(PacketType::SubAck)
        } else {
            vec![ReasonCode::Success, ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS2, ReasonCode::UnspecifiedError]
        };
        let m = (nonzero_u16(), props_if_v5(v, PropertyContext::SubAck), vec(proptest::sample::select(codes), 1..8))
            .prop_map(|(pid, props, codes)| CodesM { pid, props, codes });
        (Just(v), m)
    })
}

fn unsubscribe() -> impl Strategy<Value = (ProtocolVersion, UnsubscribeM)> {
    versions().prop_flat_map(|v| {
        let m = (nonzero_u16(), props_if_v5(v, PropertyContext::Unsubscribe), vec(topic_filter(), 1..5))
            .prop_map(|(pid, props, filters)| UnsubscribeM { pid, props, filters });
        (Just(v), m)
    })
}

fn unsuback() -> impl Strategy<Value = (ProtocolVersion, CodesM)> {
    versions().prop_flat_map(|v| {
        let codes = if v.is_v5() {
            vec(proptest::sample::select(reason_codes(PacketType::UnsubAck)), 1..8).boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        let m = (nonzero_u16(), props_if_v5(v, PropertyContext::UnsubAck), codes)
            .prop_map(|(pid, props, codes)| CodesM { pid, props, codes });
        (Just(v), m)
    })
}

fn reason_props(kind: PacketType, ctx: PropertyContext) -> impl Strategy<Value = ReasonPropsM> {
    (proptest::sample::select(reason_codes(kind)), properties(ctx))
        .prop_map(|(reason, props)| ReasonPropsM { reason, props })
}

fn connack() -> impl Strategy<Value = (ProtocolVersion, ConnAckM)> {
    versions().prop_flat_map(|v| {
        let code = if v.is_v5() {
            proptest::sample::select(reason_codes(PacketType::ConnAck)).boxed()
        } else {
            (0u8..=5).prop_map(|c| ReasonCode::from_v3_connack(c).unwrap()).boxed()
        };
        let m = (any::<bool>(), code, props_if_v5(v, PropertyContext::ConnAck)).prop_map(
            move |(session_present, code, props)| {
                // A refused connection never has a session [MQTT-3.2.2-4]; MQTT 3.1 has no Session Present flag.
                let session_present = session_present && code == ReasonCode::Success && v != ProtocolVersion::V31;
                ConnAckM { session_present, code, props }
            },
        );
        (Just(v), m)
    })
}

fn any_packet() -> impl Strategy<Value = (ProtocolVersion, AnyM)> {
    let ack_of =
        |kind: PacketType, ctx: PropertyContext| ack(kind, ctx).prop_map(move |(v, m)| (v, AnyM::Ack(kind, m)));
    let v5_only = |kind: PacketType, ctx: PropertyContext| {
        reason_props(kind, ctx).prop_map(move |m| (ProtocolVersion::V5, AnyM::ReasonProps(kind, m)))
    };
    prop_oneof![
        connect().prop_map(|(v, m)| (v, AnyM::Connect(m))),
        connack().prop_map(|(v, m)| (v, AnyM::ConnAck(m))),
        publish().prop_map(|(v, m)| (v, AnyM::Publish(m))),
        ack_of(PacketType::PubAck, PropertyContext::PubAck),
        ack_of(PacketType::PubRec, PropertyContext::PubRec),
        ack_of(PacketType::PubRel, PropertyContext::PubRel),
        ack_of(PacketType::PubComp, PropertyContext::PubComp),
        subscribe().prop_map(|(v, m)| (v, AnyM::Subscribe(m))),
        suback().prop_map(|(v, m)| (v, AnyM::SubAck(m))),
        unsubscribe().prop_map(|(v, m)| (v, AnyM::Unsubscribe(m))),
        unsuback().prop_map(|(v, m)| (v, AnyM::UnsubAck(m))),
        v5_only(PacketType::Disconnect, PropertyContext::Disconnect),
        v5_only(PacketType::Auth, PropertyContext::Auth),
    ]
}

// ------------------------------------------------------------------------------------------------ the tests

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn connect_round_trips((v, m) in connect()) {
        with_connect(&m, v, |p| {
            check_packet(p, v)?;
            // A CONNECT names its own version: decoding it on a connection of any version gives the same packet.
            let buf = encode_packet(p, v).unwrap();
            for other in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
                prop_assert_eq!(decode(&buf, other), Ok(p));
            }
            Ok(())
        })?;
    }

    #[test]
    fn connack_round_trips((v, m) in connack()) {
        with_connack(&m, |p| check_packet(p, v))?;
    }

    #[test]
    fn publish_round_trips((v, m) in publish()) {
        with_publish(&m, |p| check_packet(p, v))?;
    }

    #[test]
    fn puback_round_trips((v, m) in ack(PacketType::PubAck, PropertyContext::PubAck)) {
        with_ack(PacketType::PubAck, &m, |p| check_packet(p, v))?;
    }

    #[test]
    fn pubrec_round_trips((v, m) in ack(PacketType::PubRec, PropertyContext::PubRec)) {
        with_ack(PacketType::PubRec, &m, |p| check_packet(p, v))?;
    }

    #[test]
    fn pubrel_round_trips((v, m) in ack(PacketType::PubRel, PropertyContext::PubRel)) {
        with_ack(PacketType::PubRel, &m, |p| check_packet(p, v))?;
    }

    #[test]
    fn pubcomp_round_trips((v, m) in ack(PacketType::PubComp, PropertyContext::PubComp)) {
        with_ack(PacketType::PubComp, &m, |p| check_packet(p, v))?;
    }

    #[test]
    fn subscribe_round_trips((v, m) in subscribe()) {
        with_subscribe(&m, |p| {
            check_packet(p, v)?;
            let buf = encode_packet(p, v).unwrap();
            let Ok(Packet::Subscribe(decoded)) = decode(&buf, v) else {
                return Err(TestCaseError::fail("not a SUBSCRIBE"));
            };
            prop_assert_eq!(decoded.subscriptions.len(), m.subs.len());
            Ok(())
        })?;
    }

    #[test]
    fn suback_round_trips((v, m) in suback()) {
        with_suback(&m, |p| check_packet(p, v))?;
    }

    #[test]
    fn unsubscribe_round_trips((v, m) in unsubscribe()) {
        with_unsubscribe(&m, |p| check_packet(p, v))?;
    }

    #[test]
    fn unsuback_round_trips((v, m) in unsuback()) {
        with_unsuback(&m, |p| check_packet(p, v))?;
    }

    #[test]
    fn disconnect_v5_round_trips(m in reason_props(PacketType::Disconnect, PropertyContext::Disconnect)) {
        with_reason_props(PacketType::Disconnect, &m, |p| check_packet(p, ProtocolVersion::V5))?;
    }

    #[test]
    fn auth_v5_round_trips(m in reason_props(PacketType::Auth, PropertyContext::Auth)) {
        with_reason_props(PacketType::Auth, &m, |p| check_packet(p, ProtocolVersion::V5))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: MUTATION_CASES, ..ProptestConfig::default() })]

    /// Valid encodings with one to three bytes changed: decoding never panics, and whatever it accepts encodes
    /// again, stably.
    #[test]
    fn mutated_encodings_decode_consistently(
        (v, m) in any_packet(),
        mutations in vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_any(&m, v);
        for (at, value) in &mutations {
            let at = at.index(bytes.len());
            bytes[at] = *value;
        }
        check_decoded_consistency(&bytes, v)?;
    }

    /// A well-framed packet of any type with a random body: the same properties.
    #[test]
    fn random_bodies_decode_consistently(v in versions(), first in 0x10u8.., body in vec(any::<u8>(), 0..48)) {
        let mut bytes = vec![first, u8::try_from(body.len()).unwrap()];
        bytes.extend_from_slice(&body);
        check_decoded_consistency(&bytes, v)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Several packets of one connection, arriving in arbitrary chunks as a socket delivers them: reading with
    /// `decode_from` whenever bytes arrive yields exactly the packets that were sent, in order.
    #[test]
    fn streams_arriving_in_chunks_decode_in_order(
        packets in vec(any_packet(), 1..8),
        cuts in vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let v = packets[0].0;
        let packets: Vec<_> = packets.into_iter().filter(|(pv, _)| *pv == v).map(|(_, m)| m).collect();
        let encoded: Vec<Vec<u8>> = packets.iter().map(|m| encode_any(m, v)).collect();
        let stream = encoded.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let (mut rx, mut sent, mut received) = (Vec::new(), 0, Vec::new());
        for cut in cuts {
            rx.extend_from_slice(&stream[sent..cut]);
            sent = cut;
            loop {
                match Packet::decode_from(&rx, v, u32::MAX) {
                    Ok(Some((_, used))) => {
                        received.push(rx[..used].to_vec());
                        rx.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("{e:?} at {} bytes into the stream", sent - rx.len()))),
                }
            }
        }
        prop_assert!(rx.is_empty());
        prop_assert_eq!(received.len(), packets.len());
        for ((m, bytes), frame) in packets.iter().zip(&encoded).zip(&received) {
            prop_assert_eq!(frame, bytes);
            with_any(m, v, |p| {
                prop_assert_eq!(decode(frame, v), Ok(p));
                Ok(())
            })?;
        }
    }
}

/// The packets without variable fields, in every version they exist in.
#[test]
fn fixed_packets_round_trip() {
    for v in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        check_packet(Packet::PingReq, v).unwrap();
        check_packet(Packet::PingResp, v).unwrap();
        check_packet(Packet::Disconnect(Disconnect::normal()), v).unwrap();
    }
    check_packet(
        Packet::Auth(Auth { reason: ReasonCode::Success, properties: Properties::empty() }),
        ProtocolVersion::V5,
    )
    .unwrap();
}

/// The generators really produce the interesting shapes the module doc promises.
#[test]
fn generators_cover_the_interesting_shapes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut shared, mut unicode, mut empty_level, mut repeated_user, mut two_sub_ids, mut alias_only) =
        (false, false, false, false, false, false);
    for _ in 0..2000 {
        let f = topic_filter().new_tree(&mut runner).unwrap().current();
        shared |= f.starts_with("$share/");
        unicode |= !f.is_ascii();
        empty_level |= f.contains("//") || f.starts_with('/');
        let (v, m) = publish().new_tree(&mut runner).unwrap().current();
        let users: Vec<_> = m.props.iter().filter(|p| matches!(p, P::UserProperty(..))).collect();
        repeated_user |= users.len() >= 2 && users.iter().skip(1).any(|u| *u == users[0]);
        two_sub_ids |= m.props.iter().filter(|p| matches!(p, P::SubscriptionIdentifier(_))).count() >= 2;
        alias_only |= v.is_v5() && m.topic.is_empty();
    }
    assert!(shared && unicode && empty_level && repeated_user && two_sub_ids && alias_only);
}

/// Encoding refuses packets that the decoder would reject, rather than writing them.
#[test]
fn encode_refuses_what_decode_rejects() {
    let v5 = ProtocolVersion::V5;
    // Regression: Authentication Data without an Authentication Method was encoded.
    let props = [Property::AuthenticationData(b"x")];
    let p =
        Packet::Auth(Auth { reason: ReasonCode::ContinueAuthentication, properties: Properties::from_list(&props) });
    assert_eq!(p.encoded_len(v5), Err(EncodeError::InvalidValue));
    // Two Subscription Identifiers are fine in PUBLISH but not in SUBSCRIBE, also when the block was decoded.
    let publish = [0x30, 0x0a, 0x00, 0x01, b't', 0x04, 0x0b, 0x01, 0x0b, 0x02, b'x', b'y'];
    let Ok(Packet::Publish(decoded)) = decode(&publish, v5) else { panic!("valid PUBLISH") };
    let subs =
        [Subscription { filter: TopicFilter::new("t").unwrap(), options: SubscriptionOptions::qos(QoS::AtMostOnce) }];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: decoded.properties,
        subscriptions: List::from_slice(&subs),
    });
    assert_eq!(p.encoded_len(v5), Err(EncodeError::InvalidValue));
    // A property from another packet's table.
    let props = [Property::TopicAlias(1)];
    let p = Packet::Disconnect(Disconnect { reason: ReasonCode::Success, properties: Properties::from_list(&props) });
    assert_eq!(p.encoded_len(v5), Err(EncodeError::PropertyNotAllowed(0x23)));
    // DUP on QoS 0, session present on a refusal, an empty SUBSCRIBE.
    let p = Packet::Publish(Publish {
        dup: true,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        properties: Properties::empty(),
        payload: b"",
    });
    assert_eq!(p.encoded_len(ProtocolVersion::V311), Err(EncodeError::InvalidValue));
    let p = Packet::ConnAck(ConnAck {
        session_present: true,
        code: ReasonCode::NotAuthorized,
        properties: Properties::empty(),
    });
    assert_eq!(p.encoded_len(ProtocolVersion::V311), Err(EncodeError::InvalidValue));
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&[]),
    });
    assert_eq!(p.encoded_len(ProtocolVersion::V311), Err(EncodeError::InvalidValue));
}

/// Multi-byte Remaining Lengths and Property Lengths (2, 3 and 4 bytes), which the small generated packets rarely
/// reach.
#[test]
fn long_packets_round_trip() {
    let v5 = ProtocolVersion::V5;
    let value = "v".repeat(20_000);
    for (value_len, payload_len) in [(100, 100), (200, 20_000), (20_000, 0)] {
        let props = [Property::UserProperty("k", &value[..value_len])];
        let payload = vec![0x42u8; payload_len];
        let p = Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(pid(7)),
            retain: false,
            topic: TopicName::new("t").unwrap(),
            properties: Properties::from_list(&props),
            payload: &payload,
        });
        check_packet(p, v5).unwrap();
    }
    // A 4-byte Remaining Length: the full prefix and short-buffer sweeps are too slow here, so sample them.
    let payload = vec![0x42u8; 2_200_000];
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        properties: Properties::empty(),
        payload: &payload,
    });
    let bytes = encode_packet(p, ProtocolVersion::V311).unwrap();
    let n = bytes.len();
    assert_eq!(n, 1 + 4 + 3 + payload.len());
    assert_eq!(&bytes[..5], &[0x30, 0xc3, 0xa3, 0x86, 0x01]); // 2_200_003 = 67 + 35 * 128 + 6 * 128^2 + 128^3
    assert_eq!(decode(&bytes, ProtocolVersion::V311), Ok(p));
    for k in [0, 1, 2, 4, 5, 6, 1000, n - 1] {
        assert_eq!(Packet::decode_from(&bytes[..k], ProtocolVersion::V311, u32::MAX), Ok(None));
    }
    let max = u32::try_from(n - 1).unwrap();
    assert_eq!(frame_len(&bytes[..5], max), Err(DecodeError::PacketTooLarge { len: max + 1 }));
    let mut small = vec![0u8; n - 1];
    assert_eq!(p.encode(ProtocolVersion::V311, &mut small), Err(EncodeError::BufferTooSmall { needed: n }));
}
