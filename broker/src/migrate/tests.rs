use std::collections::HashSet;
use std::path::PathBuf;

use super::*;
use crate::config::{ClientAuth, Config, ListenerSettings, TlsSettings, Transport};

const EXAMPLE: &str = include_str!("../../tests/mosquitto/example-mosquitto.conf");
const DEBIAN: &str = include_str!("../../tests/mosquitto/debian-mosquitto.conf");
const TLS: &str = include_str!("../../tests/mosquitto/tls-client-certs.conf");
use crate::bridge as broker_bridge;

const BRIDGE: &str = include_str!("../../tests/mosquitto/bridge-cloud.conf");
const PASSWORD_ACL: &str = include_str!("../../tests/mosquitto/password-acl.conf");
const WEBSOCKETS: &str = include_str!("../../tests/mosquitto/websockets.conf");

const PLANNED: Options = Options { planned: true };

/// A plain listener on `bind` as the translation gives it: with Mosquitto's `allow_anonymous` said out loud.
fn anonymous_listener(bind: &str) -> ListenerSettings {
    let mut l = ListenerSettings::plain(bind.parse().unwrap());
    l.auth.allow_anonymous = Some(true);
    l
}

/// The translation, loaded the way the broker loads a file.
fn load(name: &str, text: &str) -> (Migration, Config) {
    let m = translate(name, text, PLANNED);
    match Config::from_toml(&m.toml) {
        Ok(config) => (m, config),
        Err(e) => panic!("{name}: the translation does not load: {e}\n{}", m.toml),
    }
}

fn note<'a>(m: &'a Migration, option: &str) -> &'a Note {
    let found = m.notes.iter().find(|n| n.line == option || n.line.starts_with(&format!("{option} ")));
    found.unwrap_or_else(|| panic!("no note for {option}: {:#?}\n{}", m.notes, m.toml))
}

