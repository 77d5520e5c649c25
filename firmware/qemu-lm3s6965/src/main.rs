//! An example firmware for QEMU's `lm3s6965evb` (Cortex-M3, the default) or, with the feature `mps2-an386`, the
//! `mps2-an386` (Cortex-M4F): `firmware-client` speaks MQTT 3.1.1 over UART0, which QEMU turns into a TCP connection
//! to a broker.
//!
//! It connects as [`CLIENT_ID`] (`qemu-<board>`) (clean session), subscribes to [`CMD_TOPIC`] at QoS 2, publishes [`MESSAGES`] to
//! [`DATA_TOPIC`] at QoS 0, 1 and 2, waits for a command `ping <token>` and answers `pong <token>` on
//! [`REPLY_TOPIC`] at QoS 1. Once every QoS 1 and 2 publish is acknowledged it sends DISCONNECT and exits through
//! semihosting with status 0. Any failure (refused CONNECT, broken link, unknown command) or passing
//! [`DEADLINE_MS`] exits with status 1. Progress lines go to the host's stdout through semihosting.
//!
//! Time is the host's (`SYS_ELAPSED`/`SYS_TICKFREQ`, see `clock.rs`). `tests/tests/qemu.rs` runs it against the
//! broker; the `firmware-client` README shows how to run it by hand.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
#[cfg(feature = "mps2-an386")]
mod cmsdk_uart;
#[cfg(not(feature = "mps2-an386"))]
mod pl011;

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hio};
use firmware_client::blocking::{Client, ClientError};
use firmware_client::{Error, Event, Message, Options, PacketId, QoS, Session};

use crate::clock::Clock;
#[cfg(feature = "mps2-an386")]
use crate::cmsdk_uart::Uart;
#[cfg(not(feature = "mps2-an386"))]
use crate::pl011::Uart;

/// The board's name, in the client id, topics and payloads.
#[cfg(not(feature = "mps2-an386"))]
macro_rules! board {
    () => {
        "lm3s6965"
    };
}
#[cfg(feature = "mps2-an386")]
macro_rules! board {
    () => {
        "mps2-an386"
    };
}

/// The MQTT client identifier.
pub const CLIENT_ID: &str = concat!("qemu-", board!());
/// Commands arrive here.
pub const CMD_TOPIC: &str = concat!("qemu-", board!(), "/cmd");
/// Where [`MESSAGES`] go.
pub const DATA_TOPIC: &str = concat!("qemu-", board!(), "/data");
/// Where the answer to a command goes.
pub const REPLY_TOPIC: &str = concat!("qemu-", board!(), "/reply");
/// Published once subscribed, in this order.
pub const MESSAGES: [(QoS, &[u8]); 3] = [
    (QoS::AtMostOnce, concat!(board!(), " qos 0").as_bytes()),
    (QoS::AtLeastOnce, concat!(board!(), " qos 1").as_bytes()),
    (QoS::ExactlyOnce, concat!(board!(), " qos 2").as_bytes()),
];
/// The whole exchange must be over this long after reset, or the firmware exits with status 1.
pub const DEADLINE_MS: u64 = 10_000;
/// How long one UART read waits for a first byte before the client gets control back.
const READ_WAIT_MS: u64 = 20;
/// Keep alive announced in CONNECT.
const KEEP_ALIVE_SECS: u16 = 60;

/// INFLIGHT 4 (three data messages and the reply), one subscription, 32-byte filters.
type Mqtt<'a> = Client<'a, Uart<'a>, 4, 1, 32>;

/// Writes one line to the host's stdout; logging must not fail the run.
fn log(parts: &[&[u8]]) {
    if let Ok(mut out) = hio::hstdout() {
        for p in parts {
            let _ = out.write_all(p);
        }
        let _ = out.write_all(b"\n");
    }
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        core::hint::spin_loop();
    }
}

fn hex(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]
}

/// Why the run failed: the line printed before exiting with status 1.
enum Failure {
    Refused(u8),
    Link(&'static str),
    Timeout,
    SubscriptionRefused,
    UnknownCommand,
    Full,
}

impl Failure {
    fn report(&self) {
        match self {
            Self::Refused(code) => log(&[b"qemu-fw: FAIL connection refused, CONNACK 0x", &hex(*code)]),
            Self::Link(why) => log(&[b"qemu-fw: FAIL link: ", why.as_bytes()]),
            Self::Timeout => log(&[b"qemu-fw: FAIL timeout"]),
            Self::SubscriptionRefused => log(&[b"qemu-fw: FAIL subscription refused"]),
            Self::UnknownCommand => log(&[b"qemu-fw: FAIL unknown command"]),
            Self::Full => log(&[b"qemu-fw: FAIL client store full"]),
        }
    }
}

impl From<ClientError<embedded_io::ErrorKind>> for Failure {
    fn from(e: ClientError<embedded_io::ErrorKind>) -> Self {
        match e {
            ClientError::Session(Error::Refused(code)) => Self::Refused(code.to_v3_connack().unwrap_or(0xff)),
            ClientError::Session(Error::Timeout) => Self::Timeout,
            ClientError::Session(_) => Self::Link("protocol error"),
            ClientError::Transport(_) => Self::Link("UART error"),
            ClientError::Closed => Self::Link("closed by the broker"),
            ClientError::NoTransport => Self::Link("no transport"),
        }
    }
}

/// What is still outstanding.
#[derive(Default)]
struct Progress {
    /// Packet ids of QoS 1/2 publishes not yet acknowledged.
    unacked: [Option<PacketId>; 4],
    published: bool,
    answered: bool,
}

impl Progress {
    fn track(&mut self, pid: Option<PacketId>) -> Result<(), Failure> {
        let Some(pid) = pid else { return Ok(()) };
        let slot = self.unacked.iter_mut().find(|s| s.is_none()).ok_or(Failure::Full)?;
        *slot = Some(pid);
        Ok(())
    }

