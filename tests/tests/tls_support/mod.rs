//! Helpers of the TLS, WebSocket and browser tests: certificates made at run time (nothing in the repository can
//! expire), brokers on TLS/WS/WSS listeners, and rustls clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker::config::{ClientAuth, ListenerSettings, TlsSettings, Transport};
use broker::{Broker, Listener, Settings};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use tests::{WAIT, unique, within, within_for};

/// A certificate authority written to a directory of its own, which it signs leaf certificates into.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

/// PEM files of one leaf certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A fresh CA named `name` in a new temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(&format!("mqtt-pki-{name}")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Self { dir, ca_file, ca, ca_key }
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    fn sign(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for localhost, 127.0.0.1 and ::1 with this serial, written as `{name}.pem`/`.key`.
    /// The files are replaced by rename, as a certificate manager would.
    pub fn server(&self, name: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = self.sign(params);
        self.write(name, &cert, &key)
    }

    /// A client certificate with subject CN `cn` (none when empty) and these SANs.
    pub fn client_with(&self, name: &str, cn: &str, sans: &[&str], expired: bool) -> Leaf {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        // rcgen's default subject has a CN of its own.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let (cert, key) = self.sign(params);
        self.write(name, &cert, &key)
    }

    /// A valid client certificate with subject CN `cn` and this serial number.
    pub fn client_serial(&self, name: &str, cn: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = self.sign(params);
        self.write(name, &cert, &key)
    }

    /// A CRL of this CA revoking these serial numbers, written to `{name}.crl.pem`.
    pub fn crl(&self, name: &str, revoked: &[u64]) -> PathBuf {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca, &self.ca_key).unwrap();
        let path = self.dir.join(format!("{name}.crl.pem"));
        replace_file(&path, crl.pem().unwrap().as_bytes());
        path
    }

    /// A valid client certificate with subject CN `cn`.
    pub fn client(&self, name: &str, cn: &str) -> Leaf {
        self.client_with(name, cn, &[], false)
    }

    fn write(&self, name: &str, cert: &str, key: &str) -> Leaf {
        let leaf = Leaf { cert: self.dir.join(format!("{name}.pem")), key: self.dir.join(format!("{name}.key")) };
        replace_file(&leaf.cert, cert.as_bytes());
        replace_file(&leaf.key, key.as_bytes());
        leaf
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a file by writing a sibling and renaming it over the target.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// TLS settings serving `server`, with this client certificate policy against `pki`'s CA.
pub fn tls_settings(pki: &Pki, server: &Leaf, client_auth: ClientAuth, use_identity: bool) -> TlsSettings {
    TlsSettings {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_auth,
        ca_file: (client_auth != ClientAuth::None).then(|| pki.ca_file.clone()),
        crl_files: Vec::new(),
        use_identity_as_username: use_identity,
    }
}

/// An in-process broker serving one listener on 127.0.0.1:0.
pub struct TlsBroker {
    pub addr: SocketAddr,
    pub broker: Broker,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), broker::Error>>>,
}

/// Starts a broker with one listener of this transport and TLS.
pub async fn start(transport: Transport, tls: Option<TlsSettings>) -> TlsBroker {
    start_with(Settings::default(), transport, tls).await
}

/// As [`start`], with these settings.
pub async fn start_with(settings: Settings, transport: Transport, tls: Option<TlsSettings>) -> TlsBroker {
    let tcp = within("bind", TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let l = ListenerSettings { transport, tls, ..ListenerSettings::plain(addr) };
    let listener = Listener::from_tcp(tcp, &l).unwrap();
    let broker = Broker::new(settings).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = broker.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_listeners(vec![listener], async move {
                let _ = stopped.await;
            })
            .await
    });
    TlsBroker { addr, broker, stop: Some(stop), task: Some(task) }
}

