//! What the admin API asks of the router: a view of each session, disconnecting a client, ending an offline
//! session.

use mqtt_codec::ReasonCode;

use super::{Router, SessionHandle};

/// One session as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionView {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection is attached.
    pub connected: bool,
    /// The client's address while connected.
    pub address: Option<String>,
    /// `"3.1"`, `"3.1.1"` or `"5.0"` while connected.
    pub protocol: Option<&'static str>,
    /// The CONNECT's username while connected.
    pub username: Option<String>,
    /// When the connection was accepted, in seconds since the Unix epoch.
    pub connected_since: Option<u64>,
    /// Messages waiting behind the in-flight window.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not acknowledged.
    pub inflight: usize,
    /// Messages dropped for this session (queue full, too large).
    pub dropped: u64,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// Seconds the session outlives its connection (`None`: until the client cleans it).
    pub expiry_secs: Option<u64>,
}

/// Why [`Router::end_offline_session`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndError {
    /// No session has that client id.
    NotFound,
    /// The session has a connection: disconnect it first.
    Connected,
}

fn protocol_name(v: mqtt_codec::ProtocolVersion) -> &'static str {
    match v {
        mqtt_codec::ProtocolVersion::V5 => "5.0",
        mqtt_codec::ProtocolVersion::V311 => "3.1.1",
        _ => "3.1",
    }
}

fn view(handle: &SessionHandle) -> SessionView {
    let state = handle.lock();
    let info = state.conn.as_ref().and_then(|c| c.info.clone());
    let connect = info.as_ref().and_then(|i| i.connect.get().cloned());
    SessionView {
        client_id: handle.client_id.to_string(),
        connected: state.conn.is_some(),
        address: info.as_ref().and_then(|i| i.peer).map(|a| a.to_string()),
        protocol: connect.as_ref().map(|(v, _)| protocol_name(*v)),
        username: connect.and_then(|(_, u)| u),
        connected_since: info
            .as_ref()
            .and_then(|i| i.since.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        queued: state.outbox.queued(),
        queued_bytes: state.outbox.queued_bytes(),
        inflight: state.outbox.inflight(),
        dropped: state.outbox.dropped(),
        subscriptions: state.subscriptions.len(),
        expiry_secs: state.expiry.map(|d| d.as_secs()),
    }
}

impl Router {
    /// Every session, sorted by client id.
    pub fn session_views(&self) -> Vec<SessionView> {
        let mut all: Vec<SessionView> = self.sessions().map(|h| view(h)).collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }

    /// One session and its subscriptions (filter, QoS).
    pub fn session_detail(&self, client_id: &str) -> Option<(SessionView, Vec<(String, u8)>)> {
        let handle = self.session(client_id)?;
        let subs = handle.lock().subscriptions.iter().map(|(f, o)| (f.to_owned(), o.qos as u8)).collect();
        Some((view(handle), subs))
    }

    /// Closes a client's connection (MQTT 5: DISCONNECT `0x98` Administrative action); its will is published as on
    /// any connection loss. Returns whether the client was connected.
    pub fn kick_client(&self, client_id: &str) -> bool {
        let Some(handle) = self.session(client_id) else { return false };
        let state = handle.lock();
        match &state.conn {
            Some(conn) => {
                conn.kick(ReasonCode::AdministrativeAction);
                true
            }
            None => false,
        }
    }

    /// Ends an offline session: its subscriptions and queue go, and the journal records its end.
    ///
    /// # Errors
    /// [`EndError`] when there is no such session or it is connected.
    pub fn end_offline_session(&mut self, client_id: &str) -> Result<(), EndError> {
        let handle = self.session(client_id).cloned().ok_or(EndError::NotFound)?;
        if handle.lock().conn.is_some() {
            return Err(EndError::Connected);
        }
        self.remove_session(&handle);
        Ok(())
    }
}
