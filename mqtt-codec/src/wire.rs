//! Primitive wire types: a bounds-checked reader and writer over byte slices.
//!
//! Every access goes through `get`, so no input can index out of bounds; every length sum is checked. On bare-metal
//! targets bytes are copied and scanned one at a time: `copy_from_slice` and `contains` would link `memcpy` and
//! `memchr` (about 0.9 KB and 0.2 KB of flash on Cortex-M) for the few bytes a device moves. Hosted targets have
//! those in their C library already and keep the faster calls.

use crate::error::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer can hold.
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// Reads fields from one packet (or one property block).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) const fn len(&self) -> usize {
        self.buf.len()
    }

    /// Everything not read yet.
    pub(crate) const fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(tail)) => {
                self.buf = tail;
                Ok(head)
            }
            _ => Err(DecodeError::Truncated),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        match b {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(DecodeError::Truncated),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        match b {
            [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// A Variable Byte Integer of at most four bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match decode_varint(self.buf)? {
            Some((value, used)) => {
                self.take(used)?;
                Ok(value)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// Binary Data: a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String: well-formed and free of U+0000.
    pub(crate) fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        check_utf8(bytes)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
    }
}

/// Validates a UTF-8 Encoded String [MQTT-1.5.4-1] [MQTT-1.5.4-2].
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if has_nul(bytes) { Err(DecodeError::NulInString) } else { Ok(s) }
}

/// Whether `bytes` holds U+0000.
pub(crate) fn has_nul(bytes: &[u8]) -> bool {
    #[cfg(not(target_os = "none"))]
    return bytes.contains(&0);
    // Branch-free, so it neither links `memchr` nor stops early.
    #[cfg(target_os = "none")]
    bytes.iter().fold(false, |nul, &b| nul | (b == 0))
}

/// Copies `src` to the start of `dst` (as much as fits).
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    #[cfg(not(target_os = "none"))]
    {
        let n = src.len().min(dst.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    #[cfg(target_os = "none")]
    copy_bytewise(dst, src);
}

/// [`copy`] one byte at a time. The store is conditional, so LLVM does not turn the loop back into `memcpy`; out of
/// line, so it is one loop in the image however many fields are written.
#[cfg(any(test, target_os = "none"))]
#[inline(never)]
fn copy_bytewise(dst: &mut [u8], src: &[u8]) {
    let mut i = 0usize;
    while let Some(&b) = src.get(i) {
        if let Some(d) = dst.get_mut(i) {
            *d = b;
        }
        i = i.saturating_add(1);
    }
}

/// Decodes a Variable Byte Integer at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; a fifth continuation byte is an error.
pub(crate) fn decode_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        // i < 4, so the shift is at most 21 and the value stays below 2^28.
        let shift = 7u32.saturating_mul(i as u32);
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // [MQTT-1.5.5-1]: the shortest encoding only, so a final 0x00 after a continuation byte is malformed.
            if byte == 0 && i > 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(Some((value, i.saturating_add(1))));
        }
    }
    if buf.len() >= 4 { Err(DecodeError::MalformedVarInt) } else { Ok(None) }
}

/// How many bytes a Variable Byte Integer takes.
pub(crate) fn varint_len(value: u32) -> Result<usize, EncodeError> {
    match value {
        0..=127 => Ok(1),
        128..=16_383 => Ok(2),
        16_384..=2_097_151 => Ok(3),
        2_097_152..=MAX_VARINT => Ok(4),
        _ => Err(EncodeError::VarIntTooLarge),
    }
}

/// Checked sum of encoded lengths.
pub(crate) fn add(a: usize, b: usize) -> Result<usize, EncodeError> {
    a.checked_add(b).ok_or(EncodeError::PacketTooLong)
}

/// Converts a length to a Variable Byte Integer value.
pub(crate) fn to_varint(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).ok().filter(|v| *v <= MAX_VARINT).ok_or(EncodeError::PacketTooLong)
}

