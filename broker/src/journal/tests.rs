//! Journal tests: each uses its own temporary directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::failpoints::{self, FailPoint};
use super::files::{self, FileKind};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

fn opts() -> JournalOptions {
    JournalOptions { fsync: FsyncMode::Always, max_bytes: 64 << 20, segment_bytes: 1 << 20 }
}

fn record(i: usize) -> Vec<u8> {
    format!("record {i:06} {}", "x".repeat(i % 23)).into_bytes()
}

/// Opens `dir`, reading every recovered record.
fn open(dir: &Path, opts: JournalOptions) -> (Journal, Vec<Vec<u8>>, RecoveryReport) {
    let (journal, mut recovered) = Journal::open(dir, opts).unwrap();
    let records: Vec<Vec<u8>> = recovered.by_ref().collect();
    let report = recovered.report().clone();
    assert_eq!(report.records, records.len() as u64, "report counts what the iterator yields");
    (journal, records, report)
}

/// Opens, reads and closes `dir`.
fn reopen(dir: &Path) -> (Vec<Vec<u8>>, RecoveryReport) {
    let (journal, records, report) = open(dir, opts());
    journal.close().unwrap();
    (records, report)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn wait_durable(journal: &Journal, lsn: Lsn) -> Result<(), JournalError> {
    block_on(async { tokio::time::timeout(WAIT, journal.wait_durable(lsn)).await.expect("wait_durable timed out") })
}

fn segments(dir: &Path) -> Vec<u64> {
    files::list(dir).unwrap().0.into_iter().filter(|f| f.0 == FileKind::Segment).map(|f| f.1).collect()
}

fn checkpoints(dir: &Path) -> Vec<u64> {
    files::list(dir).unwrap().0.into_iter().filter(|f| f.0 == FileKind::Checkpoint).map(|f| f.1).collect()
}

/// A fresh directory holding only `files` (name, bytes).
fn dir_with(files: &[(String, Vec<u8>)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    tmp
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Waits (with a deadline) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn round_trip_in_every_mode_and_after_close() {
    for fsync in [FsyncMode::Always, FsyncMode::Interval(Duration::from_millis(5)), FsyncMode::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, records, _) = open(tmp.path(), JournalOptions { fsync, ..opts() });
        assert!(records.is_empty());
        let mut last = Lsn::ZERO;
        for i in 0..500 {
            let lsn = journal.append(&record(i)).unwrap();
            assert!(lsn > last, "LSNs increase");
            last = lsn;
        }
        let lsn = journal.append_with(|b| b.extend_from_slice(b"encoded in place")).unwrap();
        wait_durable(&journal, lsn).unwrap();
        assert!(journal.durable() >= lsn);
        journal.close().unwrap();
        assert!(matches!(journal.append(b"late"), Err(AppendError::Closed)));
        let (got, report) = reopen(tmp.path());
        let mut want: Vec<Vec<u8>> = (0..500).map(record).collect();
        want.push(b"encoded in place".to_vec());
        assert_eq!(got, want, "{fsync:?}");
        assert!(!report.damaged());
        // A second reopen (after the first one added an empty segment) gives the same.
        assert_eq!(reopen(tmp.path()).0, want);
    }
}

#[test]
fn dropping_the_last_handle_closes_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), JournalOptions { fsync: FsyncMode::Never, ..opts() });
    for i in 0..100 {
        journal.append(&record(i)).unwrap();
    }
    drop(journal);
    assert_eq!(reopen(tmp.path()).0, (0..100).map(record).collect::<Vec<_>>());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    assert!(matches!(Journal::open(tmp.path(), opts()), Err(JournalError::Locked(_))));
    journal.close().unwrap();
    drop(journal);
    let _ = reopen(tmp.path());
}