impl TlsBroker {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the broker and asserts it stopped within 10 s.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within_for(Duration::from_secs(10), "broker shutdown", task).await.unwrap().unwrap();
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The one crypto provider of these tests.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config trusting `ca`, presenting `client` when given, limited to `versions`.
pub fn client_config(
    ca: CertificateDer<'static>,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    match client {
        Some(leaf) => {
            let certs = CertificateDer::pem_file_iter(&leaf.cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// A TLS 1.2/1.3 client config with ALPN `mqtt`.
pub fn mqtt_client_config(ca: CertificateDer<'static>, client: Option<&Leaf>) -> rustls::ClientConfig {
    let mut c = client_config(ca, client, rustls::DEFAULT_VERSIONS);
    c.alpn_protocols = vec![b"mqtt".to_vec()];
    c
}

/// A TLS connection to `addr` (server name 127.0.0.1).
pub async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(ServerName::IpAddress(addr.ip().into()), tcp).await
}

/// An MQTT 3.1.1 CONNECT with this client id, clean session, keep alive 30 s.
pub fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(id);
    let mut out = vec![0x10, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

/// Sends CONNECT and reads the 4-byte CONNACK; `Err` with the reason when the stream fails or closes first.
pub async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
) -> Result<[u8; 4], String> {
    let exchange = async {
        stream.write_all(&connect_packet(client_id)).await.map_err(|e| format!("write: {e}"))?;
        let mut ack = [0u8; 4];
        stream.read_exact(&mut ack).await.map_err(|e| format!("read: {e}"))?;
        Ok(ack)
    };
    within("CONNECT/CONNACK", exchange).await
}

/// Connects over TLS and does CONNECT/CONNACK; `Ok` only when the broker accepted the client.
pub async fn tls_mqtt_session(addr: SocketAddr, config: rustls::ClientConfig, client_id: &str) -> Result<(), String> {
    let mut s = within("TLS connect", tls_connect(addr, config)).await.map_err(|e| format!("handshake: {e}"))?;
    let ack = mqtt_connect(&mut s, client_id).await?;
    if ack == [0x20, 2, 0, 0] { Ok(()) } else { Err(format!("CONNACK {ack:02x?}")) }
}

/// The serial number of the certificate a TLS server at `addr` presents now.
pub async fn server_serial(addr: SocketAddr, ca: CertificateDer<'static>) -> std::io::Result<Vec<u8>> {
    let s = within("TLS connect", tls_connect(addr, mqtt_client_config(ca, None))).await?;
    let (_, conn) = s.get_ref();
    let cert = conn.peer_certificates().and_then(|c| c.first()).unwrap().clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    Ok(parsed.raw_serial().to_vec())
}

/// A rumqttc client over TLS (or WSS) with this config.
pub fn rumqttc_tls_options(
    client_id: &str,
    host: &str,
    port: u16,
    config: rustls::ClientConfig,
    ws: bool,
) -> rumqttc::MqttOptions {
    let tls = rumqttc::TlsConfiguration::Rustls(Arc::new(config));
    let mut o = rumqttc::MqttOptions::new(client_id, host, port);
    o.set_transport(if ws {
        rumqttc::Transport::wss_with_config(tls)
    } else {
        rumqttc::Transport::tls_with_config(tls)
    });
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    o
}

/// Skips (returns false) when `program` is missing, or fails under REQUIRE_INTEROP=1.
pub fn need(program: &str) -> bool {
    tests::process::require(program, tests::process::on_path(program))
}

/// Runs a paho-mqtt 2.x client: connect, subscribe, publish "hello-paho" to itself, print "got <payload>".
pub async fn paho_roundtrip(port: u16, transport: &str, ws_path: &str, ca: Option<&std::path::Path>) -> String {
    let script = r#"
import sys, threading, paho.mqtt.client as mqtt
port, transport, path, ca, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
done = threading.Event()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=topic.replace("/", "-"), transport=transport)
if path:
    c.ws_set_options(path=path)
if ca:
    c.tls_set(ca_certs=ca)
def on_connect(client, userdata, flags, reason, props):
    client.subscribe(topic, qos=1)
def on_subscribe(client, userdata, mid, reasons, props):
    client.publish(topic, b"hello-paho", qos=1)
def on_message(client, userdata, msg):
    print("got " + msg.payload.decode(), flush=True)
    done.set()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("localhost", port, keepalive=10)
c.loop_start()
ok = done.wait(10)
c.disconnect()
c.loop_stop()
sys.exit(0 if ok else 3)
"#;
    let topic = unique("paho/tls");
    let ca = ca.map(|p| p.to_str().unwrap().to_owned()).unwrap_or_default();
    let port = port.to_string();
    let out = tests::process::run(
        "python3",
        &["-c", script, &port, transport, ws_path, &ca, &topic],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.code, Some(0), "paho ({transport}, ca {ca:?}): {}{}", out.stdout, out.stderr);
    out.stdout.trim().to_owned()
}
