//! Helpers for the integration and interop tests in `tests/tests/`.
//!
//! - [`start_broker`]: an in-process broker on its own port, with a checked shutdown.
//! - [`raw`]: a byte-exact MQTT client over a TCP socket, built on `mqtt-codec`, for exact flows and hostile input.
//! - [`client`]: a `rumqttc` client whose event loop runs in a task and reports what it receives.
//! - [`proxy`]: a TCP relay that can cut or freeze a connection, to break flows at a chosen packet.
//! - [`process`]: the built `broker` binary and external clients (`mosquitto_pub`, `python3`).
//!
//! Every wait has a timeout; every test takes its own port (127.0.0.1:0), client ids and topics ([`unique`]).

pub mod client;
pub mod http;
pub mod process;
pub mod proxy;
pub mod raw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use broker::{Broker, Settings};

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// An in-process broker serving on 127.0.0.1 at a port of its own.
pub struct TestBroker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A handle for its counters.
    pub broker: Broker,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), broker::Error>>>,
}

/// Starts a broker with these settings on 127.0.0.1:0.
///
/// # Panics
/// When the settings are refused or the port cannot be bound.
pub async fn start_broker(settings: Settings) -> TestBroker {
    let listener = within("bind 127.0.0.1:0", TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::new(settings).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = broker.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(vec![listener], async move {
                let _ = stopped.await;
            })
            .await
    });
    TestBroker { addr, broker, stop: Some(stop), task: Some(task) }
}

/// A broker with the default settings.
pub async fn start_default_broker() -> TestBroker {
    start_broker(Settings::default()).await
}

impl TestBroker {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Broker-wide counters.
    pub fn stats(&self) -> broker::Stats {
        self.broker.stats()
    }

    /// Waits (up to [`WAIT`]) until the counters satisfy `f`, and returns them; panics with the last value if not.
    pub async fn wait_stats(&self, what: &str, f: impl Fn(&broker::Stats) -> bool) -> broker::Stats {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if f(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; stats: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (up to [`WAIT`]) until the session's counters satisfy `f`, and returns them.
    pub async fn wait_session(
        &self,
        client_id: &str,
        what: &str,
        f: impl Fn(&broker::SessionStats) -> bool,
    ) -> broker::SessionStats {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.broker.session_stats(client_id);
            if let Some(s) = &s {
                if f(s) {
                    return s.clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what} of {client_id}; got {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the broker and asserts that `serve` returns `Ok` within 5 s.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("broker stopped with an error: {e}"),
            Ok(Err(e)) => panic!("broker task failed: {e}"),
            Err(_) => panic!("broker did not stop within 5 s of shutdown"),
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A name no other test in this process uses: `prefix-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `f` under [`WAIT`], panicking with `what` on timeout.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    within_for(WAIT, what, f).await
}

/// Runs `f` under `limit`, panicking with `what` on timeout.
pub async fn within_for<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}
