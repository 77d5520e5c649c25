//! TLS listeners against real clients: rumqttc, raw rustls, mosquitto_pub/mosquitto_sub, `openssl s_client` and
//! paho-mqtt; client certificate modes, identity as username, certificate rotation. Certificates are made at run
//! time. Missing external programs skip locally and fail under REQUIRE_INTEROP=1.

mod tls_support;

use std::time::Duration;

use broker::config::{ClientAuth, Transport};
use rumqttc::QoS;
use tests::client;
use tests::process::{self, run};
use tls_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// rumqttc over TLS: connect, subscribe, and get back a small and a 1 MiB message.
#[tokio::test]
async fn rumqttc_over_tls_publishes_and_receives() {
    let pki = Pki::new("rumqttc");
    let server = pki.server("server", 1);
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let id = unique("tls-rumqttc");
    let opts = rumqttc_tls_options(&id, "127.0.0.1", b.port(), mqtt_client_config(pki.ca_der(), None), false);
    let (mut c, _) = client::connect(opts, false).await;
    let topic = unique("tls/rumqttc");
    assert_eq!(c.subscribe(&topic, QoS::AtLeastOnce).await, Some(QoS::AtLeastOnce));
    c.publish(&topic, QoS::AtLeastOnce, false, "over tls").await;
    assert_eq!(&c.next_publish().await.payload[..], b"over tls");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    c.publish(&topic, QoS::AtLeastOnce, false, big.clone()).await;
    let got = c.next_publish().await;
    assert_eq!(got.payload.len(), big.len());
    assert!(got.payload[..] == big[..], "1 MiB payload changed in transit");
    c.disconnect().await;
    b.shutdown().await;
}

/// Client certificate modes x clients: no certificate, one from the trusted CA, one from another CA, an expired
/// one. rumqttc connects or fails as each mode says, and after every refusal the listener keeps serving.
#[tokio::test]
async fn client_certificate_modes_matrix() {
    let pki = Pki::new("matrix");
    let other = Pki::new("matrix-other");
    let server = pki.server("server", 1);
    let trusted = pki.client("trusted", "device-trusted");
    let untrusted = other.client("untrusted", "device-untrusted");
    let expired = pki.client_with("expired", "device-expired", &[], true);
    let clients: [(&str, Option<&Leaf>); 4] =
        [("none", None), ("trusted", Some(&trusted)), ("untrusted", Some(&untrusted)), ("expired", Some(&expired))];
    // (mode, which of the four clients the broker accepts)
    let modes = [
        (ClientAuth::None, [true, true, true, true]),
        (ClientAuth::Optional, [true, true, false, false]),
        (ClientAuth::Required, [false, true, false, false]),
    ];
    let mut table = Vec::new();
    for (mode, accepted) in modes {
        let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, mode, false))).await;
        for ((name, leaf), want) in clients.iter().zip(accepted) {
            let id = unique(&format!("mtls-{name}"));
            let opts = rumqttc_tls_options(&id, "127.0.0.1", b.port(), mqtt_client_config(pki.ca_der(), *leaf), false);
            let got = rumqttc_connects(opts).await;
            table.push(format!("{mode:?} x {name}: {}", if got.is_ok() { "connected" } else { "refused" }));
            assert_eq!(got.is_ok(), want, "client_auth {mode:?}, client certificate {name}: {got:?}");
        }
        // Still serving after the refusals.
        let ok = tls_mqtt_session(b.addr, mqtt_client_config(pki.ca_der(), Some(&trusted)), &unique("after")).await;
        assert_eq!(ok, Ok(()), "{mode:?}: listener stopped serving");
        b.shutdown().await;
    }
    eprintln!("{}", table.join("\n"));
}

