//! Turning the file form into [`Settings`]: ranges, names and combinations checked once, each error naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mqtt_codec::QoS;

use super::file::{FileConfig, FileListener, FileMqtt, Int};
use super::{
    AuthSettings, ClientAuth, Config, ConfigError, JwtSettings, Limits, ListenerSettings, LogSettings,
    MAX_PACKET_SIZE_LIMIT, MAX_TOPIC_LEVELS, MqttSettings, SessionSettings, Settings, TlsSettings, Transport,
    check_anonymous,
};
use crate::router::SharedStrategy;

impl FileListener {
    fn validate_auth(&self, i: usize) -> Result<AuthSettings, ConfigError> {
        let file = |k: &str, v: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some("") => Err(ConfigError::invalid(format!("listeners[{i}].{k}"), "must name a file")),
                Some(p) => Ok(Some(PathBuf::from(p))),
            }
        };
        let jwt = match &self.jwt {
            None => None,
            Some(j) => {
                let key = |k: &str| format!("listeners[{i}].jwt.{k}");
                if j.public_key_files.is_empty() {
                    return Err(ConfigError::invalid(key("public_key_files"), "needs at least one PEM public key"));
                }
                if j.public_key_files.iter().any(|f| f.trim().is_empty()) {
                    return Err(ConfigError::invalid(key("public_key_files"), "must name files"));
                }
                if j.audience.trim().is_empty() {
                    return Err(ConfigError::invalid(key("audience"), "must name the audience tokens are for"));
                }
                let username_claim = j.username_claim.as_deref().map_or("sub", str::trim).to_owned();
                if username_claim.is_empty() {
                    return Err(ConfigError::invalid(key("username_claim"), "must name a claim, such as \"sub\""));
                }
                Some(JwtSettings {
                    public_key_files: j.public_key_files.iter().map(|f| PathBuf::from(f.trim())).collect(),
                    audience: j.audience.trim().to_owned(),
                    issuer: j.issuer.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned),
                    username_claim,
                    leeway_secs: match j.leeway_secs {
                        Some(v) => ranged(&key("leeway_secs"), v, 0, 3600)?,
                        None => 60,
                    },
                })
            }
        };
        Ok(AuthSettings {
            allow_anonymous: self.allow_anonymous.map(|b| b.0),
            password_file: file("password_file", &self.password_file)?,
            acl_file: file("acl_file", &self.acl_file)?,
            jwt,
        })
    }

    fn validate(&self, i: usize) -> Result<(Transport, Option<TlsSettings>), ConfigError> {
        let key = |k: &str| format!("listeners[{i}].{k}");
        let transport = match self.transport.as_deref().map(str::trim) {
            None | Some("mqtt") => {
                if self.path.is_some() {
                    return Err(ConfigError::invalid(key("path"), "only a \"websocket\" listener has a path"));
                }
                Transport::Mqtt
            }
            Some("websocket") => {
                let path = self.path.as_deref().unwrap_or("/mqtt").trim();
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        key("path"),
                        format!("must start with / and have no spaces, as in \"/mqtt\" (got {path:?})"),
                    ));
                }
                Transport::WebSocket { path: path.to_owned() }
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    key("transport"),
                    format!("must be \"mqtt\" or \"websocket\" (got {other:?})"),
                ));
            }
        };
        let Some(t) = &self.tls else { return Ok((transport, None)) };
        let file = |k: &str, v: &str| -> Result<PathBuf, ConfigError> {
            let v = v.trim();
            if v.is_empty() {
                return Err(ConfigError::invalid(key(&format!("tls.{k}")), "must name a PEM file"));
            }
            Ok(PathBuf::from(v))
        };
        let client_auth = match t.client_auth.as_deref().map(str::trim) {
            None | Some("none") => ClientAuth::None,
            Some("optional") => ClientAuth::Optional,
            Some("required") => ClientAuth::Required,
            Some(other) => {
                return Err(ConfigError::invalid(
                    key("tls.client_auth"),
                    format!("must be \"none\", \"optional\" or \"required\" (got {other:?})"),
                ));
            }
        };
        let ca_file = t.ca_file.as_deref().map(|v| file("ca_file", v)).transpose()?;
        if client_auth != ClientAuth::None && ca_file.is_none() {
            return Err(ConfigError::invalid(
                key("tls.ca_file"),
                "is needed when client_auth is \"optional\" or \"required\"",
            ));
        }
        let use_identity_as_username = t.use_identity_as_username.is_some_and(|b| b.0);
        if use_identity_as_username && client_auth == ClientAuth::None {
            return Err(ConfigError::invalid(
                key("tls.use_identity_as_username"),
                "needs client_auth \"optional\" or \"required\"",
            ));
        }
        let crl_files = t.crl_files.iter().map(|v| file("crl_files", v)).collect::<Result<Vec<_>, _>>()?;
        let tls = TlsSettings {
            cert_file: file("cert_file", &t.cert_file)?,
            key_file: file("key_file", &t.key_file)?,
            client_auth,
            ca_file,
            crl_files,
            use_identity_as_username,
        };
        Ok((transport, Some(tls)))
    }
}

