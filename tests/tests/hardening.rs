//! Hostile clients against the `broker` binary: each attack is bounded, and a well-behaved client connected at
//! the same time still publishes and receives.

use std::path::PathBuf;

use tests::process::BrokerProcess;
use tests::raw::{ConnectOpts, Event, Qos, RawClient, Rx, Version, publish_bytes};
use tests::{WAIT, unique};

/// Starts the broker binary with this TOML configuration (on a port of its own). `None`: the binary is missing
/// and that is allowed here (a skip).
fn start_with(toml: &str) -> Option<(BrokerProcess, PathBuf)> {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("hardening-config")));
    std::fs::write(&path, toml).unwrap();
    let b = BrokerProcess::start(&["--config", path.to_str().unwrap()])?;
    Some((b, path))
}

/// A well-behaved client: subscribes to a topic of its own, publishes to it at QoS 1 and gets each message back.
struct Bystander {
    c: RawClient,
    topic: String,
    sent: u32,
}

impl Bystander {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut c = RawClient::connect_v311(addr, &unique("bystander")).await;
        let topic = unique("bystander/t");
        c.subscribe_one(&topic, Qos::AtLeastOnce).await;
        Self { c, topic, sent: 0 }
    }

    /// Publishes one message and asserts it is acknowledged and delivered back.
    async fn round_trip(&mut self) {
        self.sent += 1;
        let payload = format!("m{}", self.sent);
        let got = self.c.publish_acked(&self.topic, payload.as_bytes(), Qos::AtLeastOnce, false).await;
        let mut got: Vec<String> = got.iter().map(|p| p.text()).collect();
        while got.is_empty() {
            match self.c.recv().await {
                Rx::Publish(p) => {
                    if let Some(id) = p.pid {
                        self.c.puback(id).await;
                    }
                    got.push(p.text());
                }
                other => panic!("bystander: unexpected {other:?}"),
            }
        }
        assert_eq!(got, vec![payload], "the bystander's own message, once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_with_too_many_filters_closes_that_connection_only() {
    let Some((b, config)) = start_with("[limits]\nmax_filters_per_subscribe = 16\n") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    let filters: Vec<String> = (0..17).map(|i| format!("many/{i}")).collect();
    let filters: Vec<(&str, Qos)> = filters.iter().map(|f| (f.as_str(), Qos::AtMostOnce)).collect();

    // At the cap: granted.
    let (mut fine, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("at-cap")).version(Version::V5)).await;
    assert_eq!(fine.subscribe(&filters[..16]).await, vec![0; 16]);

    // One more: MQTT 5 is told Quota exceeded and closed; MQTT 3.1.1 is closed.
    let (mut v5, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("over-v5")).version(Version::V5)).await;
    send_subscribe(&mut v5, &filters).await;
    let seen = v5.expect_closed(WAIT).await;
    assert!(
        seen.iter().any(|p| matches!(p, Rx::Other(s) if s.contains("QuotaExceeded"))),
        "DISCONNECT 0x97 expected, got {seen:?}"
    );
    let mut v3 = RawClient::connect_v311(b.addr, &unique("over-v3")).await;
    send_subscribe(&mut v3, &filters).await;
    let seen = v3.expect_closed(WAIT).await;
    assert!(!seen.iter().any(|p| matches!(p, Rx::SubAck { .. })), "no SUBACK: {seen:?}");

    bystander.round_trip().await;
    fine.assert_alive().await;
    let _ = std::fs::remove_file(config);
}

/// Sends a SUBSCRIBE without waiting for its SUBACK.
async fn send_subscribe(c: &mut RawClient, filters: &[(&str, Qos)]) {
    use mqtt_codec::{List, Packet, PacketId, Properties, Subscribe, Subscription, SubscriptionOptions, TopicFilter};
    let subs: Vec<Subscription<'_>> = filters
        .iter()
        .map(|(f, q)| Subscription { filter: TopicFilter::new(f).unwrap(), options: SubscriptionOptions::qos(*q) })
        .collect();
    let id = c.next_pid();
    let packet = Subscribe {
        packet_id: PacketId::new(id).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    };
    c.send(&Packet::Subscribe(packet)).await;
}

