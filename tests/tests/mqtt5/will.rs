//! Will Delay Interval (the will goes out when the delay ends or the session ends, whichever comes first; a
//! reconnection in time cancels it) and will properties forwarded.

use std::time::{Duration, Instant};

use tests::{start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, WillSpec, user_props};

fn will(topic: &str, delay: Option<u32>) -> WillSpec {
    WillSpec { topic: topic.to_owned(), payload: b"gone".to_vec(), qos: 1, delay, ..WillSpec::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_goes_out_when_the_delay_ends() {
    let b = start_default_broker().await;
    let topic = unique("wd/t");
    let mut watcher = C5::v5(b.addr, &unique("wdwatch")).await;
    watcher.sub(&topic, 1).await;
    let (c, _) =
        C5::connect(b.addr, &Conn::new(&unique("wd")).clean(false).expiry(60).will(will(&topic, Some(2)))).await;
    drop(c); // ungraceful
    let t0 = Instant::now();
    watcher.expect_silence(Duration::from_millis(1500)).await;
    let f = watcher.recv_publish().await;
    let waited = t0.elapsed();
    assert_eq!(f.text(), "gone");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_millis(3500), "after {waited:?}");
    watcher.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_goes_out_when_the_session_ends_first() {
    let b = start_default_broker().await;
    let topic = unique("wse/t");
    let mut watcher = C5::v5(b.addr, &unique("wsewatch")).await;
    watcher.sub(&topic, 1).await;
    // Session expiry 1 s, will delay 60 s: the session end sends it after about 1 s.
    let conn = Conn::new(&unique("wse")).clean(false).expiry(1).will(will(&topic, Some(60)));
    let (c, _) = C5::connect(b.addr, &conn).await;
    drop(c);
    let t0 = Instant::now();
    let f = watcher.recv_publish().await;
    assert_eq!(f.text(), "gone");
    assert!(t0.elapsed() < Duration::from_millis(3000), "after {:?}", t0.elapsed());
    watcher.ack(&f).await;
    // Expiry 0: the session ends with the connection, so the will goes out at once.
    let conn = Conn::new(&unique("wse0")).will(will(&topic, Some(60)));
    let (c, _) = C5::connect(b.addr, &conn).await;
    drop(c);
    let t0 = Instant::now();
    let f = watcher.recv_publish().await;
    assert!(t0.elapsed() < Duration::from_millis(900), "at once, got it after {:?}", t0.elapsed());
    watcher.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_the_will_delay_cancels_the_will() {
    let b = start_default_broker().await;
    let topic = unique("wrc/t");
    let id = unique("wrc");
    let mut watcher = C5::v5(b.addr, &unique("wrcwatch")).await;
    watcher.sub(&topic, 1).await;
    let conn = Conn::new(&id).clean(false).expiry(60).will(will(&topic, Some(1)));
    let (c, _) = C5::connect(b.addr, &conn).await;
    drop(c);
    b.wait_stats("the connection to end", |s| s.clients_connected == 1).await;
    let (again, ack) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60)).await;
    assert!(ack.connack().session_present);
    watcher.expect_silence(Duration::from_millis(2200)).await;
    again.disconnect().await;
    watcher.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_properties_are_forwarded() {
    let b = start_default_broker().await;
    let topic = unique("wp/t");
    let mut watcher = C5::v5(b.addr, &unique("wpwatch")).await;
    watcher.sub(&topic, 1).await;
    let mut w = will(&topic, None);
    w.content_type = Some("text/plain".into());
    w.user = vec![("why".into(), "test".into()), ("n".into(), "1".into())];
    w.message_expiry = Some(100);
    let (c, _) = C5::connect(b.addr, &Conn::new(&unique("wp")).will(w)).await;
    drop(c);
    let f = watcher.recv_publish().await;
    let p = f.publish().properties;
    assert_eq!(p.content_type(), Some("text/plain"));
    assert_eq!(user_props(&p), vec![("why".into(), "test".into()), ("n".into(), "1".into())]);
    assert!(matches!(p.message_expiry_interval(), Some(99..=100)), "{:?}", p.message_expiry_interval());
    watcher.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_message_expiry_counts_from_publication_not_from_connect() {
    let b = start_default_broker().await;
    let topic = unique("wexp/t");
    let mut watcher = C5::v5(b.addr, &unique("wexpwatch")).await;
    watcher.sub(&topic, 1).await;
    let mut w = will(&topic, None);
    w.message_expiry = Some(1);
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("wexp")).will(w)).await;
    // Connected for longer than the will's lifetime, then vanishing: the will is published now, with 1 s to live.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.send(&mqtt_codec::Packet::PingReq).await;
    c.recv().await;
    drop(c);
    let f = match watcher.next_event(Duration::from_secs(2)).await {
        crate::v5client::Ev::Frame(f) => f,
        other => panic!("no will (got {other:?}): its Message Expiry Interval ran from CONNECT, not from publication"),
    };
    assert_eq!(f.text(), "gone");
    assert_eq!(f.publish().properties.message_expiry_interval(), Some(1));
    watcher.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_reconnect_within_the_delay_cancels_the_pending_will() {
    let b = start_default_broker().await;
    let topic = unique("wcs/t");
    let id = unique("wcs");
    let mut watcher = C5::v5(b.addr, &unique("wcswatch")).await;
    watcher.sub(&topic, 1).await;
    let (c, _) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60).will(will(&topic, Some(1)))).await;
    drop(c);
    b.wait_stats("offline", |s| s.clients_connected == 1).await;
    let (_c, ack) = C5::connect(b.addr, &Conn::new(&id).clean(true)).await;
    assert!(!ack.connack().session_present);
    // A new network connection for the client id within the Will Delay Interval cancels the will [MQTT-3.1.2-8],
    // also with Clean Start 1 (Mosquitto does the same). Watched past the delay.
    watcher.expect_silence(Duration::from_millis(2500)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_will_is_retained() {
    let b = start_default_broker().await;
    let topic = unique("wret/t");
    let mut w = will(&topic, None);
    w.retain = true;
    let (c, _) = C5::connect(b.addr, &Conn::new(&unique("wret")).will(w)).await;
    drop(c);
    b.wait_stats("the will retained", |s| s.retained_messages == 1).await;
    let mut late = C5::v5(b.addr, &unique("wretlate")).await;
    late.sub(&topic, 1).await;
    let f = late.recv_publish().await;
    assert!(f.publish().retain && f.text() == "gone", "{f:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_with_payload_format_indicator_and_invalid_utf8_is_refused_with_0x99() {
    let b = start_default_broker().await;
    let mut w = will("wpfi/t", None);
    w.payload = vec![0xff, 0xfe];
    let mut conn = Conn::new(&unique("wpfi")).will(w);
    conn.will_pfi = Some(true);
    let (mut c, f) = C5::connect_with(b.addr, &conn).await;
    assert_eq!(f.connack().code, mqtt_codec::ReasonCode::PayloadFormatInvalid);
    c.expect_closed(Duration::from_secs(2)).await;
    b.shutdown().await;
}
