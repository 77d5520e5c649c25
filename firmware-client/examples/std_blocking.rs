//! The blocking client on a host, over `std::net::TcpStream`: subscribes to `demo/in/#`, publishes a counter to
//! `demo/out` every 2 s at QoS 1, prints what arrives, and reconnects (resuming the session) when the link dies.
//!
//! ```sh
//! cargo run -p firmware-client --example std_blocking -- 127.0.0.1:1883
//! ```

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use firmware_client::blocking::Client;
use firmware_client::{Event, Instant, Message, Options, QoS, Session};

/// The adapter: a socket read timeout shows as `TimedOut`, which the client takes as "nothing yet".
struct Tcp(TcpStream);

impl embedded_io::ErrorType for Tcp {
    type Error = io::Error;
}

impl embedded_io::Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

impl embedded_io::Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:1883".into());
    let start = std::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);

    let (mut store, mut rx, mut tx) = ([0u8; 1024], [0u8; 512], [0u8; 512]);
    let mut options = Options::new("firmware-client-demo");
    options.keep_alive_secs = 15;
    let session: Session<'_, 8, 2, 32> = Session::new(options, &mut store);
    let mut client = Client::new(session, &mut rx, &mut tx);
    let inbox = client.subscribe("demo/in/#", QoS::ExactlyOnce).map_err(|_| "subscription table full")?;

    let mut counter = 0u32;
    let mut next_publish = now();
    loop {
        let stream = match TcpStream::connect(&addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("connect {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        if client.connect(Tcp(stream), now()).is_err() {
            continue;
        }
        loop {
            if now() >= next_publish {
                counter += 1;
                let payload = counter.to_string();
                // Accepted even while offline: sent in order after the reconnect.
                match client.publish(Message::new("demo/out", payload.as_bytes(), QoS::AtLeastOnce)) {
                    Ok(_) => {}
                    Err(full) => eprintln!("store full, dropping {:?}", full.into_inner().payload),
                }
                next_publish = now().after(2_000);
            }
            match client.poll(now()) {
                Ok(Some(Event::Connected { session_present })) => {
                    println!("connected, session present: {session_present}")
                }
                Ok(Some(Event::Message(m, Some(sub)))) if sub == inbox => {
                    println!("{} {:?}: {}", m.topic, m.qos, String::from_utf8_lossy(m.payload));
                }
                Ok(Some(Event::Published { pid, .. })) => println!("published #{}", pid.get()),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("link down: {e:?}; reconnecting");
                    break;
                }
            }
        }
    }
}
