//! A `rumqttc` (MQTT 3.1.1) client whose event loop runs in its own task and forwards what it receives.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::within;

/// What the event loop reported.
#[derive(Debug)]
pub enum Ev {
    /// A packet from the broker.
    In(Packet),
    /// The connection failed or ended; the text of the error.
    Err(String),
}

/// Options for a client of the broker at `addr`: clean session, keep alive 5 s.
pub fn options(addr: SocketAddr, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// A running `rumqttc` client.
pub struct Client {
    /// The request handle.
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Ev>,
    task: JoinHandle<()>,
    /// Publishes received while waiting for something else, in order.
    pending: std::collections::VecDeque<Publish>,
}

/// Starts a client and waits for its CONNACK; returns it with the session present flag.
///
/// With `reconnect` the event loop keeps polling after an error (rumqttc then reconnects and resends what is
/// unacknowledged); without it the loop stops at the first error, as a client that gives up would.
pub async fn connect(options: MqttOptions, reconnect: bool) -> (Client, bool) {
    let (client, eventloop) = AsyncClient::new(options, 64);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, tx, reconnect));
    let mut c = Client { client, events, task, pending: Default::default() };
    let present = c.connack().await;
    (c, present)
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Ev>, reconnect: bool) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(p)) => {
                if tx.send(Ev::In(p)).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                let _ = tx.send(Ev::Err(e.to_string()));
                if !reconnect {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Client {
    /// The next event within [`WAIT`].
    pub async fn next(&mut self) -> Ev {
        within("rumqttc event", self.events.recv()).await.unwrap_or(Ev::Err("event loop ended".into()))
    }

    /// The next event within `d`, if any.
    pub async fn next_within(&mut self, d: Duration) -> Option<Ev> {
        tokio::time::timeout(d, self.events.recv()).await.ok().flatten()
    }

    /// Waits for the next CONNACK and returns its session present flag; panics on refusal or error.
    pub async fn connack(&mut self) -> bool {
        loop {
            match self.next().await {
                Ev::In(Packet::ConnAck(a)) => {
                    assert_eq!(a.code, rumqttc::ConnectReturnCode::Success);
                    return a.session_present;
                }
                Ev::In(Packet::Publish(p)) => self.pending.push_back(p),
                Ev::In(_) => {}
                Ev::Err(e) => panic!("expected CONNACK, got error: {e}"),
            }
        }
    }

    /// Waits for an incoming packet that `f` accepts, keeping PUBLISH packets that arrive meanwhile.
    pub async fn wait_for(&mut self, what: &str, mut f: impl FnMut(&Packet) -> bool) -> Packet {
        loop {
            match self.next().await {
                Ev::In(p) if f(&p) => return p,
                Ev::In(Packet::Publish(p)) => self.pending.push_back(p),
                Ev::In(_) => {}
                Ev::Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    /// Subscribes and returns the granted QoS (or `None` for a refusal).
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Option<QoS> {
        within("subscribe request", self.client.subscribe(filter, qos)).await.unwrap();
        match self.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_))).await {
            Packet::SubAck(s) => match s.return_codes.first() {
                Some(SubscribeReasonCode::Success(q)) => Some(*q),
                _ => None,
            },
            _ => unreachable!(),
        }
    }

    /// Publishes and waits for the flow to complete (PUBACK for QoS 1, PUBCOMP for QoS 2).
    pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        let payload: Vec<u8> = payload.into();
        within("publish request", self.client.publish(topic, qos, retain, payload)).await.unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
            }
            QoS::ExactlyOnce => {
                self.wait_for("PUBCOMP", |p| matches!(p, Packet::PubComp(_))).await;
            }
        }
    }

    /// Queues a publish without waiting for its acknowledgement.
    pub async fn publish_nowait(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        let payload: Vec<u8> = payload.into();
        within("publish request", self.client.publish(topic, qos, retain, payload)).await.unwrap();
    }

    /// The next PUBLISH within [`WAIT`].
    pub async fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.pending.pop_front() {
            return p;
        }
        match self.wait_for("PUBLISH", |p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// `n` PUBLISH packets.
    pub async fn publishes(&mut self, n: usize) -> Vec<Publish> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_publish().await);
        }
        v
    }

    /// Asserts no PUBLISH arrives for `d`.
    pub async fn expect_no_publish(&mut self, d: Duration) {
        if let Some(p) = self.pending.pop_front() {
            panic!("unexpected PUBLISH {p:?}");
        }
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(ev) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match ev {
                Some(Ev::In(Packet::Publish(p))) => panic!("unexpected PUBLISH {p:?}"),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Waits until the event loop reports an error (the connection ended), returning its text.
    pub async fn wait_error(&mut self) -> String {
        loop {
            match self.next().await {
                Ev::Err(e) => return e,
                Ev::In(Packet::Publish(p)) => self.pending.push_back(p),
                Ev::In(_) => {}
            }
        }
    }

    /// Sends DISCONNECT and waits for the event loop to end the connection.
    pub async fn disconnect(mut self) {
        within("disconnect request", self.client.disconnect()).await.unwrap();
        let _ = self.wait_error().await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT (the event loop and its socket are dropped).
    pub async fn kill(mut self) {
        self.task.abort();
        // The channel closes once the aborted task (and with it the socket) is gone.
        within("event loop abort", async { while self.events.recv().await.is_some() {} }).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
