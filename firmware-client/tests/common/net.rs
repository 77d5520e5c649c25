//! Interop helpers: TCP adapters for both front ends, a mosquitto process guard, and scenarios that run against
//! any broker address.
#![allow(dead_code)]

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as StdInstant};

use firmware_client::blocking::Client;
use firmware_client::{Event, Instant, Message, Options, ProtocolVersion, QoS, Session};

/// `std::net::TcpStream` as an `embedded_io` transport, with the read timeout the blocking client needs.
pub struct Tcp(pub TcpStream);

impl embedded_io::ErrorType for Tcp {
    type Error = io::Error;
}

impl embedded_io::Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            // A socket read timeout shows as WouldBlock on Unix: tell the client "nothing yet".
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

/// Whether interop tests must run (CI) rather than skip when a binary is missing.
pub fn required() -> bool {
    std::env::var_os("REQUIRE_INTEROP").is_some_and(|v| v == "1")
}

/// A mosquitto started on a free 127.0.0.1 port with a generated config; killed on drop.
pub struct Mosquitto {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` (skip) when it is not installed and `REQUIRE_INTEROP` is unset.
    pub fn start(tag: &str) -> Option<Self> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| std::path::Path::new(p).exists());
        let Some(bin) = bin else {
            assert!(!required(), "mosquitto is not installed and REQUIRE_INTEROP=1");
            eprintln!("skipping: mosquitto not installed");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("fw-mosq-{tag}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let m = Self { child, dir, addr };
        let deadline = StdInstant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(StdInstant::now() < deadline, "mosquitto did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An event with owned data.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Connected(bool),
    Msg(String, Vec<u8>, QoS),
    Published(u16),
    Subscribed(Option<QoS>),
    Unsubscribed,
    Down(String),
}

pub fn own(e: &Event<'_>) -> Ev {
    match e {
        Event::Connected { session_present } => Ev::Connected(*session_present),
        Event::Message(m, _) => Ev::Msg(m.topic.to_owned(), m.payload.to_vec(), m.qos),
        Event::Published { pid, .. } => Ev::Published(pid.get()),
        Event::Subscribed { granted, .. } => Ev::Subscribed(*granted),
        Event::Unsubscribed { .. } => Ev::Unsubscribed,
        _ => Ev::Down("unknown event".into()),
    }
}

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

pub fn options(id: &str, v5: bool) -> Options<'static> {
    let mut o = Options::new(Box::leak(id.to_owned().into_boxed_str()));
    o.keep_alive_secs = 30;
    o.response_timeout_ms = 5_000;
    #[cfg(feature = "v5")]
    {
        o.version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
    }
    #[cfg(not(feature = "v5"))]
    assert!(!v5, "v5 scenarios need the v5 feature");
    let _ = ProtocolVersion::V311;
    o
}

/// What the scenarios need from a device, so they run the blocking and the async client alike.
#[allow(async_fn_in_trait)]
pub trait Device {
    /// Opens TCP and sends CONNECT; `step` then sees CONNACK.
    async fn open(&mut self);
    /// One poll; errors are recorded as `Down` and polling stops until the next `open`.
    async fn step(&mut self);
    /// Sends what is queued.
    async fn flush(&mut self);
    /// Kills the TCP connection under the client (as a network failure would).
    fn kill(&mut self);
    fn events(&self) -> &[Ev];
    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS);
    fn subscribe(&mut self, filter: &'static str);
    /// Outbound messages the session still holds.
    fn pending(&mut self) -> usize;
}

fn messages<D: Device>(d: &D) -> Vec<(String, Vec<u8>, QoS)> {
    d.events()
        .iter()
        .filter_map(|e| if let Ev::Msg(t, p, q) = e { Some((t.clone(), p.clone(), *q)) } else { None })
        .collect()
}

fn count<D: Device>(d: &D, f: impl Fn(&Ev) -> bool) -> usize {
    d.events().iter().filter(|e| f(e)).count()
}

fn published<D: Device>(d: &D) -> usize {
    count(d, |e| matches!(e, Ev::Published(_)))
}

fn downs<D: Device>(d: &D) -> usize {
    count(d, |e| matches!(e, Ev::Down(_)))
}

/// Steps every device until `done` holds; panics after [`TIMEOUT`].
pub async fn wait<D: Device>(devs: &mut [&mut D], done: impl Fn(&[&mut D]) -> bool) {
    let deadline = StdInstant::now() + TIMEOUT;
    while !done(devs) {
        assert!(
            StdInstant::now() < deadline,
            "timed out; events: {:?}",
            devs.iter().map(|d| d.events()).collect::<Vec<_>>()
        );
        for d in devs.iter_mut() {
            d.step().await;
        }
    }
}

/// Steps every device for `ms` milliseconds (to catch duplicates that must not come).
pub async fn settle<D: Device>(devs: &mut [&mut D], ms: u64) {
    let end = StdInstant::now() + Duration::from_millis(ms);
    while StdInstant::now() < end {
        for d in devs.iter_mut() {
            d.step().await;
        }
    }
}

/// Connects and waits for CONNACK; returns Session Present.
pub async fn connect<D: Device>(d: &mut D) -> bool {
    d.open().await;
    let n = d.events().len();
    wait(&mut [&mut *d], |d| d[0].events()[n..].iter().any(|e| matches!(e, Ev::Connected(_)))).await;
    d.events()[n..].iter().find_map(|e| if let Ev::Connected(sp) = e { Some(*sp) } else { None }).unwrap()
}

async fn kill_and_wait<D: Device>(d: &mut D) {
    let n = downs(d);
    d.kill();
    wait(&mut [&mut *d], |d| downs(&*d[0]) > n).await;
}

async fn subscribe<D: Device>(d: &mut D, filter: &str) {
    let n = d.events().len();
    d.subscribe(Box::leak(filter.to_owned().into_boxed_str()));
    wait(&mut [&mut *d], |d| d[0].events()[n..].contains(&Ev::Subscribed(Some(QoS::ExactlyOnce)))).await;
}

fn qos(i: usize) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3]
}

/// QoS 0, 1 and 2 from the device to a subscriber and from a publisher to the device.
pub async fn qos_both_ways<D: Device>(mk: impl Fn(&str) -> D, tag: &str) {
    let (mut dev, mut peer) = (mk(&format!("{tag}-dev")), mk(&format!("{tag}-peer")));
    assert!(!connect(&mut dev).await);
    assert!(!connect(&mut peer).await);
    subscribe(&mut dev, &format!("{tag}/in/#")).await;
    let out = format!("{tag}/out");
    subscribe(&mut peer, &out).await;
    for i in 0..3 {
        dev.publish(&out, format!("up{i}").as_bytes(), qos(i));
    }
    let inn: Vec<String> = (0..3).map(|i| format!("{tag}/in/{i}")).collect();
    for (i, topic) in inn.iter().enumerate() {
        peer.publish(topic, format!("down{i}").as_bytes(), qos(i));
    }
    wait(&mut [&mut dev, &mut peer], |d| {
        messages(&*d[0]).len() >= 3 && messages(&*d[1]).len() >= 3 && d.iter().all(|d| published(&**d) == 2)
    })
    .await;
    settle(&mut [&mut dev, &mut peer], 200).await;
    let want_up: Vec<_> = (0..3).map(|i| (out.clone(), format!("up{i}").into_bytes(), qos(i))).collect();
    let want_down: Vec<_> =
        inn.iter().enumerate().map(|(i, t)| (t.clone(), format!("down{i}").into_bytes(), qos(i))).collect();
    assert_eq!(messages(&peer), want_up);
    assert_eq!(messages(&dev), want_down);
}

/// The device's TCP connection dies with its QoS 2 PUBLISH unacknowledged; after the reconnect it resends with
/// DUP=1 and the subscriber gets the message exactly once.
pub async fn qos2_outbound_killed<D: Device>(mk: impl Fn(&str) -> D, tag: &str) {
    let (mut dev, mut peer) = (mk(&format!("{tag}-dev")), mk(&format!("{tag}-peer")));
    connect(&mut dev).await;
    connect(&mut peer).await;
    let topic = format!("{tag}/out");
    subscribe(&mut peer, &topic).await;
    dev.publish(&topic, b"once", QoS::ExactlyOnce);
    dev.flush().await;
    kill_and_wait(&mut dev).await;
    assert_eq!(dev.pending(), 1, "still in flight");
    assert!(connect(&mut dev).await, "session resumed");
    wait(&mut [&mut dev, &mut peer], |d| published(&*d[0]) == 1 && !messages(&*d[1]).is_empty()).await;
    settle(&mut [&mut dev, &mut peer], 300).await;
    assert_eq!(messages(&peer), vec![(topic, b"once".to_vec(), QoS::ExactlyOnce)]);
    assert_eq!(dev.pending(), 0);
}

/// The device's TCP connection dies right after it received a QoS 2 message and before its PUBREC left; the
/// broker resends after the reconnect and the device still delivers it exactly once.
pub async fn qos2_inbound_killed<D: Device>(mk: impl Fn(&str) -> D, tag: &str) {
    let (mut dev, mut peer) = (mk(&format!("{tag}-dev")), mk(&format!("{tag}-peer")));
    connect(&mut dev).await;
    connect(&mut peer).await;
    let topic = format!("{tag}/in");
    subscribe(&mut dev, &topic).await;
    peer.publish(&topic, b"exactly", QoS::ExactlyOnce);
    // Step until the message is delivered, then kill before the next poll sends PUBREC.
    wait(&mut [&mut peer, &mut dev], |d| !messages(&*d[1]).is_empty()).await;
    kill_and_wait(&mut dev).await;
    assert!(connect(&mut dev).await, "session resumed");
    wait(&mut [&mut dev, &mut peer], |d| published(&*d[1]) == 1).await;
    settle(&mut [&mut dev, &mut peer], 300).await;
    assert_eq!(messages(&dev), vec![(topic, b"exactly".to_vec(), QoS::ExactlyOnce)]);
}

/// Publishes made while the link is down are delivered after the reconnect.
pub async fn offline_publishes<D: Device>(mk: impl Fn(&str) -> D, tag: &str) {
    let (mut dev, mut peer) = (mk(&format!("{tag}-dev")), mk(&format!("{tag}-peer")));
    connect(&mut dev).await;
    connect(&mut peer).await;
    let topic = format!("{tag}/out");
    subscribe(&mut peer, &topic).await;
    kill_and_wait(&mut dev).await;
    for i in 0..6 {
        dev.publish(&topic, format!("m{i}").as_bytes(), qos(i));
    }
    connect(&mut dev).await;
    wait(&mut [&mut dev, &mut peer], |d| messages(&*d[1]).len() >= 6).await;
    settle(&mut [&mut dev, &mut peer], 200).await;
    // The client sends in order (the scripted tests check the bytes); a broker may forward a QoS 2 message only
    // on PUBREL (mosquitto does), so order is compared per QoS level.
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let got: Vec<_> = messages(&peer).into_iter().filter(|m| m.2 == q).collect();
        let want: Vec<_> =
            (0..6).filter(|&i| qos(i) == q).map(|i| (topic.clone(), format!("m{i}").into_bytes(), q)).collect();
        assert_eq!(got, want, "{q:?}");
    }
    assert_eq!(messages(&peer).len(), 6);
}

/// A device: the blocking client over `std::net::TcpStream`, its own clock, and the events it has seen.
pub struct Dev {
    pub c: Client<'static, Tcp, 8, 4, 64>,
    addr: SocketAddr,
    start: StdInstant,
    raw: Option<TcpStream>,
    events: Vec<Ev>,
    up: bool,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl Dev {
    pub fn new(addr: SocketAddr, id: &str, v5: bool) -> Self {
        let session = Session::new(options(id, v5), leak(2048));
        Self {
            c: Client::new(session, leak(1024), leak(1024)),
            addr,
            start: StdInstant::now(),
            raw: None,
            events: Vec::new(),
            up: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }
}

impl Device for Dev {
    async fn open(&mut self) {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        s.set_nodelay(true).unwrap();
        self.raw = Some(s.try_clone().unwrap());
        let now = self.now();
        self.c.connect(Tcp(s), now).unwrap();
        self.up = true;
    }

    async fn step(&mut self) {
        if !self.up {
            std::thread::sleep(Duration::from_millis(5));
            return;
        }
        let now = self.now();
        match self.c.poll(now) {
            Ok(Some(e)) => self.events.push(own(&e)),
            Ok(None) => {}
            Err(e) => {
                self.events.push(Ev::Down(format!("{e:?}")));
                self.up = false;
            }
        }
    }

    async fn flush(&mut self) {
        let now = self.now();
        self.c.flush(now).unwrap();
    }

    fn kill(&mut self) {
        if let Some(s) = self.raw.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn events(&self) -> &[Ev] {
        &self.events
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        self.c.publish(Message::new(topic, payload, qos)).unwrap();
    }

    fn subscribe(&mut self, filter: &'static str) {
        self.c.subscribe(filter, QoS::ExactlyOnce).unwrap();
    }

    fn pending(&mut self) -> usize {
        self.c.session().pending()
    }
}

#[cfg(feature = "async")]
#[allow(unused_imports)]
pub use tokio_dev::ADev;

#[cfg(feature = "async")]
mod tokio_dev {
    use super::*;
    use firmware_client::asynch::Client as AsyncClient;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A tokio `TcpStream` as an `embedded_io_async` transport. tokio's `read` and `write` are cancel-safe.
    pub struct TokioTcp(tokio::net::TcpStream);

    impl embedded_io_async::ErrorType for TokioTcp {
        type Error = io::Error;
    }

    impl embedded_io_async::Read for TokioTcp {
        async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf).await
        }
    }

    impl embedded_io_async::Write for TokioTcp {
        async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf).await
        }
        async fn flush(&mut self) -> io::Result<()> {
            self.0.flush().await
        }
    }

    /// A device running the async client over tokio; each poll runs under a short timeout, so it is cancelled
    /// often, which exercises its cancel safety.
    pub struct ADev {
        pub c: AsyncClient<'static, TokioTcp, 8, 4, 64>,
        addr: SocketAddr,
        start: StdInstant,
        raw: Option<TcpStream>,
        events: Vec<Ev>,
        up: bool,
    }

    impl ADev {
        pub fn new(addr: SocketAddr, id: &str, v5: bool) -> Self {
            let session = Session::new(options(id, v5), leak(2048));
            let c = AsyncClient::new(session, leak(1024), leak(1024));
            Self { c, addr, start: StdInstant::now(), raw: None, events: Vec::new(), up: false }
        }

        fn now(&self) -> Instant {
            Instant::from_millis(self.start.elapsed().as_millis() as u64)
        }
    }

    impl Device for ADev {
        async fn open(&mut self) {
            let s = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(self.addr)).await.unwrap().unwrap();
            s.set_nodelay(true).unwrap();
            // Keep a std handle to the same socket, to kill it from outside.
            let std = s.into_std().unwrap();
            self.raw = Some(std.try_clone().unwrap());
            let s = tokio::net::TcpStream::from_std(std).unwrap();
            let now = self.now();
            tokio::time::timeout(TIMEOUT, self.c.connect(TokioTcp(s), now)).await.unwrap().unwrap();
            self.up = true;
        }

        async fn step(&mut self) {
            if !self.up {
                tokio::time::sleep(Duration::from_millis(5)).await;
                return;
            }
            let now = self.now();
            match tokio::time::timeout(Duration::from_millis(10), self.c.poll(now)).await {
                Err(_elapsed) => {}
                Ok(Ok(Some(e))) => self.events.push(own(&e)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    self.events.push(Ev::Down(format!("{e:?}")));
                    self.up = false;
                }
            }
        }

        async fn flush(&mut self) {
            let now = self.now();
            tokio::time::timeout(TIMEOUT, self.c.flush(now)).await.unwrap().unwrap();
        }

        fn kill(&mut self) {
            if let Some(s) = self.raw.take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }

        fn events(&self) -> &[Ev] {
            &self.events
        }

        fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
            self.c.publish(Message::new(topic, payload, qos)).unwrap();
        }

        fn subscribe(&mut self, filter: &'static str) {
            self.c.subscribe(filter, QoS::ExactlyOnce).unwrap();
        }

        fn pending(&mut self) -> usize {
            self.c.session().pending()
        }
    }
}

/// Runs a scenario future to completion on a current-thread tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}
