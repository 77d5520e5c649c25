//! Durable appends per second with 1, 10 and 100 concurrent appenders of 100-byte records, each waiting until
//! its record is durable before appending the next: the journal (`FsyncMode::Always`), redb with one
//! `Durability::Immediate` transaction per batch under the same group commit, and redb with one transaction per
//! write. Also measures the latency of a 100-byte write plus fdatasync on the chosen disk, and the bytes each
//! engine makes the kernel write to the disk per record (`write_bytes` of /proc/self/io). Results go in
//! `docs/persistence.md`.
//!
//! Then the cost of recovery and compaction: 1,000,000 records of 100 bytes appended (`Never` mode), the journal
//! reopened and every record read back, then one checkpoint holding them all.
//!
//! ```sh
//! cargo run --release -p broker --example journal_bench -- [--dir DIR] [--secs N] [--only-recovery]
//! ```
//!
//! `--dir` must be on the disk to measure (not a tmpfs); default: a temporary directory under the current one.

use std::error::Error;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use broker::journal::{FsyncMode, Journal, JournalOptions};
use redb::{Database, TableDefinition};
use tokio::sync::watch;

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const RECORD: [u8; 100] = [0x5a; 100];

struct Args {
    dir: PathBuf,
    secs: u64,
    only_recovery: bool,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut out = Args { dir: PathBuf::from("."), secs: 3, only_recovery: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => out.dir = it.next().ok_or("--dir needs a path")?.into(),
            "--secs" => out.secs = it.next().ok_or("--secs needs a number")?.parse()?,
            "--only-recovery" => out.only_recovery = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(out)
}

/// One measured run.
struct Run {
    ops: u64,
    elapsed: Duration,
    /// Records per fsync (journal) or per commit (redb).
    per_sync: f64,
    /// Bytes this process sent to the disk during the run (`write_bytes` of /proc/self/io).
    disk_bytes: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn row(&self, appenders: usize, engine: &str) {
        let per_record = self.disk_bytes as f64 / self.ops.max(1) as f64;
        println!("| {appenders} | {engine} | {:.0} | {:.1} | {per_record:.0} |", self.rate(), self.per_sync);
    }
}

/// Bytes this process has caused to be written to storage so far.
fn disk_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

/// Runs `f`, filling in its `disk_bytes`.
fn measured(f: impl FnOnce() -> Result<Run, Box<dyn Error>>) -> Result<Run, Box<dyn Error>> {
    let before = disk_written();
    let mut run = f()?;
    run.disk_bytes = disk_written().saturating_sub(before);
    Ok(run)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let secs = Duration::from_secs(args.secs);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let base = tempfile::tempdir_in(&args.dir)?;
    println!("directory: {} ({} s per run, 100-byte records)", base.path().display(), args.secs);
    if args.only_recovery {
        return recovery(base.path());
    }
    fsync_latency(base.path())?;
    println!();
    println!("| appenders | engine | durable appends/s | records per fsync/commit | disk bytes written per record |");
    println!("|---|---|---:|---:|---:|");
    for n in [1usize, 10, 100] {
        let dir = tempfile::tempdir_in(base.path())?;
        measured(|| rt.block_on(journal_run(dir.path(), n, secs)))?.row(n, "journal (Always)");
        let dir = tempfile::tempdir_in(base.path())?;
        measured(|| rt.block_on(redb_group_run(dir.path(), n, secs)))?.row(n, "redb, one transaction per batch");
        let dir = tempfile::tempdir_in(base.path())?;
        measured(|| redb_per_write_run(dir.path(), n, secs))?.row(n, "redb, one transaction per write");
    }
    println!();
    recovery(base.path())
}

/// Peak resident set size of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .unwrap_or(0)
}

fn recovery(base: &Path) -> Result<(), Box<dyn Error>> {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir_in(base)?;
    let opts = JournalOptions { fsync: FsyncMode::Never, max_bytes: 1 << 40, segment_bytes: 64 << 20 };
    let (journal, _) = Journal::open(dir.path(), opts)?;
    let t = Instant::now();
    for i in 0..N {
        journal.append_with(|b| {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&RECORD[8..]);
        })?;
    }
    journal.close()?;
    let appended = t.elapsed();
    let bytes = journal.stats().bytes_on_disk;
    drop(journal);
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let (journal, mut recovered) = Journal::open(dir.path(), opts)?;
    let opened = t.elapsed();
    let mut n = 0u64;
    let mut in_order = true;
    for record in recovered.by_ref() {
        in_order &= record.get(..8) == Some(&n.to_le_bytes()[..]);
        n += 1;
    }
    let read = t.elapsed();
    println!(
        "recovery of {N} records of 100 bytes ({bytes} bytes on disk, appended and written in {appended:?}): \
         open (check every frame) {opened:?}, open + read all {read:?} ({:.0} records/s), {n} read, in order: \
         {in_order}; peak RSS {} KiB before, {} KiB after",
        n as f64 / read.as_secs_f64(),
        rss_before,
        peak_rss_kib()
    );
    let t = Instant::now();
    let mut ckpt = journal.begin_checkpoint()?;
    for i in 0..N {
        ckpt.append_with(|b| {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&RECORD[8..]);
        })?;
    }
    ckpt.finish()?;
    println!("checkpoint of {N} records: {:?}; bytes on disk after: {}", t.elapsed(), journal.stats().bytes_on_disk);
    journal.close()?;
    Ok(())
}

