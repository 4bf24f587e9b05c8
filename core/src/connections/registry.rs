//! How to reach the schema registry: its URL, its credentials (HTTP basic auth or a bearer token)
//! and the TLS files to trust it with.
//!
//! A URL carrying `user:password@` is accepted (many tools hand one out) but the credentials are
//! moved out of it at once: [`RegistryConnection::url`] never holds a secret, so it is safe to log.

use super::{Env, EnvError, Secret, TlsFiles};

/// How sluice authenticates to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic auth (Confluent Cloud: the API key and secret).
    Basic {
        /// User (or API key).
        username: String,
        /// Password (or API secret).
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl RegistryAuth {
    /// For `sluice doctor`: the mechanism and user, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no authentication".to_owned(),
            Self::Basic { username, .. } => format!("basic auth as {username:?}"),
            Self::Bearer(_) => "bearer token".to_owned(),
        }
    }
}

/// The schema registry's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryConnection {
    /// Base URL of the Confluent API, without credentials.
    pub url: String,
    /// Credentials.
    pub auth: RegistryAuth,
    /// TLS files (`SLUICE_SCHEMA_REGISTRY_TLS_*`).
    pub tls: TlsFiles,
}

impl RegistryConnection {
    /// An unauthenticated registry (tests, the dev rig).
    pub fn plain(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Reads `SLUICE_SCHEMA_REGISTRY_URL`, `_USERNAME`, `_PASSWORD`, `_TOKEN` and `_TLS_*`.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let (url, userinfo) = split_userinfo(&env.get("SLUICE_SCHEMA_REGISTRY_URL").unwrap_or_default());
        let username = env.get("SLUICE_SCHEMA_REGISTRY_USERNAME");
        let password = env.secret("SLUICE_SCHEMA_REGISTRY_PASSWORD")?;
        let token = env.secret("SLUICE_SCHEMA_REGISTRY_TOKEN")?;
        let auth = match (username, password, token, userinfo) {
            (Some(_), _, Some(_), _) => {
                return Err(EnvError::invalid(
                    "SLUICE_SCHEMA_REGISTRY_TOKEN",
                    "set either a token or SLUICE_SCHEMA_REGISTRY_USERNAME/_PASSWORD, not both",
                ));
            }
            (None, None, Some(token), _) => RegistryAuth::Bearer(token),
            (Some(username), Some(password), None, _) => RegistryAuth::Basic { username, password },
            (Some(_), None, None, _) => {
                return Err(EnvError::invalid(
                    "SLUICE_SCHEMA_REGISTRY_USERNAME",
                    "set SLUICE_SCHEMA_REGISTRY_PASSWORD too",
                ));
            }
            (None, Some(_), _, _) => {
                return Err(EnvError::invalid(
                    "SLUICE_SCHEMA_REGISTRY_PASSWORD",
                    "set SLUICE_SCHEMA_REGISTRY_USERNAME too",
                ));
            }
            (None, None, None, Some((username, password))) => RegistryAuth::Basic { username, password },
            (None, None, None, None) => RegistryAuth::None,
        };
        Ok(Self { url, auth, tls: TlsFiles::from_env(env, "SLUICE_SCHEMA_REGISTRY")? })
    }

    /// Whether the registry is reached over TLS.
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("https://")
    }
}

/// Splits `scheme://user:password@host/…` into the URL without credentials and the credentials.
/// Percent-escapes in the user and password are decoded. Pure.
pub fn split_userinfo(url: &str) -> (String, Option<(String, Secret)>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return (url.to_owned(), None) };
    let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    let clean = format!("{scheme}://{}", &rest[at + 1..]);
    (clean, Some((percent_decode(user), Secret::new(percent_decode(password)))))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_vars(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn credentials_in_the_url_move_out_of_it() {
        let (url, creds) = split_userinfo("https://KEY:p%40ss%3Aword@psrc-1.example/apis/ccompat/v7");
        assert_eq!(url, "https://psrc-1.example/apis/ccompat/v7");
        let (user, password) = creds.expect("credentials");
        assert_eq!((user.as_str(), password.expose()), ("KEY", "p@ss:word"));
        assert_eq!(split_userinfo("http://r:8081/a@b"), ("http://r:8081/a@b".to_owned(), None));
        let c =
            RegistryConnection::from_env(&env(&[("SLUICE_SCHEMA_REGISTRY_URL", "https://u:secret@r/x")])).expect("ok");
        assert_eq!(c.url, "https://r/x");
        assert_eq!(c.auth.describe(), "basic auth as \"u\"");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn basic_or_bearer_never_both() {
        let basic = RegistryConnection::from_env(&env(&[
            ("SLUICE_SCHEMA_REGISTRY_URL", "https://r"),
            ("SLUICE_SCHEMA_REGISTRY_USERNAME", "u"),
            ("SLUICE_SCHEMA_REGISTRY_PASSWORD", "p"),
        ]))
        .expect("basic");
        assert!(matches!(basic.auth, RegistryAuth::Basic { ref username, .. } if username == "u"));
        assert!(basic.uses_tls());
        let bearer = RegistryConnection::from_env(&env(&[("SLUICE_SCHEMA_REGISTRY_TOKEN", "t0k")])).expect("bearer");
        assert_eq!(bearer.auth, RegistryAuth::Bearer(Secret::new("t0k")));
        let both = RegistryConnection::from_env(&env(&[
            ("SLUICE_SCHEMA_REGISTRY_USERNAME", "u"),
            ("SLUICE_SCHEMA_REGISTRY_TOKEN", "t0k"),
        ]))
        .expect_err("both");
        assert!(both.to_string().contains("not both") && !both.to_string().contains("t0k"), "{both}");
        let half = RegistryConnection::from_env(&env(&[("SLUICE_SCHEMA_REGISTRY_PASSWORD", "p")])).expect_err("half");
        assert!(half.to_string().contains("set SLUICE_SCHEMA_REGISTRY_USERNAME too"), "{half}");
    }
}
