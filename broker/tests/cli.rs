//! The `broker` binary as a user runs it: flags, config errors, the logged address, and SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// Runs the binary to completion, killing it if it takes more than 10 s.
fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("RUST_LOG");
    cmd.env("BROKER__PERSISTENCE__PATH", data_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("broker {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A persistence directory of its own for each broker a test starts (one broker per directory).
fn data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("broker-cli-test-{}-data-{n}", std::process::id()))
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("broker-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn print_default_config_prints_the_commented_toml() {
    let out = run(&["--print-default-config"], &[]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, broker::config::DEFAULT_CONFIG);
    assert!(text.contains("bind = \"127.0.0.1:1883\""));
    assert!(text.lines().any(|l| l.starts_with('#')), "the default config is commented");
    // What it prints is a valid config file for the binary itself.
    let path = temp_file("printed.toml", &text);
    let parsed = broker::config::Config::from_toml(&text).unwrap();
    let mut want = broker::config::Config::default();
    want.settings.persistence.enabled = true;
    want.settings.http.enabled = true;
    want.settings.sys_interval = Some(std::time::Duration::from_secs(10));
    assert_eq!(parsed, want);
    assert!(path.exists());
}

#[test]
fn bad_value_in_config_file_exits_non_zero_naming_the_key() {
    let path = temp_file("bad-value.toml", "[limits]\nmax_packet_size = 3\n");
    let out = run(&["--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim(), "error: limits.max_packet_size: must be between 16 and 268435460 (got 3)");
}

#[test]
fn unknown_key_in_config_file_exits_non_zero_naming_the_key() {
    let path = temp_file("unknown-key.toml", "[limits]\nmax_conections = 5\n");
    let out = run(&["--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: limits.max_conections: unknown key"), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_config_file_and_bad_env_value_are_reported() {
    let out = run(&["--config", "/nonexistent/broker.toml"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: cannot read config file /nonexistent/broker.toml: "), "{}", stderr(&out));

    let out = run(&["--listen", "127.0.0.1:0"], &[("BROKER__LIMITS__MAX_INFLIGHT_MESSAGES", "0")]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "error: limits.max_inflight_messages: must be between 1 and 65535 (got 0) \
         (set by BROKER__LIMITS__MAX_INFLIGHT_MESSAGES)"
    );
}

#[test]
fn bind_failure_exits_non_zero_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: cannot listen on {addr}: ")), "stderr: {err}");
}

/// A running broker whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).env_remove("RUST_LOG");
        cmd.env("BROKER__PERSISTENCE__PATH", data_dir());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The addresses of the next `n` "listening" lines, in order.
    fn listening(&mut self, n: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut addrs = Vec::new();
        let seen = &mut self.seen;
        while addrs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| panic!("{e}; stderr so far: {seen:#?}"));
            if line.contains("listening") {
                let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).or_else(|| {
                    // JSON: "addr":"127.0.0.1:1234"
                    line.split("\"addr\":\"").nth(1).and_then(|rest| rest.split('"').next())
                });
                addrs.push(addr.unwrap_or_else(|| panic!("no addr in {line:?}")).parse().unwrap());
            }
            seen.push(line);
        }
        addrs
    }

    /// Sends SIGTERM and returns the exit status, which must come within 5 s.
    fn terminate(self) -> std::process::ExitStatus {
        self.signal("-TERM")
    }

    /// Sends a signal (`-TERM`, `-INT`) and returns the exit status, which must come within 5 s.
    fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        // The shell's built-in kill: a fresh Debian image may lack procps' /bin/kill.
        let kill = format!("kill {signal} {pid}");
        assert!(Command::new("sh").args(["-c", &kill]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("broker did not exit within 5 s of kill {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn listen_on_port_zero_logs_the_real_address_accepts_tcp_and_stops_on_sigterm() {
    let mut broker = Running::start(&["--listen", "127.0.0.1:0"], &[]);
    let addrs = broker.listening(1);
    let addr = addrs[0];
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the log shows the bound port, not 0");

    // The port answers MQTT: CONNECT (3.1.1, clean session, keep alive 30, client id "cli-test") gets CONNACK 0.
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let connect =
        [0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 8, b'c', b'l', b'i', b'-', b't', b'e', b's', b't'];
    std::io::Write::write_all(&mut stream, &connect).unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    // The client stays connected; SIGTERM must still end the broker promptly and cleanly.
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn config_file_env_and_flags_layer_in_that_order() {
    // The file asks for two listeners; --port replaces both ports with 0, so both get free ports. The file says
    // text logs, the environment says text too, and the --log-format json flag wins: the lines parse as JSON.
    let path = temp_file(
        "two-listeners.toml",
        "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:2\"\n[log]\nformat = \"text\"\n",
    );
    let mut broker = Running::start(
        &["--config", path.to_str().unwrap(), "--port", "0", "--log-format", "json"],
        &[("BROKER__LOG__FORMAT", "text")],
    );
    let addrs = broker.listening(2);
    let json = broker.seen.iter().filter(|l| l.starts_with('{') && l.contains("\"message\":\"listening\"")).count();
    assert_eq!(json, 2, "JSON lines: {:#?}", broker.seen);
    assert_eq!(addrs[0].ip().to_string(), "127.0.0.1");
    assert_eq!(addrs[1].ip().to_string(), "127.0.0.1");
    assert_ne!(addrs[0], addrs[1]);
    for addr in &addrs {
        assert_ne!(addr.port(), 0);
        TcpStream::connect_timeout(addr, Duration::from_secs(5)).unwrap();
    }
    assert!(broker.terminate().success());
}

#[test]
fn env_limit_applies_to_the_running_broker() {
    // BROKER__LIMITS__MAX_CONNECTIONS=1: the second client is closed without a CONNACK.
    let mut broker = Running::start(&["--listen", "127.0.0.1:0"], &[("BROKER__LIMITS__MAX_CONNECTIONS", "1")]);
    let addr = broker.listening(1)[0];
    let connect = |id: u8| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let pkt = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 1, id];
        let _ = std::io::Write::write_all(&mut s, &pkt);
        let mut buf = [0u8; 4];
        let n = s.read(&mut buf).unwrap_or(0);
        (s, buf[..n].to_vec())
    };
    let (_first, ack) = connect(b'a');
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let (_second, ack) = connect(b'b');
    assert!(ack.is_empty(), "second connection over the limit got {ack:?}");
    assert!(broker.terminate().success());
}

#[test]
fn ctrl_c_stops_the_broker_cleanly() {
    let mut broker = Running::start(&["--port", "0"], &[]);
    let addr = broker.listening(1)[0];
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "the default listener is local only");
    let status = broker.signal("-INT");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn conflicting_or_malformed_flags_are_usage_errors() {
    let out = run(&["--port", "0", "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    let out = run(&["--listen", "localhost"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'localhost'"), "{}", stderr(&out));
    let out = run(&["--log-format", "xml"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn migrate_config_prints_the_translation_and_counts_what_it_could_not_translate() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mosquitto/bridge-cloud.conf");
    let out = run(&["migrate-config", conf], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(toml.contains("# NOT TRANSLATED: 2 Mosquitto line(s)"), "{toml}");
    assert!(toml.contains(&format!("#   {conf}:19: notifications true")), "{toml}");
    assert!(toml.contains(&format!("name = \"cloud\"  # {conf}:9: connection cloud")), "{toml}");
    assert!(toml.contains("bind = \"0.0.0.0:1883\""), "{toml}");
    // The bridge password is needed in the translation, as the password key only: never in a comment.
    assert_eq!(toml.matches("s3cret-cloud-pass").count(), 1, "{toml}");
    assert!(toml.contains("password = \"s3cret-cloud-pass\"  # "), "{toml}");
    let err = stderr(&out);
    assert!(err.contains("migrate-config: 19 setting(s) translated, 2 not translated"), "{err}");

    let out = run(&["migrate-config", "/nonexistent/mosquitto.conf"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read /nonexistent/mosquitto.conf"), "{}", stderr(&out));
}
