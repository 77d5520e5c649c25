//! Where authentication meets the connection: the login before the session, the client's access after it.
//!
//! A listener with authentication puts a [`Gate`] in the connection's [`Context`]. [`login`] (async, on the
//! connection's task) reads the CONNECT's credentials, waits out the failed-login backoff of the source address and
//! asks the backend; a refusal becomes the CONNACK. [`admit`] (sync, in the handshake, once the client identifier is
//! final) fetches the client's permissions and checks the will topic. Each connected client's [`ClientAccess`] is
//! registered with its listener so that a reload can swap its permissions and re-check its subscriptions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use bytes::Bytes;
use mqtt_codec::{Packet, ProtocolVersion, ReasonCode, decode};
use tokio::time::Instant;

use super::backoff::{Backoff, Turn};
use super::{Access, AuthBackend, Credentials, FilterAccess, Permissions, Verdict};
use crate::listener::Identities;
use crate::router::Router;
use crate::session::connect::refuse;
use crate::session::{Context, Refused};

/// Authentication of one listener.
pub struct ListenerAuth {
    backend: Arc<dyn AuthBackend>,
    use_identity: bool,
    identities: Identities,
    backoff: Arc<Backoff>,
    failed_logins: Arc<AtomicU64>,
    acl_key: Option<Arc<str>>,
    clients: Mutex<Vec<Weak<ClientAccess>>>,
}

impl std::fmt::Debug for ListenerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerAuth").field("use_identity", &self.use_identity).finish_non_exhaustive()
    }
}

impl ListenerAuth {
    pub(crate) fn new(
        backend: Arc<dyn AuthBackend>,
        use_identity: bool,
        identities: Identities,
        backoff: Arc<Backoff>,
        failed_logins: Arc<AtomicU64>,
        acl_key: Option<Arc<str>>,
    ) -> Self {
        Self { backend, use_identity, identities, backoff, failed_logins, acl_key, clients: Mutex::default() }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn AuthBackend> {
        &self.backend
    }

    /// What names the ACL this listener's permissions come from, such as `acl_file /etc/edge-mqtt/acl` (`None`:
    /// the listener has none). Listeners with the same key give a user the same permissions; a persistent session
    /// records the key, so that after a restart its permissions are rebuilt from the same ACL (see
    /// [`crate::router::Router::restore_access`]).
    pub fn acl_key(&self) -> Option<&Arc<str>> {
        self.acl_key.as_ref()
    }

    /// The permissions of `username` as client `client_id`, registered for reloads; `None` when the backend
    /// restricts nothing.
    pub fn access(&self, username: Option<Arc<str>>, client_id: &str) -> Option<Arc<ClientAccess>> {
        let perms = self.backend.permissions(username.as_deref(), client_id)?;
        let access =
            Arc::new(ClientAccess { username, client_id: Arc::from(client_id), perms: RwLock::new(Some(perms)) });
        self.register(&access);
        Some(access)
    }

    fn register(&self, client: &Arc<ClientAccess>) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        // Dead entries go when the list would grow: amortized, and bounded by twice the live clients.
        if clients.len() == clients.capacity() {
            clients.retain(|w| w.strong_count() > 0);
        }
        clients.push(Arc::downgrade(client));
    }

    /// Gives every connected client of this listener its permissions anew (after a reload) and re-checks the
    /// subscriptions of its session.
    pub(crate) fn recheck(&self, router: &mut Router) {
        let live: Vec<Arc<ClientAccess>> = {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            clients.retain(|w| w.strong_count() > 0);
            clients.iter().filter_map(Weak::upgrade).collect()
        };
        for client in live {
            let perms = self.backend.permissions(client.username.as_deref(), &client.client_id);
            *client.perms.write().unwrap_or_else(PoisonError::into_inner) = perms;
            router.recheck_access(&client);
        }
    }
}

/// A connection's standing with its listener's authentication, carried in its [`Context`].
#[derive(Debug)]
pub(crate) struct Gate {
    listener: Arc<ListenerAuth>,
    /// Set by [`login`]: the client passed authentication, as this user.
    login: Option<Option<Arc<str>>>,
}

impl Gate {
    pub(crate) fn new(listener: Arc<ListenerAuth>) -> Self {
        Self { listener, login: None }
    }

    /// The listener's [`ListenerAuth::acl_key`].
    pub(crate) fn acl_key(&self) -> Option<&Arc<str>> {
        self.listener.acl_key()
    }
}

/// What one connected client may do: its user, its client identifier and its permissions (swapped by a reload).
pub struct ClientAccess {
    /// The user it acts as (`None`: anonymous).
    pub username: Option<Arc<str>>,
    /// Its client identifier.
    pub client_id: Arc<str>,
    perms: RwLock<Option<Arc<dyn Permissions>>>,
}

impl std::fmt::Debug for ClientAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAccess").field("username", &self.username).field("client_id", &self.client_id).finish()
    }
}

