//! The admin API (JSON) and the endpoint's basic authentication.
//!
//! - `GET /api/clients`: every session (connected or not) with address, protocol, username, connected since,
//!   queue length and bytes, in-flight and dropped counts.
//! - `GET /api/clients/{id}`: one session, with its subscriptions.
//! - `POST /api/clients/{id}/disconnect`: closes the client's connection (MQTT 5: DISCONNECT `0x98`); its will is
//!   published as on any connection loss.
//! - `DELETE /api/sessions/{id}`: ends an offline session: its subscriptions and queue go, and the journal records
//!   the end.
//!
//! The two actions need `[http.auth]`: without it the endpoint is read-only (and only on loopback).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};

use super::respond;
use crate::Broker;
use crate::auth::password::PasswordFile;
use crate::router::EndError;

const JSON: &str = "application/json";

/// HTTP basic authentication against a password file (re-read on SIGHUP).
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    users: RwLock<Arc<PasswordFile>>,
}

impl Auth {
    /// Loads the password file.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn load(path: PathBuf) -> Result<Self, String> {
        let users = PasswordFile::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path, users: RwLock::new(Arc::new(users)) })
    }

    /// Re-reads the file; a file that cannot be used keeps the previous users, and is logged.
    pub fn reload(&self) {
        match PasswordFile::load(&self.path) {
            Ok(users) => {
                *self.users.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(users);
                tracing::info!(path = %self.path.display(), "http.auth.password_file reloaded");
            }
            Err(e) => tracing::error!(path = %self.path.display(), error = %e, "http.auth.password_file kept"),
        }
    }

    /// Whether an `Authorization: Basic ...` header names a user of the file with the right password. The hash
    /// check runs on a blocking thread.
    pub async fn check(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(text) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = text.split_once(':') else { return false };
        let (user, password) = (user.to_owned(), password.to_owned());
        let users = self.users.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        tokio::task::spawn_blocking(move || users.verify(&user, password.as_bytes())).await.unwrap_or(false)
    }
}

/// `%XX` escapes of a path segment decoded; `None` when they do not make UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, JSON, value.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Answers an `/api/...` request; `admin`: the caller authenticated, so it may act.
pub(super) fn api(broker: &Broker, method: &Method, path: &str, admin: bool) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let id = |i: usize| segments.get(i).and_then(|s| percent_decode(s)).filter(|s| !s.is_empty());
    let router = || broker.shared.ctx.router();
    match (method, segments.as_slice()) {
        (&Method::GET, ["clients"]) => {
            let views = router().session_views();
            json(StatusCode::OK, &serde_json::json!({ "clients": views }))
        }
        (&Method::GET, ["clients", _]) => {
            let Some(id) = id(1) else { return error(StatusCode::BAD_REQUEST, "bad client id") };
            match router().session_detail(&id) {
                Some((view, subs)) => {
                    let subs: Vec<_> =
                        subs.into_iter().map(|(f, q)| serde_json::json!({ "filter": f, "qos": q })).collect();
                    json(StatusCode::OK, &serde_json::json!({ "session": view, "subscriptions": subs }))
                }
                None => error(StatusCode::NOT_FOUND, "no such session"),
            }
        }
        (&Method::POST, ["clients", _, "disconnect"]) | (&Method::DELETE, ["sessions", _]) if !admin => {
            error(StatusCode::FORBIDDEN, "admin actions need http.auth.password_file and credentials")
        }
        (&Method::POST, ["clients", _, "disconnect"]) => {
            let Some(id) = id(1) else { return error(StatusCode::BAD_REQUEST, "bad client id") };
            if router().kick_client(&id) {
                tracing::info!(client_id = %id, "admin API: client disconnected");
                json(StatusCode::OK, &serde_json::json!({ "disconnected": id }))
            } else {
                error(StatusCode::NOT_FOUND, "no such client connected")
            }
        }
        (&Method::DELETE, ["sessions", _]) => {
            let Some(id) = id(1) else { return error(StatusCode::BAD_REQUEST, "bad client id") };
            let ended = router().end_offline_session(&id);
            match ended {
                Ok(()) => {
                    tracing::info!(client_id = %id, "admin API: offline session deleted");
                    json(StatusCode::OK, &serde_json::json!({ "deleted": id }))
                }
                Err(EndError::NotFound) => error(StatusCode::NOT_FOUND, "no such session"),
                Err(EndError::Connected) => error(StatusCode::CONFLICT, "the client is connected: disconnect it first"),
            }
        }
        (&Method::GET, _) => error(StatusCode::NOT_FOUND, "not found"),
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