/// One client fills the retained store, then subscribes to `#` with the filter repeated a hundred times in one
/// packet, and reads slowly. The walk over the store goes in steps at its reading pace: meanwhile another client
/// publishes and receives; the wide subscriber gets every retained message exactly once (none dropped for its
/// full queue, the repeated filter walked once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_subscribe_over_many_retained_messages_holds_nobody_up_and_loses_nothing() {
    const RETAINED: usize = 20_000;
    let Some((b, config)) =
        start_with(&format!("[limits]\nmax_retained_messages = {RETAINED}\nmax_queued_messages = 1000\n"))
    else {
        return;
    };
    let prefix = unique("wide");
    let mut filler = RawClient::connect_v311(b.addr, &unique("filler")).await;
    let mut bulk = Vec::new();
    for i in 0..RETAINED - 1 {
        bulk.extend(publish_bytes(Version::V311, &format!("{prefix}/{i:05}"), b"r", Qos::AtMostOnce, 0, true, false));
    }
    filler.send_raw(&bulk).await;
    // The last one at QoS 1: once it is acknowledged, every earlier one on this connection is stored.
    let last = format!("{prefix}/{:05}", RETAINED - 1);
    filler.publish_acked(&last, b"r", Qos::AtLeastOnce, true).await;

    let mut bystander = Bystander::connect(b.addr).await;
    let mut wide = RawClient::connect_v311(b.addr, &unique("wide-sub")).await;
    let codes = wide.subscribe(&[("#", Qos::AtMostOnce); 100]).await;
    assert_eq!(codes, vec![0; 100]);
    // The wide subscriber reads nothing for a while; the bystander is served meanwhile.
    for _ in 0..20 {
        bystander.round_trip().await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    while seen.len() < RETAINED {
        match wide.next_event(WAIT).await {
            Event::Packet(Rx::Publish(p)) if p.topic.starts_with(&prefix) => {
                assert!(p.retain, "sent as retained");
                total += 1;
                seen.insert(p.topic);
                if total % 5_000 == 0 {
                    bystander.round_trip().await;
                }
            }
            Event::Packet(Rx::Publish(_)) => {} // the bystander's messages match `#` too
            other => panic!("after {} of {RETAINED} retained messages: {other:?}", seen.len()),
        }
    }
    assert_eq!(total, RETAINED, "each retained message once");
    let extra = wide.assert_alive().await;
    assert!(extra.iter().all(|p| !p.topic.starts_with(&prefix)), "no retained message twice: {extra:?}");
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2, ...), so that per-address limits can
/// tell it from the bystander on 127.0.0.1.
async fn tcp_from(from: &str, addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    tokio::time::timeout(WAIT, socket.connect(addr)).await.map_err(std::io::Error::other)?
}

