//! Authentication and authorization: who may connect, and what each client may publish and read.
//!
//! An [`AuthBackend`] answers both questions. Authentication is async ([`AuthBackend::authenticate`]): the connection
//! task awaits it after reading CONNECT and before the sans-IO session sees the packet, so a backend may ask a
//! remote service. Authorization is synchronous, because it runs on the message path: once authenticated, a client
//! gets its [`Permissions`] ([`AuthBackend::permissions`]), which the session asks on PUBLISH, SUBSCRIBE and the
//! will, and the router on delivery. A subscription is classified once ([`Permissions::filter_access`]): wholly
//! readable, refused, or checked per message; only the last kind costs anything per message. A listener without
//! authentication or ACLs has no backend at all and pays nothing.
//!
//! [`FileAuth`] is the built-in backend: Mosquitto's `password_file` and `acl_file`, `allow_anonymous` and
//! `use_identity_as_username`, and JWTs as passwords ([`jwt`]), per listener. Failed logins slow their source address down ([`backoff`]).

pub mod acl;
pub mod backoff;
mod file;
mod gate;
pub mod jwt;
pub mod password;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use acl::{Access, AclFile, ClientRules, FilterAccess};
pub use file::{AuthSettings, FileAuth};
pub use gate::{ClientAccess, ListenerAuth};
pub(crate) use gate::{Gate, admit, login};
pub use password::PasswordFile;

/// What a client presented in CONNECT, and what the transport knows about it.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The client identifier as sent (empty when the broker will assign one).
    pub client_id: &'a str,
    /// The User Name field.
    pub username: Option<&'a str>,
    /// The Password field (never logged).
    pub password: Option<&'a [u8]>,
    /// The client's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// The identity of a verified client certificate, on listeners with `use_identity_as_username`.
    pub certificate_identity: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("peer", &self.peer)
            .field("certificate_identity", &self.certificate_identity)
            .finish()
    }
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, as this user (`None`: an anonymous client). The username is what ACLs see.
    Allow {
        /// The username the client acts as.
        username: Option<String>,
    },
    /// Wrong username or password: CONNACK `0x86` (MQTT 5) / `0x04` (MQTT 3.x). Counts as a failed login.
    BadCredentials,
    /// Not allowed to connect (an anonymous client where they are refused, no certificate where one is needed):
    /// CONNACK `0x87` / `0x05`. Counts as a failed login.
    NotAuthorized,
    /// The client identifier is not this client's to use (a certificate identity asking for another device's id
    /// where the ACL grants topics by client id): CONNACK `0x85` / `0x02`. Counts as a failed login.
    ClientIdNotAllowed,
}

/// A boxed future, as [`AuthBackend::authenticate`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one authenticated client may do. Called on the message path: answer from memory.
pub trait Permissions: Send + Sync {
    /// Whether the client may `access` the topic name `topic`.
    fn allows(&self, access: Access, topic: &str) -> bool;

    /// How the topics matched by a subscription filter stand for reading. The default, [`FilterAccess::Partial`],
    /// checks [`Permissions::allows`] per message; a precise answer saves that work.
    fn filter_access(&self, filter: &str) -> FilterAccess {
        let _ = filter;
        FilterAccess::Partial
    }
}

impl Permissions for ClientRules {
    fn allows(&self, access: Access, topic: &str) -> bool {
        ClientRules::allows(self, access, topic)
    }

    fn filter_access(&self, filter: &str) -> FilterAccess {
        ClientRules::filter_access(self, filter)
    }
}

/// Authentication and authorization for one listener (install a custom one with
/// [`crate::Broker::with_auth_backend`]).
pub trait AuthBackend: Send + Sync {
    /// Decides whether a CONNECT may proceed. Runs on the connection's task before the session exists; it may
    /// await I/O. The broker applies the failed-login backoff around it.
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Verdict>;

    /// The permissions of an authenticated client; `None` lets it publish and read everything. Asked at CONNECT
    /// (with the final client identifier) and again after [`AuthBackend::reload`] for every connected client.
    fn permissions(&self, username: Option<&str>, client_id: &str) -> Option<Arc<dyn Permissions>>;

    /// Re-reads whatever the backend reads (files); called on SIGHUP. Returns whether anything changed.
    fn reload(&self) -> bool {
        false
    }

    /// Re-reads what changed since the last look (called every second, off the async runtime). Returns whether
    /// anything changed.
    fn poll_changes(&self) -> bool {
        false
    }
}
