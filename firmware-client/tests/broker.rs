//! The same interop scenarios as `mosquitto.rs`, against our own broker started in-process on 127.0.0.1:0 (in its
//! own runtime thread, so the blocking client can block the test thread).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::net::{self, Dev};

/// Our broker on a free port; shut down (and checked to stop within 5 s) on drop.
struct TestBroker {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBroker {
    fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                broker::run(vec![listener], broker::Settings::default(), shutdown).await.unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("broker did not start");
        Self { addr, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let finished = t.is_finished();
            if finished {
                let _ = t.join();
            }
            if !std::thread::panicking() {
                assert!(finished, "broker did not shut down within 5 s");
            }
        }
    }
}

macro_rules! interop {
    ($dev:ident, $v5:expr; $($name:ident: $scenario:ident;)*) => {$(
        #[test]
        fn $name() {
            let b = TestBroker::start();
            let addr = b.addr;
            net::block_on(net::$scenario(|id| $dev::new(addr, id, $v5), concat!("ours-", stringify!($name))));
        }
    )*};
}

macro_rules! all_scenarios {
    ($dev:ident, $v5:expr) => {
        interop! { $dev, $v5;
            qos_0_1_2_both_ways: qos_both_ways;
            qos2_publish_killed_midflow_arrives_once: qos2_outbound_killed;
            qos2_receive_killed_midflow_delivered_once: qos2_inbound_killed;
            offline_publishes_delivered_after_reconnect: offline_publishes;
        }
    };
}

mod blocking {
    use super::*;
    all_scenarios!(Dev, false);
}

#[cfg(feature = "v5")]
mod blocking_v5 {
    use super::*;
    all_scenarios!(Dev, true);
}

#[cfg(feature = "async")]
mod tokio_async {
    use super::*;
    use net::ADev;
    all_scenarios!(ADev, false);
}

#[cfg(all(feature = "async", feature = "v5"))]
mod tokio_async_v5 {
    use super::*;
    use net::ADev;
    all_scenarios!(ADev, true);
}
