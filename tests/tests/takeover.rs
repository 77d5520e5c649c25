//! Session takeover is ordered: a client that reconnects while its old connection is still open (or still being
//! read) gets its CONNACK only after the old connection has closed and its last acts were applied: what it had
//! sent (a DISCONNECT discards the will, a Session Expiry of 0 ends the session), its will (published before the
//! new connection's first message), and the end of a session that expired with it. Each case is hammered with
//! many fast reconnects, since the old code got them wrong most of the time, not always.

use mqtt_codec::{
    Connect, Disconnect, Packet, Properties, Property, ProtocolVersion, QoS, ReasonCode, TopicName, Will,
};
use tests::raw::{ConnectOpts, RawClient, Rx, encode, publish_bytes};
use tests::{WAIT, start_default_broker, unique};

const QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// A CONNECT with the options tests here need: MQTT 5 properties and a will with properties.
struct Conn<'a> {
    version: ProtocolVersion,
    id: &'a str,
    clean: bool,
    props: Vec<Property<'a>>,
    will: Option<(&'a str, &'a [u8], bool, Vec<Property<'a>>)>,
}

impl<'a> Conn<'a> {
    fn new(version: ProtocolVersion, id: &'a str) -> Self {
        Self { version, id, clean: true, props: Vec::new(), will: None }
    }

    fn encode(&self) -> Vec<u8> {
        let will = self.will.as_ref().map(|(topic, payload, retain, props)| Will {
            topic: TopicName::new(topic).unwrap(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: *retain,
            properties: Properties::from_list(props),
        });
        let connect = Packet::Connect(Connect {
            protocol: self.version,
            clean_start: self.clean,
            keep_alive: 60,
            properties: Properties::from_list(&self.props),
            client_id: self.id,
            will,
            username: None,
            password: None,
        });
        encode(&connect, self.version)
    }

    /// Connects, sending `then` in the same write as the CONNECT; returns the client and its CONNACK.
    async fn open(&self, addr: std::net::SocketAddr, then: &[u8]) -> (RawClient, bool) {
        let mut c = RawClient::tcp(addr).await;
        c.version = self.version;
        let mut bytes = self.encode();
        bytes.extend_from_slice(then);
        c.send_raw(&bytes).await;
        match c.recv().await {
            Rx::ConnAck { session_present, code: 0 } => (c, session_present),
            other => panic!("{}: expected an accepting CONNACK, got {other:?}", self.id),
        }
    }
}

fn disconnect_bytes(version: ProtocolVersion, props: &[Property<'_>]) -> Vec<u8> {
    let d = Disconnect { reason: ReasonCode::Success, properties: Properties::from_list(props) };
    encode(&Packet::Disconnect(d), version)
}

/// A subscriber watching `filter` at QoS 1.
async fn watcher(addr: std::net::SocketAddr, filter: &str) -> RawClient {
    let mut w = RawClient::connect_v311(addr, &unique("watch")).await;
    w.subscribe_one(filter, QoS::AtLeastOnce).await;
    w
}

/// The device pattern: will = retained `offline`; the first publish after CONNECT = retained `online`. A device that
/// reconnects while its old connection is still open sends CONNECT and `online` in one write; the old
/// connection's will must go out before `online`, so `online` is what stays retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_connections_will_goes_out_before_the_new_connections_first_publish() {
    let b = start_default_broker().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for clean in [true, false] {
            let id = unique("device");
            let topic = unique("status");
            let mut w = watcher(b.addr, &topic).await;
            let mut conn = Conn::new(version, &id);
            conn.clean = clean;
            if version.is_v5() && !clean {
                conn.props.push(Property::SessionExpiryInterval(300));
            }
            conn.will = Some((&topic, b"offline", true, Vec::new()));
            let online = publish_bytes(version, &topic, b"online", QoS::AtLeastOnce, 1, true, false);
            let (mut first, _) = conn.open(b.addr, &online).await;
            assert_eq!(first.recv().await, Rx::PubAck(1));
            assert_eq!(w.recv_acking(1).await[0].text(), "online");
            for round in 0..20 {
                // The old connection is still open: the new one takes it over.
                let (mut next, _) = conn.open(b.addr, &online).await;
                let got: Vec<String> = w.recv_acking(2).await.iter().map(|p| p.text()).collect();
                assert_eq!(got, ["offline", "online"], "{version:?} clean={clean} round {round}");
                assert_eq!(next.recv().await, Rx::PubAck(1));
                first.expect_closed(WAIT).await;
                first = next;
            }
            // A new subscriber sees what the device said last.
            let mut late = RawClient::connect_v311(b.addr, &unique("late")).await;
            late.subscribe_one(&topic, QoS::AtMostOnce).await;
            let retained = late.recv_publish().await;
            assert_eq!((retained.text().as_str(), retained.retain), ("online", true));
            first.disconnect().await;
            w.expect_silence(QUIET).await;
        }
    }
    b.shutdown().await;
}