impl FileMqtt {
    fn validate(&self) -> Result<MqttSettings, ConfigError> {
        let maximum_qos = match ranged::<u8>("mqtt.maximum_qos", self.maximum_qos, 0, 2)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let shared_subscription_strategy = match self.shared_subscription_strategy.trim() {
            "round_robin" => SharedStrategy::RoundRobin,
            "random" => SharedStrategy::Random,
            other => {
                return Err(ConfigError::invalid(
                    "mqtt.shared_subscription_strategy",
                    format!("must be \"round_robin\" or \"random\" (got {other:?})"),
                ));
            }
        };
        let expiry = ranged::<u64>("mqtt.max_session_expiry_secs", self.max_session_expiry_secs, 0, u32::MAX.into())?;
        let info = self.response_information.trim();
        if info.contains(['+', '#', '\0']) {
            return Err(ConfigError::invalid(
                "mqtt.response_information",
                "must be usable as a topic prefix (no '+', '#' or NUL)",
            ));
        }
        Ok(MqttSettings {
            retain_available: self.retain_available.0,
            maximum_qos,
            wildcard_subscriptions: self.wildcard_subscriptions.0,
            subscription_identifiers: self.subscription_identifiers.0,
            shared_subscriptions: self.shared_subscriptions.0,
            shared_subscription_strategy,
            receive_maximum: ranged("mqtt.receive_maximum", self.receive_maximum, 1, u16::MAX)?,
            topic_alias_maximum: ranged("mqtt.topic_alias_maximum", self.topic_alias_maximum, 0, u16::MAX)?,
            server_topic_aliases: self.server_topic_aliases.0,
            max_session_expiry: (expiry > 0).then(|| Duration::from_secs(expiry)),
            response_information: (!info.is_empty()).then(|| info.to_owned()),
            max_topic_levels: ranged::<u64>("mqtt.max_topic_levels", self.max_topic_levels, 1, MAX_TOPIC_LEVELS as u64)
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX))?,
        })
    }
}

/// Largest connection cap: what a tokio semaphore can count.
const MAX_CONNECTIONS_LIMIT: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// `value` as a `T` within `min..=max`, or an error naming `key`.
fn ranged<T>(key: &str, Int(value): Int, min: T, max: T) -> Result<T, ConfigError>
where
    T: TryFrom<i64> + Into<i128> + Copy + std::fmt::Display,
{
    let ok = i128::from(value) >= min.into() && i128::from(value) <= max.into();
    match T::try_from(value) {
        Ok(v) if ok => Ok(v),
        _ => Err(ConfigError::invalid(key, format!("must be between {min} and {max} (got {value})"))),
    }
}

/// `value` as a `usize` of at least `min`, or an error naming `key`.
fn at_least(key: &str, Int(value): Int, min: usize) -> Result<usize, ConfigError> {
    match usize::try_from(value) {
        Ok(v) if v >= min => Ok(v),
        _ => Err(ConfigError::invalid(key, format!("must be at least {min} (got {value})"))),
    }
}

