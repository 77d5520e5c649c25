//! MQTT over WebSocket: the server upgrade (path and `mqtt` subprotocol checked) and a byte-stream view of the
//! WebSocket, so that `connection` serves it like a socket.
//!
//! Binary frames in are read as one byte stream (MQTT packets may span frames, and a frame may hold several);
//! each write goes out as one binary frame. Pings are answered by tungstenite; a close frame reads as end of
//! stream; a text frame is an error ([MQTT-6.0.0-1]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The WebSocket subprotocol MQTT uses ([MQTT-6.0.0-3]).
pub const SUBPROTOCOL: &str = "mqtt";

/// Performs the server side of the upgrade on `stream`: the request path must be `path`; when the client offers
/// subprotocols, one must be `mqtt`, and it is selected. Messages are capped at `max_message` bytes.
///
/// # Errors
/// The tungstenite error, or an HTTP 404/400 response already sent for a wrong path or subprotocol.
pub(crate) async fn accept<S>(stream: S, path: &str, max_message: usize) -> Result<WsIo<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The signature is tungstenite's `Callback`; its error type is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != path {
            return Err(refusal(StatusCode::NOT_FOUND, "no MQTT endpoint at this path"));
        }
        let offered: Vec<&str> = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if offered.iter().any(|p| p.eq_ignore_ascii_case(SUBPROTOCOL)) {
            resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        } else if !offered.is_empty() {
            return Err(refusal(StatusCode::BAD_REQUEST, "subprotocol \"mqtt\" required"));
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    Ok(WsIo { ws, rx: Bytes::new(), unflushed: false })
}

fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(why.to_owned()));
    *resp.status_mut() = status;
    resp
}

/// A WebSocket seen as a byte stream: binary frames in, one binary frame per write out.
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The rest of the last binary frame read.
    rx: Bytes,
    /// The last write's frame is queued but not yet flushed.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Whether part of a frame already read waits to be taken.
    pub(crate) fn buffered(&self) -> bool {
        !self.rx.is_empty()
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// The stream below the WebSocket framing.
    pub(crate) fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.unflushed {
            // Drive the last write's frame out; if the socket is full, this also wakes us when it drains.
            if let Poll::Ready(r) = Pin::new(&mut self.ws).poll_flush(cx) {
                r.map_err(to_io)?;
                self.unflushed = false;
            }
        }
        loop {
            if !self.rx.is_empty() {
                let n = self.rx.len().min(buf.remaining());
                buf.put_slice(self.rx.get(..n).unwrap_or_default());
                self.rx.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) | Some(Err(WsError::ConnectionClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Binary(data))) => self.rx = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket [MQTT-6.0.0-1]",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    /// Each write queues one frame and starts flushing it. `connection` never calls `flush` (a TCP or TLS stream
    /// needs none), so a flush that cannot finish at once is driven on by the next read or write, which the
    /// connection always polls; a new write waits until the previous frame is out (backpressure).
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.unflushed {
            ready!(Pin::new(&mut self.ws).poll_flush(cx)).map_err(to_io)?;
            self.unflushed = false;
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(to_io)?;
        match Pin::new(&mut self.ws).poll_flush(cx) {
            Poll::Ready(r) => r.map_err(to_io)?,
            Poll::Pending => self.unflushed = true,
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.ws).poll_flush(cx)).map_err(to_io)?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
