//! Password files in Mosquitto's format: one `username:hash` per line, `#` comments.
//!
//! Hashes read: `$6$salt$hash` (SHA-512 over password then salt, Mosquitto 1.x), `$7$iterations$salt$hash`
//! (PBKDF2-HMAC-SHA512, what `mosquitto_passwd` 2.x writes), both with base64 fields, a 12-byte salt and a 64-byte
//! hash; and `$argon2id$...` PHC strings, which is what [`hash_password`] writes. Comparisons run in constant time.
//! A file that cannot be used is an error naming the line; it never names a hash or a password.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom;

/// Argon2id memory cost in KiB for new entries (19 MiB: OWASP's recommended minimum).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id passes for new entries.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes for new entries.
pub const ARGON2_PARALLELISM: u32 = 1;

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `username:hash` with a hash this broker knows.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the hash itself).
        reason: &'static str,
    },
}

/// One stored hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: NonZeroU32, salt: Vec<u8>, hash: Vec<u8> },
    /// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    Argon2(String),
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes stay out of logs.
        f.write_str(match self {
            Self::Sha512 { .. } => "$6$",
            Self::Pbkdf2 { .. } => "$7$",
            Self::Argon2(_) => "$argon2id$",
        })
    }
}

/// The users of a password file and their hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

impl PasswordFile {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`PasswordFileError`] naming the file or the line at fault.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses the text of a file.
    ///
    /// # Errors
    /// [`PasswordFileError::Line`] for the first line that is not `username:hash` with a known hash.
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason| PasswordFileError::Line { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || raw.starts_with('#') {
                continue;
            }
            let (user, rest) = trimmed.split_once(':').ok_or(err("no ':' between username and hash"))?;
            let user = user.trim();
            // Mosquitto takes the hash up to the next ':'.
            let hash = rest.split(':').next().unwrap_or_default().trim();
            if user.is_empty() {
                return Err(err("empty username"));
            }
            if hash.is_empty() {
                return Err(err("no hash (a plaintext file? convert it with `broker passwd -U`)"));
            }
            users.insert(user.to_owned(), parse_hash(hash).map_err(err)?);
        }
        Ok(Self { users })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `username` is in the file.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Whether `password` is `username`'s. Slow on purpose (the hash's cost): call it off the async runtime.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        self.users.get(username).is_some_and(|h| verify_hash(h, password))
    }
}

fn b64(field: &str) -> Result<Vec<u8>, &'static str> {
    STANDARD.decode(field.trim()).map_err(|_| "a hash field is not base64")
}

fn parse_hash(s: &str) -> Result<Hash, &'static str> {
    if s.starts_with("$argon2") {
        let phc = PasswordHash::new(s).map_err(|_| "not a valid argon2 PHC string")?;
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return Err("only argon2id is accepted among the argon2 variants");
        }
        return Ok(Hash::Argon2(s.to_owned()));
    }
    let fields: Vec<&str> = s.split('$').collect();
    match fields.as_slice() {
        ["", "6", salt, hash] => {
            let (salt, hash) = (b64(salt)?, b64(hash)?);
            if salt.len() != 12 || hash.len() != 64 {
                return Err("a $6$ hash needs a 12-byte salt and a 64-byte hash");
            }
            Ok(Hash::Sha512 { salt, hash })
        }
        ["", "7", iterations, salt, hash] => {
            let iterations: NonZeroU32 = iterations.parse().map_err(|_| "bad $7$ iteration count")?;
            let (salt, hash) = (b64(salt)?, b64(hash)?);
            if salt.len() != 12 || hash.len() != 64 {
                return Err("a $7$ hash needs a 12-byte salt and a 64-byte hash");
            }
            Ok(Hash::Pbkdf2 { iterations, salt, hash })
        }
        _ => Err("unknown hash type (expected $6$, $7$ or $argon2id$)"),
    }
}

fn verify_hash(h: &Hash, password: &[u8]) -> bool {
    match h {
        Hash::Sha512 { salt, hash } => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
            ctx.update(password);
            ctx.update(salt);
            constant_time_eq(ctx.finish().as_ref(), hash)
        }
        Hash::Pbkdf2 { iterations, salt, hash } => {
            // ring compares in constant time.
            ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA512, *iterations, salt, password, hash).is_ok()
        }
        Hash::Argon2(phc) => {
            PasswordHash::new(phc).is_ok_and(|p| Argon2::default().verify_password(password, &p).is_ok())
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password for a new entry: argon2id with [`ARGON2_MEMORY_KIB`], [`ARGON2_ITERATIONS`] and
/// [`ARGON2_PARALLELISM`], a random 16-byte salt, as a PHC string.
///
/// # Errors
/// When the system's random source fails.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| "no random bytes from the system".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let params =
        Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM, None).map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    argon.hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// What `broker passwd` does to a file, like `mosquitto_passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Sets (adds or replaces) a user's password.
    Set {
        /// The user.
        username: String,
        /// The new password.
        password: String,
    },
    /// Removes a user.
    Delete {
        /// The user.
        username: String,
    },
    /// Hashes every plaintext password (`username:password` lines whose value is not a known hash).
    Upgrade,
}

