//! Who may post which event types: bearer tokens, each scoped to event types by glob.
//!
//! Tokens come from `SLUICE_GATEWAY_TOKENS` and/or a secret file (`sluice gateway
//! --tokens-file`), both in one format: entries `name:token:scope[,scope…]`, separated by `;` or
//! new lines, `#` starting a comment line. A scope is an event type or a glob where `*` matches
//! any run of characters (`user.*`, `*.deleted`, `*`). The handler hands the `Authorization`
//! header to [`Tokens::authenticate`] and gets the token's [`Principal`]: its name and scopes,
//! never the token.
//!
//! The tokens themselves are kept only as SHA-256 digests: nothing in memory can print them, the
//! lookup compares digests (so its timing says nothing about how much of a guess was right), and
//! a log line about an unknown token carries only a short fingerprint of its digest. Pure code,
//! apart from reading the file.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the tokens could not be read. Never contains a token: an entry is named by its position
/// and its name.
#[derive(Debug, Error)]
pub enum TokensError {
    /// The tokens file could not be read.
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An entry is not `name:token:scope[,scope…]`, or a part of it is not allowed.
    #[error("{origin}, entry {entry}{}: {reason}", name_suffix(.name.as_deref()))]
    Entry {
        /// Where the entry came from (`SLUICE_GATEWAY_TOKENS`, or the file).
        origin: String,
        /// 1-based position among the entries of that origin.
        entry: usize,
        /// The entry's name, when it has a readable one.
        name: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Two entries share a name (so logs could not tell them apart) or a token.
    #[error("two tokens are named {0:?}, or share their secret: each client gets its own")]
    Duplicate(String),
}

fn name_suffix(name: Option<&str>) -> String {
    name.map(|n| format!(" ({n:?})")).unwrap_or_default()
}

/// An authenticated client: the token's name and the event types it may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    scopes: Vec<String>,
}

impl Principal {
    /// The token's name: what logs, metrics and the envelope's default `producer` show.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes (event types and globs), as configured.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// True when this principal may post `event_type`.
    pub fn allows(&self, event_type: &str) -> bool {
        self.scopes.iter().any(|scope| glob_match(scope, event_type))
    }
}

/// Why a request is not authenticated (the answer is 401 for every one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token no entry has; the fingerprint (`sha256:` and 8 hex digits of its digest)
    /// lets an operator match log lines without the token appearing anywhere.
    Unknown {
        /// The short digest.
        fingerprint: String,
    },
}

