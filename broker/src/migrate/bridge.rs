//! Mosquitto bridges (`connection` blocks) translated into `[[bridges]]` tables, key for key (see
//! `docs/bridge.md`). A bridge option without a counterpart is listed as not translated, with what to do instead.

use std::fmt::Write as _;

use super::emit::quote;
use super::{Directive, Loc, Translator, boolean};

/// One `connection` block as its lines describe it: each key with its TOML value and the line it came from.
#[derive(Debug, Clone, Default)]
pub(super) struct BridgeDraft {
    name: String,
    loc: Option<Loc>,
    keys: Vec<(&'static str, String, String)>,
    tls: Vec<(&'static str, String, String)>,
    topics: Vec<(String, String)>,
}

/// `host[:port]` with Mosquitto's default port.
fn address(a: &str) -> String {
    if a.starts_with('[') || a.matches(':').count() == 1 { a.to_owned() } else { format!("{a}:1883") }
}

impl Translator {
    /// Translates one line of a `connection` block, or says why it cannot be.
    pub(super) fn bridge_directive(&mut self, d: &Directive) -> Result<(), String> {
        if d.name == "connection" {
            self.bridges.push(BridgeDraft {
                name: d.value.clone(),
                loc: Some(d.loc.clone()),
                ..BridgeDraft::default()
            });
            return Ok(());
        }
        let Some(b) = self.bridges.last_mut() else { return Err("a bridge option outside a connection block".into()) };
        let v = d.value.as_str();
        if v.is_empty() {
            return Err(format!("{} needs a value", d.name));
        }
        let comment = format!("{}: {}", d.loc, d.shown());
        let flag = || boolean(v).ok_or_else(|| format!("{} must be true or false (got {v:?})", d.name));
        let (key, value): (&'static str, String) = match d.name.as_str() {
            "address" | "addresses" => {
                let list: Vec<String> = d.args().iter().map(|a| quote(&address(a))).collect();
                ("addresses", format!("[{}]", list.join(", ")))
            }
            "round_robin" => ("try_order", quote(if flag()? { "round_robin" } else { "in_order" })),
            "remote_clientid" | "clientid" => ("client_id", quote(v)),
            "remote_username" | "username" => ("username", quote(v)),
            "remote_password" | "password" => ("password", quote(v)),
            "bridge_protocol_version" => match v {
                "mqttv311" => ("protocol", quote("3.1.1")),
                "mqttv50" => ("protocol", quote("5")),
                _ => return Err(format!("MQTT {v} upstream: bridges speak 3.1.1 or 5 (mqttv311, mqttv50)")),
            },
            "try_private" => ("try_private", flag()?.to_string()),
            "cleansession" => ("clean_start", flag()?.to_string()),
            "keepalive_interval" => {
                ("keepalive_secs", v.parse::<u64>().map_err(|_| "a whole number".to_owned())?.to_string())
            }
            "restart_timeout" => {
                let secs: Vec<u64> = d.args().iter().filter_map(|a| a.parse().ok()).collect();
                match secs.as_slice() {
                    [one] => ("reconnect_min_ms", (one * 1000).to_string()),
                    [base, cap] => {
                        b.keys.push(("reconnect_max_ms", (cap * 1000).to_string(), comment.clone()));
                        ("reconnect_min_ms", (base * 1000).to_string())
                    }
                    _ => return Err("restart_timeout takes one or two numbers of seconds".into()),
                }
            }
            "topic" => {
                b.topics.push((d.value.clone(), comment));
                return Ok(());
            }
            "bridge_cafile" | "bridge_certfile" | "bridge_keyfile" | "bridge_alpn" => {
                let (key, value) = match d.name.as_str() {
                    "bridge_cafile" => ("ca_file", quote(v)),
                    "bridge_certfile" => ("cert_file", quote(v)),
                    "bridge_keyfile" => ("key_file", quote(v)),
                    _ => ("alpn", format!("[{}]", quote(v))),
                };
                b.tls.push((key, value, comment));
                return Ok(());
            }
            "bridge_insecure" if v == "false" => return Ok(()),
            "bridge_insecure" => return Err("the upstream certificate is always verified".into()),
            "bridge_capath" => return Err("a CA directory: concatenate it into one PEM file for tls.ca_file".into()),
            "notifications" | "notification_topic" | "notifications_local_only" => {
                return Err("no state topic: the bridge logs `bridge connected` / `bridge down` and \
                            Broker::bridge_stats reports its state"
                    .into());
            }
            "start_type" | "idle_timeout" | "threshold" => {
                return Err("bridges always start with the broker and stay connected".into());
            }
            n if n.starts_with("local_") => {
                return Err("the bridge is a session inside this broker: no local client id or login".into());
            }
            _ => return Err(format!("{}: no bridge key for it", d.name)),
        };
        b.keys.retain(|(k, ..)| *k != key);
        b.keys.push((key, value, comment));
        Ok(())
    }
}

/// Writes the `[[bridges]]` tables; a block without an address or a topic (which the broker would refuse) is named
/// as not translated instead.
pub(super) fn render(t: &mut Translator, out: &mut String) {
    let bridges = std::mem::take(&mut t.bridges);
    for b in &bridges {
        if !b.keys.iter().any(|(k, ..)| *k == "addresses") || b.topics.is_empty() {
            if let Some(loc) = &b.loc {
                t.translated.retain(|l| l != loc);
                t.notes.push(super::Note {
                    loc: loc.clone(),
                    line: format!("connection {}", b.name),
                    reason: "a bridge needs an address and at least one topic line; not written".into(),
                });
            }
            continue;
        }
        let from = b.loc.as_ref().map(|l| format!("  # {l}: connection {}", b.name)).unwrap_or_default();
        let _ = writeln!(out, "\n[[bridges]]\nname = {}{from}", quote(&b.name));
        for (key, value, comment) in &b.keys {
            let _ = writeln!(out, "{key} = {value}  # {comment}");
        }
        let _ = writeln!(out, "topics = [");
        for (line, comment) in &b.topics {
            let _ = writeln!(out, "  {},  # {comment}", quote(line));
        }
        let _ = writeln!(out, "]");
        if !b.tls.is_empty() {
            let _ = writeln!(out, "[bridges.tls]");
            for (key, value, comment) in &b.tls {
                let _ = writeln!(out, "{key} = {value}  # {comment}");
            }
        }
    }
}
