//! Recovery gives back the state the router had: sessions, subscriptions, queues with in-flight identifiers,
//! inbound QoS 2 identifiers, retained messages and pending wills; also when a checkpoint was written while the
//! router kept changing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_codec::{PacketId, QoS, RetainHandling};
use tokio::time::Instant;

use super::{FsyncSetting, PersistenceSettings};
use crate::message::Message;
use crate::queue::{OutboxLimits, Outgoing};
use crate::router::{ConnLink, Router, RouterLimits, SharedStrategy, SubOpts};

fn router() -> Router {
    let outbox =
        OutboxLimits { max_inflight: 8, max_queued: 100_000, max_queued_bytes: 1 << 30, queue_qos0_offline: false };
    let limits = RouterLimits {
        outbox,
        max_retained: 1000,
        max_retained_bytes: 0,
        max_pending_wills: 0,
        max_subscriptions: 10,
        shared_strategy: SharedStrategy::RoundRobin,
        disconnect_slow_consumers: false,
    };
    Router::new(limits, Arc::default())
}

fn settings(dir: &std::path::Path) -> PersistenceSettings {
    PersistenceSettings { enabled: true, path: dir.to_path_buf(), fsync: FsyncSetting::Never, max_bytes: 1 << 30 }
}

/// What a client would see of a session: its queue in order (payload, QoS, packet id and state when in flight),
/// its inbound QoS 2 ids and its subscriptions.
type Seen = (Vec<(Vec<u8>, QoS, Option<(u16, bool)>)>, Vec<u16>, Vec<String>);

fn seen(r: &Router, client: &str) -> Option<Seen> {
    let s = r.session(client)?;
    let state = s.lock();
    let mut queue = Vec::new();
    state.outbox().for_each_entry(|_, d, inflight| {
        let inflight = inflight.map(|(id, st)| (id.get(), st == crate::queue::InflightState::AwaitPubComp));
        queue.push((d.msg.payload.to_vec(), d.qos, inflight));
    });
    let mut inbound: Vec<u16> = state.inbound_qos2().iter().map(PacketId::get).collect();
    inbound.sort_unstable();
    let mut subs: Vec<String> = state.subscriptions().iter().map(|(f, _)| f.to_owned()).collect();
    subs.sort();
    Some((queue, inbound, subs))
}

fn publish(r: &mut Router, topic: &str, n: usize, qos: QoS) {
    let payload = format!("{topic} {n}");
    r.publish(Message::from_parts(topic, payload.as_bytes(), qos, false), None, Instant::now());
}

/// Sends what the session's window allows and acknowledges every `ack_every`-th of them (QoS 2: PUBREC only).
fn consume(r: &Router, client: &str, ack_every: usize) {
    let Some(s) = r.session(client) else { return };
    let mut state = s.lock();
    let mut sent = Vec::new();
    while let Some(send) = state.outbox_mut().next_send(Instant::now()) {
        if let Outgoing::Publish { id: Some(id), delivery, .. } = send {
            sent.push((id, delivery.qos));
        }
    }
    for (i, (id, qos)) in sent.into_iter().enumerate() {
        if i % ack_every == 0 {
            match qos {
                QoS::AtLeastOnce => assert!(state.outbox_mut().on_puback(id)),
                _ => assert!(state.outbox_mut().on_pubrec(id, false)),
            }
        }
    }
}

