//! The blocking client against a scripted broker: byte-exact flows for every QoS in both directions, with reads of
//! one byte at a time and of whole packets, the link breaking at every step of each flow, resume with resend,
//! keepalive timing and full capacities.

mod common;

use common::{CONNECT_C, Script, TestClient, opts, pump, t};
use firmware_client::blocking::ClientError;
use firmware_client::{Error, Message, QoS, Rejected, Session};

const CONNACK: [u8; 4] = [0x20, 2, 0, 0];
const CONNACK_SP: [u8; 4] = [0x20, 2, 1, 0];

/// Connects `c` over a new script (reads of `chunk` bytes) and checks the exchange.
fn connect(c: &mut TestClient<'_>, chunk: usize, now: u64, session_present: bool) -> Script {
    let s = Script::new(chunk);
    c.connect(s.clone(), t(now)).unwrap();
    assert_eq!(s.take(), CONNECT_C);
    s.feed(if session_present { &CONNACK_SP } else { &CONNACK });
    let ev = pump(c, &s, t(now)).unwrap();
    assert_eq!(ev, [format!("Connected {{ session_present: {session_present} }}")]);
    s
}

fn bufs() -> ([u8; 256], [u8; 128], [u8; 128]) {
    ([0; 256], [0; 128], [0; 128])
}

#[test]
fn publish_every_qos_byte_exact() {
    for chunk in [1, 64] {
        let (mut store, mut rx, mut tx) = bufs();
        let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
        let s = connect(&mut c, chunk, 0, false);

        c.publish(Message::new("a/b", b"q0", QoS::AtMostOnce)).unwrap();
        assert!(pump(&mut c, &s, t(1)).unwrap().is_empty());
        assert_eq!(s.take(), [0x30, 7, 0, 3, b'a', b'/', b'b', b'q', b'0']);

        let id = c.publish(Message::new("a/b", b"q1", QoS::AtLeastOnce)).unwrap().unwrap();
        pump(&mut c, &s, t(2)).unwrap();
        assert_eq!(s.take(), [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 1, b'q', b'1']);
        s.feed(&[0x40, 2, 0, 1]);
        assert_eq!(pump(&mut c, &s, t(3)).unwrap(), [format!("Published {{ pid: {id:?}, reason: Success }}")]);

        let id = c.publish(Message::new("a/b", b"q2", QoS::ExactlyOnce)).unwrap().unwrap();
        pump(&mut c, &s, t(4)).unwrap();
        assert_eq!(s.take(), [0x34, 9, 0, 3, b'a', b'/', b'b', 0, 2, b'q', b'2']);
        s.feed(&[0x50, 2, 0, 2]);
        assert!(pump(&mut c, &s, t(5)).unwrap().is_empty());
        assert_eq!(s.take(), [0x62, 2, 0, 2]);
        s.feed(&[0x70, 2, 0, 2]);
        assert_eq!(pump(&mut c, &s, t(6)).unwrap(), [format!("Published {{ pid: {id:?}, reason: Success }}")]);
        assert_eq!(c.session().pending(), 0);
        assert!(s.take().is_empty());
    }
}

