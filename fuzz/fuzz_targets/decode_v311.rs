//! Stream decoding for MQTT 3.1 and 3.1.1: any bytes, consumed packet by packet, never panic.
//!
//! Input: the first byte picks the version (even: 3.1.1, odd: 3.1), the rest is what a peer sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_codec::{DecodeError, Packet, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut buf)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 { ProtocolVersion::V311 } else { ProtocolVersion::V31 };
    // The broker's default limit, well above anything libFuzzer generates.
    let max = 1 << 20;
    loop {
        match Packet::decode_from(buf, version, max) {
            Ok(Some((packet, used))) => {
                assert!(used >= 2 && used <= buf.len(), "used {used} of {}", buf.len());
                // A strict prefix of a whole packet is never whole.
                assert_eq!(Packet::decode_from(&buf[..used - 1], version, max), Ok(None));
                // A decoded packet can always be measured again in its own version.
                let _ = packet.encoded_len(version);
                buf = &buf[used..];
            }
            Ok(None) => break,
            Err(DecodeError::PacketTooLarge { len }) => {
                assert!(len > max);
                break;
            }
            Err(_) => break,
        }
    }
});