#[test]
fn a_checkpoint_taken_while_the_router_changes_recovers_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let now = Instant::now();
    let (online, _) = r.connect("online", false, None, ConnLink::new(1), now);
    let (offline, _) = r.connect("offline", false, Some(Duration::from_secs(3600)), ConnLink::new(2), now);
    for s in [&online, &offline] {
        r.subscribe(s, "t/#", SubOpts::qos(QoS::ExactlyOnce), RetainHandling::SendAtSubscribe, now).unwrap();
    }
    r.disconnect(&offline, 2, None, now);
    r.publish(Message::from_parts("t/retained", b"kept", QoS::AtLeastOnce, true), None, now);
    for n in 0..300 {
        publish(&mut r, "t/a", n, if n % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce });
    }
    consume(&r, "online", 2);
    let from_online = Message::from_parts("elsewhere", b"q2", QoS::ExactlyOnce, false);
    r.publish_from(from_online, Some(&online), PacketId::new(42), now);
    let durable = r.durable().cloned().unwrap();
    let shared = Arc::new(Mutex::new(r));
    // A checkpoint on another thread while this one publishes, sends and acknowledges.
    let writer = {
        let (shared, durable) = (shared.clone(), durable.clone());
        std::thread::spawn(move || super::checkpoint(&shared, &durable))
    };
    for n in 300..600 {
        let mut r = shared.lock().unwrap();
        publish(&mut r, "t/b", n, if n % 3 == 0 { QoS::ExactlyOnce } else { QoS::AtLeastOnce });
        if n % 50 == 0 {
            consume(&r, "online", 3);
        }
    }
    writer.join().unwrap().unwrap();
    let mut r = shared.lock().unwrap();
    for n in 600..650 {
        publish(&mut r, "t/c", n, QoS::AtLeastOnce);
    }
    consume(&r, "online", 1);
    let want = (seen(&r, "online").unwrap(), seen(&r, "offline").unwrap(), r.retained_count());
    assert!(!want.0.0.is_empty() && want.1.0.len() == 651, "the test leaves messages queued and in flight");
    durable.journal().close().unwrap();
    drop(r);

    let mut again = router();
    let (_, stats) = super::open(&settings(dir.path()), &mut again).unwrap();
    let got = (seen(&again, "online").unwrap(), seen(&again, "offline").unwrap(), again.retained_count());
    assert_eq!(got.0.0.len(), want.0.0.len());
    assert_eq!(got, want);
    assert_eq!((stats.sessions, stats.skipped), (2, 0));
}

#[test]
fn retained_messages_queued_in_steps_for_a_new_subscription_are_recovered_in_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let now = Instant::now();
    for n in 0..50 {
        let payload = format!("r {n}");
        r.publish(Message::from_parts(&format!("r/{n:02}"), payload.as_bytes(), QoS::AtLeastOnce, true), None, now);
    }
    let (s, _) = r.connect("late", false, Some(Duration::from_secs(3600)), ConnLink::new(1), now);
    let opts = SubOpts::qos(QoS::AtLeastOnce);
    let (_, scan) = r.subscribe_deferred(&s, "r/#", opts, RetainHandling::SendAtSubscribe).unwrap();
    let mut scan = scan.unwrap();
    // Small steps, as a connection takes them, with the session going offline half way.
    let mut steps = 0;
    while r.send_retained(&s, &mut scan, now, 7) != crate::router::RetainedStep::Done {
        steps += 1;
        if steps == 3 {
            r.disconnect(&s, 1, None, now);
        }
    }
    let want = seen(&r, "late").unwrap();
    assert_eq!(want.0.len(), 50, "every retained message queued");
    let durable = r.durable().cloned().unwrap();
    durable.journal().close().unwrap();
    drop(r);

    let mut again = router();
    super::open(&settings(dir.path()), &mut again).unwrap();
    assert_eq!(seen(&again, "late").unwrap(), want);
}

#[test]
fn recovered_messages_are_charged_to_the_memory_budget_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let now = Instant::now();
    let (s, _) = r.connect("away", false, Some(Duration::from_secs(3600)), ConnLink::new(1), now);
    r.subscribe(&s, "b/#", SubOpts::qos(QoS::AtLeastOnce), RetainHandling::SendAtSubscribe, now).unwrap();
    r.disconnect(&s, 1, None, now);
    for n in 0..20 {
        publish(&mut r, "b/q", n, QoS::AtLeastOnce);
    }
    r.publish(Message::from_parts("b/kept", b"retained", QoS::AtMostOnce, true), None, now);
    // What the live broker charged: every message as it was taken in (the router alone charges nothing).
    let mut want = 0;
    s.lock().outbox().for_each_entry(|_, d, _| want += d.msg.cost());
    let retained_cost = Message::from_parts("b/kept", b"retained", QoS::AtMostOnce, true).cost();
    want += retained_cost;
    assert!(want > 0);
    let durable = r.durable().cloned().unwrap();
    durable.journal().close().unwrap();
    drop((r, s, durable));

    let mut again = router();
    assert_eq!(again.budget().used(), 0);
    super::open(&settings(dir.path()), &mut again).unwrap();
    assert_eq!(again.budget().used(), want, "queued and retained messages are charged at recovery");
    let session = again.session("away").unwrap().clone();
    again.connect("away", false, Some(Duration::from_secs(3600)), ConnLink::new(2), Instant::now());
    // The window is 8: a few rounds of sending and acknowledging.
    for _ in 0..5 {
        consume(&again, "away", 1);
    }
    let left = {
        let state = session.lock();
        state.outbox().queued() + state.outbox().inflight()
    };
    assert_eq!(left, 0, "every message delivered and acknowledged");
    assert_eq!(again.budget().used(), retained_cost, "delivered messages give their charge back");
}