/// fdatasync latency after appending 100 bytes (the file grows: the inode's size must be written too, as in
/// the journal's segments) and after overwriting 100 bytes in place (data only, as in redb's preallocated file).
fn fsync_latency(dir: &Path) -> Result<(), Box<dyn Error>> {
    use std::os::unix::fs::FileExt;
    let mut file = OpenOptions::new().create(true).append(true).open(dir.join("fsync-probe"))?;
    let append = sample(|| {
        file.write_all(&RECORD)?;
        file.sync_data()
    })?;
    print_latency("fdatasync after a 100-byte append", append);
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(dir.join("fsync-probe-2"))?;
    file.write_all_at(&[0; 4096], 0)?;
    file.sync_all()?;
    let overwrite = sample(|| {
        file.write_all_at(&RECORD, 0)?;
        file.sync_data()
    })?;
    print_latency("fdatasync after a 100-byte overwrite in place", overwrite);
    Ok(())
}

fn sample(mut op: impl FnMut() -> std::io::Result<()>) -> std::io::Result<Vec<Duration>> {
    let mut samples = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        op()?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

fn print_latency(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!("{what}, 500 samples: mean {:?}, p50 {:?}, p99 {:?}, max {:?}", mean, at(0.5), at(0.99), at(1.0));
}

async fn journal_run(dir: &Path, appenders: usize, secs: Duration) -> Result<Run, Box<dyn Error>> {
    let opts = JournalOptions { fsync: FsyncMode::Always, max_bytes: 1 << 40, segment_bytes: 64 << 20 };
    let (journal, _) = Journal::open(dir, opts)?;
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let lsn = journal.append(&RECORD).map_err(|e| e.to_string())?;
                journal.wait_durable(lsn).await.map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok::<u64, String>(n)
        }));
    }
    let mut ops = 0;
    for t in tasks {
        ops += t.await??;
    }
    let elapsed = started.elapsed();
    let stats = journal.stats();
    journal.close()?;
    let mean = stats.fsync_nanos_sum / stats.fsyncs.max(1);
    println!(
        "  journal, {appenders} appenders: {} fsyncs, mean fsync {:?}, max {:?}",
        stats.fsyncs,
        Duration::from_nanos(mean),
        Duration::from_nanos(stats.fsync_nanos_max)
    );
    Ok(Run { ops, elapsed, per_sync: stats.records_per_fsync(), disk_bytes: 0 })
}

/// redb under the journal's group commit: appenders queue records, one thread commits everything queued in one
/// `Durability::Immediate` transaction, then publishes the highest committed sequence number.
async fn redb_group_run(dir: &Path, appenders: usize, secs: Duration) -> Result<Run, Box<dyn Error>> {
    struct Queue {
        pending: Mutex<(u64, Vec<u8>)>,
        wake: Condvar,
        stop: AtomicBool,
    }
    let db = Database::create(dir.join("bench.redb"))?;
    let queue =
        Arc::new(Queue { pending: Mutex::new((0, Vec::new())), wake: Condvar::new(), stop: AtomicBool::new(false) });
    let (durable_tx, durable_rx) = watch::channel(0u64);
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (queue, commits) = (queue.clone(), commits.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let mut committed = 0u64;
            let mut batch = Vec::new();
            loop {
                let last = {
                    let mut p = queue.pending.lock().map_err(|e| e.to_string())?;
                    while p.1.is_empty() && !queue.stop.load(Ordering::Relaxed) {
                        p = queue.wake.wait(p).map_err(|e| e.to_string())?;
                    }
                    if p.1.is_empty() {
                        return Ok(());
                    }
                    std::mem::swap(&mut p.1, &mut batch);
                    p.0
                };
                let txn = db.begin_write().map_err(|e| e.to_string())?;
                {
                    let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
                    for (i, record) in batch.chunks(RECORD.len()).enumerate() {
                        table.insert(committed + 1 + i as u64, record).map_err(|e| e.to_string())?;
                    }
                }
                txn.commit().map_err(|e| e.to_string())?;
                commits.fetch_add(1, Ordering::Relaxed);
                committed = last;
                batch.clear();
                let _ = durable_tx.send(committed);
            }
        })
    };
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (queue, mut rx) = (queue.clone(), durable_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let seq = {
                    let mut p = queue.pending.lock().map_err(|e| e.to_string())?;
                    p.0 += 1;
                    p.1.extend_from_slice(&RECORD);
                    p.0
                };
                queue.wake.notify_one();
                rx.wait_for(|&d| d >= seq).await.map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok::<u64, String>(n)
        }));
    }
    let mut ops = 0;
    for t in tasks {
        ops += t.await??;
    }
    let elapsed = started.elapsed();
    queue.stop.store(true, Ordering::Relaxed);
    queue.wake.notify_one();
    writer.join().map_err(|_| "redb writer panicked")??;
    let commits = commits.load(Ordering::Relaxed);
    Ok(Run { ops, elapsed, per_sync: ops as f64 / commits.max(1) as f64, disk_bytes: 0 })
}

/// redb with one `Durability::Immediate` transaction per record, from `appenders` threads.
fn redb_per_write_run(dir: &Path, appenders: usize, secs: Duration) -> Result<Run, Box<dyn Error>> {
    let db = Arc::new(Database::create(dir.join("bench.redb"))?);
    let key = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|_| {
            let (db, key) = (db.clone(), key.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut n = 0;
                while Instant::now() < deadline {
                    let txn = db.begin_write().map_err(|e| e.to_string())?;
                    {
                        let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
                        table.insert(key.fetch_add(1, Ordering::Relaxed), &RECORD[..]).map_err(|e| e.to_string())?;
                    }
                    txn.commit().map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut ops = 0;
    for t in threads {
        ops += t.join().map_err(|_| "redb appender panicked")??;
    }
    Ok(Run { ops, elapsed: started.elapsed(), per_sync: 1.0, disk_bytes: 0 })
}
