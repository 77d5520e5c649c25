//! A minimal firmware image for measuring `firmware-client`: a publisher/subscriber over a transport whose bytes the
//! optimizer cannot predict (`black_box`), so every receive path stays linked.
//!
//! Without the `client` feature it builds the same image minus the client, as the baseline to subtract.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Stands in for a UART or TCP socket.
struct Opaque;

impl embedded_io::ErrorType for Opaque {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Opaque {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = black_box(buf.len()).min(buf.len());
        for b in buf.iter_mut().take(n) {
            *b = black_box(0);
        }
        if black_box(false) { Err(embedded_io::ErrorKind::TimedOut) } else { Ok(n) }
    }
}

impl embedded_io::Write for Opaque {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(black_box(buf).len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn millis() -> u64 {
    black_box(0)
}

#[cfg(feature = "client")]
fn run() -> ! {
    use firmware_client::blocking::Client;
    use firmware_client::{Event, Instant, Message, Options, QoS, Session};

    let mut store = [0u8; 512];
    let mut rx = [0u8; 256];
    let mut tx = [0u8; 256];
    let session: Session<'_, 4, 2, 32> = Session::new(Options::new("fw-1"), &mut store);
    let mut client = Client::new(session, &mut rx, &mut tx);
    let cmd = client.subscribe("cmd/fw-1/#", QoS::ExactlyOnce).ok();
    loop {
        if client.connect(Opaque, Instant::from_millis(millis())).is_err() {
            continue;
        }
        loop {
            let now = Instant::from_millis(millis());
            let qos = match black_box(0u8) {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            let _ = client.publish(Message::new("sensors/fw-1/t", black_box(b"21.5"), qos));
            match client.poll(now) {
                Ok(Some(Event::Message(m, sub))) if sub == cmd => {
                    black_box(m.payload);
                }
                Ok(other) => {
                    black_box(other.is_some());
                }
                Err(_) => break,
            }
        }
    }
}

#[cfg(not(feature = "client"))]
fn run() -> ! {
    use embedded_io::{Read, Write};
    let mut buf = [0u8; 256];
    loop {
        let _ = black_box(millis());
        if let Ok(n) = Opaque.read(&mut buf) {
            let _ = Opaque.write(buf.get(..n).unwrap_or_default());
        }
    }
}

#[entry]
fn main() -> ! {
    run()
}