#[test]
fn receive_every_qos_byte_exact() {
    for chunk in [1, 3, 64] {
        let (mut store, mut rx, mut tx) = bufs();
        let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
        let s = connect(&mut c, chunk, 0, false);
        let sub = c.subscribe("cmd/+", QoS::ExactlyOnce).unwrap();
        pump(&mut c, &s, t(1)).unwrap();
        assert_eq!(s.take(), [0x82, 10, 0, 1, 0, 5, b'c', b'm', b'd', b'/', b'+', 2]);
        s.feed(&[0x90, 3, 0, 1, 2]);
        assert_eq!(
            pump(&mut c, &s, t(2)).unwrap(),
            [format!("Subscribed {{ sub: {sub:?}, granted: Some(ExactlyOnce) }}")]
        );

        let msg = |q: &str| {
            format!(
                "Message(Message {{ topic: \"cmd/x\", payload: {:?}, qos: {q}, retain: false }}, Some({sub:?}))",
                b"hi"
            )
        };
        // QoS 0, retained flag clear.
        s.feed(&[0x30, 9, 0, 5, b'c', b'm', b'd', b'/', b'x', b'h', b'i']);
        assert_eq!(pump(&mut c, &s, t(3)).unwrap(), [msg("AtMostOnce")]);
        assert!(s.take().is_empty());
        // QoS 1: PUBACK.
        s.feed(&[0x32, 11, 0, 5, b'c', b'm', b'd', b'/', b'x', 0, 7, b'h', b'i']);
        assert_eq!(pump(&mut c, &s, t(4)).unwrap(), [msg("AtLeastOnce")]);
        assert_eq!(s.take(), [0x40, 2, 0, 7]);
        // QoS 2: PUBREC, then PUBCOMP after PUBREL; a duplicate before PUBREL is not delivered.
        let q2 = [0x34, 11, 0, 5, b'c', b'm', b'd', b'/', b'x', 0, 8, b'h', b'i'];
        s.feed(&q2);
        assert_eq!(pump(&mut c, &s, t(5)).unwrap(), [msg("ExactlyOnce")]);
        assert_eq!(s.take(), [0x50, 2, 0, 8]);
        let mut dup = q2;
        dup[0] |= 0x08;
        s.feed(&dup);
        assert!(pump(&mut c, &s, t(6)).unwrap().is_empty());
        assert_eq!(s.take(), [0x50, 2, 0, 8]);
        s.feed(&[0x62, 2, 0, 8]);
        assert!(pump(&mut c, &s, t(7)).unwrap().is_empty());
        assert_eq!(s.take(), [0x70, 2, 0, 8]);
        // Two packets in one read are both handled.
        s.feed(&[0xd0, 0, 0x30, 9, 0, 5, b'c', b'm', b'd', b'/', b'x', b'h', b'i']);
        assert_eq!(pump(&mut c, &s, t(8)).unwrap(), [msg("AtMostOnce")]);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Break {
    Never,
    /// After the PUBLISH went out, before its ack.
    AfterPublish,
    /// With PUBREC on the wire but not read.
    PubRecInFlight,
    /// After PUBREL went out, before PUBCOMP.
    AfterPubRel,
}

/// One outbound flow with the link broken at `at`; returns how many times it completed.
fn outbound(qos: QoS, at: Break) -> usize {
    let publish = |dup: u8| vec![0x30 | dup | ((qos as u8) << 1), 7, 0, 1, b't', 0, 1, b'v', b'1'];
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    let mut s = connect(&mut c, 1, 0, false);
    let mut done = 0;
    let mut count = |ev: Vec<String>| done += ev.iter().filter(|e| e.starts_with("Published")).count();
    c.publish(Message::new("t", b"v1", qos)).unwrap();
    count(pump(&mut c, &s, t(1)).unwrap());
    assert_eq!(s.take(), publish(0));
    let resume = |c: &mut TestClient<'_>, s: &mut Script, now: u64| {
        s.break_link();
        assert!(pump(c, s, t(now)).is_err());
        *s = connect(c, 1, now, true);
        pump(c, s, t(now)).unwrap();
        s.take()
    };
    if at == Break::AfterPublish {
        assert_eq!(resume(&mut c, &mut s, 2), publish(0x08), "same id and bytes, DUP=1");
    }
    if qos == QoS::AtLeastOnce {
        s.feed(&[0x40, 2, 0, 1]);
        count(pump(&mut c, &s, t(3)).unwrap());
        return done;
    }
    s.feed(&[0x50, 2, 0, 1]);
    if at == Break::PubRecInFlight {
        assert_eq!(resume(&mut c, &mut s, 4), publish(0x08));
        s.feed(&[0x50, 2, 0, 1]);
    }
    count(pump(&mut c, &s, t(5)).unwrap());
    assert_eq!(s.take(), [0x62, 2, 0, 1]);
    if at == Break::AfterPubRel {
        assert_eq!(resume(&mut c, &mut s, 6), [0x62, 2, 0, 1], "PUBREL resent, not the PUBLISH");
    }
    s.feed(&[0x70, 2, 0, 1]);
    count(pump(&mut c, &s, t(7)).unwrap());
    assert_eq!(c.session().pending(), 0);
    done
}

#[test]
fn outbound_qos1_and_qos2_survive_a_break_at_every_step() {
    for at in [Break::Never, Break::AfterPublish] {
        assert_eq!(outbound(QoS::AtLeastOnce, at), 1, "{at:?}");
    }
    for at in [Break::Never, Break::AfterPublish, Break::PubRecInFlight, Break::AfterPubRel] {
        assert_eq!(outbound(QoS::ExactlyOnce, at), 1, "{at:?}");
    }
}

/// Inbound QoS 2 with the link broken after PUBLISH, after PUBREC and after PUBREL: delivered exactly once.
#[test]
fn inbound_qos2_delivered_once_whatever_the_break() {
    let publish = [0x34, 6, 0, 1, b't', 0, 9, b'!'];
    let mut dup = publish;
    dup[0] |= 0x08;
    for break_after in 0..3 {
        let (mut store, mut rx, mut tx) = bufs();
        let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
        let mut s = connect(&mut c, 1, 0, false);
        let mut delivered = 0;
        s.feed(&publish);
        delivered += pump(&mut c, &s, t(1)).unwrap().iter().filter(|e| e.starts_with("Message")).count();
        assert_eq!(s.take(), [0x50, 2, 0, 9]);
        if break_after >= 1 {
            s.feed(&[0x62, 2, 0, 9]);
            pump(&mut c, &s, t(2)).unwrap();
            assert_eq!(s.take(), [0x70, 2, 0, 9]);
        }
        s.break_link();
        assert!(pump(&mut c, &s, t(3)).is_err());
        s = connect(&mut c, 1, 4, true);
        // The broker resends what it has not seen acknowledged.
        if break_after == 0 {
            s.feed(&dup);
            delivered += pump(&mut c, &s, t(5)).unwrap().iter().filter(|e| e.starts_with("Message")).count();
            assert_eq!(s.take(), [0x50, 2, 0, 9]);
        }
        if break_after <= 1 {
            s.feed(&[0x62, 2, 0, 9]);
            pump(&mut c, &s, t(6)).unwrap();
            assert_eq!(s.take(), [0x70, 2, 0, 9]);
        }
        assert_eq!(delivered, 1, "break after step {break_after}");
    }
}

#[test]
fn offline_publishes_are_sent_in_order_after_reconnect() {
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    for (i, q) in [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        let payload = [b'0' + i as u8];
        c.publish(Message::new("t", &payload, q)).unwrap();
    }
    let s = connect(&mut c, 64, 0, false);
    pump(&mut c, &s, t(1)).unwrap();
    assert_eq!(
        s.take(),
        [&[0x32, 6, 0, 1, b't', 0, 1, b'0'][..], &[0x30, 4, 0, 1, b't', b'1'], &[0x34, 6, 0, 1, b't', 0, 2, b'2'],]
            .concat()
    );
}

#[test]
fn keepalive_pingreq_when_idle_and_dead_link_without_pingresp() {
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    let s = connect(&mut c, 64, 0, false);
    pump(&mut c, &s, t(9_999)).unwrap();
    assert!(s.take().is_empty());
    pump(&mut c, &s, t(10_000)).unwrap();
    assert_eq!(s.take(), [0xc0, 0]);
    s.feed(&[0xd0, 0]);
    pump(&mut c, &s, t(10_500)).unwrap();
    pump(&mut c, &s, t(19_999)).unwrap();
    assert!(s.take().is_empty(), "PINGREQ counts as activity");
    pump(&mut c, &s, t(20_000)).unwrap();
    assert_eq!(s.take(), [0xc0, 0]);
    pump(&mut c, &s, t(21_999)).unwrap();
    assert_eq!(pump(&mut c, &s, t(22_000)).unwrap_err(), ClientError::Session(Error::Timeout));
    assert!(!c.session().is_connected());
}

#[test]
fn capacity_full_is_an_error_with_the_value() {
    let mut store = [0u8; 64];
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 32]);
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    let big = [0u8; 40];
    let m = Message::new("t", &big, QoS::AtMostOnce);
    assert_eq!(c.publish(m), Err(Rejected::Invalid(m)), "larger than the transmit buffer");
    let m = Message::new("t", &big[..20], QoS::AtLeastOnce);
    for _ in 0..2 {
        c.publish(m).unwrap();
    }
    assert_eq!(c.publish(m), Err(Rejected::Full(m)), "store full");
    // Acks free the store.
    let s = connect(&mut c, 64, 0, false);
    pump(&mut c, &s, t(1)).unwrap();
    s.feed(&[0x40, 2, 0, 1]);
    pump(&mut c, &s, t(2)).unwrap();
    assert_eq!(c.publish(m).unwrap().unwrap().get(), 3);
}