/// A client that publishes, sends DISCONNECT (the will is discarded), closes and reconnects at once must never have
/// its will published, however quickly the new CONNECT arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_discarded_by_disconnect_stays_discarded_across_fast_reconnects() {
    let b = start_default_broker().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = unique("restarts");
        let topic = unique("will");
        let data = unique("data");
        let mut w = watcher(b.addr, &topic).await;
        let mut conn = Conn::new(version, &id);
        conn.will = Some((&topic, b"offline", false, Vec::new()));
        let mut last_words = publish_bytes(version, &data, b"reading", QoS::AtMostOnce, 0, false, false);
        last_words.extend_from_slice(&disconnect_bytes(version, &[]));
        let (mut c, _) = conn.open(b.addr, &[]).await;
        for _ in 0..200 {
            c.send_raw(&last_words).await;
            drop(c);
            c = conn.open(b.addr, &[]).await.0;
        }
        c.send_raw(&disconnect_bytes(version, &[])).await;
        w.expect_silence(QUIET).await;
        b.wait_stats("every client but the watcher gone", |s| s.clients_connected == 1).await;
        w.disconnect().await;
    }
    b.shutdown().await;
}

/// A v5 client that sends DISCONNECT with Session Expiry 0 ends its session [MQTT-3.1.2-23]; reconnecting at once
/// with Clean Start 0 must find no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_disconnect_is_not_resumed_by_a_fast_reconnect() {
    let b = start_default_broker().await;
    let id = unique("expiring");
    let mut conn = Conn::new(ProtocolVersion::V5, &id);
    conn.clean = false;
    conn.props.push(Property::SessionExpiryInterval(300));
    let end = disconnect_bytes(ProtocolVersion::V5, &[Property::SessionExpiryInterval(0)]);
    let (mut c, _) = conn.open(b.addr, &[]).await;
    let mut resumed = 0;
    for _ in 0..200 {
        c.send_raw(&end).await;
        drop(c);
        let (next, present) = conn.open(b.addr, &[]).await;
        resumed += usize::from(present);
        c = next;
    }
    assert_eq!(resumed, 0, "sessions resumed after DISCONNECT with Session Expiry 0");
    c.send_raw(&end).await;
    b.wait_stats("the session ended", |s| s.sessions == 0).await;
    b.shutdown().await;
}

/// A clean session ends with its connection, also when a persistent CONNECT takes that connection over
/// [MQTT-3.1.2-6; v5 3.1.2.11.2]: the new connection starts a new session, without the old subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_session_taken_over_by_a_persistent_connect_is_not_resumed() {
    let b = start_default_broker().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = unique("was-clean");
        let topic = unique("clean/t");
        // v5: Clean Start 1 and no Session Expiry (0): the session ends with the connection.
        let (mut old, _) = RawClient::connect(b.addr, &ConnectOpts::new(&id).version(version)).await;
        old.subscribe_one(&topic, QoS::AtLeastOnce).await;
        let mut conn = Conn::new(version, &id);
        conn.clean = false;
        if version.is_v5() {
            conn.props.push(Property::SessionExpiryInterval(300));
        }
        let (mut new, present) = conn.open(b.addr, &[]).await;
        assert!(!present, "{version:?}: a clean session was resumed");
        old.expect_closed(WAIT).await;
        let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
        publisher.publish_acked(&topic, b"for the old subscription", QoS::AtLeastOnce, false).await;
        new.expect_silence(QUIET).await;
        let end: &[Property<'_>] = if version.is_v5() { &[Property::SessionExpiryInterval(0)] } else { &[] };
        new.send_raw(&disconnect_bytes(version, end)).await;
        publisher.disconnect().await;
    }
    // The v5 session ended with its DISCONNECT; the 3.1.1 persistent one stays.
    b.wait_stats("only the 3.1.1 persistent session left", |s| s.clients_connected == 0 && s.sessions == 1).await;
    b.shutdown().await;
}
