//! Bridge settings: the `[[bridges]]` tables of the configuration file, validated into [`BridgeSettings`].
//!
//! The keys follow Mosquitto's bridge `connection` block one to one (see `docs/bridge.md`), and a `topics` entry is
//! Mosquitto's `topic` line: `PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`, with `""` for an empty
//! field.

use std::path::PathBuf;
use std::time::Duration;

use mqtt_codec::{QoS, TopicFilter};
use serde::Deserialize;

/// Which way a topic rule carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Upstream to local.
    In,
    /// Local to upstream.
    Out,
    /// Both.
    Both,
}

impl Direction {
    /// Whether local messages go upstream.
    pub fn is_out(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }

    /// Whether upstream messages come in.
    pub fn is_in(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// One `topic` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    /// The pattern (a topic filter; empty when the prefixes are whole topics).
    pub pattern: String,
    /// Direction.
    pub direction: Direction,
    /// The QoS of the subscription on each side.
    pub qos: QoS,
    /// Prepended to the pattern on the local broker.
    pub local_prefix: String,
    /// Prepended to the pattern on the upstream broker.
    pub remote_prefix: String,
}

impl TopicRule {
    /// The filter on the local broker.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter on the upstream broker.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The upstream topic of a local topic this rule matches, or `None` when it does not match.
    pub fn to_remote(&self, local: &str) -> Option<String> {
        map_topic(local, &self.local_prefix, &self.remote_prefix, &self.pattern)
    }

    /// The local topic of an upstream topic this rule matches, or `None` when it does not match.
    pub fn to_local(&self, remote: &str) -> Option<String> {
        map_topic(remote, &self.remote_prefix, &self.local_prefix, &self.pattern)
    }
}

/// Mosquitto's prefix rule: a topic `from + rest` that the pattern matches (`rest` against `pattern`) becomes
/// `to + rest`.
fn map_topic(topic: &str, from: &str, to: &str, pattern: &str) -> Option<String> {
    let rest = topic.strip_prefix(from)?;
    let matches = if pattern.is_empty() { rest.is_empty() } else { mqtt_codec::matches(pattern, rest) };
    matches.then(|| format!("{to}{rest}"))
}

/// The order in which the upstream addresses are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TryOrder {
    /// Every reconnection starts with the first address and moves on when one fails (Mosquitto
    /// `round_robin false`).
    #[default]
    InOrder,
    /// Each reconnection tries the address after the one used last (Mosquitto `round_robin true`).
    RoundRobin,
}

/// What a full bridge queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest queued messages are dropped (counted, logged) to make room.
    #[default]
    DropOldest,
    /// The new message is not queued for the bridge (counted, logged); an MQTT 5 publisher whose message nobody
    /// else took gets `0x97 Quota exceeded`.
    RefuseNewest,
}

/// MQTT version spoken upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

/// TLS towards the upstream broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    /// CA certificates (PEM) that the upstream's certificate must chain to.
    pub ca_file: PathBuf,
    /// Client certificate chain (PEM), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM).
    pub key_file: Option<PathBuf>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// The name the upstream certificate must carry (SNI), when not the host of the address.
    pub server_name: Option<String>,
}

