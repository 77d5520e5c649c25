//! Recovery at open: choose the recovery base, check every file it needs, repair damage, and hand out the
//! records in order.
//!
//! Rules, in order:
//! 1. Leftover `*.tmp` files (a checkpoint or repair cut short) are deleted.
//! 2. The base is the newest checkpoint that is intact (every frame valid, header first, footer last with the
//!    right record count). A damaged newer checkpoint is moved aside whole (`*.ckpt.corrupt`) when an intact
//!    older base exists with every segment since it (an older checkpoint, or segment 1 for a journal never
//!    checkpointed); otherwise the damaged checkpoint itself is repaired and used, keeping every valid frame.
//! 3. Segments below an intact base are deleted (a checkpoint's cleanup cut short); segments from the base on are
//!    replayed in id order, and a missing one is logged as lost.
//! 4. In a damaged file, every region that is not a valid frame is copied to `<file>.<offset>.corrupt` and logged
//!    (`error`, or `warn` for the torn tail of the newest segment, the normal trace of a crash mid-write), then
//!    cut off (a tail) or the file is rewritten without it (tmp, fsync, rename), so the damage is reported once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::JournalError;
use super::files::{self, FileKind};
use super::frame::{self, FrameReader, Kind, Piece, ReadError};

/// A region recovery could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRegion {
    /// The damaged file.
    pub file: PathBuf,
    /// Where the region starts.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Whether it is the torn tail of the newest segment (a crash mid-write) rather than damage.
    pub torn_tail: bool,
    /// Where its bytes were copied, if the copy succeeded.
    pub moved_to: Option<PathBuf>,
}

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Id of the checkpoint used as the base (segments from this id on follow it), if any.
    pub checkpoint: Option<u64>,
    /// Segments replayed after the base.
    pub segments: usize,
    /// Records recovered (checkpoint and segments).
    pub records: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Regions that could not be read; their records are lost.
    pub corrupt: Vec<CorruptRegion>,
    /// Bytes copied or moved into `*.corrupt` files.
    pub bytes_moved_aside: u64,
    /// Segments missing between the base and the newest segment (the first 1,000); their records are lost.
    pub missing_segments: Vec<u64>,
    /// Files that could not be read back while iterating (counted as the iterator runs).
    pub read_errors: u64,
    /// How long recovery took before the first record was handed out.
    pub duration: Duration,
}

impl RecoveryReport {
    /// Whether anything was lost or damaged (a torn tail of the newest segment does not count: it holds only
    /// records that were never durable in `Always` mode).
    pub fn damaged(&self) -> bool {
        self.corrupt.iter().any(|c| !c.torn_tail) || !self.missing_segments.is_empty() || self.read_errors > 0
    }
}

/// The recovered records, in order: the checkpoint's, then each later segment's. Each is a `Vec<u8>` read as the
/// iterator goes, so memory holds one record at a time. The files stay open, so a checkpoint that deletes them
/// meanwhile does not disturb the iteration.
pub struct Recovered {
    salt: u32,
    files: VecDeque<(PathBuf, File, u64)>,
    current: Option<(PathBuf, FrameReader<BufReader<File>>)>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovered").field("report", &self.report).finish_non_exhaustive()
    }
}

impl Recovered {
    /// What recovery found.
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }
}

impl Iterator for Recovered {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.current.is_none() {
                let (path, file, len) = self.files.pop_front()?;
                let reader = FrameReader::new(BufReader::with_capacity(1 << 16, file), len, self.salt);
                self.current = Some((path, reader));
            }
            let (path, reader) = self.current.as_mut()?;
            match reader.next_frame() {
                Ok(Some((Kind::Record, payload))) => return Some(payload),
                Ok(Some((Kind::Control, _))) => {}
                Ok(None) => self.current = None,
                Err(error) => {
                    let offset = reader.offset();
                    let error = match error {
                        ReadError::Bad { .. } => "a frame changed since it was checked".to_string(),
                        ReadError::Io(e) => e.to_string(),
                    };
                    tracing::error!(file = %path.display(), offset, error,
                        "journal: cannot read a checked file back: the rest of it is lost");
                    self.report.read_errors += 1;
                    self.current = None;
                }
            }
        }
    }
}

/// What `recover` hands to `Journal::open`.
pub(super) struct Opened {
    pub recovered: Recovered,
    pub salt: u32,
    pub next_segment: u64,
    pub segment_bytes: BTreeMap<u64, u64>,
    pub checkpoint_bytes: u64,
}

