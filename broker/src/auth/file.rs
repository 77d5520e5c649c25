//! The built-in backend: Mosquitto's password and ACL files, `allow_anonymous` and `use_identity_as_username`.
//!
//! The files are read at start (a bad file stops the broker there), again on SIGHUP ([`AuthBackend::reload`]) and
//! whenever their modification time or size changes ([`AuthBackend::poll_changes`]). A reload that fails keeps
//! the previous contents and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use tokio::sync::Semaphore;

use super::jwt::{self, JwtSettings, KeyFile};
use super::{AclFile, AuthBackend, BoxFuture, Credentials, PasswordFile, Permissions, Verdict};

/// The authentication settings of one listener (`[[listeners]]` keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `allow_anonymous`: clients without a username may connect. Unset: only on loopback listeners.
    pub allow_anonymous: Option<bool>,
    /// `password_file`: Mosquitto's format (`mosquitto_passwd`, `broker passwd`).
    pub password_file: Option<PathBuf>,
    /// `acl_file`: Mosquitto's format.
    pub acl_file: Option<PathBuf>,
    /// `[listeners.jwt]`: JWTs in the Password field, verified against public keys.
    pub jwt: Option<JwtSettings>,
}

impl AuthSettings {
    /// Whether a listener with these settings needs a backend at all (anything but "everyone may do everything").
    pub fn is_configured(&self, use_identity: bool) -> bool {
        self.password_file.is_some()
            || self.acl_file.is_some()
            || self.jwt.is_some()
            || use_identity
            || self.allow_anonymous == Some(false)
    }
}

/// Password hashing is slow on purpose (argon2id takes 19 MiB and tens of milliseconds): a few at a time, off the
/// async runtime, so a burst of logins neither blocks the runtime nor takes the gateway's memory.
static HASHING: Semaphore = Semaphore::const_new(2);

/// A file re-read when it changes.
struct Watched<T> {
    path: PathBuf,
    what: &'static str,
    current: RwLock<Arc<T>>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
    load: fn(&Path) -> Result<T, String>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T: PartialEq> Watched<T> {
    fn open(path: &Path, what: &'static str, load: fn(&Path) -> Result<T, String>) -> Result<Self, String> {
        let before = stamp(path);
        let value = load(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
        Ok(Self { path: path.to_owned(), what, current: RwLock::new(Arc::new(value)), stamp: Mutex::new(before), load })
    }

    fn current(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn reload(&self) -> bool {
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp(&self.path);
        match (self.load)(&self.path) {
            Ok(value) => {
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if **current == value {
                    return false;
                }
                *current = Arc::new(value);
                tracing::info!(file = %self.path.display(), "{} reloaded", self.what);
                true
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "{} not reloaded; keeping the previous one", self.what);
                false
            }
        }
    }

    fn poll(&self) -> bool {
        let now = stamp(&self.path);
        let changed = *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) != now;
        changed && self.reload()
    }
}

/// Mosquitto's files behind [`AuthBackend`].
pub struct FileAuth {
    allow_anonymous: bool,
    use_identity: bool,
    passwords: Option<Watched<PasswordFile>>,
    acl: Option<Watched<AclFile>>,
    jwt: Option<(JwtSettings, Vec<Watched<KeyFile>>)>,
}

impl std::fmt::Debug for FileAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAuth")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("use_identity", &self.use_identity)
            .field("password_file", &self.passwords.as_ref().map(|w| &w.path))
            .field("acl_file", &self.acl.as_ref().map(|w| &w.path))
            .finish()
    }
}