/// Whether the broker closes `s` (EOF or reset) within `limit`, reading and discarding whatever it sends.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_packet_before_connect_is_refused_from_its_header_but_allowed_after() {
    let Some((b, config)) = start_with("[limits]\nmax_connect_packet_size = 1024\n") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    // A CONNECT announcing 1 MiB: closed from its fixed header, before its body is sent.
    let mut big = RawClient::tcp(b.addr).await;
    big.send_raw(&[0x10, 0x80, 0x80, 0x40]).await;
    big.expect_closed(WAIT).await;
    // A CONNECT of 2 KiB (a long client id) is over the pre-CONNECT limit too.
    let long_id = "x".repeat(2048);
    let mut long = RawClient::tcp(b.addr).await;
    long.send_raw(&ConnectOpts::new(&long_id).encode()).await;
    let seen = long.expect_closed(WAIT).await;
    assert!(!seen.iter().any(|p| matches!(p, Rx::ConnAck { code: 0, .. })), "{seen:?}");
    // Once connected, packets up to max_packet_size (2 MiB) are fine.
    let mut c = RawClient::connect_v311(b.addr, &unique("after")).await;
    let topic = unique("after/t");
    c.subscribe_one(&topic, Qos::AtMostOnce).await;
    let payload = vec![7u8; 512 * 1024];
    let got = c.publish_acked(&topic, &payload, Qos::AtLeastOnce, false).await;
    let got = if got.is_empty() {
        match c.recv().await {
            Rx::Publish(p) => vec![p],
            other => panic!("{other:?}"),
        }
    } else {
        got
    };
    assert_eq!(got[0].payload.len(), payload.len());
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_silent_before_connect_hold_only_the_pending_handshake_places() {
    // Four places for connections that have not sent CONNECT; the fifth waits in the listen backlog until one
    // goes (here: by the CONNECT deadline), and is then served.
    let Some((b, config)) = start_with("[limits]\nmax_pending_handshakes = 4\nconnect_timeout_secs = 2\n") else {
        return;
    };
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(RawClient::tcp(b.addr).await);
    }
    let started = tokio::time::Instant::now();
    let (mut late, ack) = RawClient::connect_with(b.addr, &ConnectOpts::new(&unique("late"))).await;
    assert!(matches!(ack, Rx::ConnAck { code: 0, .. }), "{ack:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "waited for a place: {:?}", started.elapsed());
    for mut s in silent {
        s.expect_closed(WAIT).await;
    }
    late.assert_alive().await;
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_connections_or_connect_faster_than_its_rate() {
    let Some((b, config)) = start_with(
        "[limits]\nmax_connections_per_address = 3\nmax_connection_rate_per_address = 1000\n\
         per_address_limits_on_loopback = true\n",
    ) else {
        return;
    };
    let mut bystander = Bystander::connect(b.addr).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tcp_from("127.0.0.2", b.addr).await.unwrap();
        assert!(!closed_within(&mut s, std::time::Duration::from_millis(100)).await);
        held.push(s);
    }
    // The fourth from that address is closed at once; the bystander (127.0.0.1) is not affected.
    let mut fourth = tcp_from("127.0.0.2", b.addr).await.unwrap();
    assert!(closed_within(&mut fourth, WAIT).await, "over the per-address cap");
    bystander.round_trip().await;
    let _another = Bystander::connect(b.addr).await;
    // A place given back is usable again.
    held.pop();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut s = tcp_from("127.0.0.2", b.addr).await.unwrap();
        if !closed_within(&mut s, std::time::Duration::from_millis(200)).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the place was not given back");
    }
    drop(b);
    let _ = std::fs::remove_file(config);

    // The rate: five connections at once from one address with a rate of 2 per second.
    let Some((b, config)) =
        start_with("[limits]\nmax_connection_rate_per_address = 2\nper_address_limits_on_loopback = true\n")
    else {
        return;
    };
    let mut burst = Vec::new();
    for _ in 0..5 {
        burst.push(tcp_from("127.0.0.3", b.addr).await.unwrap());
    }
    let mut refused = 0;
    for s in &mut burst {
        if closed_within(s, std::time::Duration::from_millis(200)).await {
            refused += 1;
        }
    }
    // Two in the bucket, plus what refilled while the five connected (a few milliseconds at 2 per second).
    assert!(refused >= 2, "over the rate: {refused} of 5 refused");
    let mut bystander = Bystander::connect(b.addr).await;
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_zero_is_bounded_by_the_idle_timeout() {
    let Some((b, config)) = start_with("[sessions]\nidle_timeout_secs = 1\n") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    // MQTT 3.1.1 cannot be told: closed after a second without a packet, half a packet sent or not.
    let (mut idle, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("ka0")).keep_alive(0)).await;
    let (mut half, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("ka0-half")).keep_alive(0)).await;
    half.send_raw(&[0x30, 0x80, 0x01, 0x00]).await;
    idle.expect_closed(WAIT).await;
    half.expect_closed(WAIT).await;
    // MQTT 5 is told with Server Keep Alive.
    let (mut v5, ack) =
        RawClient::connect_with(b.addr, &ConnectOpts::new(&unique("ka0-v5")).keep_alive(0).version(Version::V5)).await;
    assert!(matches!(ack, Rx::ConnAck { code: 0, .. }), "{ack:?}");
    v5.expect_closed(WAIT).await;
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

/// Clients with 10 KiB client ids that each end with a protocol error: the broker's lines about them are cut to a
/// short client id, at most about 20 a second, and a later line says how many were left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_clients_with_huge_client_ids_cannot_flood_the_log() {
    let Some((b, config)) = start_with("") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    // A PUBLISH to a topic with a wildcard: a protocol error that closes the connection.
    let bad_publish = [0x30, 5, 0, 3, b'a', b'/', b'#'];
    let addr = b.addr;
    let failing = move |i: usize| {
        let id = format!("{i:04}{}", "x".repeat(10 * 1024));
        async move {
            let mut c = RawClient::connect_v311(addr, &id).await;
            c.send_raw(&bad_publish).await;
            c.expect_closed(WAIT).await;
        }
    };
    // All at once, so that they fail within a second or so even on a loaded machine.
    let started = tokio::time::Instant::now();
    let burst: Vec<_> = (0..200).map(|i| tokio::spawn(failing(i))).collect();
    for t in burst {
        tests::within_for(4 * WAIT, "a failing client", t).await.unwrap();
    }
    bystander.round_trip().await;
    // One more failure after the one-second window carries the count of the lines left out.
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    let mut i = 200;
    let line = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        failing(i).await;
        i += 1;
        let log = b.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("connection closed") && !l.contains("suppressed=0")) {
            break line.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no line reported left-out lines:\n{log}");
    };
    assert!(line.contains("suppressed="), "{line}");
    let log = b.log_text();
    let closed: Vec<&str> = log.lines().filter(|l| l.contains("connection closed")).collect();
    let budget = 20 * (started.elapsed().as_secs() as usize + 2);
    assert!(closed.len() <= budget, "{} lines for {i} failures (at most {budget})", closed.len());
    for l in &closed {
        assert!(l.len() < 600, "a line of {} bytes: {l}", l.len());
        assert!(l.contains("...(+"), "the client id is cut: {l}");
    }
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_max_sessions_are_refused_but_existing_ones_resume() {
    let Some((b, config)) = start_with("[limits]\nmax_sessions = 4\n") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    let ids: Vec<String> = (0..3).map(|i| unique(&format!("kept{i}"))).collect();
    for id in &ids {
        let (c, _) = RawClient::connect(b.addr, &ConnectOpts::new(id).clean(false)).await;
        c.disconnect().await;
    }
    // A fifth session: refused (MQTT 3.1.1: return code 3, server unavailable), over and over.
    for _ in 0..3 {
        let (mut c, ack) = RawClient::connect_with(b.addr, &ConnectOpts::new(&unique("fifth")).clean(false)).await;
        assert_eq!(ack, Rx::ConnAck { session_present: false, code: 3 });
        c.expect_closed(WAIT).await;
    }
    // A held session resumes.
    let (mut back, present) = RawClient::connect(b.addr, &ConnectOpts::new(&ids[0]).clean(false)).await;
    assert!(present);
    back.assert_alive().await;
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}