    fn acked(&mut self, pid: PacketId) {
        for slot in self.unacked.iter_mut().filter(|s| **s == Some(pid)) {
            *slot = None;
        }
    }

    fn done(&self) -> bool {
        self.published && self.answered && self.unacked.iter().all(Option::is_none)
    }
}

/// The exchange, from CONNECT to DISCONNECT.
fn run<'a>(client: &mut Mqtt<'a>, clock: &Clock, uart: Uart<'a>) -> Result<(), Failure> {
    let deadline = clock.now().after(DEADLINE_MS);
    let cmd = client.subscribe(CMD_TOPIC, QoS::ExactlyOnce).map_err(|_| Failure::Full)?;
    client.connect(uart, clock.now())?;
    let mut progress = Progress::default();
    let mut reply = [0u8; 64];
    while !progress.done() {
        let now = clock.now();
        if now >= deadline {
            return Err(Failure::Timeout);
        }
        // The reply is copied out of the receive buffer, then published once the event's borrow has ended.
        let mut reply_len = None;
        match client.poll(now)? {
            Some(Event::Connected { .. }) => log(&[b"qemu-fw: connected"]),
            Some(Event::Subscribed { granted: None, .. }) => return Err(Failure::SubscriptionRefused),
            Some(Event::Subscribed { granted: Some(_), .. }) if !progress.published => {
                log(&[b"qemu-fw: subscribed"]);
                progress.published = true;
                for (qos, payload) in MESSAGES {
                    let pid = client.publish(Message::new(DATA_TOPIC, payload, qos)).map_err(|_| Failure::Full)?;
                    progress.track(pid)?;
                }
                log(&[b"qemu-fw: published qos 0, 1, 2"]);
            }
            Some(Event::Published { pid, .. }) => progress.acked(pid),
            Some(Event::Message(m, Some(sub))) if sub == cmd && !progress.answered => {
                let token = m.payload.strip_prefix(b"ping ").ok_or(Failure::UnknownCommand)?;
                let answer = reply.get_mut(..token.len() + 5).ok_or(Failure::UnknownCommand)?;
                let (head, tail) = answer.split_at_mut(5);
                head.copy_from_slice(b"pong ");
                tail.copy_from_slice(token);
                reply_len = Some(answer.len());
            }
            _ => {}
        }
        if let Some(len) = reply_len {
            log(&[b"qemu-fw: command received"]);
            let payload = reply.get(..len).unwrap_or_default();
            let pid =
                client.publish(Message::new(REPLY_TOPIC, payload, QoS::AtLeastOnce)).map_err(|_| Failure::Full)?;
            progress.track(pid)?;
            progress.answered = true;
        }
    }
    client.disconnect(clock.now())?;
    log(&[b"qemu-fw: all acknowledged, disconnected"]);
    Ok(())
}

#[entry]
fn main() -> ! {
    static mut STORE: [u8; 512] = [0; 512];
    static mut RX: [u8; 256] = [0; 256];
    static mut TX: [u8; 256] = [0; 256];

    let Some(clock) = Clock::new() else {
        log(&[b"qemu-fw: FAIL no host clock (SYS_TICKFREQ)"]);
        exit(false)
    };
    let mut options = Options::new(CLIENT_ID);
    options.clean_start = true;
    options.keep_alive_secs = KEEP_ALIVE_SECS;
    options.response_timeout_ms = 5_000;
    let session: Session<'_, 4, 1, 32> = Session::new(options, STORE);
    let mut client: Mqtt<'_> = Client::new(session, RX, TX);
    let uart = Uart::new(&clock, READ_WAIT_MS);
    match run(&mut client, &clock, uart) {
        Ok(()) => {
            log(&[b"qemu-fw: OK"]);
            exit(true)
        }
        Err(failure) => {
            failure.report();
            exit(false)
        }
    }
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    log(&[b"qemu-fw: FAIL hard fault"]);
    exit(false)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    log(&[b"qemu-fw: FAIL panic"]);
    exit(false)
}