#[test]
fn the_protocol_version_username_and_acl_survive_a_restart_and_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let mut link = ConnLink::new(1);
    let info = crate::router::ConnInfo::new(None);
    info.connect.set((mqtt_codec::ProtocolVersion::V5, Some("alice".to_owned()))).unwrap();
    info.acl.set(Arc::from("acl_file /etc/acl")).unwrap();
    link.info = Some(Arc::new(info));
    let (s, _) = r.connect("owned", false, Some(Duration::from_secs(3600)), link, Instant::now());
    r.disconnect(&s, 1, None, Instant::now());
    let want = crate::router::SessionOwner {
        version: mqtt_codec::ProtocolVersion::V5,
        username: Some("alice".into()),
        acl: Some(Arc::from("acl_file /etc/acl")),
    };
    assert_eq!(s.lock().owner(), Some(&want));
    r.durable().cloned().unwrap().journal().close().unwrap();
    drop((r, s));

    // The first start replays the record; the second reads the checkpoint the first one wrote.
    for start in ["replayed", "from the checkpoint"] {
        let mut again = router();
        super::open(&settings(dir.path()), &mut again).unwrap();
        assert_eq!(again.session("owned").unwrap().lock().owner(), Some(&want), "{start}");
        again.durable().cloned().unwrap().journal().close().unwrap();
    }
}

#[test]
fn a_journal_written_before_the_owner_was_recorded_still_recovers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let opts = crate::journal::JournalOptions::default();
        let (journal, _) = crate::journal::Journal::open(dir.path(), opts).unwrap();
        // SESSION_OPEN in its first form (no owner): client "old", fresh, expiry 3600 s.
        journal.append(b"\x01\x03\x00\x00\x00old\x01\x01\x10\x0e\x00\x00").unwrap();
        let mut sub = Vec::new();
        let opts = crate::persist::record::StoredSubOpts {
            qos: QoS::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            id: None,
            acl_check: false,
        };
        super::Record::Subscribe { client: "old", filter: "o/#", opts }.encode(&mut sub);
        journal.append(&sub).unwrap();
        journal.close().unwrap();
    }
    let mut r = router();
    let (_, stats) = super::open(&settings(dir.path()), &mut r).unwrap();
    assert_eq!((stats.sessions, stats.skipped), (1, 0));
    let s = r.session("old").unwrap().clone();
    assert_eq!(s.lock().owner(), None);
    assert_eq!(s.lock().expiry(), Some(Duration::from_secs(3600)));
    publish(&mut r, "o/x", 1, QoS::AtLeastOnce);
    assert_eq!(s.lock().outbox().queued(), 1, "its subscription works");
}

