//! The operators' HTTP endpoint (`[http]`): `/metrics` (OpenMetrics text, see [`crate::metrics`]), `/healthz`
//! (the process serves requests), `/readyz` (every listener is bound and the journal was recovered), the admin API
//! under `/api/` (`admin`) and the dashboard at `/` (`dashboard`).
//!
//! HTTP/1.1 through hyper, one task per connection under a cap, each request under a header timeout; nothing on
//! this path touches the MQTT data path other than reading counters and taking the router's lock for a snapshot.

mod admin;
mod dashboard;
mod settings;

pub use admin::Auth;
pub use settings::{FileHttp, FileHttpAuth, HttpSettings};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::TlsReloader;
use crate::{Broker, Error, metrics};

/// HTTP connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP (HTTPS with `tls`) on `listener` until `stop` is cancelled; connection tasks go on `tracker`.
pub(crate) async fn serve(
    listener: TcpListener,
    broker: Broker,
    (auth, tls): (Option<Arc<Auth>>, Option<TlsReloader>),
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The certificate files are looked at once a second, as a TLS listener's are.
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, _peer) = loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = watch.tick(), if tls.is_some() => {
                    if let Some(tls) = tls.clone() {
                        let _ = tokio::task::spawn_blocking(move || tls.poll_changes()).await;
                    }
                }
                r = listener.accept() => match r {
                    Ok(pair) => break pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        };
        let (broker, auth, stop) = (broker.clone(), auth.clone(), stop.clone());
        // The config is read per connection, so a reload applies from the next client on.
        let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.current()));
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(stream, broker, auth, stop).await,
                Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, broker, auth, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "https handshake failed"),
                    Err(_) => tracing::debug!("https handshake timed out"),
                },
            }
        });
    }
}

/// Serves the requests of one connection until it closes or `stop` (then lets it finish for up to a second).
async fn serve_connection<S>(stream: S, broker: Broker, auth: Option<Arc<Auth>>, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let (broker, auth) = (broker.clone(), auth.clone());
        async move { Ok::<_, Infallible>(route(&broker, auth.as_deref(), &req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(error = %e, "http connection"); },
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Probes are open to all; with `[http.auth]` everything else needs a user of its password file, and without it
/// the endpoint is read-only.
async fn route(broker: &Broker, auth: Option<&Auth>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let probe = matches!(path, "/healthz" | "/readyz");
    let admin = match auth {
        Some(auth) if !probe => {
            let header = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if !auth.check(header).await {
                let mut r = respond(StatusCode::UNAUTHORIZED, TEXT, "credentials needed\n");
                r.headers_mut()
                    .insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"edge-mqtt\""));
                return r;
            }
            true
        }
        _ => false,
    };
    if path == "/api/overview" && req.method() == Method::GET {
        return respond(
            StatusCode::OK,
            "application/json",
            dashboard::overview(&broker.metrics_snapshot()).to_string(),
        );
    }
    if path.starts_with("/api/") {
        return admin::api(broker, req.method(), path, admin);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    }
    match path {
        "/metrics" if !broker.shared.ctx.counters.obs.enabled() => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            "metrics are off in this broker's configuration (http.metrics = false)\n",
        ),
        "/metrics" => respond(StatusCode::OK, crate::metrics::export::CONTENT_TYPE, broker.metrics_text()),
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" if broker.is_ready() => respond(StatusCode::OK, TEXT, "ready\n"),
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready: listeners not bound yet\n"),
        _ => dashboard::asset(path).unwrap_or_else(|| respond(StatusCode::NOT_FOUND, TEXT, "not found\n")),
    }
}

impl Broker {
    /// Serves the operators' HTTP endpoint ([`crate::http`]) on this bound socket alongside the MQTT listeners, from
    /// [`Broker::serve_listeners`] until its shutdown.
    pub fn with_http_listener(self, listener: TcpListener) -> Self {
        *self.shared.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener);
        self
    }

    /// The HTTP endpoint's authentication: its password file loaded, or none on a loopback address.
    pub(crate) fn http_auth(&self, listener: &TcpListener) -> Result<Option<Arc<Auth>>, Error> {
        let mut s = self.shared.settings.http.clone();
        s.bind = listener.local_addr()?;
        s.check_exposure().map_err(|e| Error::Settings(format!("http.auth.password_file: {e}")))?;
        let Some(path) = s.password_file else { return Ok(None) };
        let auth = Arc::new(Auth::load(path).map_err(|e| Error::Settings(format!("http.auth.password_file: {e}")))?);
        let _ = self.shared.http_auth.set(auth.clone());
        Ok(Some(auth))
    }

    /// The HTTP endpoint's TLS config (`[http.tls]`), loaded now, and kept for [`Broker::reload_http_tls`].
    pub(crate) fn http_tls(&self) -> Result<Option<TlsReloader>, Error> {
        let Some(settings) = self.shared.settings.http.tls.clone() else { return Ok(None) };
        let tls = TlsReloader::new(settings, b"http/1.1").map_err(|e| Error::Settings(format!("http.tls: {e}")))?;
        let _ = self.shared.http_tls.set(tls.clone());
        Ok(Some(tls))
    }

    /// Reads the HTTP endpoint's certificate and key again (SIGHUP), when it serves HTTPS; a failure keeps the
    /// previous ones and is logged.
    pub fn reload_http_tls(&self) {
        if let Some(tls) = self.shared.http_tls.get() {
            tls.reload_logged("SIGHUP");
        }
    }

    /// Everything operators see, read now (see [`metrics::Snapshot`]).
    pub fn metrics_snapshot(&self) -> metrics::Snapshot {
        let mut snapshot = metrics::snapshot(&self.shared.ctx, self.shared.started.elapsed());
        snapshot.bridges = self.bridge_stats();
        snapshot
    }

    /// `/metrics`: the snapshot and the live counters in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        metrics::export::encode(&self.metrics_snapshot(), &self.shared.ctx.counters.obs)
    }

    /// Whether every listener is being served (the journal was recovered before the broker existed).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(std::sync::atomic::Ordering::Relaxed)
    }
}