impl FileConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let l = &self.limits;
        let max_connections_limit = u64::try_from(MAX_CONNECTIONS_LIMIT).unwrap_or(u64::MAX);
        let conn_cap = |key: &str, v: Int| -> Result<usize, ConfigError> {
            let n = ranged::<u64>(key, v, 1, max_connections_limit)?;
            usize::try_from(n).map_err(|_| ConfigError::invalid(key, "too large"))
        };
        let limits = Limits {
            max_connections: conn_cap("limits.max_connections", l.max_connections)?,
            max_packet_size: ranged("limits.max_packet_size", l.max_packet_size, 16, MAX_PACKET_SIZE_LIMIT)?,
            connect_timeout: Duration::from_secs(ranged(
                "limits.connect_timeout_secs",
                l.connect_timeout_secs,
                1,
                3600,
            )?),
            max_inflight_messages: ranged("limits.max_inflight_messages", l.max_inflight_messages, 1, u16::MAX)?,
            max_queued_messages: at_least("limits.max_queued_messages", l.max_queued_messages, 1)?,
            max_queued_bytes: at_least("limits.max_queued_bytes", l.max_queued_bytes, 1)?,
            max_retained_messages: at_least("limits.max_retained_messages", l.max_retained_messages, 0)?,
            max_subscriptions_per_client: at_least(
                "limits.max_subscriptions_per_client",
                l.max_subscriptions_per_client,
                1,
            )?,
            max_filters_per_subscribe: at_least("limits.max_filters_per_subscribe", l.max_filters_per_subscribe, 1)?,
            max_connect_packet_size: ranged(
                "limits.max_connect_packet_size",
                l.max_connect_packet_size,
                16,
                MAX_PACKET_SIZE_LIMIT,
            )?,
            max_pending_handshakes: conn_cap("limits.max_pending_handshakes", l.max_pending_handshakes)?,
            max_connections_per_address: at_least(
                "limits.max_connections_per_address",
                l.max_connections_per_address,
                0,
            )?,
            max_connection_rate_per_address: ranged(
                "limits.max_connection_rate_per_address",
                l.max_connection_rate_per_address,
                0,
                u32::MAX,
            )?,
            per_address_limits_on_loopback: l.per_address_limits_on_loopback.0,
            max_sessions: at_least("limits.max_sessions", l.max_sessions, 0)?,
            max_retained_bytes: at_least("limits.max_retained_bytes", l.max_retained_bytes, 0)?,
            max_pending_wills: at_least("limits.max_pending_wills", l.max_pending_wills, 0)?,
            max_message_memory: at_least("limits.max_message_memory", l.max_message_memory, 0)?,
            disconnect_slow_consumers: l.disconnect_slow_consumers.0,
        };
        // A message bigger than the whole queue could never be delivered; refuse that setup up front.
        let packet = usize::try_from(limits.max_packet_size).unwrap_or(usize::MAX);
        if limits.max_queued_bytes < packet {
            return Err(ConfigError::invalid(
                "limits.max_queued_bytes",
                format!(
                    "must be at least limits.max_packet_size ({packet}) so that the largest message fits (got {})",
                    limits.max_queued_bytes
                ),
            ));
        }

        if self.listeners.is_empty() {
            return Err(ConfigError::invalid("listeners", "at least one listener is needed"));
        }
        let mut listeners: Vec<ListenerSettings> = Vec::with_capacity(self.listeners.len());
        for (i, l) in self.listeners.iter().enumerate() {
            let key = format!("listeners[{i}].bind");
            let bind: SocketAddr = l.bind.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    &key,
                    format!(
                        "not an IP address and port such as \"127.0.0.1:1883\" or \"[::]:1883\" (got {:?})",
                        l.bind
                    ),
                )
            })?;
            if let Some(j) = listeners.iter().position(|o| o.bind == bind && bind.port() != 0) {
                return Err(ConfigError::invalid(&key, format!("{bind} is already listeners[{j}].bind")));
            }
            let max_connections = match l.max_connections {
                Some(v) => Some(conn_cap(&format!("listeners[{i}].max_connections"), v)?),
                None => None,
            };
            let (transport, tls) = l.validate(i)?;
            let auth = l.validate_auth(i)?;
            let listener = ListenerSettings { bind, max_connections, transport, tls, auth };
            check_anonymous(&listener).map_err(|reason| ConfigError::invalid(format!("listeners[{i}]"), reason))?;
            listeners.push(listener);
        }

        let s = &self.sessions;
        let expiry = ranged::<u64>(
            "sessions.persistent_session_expiry_secs",
            s.persistent_session_expiry_secs,
            0,
            u32::MAX.into(),
        )?;
        let sessions = SessionSettings {
            queue_qos0_offline: s.queue_qos0_offline.0,
            max_keepalive: ranged("sessions.max_keepalive", s.max_keepalive, 0, u16::MAX)?,
            idle_timeout_secs: ranged("sessions.idle_timeout_secs", s.idle_timeout_secs, 0, u16::MAX)?,
            persistent_session_expiry: (expiry > 0).then(|| Duration::from_secs(expiry)),
        };

        let mqtt = self.mqtt.validate()?;
        let persistence = self.persistence.validate()?;
        let http = self.http.validate()?;
        let sys = ranged::<u64>("sys_interval", self.sys_interval, 0, 86_400)?;
        let sys_interval = (sys > 0).then(|| Duration::from_secs(sys));
        let bridges = crate::bridge::validate(&self.bridges).map_err(|(key, why)| ConfigError::invalid(key, why))?;

        let level = self.log.level.trim();
        if level.is_empty() {
            return Err(ConfigError::invalid("log.level", "must not be empty (for example \"info\")"));
        }
        let format = self.log.format.parse().map_err(|reason| ConfigError::invalid("log.format", reason))?;
        let log = LogSettings { format, level: level.to_owned() };
        let settings = Settings { listeners, limits, sessions, mqtt, persistence, http, sys_interval, bridges };
        Ok(Config { settings, log })
    }
}
