//! `broker migrate-config`: translates a Mosquitto 2 `mosquitto.conf` into this broker's TOML configuration.
//!
//! Every directive of the file (and of the files its `include_dir` names) is either translated into a key of the
//! output or listed, with its file and line and the reason, in a NOT TRANSLATED block at the top of the output:
//! nothing is dropped silently. Bridges (`connection` blocks) become `[[bridges]]` tables (`bridge`).
//!
//! Persistence (`[persistence]`) and authentication (`allow_anonymous`, `password_file`, `acl_file` on each
//! listener) are emitted under the names this broker's configuration gives them; [`Options::planned`] off leaves
//! them out (and lists their directives as not translated), for a broker build whose configuration lacks them.
//! docs/migrating-from-mosquitto.md explains each mapping and what behaves differently.

mod bridge;
mod emit;
mod mosquitto;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use mosquitto::Loc;
use mosquitto::{Directive, boolean, duration_secs, integer};

/// What to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Emit the `[persistence]` section and the listeners' authentication keys. Off, their directives are listed
    /// as not translated instead.
    pub planned: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { planned: true }
    }
}

/// A translated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The TOML text, with the NOT TRANSLATED block at its top.
    pub toml: String,
    /// The directives that were not translated, in file order.
    pub notes: Vec<Note>,
    /// Where each translated directive stands.
    pub translated: Vec<Loc>,
}

/// A directive that was not translated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where it stands.
    pub loc: Loc,
    /// The directive as written, secrets masked.
    pub line: String,
    /// Why it has no equivalent, and what the broker does instead.
    pub reason: String,
}

/// The file cannot be translated at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The configuration file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Translates the Mosquitto configuration file at `path`, following its `include_dir` lines.
///
/// # Errors
/// [`MigrateError::Read`] when `path` cannot be read. Directories and options that cannot be used are notes.
pub fn translate_file(path: &Path, options: Options) -> Result<Migration, MigrateError> {
    Ok(translate_directives(&path.display().to_string(), mosquitto::read(path)?, options))
}

/// Translates Mosquitto configuration text; `name` is the file name used in notes.
pub fn translate(name: &str, text: &str, options: Options) -> Migration {
    let mut directives = Vec::new();
    mosquitto::parse(name, text, 0, &mut directives);
    translate_directives(name, directives, options)
}

fn translate_directives(name: &str, directives: Vec<Directive>, options: Options) -> Migration {
    let mut t = Translator { options, ..Translator::default() };
    t.per_listener_settings = directives
        .iter()
        .rev()
        .find(|d| d.name == "per_listener_settings")
        .and_then(|d| boolean(&d.value))
        .unwrap_or(false);
    for d in &directives {
        t.directive(d);
    }
    let toml = emit::render(name, &mut t);
    Migration { toml, notes: t.notes, translated: t.translated }
}

/// A value set by a directive, with where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set<T> {
    value: T,
    loc: Loc,
}

/// The authentication directives of one listener (or of all, without `per_listener_settings`).
#[derive(Debug, Clone, Default)]
struct Auth {
    allow_anonymous: Option<Set<bool>>,
    password_file: Option<Set<String>>,
    acl_file: Option<Set<String>>,
}

/// One Mosquitto listener as the directives describe it.
#[derive(Debug, Clone, Default)]
struct ListenerDraft {
    /// The `listener` (or `port`) line; `None` for Mosquitto's built-in default listener.
    loc: Option<Loc>,
    port: Option<u16>,
    host: Option<String>,
    ipv6: bool,
    websockets: bool,
    max_connections: Option<i64>,
    certfile: Option<Set<String>>,
    keyfile: Option<Set<String>>,
    cafile: Option<Set<String>>,
    crlfile: Option<Set<String>>,
    require_certificate: Option<Set<bool>>,
    use_identity_as_username: Option<Set<bool>>,
    auth: Auth,
}

