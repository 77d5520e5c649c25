//! Arbitrary bytes from the "broker" never panic the client: not the sans-IO session fed framed garbage, and not
//! the blocking client fed a garbage stream in arbitrary chunks, before or after a valid CONNACK.

mod common;

use common::{Script, TestClient, opts, t};
use firmware_client::{Message, QoS, Session};
use proptest::prelude::*;

/// Valid-looking server packets mixed with noise, so the fuzzer gets past the framing often.
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        (0u8..16, 0u8..16, prop::collection::vec(any::<u8>(), 0..10)).prop_map(|(kind, flags, body)| {
            let mut v = vec![(kind << 4) | flags, body.len() as u8];
            v.extend(body);
            v
        }),
        Just(vec![0x20, 2, 1, 0]),
        Just(vec![0x34, 6, 0, 1, b't', 0, 1, b'x']),
        Just(vec![0x62, 2, 0, 1]),
        Just(vec![0x50, 2, 0, 1]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn session_survives_any_frames(frames in prop::collection::vec(chunk(), 0..24)) {
        let mut store = [0u8; 96];
        let mut s: Session<'_, 2, 2, 16> = Session::new(opts("f"), &mut store);
        let _ = s.subscribe("t", QoS::ExactlyOnce);
        let _ = s.publish(Message::new("t", b"x", QoS::ExactlyOnce));
        s.connect(t(0));
        let mut out = [0u8; 64];
        for (i, f) in frames.iter().enumerate() {
            let now = t(i as u64 * 700);
            let _ = s.on_packet(now, f);
            let _ = s.poll_timeout(now);
            while let Ok(Some(_)) = s.poll_transmit(now, &mut out) {}
            if !s.is_connected() {
                s.connect(now);
            }
        }
    }

    #[test]
    fn blocking_client_survives_any_stream(
        chunks in prop::collection::vec(chunk(), 0..24),
        read_size in 1usize..9,
        connack_first in any::<bool>(),
    ) {
        let (mut store, mut rx, mut tx) = ([0u8; 128], [0u8; 48], [0u8; 48]);
        let mut c = TestClient::new(Session::new(opts("f"), &mut store), &mut rx, &mut tx);
        let _ = c.subscribe("t/#", QoS::ExactlyOnce);
        let _ = c.publish(Message::new("t", b"x", QoS::ExactlyOnce));
        let mut s = Script::new(read_size);
        let _ = c.connect(s.clone(), t(0));
        if connack_first {
            s.feed(&[0x20, 2, 0, 0]);
        }
        for ch in &chunks {
            s.feed(ch);
        }
        for i in 0..400u64 {
            if c.poll(t(i * 50)).is_err() {
                s = Script::new(read_size);
                let _ = c.connect(s.clone(), t(i * 50));
                for ch in chunks.iter().skip(i as usize % 3) {
                    s.feed(ch);
                }
            }
            if s.unread() == 0 {
                break;
            }
        }
    }
}
