//! SUBSCRIBE options (No Local, Retain As Published, Retain Handling), Subscription Identifiers, UNSUBACK reason
//! codes, and shared subscriptions (`$share/{group}/{filter}`) as competing consumers.

use std::collections::HashMap;

use mqtt_codec::{QoS, ReasonCode};
use tests::{Settings, start_broker, start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, Sub, sub_ids};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_skips_the_clients_own_messages() {
    let b = start_default_broker().await;
    let topic = unique("nl/t");
    let mut me = C5::v5(b.addr, &unique("nlme")).await;
    let codes = me.subscribe_with(&[Sub { no_local: true, ..Sub::new(&topic, 1) }], None).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1]);
    me.publish_ok(Pub::new(&topic, b"mine", 1)).await;
    me.expect_silence(QUIET).await;
    let mut other = C5::v5(b.addr, &unique("nlother")).await;
    other.publish_ok(Pub::new(&topic, b"theirs", 1)).await;
    let f = me.recv_publish().await;
    assert_eq!(f.text(), "theirs");
    me.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_keeps_the_retain_flag_on_live_messages() {
    let b = start_default_broker().await;
    let topic = unique("rap/t");
    let mut keep = C5::v5(b.addr, &unique("rapkeep")).await;
    keep.subscribe_with(&[Sub { rap: true, ..Sub::new(&topic, 1) }], None).await;
    let mut clear = C5::v5(b.addr, &unique("rapclear")).await;
    clear.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("rappub")).await;
    p.publish_ok(Pub::new(&topic, b"r", 1).retain()).await;
    p.publish_ok(Pub::new(&topic, b"n", 1)).await;
    for (c, want) in [(&mut keep, [true, false]), (&mut clear, [false, false])] {
        for w in want {
            let f = c.recv_publish().await;
            assert_eq!(f.publish().retain, w, "{f:?}");
            c.ack(&f).await;
        }
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_0_1_2() {
    let b = start_default_broker().await;
    let topic = unique("rh/t");
    let mut p = C5::v5(b.addr, &unique("rhpub")).await;
    p.publish_ok(Pub::new(&topic, b"kept", 1).retain()).await;
    for rh in [0u8, 1, 2] {
        let mut c = C5::v5(b.addr, &unique(&format!("rh{rh}"))).await;
        let sub = Sub { rh, ..Sub::new(&topic, 1) };
        // First subscription.
        c.subscribe_with(&[sub], None).await;
        if rh < 2 {
            let f = c.recv_publish().await;
            assert!(f.publish().retain && f.text() == "kept", "rh {rh}: {f:?}");
            c.ack(&f).await;
        }
        c.expect_silence(QUIET).await;
        // The same subscription again: only Retain Handling 0 resends.
        c.subscribe_with(&[sub], None).await;
        if rh == 0 {
            let f = c.recv_publish().await;
            assert!(f.publish().retain && f.text() == "kept", "rh {rh} on resubscribe: {f:?}");
            c.ack(&f).await;
        }
        c.expect_silence(QUIET).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_give_one_copy_with_every_identifier_at_the_highest_qos() {
    let b = start_default_broker().await;
    let root = unique("sid");
    let mut c = C5::v5(b.addr, &unique("sidsub")).await;
    assert_eq!(c.subscribe_with(&[Sub::new(&format!("{root}/#"), 0)], Some(7)).await, vec![ReasonCode::Success]);
    assert_eq!(c.subscribe_with(&[Sub::new(&format!("{root}/+"), 1)], Some(9)).await, vec![ReasonCode::GrantedQoS1]);
    c.sub(&format!("{root}/a"), 0).await; // no identifier
    let mut p = C5::v5(b.addr, &unique("sidpub")).await;
    p.publish_ok(Pub::new(&format!("{root}/a"), b"x", 2)).await;
    let f = c.recv_publish().await;
    assert_eq!(f.publish().qos_pid.qos(), QoS::AtLeastOnce, "highest granted QoS wins");
    assert_eq!(sub_ids(&f.publish().properties), vec![7, 9]);
    c.ack(&f).await;
    c.expect_silence(QUIET).await;
    // Only the `#` subscription matches a deeper topic.
    p.publish_ok(Pub::new(&format!("{root}/a/b"), b"y", 1)).await;
    let f = c.recv_publish().await;
    assert_eq!((f.publish().qos_pid.qos(), sub_ids(&f.publish().properties)), (QoS::AtMostOnce, vec![7]));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_on_subscribe_carries_the_subscription_identifier() {
    let b = start_default_broker().await;
    let topic = unique("sidr/t");
    let mut p = C5::v5(b.addr, &unique("sidrpub")).await;
    p.publish_ok(Pub::new(&topic, b"r", 1).retain()).await;
    let mut c = C5::v5(b.addr, &unique("sidrsub")).await;
    c.subscribe_with(&[Sub::new(&topic, 1)], Some(42)).await;
    let f = c.recv_publish().await;
    assert_eq!(sub_ids(&f.publish().properties), vec![42]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuback_reports_0x11_for_a_missing_subscription() {
    let b = start_default_broker().await;
    let topic = unique("unsub/t");
    let mut c = C5::v5(b.addr, &unique("unsub")).await;
    c.sub(&topic, 0).await;
    let codes = c.unsubscribe(&[&topic, "never/subscribed", &topic]).await;
    assert_eq!(codes, vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted, ReasonCode::NoSubscriptionExisted]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_0x8f_for_a_filter_with_too_many_levels() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("deep")).await;
    let ok = vec!["l"; 1024].join("/");
    let deep = vec!["l"; 1025].join("/");
    let codes = c.subscribe_with(&[Sub::new(&ok, 1), Sub::new(&deep, 1), Sub::new("x/+", 2)], None).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid, ReasonCode::GrantedQoS2]);
    b.shutdown().await;
}

/// Subscribes `n` members to `$share/{group}/{filter}`.
async fn members(
    addr: std::net::SocketAddr,
    n: usize,
    group: &str,
    filter: &str,
    conn: impl Fn(&str) -> Conn,
) -> Vec<C5> {
    let mut v = Vec::new();
    for i in 0..n {
        let (mut c, _) = C5::connect(addr, &conn(&unique(&format!("member{i}")))).await;
        c.sub(&format!("$share/{group}/{filter}"), 1).await;
        v.push(c);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_round_robin_gives_each_message_to_one_member() {
    let b = start_default_broker().await;
    let topic = unique("share/t");
    let mut group = members(b.addr, 3, "g", &topic, Conn::new).await;
    // A plain subscriber still gets everything, and another group gets its own copy.
    let mut plain = C5::v5(b.addr, &unique("plain")).await;
    plain.sub(&topic, 1).await;
    let mut other = members(b.addr, 1, "h", &topic, Conn::new).await;
    let mut p = C5::v5(b.addr, &unique("sharepub")).await;
    let n = 30;
    for i in 0..n {
        let (r, _) = p.publish_ack(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
        assert_eq!(r, ReasonCode::Success);
    }
    let mut seen = HashMap::new();
    for (m, c) in group.iter_mut().enumerate() {
        for _ in 0..n / 3 {
            let f = c.recv_publish().await;
            assert!(seen.insert(f.text(), m).is_none(), "{} delivered twice", f.text());
            c.ack(&f).await;
        }
        c.expect_silence(QUIET).await;
    }
    assert_eq!(seen.len(), n, "every message to exactly one member, 10 each (round robin)");
    for c in [&mut plain, &mut other[0]] {
        for i in 0..n {
            let f = c.recv_publish().await;
            assert_eq!(f.text(), i.to_string());
            c.ack(&f).await;
        }
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_member_that_left_does_not_lose_messages() {
    let b = start_default_broker().await;
    let topic = unique("sharegone/t");
    let mut group = members(b.addr, 3, "g", &topic, Conn::new).await;
    // One member leaves (its session ends), another just drops its socket.
    group.remove(0).disconnect().await;
    drop(group.remove(0));
    b.wait_stats("two members gone", |s| s.clients_connected == 1).await;
    let mut p = C5::v5(b.addr, &unique("sharegonepub")).await;
    for i in 0..6 {
        p.publish_ok(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
    }
    let last = &mut group[0];
    for i in 0..6 {
        let f = last.recv_publish().await;
        assert_eq!(f.text(), i.to_string());
        last.ack(&f).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_member_with_a_full_queue_does_not_lose_messages() {
    let mut settings = Settings::default();
    settings.limits.max_queued_messages = 4;
    let b = start_broker(settings).await;
    let topic = unique("sharefull/t");
    // Member 0 takes one message at a time (Receive Maximum 1); member 1 has the default window.
    let ids = [unique("slowmember"), unique("busymember")];
    let mut group = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let conn = if n == 0 { Conn::new(id).receive_maximum(1) } else { Conn::new(id) };
        let (mut c, _) = C5::connect(b.addr, &conn).await;
        c.sub(&format!("$share/g/{topic}"), 1).await;
        group.push(c);
    }
    // Member 1 acknowledges everything it gets, as it gets it, until told to stop and the broker falls silent.
    let mut busy = group.pop().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match busy.next_event(QUIET).await {
                crate::v5client::Ev::Frame(f) => {
                    got.push(f.text().parse::<usize>().unwrap());
                    busy.ack(&f).await;
                }
                crate::v5client::Ev::Silent if !stop.load(std::sync::atomic::Ordering::SeqCst) => {}
                _ => return got,
            }
        }
    });
    let mut p = C5::v5(b.addr, &unique("sharefullpub")).await;
    let n = 20;
    for i in 0..n {
        let (r, _) = p.publish_ack(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
        assert_eq!(r, ReasonCode::Success, "message {i} taken by some member");
        // Pace the publisher on the busy member's connection (not on its client), so only member 0 fills up.
        b.wait_session(&ids[1], "the busy member's queue to drain", |s| s.queued_messages == 0).await;
        if i == 0 {
            // Member 0 got message 0 and does not acknowledge yet: one in flight, four queued, then it is full.
            let f = group[0].recv_publish().await;
            assert_eq!(f.text(), "0");
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut got = tests::within("the busy member", consumer).await.unwrap();
    // Member 0 holds at most 5 (1 in flight + 4 queued); the busy member took the rest.
    assert!(got.len() >= n - 5, "the busy member took the overflow: {got:?}");
    got.push(0);
    // The one queued behind member 0's window arrives once it acknowledges.
    let slow = &mut group[0];
    slow.puback(1).await;
    while let crate::v5client::Ev::Frame(f) = slow.next_event(QUIET).await {
        got.push(f.text().parse().unwrap());
        slow.ack(&f).await;
    }
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "no message lost, none duplicated");
    assert_eq!(b.stats().messages_dropped, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_prefers_online_members_and_queues_for_offline_ones() {
    let b = start_default_broker().await;
    let topic = unique("shoff/t");
    let filter = format!("$share/g/{topic}");
    let ids = [unique("shoffa"), unique("shoffb")];
    let conn = |id: &str| Conn::new(id).clean(false).expiry(60);
    let mut online = Vec::new();
    for id in &ids {
        let (mut c, _) = C5::connect(b.addr, &conn(id)).await;
        c.subscribe_with(&[Sub::new(&filter, 1)], Some(11)).await;
        online.push(c);
    }
    let gone = online.remove(0);
    gone.disconnect().await;
    b.wait_stats("member a offline", |s| s.clients_connected == 1).await;
    let mut p = C5::v5(b.addr, &unique("shoffpub")).await;
    for i in 0..4 {
        p.publish_ok(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
    }
    let live = &mut online[0];
    for i in 0..4 {
        let f = live.recv_publish().await;
        assert_eq!(f.text(), i.to_string(), "all to the online member");
        assert_eq!(sub_ids(&f.publish().properties), vec![11], "with the shared subscription's identifier");
        live.ack(&f).await;
    }
    assert_eq!(b.broker.session_stats(&ids[0]).map(|s| s.queued_messages), Some(0));
    // Everyone offline: the group's messages wait in a member's session instead of being lost.
    online.remove(0).disconnect().await;
    b.wait_stats("both offline", |s| s.clients_connected == 1).await;
    for i in 4..6 {
        let (r, _) = p.publish_ack(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
        assert_eq!(r, ReasonCode::Success);
    }
    let mut got = Vec::new();
    for id in &ids {
        let (mut c, _) = C5::connect(b.addr, &conn(id)).await;
        while let crate::v5client::Ev::Frame(f) = c.next_event(QUIET).await {
            got.push(f.text());
            c.ack(&f).await;
        }
    }
    got.sort();
    assert_eq!(got, vec!["4", "5"]);
    b.shutdown().await;
}