/// One validated bridge.
#[derive(Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    /// Its name (`connection` in Mosquitto); the local session is `$bridge/<name>`.
    pub name: String,
    /// `host:port` of each upstream address.
    pub addresses: Vec<String>,
    /// How the addresses are tried.
    pub try_order: TryOrder,
    /// Client identifier upstream.
    pub client_id: String,
    /// User name upstream.
    pub username: Option<String>,
    /// Password upstream (never logged).
    pub password: Option<String>,
    /// TLS, when the upstream wants it.
    pub tls: Option<BridgeTls>,
    /// MQTT version.
    pub protocol: Protocol,
    /// MQTT 3.1.1: mark the CONNECT as a bridge's (protocol level `0x84`, Mosquitto's `try_private`), so the
    /// upstream neither sends our own messages back nor clears their RETAIN flag.
    pub try_private: bool,
    /// Keep alive upstream.
    pub keepalive: Duration,
    /// Clean start upstream. Off by default: a persistent upstream session keeps QoS 2 exactly once across
    /// reconnections and holds `in` messages while the link is down.
    pub clean_start: bool,
    /// Topic rules.
    pub topics: Vec<TopicRule>,
    /// Bytes of queued messages this bridge keeps for the upstream.
    pub max_queue_bytes: usize,
    /// What a full queue does.
    pub overflow: Overflow,
    /// QoS 1 and 2 messages sent upstream and not yet acknowledged (lowered to the upstream's Receive Maximum).
    /// MQTT 3.1.1 has no Receive Maximum, and Mosquitto closes the connection of a client with more in flight than
    /// its `max_inflight_messages` (20 by default): the default is 20 there, 100 with MQTT 5.
    pub max_inflight: u16,
    /// First wait before reconnecting; it doubles up to `reconnect_max`, with jitter.
    pub reconnect_min: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for BridgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSettings")
            .field("name", &self.name)
            .field("addresses", &self.addresses)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .field("protocol", &self.protocol)
            .field("topics", &self.topics)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

impl BridgeSettings {
    /// The client identifier of the local session that holds this bridge's queue.
    pub fn local_client_id(&self) -> String {
        format!("{}{}", super::CLIENT_ID_PREFIX, self.name)
    }

    /// A bridge with defaults, to `address`, named `name`, with these topic rules (for tests and embedding).
    pub fn new(name: &str, address: &str, topics: Vec<TopicRule>) -> Self {
        Self {
            name: name.to_owned(),
            addresses: vec![address.to_owned()],
            try_order: TryOrder::InOrder,
            client_id: default_client_id(name),
            username: None,
            password: None,
            tls: None,
            protocol: Protocol::V5,
            try_private: true,
            keepalive: Duration::from_secs(60),
            clean_start: false,
            topics,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            overflow: Overflow::DropOldest,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
        }
    }
}

/// 256 MiB of queued messages per bridge.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 * 1024 * 1024;
/// In-flight window towards an MQTT 5 upstream (lowered to its Receive Maximum).
pub const DEFAULT_MAX_INFLIGHT: u16 = 100;
/// In-flight window towards an MQTT 3.1.1 upstream: Mosquitto's default `max_inflight_messages`.
pub const DEFAULT_MAX_INFLIGHT_V311: u16 = 20;

/// `<hostname>.<name>`, as Mosquitto names a bridge's client upstream.
fn default_client_id(name: &str) -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy().into_owned();
    if host.is_empty() { format!("edge-mqtt.{name}") } else { format!("{host}.{name}") }
}

/// A `[[bridges]]` table as the file says it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBridge {
    name: String,
    addresses: Vec<String>,
    #[serde(default)]
    try_order: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls: Option<FileBridgeTls>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    try_private: Option<bool>,
    #[serde(default)]
    keepalive_secs: Option<u64>,
    #[serde(default)]
    clean_start: Option<bool>,
    topics: Vec<String>,
    #[serde(default)]
    max_queue_bytes: Option<u64>,
    #[serde(default)]
    overflow: Option<String>,
    #[serde(default)]
    max_inflight: Option<u64>,
    #[serde(default)]
    reconnect_min_ms: Option<u64>,
    #[serde(default)]
    reconnect_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBridgeTls {
    ca_file: String,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    alpn: Vec<String>,
    #[serde(default)]
    server_name: Option<String>,
}

/// A key and what is wrong with its value.
pub type Invalid = (String, String);

/// Validates every `[[bridges]]` table.
///
/// # Errors
/// The first key at fault (`bridges[i].key`) and why.
pub fn validate(files: &[FileBridge]) -> Result<Vec<BridgeSettings>, Invalid> {
    let mut out: Vec<BridgeSettings> = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let b = f.validate(&format!("bridges[{i}]"))?;
        if out.iter().any(|o| o.name == b.name) {
            return Err((format!("bridges[{i}].name"), format!("{:?} names another bridge too", b.name)));
        }
        out.push(b);
    }
    Ok(out)
}

