//! Record framing, shared by segments and checkpoints.
//!
//! A frame is `magic u32 | len u32 | crc u32 | payload[len]`, little endian, where `crc` is the CRC-32C of
//! `salt | magic | len | payload`. Two magics tell the caller's records from the journal's own control frames (file
//! headers and checkpoint footers), so a control frame can never be handed out as a record.
//!
//! The salt is a random number chosen when the journal is created and written in every file header; record
//! frames use it, control frames use 0 (so a header can be read before the salt is known). A payload can hold
//! bytes that look like a whole frame (a client can publish anything): without the journal's salt their CRC does
//! not match, so resynchronising after damage never mistakes them for a record.
//!
//! Decoding never trusts a byte: a frame is valid only when its magic is known, its length is at most
//! [`MAX_RECORD_LEN`] and fits in what is left of the file, and its CRC matches. After a bad frame, [`scan`] finds
//! the next valid one by trying every later offset whose bytes start with a magic (resynchronising).

use std::io::{self, Read};

/// Bytes before the payload: magic, length, CRC.
pub(crate) const HEADER_LEN: usize = 12;

/// The largest payload a frame may carry (256 MiB, MQTT's largest packet).
pub const MAX_RECORD_LEN: usize = 256 << 20;

const MAGIC_RECORD: u32 = u32::from_le_bytes(*b"EMJr");
const MAGIC_CONTROL: u32 = u32::from_le_bytes(*b"EMJc");

/// Who a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One of the caller's records.
    Record,
    /// The journal's own bookkeeping (file header, checkpoint footer).
    Control,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Record => MAGIC_RECORD,
            Kind::Control => MAGIC_CONTROL,
        }
    }

    fn from_magic(magic: u32) -> Option<Kind> {
        match magic {
            MAGIC_RECORD => Some(Kind::Record),
            MAGIC_CONTROL => Some(Kind::Control),
            _ => None,
        }
    }
}

fn crc(salt: u32, magic: u32, len: u32, payload: &[u8]) -> u32 {
    let salt = if magic == MAGIC_RECORD { salt } else { 0 };
    // One call for the 12 bytes before the payload: each call has a fixed cost that matters for short records.
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&salt.to_le_bytes());
    head[4..8].copy_from_slice(&magic.to_le_bytes());
    head[8..].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Truncates the buffer back to where the frame started if `encode` panics, so the pending batch never holds half
/// a frame.
struct Rollback<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.buf.truncate(self.start);
        }
    }
}

/// Appends one frame whose payload `encode` writes at the end of `buf`.
///
/// Returns the frame's length in bytes, or `Err(payload_len)` (with `buf` as it was) when the payload is longer
/// than [`MAX_RECORD_LEN`].
pub(crate) fn encode_with(
    buf: &mut Vec<u8>,
    kind: Kind,
    salt: u32,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<usize, usize> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    let mut guard = Rollback { buf, start, armed: true };
    encode(guard.buf);
    let payload_len = guard.buf.len() - start - HEADER_LEN;
    let len = match u32::try_from(payload_len) {
        Ok(len) if payload_len <= MAX_RECORD_LEN => len,
        _ => return Err(payload_len),
    };
    guard.armed = false;
    let magic = kind.magic();
    let (head, payload) = guard.buf.split_at_mut(start + HEADER_LEN);
    let crc = crc(salt, magic, len, payload);
    let header = &mut head[start..];
    header[0..4].copy_from_slice(&magic.to_le_bytes());
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER_LEN + payload_len)
}

/// Appends one frame carrying `payload`.
pub(crate) fn encode(buf: &mut Vec<u8>, kind: Kind, salt: u32, payload: &[u8]) -> Result<usize, usize> {
    encode_with(buf, kind, salt, |b| b.extend_from_slice(payload))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Reads a little-endian `u64` at `at`, if the bytes are there.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// A valid frame found at the start of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub kind: Kind,
    pub payload: &'a [u8],
    /// Header plus payload.
    pub len: usize,
}

/// The valid frame at the start of `bytes`, if there is one.
pub(crate) fn decode(bytes: &[u8], salt: u32) -> Option<Frame<'_>> {
    let magic = read_u32(bytes, 0)?;
    let kind = Kind::from_magic(magic)?;
    let len = read_u32(bytes, 4)?;
    let stored = read_u32(bytes, 8)?;
    let n = usize::try_from(len).ok().filter(|&n| n <= MAX_RECORD_LEN)?;
    let payload = bytes.get(HEADER_LEN..HEADER_LEN.checked_add(n)?)?;
    (crc(salt, magic, len, payload) == stored).then_some(Frame { kind, payload, len: HEADER_LEN + n })
}

/// What [`scan`] found in a slice, in order; offsets are relative to the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A valid frame at `start..end`.
    Frame { kind: Kind, start: usize, end: usize },
    /// Bytes at `start..end` that belong to no valid frame.
    Damaged { start: usize, end: usize },
}

/// Splits `bytes` into valid frames and the damaged regions between them, resynchronising after each damaged
/// region on the next offset where a valid frame starts.
pub(crate) fn scan(bytes: &[u8], salt: u32) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        if let Some(frame) = decode(rest, salt) {
            pieces.push(Piece::Frame { kind: frame.kind, start: at, end: at + frame.len });
            at += frame.len;
            continue;
        }
        let next = next_frame(bytes, at + 1, salt).unwrap_or(bytes.len());
        pieces.push(Piece::Damaged { start: at, end: next });
        at = next;
    }
    pieces
}

