//! The null relay: the physical limit for fan-in on this machine.
//!
//! It answers CONNECT with CONNACK and SUBSCRIBE with SUBACK, and from then on forwards every publisher
//! connection's bytes to the latest subscriber connection, cut at packet boundaries (read from the fixed header
//! alone, so streams of several publishers do not interleave mid-packet) and otherwise unparsed: no topic match,
//! no session, no queue, no acknowledgement. Only QoS 0 runs through it.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAX_PACKET: u32 = 16 * 1024 * 1024;
type Sink = Arc<Mutex<Option<mpsc::Sender<Bytes>>>>;

/// Serves until the listener fails.
///
/// # Errors
/// Accept errors.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    let sink: Sink = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let sink = sink.clone();
        tokio::spawn(async move {
            let _ = handle(stream, sink).await;
        });
    }
}

/// Length of the whole packets at the start of `buf`.
fn whole_packets(buf: &[u8]) -> io::Result<usize> {
    let mut pos = 0;
    while let Some(rest) = buf.get(pos..) {
        match mqtt_codec::frame_len(rest, MAX_PACKET) {
            Ok(Some(n)) => pos += n,
            Ok(None) => break,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}"))),
        }
    }
    Ok(pos)
}

async fn read_packet(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Bytes> {
    loop {
        if let Some(n) = mqtt_codec::frame_len(buf, MAX_PACKET)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?
        {
            return Ok(buf.split_to(n).freeze());
        }
        if s.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn handle(mut s: TcpStream, sink: Sink) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let _connect = read_packet(&mut s, &mut buf).await?;
    s.write_all(&[0x20, 2, 0, 0]).await?;
    let next = read_packet(&mut s, &mut buf).await?;
    if next.first() == Some(&0x82) {
        // SUBSCRIBE: the packet identifier follows the one-byte Remaining Length of a short packet.
        let (hi, lo) = (next.get(2).copied().unwrap_or(0), next.get(3).copied().unwrap_or(1));
        let (mut rd, mut wr) = s.into_split();
        // Become the sink before the SUBACK: a client starts its publishers once subscribed.
        let (tx, mut rx) = mpsc::channel::<Bytes>(4096);
        if let Ok(mut g) = sink.lock() {
            *g = Some(tx);
        }
        wr.write_all(&[0x90, 3, hi, lo, 0]).await?;
        tokio::spawn(async move {
            let mut discard = vec![0u8; 4096];
            while matches!(rd.read(&mut discard).await, Ok(n) if n > 0) {}
        });
        while let Some(chunk) = rx.recv().await {
            wr.write_all(&chunk).await?;
        }
        return Ok(());
    }
    let mut tx = sink.lock().ok().and_then(|g| g.clone());
    let forward = |chunk: Bytes, tx: &mut Option<mpsc::Sender<Bytes>>| {
        if tx.as_ref().is_none_or(mpsc::Sender::is_closed) {
            *tx = sink.lock().ok().and_then(|g| g.clone());
        }
        tx.clone().map(|t| (t, chunk))
    };
    if let Some((t, c)) = forward(next, &mut tx) {
        let _ = t.send(c).await;
    }
    loop {
        // Forward what is buffered first: the read that brought the first PUBLISH may have brought all the rest.
        let n = whole_packets(&buf)?;
        if n > 0 {
            let chunk = buf.split_to(n).freeze();
            if let Some((t, c)) = forward(chunk, &mut tx) {
                let _ = t.send(c).await;
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(256 * 1024);
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_packet_boundaries() {
        // PINGREQ, a QoS 0 PUBLISH "a"/"x", then half a PUBLISH.
        let bytes = [0xc0, 0x00, 0x30, 0x04, 0x00, 0x01, b'a', b'x', 0x30, 0x04, 0x00];
        assert_eq!(whole_packets(&bytes).unwrap(), 8);
        assert_eq!(whole_packets(&bytes[..3]).unwrap(), 2);
    }

    /// Regression: a publisher's whole burst arrives in the read that brings its first PUBLISH, and it closes
    /// right after; the relay must still forward all of it.
    #[tokio::test]
    async fn forwards_a_burst_sent_before_close() {
        use crate::scenario::throughput::{FanIn, fan_in};
        use crate::scenario::{Ctx, run_prefix};
        use std::time::Duration;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let ctx = Ctx {
            addr,
            label: "relay".into(),
            broker_pid: None,
            timeout: Duration::from_secs(10),
            handshake: Duration::from_secs(5),
            grace: Duration::from_millis(100),
            origin: std::time::Instant::now(),
            prefix: run_prefix(),
        };
        let p = FanIn {
            publishers: 4,
            qos: mqtt_codec::QoS::AtMostOnce,
            size: 64,
            count: 500,
            window: 64,
            persistent: false,
        };
        for _ in 0..3 {
            let report = tokio::time::timeout(Duration::from_secs(20), fan_in(&ctx, &p)).await.unwrap().unwrap();
            assert!(report.ok(), "{}", report.human());
            assert_eq!(report.metrics.iter().find(|(k, _)| *k == "received").map(|(_, v)| *v), Some(2000.0));
        }
        server.abort();
    }
}
