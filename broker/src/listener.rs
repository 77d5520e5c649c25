//! The accept loop of one listener: caps connections, backs off on accept errors, and spawns one task per client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{self, ConnSettings};
use crate::router::ConnLink;
use crate::session::Context;

/// What every accept loop shares.
pub(crate) struct Accept {
    pub ctx: Context,
    pub conn: Arc<ConnSettings>,
    pub global_limit: Arc<Semaphore>,
    pub next_conn_id: Arc<AtomicU64>,
    pub stop: CancellationToken,
    pub tracker: TaskTracker,
}

pub(crate) async fn accept_loop(listener: TcpListener, local_limit: Option<Arc<Semaphore>>, a: Arc<Accept>) {
    let addr = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = a.stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, ?addr, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let local = match &local_limit {
            Some(sem) => sem.clone().try_acquire_owned().ok().map(Some),
            None => Some(None),
        };
        let global = a.global_limit.clone().try_acquire_owned().ok();
        let (Some(global), Some(local)) = (global, local) else {
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                tracing::warn!(%peer, "connection limit reached; refusing connection");
                last_refusal_log = Some(now);
            }
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let id = a.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let link = ConnLink { id, kick: CancellationToken::new() };
        let (ctx, conn, stop) = (a.ctx.clone(), a.conn.clone(), a.stop.clone());
        let span = tracing::info_span!("conn", %peer, client_id = tracing::field::Empty);
        a.tracker.spawn(
            async move {
                let _permits = (global, local);
                connection::serve(stream, ctx, conn, link, stop).await;
            }
            .instrument(span),
        );
    }
}