/// The first offset at or after `from` where a valid frame starts.
fn next_frame(bytes: &[u8], from: usize, salt: u32) -> Option<usize> {
    let mut at = from;
    while let Some(rest) = bytes.get(at..) {
        // Both magics share their first three bytes; only offsets starting with them can hold a frame.
        let hit = rest.windows(3).position(|w| w == b"EMJ")?;
        let candidate = at + hit;
        if decode(bytes.get(candidate..).unwrap_or_default(), salt).is_some() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

/// Why [`FrameReader::next_frame`] stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The bytes at this offset are not a valid frame (damaged or torn).
    Bad { offset: u64 },
    /// The file could not be read.
    Io(io::Error),
}

/// Reads frames one at a time from a file, holding one payload in memory.
pub(crate) struct FrameReader<R> {
    reader: R,
    salt: u32,
    offset: u64,
    /// Bytes left in the file after `offset`, so a damaged length never makes us allocate more than the file holds.
    remaining: u64,
}

impl<R: Read> FrameReader<R> {
    /// A reader over `len` bytes of `reader`, of a journal with this salt.
    pub(crate) fn new(reader: R, len: u64, salt: u32) -> Self {
        Self { reader, salt, offset: 0, remaining: len }
    }

    /// Offset of the next frame.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame's kind and payload; `Ok(None)` at the end of the file.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Kind, Vec<u8>)>, ReadError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let bad = Err(ReadError::Bad { offset: self.offset });
        if self.remaining < HEADER_LEN as u64 {
            return bad;
        }
        let mut header = [0u8; HEADER_LEN];
        self.reader.read_exact(&mut header).map_err(ReadError::Io)?;
        let (Some(magic), Some(len), Some(stored)) = (read_u32(&header, 0), read_u32(&header, 4), read_u32(&header, 8))
        else {
            return bad;
        };
        let Some(kind) = Kind::from_magic(magic) else { return bad };
        if len as usize > MAX_RECORD_LEN || u64::from(len) > self.remaining - HEADER_LEN as u64 {
            return bad;
        }
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload).map_err(ReadError::Io)?;
        if crc(self.salt, magic, len, &payload) != stored {
            return bad;
        }
        let total = HEADER_LEN as u64 + u64::from(len);
        self.offset += total;
        self.remaining -= total;
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC is that of salt, magic, length and payload in a row: frames written by earlier versions (which fed
    /// them to the CRC one by one) still read.
    #[test]
    fn the_crc_covers_salt_magic_length_and_payload_in_a_row() {
        for (salt, magic, payload) in [(0u32, MAGIC_CONTROL, &b""[..]), (0xDEAD_BEEF, MAGIC_RECORD, &b"a record"[..])] {
            let len = payload.len() as u32;
            // A control frame's CRC is salted with 0.
            let mut whole = if magic == MAGIC_RECORD { salt } else { 0 }.to_le_bytes().to_vec();
            whole.extend_from_slice(&magic.to_le_bytes());
            whole.extend_from_slice(&len.to_le_bytes());
            whole.extend_from_slice(payload);
            assert_eq!(crc(salt, magic, len, payload), crc32c::crc32c(&whole));
        }
        // A frame as an earlier version wrote it: magic, length 3, CRC, payload "abc", salt 7.
        let mut old = Vec::new();
        let c = crc32c::crc32c_append(crc32c::crc32c(&7u32.to_le_bytes()), &MAGIC_RECORD.to_le_bytes());
        let c = crc32c::crc32c_append(crc32c::crc32c_append(c, &3u32.to_le_bytes()), b"abc");
        old.extend_from_slice(&MAGIC_RECORD.to_le_bytes());
        old.extend_from_slice(&3u32.to_le_bytes());
        old.extend_from_slice(&c.to_le_bytes());
        old.extend_from_slice(b"abc");
        assert_eq!(decode(&old, 7).map(|f| f.payload), Some(&b"abc"[..]));
    }

    #[test]
    fn round_trip_and_every_single_byte_flip_is_detected() {
        let mut buf = Vec::new();
        let n = encode(&mut buf, Kind::Record, 7, b"hello journal").unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(decode(&buf, 8), None, "a record frame is only valid with its journal's salt");
        let frame = decode(&buf, 7).unwrap();
        assert_eq!((frame.kind, frame.payload, frame.len), (Kind::Record, &b"hello journal"[..], n));
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(decode(&bad, 7), None, "flip of bit {bit} in byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn control_frames_do_not_depend_on_the_salt() {
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Control, 7, b"header").unwrap();
        assert_eq!(decode(&buf, 0).map(|f| f.payload), Some(&b"header"[..]));
    }

    #[test]
    fn a_panicking_encoder_leaves_the_buffer_as_it_was() {
        let mut buf = b"before".to_vec();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = encode_with(&mut buf, Kind::Record, 7, |b| {
                b.extend_from_slice(b"half");
                panic!("encoder failed");
            });
        }));
        assert!(r.is_err());
        assert_eq!(buf, b"before");
    }

    #[test]
    fn scan_resynchronises_after_garbage() {
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Record, 7, b"one").unwrap();
        let garbage_at = buf.len();
        buf.extend_from_slice(b"EMJrxxxxEMJ\xff\xff\xff\xff garbage");
        // A whole record frame of another salt (a payload that mimics a frame) is garbage too.
        encode(&mut buf, Kind::Record, 8, b"forged").unwrap();
        let second = buf.len();
        encode(&mut buf, Kind::Control, 7, b"two").unwrap();
        let pieces = scan(&buf, 7);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert_eq!(pieces[1], Piece::Damaged { start: garbage_at, end: second });
        assert!(matches!(pieces[2], Piece::Frame { kind: Kind::Control, start, .. } if start == second));
    }
}
