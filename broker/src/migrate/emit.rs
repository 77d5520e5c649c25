//! Writing the translation as TOML: the NOT TRANSLATED block first, then the sections in the order of
//! `config/default.toml`. Each key carries a comment naming the Mosquitto line it came from.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Auth, ListenerDraft, Loc, Note, Set, Translator};

/// Mosquitto's default `max_queued_bytes` here: the broker's own default, which a message must fit in.
const DEFAULT_MAX_QUEUED_BYTES: i64 = 8 * 1024 * 1024;

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn from(loc: &Loc) -> String {
    format!("  # {loc}")
}

/// Renders the translation, adding the notes that only the whole picture reveals (a listener host that is a
/// name, TLS options without a certificate, keys left out without [`super::Options::planned`]).
pub(super) fn render(name: &str, t: &mut Translator) -> String {
    let mut body = String::new();
    // Top-level keys come before the first table.
    for (_, key, value, comment) in t.keys.iter().filter(|(s, ..)| s.is_empty()) {
        let _ = writeln!(body, "{key} = {value}  # {comment}");
    }
    listeners(t, &mut body);
    limits_fixup(t);
    for section in ["limits", "sessions", "mqtt"] {
        let keys: Vec<_> = t.keys.iter().filter(|(s, ..)| *s == section).collect();
        if keys.is_empty() {
            continue;
        }
        let _ = writeln!(body, "\n[{section}]");
        for (_, key, value, comment) in keys {
            let _ = writeln!(body, "{key} = {value}  # {comment}");
        }
    }
    persistence(t, &mut body);
    log(t, &mut body);
    super::bridge::render(t, &mut body);

    let mut head = String::new();
    let _ = writeln!(head, "# Configuration translated from {name} by `broker migrate-config`.");
    let _ =
        writeln!(head, "# `broker --config FILE` checks it and names any key it refuses. What maps to what, and what");
    let _ =
        writeln!(head, "# behaves differently: docs/migrating-from-mosquitto.md. Comments name the Mosquitto lines.");
    if t.notes.is_empty() {
        let _ = writeln!(head, "#\n# Every Mosquitto setting was translated.");
    } else {
        let _ = writeln!(
            head,
            "#\n# NOT TRANSLATED: {} Mosquitto line(s) have no equivalent here. Review each one:",
            t.notes.len()
        );
        let mut i = 0;
        while let Some(first) = t.notes.get(i) {
            let group: Vec<&Note> = t.notes[i..].iter().take_while(|n| n.reason == first.reason).collect();
            let _ = writeln!(head, "#");
            for n in &group {
                let _ = writeln!(head, "#   {}: {}", n.loc, n.line);
            }
            let _ = writeln!(head, "#     -> {}", first.reason);
            i += group.len();
        }
    }
    head + &body
}

/// A note about a directive found while rendering; it replaces the directive's place among the translated.
fn late_note(t: &mut Translator, loc: &Loc, line: String, reason: impl Into<String>) {
    t.translated.retain(|l| l != loc);
    t.notes.push(Note { loc: loc.clone(), line, reason: reason.into() });
}

fn listeners(t: &mut Translator, out: &mut String) {
    let mut all = Vec::new();
    let local_only = t.listeners.is_empty() && !t.default_listener_used;
    if local_only || t.default_listener_used {
        all.push(std::mem::take(&mut t.default_listener));
    }
    all.append(&mut t.listeners);
    let global = std::mem::take(&mut t.global_auth);
    if local_only {
        let _ = writeln!(out, "\n# No listener in the Mosquitto file: Mosquitto 2 then serves the local machine only.");
    }
    for l in &all {
        listener(t, l, if t.per_listener_settings { &l.auth } else { &global }, local_only, out);
    }
    if !t.options.planned {
        let auths = all.iter().map(|l| &l.auth).chain(std::iter::once(&global));
        let locs: Vec<Loc> = auths
            .flat_map(|a| {
                [
                    a.allow_anonymous.as_ref().map(|s| &s.loc),
                    a.password_file.as_ref().map(|s| &s.loc),
                    a.acl_file.as_ref().map(|s| &s.loc),
                ]
            })
            .flatten()
            .cloned()
            .collect();
        for loc in locs {
            late_note(
                t,
                &loc,
                "(authentication)".into(),
                "left out: this build has no authentication keys (Options::planned off)",
            );
        }
    }
}