/// Writes fields into a caller's buffer.
///
/// Writing cannot fail: every encoder measures its packet first (rejecting fields too long for their prefix, values
/// too large for a Variable Byte Integer) and checks that the buffer holds it, and only then writes. A write past the
/// end is dropped but counted, so no field is ever half-written. Without `Result`s here, the encoders carry no
/// error paths and move no error values (on Cortex-M those moves were `memcpy` calls).
pub struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
    /// A field too long for its length prefix.
    too_long: bool,
    /// A value too large for a Variable Byte Integer.
    too_large: bool,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0, too_long: false, too_large: false }
    }

    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    /// Runs `body` over a writer that only counts: the length it would write, or the first field it could not.
    pub(crate) fn measure(body: impl FnOnce(&mut Writer<'_>)) -> Result<usize, EncodeError> {
        let mut w = Writer::new(&mut []);
        body(&mut w);
        if w.too_long {
            Err(EncodeError::FieldTooLong)
        } else if w.too_large {
            Err(EncodeError::VarIntTooLarge)
        } else {
            Ok(w.pos)
        }
    }

    pub(crate) fn put_slice(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            copy(dst, bytes);
        }
        self.pos = end;
    }

    pub(crate) fn put_u8(&mut self, v: u8) {
        if let Some(dst) = self.buf.get_mut(self.pos) {
            *dst = v;
        }
        self.pos = self.pos.saturating_add(1);
    }

    pub(crate) fn put_u16(&mut self, v: u16) {
        let [hi, lo] = v.to_be_bytes();
        self.put_u8(hi);
        self.put_u8(lo);
    }

    pub(crate) fn put_u32(&mut self, v: u32) {
        let [a, b, c, d] = v.to_be_bytes();
        self.put_u16(u16::from_be_bytes([a, b]));
        self.put_u16(u16::from_be_bytes([c, d]));
    }

    /// A Variable Byte Integer; a value over [`MAX_VARINT`] is recorded as an error (see [`Writer::measure`]).
    pub(crate) fn put_varint(&mut self, mut v: u32) {
        if v > MAX_VARINT {
            self.too_large = true;
        }
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.put_u8(byte);
                return;
            }
            self.put_u8(byte | 0x80);
        }
    }

    /// Binary Data or a UTF-8 string: a two-byte length, then the bytes; more than 65,535 is recorded as an error
    /// (see [`Writer::measure`]).
    pub(crate) fn put_binary(&mut self, bytes: &[u8]) {
        let len = u16::try_from(bytes.len()).unwrap_or_else(|_| {
            self.too_long = true;
            u16::MAX
        });
        self.put_u16(len);
        self.put_slice(bytes);
    }

    pub(crate) fn put_str(&mut self, s: &str) {
        self.put_binary(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        for (value, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_VARINT, &[0xff, 0xff, 0xff, 0x7f]),
        ] {
            let mut buf = [0u8; 4];
            let mut w = Writer::new(&mut buf);
            w.put_varint(value);
            let n = w.position();
            assert_eq!(&buf[..n], bytes);
            assert_eq!(varint_len(value).unwrap(), n);
            assert_eq!(decode_varint(bytes), Ok(Some((value, n))));
        }
        assert_eq!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]), Err(DecodeError::MalformedVarInt));
        assert_eq!(decode_varint(&[0x80, 0x80]), Ok(None));
        // Regression: non-minimal encodings (0 as 0x80 0x00, 5 as 0x85 0x00) were accepted.
        assert_eq!(decode_varint(&[0x80, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(decode_varint(&[0x85, 0x80, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(decode_varint(&[0xff, 0xff, 0xff, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(varint_len(MAX_VARINT + 1), Err(EncodeError::VarIntTooLarge));
    }

    #[test]
    fn writes_past_the_end_are_dropped_but_counted() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.put_u16(0x0102);
        w.put_str("ab");
        assert_eq!(w.position(), 6);
        assert_eq!(buf, [1, 2, 0]);
    }

    #[test]
    fn bytewise_copy_copies_what_fits() {
        let mut dst = [0u8; 3];
        copy_bytewise(&mut dst, b"ab");
        assert_eq!(dst, *b"ab\0");
        copy_bytewise(&mut dst, b"wxyz");
        assert_eq!(dst, *b"wxy");
        assert!(has_nul(b"a\0") && !has_nul(b"ab"));
    }

    #[test]
    fn utf8_rules() {
        assert_eq!(check_utf8(b"a/b"), Ok("a/b"));
        assert_eq!(check_utf8(b"a\0b"), Err(DecodeError::NulInString));
        assert_eq!(check_utf8(&[0xed, 0xa0, 0x80]), Err(DecodeError::InvalidUtf8));
    }
}
