//! MQTT 5 enhanced authentication: a challenge/response method through `Broker::with_authenticator`, unknown
//! methods, failures, and re-authentication with AUTH 0x19.

use std::sync::Arc;
use std::time::Duration;

use broker::session::auth::{AuthExchange, AuthStep, Authenticator};
use mqtt_codec::{Auth, Packet, Properties, Property, ReasonCode};
use tests::{Broker, Settings, start_default_broker, unique};

use crate::v5client::{C5, Conn, Frame};

const METHOD: &str = "TEST-CR";
const CLOSE: Duration = Duration::from_secs(2);

/// Challenge/response: the client opens with its name, the server sends a challenge `nonce:<client id>`, and the
/// client must answer `response:<client id>`. A one-step method `TEST-ONESHOT` accepts the data `ok` at once.
struct TestAuth;

struct Exchange {
    client_id: String,
    challenged: bool,
}

impl AuthExchange for Exchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        if !self.challenged {
            if data != b"hello" {
                return AuthStep::Failure;
            }
            self.challenged = true;
            return AuthStep::Continue(format!("nonce:{}", self.client_id).into_bytes());
        }
        if data == format!("response:{}", self.client_id).as_bytes() {
            AuthStep::Success(Some(b"welcome".to_vec()))
        } else {
            AuthStep::Failure
        }
    }
}

struct OneShot;

impl AuthExchange for OneShot {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        if data == b"ok" { AuthStep::Success(None) } else { AuthStep::Failure }
    }
}

/// Never decides: challenges again and again.
struct Forever;

impl AuthExchange for Forever {
    fn step(&mut self, _data: &[u8]) -> AuthStep {
        AuthStep::Continue(b"again".to_vec())
    }
}

impl Authenticator for TestAuth {
    fn start(&self, method: &str, client_id: &str) -> Option<Box<dyn AuthExchange>> {
        match method {
            METHOD => Some(Box::new(Exchange { client_id: client_id.to_owned(), challenged: false })),
            "TEST-ONESHOT" => Some(Box::new(OneShot)),
            "TEST-FOREVER" => Some(Box::new(Forever)),
            _ => None,
        }
    }
}

/// A broker with [`TestAuth`] installed (the shared harness starts brokers without an authenticator).
struct AuthBroker {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), broker::Error>>,
}

impl AuthBroker {
    async fn start() -> Self {
        Self::start_with(Settings::default()).await
    }

