//! A minimal firmware image for measuring `firmware-client`: a publisher/subscriber over a transport whose bytes the
//! optimizer cannot predict (`black_box`), so every receive path stays linked.
//!
//! Without the `client` feature it builds the same image minus the client, as the baseline to subtract.
#![no_std]
#![no_main]

use core::hint::black_box;
#[cfg(feature = "client")]
use core::mem::MaybeUninit;

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

/// The configuration measured: 4 messages in flight or queued, 2 subscriptions, 32-byte filters.
#[cfg(feature = "client")]
type Client = firmware_client::blocking::Client<'static, Opaque, 4, 2, 32>;

/// Lent buffers: 512-byte store, 256-byte receive and transmit buffers.
#[cfg(feature = "client")]
const BUFFERS: usize = 512 + 256 + 256;

#[cfg(feature = "client")]
fn run(
    client: &'static mut MaybeUninit<Client>,
    store: &'static mut [u8],
    rx: &'static mut [u8],
    tx: &'static mut [u8],
) -> ! {
    use firmware_client::{Event, Instant, Message, Options, QoS, Session};

    let client = client.write(Client::new(Session::new(Options::new("fw-1"), store), rx, tx));
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

#[cfg(feature = "client")]
#[entry]
fn main() -> ! {
    // Uninitialised, as `static_cell::StaticCell` keeps it: all zeros in `.bss`. An `Option<Client>` whose `None`
    // is not all zeros would go to `.data` and cost its whole size again in flash for the initial image.
    static mut CLIENT: MaybeUninit<Client> = MaybeUninit::uninit();
    static mut STORE: [u8; 512] = [0; 512];
    static mut RX: [u8; 256] = [0; 256];
    static mut TX: [u8; 256] = [0; 256];
    let _ = BUFFERS;
    run(CLIENT, STORE, RX, TX)
}

/// The baseline: runtime, the opaque transport and one 256-byte buffer.
#[cfg(not(feature = "client"))]
#[entry]
fn main() -> ! {
    static mut BUF: [u8; 256] = [0; 256];
    use embedded_io::{Read, Write};
    loop {
        let _ = black_box(millis());
        if let Ok(n) = Opaque.read(BUF.as_mut_slice()) {
            let _ = Opaque.write(BUF.get(..n).unwrap_or_default());
        }
    }
}