fn bind(l: &ListenerDraft, local_only: bool) -> Result<String, String> {
    let port = l.port.unwrap_or(1883);
    match l.host.as_deref() {
        None if local_only => Ok(format!("127.0.0.1:{port}")),
        None if l.ipv6 => Ok(format!("[::]:{port}")),
        None => Ok(format!("0.0.0.0:{port}")),
        Some("localhost") => Ok(format!("127.0.0.1:{port}")),
        Some(host) => match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Ok(format!("{ip}:{port}")),
            Ok(IpAddr::V6(ip)) => Ok(format!("[{ip}]:{port}")),
            Err(_) => Err(format!(
                "host {host:?} is a name: bind takes an IP address; this listener is bound to 127.0.0.1, edit it"
            )),
        },
    }
}

fn listener(t: &mut Translator, l: &ListenerDraft, auth: &Auth, local_only: bool, out: &mut String) {
    let line = match (&l.loc, l.port) {
        (Some(loc), Some(port)) => {
            format!("  # {loc}: listener {port}{}", l.host.as_ref().map(|h| format!(" {h}")).unwrap_or_default())
        }
        _ => "  # Mosquitto's default listener".to_owned(),
    };
    let bind = match bind(l, local_only) {
        Ok(b) => b,
        Err(reason) => {
            if let Some(loc) = &l.loc {
                late_note(
                    t,
                    loc,
                    format!("listener {} {}", l.port.unwrap_or(1883), l.host.as_deref().unwrap_or("")),
                    reason,
                );
            }
            format!("127.0.0.1:{}", l.port.unwrap_or(1883))
        }
    };
    let mut text = format!("\n[[listeners]]\nbind = {}{line}\n", quote(&bind));
    if let Some(n) = l.max_connections.filter(|n| *n > 0) {
        let _ = writeln!(text, "max_connections = {n}");
    }
    if l.websockets {
        let _ = writeln!(
            text,
            "transport = \"websocket\"\n# Mosquitto accepts the upgrade on any path; this broker on this one.\npath = \"/mqtt\""
        );
    }
    if t.options.planned {
        let anonymous = auth.allow_anonymous.as_ref().map_or(local_only, |s| s.value);
        let why = match &auth.allow_anonymous {
            Some(s) => from(&s.loc),
            None if local_only => "  # Mosquitto 2's default without listeners".to_owned(),
            None => "  # Mosquitto 2's default with listeners".to_owned(),
        };
        let _ = writeln!(text, "allow_anonymous = {anonymous}{why}");
        for (key, set) in [("password_file", &auth.password_file), ("acl_file", &auth.acl_file)] {
            if let Some(s) = set {
                let _ = writeln!(text, "{key} = {}{}", quote(&s.value), from(&s.loc));
            }
        }
    }
    match tls(t, l) {
        Some(tls) => text.push_str(&tls),
        None if l.certfile.is_some() || l.keyfile.is_some() => {
            // A TLS listener that cannot be translated is left out rather than served in plaintext.
            if let Some(loc) = &l.loc {
                late_note(
                    t,
                    loc,
                    format!("listener {}", l.port.unwrap_or(1883)),
                    "left out: its TLS settings are incomplete (see the notes on its lines)",
                );
            }
            return;
        }
        None => {}
    }
    out.push_str(&text);
}

