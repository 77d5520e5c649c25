//! WebSocket (ws://) and WebSocket over TLS (wss://) listeners: rumqttc, paho-mqtt and a raw WebSocket client.
//! Large payloads, packets split over frames and several packets per frame, path and subprotocol checks.

mod tls_support;

use std::time::{Duration, Instant};

use broker::config::{ClientAuth, Transport};
use futures_util::{SinkExt, StreamExt};
use rumqttc::QoS;
use tests::client;
use tests::process;
use tls_support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn ws() -> Transport {
    Transport::WebSocket { path: "/mqtt".into() }
}

fn ws_options(client_id: &str, port: u16) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, format!("ws://127.0.0.1:{port}/mqtt"), port);
    o.set_transport(rumqttc::Transport::Ws);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    o
}

/// Publishes `n` messages of `size` bytes at QoS 1 to a topic the client subscribed, and waits for each to come
/// back; returns the time taken.
async fn round_trips(c: &mut client::Client, n: usize, size: usize) -> Duration {
    let topic = unique("ws/big");
    assert_eq!(c.subscribe(&topic, QoS::AtLeastOnce).await, Some(QoS::AtLeastOnce));
    let payload: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let start = Instant::now();
    for i in 0..n {
        let mut p = payload.clone();
        p[0] = i as u8;
        c.publish(&topic, QoS::AtLeastOnce, false, p.clone()).await;
        let got = c.next_publish().await;
        assert_eq!(got.payload.len(), size);
        assert!(got.payload[..] == p[..], "payload {i} changed in transit");
    }
    start.elapsed()
}

/// rumqttc over ws:// moves 1 MiB messages intact, within a small factor of the time plain TCP takes.
#[tokio::test]
async fn rumqttc_over_websocket_large_payloads_close_to_tcp_speed() {
    const N: usize = 12;
    const SIZE: usize = 1024 * 1024;
    let tcp = start(Transport::Mqtt, None).await;
    let (mut c, _) = client::connect(
        {
            let mut o = client::options(tcp.addr, &unique("tcp-big"));
            o.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
            o
        },
        false,
    )
    .await;
    let over_tcp = round_trips(&mut c, N, SIZE).await;
    c.disconnect().await;
    tcp.shutdown().await;

    let b = start(ws(), None).await;
    let (mut c, _) = client::connect(ws_options(&unique("ws-big"), b.port()), false).await;
    let over_ws = round_trips(&mut c, N, SIZE).await;
    c.disconnect().await;
    b.shutdown().await;
    eprintln!("{N} x 1 MiB round trips: TCP {over_tcp:?}, WebSocket {over_ws:?}");
    // Masking, framing and one extra copy each way; a debug build on a shared machine needs slack.
    assert!(
        over_ws <= over_tcp * 4 + Duration::from_secs(2),
        "WebSocket {over_ws:?} vs TCP {over_tcp:?} for {N} x 1 MiB"
    );
}

/// rumqttc over wss:// with the test CA.
#[tokio::test]
async fn rumqttc_over_wss() {
    let pki = Pki::new("wss");
    let server = pki.server("server", 1);
    let b = start(ws(), Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    let url = format!("wss://127.0.0.1:{}/mqtt", b.port());
    let config = client_config(pki.ca_der(), None, rustls::DEFAULT_VERSIONS);
    let (mut c, _) = client::connect(rumqttc_tls_options(&unique("wss"), &url, b.port(), config, true), false).await;
    let topic = unique("wss/t");
    c.subscribe(&topic, QoS::AtLeastOnce).await;
    c.publish(&topic, QoS::AtLeastOnce, false, "over wss").await;
    assert_eq!(&c.next_publish().await.payload[..], b"over wss");
    let elapsed = round_trips(&mut c, 2, 1024 * 1024).await;
    eprintln!("wss: 2 x 1 MiB round trips in {elapsed:?}");
    c.disconnect().await;
    b.shutdown().await;
}

async fn ws_client(
    port: u16,
    path: &str,
    protocol: Option<&str>,
) -> Result<
    (tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::handshake::client::Response),
    WsError,
> {
    let mut req = format!("ws://127.0.0.1:{port}{path}").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    within("WebSocket upgrade", tokio_tungstenite::client_async(req, tcp)).await
}

async fn next_binary(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Vec<u8> {
    loop {
        match within("WebSocket frame", ws.next()).await {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

/// The upgrade checks the path (404) and the subprotocol (400), answers `mqtt`, and the listener keeps serving.
/// MQTT packets may be split over frames, and a frame may hold several; a text frame closes the connection.
#[tokio::test]
async fn upgrade_checks_and_framing() {
    let b = start(ws(), None).await;
    match ws_client(b.port(), "/other", Some("mqtt")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("wrong path accepted: {:?}", other.map(|(_, r)| r.status())),
    }
    match ws_client(b.port(), "/mqtt", Some("chat")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("subprotocol chat accepted: {:?}", other.map(|(_, r)| r.status())),
    }

    let (mut ws, resp) = ws_client(b.port(), "/mqtt", Some("mqtt")).await.unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "mqtt");
    // CONNECT cut in two frames.
    let connect = connect_packet(&unique("ws-raw"));
    let (a, rest) = connect.split_at(5);
    ws.send(Message::binary(a.to_vec())).await.unwrap();
    ws.send(Message::binary(rest.to_vec())).await.unwrap();
    assert_eq!(next_binary(&mut ws).await, vec![0x20, 2, 0, 0]);
    // Two PINGREQs in one frame: two PINGRESPs come back (in one or two frames).
    ws.send(Message::binary(vec![0xC0, 0, 0xC0, 0])).await.unwrap();
    let mut got = next_binary(&mut ws).await;
    if got.len() < 4 {
        got.extend(next_binary(&mut ws).await);
    }
    assert_eq!(got, vec![0xD0, 0, 0xD0, 0]);
    // A text frame is a protocol error [MQTT-6.0.0-1]: the broker closes.
    ws.send(Message::text("hello")).await.unwrap();
    let closed = within("close after a text frame", async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed);
    assert_eq!(b.broker.stats().clients_connected, 0);
    b.shutdown().await;
}

/// paho-mqtt 2.x with transport="websockets", over ws:// and wss://.
#[tokio::test]
async fn paho_over_websockets() {
    if !process::require("python3 with paho-mqtt 2.x", process::paho_available()) {
        return;
    }
    let b = start(ws(), None).await;
    assert_eq!(paho_roundtrip(b.port(), "websockets", "/mqtt", None).await, "got hello-paho");
    b.shutdown().await;

    let pki = Pki::new("paho-wss");
    let server = pki.server("server", 1);
    let b = start(ws(), Some(tls_settings(&pki, &server, ClientAuth::None, false))).await;
    assert_eq!(paho_roundtrip(b.port(), "websockets", "/mqtt", Some(&pki.ca_file)).await, "got hello-paho");
    b.shutdown().await;
}
