//! External programs: the built `broker` binary, and clients other projects wrote (`mosquitto_pub`,
//! `mosquitto_sub`, Python paho-mqtt).
//!
//! A missing program skips the test locally, but fails it when `REQUIRE_INTEROP=1` (CI sets it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether missing interop programs fail the test instead of skipping it.
pub fn interop_required() -> bool {
    std::env::var("REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Returns `true` when `available`; otherwise skips (returns `false`) or, under `REQUIRE_INTEROP=1`, panics.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(!interop_required(), "{what} is missing and REQUIRE_INTEROP=1; run scripts/interop-deps.sh");
    eprintln!("SKIPPED: {what} is missing (run scripts/interop-deps.sh; REQUIRE_INTEROP=1 makes this fail)");
    false
}

/// Whether a program is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether `python3` can import paho-mqtt 2.x.
pub fn paho_available() -> bool {
    Command::new("python3")
        .args(["-c", "import sys, paho.mqtt; sys.exit(0 if int(paho.mqtt.__version__.split('.')[0]) >= 2 else 1)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where the `broker` binary is: `$BROKER_BIN`, else beside this test executable (`<target>/debug/broker`),
/// else `$CARGO_TARGET_DIR/debug/broker`, else `<workspace>/target/debug/broker`.
pub fn broker_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BROKER_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    // Test executables live in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("broker"));
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join("broker"));
    }
    candidates.push(workspace_dir().join("target").join("debug").join("broker"));
    candidates.into_iter().find(|p| p.is_file())
}

/// The `broker` binary running as a child process; killed on drop.
pub struct BrokerProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Its persistence directory.
    pub data: PathBuf,
    /// Whether the directory is removed when the broker is dropped.
    owns_data: bool,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address in a log line containing `listening` and `addr=127.0.0.1:PORT`.
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    let value: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
    value.trim_matches('"').parse().ok()
}

impl BrokerProcess {
    /// Starts the built broker with `--listen 127.0.0.1:0` plus `extra_args`, and waits (10 s) for the
    /// `listening addr=` line. `None` (a skip) when the binary is missing and interop is not required.
    pub fn start(extra_args: &[&str]) -> Option<Self> {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra_args);
        Self::start_owning_data(&args)
    }

    /// [`BrokerProcess::start`] with the persistence directory `data`, which outlives the broker: a broker started
    /// again on it recovers what this one left.
    pub fn start_in(data: &Path, extra_args: &[&str]) -> Option<Self> {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra_args);
        let bin = Self::bin()?;
        Some(Self::spawn(Command::new(bin), &args, data, Duration::from_secs(10)))
    }

    /// Runs `program` with `program_args` then the broker's `--listen 127.0.0.1:0` and `extra_args`, such as an
    /// emulator (`qemu-aarch64 -L /usr/aarch64-linux-gnu path/to/broker`), and waits up to `limit` for the
    /// `listening addr=` line. Dropping the result kills `program`.
    pub fn start_under(
        program: &Path,
        program_args: &[&std::ffi::OsStr],
        extra_args: &[&str],
        limit: Duration,
    ) -> Self {
        let mut command = Command::new(program);
        command.args(program_args);
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra_args);
        let data = Self::own_data_dir();
        let mut broker = Self::spawn(command, &args, &data, limit);
        broker.owns_data = true;
        broker
    }

    /// The built broker, or `None` (a skip) when it is missing and interop is not required.
    fn bin() -> Option<PathBuf> {
        let bin = broker_bin();
        if !require("the broker binary (cargo build -p broker)", bin.is_some()) {
            return None;
        }
        bin
    }

    /// A persistence directory for one broker (one broker per directory).
    fn own_data_dir() -> PathBuf {
        std::env::temp_dir().join(format!("broker-test-{}-{}", std::process::id(), crate::unique("data")))
    }

    /// Starts with a persistence directory of its own, removed when it is dropped.
    fn start_owning_data(args: &[&str]) -> Option<Self> {
        let bin = Self::bin()?;
        let mut broker = Self::spawn(Command::new(bin), args, &Self::own_data_dir(), Duration::from_secs(10));
        broker.owns_data = true;
        Some(broker)
    }

    fn spawn(mut command: Command, args: &[&str], data: &Path, limit: Duration) -> Self {
        let data = data.to_path_buf();
        let what = format!("{command:?}");
        let mut child = command
            .args(args)
            .env("BROKER__PERSISTENCE__PATH", &data)
            // The HTTP endpoint of the embedded default configuration on a port of its own (see `http_addr`).
            .env("BROKER__HTTP__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Keep draining stderr for the whole run, so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = parse_listen_line(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(limit) {
            Ok(addr) => Self { addr, child, log, data, owns_data: false },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} printed no `listening addr=` line within {limit:?}; stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// Starts the built broker with `--config FILE` only (the file's listeners, which should bind port 0), and
    /// waits (10 s) for the first `listening addr=` line.
    pub fn start_with_config(config: &std::path::Path) -> Option<Self> {
        Self::start_owning_data(&["--config", &config.display().to_string()])
    }

    /// Its process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (10 s) until its log has a line containing `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {text:?} within 10 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where its HTTP endpoint listens (from the `http_addr=` log line), if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.log.lock().unwrap().iter().find_map(|line| {
            let line = strip_ansi(line);
            let rest = &line[line.find("http_addr=")? + "http_addr=".len()..];
            let value: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
            value.trim_matches('"').parse().ok()
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl BrokerProcess {
    /// Kills the broker with SIGKILL (a crash: nothing is flushed) and waits until it is gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (10 s at most) for the broker to exit; returns its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the broker did not exit within 10 s of SIGTERM; stderr:\n{}", self.log_text());
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// The output of a finished program.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a program to completion under a time limit (it is killed past it, and the test fails).
pub async fn run(program: &str, args: &[&str], limit: Duration) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let out = crate::within_for(limit, &format!("{program} {args:?}"), child.wait_with_output()).await.unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_line_is_parsed_with_or_without_colours() {
        let want: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        let plain = "2026-01-01T00:00:00Z  INFO broker: listening addr=127.0.0.1:40123";
        assert_eq!(parse_listen_line(plain), Some(want));
        let coloured = "\u{1b}[32m INFO\u{1b}[0m \u{1b}[2mbroker\u{1b}[0m: listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:40123";
        assert_eq!(parse_listen_line(coloured), Some(want));
        assert_eq!(parse_listen_line("INFO broker: serving addr=127.0.0.1:1"), None);
    }
}