impl FileBridge {
    fn validate(&self, at: &str) -> Result<BridgeSettings, Invalid> {
        let bad = |key: &str, why: String| (format!("{at}.{key}"), why);
        let name = self.name.trim();
        if name.is_empty() || name.contains(['/', '+', '#']) {
            return Err(bad("name", format!("must be non-empty without '/', '+' or '#' (got {name:?})")));
        }
        if self.addresses.is_empty() {
            return Err(bad("addresses", "at least one \"host:port\" is needed".into()));
        }
        for a in &self.addresses {
            split_address(a).ok_or_else(|| bad("addresses", format!("not \"host:port\": {a:?}")))?;
        }
        let try_order = match self.try_order.as_deref() {
            None | Some("in_order") => TryOrder::InOrder,
            Some("round_robin") => TryOrder::RoundRobin,
            Some(o) => return Err(bad("try_order", format!("\"in_order\" or \"round_robin\" (got {o:?})"))),
        };
        let protocol = match self.protocol.as_deref() {
            None | Some("5") => Protocol::V5,
            Some("3.1.1") => Protocol::V311,
            Some(p) => return Err(bad("protocol", format!("\"3.1.1\" or \"5\" (got {p:?})"))),
        };
        let overflow = match self.overflow.as_deref() {
            None | Some("drop_oldest") => Overflow::DropOldest,
            Some("refuse_newest") => Overflow::RefuseNewest,
            Some(o) => return Err(bad("overflow", format!("\"drop_oldest\" or \"refuse_newest\" (got {o:?})"))),
        };
        let keepalive = self.keepalive_secs.unwrap_or(60);
        if !(5..=65_535).contains(&keepalive) {
            return Err(bad("keepalive_secs", format!("5 to 65535 (got {keepalive})")));
        }
        let client_id = match &self.client_id {
            Some(id) if id.is_empty() || id.len() > 65_535 => {
                return Err(bad("client_id", "must be 1 to 65535 bytes".into()));
            }
            Some(id) => id.clone(),
            None => default_client_id(name),
        };
        if self.password.is_some() && self.username.is_none() && protocol == Protocol::V311 {
            return Err(bad("password", "MQTT 3.1.1 sends a password only with a username".into()));
        }
        if self.topics.is_empty() {
            return Err(bad("topics", "at least one topic rule is needed".into()));
        }
        let mut topics = Vec::with_capacity(self.topics.len());
        for (j, line) in self.topics.iter().enumerate() {
            topics.push(parse_topic(line).map_err(|why| bad(&format!("topics[{j}]"), why))?);
        }
        let max_queue_bytes = match self.max_queue_bytes {
            None => DEFAULT_MAX_QUEUE_BYTES,
            Some(n) if n >= 1024 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => return Err(bad("max_queue_bytes", format!("at least 1024 (got {n})"))),
        };
        let max_inflight = match self.max_inflight {
            None if protocol == Protocol::V311 => DEFAULT_MAX_INFLIGHT_V311,
            None => DEFAULT_MAX_INFLIGHT,
            Some(n) => u16::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("max_inflight", format!("1 to 65535 (got {n})")))?,
        };
        let reconnect_min = Duration::from_millis(self.reconnect_min_ms.unwrap_or(1000).max(10));
        let reconnect_max = Duration::from_millis(self.reconnect_max_ms.unwrap_or(60_000)).max(reconnect_min);
        let tls = match &self.tls {
            None => None,
            Some(t) => {
                if t.cert_file.is_some() != t.key_file.is_some() {
                    return Err(bad("tls", "cert_file and key_file go together".into()));
                }
                Some(BridgeTls {
                    ca_file: PathBuf::from(&t.ca_file),
                    cert_file: t.cert_file.as_ref().map(PathBuf::from),
                    key_file: t.key_file.as_ref().map(PathBuf::from),
                    alpn: t.alpn.clone(),
                    server_name: t.server_name.clone(),
                })
            }
        };
        Ok(BridgeSettings {
            name: name.to_owned(),
            addresses: self.addresses.clone(),
            try_order,
            client_id,
            username: self.username.clone(),
            password: self.password.clone(),
            tls,
            protocol,
            try_private: self.try_private.unwrap_or(true),
            keepalive: Duration::from_secs(keepalive),
            clean_start: self.clean_start.unwrap_or(false),
            topics,
            max_queue_bytes,
            overflow,
            max_inflight,
            reconnect_min,
            reconnect_max,
        })
    }
}