impl ClientAccess {
    fn perms(&self) -> Option<Arc<dyn Permissions>> {
        self.perms.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether the client may `access` the topic name `topic`.
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        // Read under the lock (uncontended but for reloads) rather than cloning the `Arc` on every message.
        self.perms.read().unwrap_or_else(PoisonError::into_inner).as_ref().is_none_or(|p| p.allows(access, topic))
    }

    /// How a subscription filter stands for reading (a `$share/{group}/` prefix is ignored).
    pub fn filter_access(&self, filter: &str) -> FilterAccess {
        let bare = match mqtt_codec::SharedFilter::parse(filter) {
            Ok(Some(s)) => s.filter.as_str(),
            _ => filter,
        };
        self.perms().map_or(FilterAccess::All, |p| p.filter_access(bare))
    }
}

/// Authenticates the CONNECT in `frame` on a connection whose context has a [`Gate`]: the context to hand to the
/// handshake, or the CONNACK that refuses the client. A frame that is not a valid CONNECT passes unchanged (the
/// handshake reports it). `deadline` bounds the backoff wait and the backend.
pub(crate) async fn login(
    mut ctx: Context,
    frame: &Bytes,
    peer: Option<SocketAddr>,
    conn_id: u64,
    deadline: Instant,
) -> Result<Context, Refused> {
    let Some(gate) = ctx.gate.clone() else { return Ok(ctx) };
    let Ok(Packet::Connect(connect)) = decode(frame, ProtocolVersion::V311) else { return Ok(ctx) };
    let auth = &gate.listener;
    let version = connect.protocol;
    let identity = if auth.use_identity {
        auth.identities.lock().unwrap_or_else(PoisonError::into_inner).get(&conn_id).cloned()
    } else {
        None
    };
    let ip = peer.map(|p| p.ip());
    if let Some(ip) = ip {
        match auth.backoff.turn(ip, Instant::now(), deadline) {
            Turn::Now => {}
            Turn::At(t) => tokio::time::sleep_until(t).await,
            Turn::TooLate => {
                tracing::info!(peer = ?peer, client_id = connect.client_id, "login refused: too many failed logins from this address");
                return Err(refuse(version, ReasonCode::ConnectionRateExceeded));
            }
        }
    }
    let credentials = Credentials {
        client_id: connect.client_id,
        username: connect.username,
        password: connect.password,
        peer,
        certificate_identity: identity.as_deref(),
    };
    let verdict = match tokio::time::timeout_at(deadline, auth.backend.authenticate(credentials)).await {
        Ok(v) => v,
        Err(_) => {
            if let Some(ip) = ip {
                auth.backoff.abandoned(ip);
            }
            tracing::warn!(client_id = connect.client_id, "authentication did not answer before the CONNECT deadline");
            return Err(refuse(version, ReasonCode::ServerUnavailable));
        }
    };
    let code = match verdict {
        Verdict::Allow { username } => {
            if let Some(ip) = ip {
                auth.backoff.succeeded(ip);
            }
            ctx.gate = Some(Arc::new(Gate { listener: auth.clone(), login: Some(username.map(Arc::from)) }));
            return Ok(ctx);
        }
        Verdict::BadCredentials => ReasonCode::BadUserNameOrPassword,
        Verdict::NotAuthorized => ReasonCode::NotAuthorized,
        Verdict::ClientIdNotAllowed => ReasonCode::ClientIdentifierNotValid,
    };
    auth.failed_logins.fetch_add(1, Ordering::Relaxed);
    if let Some(ip) = ip {
        auth.backoff.failed(ip, Instant::now());
    }
    // The username is logged, never the password.
    tracing::info!(
        peer = ?peer,
        client_id = connect.client_id,
        username = connect.username.unwrap_or_default(),
        identity = identity.as_deref().unwrap_or_default(),
        reason = ?code,
        "login refused"
    );
    Err(refuse(version, code))
}

/// Admits an authenticated client with its final client identifier: its access (`None` when it may do
/// everything), or the reason to refuse it (a will topic it may not publish to: `0x87`).
pub(crate) fn admit(
    ctx: &Context,
    client_id: &str,
    will_topic: Option<&str>,
) -> Result<Option<Arc<ClientAccess>>, ReasonCode> {
    let Some(gate) = &ctx.gate else { return Ok(None) };
    // A gate without a login: the handshake was reached without `login`; refuse rather than let it in.
    let Some(username) = &gate.login else { return Err(ReasonCode::NotAuthorized) };
    let listener = &gate.listener;
    let Some(access) = listener.access(username.clone(), client_id) else { return Ok(None) };
    if let Some(topic) = will_topic
        && !access.allows(Access::Write, topic)
    {
        tracing::info!(
            client_id,
            username = username.as_deref().unwrap_or_default(),
            topic,
            "will topic not authorized"
        );
        return Err(ReasonCode::NotAuthorized);
    }
    Ok(Some(access))
}
