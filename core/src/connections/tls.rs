//! The TLS files of one service: whom to trust (a CA bundle) and, for mutual TLS, who we are (a
//! client certificate and its key). Read from `SLUICE_<SERVICE>_TLS_CA_FILE`, `…_TLS_CERT_FILE`,
//! `…_TLS_KEY_FILE`; each file must be readable when sluice starts.
//!
//! Peer verification is never switched off for the HTTP services: a private CA is trusted by
//! naming it, not by trusting everyone.

use std::path::PathBuf;

use super::{Env, EnvError};

/// PEM files for one service's TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM bundle) to trust instead of the system's roots; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM, PKCS#8, RSA or EC).
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads `<prefix>_TLS_CA_FILE`, `_TLS_CERT_FILE` and `_TLS_KEY_FILE`; a certificate without
    /// its key (or the other way round) is an error.
    pub fn from_env(env: &Env, prefix: &str) -> Result<Self, EnvError> {
        let name = |suffix: &str| format!("{prefix}_TLS_{suffix}_FILE");
        let files = Self {
            ca_file: env.readable_file(&name("CA"))?,
            cert_file: env.readable_file(&name("CERT"))?,
            key_file: env.readable_file(&name("KEY"))?,
        };
        match (&files.cert_file, &files.key_file) {
            (Some(_), None) => {
                Err(EnvError::invalid(name("CERT"), format!("a client certificate needs its key: set {}", name("KEY"))))
            }
            (None, Some(_)) => {
                Err(EnvError::invalid(name("KEY"), format!("a key needs its certificate: set {}", name("CERT"))))
            }
            _ => Ok(files),
        }
    }

    /// Whether a client certificate is configured (mutual TLS).
    pub fn client_auth(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether anything is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