/// Applies `edit` to the text of a password file and returns the new text. Comments, order and other users' lines
/// are kept.
///
/// # Errors
/// A message for the user: an invalid username, a missing user to delete, a hashing failure.
pub fn edit_file(text: &str, edit: &Edit) -> Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let user_of = |l: &str| -> Option<String> {
        if l.starts_with('#') {
            return None;
        }
        l.split_once(':').map(|(u, _)| u.trim().to_owned())
    };
    match edit {
        Edit::Set { username, password } => {
            check_username(username)?;
            let entry = format!("{username}:{}", hash_password(password.as_bytes())?);
            match lines.iter().position(|l| user_of(l).as_deref() == Some(username.as_str())) {
                Some(i) => {
                    if let Some(l) = lines.get_mut(i) {
                        *l = entry;
                    }
                }
                None => lines.push(entry),
            }
        }
        Edit::Delete { username } => {
            let before = lines.len();
            lines.retain(|l| user_of(l).as_deref() != Some(username.as_str()));
            if lines.len() == before {
                return Err(format!("user {username} not in the file"));
            }
        }
        Edit::Upgrade => {
            for l in &mut lines {
                let Some((user, value)) = l.split_once(':') else { continue };
                if l.starts_with('#') || parse_hash(value.trim()).is_ok() {
                    continue;
                }
                *l = format!("{}:{}", user.trim(), hash_password(value.as_bytes())?);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.contains([':', '\n', '\r']) || username.trim() != username {
        return Err("a username must be non-empty, without ':' or line breaks or surrounding spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Debian's mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b pw alice secret1` ($7$) and
    // `mosquitto_passwd -H sha512 -b pw bob secret2` ($6$).
    const MOSQUITTO_7: &str = "alice:$7$101$PURJL/9ScrArzftm$KakQDPba53p4cKENDeJE2Ki5yIXzZTg8KU/0acyLVT/SMxUgddd2ntVUG9krBGA36bbAxffRLjOu78PPY/2qhg==";

    #[test]
    fn reads_mosquitto_pbkdf2_entries() {
        let f = PasswordFile::parse(&format!("# users\n\n{MOSQUITTO_7}\n")).unwrap();
        assert_eq!(f.len(), 1);
        assert!(f.verify("alice", b"secret1"));
        assert!(!f.verify("alice", b"secret2"));
        assert!(!f.verify("alice", b""));
        assert!(!f.verify("bob", b"secret1"));
    }

    #[test]
    fn sha512_entries_verify() {
        // $6$ as Mosquitto 1.x computes it: base64(sha512(password || salt)).
        let salt = [7u8; 12];
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        ctx.update(b"pw6");
        ctx.update(&salt);
        let line = format!("u6:$6${}${}", STANDARD.encode(salt), STANDARD.encode(ctx.finish()));
        let f = PasswordFile::parse(&line).unwrap();
        assert!(f.verify("u6", b"pw6"));
        assert!(!f.verify("u6", b"pw7"));
    }

    #[test]
    fn argon2id_entries_round_trip_with_the_documented_parameters() {
        let phc = hash_password(b"hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let f = PasswordFile::parse(&format!("carol:{phc}")).unwrap();
        assert!(f.verify("carol", b"hunter2"));
        assert!(!f.verify("carol", b"hunter3"));
    }

    #[test]
    fn bad_lines_name_the_line_not_the_hash() {
        for (text, line) in [
            ("a:$6$AAAA$BBBB", 1),
            ("# c\nb:plaintext", 2),
            ("x:$7$zero$PURJL/9ScrArzftm$Ka", 1),
            ("nocolon", 1),
            ("a:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA", 1),
            (":$7$101$x$y", 1),
        ] {
            let e = PasswordFile::parse(text).unwrap_err();
            assert!(matches!(e, PasswordFileError::Line { line: l, .. } if l == line), "{text}: {e}");
            assert!(!e.to_string().contains("BBBB") && !e.to_string().contains("plaintext"), "{e}");
        }
    }

    #[test]
    fn edits_set_delete_and_upgrade() {
        let text = format!("# keep me\n{MOSQUITTO_7}\nbob:plain\n");
        let upgraded = edit_file(&text, &Edit::Upgrade).unwrap();
        assert!(upgraded.starts_with("# keep me\nalice:$7$"), "{upgraded}");
        let f = PasswordFile::parse(&upgraded).unwrap();
        assert!(f.verify("bob", b"plain") && f.verify("alice", b"secret1"));
        let set = edit_file(&upgraded, &Edit::Set { username: "alice".into(), password: "new".into() }).unwrap();
        let f = PasswordFile::parse(&set).unwrap();
        assert!(f.verify("alice", b"new") && !f.verify("alice", b"secret1") && f.len() == 2);
        let deleted = edit_file(&set, &Edit::Delete { username: "bob".into() }).unwrap();
        assert!(!PasswordFile::parse(&deleted).unwrap().contains("bob"));
        assert!(edit_file(&deleted, &Edit::Delete { username: "bob".into() }).is_err());
        assert!(edit_file("", &Edit::Set { username: "a:b".into(), password: "x".into() }).is_err());
    }
}