/// The configured tokens, by digest.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Arc<Principal>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<(&str, &[String])> = self.by_digest.values().map(|p| (p.name(), p.scopes())).collect();
        names.sort_unstable();
        f.debug_struct("Tokens").field("principals", &names).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Parses entries `name:token:scope[,scope…]` separated by `;` or new lines; blank entries
    /// and lines starting with `#` are skipped. The token is everything between the first and
    /// the last `:`, so it may itself contain `:`. `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TokensError> {
        let mut tokens = Self::default();
        tokens.add(text, origin)?;
        Ok(tokens)
    }

    /// Reads a tokens file (same format as [`Tokens::parse`]).
    pub fn read_file(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokensError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, &format!("tokens file {}", path.display()))
    }

    /// Adds the entries of `text` (see [`Tokens::parse`]) to these.
    pub fn add(&mut self, text: &str, origin: &str) -> Result<(), TokensError> {
        let entries = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(';'))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (i, entry) in entries.enumerate() {
            let fail = |name: Option<&str>, reason: String| TokensError::Entry {
                origin: origin.to_owned(),
                entry: i + 1,
                name: name.map(str::to_owned),
                reason,
            };
            let (Some((name, rest)), true) = (entry.split_once(':'), entry.matches(':').count() >= 2) else {
                return Err(fail(None, "expected name:token:scope[,scope…]".to_owned()));
            };
            let name = name.trim();
            let Some((token, scopes)) = rest.rsplit_once(':') else {
                return Err(fail(None, "expected name:token:scope[,scope…]".to_owned()));
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(fail(None, "the name must be letters, digits, `-`, `_` or `.`".to_owned()));
            }
            if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
                return Err(fail(
                    Some(name),
                    format!("the token must be at least {MIN_TOKEN_LEN} characters, without spaces"),
                ));
            }
            let scopes: Vec<String> = scopes.split(',').map(|s| s.trim().to_owned()).collect();
            if let Some(bad) = scopes
                .iter()
                .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.*".contains(c)))
            {
                return Err(fail(
                    Some(name),
                    format!("scope {bad:?} is not an event type or a glob like `invoice.*` or `*`"),
                ));
            }
            let principal = Arc::new(Principal { name: Arc::from(name), scopes });
            if self.by_digest.values().any(|p| p.name() == name) {
                return Err(TokensError::Duplicate(name.to_owned()));
            }
            if self.by_digest.insert(digest(token), principal).is_some() {
                return Err(TokensError::Duplicate(name.to_owned()));
            }
        }
        Ok(())
    }

    /// True when no token is configured (the gateway refuses to start so).
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Every principal, sorted by name (for the startup log line).
    pub fn principals(&self) -> Vec<&Principal> {
        let mut all: Vec<&Principal> = self.by_digest.values().map(AsRef::as_ref).collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The principal of an `Authorization` header value (`Bearer <token>`, the scheme in any
    /// case).
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?;
        let text = std::str::from_utf8(header).map_err(|_| AuthFailure::Malformed)?;
        let (scheme, token) = text.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthFailure::Malformed);
        }
        let d = digest(token);
        self.by_digest.get(&d).cloned().ok_or_else(|| AuthFailure::Unknown { fingerprint: fingerprint(&d) })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn fingerprint(digest: &[u8; 32]) -> String {
    let mut s = String::from("sha256:");
    for b in &digest[..4] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// True when `text` matches `pattern`, where `*` matches any run of characters (dots
/// included) and everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The classic greedy matcher with one backtrack point: the last `*` seen and where the text
    // stood then. Linear in practice, and never recursive whatever the pattern.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbb:bbbbbbbb";

    #[test]
    fn globs() {
        assert!(glob_match("*", "user.registered"));
        assert!(glob_match("user.*", "user.registered"));
        assert!(!glob_match("user.*", "users.registered"));
        assert!(!glob_match("user.*", "session.started"));
        assert!(glob_match("*.deleted", "user.deleted"));
        assert!(glob_match("engagement.purchase_completed", "engagement.purchase_completed"));
        assert!(!glob_match("engagement.purchase", "engagement.purchase_completed"));
        assert!(glob_match("e*t.*d", "engagement.clicked"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("**", ""));
    }

    #[test]
    fn parses_env_and_file_formats() {
        let text = format!("web:{A}:user.*,session.started; \n# a comment: x:y:z\nbatch:{B}:*\n");
        let tokens = Tokens::parse(&text, "test").expect("valid");
        let web = tokens.authenticate(Some(format!("Bearer {A}").as_bytes())).expect("known");
        assert_eq!(web.name(), "web");
        assert!(web.allows("user.deleted") && web.allows("session.started"));
        assert!(!web.allows("session.ended"));
        let batch = tokens.authenticate(Some(format!("bearer  {B} ").as_bytes())).expect("the token keeps its `:`");
        assert_eq!(batch.name(), "batch");
        assert!(batch.allows("anything.at_all"));
    }

    #[test]
    fn refuses_what_is_not_a_bearer_token_it_knows() {
        let tokens = Tokens::parse(&format!("web:{A}:*"), "test").expect("valid");
        assert_eq!(tokens.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(tokens.authenticate(Some(b"Basic d2ViOnB3")), Err(AuthFailure::Malformed));
        assert_eq!(tokens.authenticate(Some(b"Bearer ")), Err(AuthFailure::Malformed));
        let Err(AuthFailure::Unknown { fingerprint }) = tokens.authenticate(Some(b"Bearer not-the-token-at-all"))
        else {
            panic!("an unknown token");
        };
        assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 15, "{fingerprint}");
    }

    #[test]
    fn errors_never_show_the_token() {
        let cases = [
            format!("web:{A}"),
            "web:short:*".to_owned(),
            format!("web:{A}:user.*,"),
            format!("w eb:{A}:*"),
            format!("web:{A}:*;web:{B}:*"),
            format!("web:{A}:*;other:{A}:*"),
        ];
        for text in cases {
            let err = Tokens::parse(&text, "SLUICE_GATEWAY_TOKENS").expect_err(&text).to_string();
            assert!(!err.contains(A) && !err.contains("short") && !err.contains(B), "{err}");
        }
        let err = Tokens::parse("x;web:tooshort:*", "SLUICE_GATEWAY_TOKENS").expect_err("bad");
        assert!(err.to_string().starts_with("SLUICE_GATEWAY_TOKENS, entry 1:"), "{err}");
        let tokens = Tokens::parse(&format!("web:{A}:*"), "t").expect("valid");
        assert!(!format!("{tokens:?}").contains(A));
    }
}