#[test]
fn many_concurrent_appenders_all_become_durable_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    let (tasks, rounds) = (64usize, 30usize);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let lsns = rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let journal = journal.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for r in 0..rounds {
                    let lsn = journal.append(format!("task {t} round {r}").as_bytes()).unwrap();
                    tokio::time::timeout(WAIT, journal.wait_durable(lsn)).await.unwrap().unwrap();
                    mine.push(lsn);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    assert_eq!(lsns.len(), tasks * rounds);
    let stats = journal.stats();
    assert_eq!(stats.appended_records, (tasks * rounds) as u64);
    assert_eq!(stats.fsynced_records, stats.appended_records, "every record was fsynced");
    assert!(stats.fsyncs < stats.appended_records, "64 appenders never shared an fsync: {stats:?}");
    journal.close().unwrap();
    let (got, _) = reopen(tmp.path());
    assert_eq!(got.len(), tasks * rounds);
    // Each task's records come back in its own order.
    for t in 0..tasks {
        let mine: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .filter(|r| r.starts_with(&format!("task {t} ")))
            .collect();
        let want: Vec<String> = (0..rounds).map(|r| format!("task {t} round {r}")).collect();
        assert_eq!(mine, want);
    }
}

#[test]
fn group_commit_covers_everything_appended_during_an_fsync_with_one_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    failpoints::pause(tmp.path(), FailPoint::Fsync);
    let first = journal.append(b"first").unwrap();
    eventually("the writer waits in its first fsync", || failpoints::waiting(tmp.path(), FailPoint::Fsync) == 1);
    let mut last = first;
    for i in 0..99 {
        last = journal.append(&record(i)).unwrap();
    }
    assert_eq!(journal.durable(), Lsn::ZERO, "nothing is durable before its fsync");
    failpoints::resume(tmp.path(), FailPoint::Fsync);
    wait_durable(&journal, last).unwrap();
    let stats = journal.stats();
    assert_eq!((stats.fsyncs, stats.fsynced_records, stats.writes), (2, 100, 2), "{stats:?}");
    assert!((stats.records_per_fsync() - 50.0).abs() < f64::EPSILON);
    journal.close().unwrap();
}

/// Byte ranges of the record frames of a segment file (after its header frame).
fn frame_ranges(bytes: &[u8], salt: u32) -> Vec<(usize, usize)> {
    frame::scan(bytes, salt)
        .into_iter()
        .filter_map(|p| match p {
            frame::Piece::Frame { kind: frame::Kind::Record, start, end } => Some((start, end)),
            _ => None,
        })
        .collect()
}

