//! The dashboard: one page at `/` (plain HTML and JavaScript with uPlot, compiled into the binary) that polls
//! `/api/overview` every second and draws rates, latency percentiles, connections, queues and drops.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::respond;
use crate::metrics::{DropReason, LATENCY_BUCKETS_US, Snapshot};

const PAGE: &str = include_str!("assets/dashboard.html");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

/// The page and its assets, by path.
pub(super) fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (PAGE, "text/html; charset=utf-8"),
        "/assets/uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "/assets/uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(respond(StatusCode::OK, content_type, body))
}

/// `/api/overview`: the counters the page turns into rates, the latency buckets it turns into percentiles, and
/// the longest queues with their client ids.
pub(super) fn overview(s: &Snapshot) -> serde_json::Value {
    let drops: serde_json::Map<String, serde_json::Value> =
        DropReason::ALL.iter().zip(s.drops).map(|(r, n)| (r.label().to_owned(), n.into())).collect();
    let queues: Vec<_> =
        s.longest_queues.iter().map(|(id, n)| serde_json::json!({ "client_id": id, "queued": n })).collect();
    serde_json::json!({
        "uptime_secs": s.uptime.as_secs(),
        "messages_received": s.messages_received(),
        "messages_sent": s.messages_sent(),
        "bytes_received": s.bytes_received(),
        "bytes_sent": s.bytes_sent(),
        "clients_connected": s.clients_connected,
        "sessions_online": s.sessions_online,
        "sessions_offline": s.sessions_offline,
        "subscriptions": s.subscriptions,
        "retained_messages": s.retained_messages,
        "queued_messages": s.queued_messages,
        "queued_bytes": s.queued_bytes,
        "inflight_messages": s.inflight_messages,
        "drops": drops,
        "longest_queues": queues,
        "latency_bounds_us": LATENCY_BUCKETS_US,
        "latency_written": s.latency_written.0,
        "latency_acked": s.latency_acked.0,
    })
}