/// The will of a connection open at a crash goes out after the restart, whether its session outlives the
/// connection or not; the will of a connection that ended normally (or whose session a DISCONNECT ended) does not,
/// also when a checkpoint was taken while it was connected.
#[test]
fn the_will_of_a_connection_open_at_a_crash_goes_out_after_the_restart_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let now = Instant::now();
    let hour = Some(Duration::from_secs(3600));
    let (watcher, _) = r.connect("watcher", false, hour, ConnLink::new(1), now);
    r.subscribe(&watcher, "w/#", SubOpts::qos(QoS::AtLeastOnce), RetainHandling::SendAtSubscribe, now).unwrap();
    r.disconnect(&watcher, 1, None, now);
    let will = |name: &str| {
        (Message::from_parts(&format!("w/{name}"), name.as_bytes(), QoS::AtLeastOnce, false), Duration::ZERO)
    };
    let clean = Some(Duration::ZERO);
    let attach = |r: &mut Router, id: &str, expiry, conn| {
        let (s, _) = r.connect(id, true, expiry, ConnLink::new(conn), now);
        let _ = r.take_lsn();
        r.note_will(&s, Some(&Arc::new(will(id))), now);
        assert!(r.take_lsn().is_some(), "{id}: its will is journaled");
        s
    };
    // Connected at the crash: a clean session (its will is in the checkpoint only) and a persistent one.
    let _crashed = attach(&mut r, "crashed", clean, 10);
    let durable = r.durable().cloned().unwrap();
    let shared = Arc::new(Mutex::new(r));
    super::checkpoint(&shared, &durable).unwrap();
    let mut r = shared.lock().unwrap();
    let _crashed_persistent = attach(&mut r, "crashed-persistent", hour, 11);
    // Gone before the crash: with DISCONNECT (clean, and persistent with its session ended by the DISCONNECT), and
    // without (its will went out then, once).
    let left = attach(&mut r, "left", clean, 12);
    r.disconnect(&left, 12, None, now);
    let ended = attach(&mut r, "ended", hour, 13);
    ended.lock().set_expiry_at_disconnect(Some(Duration::ZERO));
    r.disconnect(&ended, 13, None, now);
    let dropped = attach(&mut r, "dropped", clean, 14);
    r.disconnect(&dropped, 14, Some(will("dropped")), now);
    let queued = |r: &Router| {
        seen(r, "watcher").unwrap().0.into_iter().map(|(p, ..)| String::from_utf8(p).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(queued(&r), ["dropped"]);
    durable.journal().close().unwrap();
    drop(r);

    let mut again = router();
    let (_, stats) = super::open(&settings(dir.path()), &mut again).unwrap();
    assert_eq!((stats.wills, stats.skipped), (2, 0));
    again.tick(Instant::now());
    let mut got = queued(&again);
    got.sort();
    assert_eq!(got, ["crashed", "crashed-persistent", "dropped"]);
    again.durable().cloned().unwrap().journal().close().unwrap();
    drop(again);

    // Published once: the next start has no will left.
    let mut third = router();
    let (_, stats) = super::open(&settings(dir.path()), &mut third).unwrap();
    assert_eq!(stats.wills, 0);
    assert_eq!(queued(&third).len(), 3);
}

/// A message queued for several sessions is written once by a checkpoint: after a restart from it, every session
/// holds the same copy, charged to the memory budget once.
#[test]
fn a_message_queued_for_many_sessions_is_one_copy_after_a_restart_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = router();
    super::open(&settings(dir.path()), &mut r).unwrap();
    let now = Instant::now();
    let ids: Vec<String> = (0..3).map(|n| format!("fan-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let (s, _) = r.connect(id, false, Some(Duration::from_secs(3600)), ConnLink::new(n as u64 + 1), now);
        r.subscribe(&s, "f/#", SubOpts::qos(QoS::AtLeastOnce), RetainHandling::SendAtSubscribe, now).unwrap();
        r.disconnect(&s, n as u64 + 1, None, now);
    }
    for n in 0..4 {
        publish(&mut r, "f/x", n, QoS::AtLeastOnce);
    }
    let cost: usize =
        (0..4).map(|n| Message::from_parts("f/x", format!("f/x {n}").as_bytes(), QoS::AtLeastOnce, false).cost()).sum();
    r.durable().cloned().unwrap().journal().close().unwrap();
    drop(r);

    // The first start replays the journal and writes a checkpoint; the second reads that checkpoint.
    for start in ["replayed", "from the checkpoint"] {
        let mut again = router();
        super::open(&settings(dir.path()), &mut again).unwrap();
        let queues: Vec<Vec<Arc<Message>>> = ids
            .iter()
            .map(|id| {
                let mut q = Vec::new();
                again.session(id).unwrap().lock().outbox().for_each_entry(|_, d, _| q.push(d.msg.clone()));
                q
            })
            .collect();
        assert!(queues.iter().all(|q| q.len() == 4), "{start}");
        for q in &queues[1..] {
            assert!(q.iter().zip(&queues[0]).all(|(a, b)| Arc::ptr_eq(a, b)), "{start}: one copy per message");
        }
        assert_eq!(again.budget().used(), cost, "{start}: each message charged once");
        again.durable().cloned().unwrap().journal().close().unwrap();
    }
}