/// A closed journal holding `n` records in segment 1, that segment's name and bytes, and the journal's salt.
fn small_log(n: usize) -> (tempfile::TempDir, String, Vec<u8>, u32) {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    for i in 0..n {
        journal.append(&record(i)).unwrap();
    }
    journal.close().unwrap();
    let path = files::segment_path(tmp.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    let salt = files::read_salt(&path).unwrap();
    (tmp, name(&path), bytes, salt)
}

#[test]
fn a_torn_tail_cut_at_every_byte_keeps_every_record_before_the_cut() {
    let (_tmp, seg, bytes, salt) = small_log(12);
    let frames = frame_ranges(&bytes, salt);
    assert_eq!(frames.len(), 12);
    let from = frames[frames.len() - 4].0;
    for cut in from..=bytes.len() {
        let dir = dir_with(&[(seg.clone(), bytes[..cut].to_vec())]);
        let (got, report) = reopen(dir.path());
        let whole = frames.iter().filter(|&&(_, end)| end <= cut).count();
        assert_eq!(got, (0..whole).map(record).collect::<Vec<_>>(), "cut at {cut}");
        let at_boundary = frames.iter().any(|&(_, end)| end == cut);
        if at_boundary {
            assert!(report.corrupt.is_empty(), "cut at {cut}: {report:?}");
        } else {
            let [region] = report.corrupt.as_slice() else { panic!("cut at {cut}: {report:?}") };
            assert!(region.torn_tail && region.offset == frames[whole].0 as u64, "cut at {cut}: {region:?}");
            assert_eq!(region.len, (cut - frames[whole].0) as u64);
            assert_eq!(std::fs::read(region.moved_to.as_ref().unwrap()).unwrap(), bytes[frames[whole].0..cut]);
        }
        // The tail was cut off: the next recovery finds nothing wrong, and appends continue after the cut.
        let (journal, again, report) = open(dir.path(), opts());
        assert!(report.corrupt.is_empty() && again == got, "cut at {cut}");
        journal.append(b"after").unwrap();
        journal.close().unwrap();
        assert_eq!(reopen(dir.path()).0.last().map(Vec::as_slice), Some(&b"after"[..]));
    }
}

#[test]
fn flipping_any_byte_loses_at_most_the_record_it_hit() {
    let (tmp, seg, bytes, salt) = small_log(8);
    let frames = frame_ranges(&bytes, salt);
    // A second, newer segment, so damage to the first is mid-log damage, not a torn tail.
    let (journal, _, _) = open(tmp.path(), opts());
    journal.append(&record(0)).unwrap();
    journal.close().unwrap();
    let later_path = files::segment_path(tmp.path(), 2);
    let (later_name, later) = (name(&later_path), std::fs::read(&later_path).unwrap());
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0xA5;
        let dir = dir_with(&[(seg.clone(), damaged), (later_name.clone(), later.clone())]);
        let (got, report) = reopen(dir.path());
        let hit = frames.iter().position(|&(s, e)| (s..e).contains(&i));
        let want: Vec<Vec<u8>> = (0..frames.len()).filter(|&k| Some(k) != hit).map(record).chain([record(0)]).collect();
        assert_eq!(got, want, "flip at byte {i}");
        assert!(report.damaged(), "flip at byte {i} went unreported");
        assert!(report.corrupt.iter().all(|c| !c.torn_tail && c.moved_to.is_some()));
        assert!(!reopen(dir.path()).1.damaged(), "flip at byte {i}: the damage is reported once");
    }
}

/// Copies the journal files of `from` into `to`, without overwriting.
fn copy_missing(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if files::parse_name(&name(&path)).is_some() && !target.exists() {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

fn flip_middle(path: &PathBuf) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

fn checkpoint_with(journal: &Journal, records: &[&[u8]]) {
    let mut ckpt = journal.begin_checkpoint().unwrap();
    for r in records {
        ckpt.append(r).unwrap();
    }
    ckpt.finish().unwrap();
}

#[test]
fn a_damaged_checkpoint_falls_back_to_the_previous_base() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    journal.append(b"a").unwrap();
    checkpoint_with(&journal, &[b"state-1a", b"state-1b"]);
    journal.append(b"b").unwrap();
    journal.close().unwrap();
    drop(journal);
    let (journal, _, _) = open(tmp.path(), opts());
    // The files of the first base (its checkpoint and every segment since), as they are now.
    let snapshot = tempfile::tempdir().unwrap();
    copy_missing(tmp.path(), snapshot.path());
    checkpoint_with(&journal, &[b"state-2a", b"state-2b", b"state-2c"]);
    journal.append(b"c").unwrap();
    journal.close().unwrap();
    drop(journal);
    let newest = *checkpoints(tmp.path()).last().unwrap();
    assert_eq!(checkpoints(tmp.path()).len(), 1, "finish deleted the older checkpoint");
    // As if the deletion after the second checkpoint had been cut short, then the new checkpoint rotted.
    copy_missing(snapshot.path(), tmp.path());
    flip_middle(&files::checkpoint_path(tmp.path(), newest));

    let (got, report) = reopen(tmp.path());
    let want: Vec<&[u8]> = vec![b"state-1a", b"state-1b", b"b", b"c"];
    assert_eq!(got, want);
    assert!(report.checkpoint < Some(newest) && report.damaged());
    assert!(tmp.path().join(format!("{}.corrupt", name(&files::checkpoint_path(tmp.path(), newest)))).exists());
}

#[test]
fn a_damaged_checkpoint_without_an_older_base_keeps_what_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    journal.append(b"before").unwrap();
    let state: Vec<Vec<u8>> = (0..9).map(record).collect();
    let refs: Vec<&[u8]> = state.iter().map(Vec::as_slice).collect();
    checkpoint_with(&journal, &refs);
    journal.append(b"after").unwrap();
    journal.close().unwrap();
    drop(journal);
    assert_eq!(segments(tmp.path()).first(), checkpoints(tmp.path()).first(), "older segments are gone");
    let path = files::checkpoint_path(tmp.path(), checkpoints(tmp.path())[0]);
    flip_middle(&path);
    let (got, report) = reopen(tmp.path());
    assert_eq!(got.len(), 9, "one state record lost, the rest and the later segment kept: {got:?}");
    assert_eq!(got.last().map(Vec::as_slice), Some(&b"after"[..]));
    assert!(got[..8].iter().all(|r| state.contains(r)));
    assert!(report.damaged());
    let (again, report) = reopen(tmp.path());
    assert_eq!(again, got);
    assert!(!report.damaged(), "the repaired checkpoint is intact now");
}