/// Ok when rumqttc gets a CONNACK, else the error it reported.
async fn rumqttc_connects(opts: rumqttc::MqttOptions) -> Result<(), String> {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let result = within("rumqttc connect", async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                    return if a.code == rumqttc::ConnectReturnCode::Success {
                        // With TLS 1.3 the server checks the client certificate after the client has finished;
                        // a refusal arrives after CONNACK could have. Make one round trip to be sure.
                        client.subscribe("tls/matrix/probe", QoS::AtMostOnce).await.map_err(|e| e.to_string())?;
                        loop {
                            match eventloop.poll().await {
                                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => return Ok(()),
                                Ok(_) => {}
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                    } else {
                        Err(format!("{:?}", a.code))
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    result
}

/// A device's certificate is its identity: subject CN, or a SAN when the subject has no CN. The broker holds it
/// while the client is connected and drops it after.
#[tokio::test]
async fn identity_as_username_is_visible_to_the_broker() {
    let pki = Pki::new("identity");
    let server = pki.server("server", 1);
    let cn = pki.client("cn", "sensor-0042");
    let san_only = pki.client_with("san", "", &["gateway-7.example"], false);
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::Required, true))).await;
    let id = unique("identity");
    let (c, _) = client::connect(
        rumqttc_tls_options(&id, "127.0.0.1", b.port(), mqtt_client_config(pki.ca_der(), Some(&cn)), false),
        false,
    )
    .await;
    assert_eq!(b.broker.connected_identities(), vec!["sensor-0042".to_owned()]);
    let mut s = within("TLS", tls_connect(b.addr, mqtt_client_config(pki.ca_der(), Some(&san_only)))).await.unwrap();
    assert_eq!(mqtt_connect(&mut s, &unique("san")).await.unwrap(), [0x20, 2, 0, 0]);
    assert_eq!(b.broker.connected_identities(), vec!["gateway-7.example".to_owned(), "sensor-0042".to_owned()]);
    c.disconnect().await;
    drop(s);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !b.broker.connected_identities().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "identities kept: {:?}", b.broker.connected_identities());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.shutdown().await;
}

/// Plaintext MQTT on a TLS port gets nothing back and is closed; a stalled client is closed at the CONNECT
/// timeout; TLS clients keep being served meanwhile.
#[tokio::test]
async fn plaintext_and_silent_clients_on_a_tls_port_fail_cleanly() {
    let pki = Pki::new("plain");
    let server = pki.server("server", 1);
    let mut settings = tests::Settings::default();
    settings.limits.connect_timeout = Duration::from_secs(1);
    let b = start_with(settings, Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let mut plain = TcpStream::connect(b.addr).await.unwrap();
    plain.write_all(&connect_packet(&unique("plain"))).await.unwrap();
    let mut buf = Vec::new();
    // The server answers a non-TLS record with at most an alert, never a CONNACK, then closes.
    within("plaintext client closed", plain.read_to_end(&mut buf)).await.ok();
    assert!(!buf.starts_with(&[0x20]), "plaintext client got an MQTT answer: {buf:02x?}");
    let silent = TcpStream::connect(b.addr).await.unwrap();
    let ok = tls_mqtt_session(b.addr, mqtt_client_config(pki.ca_der(), None), &unique("tls")).await;
    assert_eq!(ok, Ok(()));
    let mut silent = silent;
    let mut rest = Vec::new();
    let n =
        within_for(Duration::from_secs(4), "silent client closed at the timeout", silent.read_to_end(&mut rest)).await;
    assert!(n.is_ok_and(|n| n == 0) || rest.is_empty());
    b.shutdown().await;
}

/// `openssl s_client -alpn mqtt`: TLS 1.2 and 1.3 succeed with ALPN mqtt; TLS 1.1 is refused.
#[tokio::test]
async fn openssl_s_client_tls_versions_and_alpn() {
    if !need("openssl") {
        return;
    }
    let pki = Pki::new("openssl");
    let server = pki.server("server", 1);
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let connect = format!("127.0.0.1:{}", b.port());
    let ca = pki.ca_file.to_str().unwrap().to_owned();
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let args = ["s_client", "-connect", &connect, flag, "-alpn", "mqtt", "-CAfile", &ca, "-verify_return_error"];
        let out = run("openssl", &args, Duration::from_secs(10)).await;
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, Some(0), "openssl {flag}: {text}");
        assert!(text.contains(&format!("New, {name}, Cipher is")), "openssl {flag}: {text}");
        assert!(text.contains("ALPN protocol: mqtt"), "openssl {flag}: {text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "openssl {flag}: {text}");
    }
    // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal is the broker's.
    let args = ["s_client", "-connect", &connect, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-alpn", "mqtt"];
    let out = run("openssl", &args, Duration::from_secs(10)).await;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_ne!(out.code, Some(0), "TLS 1.1 was accepted: {text}");
    assert!(!text.contains("New, TLSv1.1"), "{text}");
    // rustls answers a TLS 1.1 ClientHello with a fatal alert (handshake_failure) and no session.
    assert!(text.contains("New, (NONE), Cipher is (NONE)"), "{text}");
    assert!(text.contains("alert handshake failure") || text.contains("alert protocol version"), "{text}");
    // And the listener still serves.
    assert_eq!(tls_mqtt_session(b.addr, mqtt_client_config(pki.ca_der(), None), &unique("after")).await, Ok(()));
    b.shutdown().await;
}

/// mosquitto_pub/mosquitto_sub over TLS: with --cafile only, with a client certificate (its CN is the identity
/// the broker sees), and refused without one where one is required.
#[tokio::test]
async fn mosquitto_clients_over_tls() {
    if !need("mosquitto_pub") || !need("mosquitto_sub") {
        return;
    }
    let pki = Pki::new("mosquitto");
    let server = pki.server("server", 1);
    let device = pki.client("device", "mosq-device-1");
    let (ca, cert, key) = (path(&pki.ca_file), path(&device.cert), path(&device.key));

    // --cafile only, on a listener that needs no client certificate.
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let port = b.port().to_string();
    let topic = unique("tls/mosq/plain");
    let sub = spawn_sub(&["-h", "localhost", "-p", &port, "--cafile", &ca, "-t", &topic, "-C", "1", "-W", "10"]);
    wait_subscribed(&b.broker, 1).await;
    let out = run(
        "mosquitto_pub",
        &["-h", "localhost", "-p", &port, "--cafile", &ca, "-t", &topic, "-r", "-m", "cafile-only"],
        WAIT,
    )
    .await;
    assert_eq!(out.code, Some(0), "mosquitto_pub --cafile: {}", out.stderr);
    let got = within_for(Duration::from_secs(10), "mosquitto_sub", sub.wait_with_output()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "cafile-only");
    b.shutdown().await;

    // Client certificate required, identity as username.
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::Required, true))).await;
    let port = b.port().to_string();
    let topic = unique("tls/mosq/mtls");
    let sub = spawn_sub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-t",
        &topic,
        "-C",
        "1",
        "-W",
        "10",
    ]);
    wait_subscribed(&b.broker, 1).await;
    assert_eq!(b.broker.connected_identities(), vec!["mosq-device-1".to_owned()]);
    let args = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-t",
        &topic,
        "-r",
        "-m",
        "with-cert",
    ];
    let out = run("mosquitto_pub", &args, WAIT).await;
    assert_eq!(out.code, Some(0), "mosquitto_pub --cert: {}", out.stderr);
    let got = within_for(Duration::from_secs(10), "mosquitto_sub", sub.wait_with_output()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "with-cert");

    // No certificate where one is required: refused, and nothing is delivered.
    let out =
        run("mosquitto_pub", &["-h", "localhost", "-p", &port, "--cafile", &ca, "-t", &topic, "-m", "x"], WAIT).await;
    assert_ne!(out.code, Some(0), "mosquitto_pub without a certificate was accepted");
    assert_eq!(b.stats_received(), 1, "a message got through without a certificate");
    b.shutdown().await;
}