/// The `[listeners.tls]` table, or `None` when the listener has no complete TLS settings (with notes why).
fn tls(t: &mut Translator, l: &ListenerDraft) -> Option<String> {
    let orphan = |s: Option<&Loc>| s.cloned();
    let (cert, key) = match (&l.certfile, &l.keyfile) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            let stray = [
                orphan(l.cafile.as_ref().map(|s| &s.loc)),
                orphan(l.crlfile.as_ref().map(|s| &s.loc)),
                orphan(l.require_certificate.as_ref().map(|s| &s.loc)),
                orphan(l.use_identity_as_username.as_ref().map(|s| &s.loc)),
            ];
            for loc in stray.into_iter().flatten() {
                late_note(t, &loc, "(TLS option)".into(), "a TLS option on a listener without certfile and keyfile");
            }
            return None;
        }
        (Some(only), None) | (None, Some(only)) => {
            late_note(t, &only.loc, only.value.clone(), "TLS needs both certfile and keyfile");
            return None;
        }
    };
    let required = l.require_certificate.as_ref().is_some_and(|s| s.value);
    if required && l.cafile.is_none() {
        if let Some(s) = &l.require_certificate {
            late_note(
                t,
                &s.loc,
                "require_certificate true".into(),
                "client certificates need cafile (capath is not supported)",
            );
        }
        return None;
    }
    let mut text = String::from("[listeners.tls]\n");
    let _ = writeln!(text, "cert_file = {}{}", quote(&cert.value), from(&cert.loc));
    let _ = writeln!(text, "key_file = {}{}", quote(&key.value), from(&key.loc));
    let why = l
        .require_certificate
        .as_ref()
        .map_or_else(|| "  # require_certificate false (Mosquitto's default)".to_owned(), |s| from(&s.loc));
    let _ = writeln!(text, "client_auth = {}{why}", if required { "\"required\"" } else { "\"none\"" });
    if let Some(ca) = &l.cafile {
        let _ = writeln!(text, "ca_file = {}{}", quote(&ca.value), from(&ca.loc));
    }
    if let Some(crl) = &l.crlfile {
        let _ = writeln!(text, "crl_files = [{}]{}", quote(&crl.value), from(&crl.loc));
    }
    if let Some(Set { value, loc }) = &l.use_identity_as_username {
        if *value && !required {
            late_note(t, loc, "use_identity_as_username true".into(), "needs require_certificate true");
        } else {
            let _ = writeln!(text, "use_identity_as_username = {value}{}", from(loc));
        }
    }
    Some(text)
}

/// A message as large as `max_packet_size` must fit in a client's queue (`max_queued_bytes`), as the broker
/// checks at start; raise the queue to the packet size when the Mosquitto file says less.
fn limits_fixup(t: &mut Translator) {
    let get = |t: &Translator, key: &str| {
        t.keys.iter().find(|(s, k, ..)| *s == "limits" && *k == key).and_then(|(_, _, v, _)| v.parse::<i64>().ok())
    };
    let Some(packet) = get(t, "max_packet_size") else { return };
    let queued = get(t, "max_queued_bytes").unwrap_or(DEFAULT_MAX_QUEUED_BYTES);
    if queued < packet {
        t.keys.retain(|(s, k, ..)| !(*s == "limits" && *k == "max_queued_bytes"));
        t.keys.push((
            "limits",
            "max_queued_bytes",
            packet.to_string(),
            "raised to max_packet_size: the largest message must fit in a queue".into(),
        ));
    }
}

fn persistence(t: &mut Translator, out: &mut String) {
    if t.persistence_enabled.is_none() && t.persistence_path.is_none() {
        return;
    }
    let (enabled, path) = (t.persistence_enabled.take(), t.persistence_path.take());
    if !t.options.planned {
        for s in [enabled.map(|s| s.loc), path.map(|s| s.loc)].into_iter().flatten() {
            late_note(
                t,
                &s,
                "(persistence)".into(),
                "left out: this build has no [persistence] section (Options::planned off)",
            );
        }
        return;
    }
    let _ = writeln!(out, "\n[persistence]");
    match enabled {
        Some(s) => {
            let _ = writeln!(out, "enabled = {}{}", s.value, from(&s.loc));
        }
        None => {
            let _ = writeln!(out, "enabled = false  # Mosquitto's default: persistence false");
        }
    }
    if let Some(s) = path {
        let _ = writeln!(
            out,
            "# Mosquitto's own mosquitto.db is not read. The edge-mqtt systemd unit can write only /var/lib/edge-mqtt."
        );
        let _ = writeln!(out, "path = {}{}", quote(&s.value), from(&s.loc));
    }
}

/// Mosquitto's `log_type` lines become one `log.level`: the most verbose type named wins.
fn log(t: &mut Translator, out: &mut String) {
    if t.log_types.is_empty() {
        return;
    }
    let has = |names: &[&str]| t.log_types.iter().any(|(v, _)| names.contains(&v.as_str()));
    let level = if has(&["all", "debug"]) {
        "debug"
    } else if has(&["information", "notice", "subscribe", "unsubscribe", "websockets"]) {
        "info"
    } else if has(&["warning"]) {
        "warn"
    } else if has(&["error"]) {
        "error"
    } else if has(&["none"]) {
        "off"
    } else {
        "info"
    };
    let lines: Vec<String> = t.log_types.iter().map(|(v, loc)| format!("{loc} log_type {v}")).collect();
    let _ = writeln!(out, "\n[log]\n# From {}", lines.join(", "));
    let _ = writeln!(out, "level = {}", quote(level));
}