/// One pass over a file: its valid frames up to the first bad one.
#[derive(Debug, Default)]
struct Check {
    records: u64,
    bytes: u64,
    /// Payload of the first frame, when it is a control frame.
    first_control: Option<Vec<u8>>,
    /// Payload of the last frame, when it is a control frame.
    last_control: Option<Vec<u8>>,
    /// Offset of the first byte that is not a valid frame.
    bad_at: Option<u64>,
}

impl Check {
    fn valid_checkpoint(&self, id: u64) -> bool {
        self.bad_at.is_none()
            && self.first_control.as_deref().is_some_and(|h| files::is_header(h, FileKind::Checkpoint, id))
            && self.last_control.as_deref().and_then(files::parse_footer) == Some(self.records)
    }
}

fn check(path: &Path, salt: u32) -> io::Result<Check> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = FrameReader::new(BufReader::with_capacity(1 << 16, file), len, salt);
    let mut c = Check::default();
    let mut first = true;
    loop {
        match reader.next_frame() {
            Ok(None) => return Ok(c),
            Ok(Some((kind, payload))) => {
                if kind == Kind::Record {
                    c.records += 1;
                    c.bytes += len_u64(payload.len());
                }
                let control = (kind == Kind::Control).then_some(payload);
                if first {
                    c.first_control.clone_from(&control);
                    first = false;
                }
                c.last_control = control;
            }
            Err(ReadError::Bad { offset }) => {
                c.bad_at = Some(offset);
                return Ok(c);
            }
            Err(ReadError::Io(e)) => return Err(e),
        }
    }
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Recovers the journal in `dir` (locked by the caller).
pub(super) fn recover(dir: &Path) -> Result<Opened, JournalError> {
    let started = Instant::now();
    let (listed, leftovers) = files::list(dir).map_err(io_err("read directory", dir))?;
    for tmp in leftovers {
        tracing::info!(file = %tmp.display(), "journal: removing an unfinished temporary file");
        if let Err(error) = fs::remove_file(&tmp) {
            tracing::warn!(file = %tmp.display(), %error, "journal: cannot remove a temporary file");
        }
    }
    let segments: BTreeSet<u64> = listed.iter().filter(|f| f.0 == FileKind::Segment).map(|f| f.1).collect();
    let mut checkpoints: Vec<u64> = listed.iter().filter(|f| f.0 == FileKind::Checkpoint).map(|f| f.1).collect();
    checkpoints.sort_unstable_by(|a, b| b.cmp(a));
    let next_segment =
        segments.last().map_or(1, |s| s.saturating_add(1)).max(checkpoints.first().copied().unwrap_or(0));
    let mut report = RecoveryReport::default();
    let salt = find_salt(dir, &listed);

    // The newest intact checkpoint, and the damaged ones above it.
    let mut damaged = Vec::new();
    let mut intact = None;
    for &id in &checkpoints {
        let path = files::checkpoint_path(dir, id);
        match check(&path, salt) {
            Ok(c) if c.valid_checkpoint(id) => {
                intact = Some((id, c));
                break;
            }
            Ok(_) => damaged.push(id),
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "journal: cannot read a checkpoint");
                damaged.push(id);
            }
        }
    }
    // Segments needed after a base are all there (a journal never checkpointed starts at segment 1).
    let max_segment = segments.last().copied().unwrap_or(0);
    let complete_from = |base: u64| missing(&segments, base).1 == 0;
    let fallback_ok = match &intact {
        Some((id, _)) => complete_from(*id),
        None => segments.contains(&1) && complete_from(1),
    };
    let mut base = intact.as_ref().map(|(id, c)| (*id, c.records, c.bytes));
    let mut repaired_base = false;
    if let Some(&newest) = damaged.first() {
        if fallback_ok {
            for &id in &damaged {
                let why = "journal: damaged checkpoint set aside; recovering from the previous base and its segments";
                move_aside(&files::checkpoint_path(dir, id), why, &mut report);
            }
        } else {
            let path = files::checkpoint_path(dir, newest);
            let (records, bytes) =
                repair_checkpoint(&path, newest, salt, &mut report).map_err(io_err("repair", &path))?;
            base = Some((newest, records, bytes));
            repaired_base = true;
        }
    }

    let base_id = base.map_or(0, |b| b.0);
    if let Some((id, records, bytes)) = base {
        report.checkpoint = Some(id);
        report.records += records;
        report.bytes += bytes;
    }
    if !repaired_base {
        for &id in segments.range(..base_id) {
            let path = files::segment_path(dir, id);
            tracing::info!(file = %path.display(), "journal: removing a segment the checkpoint covers");
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), %error, "journal: cannot remove a covered segment");
            }
        }
    }
    let (lost, lost_count) = missing(&segments, base_id.max(1));
    if lost_count > 0 {
        tracing::error!(count = lost_count, first = ?lost.first(), dir = %dir.display(),
            "journal: segments are missing: their records are lost");
    }
    report.missing_segments = lost;

    let mut open_files = VecDeque::new();
    let mut segment_bytes = BTreeMap::new();
    let mut checkpoint_bytes = 0;
    if base.is_some() {
        let path = files::checkpoint_path(dir, base_id);
        let (file, len) = open_with_len(&path).map_err(io_err("open", &path))?;
        checkpoint_bytes = len;
        open_files.push_back((path, file, len));
    }
    for &id in segments.range(base_id..) {
        let path = files::segment_path(dir, id);
        let c = match check(&path, salt) {
            Ok(c) => c,
            Err(error) => {
                // Unreadable (EIO on a bad sector, say): keep the bytes for a human, go on without them.
                tracing::error!(file = %path.display(), %error, "journal: cannot read a segment");
                move_aside(&path, "journal: unreadable segment set aside: its records are lost", &mut report);
                continue;
            }
        };
        let (records, bytes) = match c.bad_at {
            None => (c.records, c.bytes),
            Some(bad_at) => {
                let newest = id == max_segment;
                repair_segment(&path, bad_at, &c, newest, salt, &mut report).map_err(io_err("repair", &path))?
            }
        };
        report.records += records;
        report.bytes += bytes;
        report.segments += 1;
        let (file, len) = open_with_len(&path).map_err(io_err("open", &path))?;
        segment_bytes.insert(id, len);
        open_files.push_back((path, file, len));
    }
    files::sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    report.duration = started.elapsed();
    let r = &report;
    if r.damaged() {
        tracing::error!(records = r.records, corrupt_regions = r.corrupt.len(), bytes_moved_aside = r.bytes_moved_aside,
            missing_segments = r.missing_segments.len(), dir = %dir.display(),
            "journal recovered with damage: the records in the regions above are lost");
    } else {
        tracing::info!(records = r.records, bytes = r.bytes, checkpoint = ?r.checkpoint, segments = r.segments,
            duration_ms = r.duration.as_millis(), "journal recovered");
    }
    Ok(Opened {
        recovered: Recovered { salt, files: open_files, current: None, report },
        salt,
        next_segment,
        segment_bytes,
        checkpoint_bytes,
    })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |e| JournalError::io(op, path, e)
}