#[test]
fn a_damaged_checkpoint_alone_in_its_directory_keeps_what_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    let state: Vec<Vec<u8>> = (0..9).map(record).collect();
    checkpoint_with(&journal, &state.iter().map(Vec::as_slice).collect::<Vec<_>>());
    journal.close().unwrap();
    drop(journal);
    let id = checkpoints(tmp.path())[0];
    let path = files::checkpoint_path(tmp.path(), id);
    flip_middle(&path);
    let only = dir_with(&[(name(&path), std::fs::read(&path).unwrap())]);
    let (got, report) = reopen(only.path());
    assert_eq!(got.len(), 8, "{report:?}");
    assert!(got.iter().all(|r| state.contains(r)));
    assert_eq!(report.checkpoint, Some(id));
}

#[test]
fn a_checkpoint_while_appending_keeps_every_later_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), JournalOptions { segment_bytes: 4096, ..opts() });
    for i in 0..200 {
        journal.append(format!("early {i}").as_bytes()).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (journal, stop) = (journal.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut appended = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || appended.len() < 500 {
                let body = format!("live {}", appended.len());
                appended.push((journal.append(body.as_bytes()).unwrap(), body));
            }
            appended
        })
    };
    eventually("the appender is running", || journal.stats().appended_records > 300);
    let mut ckpt = journal.begin_checkpoint().unwrap();
    assert!(matches!(journal.begin_checkpoint(), Err(JournalError::CheckpointInProgress)));
    let covers = ckpt.covers();
    for i in 0..50 {
        ckpt.append(format!("state {i}").as_bytes()).unwrap();
    }
    ckpt.finish().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = appender.join().unwrap();
    journal.close().unwrap();
    let (got, report) = reopen(tmp.path());
    let want: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("state {i}").into_bytes())
        .chain(appended.iter().filter(|(lsn, _)| *lsn > covers).map(|(_, b)| b.clone().into_bytes()))
        .collect();
    assert_eq!(got, want);
    assert!(report.checkpoint.is_some() && !report.damaged());
    assert!(segments(tmp.path()).iter().all(|&s| s >= report.checkpoint.unwrap_or(0)));
}