/// Every directive of `text` is either translated or named in a note.
fn assert_all_accounted_for(name: &str, text: &str, m: &Migration) {
    let mut directives = Vec::new();
    mosquitto::parse(name, text, 0, &mut directives);
    let seen: HashSet<&Loc> = m.translated.iter().chain(m.notes.iter().map(|n| &n.loc)).collect();
    for d in &directives {
        assert!(seen.contains(&d.loc), "{} ({}) was dropped silently\n{}", d.loc, d.shown(), m.toml);
    }
    for n in &m.notes {
        assert!(m.toml.contains(&format!("#   {}: {}", n.loc, n.line)), "note {n:?} missing from the output");
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migrate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn debians_example_file_is_mosquittos_defaults_and_loads_as_ours() {
    let (m, config) = load("example-mosquitto.conf", EXAMPLE);
    assert!(m.notes.is_empty(), "{:#?}", m.notes);
    assert!(m.toml.contains("Every Mosquitto setting was translated."));
    // No listener: Mosquitto 2 serves the local machine only, anonymously; so does our default (which also journals
    // persistent sessions: Mosquitto's example leaves persistence off, and the translation keeps our default).
    let mut want = Config::default();
    want.settings.persistence.enabled = true;
    // And the operators' HTTP endpoint on the loopback interface, as in the embedded default.
    want.settings.http.enabled = true;
    want.settings.sys_interval = Some(std::time::Duration::from_secs(10));
    want.settings.listeners = vec![anonymous_listener("127.0.0.1:1883")];
    assert_eq!(config, want);
    assert!(m.toml.contains("allow_anonymous = true  # Mosquitto 2's default without listeners"));
}

#[test]
fn every_option_of_debians_example_is_translated_or_named() {
    // Uncomment every "#option value" line of the example: all the options Mosquitto 2.0 documents there.
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let m = translate("example", &uncommented, PLANNED);
    assert_all_accounted_for("example", &uncommented, &m);
    let unknown: Vec<&Note> = m.notes.iter().filter(|n| n.reason.contains("translator knows")).collect();
    assert!(unknown.is_empty(), "options of the example the translator does not know: {unknown:#?}");
    for want in ["max_inflight_messages = 20", "max_keepalive = 65535", "maximum_qos = 2", "level = \"info\""] {
        assert!(m.toml.contains(want), "{want:?} missing:\n{}", m.toml);
    }
    // Options given no value in the example (certfile, password_file...) are named, not emitted empty.
    assert!(!m.toml.contains("= \"\""), "an empty value was emitted:\n{}", m.toml);
    assert!(note(&m, "certfile").reason.contains("needs a value"));
}

#[test]
fn debians_installed_file_with_its_include_dir() {
    let dir = tempdir("confd");
    std::fs::write(dir.join("local.conf"), "listener 1883\nallow_anonymous true\n").unwrap();
    std::fs::write(dir.join("README"), "not a .conf file: not read\n").unwrap();
    let text = DEBIAN.replace("include_dir /etc/mosquitto/conf.d", &format!("include_dir {}", dir.display()));
    let m = translate("mosquitto.conf", &text, PLANNED);
    assert_all_accounted_for("mosquitto.conf", &text, &m);
    assert!(m.toml.contains("[persistence]\nenabled = true  # mosquitto.conf:8"), "{}", m.toml);
    assert!(m.toml.contains("mosquitto.db is not read"), "{}", m.toml);
    assert!(m.toml.contains("path = \"/var/lib/mosquitto/\"  # mosquitto.conf:9"), "{}", m.toml);
    assert!(note(&m, "pid_file").reason.contains("systemd"));
    assert!(note(&m, "log_dest").reason.contains("standard error"));
    // The listener came from the included file.
    let local = dir.join("local.conf").display().to_string();
    assert!(m.translated.iter().any(|l| l.file == local && l.line == 1), "{:?}", m.translated);
    assert!(m.toml.contains("bind = \"0.0.0.0:1883\""), "{}", m.toml);
    assert!(m.toml.contains(&format!("allow_anonymous = true  # {local}:2")), "{}", m.toml);

    let (_, config) = load("mosquitto.conf", &text);
    assert_eq!(config.settings.listeners, [anonymous_listener("0.0.0.0:1883")]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unreadable_include_dir_is_named() {
    let m = translate("m.conf", "include_dir /nonexistent/migrate-test\nlistener 1883\n", PLANNED);
    let n = m.notes.iter().find(|n| n.loc.file == "/nonexistent/migrate-test").expect("a note for the directory");
    assert!(n.reason.contains("cannot list /nonexistent/migrate-test"), "{n:?}");
}

#[test]
fn tls_listener_with_client_certificates() {
    let m = translate("tls.conf", TLS, PLANNED);
    assert_all_accounted_for("tls.conf", TLS, &m);
    for want in [
        "bind = \"127.0.0.1:1883\"",
        "bind = \"0.0.0.0:8883\"",
        "max_connections = 500",
        "cert_file = \"/etc/mosquitto/certs/gateway.crt\"",
        "client_auth = \"required\"",
        "crl_files = [\"/etc/mosquitto/ca_certificates/devices.crl\"]",
        "use_identity_as_username = true",
        "allow_anonymous = false  # tls.conf:3",
    ] {
        assert!(m.toml.contains(want), "{want:?} missing:\n{}", m.toml);
    }
    // Global without per_listener_settings: both listeners refuse anonymous clients.
    assert_eq!(m.toml.matches("allow_anonymous = false").count(), 2, "{}", m.toml);
    assert!(note(&m, "tls_version").reason.contains("1.2 and 1.3"));
    assert!(note(&m, "ciphers").reason.contains("rustls"));

    let (_, config) = load("tls.conf", TLS);
    let tls = config.settings.listeners[1].tls.clone();
    let want = TlsSettings {
        cert_file: "/etc/mosquitto/certs/gateway.crt".into(),
        key_file: "/etc/mosquitto/certs/gateway.key".into(),
        client_auth: ClientAuth::Required,
        ca_file: Some("/etc/mosquitto/ca_certificates/devices-ca.crt".into()),
        crl_files: vec!["/etc/mosquitto/ca_certificates/devices.crl".into()],
        use_identity_as_username: true,
    };
    assert_eq!(tls, Some(want));
    assert_eq!(config.settings.listeners[1].max_connections, Some(500));
    let limits = &config.settings.limits;
    assert_eq!(limits.max_packet_size, 65_536);
    assert_eq!(limits.max_inflight_messages, 65_535, "Mosquitto's 0 is no limit");
    assert_eq!(limits.max_queued_messages, 5_000);
    assert_eq!(config.settings.sessions.persistent_session_expiry, Some(std::time::Duration::from_secs(7 * 86_400)));
    assert_eq!(config.settings.sessions.max_keepalive, 300);
}

#[test]
fn a_bridge_becomes_a_bridges_table_key_for_key() {
    let m = translate("bridge.conf", BRIDGE, PLANNED);
    assert_all_accounted_for("bridge.conf", BRIDGE, &m);
    let untranslated: Vec<&Note> = m.notes.iter().filter(|n| n.reason.starts_with("bridge \"cloud\"")).collect();
    assert_eq!(untranslated.len(), 1, "only notifications has no counterpart: {untranslated:#?}");
    assert!(untranslated[0].line.starts_with("notifications"));
    assert!(
        m.toml.contains("topics = [\n  \"telemetry/# out 1 site17/ building/17/\",  # bridge.conf:20"),
        "{}",
        m.toml
    );
    // The password goes where it is used, never into a comment or note.
    assert!(m.toml.contains("remote_password ********"));
    assert_eq!(m.toml.matches("s3cret-cloud-pass").count(), 1, "{}", m.toml);
    // Lines after the block that are not bridge options are translated as usual.
    assert!(m.toml.contains("[log]\n# From bridge.conf:23 log_type error"), "{}", m.toml);
    assert!(m.toml.contains("level = \"info\""));
    assert!(note(&m, "autosave_interval").reason.contains("journal"));
    assert!(m.toml.contains("[persistence]\nenabled = true"));

    let (_, config) = load("bridge.conf", BRIDGE);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.settings.listeners, [anonymous_listener("0.0.0.0:1883")]);
    assert!(config.settings.persistence.enabled);
    let b = &config.settings.bridges[0];
    assert_eq!((b.name.as_str(), b.client_id.as_str()), ("cloud", "gateway-17"));
    assert_eq!(b.addresses, ["iot.example.com:8883"]);
    assert_eq!((b.username.as_deref(), b.password.as_deref()), (Some("gateway-17"), Some("s3cret-cloud-pass")));
    assert_eq!((b.protocol, b.clean_start, b.keepalive.as_secs()), (broker_bridge::Protocol::V311, false, 60));
    assert_eq!(b.tls.as_ref().map(|t| t.ca_file.clone()), Some("/etc/mosquitto/certs/cloud-ca.pem".into()));
    let rules: Vec<(String, String)> = b.topics.iter().map(|r| (r.local_filter(), r.remote_filter())).collect();
    assert_eq!(
        rules,
        [
            ("site17/telemetry/#".into(), "building/17/telemetry/#".into()),
            ("site17/commands/#".into(), "building/17/commands/#".into())
        ]
    );
    assert_eq!(b.topics[1].direction, broker_bridge::Direction::In);
}

#[test]
fn passwords_and_acls_per_listener() {
    let m = translate("auth.conf", PASSWORD_ACL, PLANNED);
    assert_all_accounted_for("auth.conf", PASSWORD_ACL, &m);
    let lan = "bind = \"0.0.0.0:1883\"  # auth.conf:4: listener 1883 0.0.0.0\nmax_connections = 2000\n\
               allow_anonymous = false  # auth.conf:5\n\
               password_file = \"/etc/mosquitto/passwd\"  # auth.conf:6\n\
               acl_file = \"/etc/mosquitto/acl\"  # auth.conf:7\n";
    assert!(m.toml.contains(lan), "{}", m.toml);
    let local = "bind = \"127.0.0.1:1884\"  # auth.conf:10: listener 1884 127.0.0.1\n\
                 allow_anonymous = true  # auth.conf:11\n\n";
    assert!(m.toml.contains(local), "{}", m.toml);
    assert!(m.toml.contains("\nsys_interval = 10  # auth.conf:"), "{}", m.toml);

    let (_, config) = load("auth.conf", PASSWORD_ACL);
    let lan = &config.settings.listeners[0].auth;
    assert_eq!(lan.password_file.as_deref(), Some(std::path::Path::new("/etc/mosquitto/passwd")));
    assert_eq!(lan.acl_file.as_deref(), Some(std::path::Path::new("/etc/mosquitto/acl")));
    assert!(config.settings.sessions.queue_qos0_offline);
    assert_eq!(config.settings.mqtt.maximum_qos, mqtt_codec::QoS::AtLeastOnce);
}

#[test]
fn websocket_listeners_plain_and_tls() {
    let (m, config) = load("ws.conf", WEBSOCKETS);
    assert_all_accounted_for("ws.conf", WEBSOCKETS, &m);
    let ws = Transport::WebSocket { path: "/mqtt".into() };
    let transports: Vec<_> = config.settings.listeners.iter().map(|l| (l.bind.port(), l.transport.clone())).collect();
    assert_eq!(transports, [(1883, Transport::Mqtt), (9001, ws.clone()), (9443, ws)]);
    assert!(config.settings.listeners[2].tls.is_some());
    assert!(note(&m, "http_dir").reason.contains("no HTTP files"));
}

#[test]
fn bad_unknown_and_misplaced_lines_are_named() {
    let text = "listener 1883 gateway.local\nmax_qos 3\nmax_keepalive abc\nfrobnicate yes\ntopic a/# out\n\
                max_queued_messages 0\nmax_packet_size 0\nlistener 0 /run/mosquitto.sock\n";
    let m = translate("bad.conf", text, PLANNED);
    assert_all_accounted_for("bad.conf", text, &m);
    assert!(note(&m, "listener 1883").reason.contains("is a name"), "{:#?}", m.notes);
    assert!(note(&m, "max_qos").reason.contains("0, 1 or 2 (got 3)"));
    assert!(note(&m, "max_keepalive").reason.contains("whole number"));
    assert!(note(&m, "frobnicate").reason.contains("translator knows"));
    assert!(note(&m, "topic").reason.contains("outside a connection block"));
    assert!(note(&m, "max_queued_messages").reason.contains("bounded"));
    assert!(note(&m, "max_packet_size").reason.contains("always has one"));
    assert!(m.notes.iter().any(|n| n.reason.contains("Unix socket")));
    // The named host is bound to the loopback interface, never wider.
    let (_, config) = load("bad.conf", text);
    let bind = config.settings.listeners.iter().map(|l| l.bind).collect::<Vec<_>>();
    assert_eq!(bind, ["127.0.0.1:1883".parse::<std::net::SocketAddr>().unwrap()]);
}

#[test]
fn a_large_packet_limit_raises_the_queue_to_fit_it() {
    let (_, config) = load("big.conf", "max_packet_size 20000000\n");
    assert_eq!(config.settings.limits.max_packet_size, 20_000_000);
    assert_eq!(config.settings.limits.max_queued_bytes, 20_000_000);
}

#[test]
fn incomplete_tls_leaves_the_listener_out_instead_of_serving_plaintext() {
    let text = "listener 1883 127.0.0.1\nlistener 8883\ncertfile /etc/c.pem\nrequire_certificate true\n";
    let m = translate("half.conf", text, PLANNED);
    assert_all_accounted_for("half.conf", text, &m);
    assert!(!m.toml.contains("bind = \"0.0.0.0:8883\""), "a TLS listener served in plaintext:\n{}", m.toml);
    assert!(note(&m, "/etc/c.pem").reason.contains("both certfile and keyfile"), "{:#?}", m.notes);
    let (_, config) = load("half.conf", text);
    assert_eq!(config.settings.listeners.len(), 1);
}

#[test]
fn strings_are_quoted_for_toml() {
    assert_eq!(emit::quote(r#"C:\certs\"a".pem"#), r#""C:\\certs\\\"a\".pem""#);
    assert_eq!(emit::quote("tab\there"), "\"tab\\there\"");
    let m = translate("q.conf", "persistence_location /var/lib/my \"broker\"\n", PLANNED);
    assert!(m.toml.contains(r#"path = "/var/lib/my \"broker\"""#), "{}", m.toml);
}

#[test]
fn the_whole_translation_with_authentication_and_persistence_loads_as_ours() {
    let text = "persistence true\npersistence_location /var/lib/mosquitto/\n\
                per_listener_settings true\nlistener 1883 0.0.0.0\nallow_anonymous false\n\
                password_file /etc/mosquitto/passwd\nacl_file /etc/mosquitto/acl\n";
    let m = translate("full.conf", text, PLANNED);
    let config = Config::from_toml(&m.toml).unwrap_or_else(|e| panic!("does not load: {e}\n{}", m.toml));
    let l = &config.settings.listeners[0];
    assert_eq!(l.auth.allow_anonymous, Some(false), "{}", m.toml);
    assert_eq!(l.auth.password_file.as_deref(), Some(std::path::Path::new("/etc/mosquitto/passwd")));
    assert_eq!(l.auth.acl_file.as_deref(), Some(std::path::Path::new("/etc/mosquitto/acl")));
    assert!(config.settings.persistence.enabled);
    assert_eq!(config.settings.persistence.path, std::path::Path::new("/var/lib/mosquitto/"));
}