/// A subscriber that stops reading, with per-session queue limits raised far above the broker-wide budget: its
/// queue stops growing at the budget, further messages are refused and counted, and once it is gone the budget is
/// back and everyone publishes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_cannot_take_more_than_the_memory_budget() {
    const BUDGET: usize = 1024 * 1024;
    let mut settings = tests::Settings::default();
    settings.limits.max_packet_size = 64 * 1024;
    settings.limits.max_queued_bytes = 64 * 1024 * 1024;
    settings.limits.max_queued_messages = 100_000;
    settings.limits.max_message_memory = BUDGET;
    let b = tests::start_broker(settings).await;
    let mut bystander = Bystander::connect(b.addr).await;
    let topic = unique("flood/t");
    let mut stalled = RawClient::connect_v311(b.addr, &unique("stalled")).await;
    stalled.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("flooder")).await;
    let payload = vec![b'p'; 10 * 1024];
    let mut sent = 0;
    while b.stats().dropped_over_budget == 0 {
        // 4 MiB offered at most: four times the budget.
        assert!(sent < 400, "nothing refused after {sent} messages: {:?}", b.stats());
        publisher.publish_acked(&topic, &payload, Qos::AtLeastOnce, false).await;
        sent += 1;
        assert!(b.stats().message_memory <= BUDGET, "{:?}", b.stats());
    }
    for _ in 0..50 {
        publisher.publish_acked(&topic, &payload, Qos::AtLeastOnce, false).await;
        assert!(b.stats().message_memory <= BUDGET, "{:?}", b.stats());
    }
    assert!(b.stats().dropped_over_budget >= 50, "{:?}", b.stats());
    publisher.assert_alive().await;
    bystander.c.assert_alive().await;
    // The stalled client goes (clean session): its queue and the budget it held are freed.
    drop(stalled);
    b.wait_stats("the budget to be given back", |s| s.message_memory < BUDGET / 4).await;
    bystander.round_trip().await;
    b.shutdown().await;
}

/// One deadline covers the WebSocket upgrade and CONNECT together: a client that takes most of the time to
/// upgrade and then sends no CONNECT is closed at the deadline, not a whole CONNECT timeout after its upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_covers_the_websocket_upgrade_and_connect() {
    use broker::config::{ListenerSettings, Transport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let ws =
        ListenerSettings { transport: Transport::WebSocket { path: "/mqtt".into() }, ..ListenerSettings::plain(addr) };
    let listener = broker::Listener::from_tcp(tcp, &ws).unwrap();
    let mut settings = tests::Settings::default();
    settings.limits.connect_timeout = std::time::Duration::from_secs(3);
    let broker = broker::Broker::new(settings).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        broker
            .serve_listeners(vec![listener], async move {
                let _ = stopped.await;
            })
            .await
    });

    let mut s = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await.unwrap().unwrap();
    let accepted = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let upgrade = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Protocol: mqtt\r\n\r\n";
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let closed_at = loop {
        match tokio::time::timeout(2 * WAIT, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break accepted.elapsed(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {:?}", accepted.elapsed()),
        }
    };
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"), "upgraded: {}", String::from_utf8_lossy(&got));
    // The deadline is 3 s from accept; with a fresh CONNECT timeout after the upgrade it would be 5.5 s.
    assert!(closed_at < std::time::Duration::from_millis(4500), "closed {closed_at:?} after accept");
    let _ = stop.send(());
    let _ = tokio::time::timeout(2 * WAIT, serving).await;
}