/// The ids missing from `segments` between `from` and the highest one: the first 1,000, and how many in all.
fn missing(segments: &BTreeSet<u64>, from: u64) -> (Vec<u64>, u64) {
    let (mut listed, mut count, mut expect) = (Vec::new(), 0u64, from);
    for &s in segments.range(from..) {
        count += s - expect;
        while expect < s && listed.len() < 1000 {
            listed.push(expect);
            expect += 1;
        }
        expect = s.saturating_add(1);
    }
    (listed, count)
}

/// The journal's salt, from the newest file whose header is intact; a new one for a new journal.
fn find_salt(dir: &Path, listed: &[(FileKind, u64)]) -> u32 {
    let path = |&(kind, id): &(FileKind, u64)| match kind {
        FileKind::Segment => files::segment_path(dir, id),
        FileKind::Checkpoint => files::checkpoint_path(dir, id),
    };
    if let Some(salt) = listed.iter().rev().find_map(|f| files::read_salt(&path(f))) {
        return salt;
    }
    if !listed.is_empty() {
        tracing::error!(dir = %dir.display(), files = listed.len(),
            "journal: no file has an intact header: their records cannot be verified and will be set aside");
    }
    files::new_salt()
}

fn open_with_len(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Renames a whole damaged file to `<file>.corrupt`, logging `why`.
fn move_aside(path: &Path, why: &str, report: &mut RecoveryReport) {
    let len = files::size(path);
    let to = corrupt_path(path, None);
    let moved = fs::rename(path, &to);
    tracing::error!(file = %path.display(), len, moved_to = %to.display(), error = ?moved.as_ref().err(), "{why}");
    report.bytes_moved_aside += len;
    report.corrupt.push(CorruptRegion {
        file: path.to_path_buf(),
        offset: 0,
        len,
        torn_tail: false,
        moved_to: moved.is_ok().then_some(to),
    });
}

fn corrupt_path(path: &Path, offset: Option<u64>) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match offset {
        Some(offset) => path.with_file_name(format!("{name}.{offset}.corrupt")),
        None => path.with_file_name(format!("{name}.corrupt")),
    }
}

