//! Framing: how long the next packet in a stream is, before any of it is decoded.

use crate::error::DecodeError;
use crate::wire::{MAX_VARINT, decode_varint};

/// The largest Remaining Length the protocol can express (256 MiB less one byte).
pub const MAX_REMAINING_LENGTH: u32 = MAX_VARINT;

/// The length of the first packet in `buf`, fixed header included.
///
/// Returns `Ok(None)` until the whole packet has arrived. A packet longer than `max_packet_size` (counting the
/// whole packet, as MQTT 5 Maximum Packet Size does) is rejected as soon as its fixed header is readable, so a
/// receiver never buffers it.
///
/// # Errors
/// [`DecodeError::MalformedVarInt`] for a Remaining Length of more than 4 bytes or not in its shortest form,
/// [`DecodeError::InvalidPacketType`] for packet type 0, and [`DecodeError::PacketTooLarge`].
pub fn frame_len(buf: &[u8], max_packet_size: u32) -> Result<Option<usize>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    if first >> 4 == 0 {
        return Err(DecodeError::InvalidPacketType(0));
    }
    let Some((remaining, used)) = decode_varint(rest)? else {
        return Ok(None);
    };
    // remaining < 2^28 and used <= 4, so the sum fits a u32.
    let total = remaining.saturating_add(1).saturating_add(used as u32);
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge { len: total });
    }
    let total = usize::try_from(total).map_err(|_| DecodeError::PacketTooLarge { len: total })?;
    Ok(if buf.len() >= total { Some(total) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming() {
        let pingreq = [0xc0, 0x00];
        assert_eq!(frame_len(&[], 10), Ok(None));
        assert_eq!(frame_len(&pingreq[..1], 10), Ok(None));
        assert_eq!(frame_len(&pingreq, 10), Ok(Some(2)));
        assert_eq!(frame_len(&[0x30, 0x80], 1000), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x80, 0x01], 1000), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x80, 0x01], 100), Err(DecodeError::PacketTooLarge { len: 131 }));
        assert_eq!(frame_len(&[0x30, 0xff, 0xff, 0xff, 0xff], u32::MAX), Err(DecodeError::MalformedVarInt));
        assert_eq!(frame_len(&[0x00, 0x00], 10), Err(DecodeError::InvalidPacketType(0)));
    }
}