#[test]
fn max_bytes_refuses_appends_until_a_checkpoint_reclaims_space() {
    let tmp = tempfile::tempdir().unwrap();
    let options = JournalOptions { max_bytes: 64 << 10, segment_bytes: 8 << 10, ..opts() };
    let (journal, _, _) = open(tmp.path(), options);
    let payload = [7u8; 100];
    let mut taken = 0;
    let refused = loop {
        match journal.append(&payload) {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, AppendError::Full { max_bytes, .. } if max_bytes == 64 << 10), "{refused}");
    assert!(taken > 400, "{taken}");
    assert!(journal.wants_checkpoint());
    assert!(matches!(journal.append(&payload), Err(AppendError::Full { .. })), "refused again, not dropped");
    let stats = journal.stats();
    assert_eq!(stats.refused_appends, 2);
    assert!(stats.bytes_on_disk <= 64 << 10);
    eventually("everything taken is written", || journal.durable().get() == taken);
    let on_disk: u64 = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk <= 64 << 10, "{on_disk} bytes on disk");

    checkpoint_with(&journal, &[b"compacted state"]);
    assert!(!journal.wants_checkpoint());
    assert!(journal.stats().bytes_on_disk < 1 << 10, "{:?}", journal.stats());
    journal.append(b"after").unwrap();
    journal.close().unwrap();
    let (got, _) = reopen(tmp.path());
    let want: Vec<&[u8]> = vec![b"compacted state", b"after"];
    assert_eq!(got, want);
}

#[test]
fn a_large_live_state_is_compacted_before_appends_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let options = JournalOptions { max_bytes: 64 << 10, segment_bytes: 8 << 10, ..opts() };
    let (journal, _, _) = open(tmp.path(), options);
    let state: Vec<[u8; 100]> = vec![[1u8; 100]; 230]; // about 26 KiB: 40 % of max_bytes
    let refs: Vec<&[u8]> = state.iter().map(|r| &r[..]).collect();
    checkpoint_with(&journal, &refs);
    let mut appended = 0;
    while !journal.wants_checkpoint() {
        journal.append(&[2u8; 100]).expect("wants_checkpoint came only after appends were refused");
        appended += 1;
    }
    assert!(appended > 100, "a checkpoint would replace too little log: {appended} records");
    checkpoint_with(&journal, &refs);
    assert!(!journal.wants_checkpoint());
    journal.close().unwrap();
}

#[test]
fn segments_rotate_and_a_checkpoint_deletes_the_ones_it_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), JournalOptions { segment_bytes: 1024, ..opts() });
    let mut last = Lsn::ZERO;
    for i in 0..300 {
        last = journal.append(&record(i)).unwrap();
    }
    wait_durable(&journal, last).unwrap();
    assert!(segments(tmp.path()).len() > 5, "{:?}", segments(tmp.path()));
    assert!(segments(tmp.path()).iter().all(|&s| files::size(&files::segment_path(tmp.path(), s)) <= 1024));
    checkpoint_with(&journal, &[b"state"]);
    assert_eq!(segments(tmp.path()).len(), 1);
    journal.close().unwrap();
    assert_eq!(reopen(tmp.path()).0, vec![b"state".to_vec()]);
}

#[test]
fn an_fsync_error_fails_every_waiter_and_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    let good = journal.append(b"good").unwrap();
    wait_durable(&journal, good).unwrap();
    failpoints::arm(tmp.path(), FailPoint::Fsync, 1);
    let bad = journal.append(b"not acked").unwrap();
    assert!(matches!(wait_durable(&journal, bad), Err(JournalError::Failed(_))));
    assert_eq!(journal.durable(), good, "the failed batch is never reported durable");
    wait_durable(&journal, good).unwrap();
    assert!(matches!(journal.append(b"more"), Err(AppendError::Failed(_))));
    assert!(matches!(journal.begin_checkpoint(), Err(JournalError::Failed(_))));
    assert!(journal.stats().failed);
    assert!(matches!(journal.close(), Err(JournalError::Failed(_))));
    drop(journal);
    let (got, _) = reopen(tmp.path());
    assert_eq!(got.first().map(Vec::as_slice), Some(&b"good"[..]));
}

#[test]
fn a_torn_batch_write_fails_the_journal_and_recovery_cuts_it_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    let good = journal.append(b"good").unwrap();
    wait_durable(&journal, good).unwrap();
    failpoints::arm(tmp.path(), FailPoint::WriteTorn, 1);
    let bad = journal.append(&[9u8; 300]).unwrap();
    assert!(matches!(wait_durable(&journal, bad), Err(JournalError::Failed(_))));
    drop(journal);
    let (got, report) = reopen(tmp.path());
    assert_eq!(got, vec![b"good".to_vec()]);
    assert!(matches!(report.corrupt.as_slice(), [c] if c.torn_tail && c.len == 156), "{report:?}");
}