#[test]
fn broker_closing_the_connection_is_reported() {
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    let s = connect(&mut c, 64, 0, false);
    s.feed(&[0x30, 100, 0, 1]); // a PUBLISH that never completes
    pump(&mut c, &s, t(1)).unwrap();
    s.break_link();
    assert!(matches!(pump(&mut c, &s, t(2)), Err(ClientError::Transport(_))));
    // A new connection starts from a clean receive buffer.
    let s = connect(&mut c, 64, 3, true);
    assert_eq!(s.unread(), 0);
}

#[test]
fn disconnect_sends_disconnect_and_a_later_connect_resumes() {
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    let s = connect(&mut c, 64, 0, false);
    c.publish(Message::new("t", b"1", QoS::AtLeastOnce)).unwrap();
    pump(&mut c, &s, t(1)).unwrap();
    assert_eq!(s.take(), [0x32, 6, 0, 1, b't', 0, 1, b'1']);
    let old = c.disconnect(t(2)).unwrap();
    assert!(old.is_some(), "the transport is handed back for closing");
    assert_eq!(s.take(), [0xe0, 0]);
    assert!(!c.session().is_connected());
    assert_eq!(c.poll(t(3)).unwrap_err(), ClientError::NoTransport);
    let s = connect(&mut c, 64, 4, true);
    pump(&mut c, &s, t(5)).unwrap();
    assert_eq!(s.take(), [0x3a, 6, 0, 1, b't', 0, 1, b'1'], "unacknowledged QoS 1 resent with DUP=1");
}

#[test]
fn reconnect_reuses_the_transport_in_place() {
    let (mut store, mut rx, mut tx) = bufs();
    let mut c = TestClient::new(Session::new(opts("c"), &mut store), &mut rx, &mut tx);
    assert_eq!(c.reconnect(t(0)).unwrap_err(), ClientError::NoTransport);
    let s = connect(&mut c, 64, 0, false);
    c.publish(Message::new("t", b"1", QoS::AtLeastOnce)).unwrap();
    pump(&mut c, &s, t(1)).unwrap();
    s.take();
    s.break_link();
    assert!(pump(&mut c, &s, t(2)).is_err());
    // "Reopen" the same transport, as an embassy-net socket would be, and resume.
    c.transport_mut().unwrap().0.borrow_mut().broken = false;
    c.reconnect(t(3)).unwrap();
    assert_eq!(s.take(), CONNECT_C);
    s.feed(&CONNACK_SP);
    assert_eq!(pump(&mut c, &s, t(4)).unwrap(), ["Connected { session_present: true }"]);
    assert_eq!(s.take(), [0x3a, 6, 0, 1, b't', 0, 1, b'1']);
}
