//! MQTT 5.0 on the same listener as 3.1/3.1.1 (issue 4): CONNECT/CONNACK properties, PUBLISH properties, subscription
//! options and identifiers, shared subscriptions, topic aliases, flow control, enhanced authentication, reason codes,
//! server DISCONNECTs, will delay and session expiry; then rumqttc v5, paho-mqtt and mosquitto against the broker.
//!
//! Raw-packet tests use the byte-exact client in `mqtt5/v5client.rs` (built on `mqtt-codec`), so every property and
//! reason code the broker sends is checked as it is on the wire.

#[path = "mqtt5/v5client.rs"]
mod v5client;

#[path = "mqtt5/auth.rs"]
mod auth;
#[path = "mqtt5/config.rs"]
mod config;
#[path = "mqtt5/conformance.rs"]
mod conformance;
#[path = "mqtt5/connack.rs"]
mod connack;
#[path = "mqtt5/edge.rs"]
mod edge;
#[path = "mqtt5/interop.rs"]
mod interop;
#[path = "mqtt5/publish.rs"]
mod publish;
#[path = "mqtt5/reasons.rs"]
mod reasons;
#[path = "mqtt5/subscribe.rs"]
mod subscribe;
#[path = "mqtt5/will.rs"]
mod will;

use std::time::Duration;

/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);
