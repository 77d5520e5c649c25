//! A real firmware in QEMU against the broker: `firmware/qemu-lm3s6965` runs `firmware-client` over the board's
//! UART0, which QEMU turns into a TCP connection to an in-process broker. It is built for QEMU's `lm3s6965evb`
//! (Cortex-M3, `thumbv7m-none-eabi`, PL011 UART) and, with the feature `mps2-an386`, for the `mps2-an386`
//! (Cortex-M4F, `thumbv7em-none-eabihf`, CMSDK UART).
//!
//! The firmware connects as `qemu-<board>`, subscribes to `qemu-<board>/cmd`, publishes three messages at QoS 0, 1
//! and 2 to `qemu-<board>/data`, answers `ping <token>` with `pong <token>` on `qemu-<board>/reply`, and exits
//! through semihosting: status 0 on success, 1 on any failure or after 10 s. A `rumqttc` observer checks what
//! arrived. The negative cases show that the exit status and the messages depend on the broker's answers.
//!
//! Needs `qemu-system-arm` and the rustup targets `thumbv7m-none-eabi` and `thumbv7em-none-eabihf`
//! (`scripts/qemu-deps.sh` installs them). A missing QEMU skips the tests locally and fails them under
//! `REQUIRE_INTEROP=1`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tests::client::{self, Client};
use tests::process::{on_path, require, workspace_dir};
use tests::{Settings, TestBroker, start_broker, start_default_broker, unique, within, within_for};

/// One QEMU run; the firmware gives up after 10 s of host time on its own.
const QEMU_LIMIT: Duration = Duration::from_secs(20);
/// Building the firmware from scratch (dependencies included).
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// A QEMU machine and how the firmware is built for it.
struct Board {
    /// In the client id, topics and payloads.
    name: &'static str,
    machine: &'static str,
    target: &'static str,
    features: &'static [&'static str],
    elf: OnceLock<PathBuf>,
}

static LM3S6965: Board = Board {
    name: "lm3s6965",
    machine: "lm3s6965evb",
    target: "thumbv7m-none-eabi",
    features: &[],
    elf: OnceLock::new(),
};
static MPS2_AN386: Board = Board {
    name: "mps2-an386",
    machine: "mps2-an386",
    target: "thumbv7em-none-eabihf",
    features: &["--features", "mps2-an386"],
    elf: OnceLock::new(),
};

impl Board {
    fn topic(&self, leaf: &str) -> String {
        format!("qemu-{}/{leaf}", self.name)
    }

    /// What the firmware publishes to `qemu-<board>/data`, in order.
    fn messages(&self) -> [(QoS, String); 3] {
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].map(|q| (q, format!("{} qos {}", self.name, q as u8)))
    }
}

fn qemu_available() -> bool {
    require("qemu-system-arm (apt: qemu-system-arm; run scripts/qemu-deps.sh)", on_path("qemu-system-arm"))
}

/// Builds the firmware for `board` once per test process (release, in its own workspace and `target/`) and
/// returns the ELF.
fn firmware(board: &Board) -> PathBuf {
    board
        .elf
        .get_or_init(|| {
            let dir = workspace_dir().join("firmware").join("qemu-lm3s6965");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            // The firmware's .cargo/config.toml (target, linker script) is found from the working directory. Flags
            // from the environment would replace its rustflags, and the target directory is the firmware's own.
            let mut child = std::process::Command::new(cargo)
                .args(["build", "--release", "--locked", "--target-dir", "target", "--target", board.target])
                .args(board.features)
                .current_dir(&dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET")
                .env_remove("CARGO_TARGET_DIR")
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
            let deadline = Instant::now() + BUILD_LIMIT;
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("building the firmware took over {BUILD_LIMIT:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            assert!(
                status.success(),
                "building {} for {} failed ({status}); needs the rustup target (scripts/qemu-deps.sh)",
                dir.display(),
                board.target
            );
            let elf = dir.join("target").join(board.target).join("release/firmware-qemu-lm3s6965");
            assert!(elf.is_file(), "{} is missing after the build", elf.display());
            elf
        })
        .clone()
}

/// How a QEMU run ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Starts QEMU with UART0 connected to the broker; the handle yields its exit status and output. QEMU is killed
/// past [`QEMU_LIMIT`] (the test then fails).
fn start_qemu(board: &Board, broker: &TestBroker) -> tokio::task::JoinHandle<Run> {
    let elf = firmware(board);
    let chardev = format!("socket,id=uart0,host=127.0.0.1,port={}", broker.port());
    let started = Instant::now();
    let child = tokio::process::Command::new("qemu-system-arm")
        .args(["-machine", board.machine, "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-chardev", &chardev, "-serial", "chardev:uart0", "-kernel"])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run qemu-system-arm: {e}"));
    tokio::spawn(async move {
        let out = within_for(QEMU_LIMIT, "QEMU run", child.wait_with_output()).await.unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        }
    })
}

async fn finish(qemu: tokio::task::JoinHandle<Run>) -> Run {
    let run = within_for(QEMU_LIMIT, "QEMU exit", qemu).await.unwrap();
    eprintln!("QEMU exited with {:?} after {:?}\nstdout:\n{}stderr:\n{}", run.code, run.took, run.stdout, run.stderr);
    run
}