#[test]
fn a_failed_segment_rotation_fails_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), JournalOptions { segment_bytes: 256, ..opts() });
    failpoints::arm(tmp.path(), FailPoint::SegmentCreate, 1);
    let lsns: Vec<Lsn> = (0..20).map(|i| journal.append(&record(i)).unwrap()).collect();
    assert!(matches!(wait_durable(&journal, lsns[19]), Err(JournalError::Failed(_))));
    drop(journal);
    let (got, _) = reopen(tmp.path());
    assert!(!got.is_empty() && got.len() < 20);
    assert_eq!(got, (0..got.len()).map(record).collect::<Vec<_>>());
}

#[test]
fn a_failed_checkpoint_leaves_the_old_base_and_the_journal_working() {
    for point in [FailPoint::CheckpointWrite, FailPoint::CheckpointFsync, FailPoint::CheckpointRename] {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, _, _) = open(tmp.path(), opts());
        checkpoint_with(&journal, &[b"base"]);
        journal.append(b"one").unwrap();
        failpoints::arm(tmp.path(), point, 1);
        let result = journal.begin_checkpoint().and_then(|mut c| {
            c.append(b"new state")?;
            c.finish()
        });
        assert!(matches!(result, Err(JournalError::Io { .. })), "{point:?}: {result:?}");
        journal.append(b"two").unwrap();
        checkpoint_with(&journal, &[b"base", b"one", b"two"]);
        journal.append(b"three").unwrap();
        failpoints::disarm_all(tmp.path());
        journal.close().unwrap();
        let leftovers: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| name(&e.unwrap().path()))
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let want: Vec<&[u8]> = vec![b"base", b"one", b"two", b"three"];
        assert_eq!(reopen(tmp.path()).0, want, "{point:?}");
    }
}

#[test]
fn an_unfinished_checkpoint_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    journal.append(b"one").unwrap();
    let mut ckpt = journal.begin_checkpoint().unwrap();
    ckpt.append(b"partial state").unwrap();
    journal.append(b"two").unwrap();
    drop(ckpt);
    journal.close().unwrap();
    let want: Vec<&[u8]> = vec![b"one", b"two"];
    assert_eq!(reopen(tmp.path()).0, want);
}

#[test]
fn interval_mode_fsyncs_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) =
        open(tmp.path(), JournalOptions { fsync: FsyncMode::Interval(Duration::from_millis(20)), ..opts() });
    let lsn = journal.append(b"one").unwrap();
    wait_durable(&journal, lsn).unwrap();
    eventually("the interval fsync ran", || journal.stats().fsyncs == 1);
    assert_eq!(journal.stats().fsynced_records, 1);
    journal.close().unwrap();
}

#[test]
fn a_frame_forged_inside_a_payload_is_not_resurrected_by_resynchronisation() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), opts());
    journal.append(b"before").unwrap();
    // A client's payload that holds what looks like a whole record frame, with every salt it could guess.
    let mut forged = b"payload prefix ".to_vec();
    for guess in [0u32, 1, u32::MAX] {
        let _ = frame::encode(&mut forged, frame::Kind::Record, guess, b"FORGED: subscribe attacker to #");
    }
    journal.append(&forged).unwrap();
    journal.append(b"after").unwrap();
    journal.close().unwrap();
    drop(journal);
    // Damage the header of the record that carries the forgery, so recovery resynchronises through its payload.
    let path = files::segment_path(tmp.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let salt = files::read_salt(&path).unwrap();
    let frames = frame_ranges(&bytes, salt);
    bytes[frames[1].0 + 5] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let (journal, got, report) = open(tmp.path(), opts());
    let want: Vec<&[u8]> = vec![b"before", b"after"];
    assert_eq!(got, want);
    assert!(report.damaged() && report.corrupt.len() == 1, "{report:?}");
    journal.append(b"newest").unwrap();
    journal.close().unwrap();
    drop(journal);
    let want: Vec<&[u8]> = vec![b"before", b"after", b"newest"];
    assert_eq!(reopen(tmp.path()).0, want);
}