/// The translation in progress: listeners and the keys of each section.
#[derive(Debug, Default)]
struct Translator {
    options: Options,
    per_listener_settings: bool,
    /// Listener options written before the first `listener` line belong to Mosquitto's default listener.
    default_listener: ListenerDraft,
    default_listener_used: bool,
    listeners: Vec<ListenerDraft>,
    global_auth: Auth,
    /// (section, key, TOML value, comment) in the order they are set; a later setting of a key replaces it.
    keys: Vec<(&'static str, &'static str, String, String)>,
    persistence_enabled: Option<Set<bool>>,
    persistence_path: Option<Set<String>>,
    log_types: Vec<(String, Loc)>,
    /// The open bridge (`connection` block).
    bridge: Option<String>,
    /// The bridges translated, in order.
    bridges: Vec<bridge::BridgeDraft>,
    notes: Vec<Note>,
    translated: Vec<Loc>,
}

/// Options that only configure a bridge, inside a `connection` block.
fn is_bridge_option(name: &str) -> bool {
    name.starts_with("bridge_")
        || name.starts_with("remote_")
        || name.starts_with("local_")
        || name.starts_with("notification")
        || matches!(
            name,
            "address"
                | "addresses"
                | "topic"
                | "cleansession"
                | "keepalive_interval"
                | "idle_timeout"
                | "restart_timeout"
                | "round_robin"
                | "start_type"
                | "threshold"
                | "try_private"
                | "clientid"
                | "username"
                | "password"
        )
}

/// Mosquitto options with no equivalent here, and what this broker does instead.
fn untranslatable(name: &str) -> Option<&'static str> {
    Some(match name {
        "auth_plugin" | "plugin" | "global_plugin" | "auth_plugin_deny_special_chars" => {
            "plugins: this broker has no plugin interface"
        }
        n if n.starts_with("auth_opt_") || n.starts_with("plugin_opt_") => "plugin option: no plugin interface",
        "psk_file" | "psk_hint" => "TLS-PSK: rustls has no pre-shared-key cipher suites; use certificates",
        "capath" => "a CA directory: concatenate its certificates into one PEM file and set tls.ca_file",
        "ciphers" | "ciphers_tls1.3" | "dhparamfile" | "tls_engine" | "tls_keyform" | "tls_engine_kpass_sha1" => {
            "TLS is rustls with its fixed safe suites (TLS 1.2 ECDHE with AEAD ciphers, TLS 1.3); no choice to make"
        }
        "tls_version" => "TLS 1.2 and 1.3 are always both accepted; older versions never",
        "use_subject_as_username" => {
            "the whole subject DN as username: tls.use_identity_as_username takes the CN (or first SAN) instead"
        }
        "use_username_as_clientid" => "client ids are always the client's own",
        "http_dir" => "the broker serves no HTTP files; put a web server in front for a dashboard",
        "websockets_log_level" | "websockets_headers_size" => "WebSocket internals are not configurable",
        "mount_point" => "mount points are not supported; clients see the topics they publish",
        "bind_interface" => "binding to an interface by name: set bind to that interface's IP address",
        "accept_protocol_versions" => "every listener accepts MQTT 3.1, 3.1.1 and 5.0",
        "allow_zero_length_clientid" | "auto_id_prefix" => {
            "an empty client id gets a broker-assigned id, as the MQTT specification allows; no switch or prefix"
        }
        "clientid_prefixes" => "client id prefixes are not checked; use authentication",
        "check_retain_source" => "retained messages are not rechecked against the publisher's ACL",
        "connection_messages" | "log_dest" | "log_facility" | "log_timestamp" | "log_timestamp_format" => {
            "logs always go to standard error (the journal, under systemd); log.format chooses text or JSON"
        }
        "max_inflight_bytes" | "memory_limit" => {
            "no byte cap of this kind: queues are bounded per client by limits.max_queued_bytes"
        }
        "message_size_limit" => "a payload-only limit: limits.max_packet_size bounds whole packets",
        "persistence_file" => "the broker keeps its own files under persistence.path",
        "autosave_interval" | "autosave_on_changes" => {
            "every change is written to the journal as it happens; persistence.fsync says when it reaches the disk"
        }
        "pid_file" => "no PID file: systemd (or your supervisor) tracks the process",
        "user" => "the broker does not change user: the systemd unit runs it as its own user",
        "set_tcp_nodelay" => "TCP_NODELAY is always on",
        "upgrade_outgoing_qos" => "messages are delivered at the lower of the two QoS, as the specification says",
        "retry_interval" | "store_clean_interval" | "max_connections_global" => "removed in Mosquitto 2",
        _ => return None,
    })
}

