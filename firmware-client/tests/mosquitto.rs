//! Interop with Debian's mosquitto, started per test on a free 127.0.0.1 port: the blocking client over
//! `std::net::TcpStream` (the async client over tokio is in `async_tokio.rs`).

mod common;

use common::net::{self, Mosquitto};

macro_rules! interop {
    ($($name:ident: $scenario:ident, $v5:expr;)*) => {$(
        #[test]
        fn $name() {
            let Some(m) = Mosquitto::start(stringify!($name)) else { return };
            net::$scenario(m.addr, concat!("mq-", stringify!($name)), $v5);
        }
    )*};
}

interop! {
    qos_0_1_2_both_ways: qos_both_ways, false;
    qos2_publish_killed_midflow_arrives_once: qos2_outbound_killed, false;
    qos2_receive_killed_midflow_delivered_once: qos2_inbound_killed, false;
    offline_publishes_delivered_after_reconnect: offline_publishes, false;
}

#[cfg(feature = "v5")]
mod v5 {
    use super::*;

    interop! {
    v5_qos_0_1_2_both_ways: qos_both_ways, true;
    v5_qos2_publish_killed_midflow_arrives_once: qos2_outbound_killed, true;
    v5_qos2_receive_killed_midflow_delivered_once: qos2_inbound_killed, true;
    v5_offline_publishes_delivered_after_reconnect: offline_publishes, true;
    }
}
