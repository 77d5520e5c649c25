//! The file form: what TOML and the environment may say, before validation. Its defaults derive from the
//! validated settings' defaults, so each default is written once.

use serde::Deserialize;

use super::{Limits, LogSettings, MqttSettings, SessionSettings, Settings};
use crate::persist::FilePersistence;
use crate::router::SharedStrategy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileConfig {
    pub(super) sys_interval: Int,
    pub(super) listeners: Vec<FileListener>,
    pub(super) limits: FileLimits,
    pub(super) sessions: FileSessions,
    pub(super) mqtt: FileMqtt,
    pub(super) persistence: FilePersistence,
    pub(super) http: crate::http::FileHttp,
    pub(super) log: FileLog,
    pub(super) bridges: Vec<crate::bridge::FileBridge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub(super) bind: String,
    #[serde(default)]
    pub(super) max_connections: Option<Int>,
    #[serde(default)]
    pub(super) transport: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) tls: Option<FileTls>,
    #[serde(default)]
    pub(super) allow_anonymous: Option<Bool>,
    #[serde(default)]
    pub(super) password_file: Option<String>,
    #[serde(default)]
    pub(super) acl_file: Option<String>,
    #[serde(default)]
    pub(super) jwt: Option<FileJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJwt {
    pub(super) public_key_files: Vec<String>,
    pub(super) audience: String,
    #[serde(default)]
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) username_claim: Option<String>,
    #[serde(default)]
    pub(super) leeway_secs: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) cert_file: String,
    pub(super) key_file: String,
    #[serde(default)]
    pub(super) client_auth: Option<String>,
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) crl_files: Vec<String>,
    #[serde(default)]
    pub(super) use_identity_as_username: Option<Bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileLimits {
    pub(super) max_connections: Int,
    pub(super) max_packet_size: Int,
    pub(super) connect_timeout_secs: Int,
    pub(super) max_inflight_messages: Int,
    pub(super) max_queued_messages: Int,
    pub(super) max_queued_bytes: Int,
    pub(super) max_retained_messages: Int,
    pub(super) max_subscriptions_per_client: Int,
    pub(super) max_filters_per_subscribe: Int,
    pub(super) max_connect_packet_size: Int,
    pub(super) max_pending_handshakes: Int,
    pub(super) max_connections_per_address: Int,
    pub(super) max_connection_rate_per_address: Int,
    pub(super) per_address_limits_on_loopback: Bool,
    pub(super) max_sessions: Int,
    pub(super) max_retained_bytes: Int,
    pub(super) max_pending_wills: Int,
    pub(super) max_message_memory: Int,
    pub(super) disconnect_slow_consumers: Bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileSessions {
    pub(super) queue_qos0_offline: Bool,
    pub(super) max_keepalive: Int,
    pub(super) idle_timeout_secs: Int,
    pub(super) persistent_session_expiry_secs: Int,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileMqtt {
    pub(super) retain_available: Bool,
    pub(super) maximum_qos: Int,
    pub(super) wildcard_subscriptions: Bool,
    pub(super) subscription_identifiers: Bool,
    pub(super) shared_subscriptions: Bool,
    pub(super) shared_subscription_strategy: String,
    pub(super) receive_maximum: Int,
    pub(super) topic_alias_maximum: Int,
    pub(super) server_topic_aliases: Bool,
    pub(super) max_session_expiry_secs: Int,
    pub(super) response_information: String,
    pub(super) max_topic_levels: Int,
}

impl Default for FileMqtt {
    fn default() -> Self {
        let m = MqttSettings::default();
        Self {
            retain_available: Bool(m.retain_available),
            maximum_qos: to_int(m.maximum_qos as u8),
            wildcard_subscriptions: Bool(m.wildcard_subscriptions),
            subscription_identifiers: Bool(m.subscription_identifiers),
            shared_subscriptions: Bool(m.shared_subscriptions),
            shared_subscription_strategy: strategy_name(m.shared_subscription_strategy).to_owned(),
            receive_maximum: to_int(m.receive_maximum),
            topic_alias_maximum: to_int(m.topic_alias_maximum),
            server_topic_aliases: Bool(m.server_topic_aliases),
            max_session_expiry_secs: to_int(m.max_session_expiry.map_or(0, |d| d.as_secs())),
            response_information: m.response_information.unwrap_or_default(),
            max_topic_levels: to_int(m.max_topic_levels),
        }
    }
}

fn strategy_name(s: SharedStrategy) -> &'static str {
    match s {
        SharedStrategy::RoundRobin => "round_robin",
        SharedStrategy::Random => "random",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileLog {
    pub(super) format: String,
    pub(super) level: String,
}

/// An integer, also from a string (environment variables without `try_parsing`); a float is an error rather
/// than being rounded, which is what the `config` crate would do for an `i64` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim().parse().map(Int).map_err(|_| E::invalid_type(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` or `false`, also as a string; the `config` crate alone would take `3` or `"on"` as `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bool(pub(crate) bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Bool(true)),
                    "false" => Ok(Bool(false)),
                    _ => Err(E::invalid_type(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn to_int<T: TryInto<i64>>(v: T) -> Int {
    Int(v.try_into().unwrap_or(i64::MAX))
}

impl Default for FileConfig {
    fn default() -> Self {
        let s = Settings::default();
        let listeners = s
            .listeners
            .iter()
            .map(|l| FileListener {
                bind: l.bind.to_string(),
                max_connections: l.max_connections.map(to_int),
                transport: None,
                path: None,
                tls: None,
                allow_anonymous: None,
                password_file: None,
                acl_file: None,
                jwt: None,
            })
            .collect();
        Self {
            listeners,
            limits: FileLimits::default(),
            sessions: FileSessions::default(),
            mqtt: FileMqtt::default(),
            persistence: FilePersistence::default(),
            http: crate::http::FileHttp::default(),
            sys_interval: Int(0),
            log: FileLog::default(),
            bridges: Vec::new(),
        }
    }
}

impl Default for FileLimits {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_connections: to_int(l.max_connections),
            max_packet_size: to_int(l.max_packet_size),
            connect_timeout_secs: to_int(l.connect_timeout.as_secs()),
            max_inflight_messages: to_int(l.max_inflight_messages),
            max_queued_messages: to_int(l.max_queued_messages),
            max_queued_bytes: to_int(l.max_queued_bytes),
            max_retained_messages: to_int(l.max_retained_messages),
            max_subscriptions_per_client: to_int(l.max_subscriptions_per_client),
            max_filters_per_subscribe: to_int(l.max_filters_per_subscribe),
            max_connect_packet_size: to_int(l.max_connect_packet_size),
            max_pending_handshakes: to_int(l.max_pending_handshakes),
            max_connections_per_address: to_int(l.max_connections_per_address),
            max_connection_rate_per_address: to_int(l.max_connection_rate_per_address),
            per_address_limits_on_loopback: Bool(l.per_address_limits_on_loopback),
            max_sessions: to_int(l.max_sessions),
            max_retained_bytes: to_int(l.max_retained_bytes),
            max_pending_wills: to_int(l.max_pending_wills),
            max_message_memory: to_int(l.max_message_memory),
            disconnect_slow_consumers: Bool(l.disconnect_slow_consumers),
        }
    }
}

impl Default for FileSessions {
    fn default() -> Self {
        let s = SessionSettings::default();
        Self {
            queue_qos0_offline: Bool(s.queue_qos0_offline),
            max_keepalive: to_int(s.max_keepalive),
            idle_timeout_secs: to_int(s.idle_timeout_secs),
            persistent_session_expiry_secs: to_int(s.persistent_session_expiry.map_or(0, |d| d.as_secs())),
        }
    }
}

impl Default for FileLog {
    fn default() -> Self {
        let l = LogSettings::default();
        Self { format: l.format.as_str().to_owned(), level: l.level }
    }
}