/// Copies every damaged region of `data` (pieces found from `base` on) aside and reports it.
fn copy_aside(path: &Path, data: &[u8], base: usize, pieces: &[Piece], torn: bool, report: &mut RecoveryReport) {
    for piece in pieces {
        let &Piece::Damaged { start, end } = piece else { continue };
        let (start, end) = (base + start, base + end);
        let offset = len_u64(start);
        let len = len_u64(end - start);
        let to = corrupt_path(path, Some(offset));
        let copied = files::write_new(&to, data.get(start..end).unwrap_or_default());
        if torn {
            tracing::warn!(file = %path.display(), offset, len, copied_to = %to.display(),
                "journal: cutting off the torn tail of the newest segment (a write cut short by a crash)");
        } else {
            tracing::error!(file = %path.display(), offset, len, copied_to = %to.display(), copy_error = ?copied.as_ref().err(),
                "journal: DAMAGED REGION skipped: the records in it are lost");
        }
        report.bytes_moved_aside += len;
        report.corrupt.push(CorruptRegion {
            file: path.to_path_buf(),
            offset,
            len,
            torn_tail: torn,
            moved_to: copied.is_ok().then_some(to),
        });
    }
}

/// Writes `parts` to a temporary file and renames it over `path`.
fn replace(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.repair.tmp"));
    let mut out = io::BufWriter::new(File::create(&tmp)?);
    for part in parts {
        out.write_all(part)?;
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_data()?;
    fs::rename(&tmp, path)
}

/// Repairs a segment whose first bad byte is at `bad_at`; returns its records and bytes.
fn repair_segment(
    path: &Path,
    bad_at: u64,
    c: &Check,
    newest: bool,
    salt: u32,
    report: &mut RecoveryReport,
) -> io::Result<(u64, u64)> {
    let data = fs::read(path)?;
    let bad_at = usize::try_from(bad_at).unwrap_or(usize::MAX).min(data.len());
    let (prefix, tail) = data.split_at(bad_at);
    let pieces = frame::scan(tail, salt);
    let only_tail = matches!(pieces.as_slice(), [Piece::Damaged { end, .. }] if *end == tail.len());
    copy_aside(path, &data, bad_at, &pieces, newest && only_tail, report);
    let (mut records, mut bytes) = (c.records, c.bytes);
    let mut parts = vec![prefix];
    for piece in &pieces {
        if let &Piece::Frame { kind, start, end } = piece {
            let frame = tail.get(start..end).unwrap_or_default();
            parts.push(frame);
            if kind == Kind::Record {
                records += 1;
                bytes += len_u64(frame.len() - frame::HEADER_LEN);
            }
        }
    }
    if only_tail {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len_u64(bad_at))?;
        file.sync_data()?;
    } else {
        replace(path, &parts)?;
    }
    Ok((records, bytes))
}

/// Rebuilds a damaged checkpoint from its valid record frames (no intact base to fall back to); returns its
/// records and bytes.
fn repair_checkpoint(path: &Path, id: u64, salt: u32, report: &mut RecoveryReport) -> io::Result<(u64, u64)> {
    let data = fs::read(path)?;
    let pieces = frame::scan(&data, salt);
    copy_aside(path, &data, 0, &pieces, false, report);
    let mut body = Vec::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    for piece in &pieces {
        if let &Piece::Frame { kind: Kind::Record, start, end } = piece {
            let frame = data.get(start..end).unwrap_or_default();
            body.extend_from_slice(frame);
            records += 1;
            bytes += len_u64(frame.len() - frame::HEADER_LEN);
        }
    }
    tracing::error!(file = %path.display(), records, "journal: DAMAGED CHECKPOINT and no intact older base: \
        keeping the records that can still be read, the state in the damaged regions is lost");
    let header = files::header_frame(FileKind::Checkpoint, id, salt);
    let mut footer = Vec::new();
    let _ = frame::encode(&mut footer, Kind::Control, salt, &files::footer_payload(records));
    replace(path, &[&header, &body, &footer])?;
    Ok((records, bytes))
}