impl Translator {
    fn note(&mut self, d: &Directive, reason: impl Into<String>) {
        self.notes.push(Note { loc: d.loc.clone(), line: d.shown(), reason: reason.into() });
    }

    /// Sets `section.key` to the TOML literal `value`.
    fn set(&mut self, d: &Directive, section: &'static str, key: &'static str, value: String) {
        self.keys.retain(|(s, k, _, _)| !(*s == section && *k == key));
        self.keys.push((section, key, value, format!("{}: {}", d.loc, d.shown())));
    }

    /// The listener that listener options apply to: the last `listener`, else Mosquitto's default listener.
    fn current(&mut self) -> &mut ListenerDraft {
        match self.listeners.last_mut() {
            Some(l) => l,
            None => {
                self.default_listener_used = true;
                &mut self.default_listener
            }
        }
    }

    fn auth(&mut self) -> &mut Auth {
        if self.per_listener_settings { &mut self.current().auth } else { &mut self.global_auth }
    }

    fn directive(&mut self, d: &Directive) {
        if d.name == "connection" {
            self.bridge = Some(d.value.clone());
        } else if d.name == "listener" {
            self.bridge = None;
        }
        if let Some(bridge) = self.bridge.clone()
            && (d.name == "connection" || is_bridge_option(&d.name))
        {
            return match self.bridge_directive(d) {
                Ok(()) => self.translated.push(d.loc.clone()),
                Err(reason) => self.note(d, format!("bridge {bridge:?}: {reason}")),
            };
        }
        if let Some(reason) = untranslatable(&d.name) {
            return self.note(d, reason);
        }
        match self.translate(d) {
            Ok(()) => self.translated.push(d.loc.clone()),
            Err(reason) => self.note(d, reason),
        }
    }