    async fn start_with(settings: Settings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Broker::new(settings).unwrap().with_authenticator(Arc::new(TestAuth));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .serve(vec![listener], async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self { addr, stop: Some(stop), task }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "broker did not stop cleanly: {r:?}");
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn auth_packet(reason: ReasonCode, method: &str, data: &[u8]) -> Vec<u8> {
    let props = [Property::AuthenticationMethod(method), Property::AuthenticationData(data)];
    crate::v5client::encode(
        &Packet::Auth(Auth { reason, properties: Properties::from_list(&props) }),
        mqtt_codec::ProtocolVersion::V5,
    )
}

fn auth_of(f: &Frame) -> (ReasonCode, String, Vec<u8>) {
    let a = f.auth();
    (
        a.reason,
        a.properties.authentication_method().unwrap_or_default().to_owned(),
        a.properties.authentication_data().unwrap_or_default().to_vec(),
    )
}

/// Runs the challenge/response handshake for `id` and returns the client and its CONNACK.
async fn authenticate(addr: std::net::SocketAddr, id: &str) -> (C5, Frame) {
    let (mut c, first) = C5::connect_with(addr, &Conn::new(id).auth(METHOD, b"hello")).await;
    assert_eq!(
        auth_of(&first),
        (ReasonCode::ContinueAuthentication, METHOD.to_owned(), format!("nonce:{id}").into_bytes()),
        "the server's challenge"
    );
    c.send_raw(&auth_packet(ReasonCode::ContinueAuthentication, METHOD, format!("response:{id}").as_bytes())).await;
    let ack = c.recv().await;
    (c, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_response_authentication_succeeds_and_connack_names_the_method() {
    let b = AuthBroker::start().await;
    let id = unique("auth");
    let (mut c, ack) = authenticate(b.addr, &id).await;
    let a = ack.connack();
    assert_eq!(a.code, ReasonCode::Success);
    assert_eq!(a.properties.authentication_method(), Some(METHOD));
    assert_eq!(a.properties.authentication_data(), Some(&b"welcome"[..]));
    c.sub(&unique("auth/t"), 1).await;
    // A one-step method succeeds without AUTH packets.
    let (_, ack) = C5::connect(b.addr, &Conn::new(&unique("oneshot")).auth("TEST-ONESHOT", b"ok")).await;
    assert_eq!(ack.connack().properties.authentication_method(), Some("TEST-ONESHOT"));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_gets_connack_0x8c() {
    let b = AuthBroker::start().await;
    let (mut c, f) = C5::connect_with(b.addr, &Conn::new(&unique("authunk")).auth("SCRAM-SHA-1", b"x")).await;
    assert_eq!(f.connack().code, ReasonCode::BadAuthenticationMethod);
    c.expect_closed(CLOSE).await;
    b.shutdown().await;
    // The default broker knows no method at all.
    let d = start_default_broker().await;
    let (_, f) = C5::connect_with(d.addr, &Conn::new(&unique("authnone")).auth(METHOD, b"hello")).await;
    assert_eq!(f.connack().code, ReasonCode::BadAuthenticationMethod);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_gets_connack_0x87() {
    let b = AuthBroker::start().await;
    // Wrong opening data.
    let (mut c, f) = C5::connect_with(b.addr, &Conn::new(&unique("authbad")).auth(METHOD, b"nope")).await;
    assert_eq!(f.connack().code, ReasonCode::NotAuthorized);
    c.expect_closed(CLOSE).await;
    // Wrong response to the challenge.
    let id = unique("authbad2");
    let (mut c, _) = C5::connect_with(b.addr, &Conn::new(&id).auth(METHOD, b"hello")).await;
    c.send_raw(&auth_packet(ReasonCode::ContinueAuthentication, METHOD, b"response:someone-else")).await;
    let f = c.recv().await;
    assert_eq!(f.connack().code, ReasonCode::NotAuthorized);
    c.expect_closed(CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_authentication_with_auth_0x19() {
    let b = AuthBroker::start().await;
    let id = unique("reauth");
    let (mut c, ack) = authenticate(b.addr, &id).await;
    assert_eq!(ack.connack().code, ReasonCode::Success);
    for _ in 0..2 {
        c.send_raw(&auth_packet(ReasonCode::ReAuthenticate, METHOD, b"hello")).await;
        let f = c.recv().await;
        assert_eq!(
            auth_of(&f),
            (ReasonCode::ContinueAuthentication, METHOD.to_owned(), format!("nonce:{id}").into_bytes())
        );
        c.send_raw(&auth_packet(ReasonCode::ContinueAuthentication, METHOD, format!("response:{id}").as_bytes())).await;
        let f = c.recv().await;
        assert_eq!(auth_of(&f), (ReasonCode::Success, METHOD.to_owned(), b"welcome".to_vec()));
    }
    // Still connected and served.
    c.send(&Packet::PingReq).await;
    assert!(matches!(c.recv().await.packet(), Packet::PingResp));
    // A failed re-authentication ends the connection with DISCONNECT 0x87.
    c.send_raw(&auth_packet(ReasonCode::ReAuthenticate, METHOD, b"hello")).await;
    c.recv().await;
    c.send_raw(&auth_packet(ReasonCode::ContinueAuthentication, METHOD, b"response:wrong")).await;
    c.expect_disconnect(ReasonCode::NotAuthorized, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_enhanced_authentication_is_a_protocol_error() {
    let b = AuthBroker::start().await;
    let mut c = C5::v5(b.addr, &unique("noauth")).await;
    c.send_raw(&auth_packet(ReasonCode::ReAuthenticate, METHOD, b"hello")).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_another_method_is_refused_during_connect_and_re_authentication() {
    let b = AuthBroker::start().await;
    let id = unique("authother");
    let (mut c, _) = C5::connect_with(b.addr, &Conn::new(&id).auth(METHOD, b"hello")).await;
    c.send_raw(&auth_packet(ReasonCode::ContinueAuthentication, "TEST-ONESHOT", b"ok")).await;
    let seen = c.expect_closed(CLOSE).await;
    assert!(
        seen.iter().all(|f| !matches!(f.packet(), Packet::ConnAck(a) if a.code == ReasonCode::Success)),
        "never accepted: {seen:?}"
    );
    let (mut c, ack) = authenticate(b.addr, &unique("authother2")).await;
    assert_eq!(ack.connack().code, ReasonCode::Success);
    c.send_raw(&auth_packet(ReasonCode::ReAuthenticate, "TEST-ONESHOT", b"ok")).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_exchange_ends_at_the_connect_deadline() {
    let mut settings = Settings::default();
    settings.limits.connect_timeout = Duration::from_secs(1);
    let b = AuthBroker::start_with(settings).await;
    let (mut c, first) = C5::connect_with(b.addr, &Conn::new(&unique("forever")).auth("TEST-FOREVER", b"x")).await;
    assert_eq!(first.auth().reason, ReasonCode::ContinueAuthentication);
    let t0 = std::time::Instant::now();
    // A client that keeps answering does not keep the handshake open past the CONNECT deadline.
    loop {
        if !c.try_send_raw(&auth_packet(ReasonCode::ContinueAuthentication, "TEST-FOREVER", b"more")).await {
            break;
        }
        match c.next_event(Duration::from_secs(3)).await {
            crate::v5client::Ev::Frame(f) if matches!(f.packet(), Packet::Auth(_)) => {}
            crate::v5client::Ev::Frame(f) => {
                assert_ne!(f.connack().code, ReasonCode::Success);
                c.expect_closed(CLOSE).await;
                break;
            }
            crate::v5client::Ev::Closed => break,
            crate::v5client::Ev::Silent => panic!("neither an answer nor a close"),
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "still authenticating after {:?}", t0.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(t0.elapsed() < Duration::from_millis(2500), "closed after {:?}", t0.elapsed());
    b.shutdown().await;
}
