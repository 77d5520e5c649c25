//! JSON Web Tokens as passwords: a device provisioned by a cloud identity service sends its token in the CONNECT's
//! Password field, and the broker verifies it locally against configured public keys (RS256 or ES256), checking
//! `exp` (required), `nbf` and `aud` (and `iss` when configured). A claim (`sub` by default) becomes the username.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The `[listeners.jwt]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// PEM public keys (RSA for RS256, EC P-256 for ES256); a token signed by any of them is accepted.
    pub public_key_files: Vec<PathBuf>,
    /// The `aud` a token must name.
    pub audience: String,
    /// The `iss` a token must carry, if set.
    pub issuer: Option<String>,
    /// The claim that becomes the username.
    pub username_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// One public key file, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    algorithm: KeyKind,
    pem: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    Ec,
}

impl KeyFile {
    /// Reads a PEM public key (RSA or EC P-256).
    ///
    /// # Errors
    /// When the file cannot be read or holds neither key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| e.to_string())?;
        let algorithm = if DecodingKey::from_rsa_pem(&pem).is_ok() {
            KeyKind::Rsa
        } else if DecodingKey::from_ec_pem(&pem).is_ok() {
            KeyKind::Ec
        } else {
            return Err("not a PEM RSA or EC public key".into());
        };
        Ok(Self { algorithm, pem })
    }

    fn decoding_key(&self) -> Option<(Algorithm, DecodingKey)> {
        match self.algorithm {
            KeyKind::Rsa => DecodingKey::from_rsa_pem(&self.pem).ok().map(|k| (Algorithm::RS256, k)),
            KeyKind::Ec => DecodingKey::from_ec_pem(&self.pem).ok().map(|k| (Algorithm::ES256, k)),
        }
    }
}

/// Whether a password looks like a compact JWS (three base64url parts, a JSON header): only those are tried as
/// tokens, so a password file still serves the other clients.
pub fn looks_like_jwt(password: &[u8]) -> bool {
    password.starts_with(b"eyJ")
        && password.iter().filter(|b| **b == b'.').count() == 2
        && password.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// Why a token was refused (logged; never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(String);

/// Verifies a token against `keys`; the username claim's value.
///
/// # Errors
/// [`TokenError`]: a bad signature, an algorithm other than RS256/ES256, an expired or not yet valid token, another
/// audience or issuer, no username claim.
pub fn verify(token: &[u8], keys: &[KeyFile], s: &JwtSettings) -> Result<String, TokenError> {
    let token = std::str::from_utf8(token).map_err(|_| TokenError("not UTF-8".into()))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError(format!("header: {e}")))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(TokenError(format!("algorithm {:?} is not accepted (RS256 or ES256)", header.alg)));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[&s.audience]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = s.leeway_secs;
    if let Some(iss) = &s.issuer {
        validation.set_issuer(&[iss]);
    }
    let mut last = TokenError("no key of its algorithm".into());
    for (alg, key) in keys.iter().filter_map(KeyFile::decoding_key) {
        if alg != header.alg {
            continue;
        }
        match jsonwebtoken::decode::<serde_json_claims::Claims>(token, &key, &validation) {
            Ok(data) => {
                return match data.claims.get(&s.username_claim) {
                    Some(name) if !name.is_empty() => Ok(name),
                    _ => Err(TokenError(format!("no {:?} claim", s.username_claim))),
                };
            }
            Err(e) => last = TokenError(e.to_string()),
        }
    }
    Err(last)
}

/// The claims as a string map (only string claims are used as usernames).
mod serde_json_claims {
    use std::collections::HashMap;

    /// A token's claims; values that are not strings are kept out.
    #[derive(Debug, serde::Deserialize)]
    pub struct Claims(HashMap<String, Claim>);

    #[derive(Debug, serde::Deserialize)]
    #[serde(untagged)]
    enum Claim {
        Text(String),
        Other(serde::de::IgnoredAny),
    }

    impl Claims {
        pub fn get(&self, name: &str) -> Option<String> {
            match self.0.get(name)? {
                Claim::Text(s) => Some(s.clone()),
                Claim::Other(_) => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compact_jws_shapes_are_tried_as_tokens() {
        assert!(looks_like_jwt(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!looks_like_jwt(b"hunter2"));
        assert!(!looks_like_jwt(b"eyJ.only-one-dot"));
        assert!(!looks_like_jwt(b"eyJa.b.c d"));
    }
}
