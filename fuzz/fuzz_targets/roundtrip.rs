//! Decode, encode, decode, encode: for every version, a frame that decodes must encode to exactly
//! `encoded_len` bytes, those bytes must decode to an equal packet, and encoding that must give the same bytes.
//!
//! Input: one frame, tried as MQTT 3.1, 3.1.1 and 5.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_codec::{EncodeError, Packet, ProtocolVersion, decode};

fn encode(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let len = match packet.encoded_len(version) {
        Ok(len) => len,
        Err(e) => panic!("decoded {packet:?} ({version:?}) but encoded_len fails: {e:?}"),
    };
    let mut out = vec![0u8; len];
    match packet.encode(version, &mut out) {
        Ok(n) => assert_eq!(n, len, "encode wrote {n} bytes, encoded_len said {len}: {packet:?}"),
        Err(e) => panic!("decoded {packet:?} ({version:?}) but encode fails: {e:?}"),
    }
    // One byte short must be refused, never truncated.
    if let Some(short) = out.len().checked_sub(1) {
        let mut small = vec![0u8; short];
        assert!(matches!(packet.encode(version, &mut small), Err(EncodeError::BufferTooSmall { .. })));
    }
    out
}

fuzz_target!(|frame: &[u8]| {
    for version in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        let Ok(packet) = decode(frame, version) else {
            continue;
        };
        // A CONNECT carries its own version; every other packet is encoded in the connection's.
        let first = encode(&packet, version);
        let again = match decode(&first, version) {
            Ok(p) => p,
            Err(e) => panic!("{packet:?} ({version:?}) encoded to {first:02x?}, which fails to decode: {e:?}"),
        };
        assert_eq!(again, packet, "{version:?}: {first:02x?}");
        let second = encode(&again, version);
        assert_eq!(first, second, "{version:?}: re-encoding {packet:?} changed the bytes");
    }
});
