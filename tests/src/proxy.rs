//! A TCP relay between a client and the broker that can break a connection on purpose: cut it when the client
//! sends a given packet type (so a QoS 2 flow stops half-way), cut every connection now, or freeze traffic while
//! the sockets stay open (so the broker's keep alive expires while the client believes it is connected).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mqtt_codec::{PacketType, frame_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Ctl {
    /// Packet type that cuts the connection, per direction: [client to broker, broker to client].
    cut_on: [Mutex<Option<PacketType>>; 2],
    frozen: AtomicBool,
    kill: watch::Sender<u64>,
    cuts: AtomicUsize,
}

/// A running relay; dropped, it stops accepting and closes its connections.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    ctl: Arc<Ctl>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a relay to `target` on 127.0.0.1:0.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = crate::within("bind 127.0.0.1:0", TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ctl = Arc::new(Ctl {
            cut_on: [Mutex::new(None), Mutex::new(None)],
            frozen: AtomicBool::new(false),
            kill: watch::channel(0).0,
            cuts: AtomicUsize::new(0),
        });
        let c = ctl.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let connecting = tokio::time::timeout(crate::WAIT, TcpStream::connect(target)).await;
                let Ok(Ok(server)) = connecting else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                tokio::spawn(relay(client, server, c.clone()));
            }
        });
        Self { addr, ctl, task }
    }

    /// The next time a client sends a packet of this type, the relay drops it and closes that connection.
    pub fn cut_on_client_packet(&self, kind: PacketType) {
        *self.ctl.cut_on[0].lock().unwrap() = Some(kind);
    }

    /// The next time the broker sends a packet of this type, the relay drops it and closes that connection.
    pub fn cut_on_server_packet(&self, kind: PacketType) {
        *self.ctl.cut_on[1].lock().unwrap() = Some(kind);
    }

    /// How many connections were cut by [`Proxy::cut_on_client_packet`] or [`Proxy::cut_on_server_packet`].
    pub fn cuts(&self) -> usize {
        self.ctl.cuts.load(Ordering::SeqCst)
    }

    /// Stops forwarding in both directions (bytes are read and discarded); the sockets stay open.
    pub fn freeze(&self) {
        self.ctl.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection open now.
    pub fn cut_all(&self) {
        self.ctl.kill.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

async fn relay(client: TcpStream, server: TcpStream, ctl: Arc<Ctl>) {
    let mut kill = ctl.kill.subscribe();
    let (crd, cwr) = client.into_split();
    let (srd, swr) = server.into_split();
    tokio::select! {
        () = pump(crd, swr, &ctl, 0) => {}
        () = pump(srd, cwr, &ctl, 1) => {}
        _ = kill.changed() => {}
    }
}

/// One direction, frame by frame, so a packet type can be intercepted.
async fn pump(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, ctl: &Ctl, dir: usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if ctl.frozen.load(Ordering::SeqCst) {
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        // Forward whole frames only; anything unparsable goes through as it is.
        loop {
            match frame_len(&buf, u32::MAX) {
                Ok(Some(len)) => {
                    let kind = buf.first().and_then(|b| PacketType::from_u8(b >> 4));
                    {
                        let mut cut = ctl.cut_on[dir].lock().unwrap();
                        if kind.is_some() && *cut == kind {
                            *cut = None;
                            ctl.cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    if wr.write_all(&buf[..len]).await.is_err() {
                        return;
                    }
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(_) => {
                    if wr.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                    break;
                }
            }
        }
    }
}