    /// Translates one directive, or says why it cannot be.
    fn translate(&mut self, d: &Directive) -> Result<(), String> {
        let v = d.value.as_str();
        if v.is_empty() && d.name != mosquitto::UNREADABLE_INCLUDE {
            return Err(format!("{} needs a value", d.name));
        }
        let set = |value: String| Set { value, loc: d.loc.clone() };
        let flag = || boolean(v).ok_or_else(|| format!("{} must be true or false (got {v:?})", d.name));
        let int = || integer(v).ok_or_else(|| format!("{} must be a whole number (got {v:?})", d.name));
        match d.name.as_str() {
            "include_dir" | "per_listener_settings" => {}
            mosquitto::UNREADABLE_INCLUDE => return Err(v.to_owned()),
            "listener" => {
                let args = d.args();
                let port = args.first().and_then(|p| p.parse::<u16>().ok());
                let Some(port) = port else { return Err(format!("listener needs a port (got {v:?})")) };
                if port == 0 {
                    return Err("a Unix socket listener (port 0 and a path): only TCP listeners exist here".into());
                }
                let host = args.get(1).map(|h| (*h).to_owned());
                self.listeners.push(ListenerDraft {
                    loc: Some(d.loc.clone()),
                    port: Some(port),
                    host,
                    ..Default::default()
                });
            }
            "port" => {
                let port = v.parse::<u16>().map_err(|_| format!("port must be 1 to 65535 (got {v:?})"))?;
                let loc = d.loc.clone();
                self.default_listener_used = true;
                self.default_listener.port = Some(port);
                self.default_listener.loc.get_or_insert(loc);
            }
            "bind_address" => {
                self.default_listener_used = true;
                self.default_listener.host = Some(v.to_owned());
            }
            "socket_domain" => {
                let ipv6 = match v {
                    "ipv4" => false,
                    "ipv6" => true,
                    _ => return Err(format!("socket_domain must be ipv4 or ipv6 (got {v:?})")),
                };
                self.current().ipv6 = ipv6;
            }
            "protocol" => {
                let websockets = match v {
                    "mqtt" => false,
                    "websockets" => true,
                    _ => return Err(format!("protocol must be mqtt or websockets (got {v:?})")),
                };
                self.current().websockets = websockets;
            }
            "max_connections" => {
                let n = int()?;
                self.current().max_connections = Some(n);
            }
            "certfile" => self.current().certfile = Some(set(v.to_owned())),
            "keyfile" => self.current().keyfile = Some(set(v.to_owned())),
            "cafile" => self.current().cafile = Some(set(v.to_owned())),
            "crlfile" => self.current().crlfile = Some(set(v.to_owned())),
            "require_certificate" => {
                let b = flag()?;
                self.current().require_certificate = Some(Set { value: b, loc: d.loc.clone() });
            }
            "use_identity_as_username" => {
                let b = flag()?;
                self.current().use_identity_as_username = Some(Set { value: b, loc: d.loc.clone() });
            }
            "allow_anonymous" => {
                let b = flag()?;
                self.auth().allow_anonymous = Some(Set { value: b, loc: d.loc.clone() });
            }
            "password_file" => self.auth().password_file = Some(set(v.to_owned())),
            "acl_file" => self.auth().acl_file = Some(set(v.to_owned())),
            "persistence" => {
                self.persistence_enabled = Some(Set { value: flag()?, loc: d.loc.clone() });
            }
            "persistence_location" => self.persistence_path = Some(set(v.to_owned())),
            "log_type" => {
                self.log_types.push((v.to_owned(), d.loc.clone()));
            }
            "max_packet_size" => match int()? {
                0 => return Err("0 (no limit): the broker always has one; limits.max_packet_size keeps its".into()),
                n if n < 16 => return Err(format!("max_packet_size below 16 bytes cannot hold a packet (got {n})")),
                n => {
                    let n = n.min(i64::from(crate::config::MAX_PACKET_SIZE_LIMIT));
                    self.set(d, "limits", "max_packet_size", n.to_string());
                }
            },
            "max_inflight_messages" => match int()? {
                n if n < 0 => return Err(format!("must be 0 or more (got {n})")),
                // 0 is Mosquitto's "no limit"; a QoS window cannot be wider than the packet id space.
                n => self.set(
                    d,
                    "limits",
                    "max_inflight_messages",
                    (if n == 0 { 65_535 } else { n.min(65_535) }).to_string(),
                ),
            },
            "max_queued_messages" | "max_queued_bytes" => match int()? {
                n if n <= 0 => {
                    return Err("no limit: every client's queue is bounded here; the default limit stays".into());
                }
                n => {
                    let key = if d.name == "max_queued_messages" { "max_queued_messages" } else { "max_queued_bytes" };
                    self.set(d, "limits", key, n.to_string());
                }
            },
            "sys_interval" => match int()? {
                n @ 0..=86_400 => self.set(d, "", "sys_interval", n.to_string()),
                n => return Err(format!("must be 0 to 86400 (got {n})")),
            },
            "max_keepalive" => match int()? {
                n @ 0..=65_535 => self.set(d, "sessions", "max_keepalive", n.to_string()),
                n => return Err(format!("must be 0 to 65535 (got {n})")),
            },
            "persistent_client_expiration" => {
                let secs =
                    duration_secs(v).ok_or_else(|| format!("expected a number and h, d, w, m or y (got {v:?})"))?;
                let secs = secs.min(u64::from(u32::MAX));
                self.set(d, "sessions", "persistent_session_expiry_secs", secs.to_string());
            }
            "queue_qos0_messages" => self.set(d, "sessions", "queue_qos0_offline", flag()?.to_string()),
            "retain_available" => self.set(d, "mqtt", "retain_available", flag()?.to_string()),
            "max_qos" => match int()? {
                n @ 0..=2 => self.set(d, "mqtt", "maximum_qos", n.to_string()),
                n => return Err(format!("must be 0, 1 or 2 (got {n})")),
            },
            "max_topic_alias" => match int()? {
                n @ 0..=65_535 => self.set(d, "mqtt", "topic_alias_maximum", n.to_string()),
                n => return Err(format!("must be 0 to 65535 (got {n})")),
            },
            n if is_bridge_option(n) => return Err("a bridge option outside a connection block".into()),
            _ => return Err("not a Mosquitto 2 option this translator knows".into()),
        }
        Ok(())
    }
}
