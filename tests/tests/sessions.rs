//! Persistent sessions (clean session 0): subscriptions kept, QoS 1/2 queued while offline, the session present
//! flag, unacknowledged messages resent with DUP=1 and PUBREL resent on resume; and the will message.

use std::time::Duration;

use tests::raw::{ConnectOpts, Qos, RawClient, Rx, Version};
use tests::{Settings, WAIT, start_broker, start_default_broker, unique};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_qos1_and_qos2_are_queued_and_delivered_on_resume() {
    let b = start_default_broker().await;
    let id = unique("persist");
    let topic = unique("persist/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(!present);
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    sub.disconnect().await;
    b.wait_stats("the subscriber to go offline", |s| s.clients_connected == 0 && s.sessions == 1).await;

    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let sent =
        [(Qos::AtLeastOnce, "a"), (Qos::AtMostOnce, "qos0 dropped"), (Qos::ExactlyOnce, "b"), (Qos::AtLeastOnce, "c")];
    for (qos, text) in sent {
        publisher.publish_acked(&topic, text.as_bytes(), qos, false).await;
    }
    b.wait_session(&id, "3 queued messages", |s| s.queued_messages == 3).await;

    // Resume without subscribing again: session present, the queued messages in order, QoS 0 not kept.
    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present, "session present must be 1 on resume");
    let got: Vec<_> = sub.recv_acking(3).await.into_iter().map(|p| (p.qos, p.text())).collect();
    let want = vec![(Qos::AtLeastOnce, "a".into()), (Qos::ExactlyOnce, "b".into()), (Qos::AtLeastOnce, "c".into())];
    assert_eq!(got, want);
    sub.expect_silence(QUIET).await;

    // The subscription is still there for live traffic.
    publisher.publish_acked(&topic, b"live", Qos::AtLeastOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.text(), "live");
    sub.puback(p.pid.unwrap()).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_qos0_is_queued_only_when_configured() {
    let mut settings = Settings::default();
    settings.sessions.queue_qos0_offline = true;
    let b = start_broker(settings).await;
    let id = unique("q0");
    let topic = unique("q0/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe_one(&topic, Qos::AtMostOnce).await;
    sub.disconnect().await;
    b.wait_stats("the subscriber to go offline", |s| s.clients_connected == 0).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"zero", Qos::AtMostOnce, false).await;
    publisher.publish_acked(&topic, b"one", Qos::AtLeastOnce, false).await;
    b.wait_session(&id, "2 queued messages", |s| s.queued_messages == 2).await;
    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present);
    let a = sub.recv_publish().await;
    let c = sub.recv_publish().await;
    assert_eq!((a.text().as_str(), a.qos, c.text().as_str(), c.qos), ("zero", Qos::AtMostOnce, "one", Qos::AtMostOnce));
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_the_stored_session() {
    let b = start_default_broker().await;
    let id = unique("clean");
    let topic = unique("clean/t");
    let (mut sub, _) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"stale", Qos::AtLeastOnce, false).await;
    b.wait_session(&id, "1 queued message", |s| s.queued_messages == 1).await;

    let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(true)).await;
    assert!(!present);
    sub.expect_silence(QUIET).await;
    // No subscription either.
    publisher.publish_acked(&topic, b"after", Qos::AtLeastOnce, false).await;
    sub.expect_silence(QUIET).await;
    sub.disconnect().await;
    // A clean session does not outlive its connection.
    b.wait_stats("no session left but the publisher's", |s| s.sessions == 1).await;
    let (_sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(!present);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_is_resent_with_dup_on_resume() {
    let b = start_default_broker().await;
    let id = unique("dup");
    let topic = unique("dup/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"m1", Qos::AtLeastOnce, false).await;
    publisher.publish_acked(&topic, b"m2", Qos::AtLeastOnce, false).await;
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    assert!(!first.dup && !second.dup);
    // Acknowledge only the second, then vanish.
    sub.puback(second.pid.unwrap()).await;
    b.wait_session(&id, "one message in flight", |s| s.inflight_messages == 1).await;
    sub.drop_connection();
    b.wait_stats("the subscriber to go offline", |s| s.clients_connected == 1).await;

    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present);
    let again = sub.recv_publish().await;
    assert_eq!(
        (again.dup, again.pid, again.text().as_str(), again.qos),
        (true, first.pid, "m1", Qos::AtLeastOnce),
        "the unacknowledged message comes back first, same id, DUP=1"
    );
    sub.puback(again.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
    b.wait_session(&id, "nothing in flight", |s| s.inflight_messages == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_and_pubrel_are_resent_on_resume() {
    let b = start_default_broker().await;
    let id = unique("rel");
    let topic = unique("rel/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"released", Qos::ExactlyOnce, false).await;
    publisher.publish_acked(&topic, b"unreceived", Qos::ExactlyOnce, false).await;
    let a = sub.recv_publish().await;
    let c = sub.recv_publish().await;
    // The first reaches PUBREL; the second is never acknowledged. Then the connection drops.
    sub.pubrec(a.pid.unwrap()).await;
    assert_eq!(sub.recv().await, Rx::PubRel(a.pid.unwrap()));
    sub.drop_connection();
    b.wait_stats("the subscriber to go offline", |s| s.clients_connected == 1).await;

    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present);
    let mut resent = [sub.recv().await, sub.recv().await];
    resent.sort_by_key(|p| matches!(p, Rx::Publish(_)));
    assert_eq!(resent[0], Rx::PubRel(a.pid.unwrap()), "PUBREL resent for the released message");
    match &resent[1] {
        Rx::Publish(p) => {
            assert_eq!((p.dup, p.pid, p.text().as_str()), (true, c.pid, "unreceived"), "PUBLISH resent with DUP=1")
        }
        other => panic!("expected the PUBLISH again, got {other:?}"),
    }
    sub.pubcomp(a.pid.unwrap()).await;
    sub.pubrec(c.pid.unwrap()).await;
    assert_eq!(sub.recv().await, Rx::PubRel(c.pid.unwrap()));
    sub.pubcomp(c.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
    b.wait_session(&id, "nothing in flight", |s| s.inflight_messages == 0).await;
    b.shutdown().await;
}

async fn will_watcher(b: &tests::TestBroker, topic: &str) -> RawClient {
    let mut w = RawClient::connect_v311(b.addr, &unique("will-watch")).await;
    w.subscribe_one(topic, Qos::AtLeastOnce).await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_keepalive_expiry() {
    let b = start_default_broker().await;
    let topic = unique("will/ka");
    let mut watcher = will_watcher(&b, &topic).await;
    let opts = ConnectOpts::new(&unique("dies")).keep_alive(1).will(&topic, b"gone quiet", Qos::AtLeastOnce, false);
    let (mut dying, _) = RawClient::connect(b.addr, &opts).await;
    let started = std::time::Instant::now();
    let p = watcher.recv_publish().await;
    assert_eq!((p.text().as_str(), p.qos), ("gone quiet", Qos::AtLeastOnce));
    assert!(started.elapsed() >= Duration::from_millis(1300), "will after {:?}", started.elapsed());
    dying.expect_closed(WAIT).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_socket_close_and_protocol_violation() {
    let b = start_default_broker().await;
    let topic = unique("will/err");
    let mut watcher = will_watcher(&b, &topic).await;

    let opts = ConnectOpts::new(&unique("dropped")).will(&topic, b"socket", Qos::AtMostOnce, false);
    let (c, _) = RawClient::connect(b.addr, &opts).await;
    c.drop_connection();
    assert_eq!(watcher.recv_publish().await.text(), "socket");

    let opts = ConnectOpts::new(&unique("violator")).will(&topic, b"violation", Qos::AtMostOnce, false);
    let (mut c, _) = RawClient::connect(b.addr, &opts).await;
    c.send_raw(&[0x20, 0x02, 0x00, 0x00]).await; // CONNACK from a client
    c.expect_closed(WAIT).await;
    assert_eq!(watcher.recv_publish().await.text(), "violation");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_disconnect() {
    let b = start_default_broker().await;
    let topic = unique("will/clean");
    let mut watcher = will_watcher(&b, &topic).await;
    let opts = ConnectOpts::new(&unique("polite")).keep_alive(1).will(&topic, b"must not", Qos::AtLeastOnce, true);
    let (c, _) = RawClient::connect(b.addr, &opts).await;
    c.disconnect().await;
    // Longer than the 1.5 s keep alive would have been.
    watcher.expect_silence(Duration::from_millis(1800)).await;
    assert_eq!(b.stats().retained_messages, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_will_is_stored() {
    let b = start_default_broker().await;
    let topic = unique("will/retained");
    let opts = ConnectOpts::new(&unique("last-words")).will(&topic, b"offline", Qos::AtLeastOnce, true);
    let (c, _) = RawClient::connect(b.addr, &opts).await;
    c.drop_connection();
    b.wait_stats("the will to be retained", |s| s.retained_messages == 1).await;
    let mut late = RawClient::connect_v311(b.addr, &unique("late")).await;
    late.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let p = late.recv_publish().await;
    assert_eq!((p.text().as_str(), p.retain), ("offline", true));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_goes_to_dollar_topics_a_client_may_publish_to_but_never_to_sys() {
    let b = start_default_broker().await;
    let name = unique("dollar-will");
    let sys = format!("$SYS/{name}");
    let aws = format!("$aws/things/{name}/shadow/update");
    let mut watcher = RawClient::connect_v311(b.addr, &unique("watch")).await;
    let codes = watcher.subscribe(&[("#", Qos::AtLeastOnce), (&sys, Qos::AtLeastOnce)]).await;
    assert_eq!(codes, vec![1, 1]);
    // A will is held to the rules of PUBLISH, at CONNECT: a `$SYS` will is refused (3.1.1: CONNACK 5).
    let opts = ConnectOpts::new(&unique("forger")).will(&sys, b"forged", Qos::AtLeastOnce, true);
    let (_c, ack) = RawClient::connect_with(b.addr, &opts).await;
    assert_eq!(ack, Rx::ConnAck { session_present: false, code: 5 });
    // So is a will deeper than `mqtt.max_topic_levels`.
    let deep = vec!["l"; b.broker.settings().mqtt.max_topic_levels + 1].join("/");
    let opts = ConnectOpts::new(&unique("deep")).will(&deep, b"too deep", Qos::AtLeastOnce, false);
    let (_c, ack) = RawClient::connect_with(b.addr, &opts).await;
    assert_eq!(ack, Rx::ConnAck { session_present: false, code: 5 });
    b.wait_stats("the forger to be gone", |s| s.clients_connected == 1).await;
    watcher.expect_silence(QUIET).await;
    assert_eq!(b.stats().retained_messages, 0);
    // `$aws/...` is open to clients (as in Mosquitto), so a will may go there; `#` does not match it.
    watcher.subscribe_one(&aws, Qos::AtLeastOnce).await;
    let opts = ConnectOpts::new(&unique("device")).will(&aws, b"offline", Qos::AtLeastOnce, false);
    let (c, _) = RawClient::connect(b.addr, &opts).await;
    c.drop_connection();
    let p = watcher.recv_publish().await;
    assert_eq!((p.topic.as_str(), p.text().as_str()), (aws.as_str(), "offline"));
    watcher.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_persistent_session_expires_when_configured() {
    let mut settings = Settings::default();
    settings.sessions.persistent_session_expiry = Some(Duration::from_millis(500));
    let b = start_broker(settings).await;
    let id = unique("expiring");
    let topic = unique("expiring/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    sub.disconnect().await;
    // Kept for a while...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.broker.session_stats(&id).is_some(), "the session is kept right after the disconnect");
    // ...then discarded.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"nobody", Qos::AtLeastOnce, false).await;
    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(!present, "the session expired 500 ms after the disconnect");
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_resends_what_the_old_connection_left_unacknowledged() {
    let b = start_default_broker().await;
    let id = unique("handover");
    let topic = unique("handover/t");
    // The first connection speaks MQTT 3.1, the one taking over 3.1.1: the session does not care.
    let (mut old, _) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false).version(Version::V31)).await;
    old.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"pending", Qos::AtLeastOnce, false).await;
    let first = old.recv_publish().await;
    assert!(!first.dup);

    let (mut new, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(present);
    old.expect_closed(WAIT).await;
    let again = new.recv_publish().await;
    assert_eq!((again.text().as_str(), again.pid, again.dup), ("pending", first.pid, true));
    new.puback(again.pid.unwrap()).await;
    publisher.publish_acked(&topic, b"next", Qos::AtLeastOnce, false).await;
    let next = new.recv_publish().await;
    assert_eq!((next.text().as_str(), next.dup), ("next", false));
    new.puback(next.pid.unwrap()).await;
    new.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_limit_drops_visibly_and_keeps_the_oldest() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 2;
    settings.limits.max_queued_messages = 3;
    let b = start_broker(settings).await;
    let id = unique("offline-full");
    let topic = unique("offline-full/t");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    sub.disconnect().await;
    b.wait_stats("the subscriber offline", |s| s.clients_connected == 0).await;

    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    const N: u64 = 10;
    for i in 0..N {
        publisher.publish_acked(&topic, i.to_string().as_bytes(), Qos::AtLeastOnce, false).await;
    }
    let s = b.wait_session(&id, "drops while offline", |s| s.dropped_messages > 0).await;
    let kept = s.queued_messages + s.inflight_messages;
    assert!((3..=5).contains(&kept), "an offline session keeps the queue (and at most the window): {s:?}");
    assert_eq!(s.dropped_messages, N - kept as u64);
    assert_eq!(b.stats().messages_dropped, s.dropped_messages);

    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present);
    let got: Vec<String> = sub.recv_acking(kept).await.iter().map(|p| p.text()).collect();
    assert_eq!(got, (0..kept).map(|i| i.to_string()).collect::<Vec<_>>(), "the oldest are kept, in order");
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}