impl FileAuth {
    /// Reads the files of a listener. `loopback` says whether the listener is on a loopback address (where
    /// anonymous clients are allowed unless `allow_anonymous = false`).
    ///
    /// # Errors
    /// A message naming the file and the line at fault.
    pub fn new(s: &AuthSettings, use_identity: bool, loopback: bool) -> Result<Self, String> {
        let passwords = s
            .password_file
            .as_deref()
            .map(|p| Watched::open(p, "password_file", |p| PasswordFile::load(p).map_err(|e| e.to_string())))
            .transpose()?;
        let acl = s
            .acl_file
            .as_deref()
            .map(|p| Watched::open(p, "acl_file", |p| AclFile::load(p).map_err(|e| e.to_string())))
            .transpose()?;
        let jwt = match &s.jwt {
            Some(j) => {
                let keys = j
                    .public_key_files
                    .iter()
                    .map(|p| Watched::open(p, "jwt public key", KeyFile::load))
                    .collect::<Result<Vec<_>, _>>()?;
                Some((j.clone(), keys))
            }
            None => None,
        };
        let authenticates = passwords.is_some() || use_identity || jwt.is_some();
        let allow_anonymous = s.allow_anonymous.unwrap_or(loopback && !authenticates);
        Ok(Self { allow_anonymous, use_identity, passwords, acl, jwt })
    }
}

impl AuthBackend for FileAuth {
    fn authenticate<'a>(&'a self, c: Credentials<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if self.use_identity {
                // The certificate identity is the username; the CONNECT's username and password are not used.
                // With `%c` patterns the client id grants topics, so a certificate may only use its own identity as
                // client id: otherwise any device could claim another's topics and take over its session.
                return match c.certificate_identity {
                    Some(id)
                        if c.client_id != id && self.acl.as_ref().is_some_and(|a| a.current().uses_client_id()) =>
                    {
                        Verdict::ClientIdNotAllowed
                    }
                    Some(id) => Verdict::Allow { username: Some(id.to_owned()) },
                    None => Verdict::NotAuthorized,
                };
            }
            if let (Some((settings, keys)), Some(token)) = (&self.jwt, c.password)
                && jwt::looks_like_jwt(token)
            {
                let keys: Vec<KeyFile> = keys.iter().map(|k| (*k.current()).clone()).collect();
                return match jwt::verify(token, &keys, settings) {
                    // A username sent with the token must be the token's.
                    Ok(name) if c.username.is_none_or(|u| u == name) => Verdict::Allow { username: Some(name) },
                    Ok(_) => {
                        tracing::info!(client_id = c.client_id, "token for another username");
                        Verdict::BadCredentials
                    }
                    Err(e) => {
                        tracing::info!(client_id = c.client_id, reason = %e, "token refused");
                        Verdict::BadCredentials
                    }
                };
            }
            let Some(username) = c.username else {
                return if self.allow_anonymous { Verdict::Allow { username: None } } else { Verdict::NotAuthorized };
            };
            let Some(passwords) = &self.passwords else {
                return if self.allow_anonymous {
                    Verdict::Allow { username: Some(username.to_owned()) }
                } else {
                    Verdict::NotAuthorized
                };
            };
            let file = passwords.current();
            let Some(password) = c.password.map(<[u8]>::to_vec) else { return Verdict::BadCredentials };
            let user = username.to_owned();
            let Ok(_permit) = HASHING.acquire().await else { return Verdict::NotAuthorized };
            let ok = tokio::task::spawn_blocking(move || file.verify(&user, &password)).await.unwrap_or(false);
            if ok { Verdict::Allow { username: Some(username.to_owned()) } } else { Verdict::BadCredentials }
        })
    }

    fn permissions(&self, username: Option<&str>, client_id: &str) -> Option<Arc<dyn Permissions>> {
        let acl = self.acl.as_ref()?;
        Some(Arc::new(acl.current().rules_for(username, client_id)))
    }

    fn reload(&self) -> bool {
        let p = self.passwords.as_ref().is_some_and(Watched::reload);
        let a = self.acl.as_ref().is_some_and(Watched::reload);
        let k = self.jwt.iter().flat_map(|(_, keys)| keys).fold(false, |c, k| k.reload() | c);
        p | a | k
    }

    fn poll_changes(&self) -> bool {
        let p = self.passwords.as_ref().is_some_and(Watched::poll);
        let a = self.acl.as_ref().is_some_and(Watched::poll);
        let k = self.jwt.iter().flat_map(|(_, keys)| keys).fold(false, |c, k| k.poll() | c);
        p | a | k
    }
}
