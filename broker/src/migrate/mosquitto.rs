//! Reading a `mosquitto.conf`: one directive per line, `#` comments, `include_dir` followed the way Mosquitto
//! does (every `*.conf` file of the directory, in name order, where the directive stands).

use std::fmt;
use std::path::Path;

use super::MigrateError;

/// Where a directive was written: file name and 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    /// The file, as it was named (the command line argument, or the directory entry of an `include_dir`).
    pub file: String,
    /// Line number, from 1.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One `name value...` line of a Mosquitto configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directive {
    pub loc: Loc,
    pub name: String,
    /// The rest of the line after the name, trimmed (some values, like a bridge `topic`, hold spaces).
    pub value: String,
}

impl Directive {
    /// The line as a reader should see it in a report: secrets are masked.
    pub fn shown(&self) -> String {
        if is_secret(&self.name) && !self.value.is_empty() {
            format!("{} ********", self.name)
        } else if self.value.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, self.value)
        }
    }

    /// The value split on whitespace.
    pub fn args(&self) -> Vec<&str> {
        self.value.split_whitespace().collect()
    }
}

/// Options whose value is a password or key, never copied into a report.
fn is_secret(name: &str) -> bool {
    matches!(name, "remote_password" | "local_password" | "password" | "bridge_psk" | "tls_engine_kpass_sha1")
}

/// `include_dir` nesting allowed before the reader gives up (a directory including itself).
const MAX_INCLUDE_DEPTH: usize = 4;

/// Reads `path` and the files its `include_dir` lines name. A directory that cannot be read is reported as a
/// directive of its own whose value names the error, so the translator lists it instead of skipping it.
pub(super) fn read(path: &Path) -> Result<Vec<Directive>, MigrateError> {
    let text = std::fs::read_to_string(path).map_err(|source| MigrateError::Read { path: path.to_owned(), source })?;
    let mut out = Vec::new();
    parse(&path.display().to_string(), &text, 0, &mut out);
    Ok(out)
}

/// Parses `text` (from the file `name`) into `out`, following `include_dir`.
pub(super) fn parse(name: &str, text: &str, depth: usize, out: &mut Vec<Directive>) {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (option, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let directive = Directive {
            loc: Loc { file: name.to_owned(), line: i + 1 },
            name: option.to_owned(),
            value: value.trim().to_owned(),
        };
        if directive.name == "include_dir" && depth < MAX_INCLUDE_DEPTH {
            let dir = directive.value.clone();
            out.push(directive);
            include(&dir, depth, out);
        } else {
            out.push(directive);
        }
    }
}

/// Name of the pseudo-directive that reports an `include_dir` that cannot be read.
pub(super) const UNREADABLE_INCLUDE: &str = "include_dir (unreadable)";

fn include(dir: &str, depth: usize, out: &mut Vec<Directive>) {
    let unreadable = |what: String, out: &mut Vec<Directive>| {
        let loc = Loc { file: dir.to_owned(), line: 0 };
        out.push(Directive { loc, name: UNREADABLE_INCLUDE.to_owned(), value: what });
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return unreadable(format!("cannot list {dir}: {e}"), out),
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
        .collect();
    files.sort();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => parse(&file.display().to_string(), &text, depth + 1, out),
            Err(e) => unreadable(format!("cannot read {}: {e}", file.display()), out),
        }
    }
}

/// Mosquitto's `true` / `false`.
pub(super) fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A whole number.
pub(super) fn integer(value: &str) -> Option<i64> {
    value.parse().ok()
}

/// `persistent_client_expiration`: a number followed by h, d, w, m (30 days) or y (365 days), in seconds.
pub(super) fn duration_secs(value: &str) -> Option<u64> {
    let unit = value.chars().last()?;
    let count: u64 = value.get(..value.len() - unit.len_utf8())?.parse().ok()?;
    let secs = match unit {
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return None,
    };
    count.checked_mul(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_values_with_spaces() {
        let mut out = Vec::new();
        parse("m.conf", "# c\n\n  listener 1883 0.0.0.0  \ntopic sensors/# out 1 local/ remote/\nflag\n", 0, &mut out);
        let got: Vec<_> = out.iter().map(|d| (d.loc.line, d.name.as_str(), d.value.as_str())).collect();
        assert_eq!(
            got,
            [(3, "listener", "1883 0.0.0.0"), (4, "topic", "sensors/# out 1 local/ remote/"), (5, "flag", "")]
        );
        assert_eq!(out[0].args(), ["1883", "0.0.0.0"]);
    }

    #[test]
    fn secrets_are_masked_when_shown() {
        let mut out = Vec::new();
        parse("m.conf", "remote_password hunter2\nremote_username gw\n", 0, &mut out);
        assert_eq!(out[0].shown(), "remote_password ********");
        assert_eq!(out[1].shown(), "remote_username gw");
    }

    #[test]
    fn durations_and_scalars() {
        assert_eq!(duration_secs("2h"), Some(7_200));
        assert_eq!(duration_secs("1m"), Some(30 * 86_400));
        assert_eq!(duration_secs("3y"), Some(3 * 365 * 86_400));
        assert_eq!(duration_secs("5"), None);
        assert_eq!(duration_secs("xd"), None);
        assert_eq!(duration_secs(""), None);
        assert_eq!(boolean("true"), Some(true));
        assert_eq!(boolean("yes"), None);
        assert_eq!(integer("-1"), Some(-1));
    }
}
