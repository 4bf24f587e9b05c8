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
//! lookup compares the presented token's digest with every configured one in constant time (see
//! [`Tokens::authenticate`]), and a log line about an unknown token carries only a short
//! fingerprint of its digest. The gateway holds its `Tokens` behind a swap (`super::reload`), so a
//! tokens file re-read (on SIGHUP, or when it changes) replaces them while requests already authenticated finish with
//! the [`Principal`] they got. Pure code, apart from reading the file.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
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
    #[error("{origin}, {}{}: {reason}", position(*.line, *.entry, *.entries_on_line), name_suffix(.name.as_deref()))]
    Entry {
        /// Where the entry came from (`SLUICE_GATEWAY_TOKENS`, or the file).
        origin: String,
        /// 1-based line of the text.
        line: usize,
        /// 1-based position among the entries of that line (entries may share a line, `;`
        /// between them).
        entry: usize,
        /// How many entries the line holds.
        entries_on_line: usize,
        /// The entry's name, when it has a readable one.
        name: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// No token would be left (an empty or truncated file, and none from the environment).
    #[error("no bearer tokens: set SLUICE_GATEWAY_TOKENS or give a tokens file with at least one entry")]
    Empty,
    /// Two entries share a name (so logs could not tell them apart) or a token.
    #[error("two tokens are named {0:?}, or share their secret: each client gets its own")]
    Duplicate(String),
}

/// `line 3` when the line holds one entry (a tokens file), `line 1, entry 2` otherwise (the
/// variable, entries separated by `;`).
fn position(line: usize, entry: usize, entries_on_line: usize) -> String {
    if entries_on_line > 1 { format!("line {line}, entry {entry}") } else { format!("line {line}") }
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

/// The configured tokens: each one's digest and principal.
#[derive(Clone, Default)]
pub struct Tokens {
    /// A list, not a map: [`Tokens::authenticate`] compares with every entry anyway.
    entries: Vec<([u8; 32], Arc<Principal>)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<(&str, &[String])> = self.entries.iter().map(|(_, p)| (p.name(), p.scopes())).collect();
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
        for (l, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let entries: Vec<&str> = line.split(';').map(str::trim).filter(|entry| !entry.is_empty()).collect();
            for (i, entry) in entries.iter().enumerate() {
                self.add_entry(entry, |name: Option<&str>, reason: String| TokensError::Entry {
                    origin: origin.to_owned(),
                    line: l + 1,
                    entry: i + 1,
                    entries_on_line: entries.len(),
                    name: name.map(str::to_owned),
                    reason,
                })?;
            }
        }
        Ok(())
    }

    /// Adds one `name:token:scope[,scope…]` entry; `fail` makes the error naming its position.
    fn add_entry(
        &mut self,
        entry: &str,
        fail: impl Fn(Option<&str>, String) -> TokensError,
    ) -> Result<(), TokensError> {
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
        if let Some(bad) =
            scopes.iter().find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.*".contains(c)))
        {
            return Err(fail(
                Some(name),
                format!("scope {bad:?} is not an event type or a glob like `invoice.*` or `*`"),
            ));
        }
        let digest = digest(token);
        if self.entries.iter().any(|(d, p)| p.name() == name || *d == digest) {
            return Err(TokensError::Duplicate(name.to_owned()));
        }
        self.entries.push((digest, Arc::new(Principal { name: Arc::from(name), scopes })));
        Ok(())
    }

    /// True when no token is configured (the gateway refuses to start so).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every principal, sorted by name (for the startup log line).
    pub fn principals(&self) -> Vec<&Principal> {
        let mut all: Vec<&Principal> = self.entries.iter().map(|(_, p)| p.as_ref()).collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The principal of an `Authorization` header value (`Bearer <token>`, the scheme in any
    /// case).
    ///
    /// The presented token's digest is compared with *every* configured digest, each comparison
    /// in constant time, and the match is picked without a branch or an early exit. A map lookup
    /// or `==` stops at the first differing byte, so its timing tells a caller how many leading
    /// bytes of a digest a guess got right. Through SHA-256 that is hard to turn into the token,
    /// but it is a timing oracle on a secret all the same; with a handful of tokens the
    /// constant-time scan costs nanoseconds, so there is no reason to reason about it.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, AuthFailure> {
        let header = header.ok_or(AuthFailure::Missing)?;
        let text = std::str::from_utf8(header).map_err(|_| AuthFailure::Malformed)?;
        let (scheme, token) = text.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthFailure::Malformed);
        }
        let d = digest(token);
        self.find(&d).cloned().ok_or_else(|| AuthFailure::Unknown { fingerprint: fingerprint(&d) })
    }

    /// The entry whose digest is `d`, found in time independent of where (or whether) it
    /// matches.
    fn find(&self, d: &[u8; 32]) -> Option<&Arc<Principal>> {
        // `u32::MAX`: no entry (there are never that many).
        let mut found = u32::MAX;
        for (i, (candidate, _)) in self.entries.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            found.conditional_assign(&i, candidate.as_slice().ct_eq(d.as_slice()));
        }
        self.entries.get(usize::try_from(found).ok()?).map(|(_, p)| p)
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
        assert!(err.to_string().starts_with("SLUICE_GATEWAY_TOKENS, line 1, entry 1:"), "{err}");
        let tokens = Tokens::parse(&format!("web:{A}:*"), "t").expect("valid");
        assert!(!format!("{tokens:?}").contains(A));
    }

    #[test]
    fn a_file_error_names_its_line() {
        let text = format!("# tokens\nweb:{A}:*\n\nbatch:{B}:user.*,\n");
        let err = Tokens::parse(&text, "tokens file /run/secrets/tokens").expect_err("bad scope").to_string();
        assert!(err.starts_with("tokens file /run/secrets/tokens, line 4 (\"batch\"): scope \"\""), "{err}");
        assert!(!err.contains(B), "{err}");
        let text = format!("web:{A}:*\nx:y:z:*;batch:{B}:*\n");
        let err = Tokens::parse(&text, "f").expect_err("short token").to_string();
        assert!(err.starts_with("f, line 2, entry 1 (\"x\"):"), "{err}");
    }

    #[test]
    fn the_constant_time_lookup_finds_every_entry_and_only_it() {
        let secrets: Vec<String> = (0..5).map(|i| format!("secret-number-{i}-0123456789")).collect();
        let text: Vec<String> = secrets.iter().enumerate().map(|(i, t)| format!("t{i}:{t}:*")).collect();
        let tokens = Tokens::parse(&text.join("\n"), "test").expect("valid");
        for (i, secret) in secrets.iter().enumerate() {
            let p = tokens.authenticate(Some(format!("Bearer {secret}").as_bytes())).expect("known");
            assert_eq!(p.name(), format!("t{i}"), "the first, a middle and the last entry alike");
        }
        // A digest one bit away from a configured one, at either end, is no match.
        for byte in [0, 31] {
            let mut near = tokens.entries[2].0;
            near[byte] ^= 1;
            assert!(tokens.find(&near).is_none());
        }
        assert!(Tokens::default().find(&digest(A)).is_none());
    }
}
