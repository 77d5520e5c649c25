//! The ARM release builds really run: each cross-built `broker` (aarch64 and armv7, from
//! `scripts/cross-build.sh`) starts under Debian's qemu-user with the cross glibc as its root, and Debian's
//! `mosquitto_sub`/`mosquitto_pub` on the host do a publish/subscribe round trip through it over 127.0.0.1.
//!
//! A missing binary or emulator skips the test locally and fails it under `REQUIRE_INTEROP=1` (CI, where
//! `scripts/test.sh` builds the binaries first).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tests::process::{BrokerProcess, Output, on_path, require, run, workspace_dir};
use tests::{unique, within, within_for};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Emulated start-up and clients are slower than native ones; still every wait is bounded.
const LIMIT: Duration = Duration::from_secs(30);

/// One ARM target: its Rust triple, the qemu-user program, the cross sysroot and the ELF machine number.
struct Arm {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    /// `e_machine` in the ELF header: EM_AARCH64 (183) or EM_ARM (40).
    machine: u16,
    /// ELF class: 2 for 64-bit, 1 for 32-bit.
    class: u8,
}

const AARCH64: Arm = Arm {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    machine: 183,
    class: 2,
};

const ARMV7: Arm = Arm {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    machine: 40,
    class: 1,
};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_dir().join("target"), PathBuf::from)
}

/// The release binary for `arm`, if built and the emulator, its sysroot and the Mosquitto clients are present.
fn arm_broker(arm: &Arm) -> Option<PathBuf> {
    let bin = target_dir().join(arm.triple).join("release").join("broker");
    let present = bin.is_file()
        && on_path(arm.qemu)
        && Path::new(arm.sysroot).is_dir()
        && on_path("mosquitto_pub")
        && on_path("mosquitto_sub")
        && on_path("stdbuf");
    let what = format!(
        "{} (bash scripts/cross-build.sh), {} (apt: qemu-user), {} and mosquitto-clients",
        bin.display(),
        arm.qemu,
        arm.sysroot
    );
    require(&what, present).then_some(bin)
}

fn check(what: &str, out: &Output) {
    assert_eq!(out.code, Some(0), "{what} failed\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
}

/// Starts `mosquitto_sub -d` and returns once its SUBACK arrived; the handle yields its output lines after it exits.
async fn live_subscriber(port: u16, args: &[&str]) -> tokio::task::JoinHandle<Vec<String>> {
    let mut child = tokio::process::Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port.to_string(), "-d"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    within_for(LIMIT, "mosquitto_sub's SUBACK", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let suback = line.contains("received SUBACK");
            seen.push(line);
            if suback {
                return;
            }
        }
        panic!("mosquitto_sub exited before SUBACK: {seen:?}");
    })
    .await;
    tokio::spawn(async move {
        within_for(LIMIT, "mosquitto_sub to exit", async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push(line);
            }
            let _ = child.wait().await;
            seen
        })
        .await
    })
}

/// The ELF header of `bin` names the target's machine and class, so the test cannot pass on a host binary.
fn assert_elf_for(bin: &Path, arm: &Arm) {
    let bytes = std::fs::read(bin).unwrap();
    assert_eq!(bytes.get(..4), Some(&b"\x7fELF"[..]), "{} is not an ELF file", bin.display());
    let machine = bytes.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
    assert_eq!(machine, Some(arm.machine), "{}: ELF e_machine", bin.display());
    assert_eq!(bytes.get(4).copied(), Some(arm.class), "{}: ELF class", bin.display());
}

/// Runs the ARM broker under qemu-user and sends QoS 1 (MQTT 3.1.1) and QoS 2 (MQTT 5) messages through it,
/// plus a retained message read back by a later subscriber.
async fn round_trip(arm: &Arm) {
    let Some(bin) = arm_broker(arm) else { return };
    assert_elf_for(&bin, arm);
    let qemu_args: [&OsStr; 3] = [OsStr::new("-L"), OsStr::new(arm.sysroot), bin.as_os_str()];
    let qemu = PathBuf::from(arm.qemu);
    let broker = BrokerProcess::start_under(&qemu, &qemu_args, &[], LIMIT);
    let port = broker.port().to_string();
    for (version, qos) in [("mqttv311", "1"), ("mqttv5", "2")] {
        let topic = unique(&format!("arm/{}/{version}", arm.triple));
        let payload = format!("hello from the host through {} at QoS {qos}", arm.triple);
        let sub_args = ["-V", version, "-q", qos, "-t", &topic, "-C", "1", "-W", "25", "-F", "%t|%q|%p"];
        let sub = live_subscriber(broker.port(), &sub_args).await;
        let pub_args = ["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", qos, "-t", &topic, "-m", &payload];
        check("mosquitto_pub", &run("mosquitto_pub", &pub_args, LIMIT).await);
        let lines = within("mosquitto_sub output", sub).await.unwrap();
        let want = format!("{topic}|{qos}|{payload}");
        assert!(lines.contains(&want), "{}: expected {want:?} in {lines:#?}\n{}", arm.triple, broker.log_text());
    }
    let topic = unique(&format!("arm/{}/retained", arm.triple));
    let set = ["-h", "127.0.0.1", "-p", &port, "-q", "1", "-r", "-t", &topic, "-m", "kept"];
    check("mosquitto_pub -r", &run("mosquitto_pub", &set, LIMIT).await);
    let get = ["-h", "127.0.0.1", "-p", &port, "-t", &topic, "-C", "1", "-W", "25", "-F", "%r|%p"];
    let out = run("mosquitto_sub", &get, LIMIT).await;
    check("mosquitto_sub (retained)", &out);
    assert_eq!(out.stdout.trim(), "1|kept", "{}: retained message\n{}", arm.triple, broker.log_text());
    // Dropping `broker` kills the emulator, and the emulated broker with it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aarch64_release_binary_serves_mosquitto_clients_under_qemu() {
    round_trip(&AARCH64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn armv7_release_binary_serves_mosquitto_clients_under_qemu() {
    round_trip(&ARMV7).await;
}