/// `host:port` (with `[v6]:port`) split; `None` when it is not that.
pub fn split_address(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.trim().rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port > 0).then_some((host, port))
}

/// Parses Mosquitto's `topic` line: `PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`.
///
/// # Errors
/// What is wrong with the line.
pub fn parse_topic(line: &str) -> Result<TopicRule, String> {
    let fields: Vec<&str> = line.split_whitespace().map(|f| if f == "\"\"" { "" } else { f }).collect();
    let [pattern, rest @ ..] = fields.as_slice() else { return Err("empty topic rule".into()) };
    let direction = match rest.first() {
        None | Some(&"out") => Direction::Out,
        Some(&"in") => Direction::In,
        Some(&"both") => Direction::Both,
        Some(d) => return Err(format!("direction must be in, out or both (got {d:?})")),
    };
    let qos = match rest.get(1) {
        None => QoS::AtMostOnce,
        Some(q) => q
            .parse::<u8>()
            .ok()
            .and_then(|q| QoS::from_u8(q).ok())
            .ok_or_else(|| format!("QoS must be 0, 1 or 2 (got {q:?})"))?,
    };
    let (local_prefix, remote_prefix) = match rest.get(2..) {
        None | Some([]) => ("", ""),
        Some([local, remote]) => (*local, *remote),
        Some(_) => return Err("give both prefixes (\"\" for none), or neither".into()),
    };
    if pattern.is_empty() && local_prefix.is_empty() && remote_prefix.is_empty() {
        return Err("an empty pattern needs prefixes, which are then whole topics".into());
    }
    let rule = TopicRule {
        pattern: (*pattern).to_owned(),
        direction,
        qos,
        local_prefix: local_prefix.to_owned(),
        remote_prefix: remote_prefix.to_owned(),
    };
    for (side, filter) in [("local", rule.local_filter()), ("remote", rule.remote_filter())] {
        TopicFilter::new(&filter).map_err(|e| format!("{side} filter {filter:?} is not valid: {e}"))?;
        if filter.starts_with("$share/") {
            return Err(format!("{side} filter {filter:?} is a shared subscription"));
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lines_as_mosquitto_reads_them() {
        let r = parse_topic("sensors/# out 1 edge/ site7/").unwrap();
        assert_eq!((r.direction, r.qos), (Direction::Out, QoS::AtLeastOnce));
        assert_eq!((r.local_filter(), r.remote_filter()), ("edge/sensors/#".into(), "site7/sensors/#".into()));
        assert_eq!(r.to_remote("edge/sensors/t1").as_deref(), Some("site7/sensors/t1"));
        assert_eq!(r.to_remote("sensors/t1"), None);
        assert_eq!(r.to_local("site7/sensors/t1").as_deref(), Some("edge/sensors/t1"));
        let plain = parse_topic("a/+").unwrap();
        assert_eq!((plain.direction, plain.qos, plain.local_filter()), (Direction::Out, QoS::AtMostOnce, "a/+".into()));
        let whole = parse_topic("\"\" in 2 local/status remote/status").unwrap();
        assert_eq!(whole.to_local("remote/status").as_deref(), Some("local/status"));
        assert_eq!(whole.to_local("remote/status/x"), None);
        let none = parse_topic("cmd/# both 2 \"\" fleet/").unwrap();
        assert_eq!(none.to_local("fleet/cmd/x").as_deref(), Some("cmd/x"));
        assert_eq!(none.to_remote("cmd/x").as_deref(), Some("fleet/cmd/x"));
        for bad in
            ["", "a sideways", "a out 3", "a out 1 onlyone", "a/#/b", "\"\" out 0 \"\" \"\"", "x out 0 $share/g/ y/"]
        {
            assert!(parse_topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("broker.example:8883"), Some(("broker.example", 8883)));
        assert_eq!(split_address("[::1]:1883"), Some(("::1", 1883)));
        assert_eq!(split_address("nohost"), None);
        assert_eq!(split_address(":1883"), None);
    }
}