/// A `rumqttc` client subscribed at QoS 2 to everything the firmware sends or receives.
async fn observer(board: &Board, broker: &TestBroker, keep_alive: Duration) -> Client {
    let mut options = client::options(broker.addr, &unique("qemu-observer"));
    options.set_keep_alive(keep_alive);
    let (mut obs, _) = client::connect(options, false).await;
    assert_eq!(obs.subscribe(&board.topic("#"), QoS::ExactlyOnce).await, Some(QoS::ExactlyOnce));
    obs
}

/// Receives the three data messages and checks their order, QoS and payload.
async fn expect_data(board: &Board, obs: &mut Client) {
    for (qos, payload) in board.messages() {
        let p = obs.next_publish().await;
        assert_eq!(p.topic, board.topic("data"));
        assert_eq!((p.qos, &p.payload[..]), (qos, payload.as_bytes()), "data message {payload:?}");
    }
}

async fn publishes_every_qos_and_answers_a_command(board: &Board) {
    if !qemu_available() {
        return;
    }
    firmware(board);
    let broker = start_default_broker().await;
    let mut obs = observer(board, &broker, Duration::from_secs(5)).await;
    let qemu = start_qemu(board, &broker);

    expect_data(board, &mut obs).await;
    // The firmware subscribed before publishing, so the command reaches it. The token cannot be guessed.
    let token = unique("token");
    obs.publish(&board.topic("cmd"), QoS::ExactlyOnce, false, format!("ping {token}")).await;
    let echo = obs.next_publish().await;
    assert_eq!((echo.topic, echo.qos), (board.topic("cmd"), QoS::ExactlyOnce));
    let reply = obs.next_publish().await;
    assert_eq!(reply.topic, board.topic("reply"));
    assert_eq!((reply.qos, &reply.payload[..]), (QoS::AtLeastOnce, format!("pong {token}").as_bytes()));

    let run = finish(qemu).await;
    assert_eq!(run.code, Some(0), "the firmware reported failure: {run:?}");
    assert!(run.stdout.contains("qemu-fw: OK"), "{run:?}");
    // Three data messages, the command and the reply; the firmware left with DISCONNECT, the observer stays.
    let stats = broker.wait_stats("the firmware to disconnect", |s| s.clients_connected == 1).await;
    assert_eq!(stats.messages_received, 5, "{stats:?}");
    obs.expect_no_publish(Duration::from_millis(200)).await;
    obs.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn lm3s6965_publishes_every_qos_and_answers_a_command() {
    publishes_every_qos_and_answers_a_command(&LM3S6965).await;
}

#[tokio::test]
async fn mps2_an386_publishes_every_qos_and_answers_a_command() {
    publishes_every_qos_and_answers_a_command(&MPS2_AN386).await;
}

#[tokio::test]
async fn firmware_exits_1_when_the_broker_refuses_its_connect() {
    if !qemu_available() {
        return;
    }
    let board = &LM3S6965;
    firmware(board);
    // The firmware asks for keep alive 60 s; an MQTT 3.1.1 client over the maximum is refused with CONNACK 0x02.
    let mut settings = Settings::default();
    settings.sessions.max_keepalive = 1;
    let broker = start_broker(settings).await;
    let mut obs = observer(board, &broker, Duration::from_secs(1)).await;

    let run = finish(start_qemu(board, &broker)).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("qemu-fw: FAIL connection refused, CONNACK 0x02"), "{run:?}");
    assert!(!run.stdout.contains("qemu-fw: connected"), "{run:?}");
    obs.expect_no_publish(Duration::from_millis(200)).await;
    assert_eq!(broker.stats().messages_received, 0);
    obs.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn firmware_exits_1_on_an_unknown_command() {
    if !qemu_available() {
        return;
    }
    let board = &LM3S6965;
    firmware(board);
    let broker = start_default_broker().await;
    let mut obs = observer(board, &broker, Duration::from_secs(5)).await;
    let qemu = start_qemu(board, &broker);

    expect_data(board, &mut obs).await;
    obs.publish(&board.topic("cmd"), QoS::AtLeastOnce, false, "reboot").await;
    let run = finish(qemu).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("qemu-fw: FAIL unknown command"), "{run:?}");
    // The command echo only: no reply.
    let echo = obs.next_publish().await;
    assert_eq!(echo.topic, board.topic("cmd"));
    obs.expect_no_publish(Duration::from_millis(200)).await;
    obs.disconnect().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn firmware_exits_1_when_no_command_comes_within_its_deadline() {
    if !qemu_available() {
        return;
    }
    let board = &LM3S6965;
    firmware(board);
    let broker = start_default_broker().await;
    let mut obs = observer(board, &broker, Duration::from_secs(5)).await;
    let qemu = start_qemu(board, &broker);

    expect_data(board, &mut obs).await;
    let run = finish(qemu).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("qemu-fw: FAIL timeout"), "{run:?}");
    // The deadline is 10 s of host time after reset (SYS_ELAPSED), whatever the emulated CPU's speed.
    assert!(run.took >= Duration::from_secs(9), "gave up after {:?}", run.took);
    within("observer disconnect", obs.disconnect()).await;
    broker.shutdown().await;
}