fn path(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn spawn_sub(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("mosquitto_sub")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `n` clients are connected and have had time to subscribe.
async fn wait_subscribed(b: &tests::Broker, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.stats().clients_connected < n {
        assert!(tokio::time::Instant::now() < deadline, "mosquitto_sub did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The messages are retained, so a SUBSCRIBE that is routed after the publish still gets them.
}

trait Received {
    fn stats_received(&self) -> u64;
}

impl Received for TlsBroker {
    fn stats_received(&self) -> u64 {
        self.broker.stats().messages_received
    }
}

/// Python paho-mqtt 2.x over TLS: subscribes, publishes to itself, prints what it got.
#[tokio::test]
async fn paho_over_tls() {
    if !process::require("python3 with paho-mqtt 2.x", process::paho_available()) {
        return;
    }
    let pki = Pki::new("paho");
    let server = pki.server("server", 1);
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let out = paho_roundtrip(b.port(), "tcp", "", Some(&pki.ca_file)).await;
    assert_eq!(out, "got hello-paho");
    b.shutdown().await;
}

/// Rotation: new certificate files are picked up without a restart; a new connection sees the new serial, the
/// connection opened before keeps publishing; broken files keep the previous certificate.
#[tokio::test]
async fn certificate_rotation_without_restart() {
    let pki = Pki::new("rotate");
    let server = pki.server("server", 1);
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    assert_eq!(server_serial(b.addr, pki.ca_der()).await.unwrap(), vec![1]);
    let id = unique("rotate-old");
    let opts = rumqttc_tls_options(&id, "127.0.0.1", b.port(), mqtt_client_config(pki.ca_der(), None), false);
    let (mut old, _) = client::connect(opts, false).await;
    let topic = unique("tls/rotate");
    old.subscribe(&topic, QoS::AtLeastOnce).await;

    // Replace the files (by rename, as certificate managers do); the listener polls them every second.
    // A clock with coarse timestamps could give the new files the old modification time; the length differs
    // anyway only by chance, so wait a moment first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    pki.server("server", 2);
    let serial = wait_serial(&b, &pki, vec![2]).await;
    assert_eq!(serial, vec![2]);
    old.publish(&topic, QoS::AtLeastOnce, false, "still here").await;
    assert_eq!(&old.next_publish().await.payload[..], b"still here");

    // A broken certificate file: the listener keeps serial 2.
    replace_file(&server.cert, b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server_serial(b.addr, pki.ca_der()).await.unwrap(), vec![2]);
    // Fixed files are taken again.
    pki.server("server", 3);
    assert_eq!(wait_serial(&b, &pki, vec![3]).await, vec![3]);
    old.publish(&topic, QoS::AtLeastOnce, false, "after two rotations").await;
    assert_eq!(&old.next_publish().await.payload[..], b"after two rotations");
    old.disconnect().await;
    b.shutdown().await;
}

async fn wait_serial(b: &TlsBroker, pki: &Pki, want: Vec<u8>) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let got = server_serial(b.addr, pki.ca_der()).await.unwrap();
        if got == want || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A new CA bundle is reloaded too (Mosquitto keeps the old one): a client of a new CA is refused before, and
/// accepted after the bundle is replaced.
#[tokio::test]
async fn ca_bundle_rotation() {
    let pki = Pki::new("ca-rotate");
    let next = Pki::new("ca-rotate-next");
    let server = pki.server("server", 1);
    let newcomer = next.client("newcomer", "device-next");
    let b = start(Transport::Mqtt, Some(tls_settings(&pki, &server, ClientAuth::Required, false))).await;
    let config = || mqtt_client_config(pki.ca_der(), Some(&newcomer));
    assert!(tls_mqtt_session(b.addr, config(), &unique("before")).await.is_err());
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&pki.ca_file).unwrap(),
        std::fs::read_to_string(&next.ca_file).unwrap()
    );
    replace_file(&pki.ca_file, bundle.as_bytes());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tls_mqtt_session(b.addr, config(), &unique("after")).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "new CA bundle not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.shutdown().await;
}

/// Revocation lists: a revoked client certificate is refused, another from the same CA is accepted.
#[tokio::test]
async fn revoked_client_certificates_are_refused() {
    let pki = Pki::new("crl");
    let server = pki.server("server", 1);
    let good = pki.client_serial("good", "device-good", 76);
    let revoked = pki.client_serial("revoked", "device-revoked", 77);
    let mut tls = tls_settings(&pki, &server, ClientAuth::Required, false);
    tls.crl_files = vec![pki.crl("ca", &[77])];
    let b = start(Transport::Mqtt, Some(tls)).await;
    let refused = tls_mqtt_session(b.addr, mqtt_client_config(pki.ca_der(), Some(&revoked)), &unique("revoked")).await;
    assert!(refused.is_err(), "revoked certificate accepted");
    let ok = tls_mqtt_session(b.addr, mqtt_client_config(pki.ca_der(), Some(&good)), &unique("good")).await;
    assert_eq!(ok, Ok(()));
    b.shutdown().await;
}

/// The `broker` binary: TLS listeners from a config file, SIGHUP reloads them, unusable TLS files stop the start
/// with a message naming the file.
#[tokio::test]
async fn binary_serves_tls_from_config_and_reloads_on_sighup() {
    let Some(bin) = process::broker_bin() else {
        process::require("the broker binary (cargo build -p broker)", false);
        return;
    };
    let pki = Pki::new("binary");
    let server = pki.server("server", 1);
    let config = pki.dir.join("broker.toml");
    let toml = format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        path(&server.cert),
        path(&server.key)
    );
    std::fs::write(&config, toml).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next_line = async || within("broker log line", lines.next_line()).await.unwrap().unwrap_or_default();
    let addr = loop {
        let line = next_line().await;
        if let Some(addr) = process::parse_listen_line(&line) {
            assert!(line.contains("mqtts"), "{line}");
            break addr;
        }
    };
    assert_eq!(server_serial(addr, pki.ca_der()).await.unwrap(), vec![1]);
    let pid = child.id().unwrap().to_string();
    let out = run("kill", &["-HUP", &pid], WAIT).await;
    assert_eq!(out.code, Some(0));
    loop {
        let line = next_line().await;
        if line.contains("TLS certificates reloaded") {
            assert!(line.contains("SIGHUP"), "{line}");
            break;
        }
    }
    // Still serving after the signal.
    assert_eq!(server_serial(addr, pki.ca_der()).await.unwrap(), vec![1]);
    child.kill().await.unwrap();

    // A key file that does not exist: the broker does not start, and says which file.
    let bad = pki.dir.join("bad.toml");
    let missing = pki.dir.join("missing.key");
    std::fs::write(
        &bad,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            path(&server.cert),
            path(&missing)
        ),
    )
    .unwrap();
    let out = run(bin.to_str().unwrap(), &["--config", bad.to_str().unwrap()], Duration::from_secs(10)).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("missing.key"), "{}", out.stderr);
}
