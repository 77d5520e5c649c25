//! Handshake cost: how many connections per second the broker takes from connect to CONNACK, over plain TCP and
//! over TLS (1.3 and 1.2, full handshakes, with and without a client certificate).
//!
//! ```sh
//! cargo run --release -p broker --example tls_handshake_bench -- [SECONDS_PER_CASE] [CONCURRENCY]
//! ```
//!
//! Broker and clients run in one process on 127.0.0.1, so the clients' share of the handshake work (and of the
//! CPU) is included: the figures compare transports on one machine, they are not the broker's ceiling. Each
//! connection sends CONNECT, waits for CONNACK, sends DISCONNECT and closes. Client session resumption is off.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker::config::{ClientAuth, ListenerSettings, TlsSettings};
use broker::{Broker, Listener, Settings};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Pki {
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: Vec<u8>,
    tls: TlsSettings,
}

fn make_pki(dir: &Path) -> Result<Pki, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server.signed_by(&server_key, &ca, &ca_key)?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, "bench-device");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = client.signed_by(&client_key, &ca, &ca_key)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), server.pem())?;
    std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;
    Ok(Pki {
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: client_key.serialize_der(),
        tls: TlsSettings {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_auth: ClientAuth::None,
            ca_file: Some(dir.join("ca.pem")),
            crl_files: Vec::new(),
            use_identity_as_username: false,
        },
    })
}

/// A clean-session MQTT 3.1.1 CONNECT with a client id of its own (a shared id would be a session takeover).
fn connect_packet() -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!("hb{:012}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut p = vec![0x10, 12 + id.len() as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, id.len() as u8];
    p.extend_from_slice(id.as_bytes());
    p
}

async fn mqtt_session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Result<(), Error> {
    s.write_all(&connect_packet()).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    if ack != [0x20, 2, 0, 0] {
        return Err(format!("CONNACK {ack:02x?}").into());
    }
    // The broker may close first once it has read DISCONNECT; errors from here on do not undo the CONNACK.
    let _ = s.write_all(&[0xE0, 0]).await;
    let _ = s.shutdown().await;
    Ok(())
}

async fn one(addr: SocketAddr, tls: Option<&tokio_rustls::TlsConnector>) -> Result<(), Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // Close with RST: tens of thousands of client sockets in TIME_WAIT would exhaust the ephemeral ports.
    tcp.set_zero_linger()?;
    match tls {
        None => mqtt_session(tcp).await,
        Some(c) => mqtt_session(c.connect(ServerName::IpAddress(addr.ip().into()), tcp).await?).await,
    }
}

/// Connections per second from `concurrency` loops over `secs` seconds, and the number that failed.
async fn measure(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    secs: u64,
    concurrency: usize,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (done, failed, tls) = (done.clone(), failed.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match tokio::time::timeout(Duration::from_secs(5), one(addr, tls.as_ref())).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first failure: {e}");
                        }
                        0
                    }
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}

fn connector(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
    with_cert: bool,
) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone())?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])?
        .with_root_certificates(roots);
    let mut config = if with_cert {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key.clone()));
        builder.with_client_auth_cert(pki.client_chain.clone(), key)?
    } else {
        builder.with_no_client_auth()
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn listener(tls: Option<TlsSettings>) -> Result<(SocketAddr, Listener), Error> {
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let settings = ListenerSettings { tls, ..ListenerSettings::plain(addr) };
    Ok((addr, Listener::from_tcp(tcp, &settings)?))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let concurrency: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("tls-bench-{}", std::process::id()));
    let pki = make_pki(&dir)?;
    let (plain_addr, plain) = listener(None).await?;
    let (tls_addr, tls) = listener(Some(pki.tls.clone())).await?;
    let mtls_settings = TlsSettings { client_auth: ClientAuth::Required, ..pki.tls.clone() };
    let (mtls_addr, mtls) = listener(Some(mtls_settings)).await?;
    let broker = Broker::new(Settings::default())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = broker.clone();
    let server = tokio::spawn(async move {
        serving
            .serve_listeners(vec![plain, tls, mtls], async move {
                let _ = stopped.await;
            })
            .await
    });

    println!("connect + CONNECT/CONNACK + DISCONNECT, {concurrency} concurrent clients, {secs} s per case");
    let (tcp, failed) = measure(plain_addr, None, secs, concurrency).await;
    println!("plain TCP                     {tcp:8.0} conn/s  ({failed} failed)");
    let cases = [
        ("TLS 1.3, ECDSA P-256", tls_addr, &rustls::version::TLS13, false),
        ("TLS 1.2, ECDSA P-256", tls_addr, &rustls::version::TLS12, false),
        ("TLS 1.3 + client certificate", mtls_addr, &rustls::version::TLS13, true),
    ];
    for (name, addr, version, cert) in cases {
        let (rate, failed) = measure(addr, Some(connector(&pki, version, cert)?), secs, concurrency).await;
        println!("{name:<29} {rate:8.0} conn/s  ({failed} failed; {:.1}x fewer than TCP)", tcp / rate.max(1.0));
    }
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
