//! The journal directory: file names, file headers, the lock, directory fsync.
//!
//! ```text
//! LOCK                                   held (flock) while a journal is open
//! seg-00000000000000000007.log           segment 7: a header frame, then records
//! checkpoint-00000000000000000007.ckpt   the state before segment 7: header, records, footer
//! *.tmp                                  unfinished checkpoints and repairs, removed at open
//! *.corrupt                              bytes recovery could not read, kept for a human
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::JournalError;
use super::frame::{self, Kind};

/// Format version written in every file header.
const VERSION: u32 = 1;

/// What a journal file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment,
    Checkpoint,
}

impl FileKind {
    fn tag(self) -> u8 {
        match self {
            FileKind::Segment => b'S',
            FileKind::Checkpoint => b'C',
        }
    }
}

/// Path of segment `id`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.log"))
}

/// Path of the checkpoint that is the recovery base for segments `id` and later.
pub(crate) fn checkpoint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("checkpoint-{id:020}.ckpt"))
}

/// The file name's kind and id, for the names this module makes.
pub(crate) fn parse_name(name: &str) -> Option<(FileKind, u64)> {
    let (kind, digits) = if let Some(rest) = name.strip_prefix("seg-") {
        (FileKind::Segment, rest.strip_suffix(".log")?)
    } else {
        (FileKind::Checkpoint, name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?)
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, digits.parse().ok()?))
}

/// Length of a file header's payload: `H`, version, kind, id and salt.
const HEADER_PAYLOAD_LEN: usize = 1 + 4 + 1 + 8 + 4;

/// The payload of the control frame that starts every file: version, kind, id and the journal's salt.
pub(crate) fn header_payload(kind: FileKind, id: u64, salt: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_PAYLOAD_LEN);
    p.push(b'H');
    p.extend_from_slice(&VERSION.to_le_bytes());
    p.push(kind.tag());
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&salt.to_le_bytes());
    p
}

/// The salt in a file header of a version we read.
pub(crate) fn header_salt(payload: &[u8]) -> Option<u32> {
    if payload.len() != HEADER_PAYLOAD_LEN || payload.get(..5) != header_payload(FileKind::Segment, 0, 0).get(..5) {
        return None;
    }
    let b: [u8; 4] = payload.get(14..18)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Whether `payload` is the header of file `kind` `id` in a version we read.
pub(crate) fn is_header(payload: &[u8], kind: FileKind, id: u64) -> bool {
    header_salt(payload).is_some_and(|salt| payload == header_payload(kind, id, salt).as_slice())
}

/// A new journal's salt: random, from the operating system's entropy behind std's `RandomState`.
pub(crate) fn new_salt() -> u32 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let h = std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()));
    (h ^ (h >> 32)) as u32
}

/// The salt written in the header of the file at `path`, if its header is intact.
pub(crate) fn read_salt(path: &Path) -> Option<u32> {
    use std::io::Read;
    let mut head = [0u8; 64];
    let mut file = File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match file.read(head.get_mut(n..)?) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let frame = frame::decode(head.get(..n)?, 0)?;
    (frame.kind == Kind::Control).then(|| header_salt(frame.payload)).flatten()
}

/// The payload of the control frame that ends a checkpoint holding `records` records.
pub(crate) fn footer_payload(records: u64) -> Vec<u8> {
    let mut p = vec![b'F'];
    p.extend_from_slice(&records.to_le_bytes());
    p
}

/// The record count of a checkpoint footer.
pub(crate) fn parse_footer(payload: &[u8]) -> Option<u64> {
    (payload.len() == 9 && payload.first() == Some(&b'F')).then(|| frame::read_u64(payload, 1)).flatten()
}

/// The bytes of the header frame of file `kind` `id`.
pub(crate) fn header_frame(kind: FileKind, id: u64, salt: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    // A header is 18 bytes, far below the frame limit.
    let _ = frame::encode(&mut buf, Kind::Control, 0, &header_payload(kind, id, salt));
    buf
}

/// Length of a file header frame (asked on every append: a constant, not a frame built to be measured).
pub(crate) const fn header_len() -> u64 {
    (frame::HEADER_LEN + HEADER_PAYLOAD_LEN) as u64
}

/// Creates segment `id` (which must not exist) with its header, fsynced, and fsyncs the directory.
pub(crate) fn create_segment(dir: &Path, id: u64, salt: u32) -> io::Result<File> {
    let mut file = OpenOptions::new().append(true).create_new(true).open(segment_path(dir, id))?;
    file.write_all(&header_frame(FileKind::Segment, id, salt))?;
    file.sync_data()?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the directory's lock, held as long as the returned file is open.
pub(crate) fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io("open lock file", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::Locked(dir.to_path_buf())),
        Err(e) => Err(JournalError::io("lock", &path, e.into())),
    }
}

/// Writes `bytes` to a new file `path`, fsynced (used for `*.corrupt` copies).
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// Size of the file at `path`, 0 when it cannot be read.
pub(crate) fn size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The journal files of a directory (kind and id, by id) and the paths of leftover `*.tmp` files.
pub(crate) type Listing = (Vec<(FileKind, u64)>, Vec<PathBuf>);

/// Every journal file in `dir` with its kind and id, and the paths of leftover `*.tmp` files.
pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut files = Vec::new();
    let mut tmp = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            tmp.push(entry.path());
        } else if let Some(found) = parse_name(name) {
            files.push(found);
        }
    }
    files.sort_by_key(|&(kind, id)| (id, kind == FileKind::Segment));
    Ok((files, tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let dir = Path::new("/d");
        let seg = segment_path(dir, 7);
        let ckpt = checkpoint_path(dir, 9);
        let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        assert_eq!(parse_name(&name(&seg)), Some((FileKind::Segment, 7)));
        assert_eq!(parse_name(&name(&ckpt)), Some((FileKind::Checkpoint, 9)));
        for stranger in ["seg-7.log", "seg-0000000000000000000x.log", "checkpoint-00000000000000000009.ckpt.corrupt"] {
            assert_eq!(parse_name(stranger), None, "{stranger}");
        }
        assert_eq!(parse_footer(&footer_payload(42)), Some(42));
        assert!(is_header(&header_payload(FileKind::Segment, 3, 9), FileKind::Segment, 3));
        assert!(!is_header(&header_payload(FileKind::Segment, 3, 9), FileKind::Checkpoint, 3));
        assert_eq!(header_salt(&header_payload(FileKind::Checkpoint, 3, 0xDEAD_BEEF)), Some(0xDEAD_BEEF));
    }

    #[test]
    fn header_len_is_the_length_of_a_header_frame() {
        for (kind, id, salt) in [(FileKind::Segment, 0, 0), (FileKind::Checkpoint, u64::MAX, u32::MAX)] {
            assert_eq!(header_frame(kind, id, salt).len() as u64, header_len());
        }
    }
}