#[test]
fn strange_segment_ids_neither_panic_nor_hang() {
    let (_tmp, _, bytes, _) = small_log(3);
    let max = name(&files::segment_path(Path::new("."), u64::MAX - 1));
    let dir = dir_with(&[(name(&files::segment_path(Path::new("."), 1)), bytes), (max, b"garbage".to_vec())]);
    let (journal, got, report) = open(dir.path(), opts());
    assert_eq!(got, (0..3).map(record).collect::<Vec<_>>());
    assert_eq!(report.missing_segments.len(), 1000, "the list of missing segments is capped");
    journal.close().unwrap();
}

#[test]
fn an_unreadable_segment_is_set_aside_and_the_rest_recovered() {
    let (tmp, _, _, _) = small_log(3);
    // A directory where segment 2 should be: opening works, reading fails (EISDIR), as with a bad sector.
    let unreadable = files::segment_path(tmp.path(), 2);
    std::fs::create_dir(&unreadable).unwrap();
    let (got, report) = reopen(tmp.path());
    assert_eq!(got, (0..3).map(record).collect::<Vec<_>>());
    assert!(report.damaged() && report.corrupt.iter().any(|c| c.file == unreadable), "{report:?}");
    assert!(!unreadable.exists());
}

#[test]
fn journal_handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Journal>();
    fn send<T: Send>() {}
    send::<Recovered>();
    send::<Checkpoint>();
}

#[test]
fn records_too_large_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, _, _) = open(tmp.path(), JournalOptions { max_bytes: 1 << 40, ..opts() });
    let r = journal.append_with(|b| b.resize(b.len() + MAX_RECORD_LEN + 1, 0));
    assert!(matches!(r, Err(AppendError::TooLarge(n)) if n == MAX_RECORD_LEN + 1));
    let lsn = journal.append(b"fine").unwrap();
    assert_eq!(lsn.get(), 1);
    journal.close().unwrap();
    assert_eq!(reopen(tmp.path()).0, vec![b"fine".to_vec()]);
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    const SALT: u32 = 0x5EED_5A17;

    /// Random bytes, with valid frames, headers and bare magics mixed in.
    fn content() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()).prop_map(|(p, salted)| {
                let mut b = Vec::new();
                let _ = frame::encode(&mut b, frame::Kind::Record, if salted { SALT } else { 1 }, &p);
                b
            }),
            Just(b"EMJr".to_vec()),
            Just(b"EMJc\xff\xff\xff\x0f".to_vec()),
            Just(files::header_frame(FileKind::Checkpoint, 2, SALT)),
            Just(files::header_frame(FileKind::Segment, 3, SALT)),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn random_files_never_stop_recovery(seg2 in content(), seg3 in content(), ckpt in content()) {
            let dir = dir_with(&[
                (name(&files::segment_path(Path::new("."), 2)), seg2),
                (name(&files::segment_path(Path::new("."), 3)), seg3),
                (name(&files::checkpoint_path(Path::new("."), 2)), ckpt),
            ]);
            let (first, _) = reopen(dir.path());
            // Repairs are done once: the second recovery finds the same records and no damage.
            let (journal, second, report) = open(dir.path(), opts());
            prop_assert_eq!(&second, &first);
            prop_assert!(!report.damaged(), "{:?}", report);
            let lsn = journal.append(b"still works").unwrap();
            wait_durable(&journal, lsn).unwrap();
            journal.close().unwrap();
            let third = reopen(dir.path()).0;
            prop_assert_eq!(third.last().map(Vec::as_slice), Some(&b"still works"[..]));
        }
    }
}
