//! Test helpers: a scripted in-memory transport, and (in `net`) TCP adapters, mosquitto and interop scenarios.
#![allow(dead_code)]

pub mod net;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use firmware_client::blocking::{Client, ClientError};
use firmware_client::{Instant, Options};

#[derive(Default)]
pub struct Wire {
    /// Bytes the "broker" has sent, not yet read.
    pub to_client: VecDeque<u8>,
    /// Bytes the client wrote.
    pub from_client: Vec<u8>,
    /// Largest read, in bytes.
    pub chunk: usize,
    pub broken: bool,
}

/// One end of a scripted connection; the test keeps the other (`Rc`) to feed and inspect it.
#[derive(Clone)]
pub struct Script(pub Rc<RefCell<Wire>>);

impl Script {
    pub fn new(chunk: usize) -> Self {
        Self(Rc::new(RefCell::new(Wire { chunk, ..Wire::default() })))
    }
    pub fn feed(&self, bytes: &[u8]) {
        self.0.borrow_mut().to_client.extend(bytes);
    }
    /// Everything the client wrote since the last call.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().from_client)
    }
    pub fn break_link(&self) {
        self.0.borrow_mut().broken = true;
    }
    pub fn unread(&self) -> usize {
        self.0.borrow().to_client.len()
    }
}

impl ErrorType for Script {
    type Error = ErrorKind;
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut w = self.0.borrow_mut();
        if w.broken {
            return Err(ErrorKind::ConnectionReset);
        }
        if w.to_client.is_empty() {
            return Err(ErrorKind::TimedOut);
        }
        let n = w.chunk.min(buf.len()).min(w.to_client.len());
        for b in buf.iter_mut().take(n) {
            *b = w.to_client.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut w = self.0.borrow_mut();
        if w.broken {
            return Err(ErrorKind::ConnectionReset);
        }
        w.from_client.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

pub type TestClient<'a> = Client<'a, Script, 4, 2, 32>;

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

pub fn opts(id: &'static str) -> Options<'static> {
    let mut o = Options::new(id);
    #[cfg(feature = "v5")]
    {
        o.version = firmware_client::ProtocolVersion::V311;
    }
    o.keep_alive_secs = 10;
    o.response_timeout_ms = 2_000;
    o
}

/// Polls until the script has nothing unread and the client has nothing more to say; returns the events as
/// their `Debug` text (events borrow the client's buffer).
pub fn pump(c: &mut TestClient<'_>, s: &Script, now: Instant) -> Result<Vec<String>, ClientError<ErrorKind>> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        let idle = s.unread() == 0;
        match c.poll(now)? {
            Some(ev) => events.push(format!("{ev:?}")),
            None if idle => return Ok(events),
            None => {}
        }
    }
    panic!("client never went idle");
}

/// The CONNECT `opts("c")` produces with keep alive 10 s and Clean Session 0.
pub const CONNECT_C: [u8; 15] = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 10, 0, 1, b'c'];
