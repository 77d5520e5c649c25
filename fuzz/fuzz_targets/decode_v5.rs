//! Stream decoding for MQTT 5: any bytes, consumed packet by packet, never panic; sometimes under a small
//! Maximum Packet Size, which must be enforced from the fixed header alone.
//!
//! Input: the first byte picks the limit (high bit clear: 1 MiB; set: 2 + the low seven bits), the rest is
//! what a peer sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_codec::{DecodeError, Packet, ProtocolVersion, frame_len};

const V5: ProtocolVersion = ProtocolVersion::V5;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut buf)) = data.split_first() else {
        return;
    };
    let max = if selector & 0x80 == 0 { 1 << 20 } else { 2 + u32::from(selector & 0x7f) };
    loop {
        match Packet::decode_from(buf, V5, max) {
            Ok(Some((packet, used))) => {
                assert!(used >= 2 && used <= buf.len(), "used {used} of {}", buf.len());
                assert!(used as u32 <= max, "a {used}-byte packet passed a {max}-byte limit");
                assert_eq!(Packet::decode_from(&buf[..used - 1], V5, max), Ok(None));
                let _ = packet.encoded_len(V5);
                buf = &buf[used..];
            }
            Ok(None) => break,
            Err(DecodeError::PacketTooLarge { len }) => {
                assert!(len > max);
                // Without the limit the same header frames a packet of exactly `len` bytes (or needs more).
                match frame_len(buf, u32::MAX) {
                    Ok(Some(n)) => assert_eq!(n as u32, len),
                    Ok(None) => {}
                    Err(e) => panic!("limit error but no framing error without it: {e:?}"),
                }
                break;
            }
            Err(_) => break,
        }
    }
});
