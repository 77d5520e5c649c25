use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use mqtt_codec::QoS;

use super::file::FileConfig;
use super::load::join_key;
use super::*;
use crate::router::SharedStrategy;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn err(toml: &str) -> String {
    Config::from_toml(toml).unwrap_err().to_string()
}

/// Every leaf key of a TOML text, dotted (`limits.max_connections`, `listeners.bind`).
fn leaf_keys(toml: &str) -> Vec<String> {
    fn walk(prefix: &str, v: &::config::Value, out: &mut Vec<String>) {
        match &v.kind {
            ::config::ValueKind::Table(t) => {
                for (k, v) in t {
                    walk(&join_key(prefix, k), v, out);
                }
            }
            ::config::ValueKind::Array(a) => a.iter().for_each(|v| walk(prefix, v, out)),
            _ => out.push(prefix.to_owned()),
        }
    }
    let c = ::config::Config::builder()
        .add_source(::config::File::from_str(toml, ::config::FileFormat::Toml))
        .build()
        .unwrap();
    let mut out = Vec::new();
    walk("", &c.cache, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The embedded default configuration: [`Settings::default`] with persistence on.
fn embedded_default() -> Config {
    let mut c = Config::default();
    c.settings.persistence.enabled = true;
    c.settings.http.enabled = true;
    c.settings.sys_interval = Some(Duration::from_secs(10));
    c
}

#[test]
fn default_toml_is_exactly_the_default_settings_with_persistence_on() {
    let c = Config::from_sources(None, HashMap::new()).unwrap();
    assert_eq!(c.settings, embedded_default().settings);
    assert_eq!(c.log, LogSettings::default());
    // The default TOML spells out every key rather than leaning on serde defaults.
    let keys = leaf_keys(DEFAULT_CONFIG);
    let want = [
        "http.bind",
        "http.enabled",
        "http.metrics",
        "limits.connect_timeout_secs",
        "limits.disconnect_slow_consumers",
        "limits.max_connect_packet_size",
        "limits.max_connection_rate_per_address",
        "limits.max_connections",
        "limits.max_connections_per_address",
        "limits.max_filters_per_subscribe",
        "limits.max_inflight_messages",
        "limits.max_message_memory",
        "limits.max_packet_size",
        "limits.max_pending_handshakes",
        "limits.max_pending_wills",
        "limits.max_queued_bytes",
        "limits.max_queued_messages",
        "limits.max_retained_bytes",
        "limits.max_retained_messages",
        "limits.max_sessions",
        "limits.max_subscriptions_per_client",
        "limits.per_address_limits_on_loopback",
        "listeners.bind",
        "log.format",
        "log.level",
        "mqtt.max_session_expiry_secs",
        "mqtt.max_topic_levels",
        "mqtt.maximum_qos",
        "mqtt.receive_maximum",
        "mqtt.response_information",
        "mqtt.retain_available",
        "mqtt.server_topic_aliases",
        "mqtt.shared_subscription_strategy",
        "mqtt.shared_subscriptions",
        "mqtt.subscription_identifiers",
        "mqtt.topic_alias_maximum",
        "mqtt.wildcard_subscriptions",
        "persistence.enabled",
        "persistence.fsync",
        "persistence.fsync_interval_ms",
        "persistence.max_bytes",
        "persistence.path",
        "sessions.idle_timeout_secs",
        "sessions.max_keepalive",
        "sessions.persistent_session_expiry_secs",
        "sessions.queue_qos0_offline",
        "sys_interval",
    ];
    assert_eq!(keys, want);
    // And those values are the defaults: the file form parsed alone gives the same settings.
    let alone: FileConfig = ::config::Config::builder()
        .add_source(::config::File::from_str(DEFAULT_CONFIG, ::config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    assert_eq!(alone.validate().unwrap(), embedded_default());
}

#[test]
fn mqtt_section_is_validated_and_applied() {
    let c = Config::from_toml(
        "[mqtt]\nmaximum_qos = 1\nshared_subscription_strategy = \"random\"\nmax_session_expiry_secs = 60\nresponse_information = \"resp\"",
    )
    .unwrap();
    assert_eq!(c.settings.mqtt.maximum_qos, QoS::AtLeastOnce);
    assert_eq!(c.settings.mqtt.shared_subscription_strategy, SharedStrategy::Random);
    assert_eq!(c.settings.mqtt.max_session_expiry, Some(Duration::from_secs(60)));
    assert_eq!(c.settings.mqtt.response_information.as_deref(), Some("resp"));
    for (toml, key) in [
        ("[mqtt]\nmaximum_qos = 3", "mqtt.maximum_qos"),
        ("[mqtt]\nshared_subscription_strategy = \"first\"", "mqtt.shared_subscription_strategy"),
        ("[mqtt]\nreceive_maximum = 0", "mqtt.receive_maximum"),
        ("[mqtt]\nresponse_information = \"a/#\"", "mqtt.response_information"),
        ("[mqtt]\nmax_topic_levels = 0", "mqtt.max_topic_levels"),
        ("[mqtt]\nmax_topic_levels = 1025", "mqtt.max_topic_levels"),
    ] {
        let err = Config::from_toml(toml).unwrap_err();
        assert_eq!(err.key(), Some(key), "{toml}: {err}");
    }
}

#[test]
fn docs_describe_every_key_of_the_default_config() {
    let docs = include_str!("../../../docs/configuration.md");
    for key in leaf_keys(DEFAULT_CONFIG) {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(docs.contains(&format!("`{leaf}`")), "docs/configuration.md does not describe {key}");
    }
    // The commented-out listener key too.
    assert!(docs.contains("`max_connections`"));
}

#[test]
fn a_file_changes_only_the_keys_it_sets() {
    let c = Config::from_toml("[limits]\nmax_inflight_messages = 8\n[sessions]\nqueue_qos0_offline = true\n").unwrap();
    let mut want = embedded_default();
    want.settings.limits.max_inflight_messages = 8;
    want.settings.sessions.queue_qos0_offline = true;
    assert_eq!(c, want);
}

#[test]
fn websocket_and_tls_listeners() {
    let c = Config::from_toml(
        "[[listeners]]\nbind = \"127.0.0.1:8083\"\ntransport = \"websocket\"\n\
         [[listeners]]\nbind = \"127.0.0.1:8884\"\ntransport = \"websocket\"\npath = \"/ws\"\n\
         [listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
         [[listeners]]\nbind = \"0.0.0.0:8883\"\n[listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
         client_auth = \"required\"\nca_file = \"ca.pem\"\ncrl_files = [\"ca.crl\"]\n\
         use_identity_as_username = true\n",
    )
    .unwrap();
    let l = &c.settings.listeners;
    assert_eq!(l[0].transport, Transport::WebSocket { path: "/mqtt".into() });
    assert_eq!(l[0].tls, None);
    assert_eq!(l[1].transport, Transport::WebSocket { path: "/ws".into() });
    let tls = l[1].tls.as_ref().unwrap();
    assert_eq!((tls.client_auth, tls.ca_file.as_ref()), (ClientAuth::None, None));
    assert_eq!(l[2].transport, Transport::Mqtt);
    assert_eq!(
        l[2].tls,
        Some(TlsSettings {
            cert_file: "s.pem".into(),
            key_file: "s.key".into(),
            client_auth: ClientAuth::Required,
            ca_file: Some("ca.pem".into()),
            crl_files: vec!["ca.crl".into()],
            use_identity_as_username: true,
        })
    );
}

#[test]
fn bad_listener_transport_and_tls_keys_are_named() {
    let tls = "[listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n";
    let cases = [
        ("transport = \"quic\"\n", "listeners[0].transport: must be \"mqtt\" or \"websocket\" (got \"quic\")"),
        ("path = \"/x\"\n", "listeners[0].path: only a \"websocket\" listener has a path"),
        ("transport = \"websocket\"\npath = \"mqtt\"\n", "listeners[0].path: must start with /"),
        (&format!("{tls}client_auth = \"maybe\"\n"), "listeners[0].tls.client_auth: must be \"none\""),
        (&format!("{tls}client_auth = \"required\"\n"), "listeners[0].tls.ca_file: is needed when"),
        (&format!("{tls}use_identity_as_username = true\n"), "listeners[0].tls.use_identity_as_username: needs"),
        ("[listeners.tls]\ncert_file = \"\"\nkey_file = \"k\"\n", "listeners[0].tls.cert_file: must name"),
        (&format!("{tls}verify = true\n"), "listeners[0].tls.verify: unknown key"),
    ];
    for (extra, want) in cases {
        let got = err(&format!("[[listeners]]\nbind = \"127.0.0.1:1\"\n{extra}"));
        assert!(got.starts_with(want), "{extra:?}: got {got:?}, want {want:?}");
    }
    let missing = err("[[listeners]]\nbind = \"127.0.0.1:1\"\n[listeners.tls]\ncert_file = \"s.pem\"\n");
    assert!(missing.contains("missing") && missing.contains("tls.key_file"), "{missing}");
}

#[test]
fn authentication_keys_per_listener() {
    let c = Config::from_toml(
        "[[listeners]]\nbind = \"0.0.0.0:1883\"\npassword_file = \"/etc/p\"\nacl_file = \"/etc/a\"\n\
         [[listeners]]\nbind = \"127.0.0.1:1884\"\nallow_anonymous = false\n\
         [listeners.jwt]\npublic_key_files = [\"k.pem\"]\naudience = \"gw\"\n",
    )
    .unwrap();
    let l = &c.settings.listeners;
    assert_eq!(l[0].auth.password_file.as_deref(), Some(Path::new("/etc/p")));
    assert_eq!(l[0].auth.acl_file.as_deref(), Some(Path::new("/etc/a")));
    assert_eq!(l[1].auth.allow_anonymous, Some(false));
    let jwt = l[1].auth.jwt.as_ref().unwrap();
    assert_eq!((jwt.audience.as_str(), jwt.username_claim.as_str(), jwt.leeway_secs), ("gw", "sub", 60));
    let bind = "[[listeners]]\nbind = \"127.0.0.1:1\"\n";
    for (extra, want) in [
        ("password_file = \" \"\n", "listeners[0].password_file: must name a file"),
        ("[listeners.jwt]\npublic_key_files = []\naudience = \"a\"\n", "listeners[0].jwt.public_key_files: needs"),
        ("[listeners.jwt]\npublic_key_files = [\"k\"]\naudience = \"\"\n", "listeners[0].jwt.audience: must"),
        (
            "[listeners.jwt]\npublic_key_files = [\"k\"]\naudience = \"a\"\nalg = \"HS256\"\n",
            "listeners[0].jwt.alg: unknown key",
        ),
    ] {
        let got = err(&format!("{bind}{extra}"));
        assert!(got.starts_with(want), "{extra:?}: got {got:?}");
    }
    // A listener other hosts can reach needs authentication or allow_anonymous.
    let open = err("[[listeners]]\nbind = \"0.0.0.0:1883\"\n");
    assert!(
        open.starts_with("listeners[0]: 0.0.0.0:1883 is not a loopback address")
            && open.contains("allow_anonymous = true"),
        "{open}"
    );
}

#[test]
fn listeners_in_a_file_replace_the_default_listener() {
    let c = Config::from_toml(
        "[[listeners]]\nbind = \"0.0.0.0:1884\"\nmax_connections = 5\nallow_anonymous = true\n\
         [[listeners]]\nbind = \"[::1]:0\"\n",
    )
    .unwrap();
    assert_eq!(
        c.settings.listeners,
        vec![
            ListenerSettings {
                max_connections: Some(5),
                auth: AuthSettings { allow_anonymous: Some(true), ..AuthSettings::default() },
                ..ListenerSettings::plain("0.0.0.0:1884".parse().unwrap())
            },
            ListenerSettings::plain("[::1]:0".parse().unwrap()),
        ]
    );
}

#[test]
fn durations_log_and_expiry_are_converted() {
    let c = Config::from_toml(
        "[limits]\nconnect_timeout_secs = 3\n[sessions]\npersistent_session_expiry_secs = 3600\n\
         max_keepalive = 120\n[log]\nformat = \"json\"\nlevel = \"debug,broker=trace\"\n",
    )
    .unwrap();
    assert_eq!(c.settings.limits.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.settings.sessions.persistent_session_expiry, Some(Duration::from_secs(3600)));
    assert_eq!(c.settings.sessions.max_keepalive, 120);
    assert_eq!(c.log, LogSettings { format: LogFormat::Json, level: "debug,broker=trace".into() });
}

#[test]
fn bridges_are_validated_with_the_key_at_fault() {
    let base = "[[bridges]]\nname = \"cloud\"\naddresses = [\"up.example:8883\"]\ntopics = [\"a/# both 1 l/ r/\"]\n";
    let c = Config::from_toml(base).unwrap();
    let b = &c.settings.bridges[0];
    assert_eq!((b.name.as_str(), b.max_inflight, b.clean_start), ("cloud", 100, false));
    assert_eq!(b.topics[0].remote_filter(), "r/a/#");
    let v311 = Config::from_toml(&format!("{base}protocol = \"3.1.1\"\n")).unwrap();
    assert_eq!(v311.settings.bridges[0].max_inflight, 20);
    for (extra, key) in [
        ("protocol = \"4\"\n", "bridges[0].protocol"),
        ("overflow = \"spill\"\n", "bridges[0].overflow"),
        ("topics = [\"a/# sideways\"]\n", "bridges[0].topics[0]"),
        ("max_queue_bytes = 10\n", "bridges[0].max_queue_bytes"),
        ("colour = 1\n", "colour"),
    ] {
        let toml = if extra.starts_with("topics") {
            base.replace("topics = [\"a/# both 1 l/ r/\"]\n", extra)
        } else {
            format!("{base}{extra}")
        };
        let e = err(&toml);
        assert!(e.contains(key), "{extra:?}: {e}");
    }
    assert!(err(&format!("{base}{}", &base)).contains("bridges[1].name"), "two bridges of one name");
    assert!(!format!("{b:?}").contains("secret"));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    assert!(err("[limits]\nmax_conections = 5\n").starts_with("limits.max_conections: unknown key (expected"));
    assert!(err("verbose = true\n").starts_with("verbose: unknown key"));
    assert!(err("[tls]\ncert = \"x\"\n").starts_with("tls: unknown key"));
    assert!(err("[[listeners]]\nbind = \"127.0.0.1:1\"\nport = 2\n").starts_with("listeners[0].port: unknown key"));
    // Keys are case-sensitive in files.
    assert!(err("[LIMITS]\nmax_connections = 5\n").starts_with("LIMITS: unknown key"));
    let e = Config::from_toml("[sessions]\nqueue_qos0 = true\n").unwrap_err();
    assert_eq!(e.key(), Some("sessions.queue_qos0"));
}

#[test]
fn bad_values_name_the_key_and_why() {
    let cases = [
        ("[limits]\nmax_packet_size = 3", "limits.max_packet_size: must be between 16 and 268435460 (got 3)"),
        (
            "[limits]\nmax_packet_size = 268435461",
            "limits.max_packet_size: must be between 16 and 268435460 (got 268435461)",
        ),
        ("[limits]\nmax_inflight_messages = 0", "limits.max_inflight_messages: must be between 1 and 65535 (got 0)"),
        (
            "[limits]\nmax_inflight_messages = 65536",
            "limits.max_inflight_messages: must be between 1 and 65535 (got 65536)",
        ),
        ("[limits]\nmax_connections = 0", "limits.max_connections: must be between 1 and 2305843009213693951 (got 0)"),
        ("[limits]\nmax_queued_messages = -1", "limits.max_queued_messages: must be at least 1 (got -1)"),
        ("[limits]\nconnect_timeout_secs = 0", "limits.connect_timeout_secs: must be between 1 and 3600 (got 0)"),
        (
            "[limits]\nmax_subscriptions_per_client = 0",
            "limits.max_subscriptions_per_client: must be at least 1 (got 0)",
        ),
        ("[limits]\nmax_retained_messages = -5", "limits.max_retained_messages: must be at least 0 (got -5)"),
        ("[sessions]\nmax_keepalive = 70000", "sessions.max_keepalive: must be between 0 and 65535 (got 70000)"),
        (
            "[sessions]\npersistent_session_expiry_secs = -1",
            "sessions.persistent_session_expiry_secs: must be between 0 and 4294967295 (got -1)",
        ),
        (
            "[limits]\nmax_connections = \"many\"",
            "limits.max_connections: invalid type: string \"many\", expected an integer",
        ),
        (
            "[limits]\nmax_connections = 1.5",
            "limits.max_connections: invalid type: floating point `1.5`, expected an integer",
        ),
        (
            "[sessions]\nqueue_qos0_offline = 1",
            "sessions.queue_qos0_offline: invalid type: integer `1`, expected true or false",
        ),
        ("[log]\nformat = \"xml\"", "log.format: must be \"text\" or \"json\" (got \"xml\")"),
        ("[log]\nlevel = \" \"", "log.level: must not be empty (for example \"info\")"),
        ("listeners = []", "listeners: at least one listener is needed"),
        (
            "[[listeners]]\nbind = \"localhost:1883\"",
            "listeners[0].bind: not an IP address and port such as \"127.0.0.1:1883\" or \"[::]:1883\" (got \"localhost:1883\")",
        ),
        (
            "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:1\"",
            "listeners[1].bind: 127.0.0.1:1 is already listeners[0].bind",
        ),
        (
            "[[listeners]]\nbind = \"127.0.0.1:1\"\nmax_connections = 0",
            "listeners[0].max_connections: must be between 1 and 2305843009213693951 (got 0)",
        ),
        (
            "[limits]\nmax_queued_bytes = 1000",
            "limits.max_queued_bytes: must be at least limits.max_packet_size (2097152) so that the largest \
             message fits (got 1000)",
        ),
    ];
    for (toml, want) in cases {
        assert_eq!(err(toml), want, "for {toml:?}");
    }
}

#[test]
fn syntax_errors_name_the_file_and_position_on_one_line() {
    let e = Config::from_sources(Some(("site.toml", "[limits\n")), HashMap::new()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("site.toml: TOML parse error at line 1, column "), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn environment_overrides_the_file() {
    let c = Config::from_sources(
        Some(("f", "[limits]\nmax_connections = 100\nmax_queued_messages = 7\n")),
        env(&[
            ("BROKER__LIMITS__MAX_CONNECTIONS", "5"),
            ("BROKER__SESSIONS__QUEUE_QOS0_OFFLINE", "true"),
            ("BROKER__LOG__FORMAT", "json"),
            ("PATH", "/usr/bin"),
            ("BROKERAGE", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(c.settings.limits.max_connections, 5);
    assert_eq!(c.settings.limits.max_queued_messages, 7, "keys the environment does not set keep the file's");
    assert!(c.settings.sessions.queue_qos0_offline);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn environment_errors_name_the_key_and_the_variable() {
    let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONNECTIONS", "0")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "limits.max_connections: must be between 1 and 2305843009213693951 (got 0) \
         (set by BROKER__LIMITS__MAX_CONNECTIONS)"
    );
    let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONECTIONS", "5")])).unwrap_err();
    assert!(
        e.to_string().starts_with("limits.max_conections: unknown key")
            && e.to_string().ends_with("(set by BROKER__LIMITS__MAX_CONECTIONS)"),
        "{e}"
    );
    let e = Config::from_sources(None, env(&[("BROKER__LIMITS__MAX_CONNECTIONS", "lots")])).unwrap_err();
    assert_eq!(e.key(), Some("limits.max_connections"));
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("broker-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(&path, "[limits]\nmax_retained_messages = 0\n").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.settings.limits.max_retained_messages, 0);
    let missing = dir.join("missing.toml");
    let e = Config::load(Some(&missing)).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().starts_with(&format!("cannot read config file {}: ", missing.display())));
    let e = Config::load(Some(&{
        std::fs::write(dir.join("bad.toml"), "[limits]\nmax_packet_size = 3\n").unwrap();
        dir.join("bad.toml")
    }))
    .unwrap_err();
    assert_eq!(e.key(), Some("limits.max_packet_size"));
}

#[test]
fn printed_default_config_parses_back() {
    assert_eq!(Config::from_toml(DEFAULT_CONFIG).unwrap(), embedded_default());
    // Uncommenting the commented-out listener cap gives a valid file too.
    let edited = DEFAULT_CONFIG.replace("# max_connections = 1000", "max_connections = 1000");
    let c = Config::from_toml(&edited).unwrap();
    assert_eq!(c.settings.listeners[0].max_connections, Some(1000));
}
