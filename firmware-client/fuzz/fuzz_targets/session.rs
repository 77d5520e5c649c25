//! Bytes from the "broker" into the blocking client (and so the sans-IO session), in MQTT 3.1.1 or 5.0, read in
//! chunks of any size, with reconnects after every error: nothing may panic.
//!
//! Input: byte 0 picks the version (bit 0) and whether a valid CONNACK comes first (bit 1); byte 1 the read size;
//! the rest is the stream.
#![no_main]

use std::collections::VecDeque;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use firmware_client::blocking::Client;
use firmware_client::{Instant, Message, Options, ProtocolVersion, QoS, Session};
use libfuzzer_sys::fuzz_target;

struct Stream {
    data: VecDeque<u8>,
    chunk: usize,
}

impl ErrorType for Stream {
    type Error = ErrorKind;
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.data.is_empty() {
            return Err(ErrorKind::TimedOut);
        }
        let n = self.chunk.min(buf.len()).min(self.data.len());
        for b in buf.iter_mut().take(n) {
            *b = self.data.pop_front().unwrap_or(0);
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

fuzz_target!(|input: &[u8]| {
    let [mode, chunk, rest @ ..] = input else { return };
    let v5 = mode & 1 != 0;
    let mut options = Options::new("fuzz");
    options.version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
    options.keep_alive_secs = 1;
    let (mut store, mut rx, mut tx) = ([0u8; 128], [0u8; 64], [0u8; 64]);
    let mut c: Client<'_, Stream, 3, 2, 16> = Client::new(Session::new(options, &mut store), &mut rx, &mut tx);
    let _ = c.subscribe("a/#", QoS::ExactlyOnce);
    let _ = c.publish(Message::new("a/b", b"x", QoS::ExactlyOnce));
    let _ = c.publish(Message::new("a/c", b"y", QoS::AtLeastOnce));
    let mut data: VecDeque<u8> = VecDeque::new();
    if mode & 2 != 0 {
        data.extend(if v5 { &[0x20u8, 3, 0, 0, 0][..] } else { &[0x20, 2, 0, 0][..] });
    }
    data.extend(rest);
    let chunk = usize::from(*chunk).max(1);
    let mut now = 0u64;
    let _ = c.connect(Stream { data, chunk }, Instant::from_millis(now));
    for _ in 0..(rest.len() * 2 + 8) {
        now += 300;
        if c.poll(Instant::from_millis(now)).is_err() {
            // Reconnect with what is left of the stream.
            let left = c.disconnect(Instant::from_millis(now)).ok().flatten();
            let data = left.map(|s| s.data).unwrap_or_default();
            if data.is_empty() {
                break;
            }
            let _ = c.connect(Stream { data, chunk }, Instant::from_millis(now));
        }
    }
});
