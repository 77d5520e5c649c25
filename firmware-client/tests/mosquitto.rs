//! Interop with Debian's mosquitto, started per test on a free 127.0.0.1 port: the blocking client over
//! `std::net::TcpStream` and (feature `async`) the async client over tokio, in MQTT 3.1.1 and (feature `v5`) 5.0.

mod common;

use common::net::{self, Dev, Mosquitto};

macro_rules! interop {
    ($dev:ident, $v5:expr; $($name:ident: $scenario:ident;)*) => {$(
        #[test]
        fn $name() {
            let Some(m) = Mosquitto::start(stringify!($name)) else { return };
            let addr = m.addr;
            net::block_on(net::$scenario(|id| $dev::new(addr, id, $v5), concat!("mq-", stringify!($name))));
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
mod tokio {
    use super::*;
    use net::ADev;
    all_scenarios!(ADev, false);
}

#[cfg(all(feature = "async", feature = "v5"))]
mod tokio_v5 {
    use super::*;
    use net::ADev;
    all_scenarios!(ADev, true);
}
