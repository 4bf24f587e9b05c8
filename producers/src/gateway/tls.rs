//! The gateway's optional TLS: a PEM certificate chain and private key read from two files, and
//! re-read without a restart.
//!
//! [`TlsCertificate::load`] reads the pair (the key PKCS#8, RSA or SEC1/EC), checks that the key
//! belongs to the chain's first certificate, and builds a rustls server configuration around it
//! (TLS 1.2 and 1.3, ALPN `http/1.1`, the aws-lc-rs provider reqwest already uses, passed
//! explicitly so no process-wide default is needed). The accept loop (`super::connections`)
//! takes `TlsCertificate::acceptor` for each accepted socket. [`TlsCertificate::reload`]
//! builds a whole new configuration and swaps it in: new handshakes get the new certificate,
//! open connections keep theirs. A new configuration rather than a swapped certificate inside
//! the old one because the configuration also holds the session cache: a client resuming a
//! session from before the reload would otherwise skip the certificate and keep the old
//! identity. A pair that does not load leaves the current one serving. Nothing here logs or
//! formats key material: a certificate is named by its SHA-256 fingerprint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio_rustls::rustls::{self, ServerConfig};

use super::reload::{Stamp, stamps};

/// Why a certificate and key could not be used. Never contains key material.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `the TLS certificate` or `the TLS key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or an unparseable one.
    #[error("{path}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) could be read{}", detail(.reason))]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, if anything.
        reason: Option<String>,
    },
    /// The key file holds no PEM private key (PKCS#8, RSA or EC).
    #[error("{path}: no PEM private key (PKCS#8, RSA or EC) could be read: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not belong to the certificate.
    #[error("the key {key} does not fit the certificate {cert}: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// rustls refused the configuration (the provider supports no safe protocol version).
    #[error("building the TLS configuration: {0}")]
    Config(rustls::Error),
}

fn detail(reason: &Option<String>) -> String {
    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
}

/// The certificate chain and key files, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The PEM private key of the first certificate.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate file, then the key file.
    pub(crate) fn paths(&self) -> [PathBuf; 2] {
        [self.cert.clone(), self.key.clone()]
    }
}

/// The pair being served, and the rustls configuration serving it. Share it as an `Arc`.
pub struct TlsCertificate {
    files: TlsFiles,
    /// The files' stamps taken just before they were first read: the file watch starts from
    /// them, so a rotation between the load and the watch's start is not missed.
    stamps_at_load: Vec<Option<Stamp>>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Generation>,
}

/// One loaded pair: the configuration serving it and its certificate's fingerprint.
#[derive(Debug)]
struct Generation {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

impl fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("files", &self.files)
            .field("fingerprint", &self.current.load().fingerprint)
            .finish_non_exhaustive()
    }
}

impl TlsCertificate {
    /// Reads and checks the pair in `files`, and builds the server configuration around it.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let stamps_at_load = stamps(&files.paths());
        let current = ArcSwap::from_pointee(generation(&files, &provider)?);
        Ok(Self { files, stamps_at_load, provider, current })
    }

    /// The files the pair is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The SHA-256 fingerprint of the certificate served now (hex, as `openssl x509
    /// -fingerprint -sha256` shows it, lower case and without colons).
    pub fn fingerprint(&self) -> String {
        self.current.load().fingerprint.clone()
    }

    /// Reads the pair again; on success new handshakes get it and its fingerprint is returned.
    /// On failure the current pair keeps serving.
    pub fn reload(&self) -> Result<String, TlsError> {
        let next = generation(&self.files, &self.provider)?;
        let fingerprint = next.fingerprint.clone();
        self.current.store(Arc::new(next));
        Ok(fingerprint)
    }

    pub(crate) fn stamps_at_load(&self) -> &[Option<Stamp>] {
        &self.stamps_at_load
    }

    /// An acceptor for one connection's handshake, with the current pair.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.load().config))
    }
}

fn generation(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Generation, TlsError> {
    let pair = read_pair(files, provider)?;
    let fingerprint = fingerprint(&pair);
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(pair)));
    // The gateway speaks HTTP/1.1 only; saying so lets a client that offers h2 settle at once.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Generation { config: Arc::new(config), fingerprint })
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read =
        |what, path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.into(), source });
    let cert_pem = read("the TLS certificate", &files.cert)?;
    let key_pem = read("the TLS key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate { path: files.cert.clone(), reason: Some(e.to_string()) })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate { path: files.cert.clone(), reason: None });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Key { path: files.key.clone(), reason: e.to_string() })?;
    // Parses the key with the provider and compares its public half with the certificate's.
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

fn fingerprint(pair: &CertifiedKey) -> String {
    let der = pair.cert.first().map_or(&[][..], |c| c.as_ref());
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, as PEM.
    pub(crate) fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    /// A fresh directory with `cert.pem` and `key.pem` holding `pair`.
    pub(crate) fn files_in(dir_name: &str, pair: &(String, String)) -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("sluice-tls-{dir_name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        write(&files, pair);
        files
    }

    pub(crate) fn write(files: &TlsFiles, (cert, key): &(String, String)) {
        std::fs::write(&files.cert, cert).expect("write cert");
        std::fs::write(&files.key, key).expect("write key");
    }

    fn der_fingerprint(pem: &str) -> String {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn loads_a_pair_and_reloads_a_new_one() {
        let first = self_signed("first.test");
        let files = files_in("reload", &first);
        let tls = TlsCertificate::load(files.clone()).expect("loads");
        assert_eq!(tls.fingerprint(), der_fingerprint(&first.0));

        let second = self_signed("second.test");
        write(&files, &second);
        assert_eq!(tls.reload().expect("reloads"), der_fingerprint(&second.0));
        assert_eq!(tls.fingerprint(), der_fingerprint(&second.0));
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one_serving() {
        let good = self_signed("good.test");
        let files = files_in("bad", &good);
        let tls = TlsCertificate::load(files.clone()).expect("loads");
        let other = self_signed("other.test");

        // Another certificate with the old key: they do not belong together.
        write(&files, &(other.0.clone(), good.1.clone()));
        let err = tls.reload().expect_err("mismatch");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        // A half-written certificate, an empty key, a missing file.
        write(&files, &(good.0[..good.0.len() / 2].to_owned(), good.1.clone()));
        assert!(matches!(tls.reload(), Err(TlsError::Certificate { .. })));
        write(&files, &(good.0.clone(), String::new()));
        let err = tls.reload().expect_err("no key");
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
        std::fs::remove_file(&files.cert).expect("rm");
        assert!(matches!(tls.reload(), Err(TlsError::Read { .. })));

        assert_eq!(tls.fingerprint(), der_fingerprint(&good.0), "the first pair still serves");
        // No error shows key material.
        write(&files, &(other.0.clone(), good.1.clone()));
        let text = tls.reload().expect_err("mismatch").to_string();
        let key_body = good.1.lines().nth(1).expect("a base64 line");
        assert!(!text.contains(key_body), "{text}");
    }

    /// A handshake through `tls` by a client sharing `client` (and so its session cache), with a
    /// byte read after it so the server's session ticket is taken in: how it went and the
    /// certificate the client holds.
    async fn handshake(tls: &TlsCertificate, client: &Arc<rustls::ClientConfig>) -> (rustls::HandshakeKind, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.acceptor();
        let server = tokio::spawn(async move {
            let mut stream = acceptor.accept(server_io).await.expect("server handshake");
            stream.write_all(b"x").await.expect("server write");
            stream.flush().await.expect("flush");
            stream
        });
        let name = rustls::pki_types::ServerName::try_from("gateway.test").expect("name");
        let mut stream =
            tokio_rustls::TlsConnector::from(Arc::clone(client)).connect(name, client_io).await.expect("handshake");
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("client read");
        let _server = server.await.expect("server task");
        let (_, conn) = stream.get_ref();
        let kind = conn.handshake_kind().expect("handshake done");
        let cert = conn.peer_certificates().and_then(|c| c.first()).expect("a certificate").to_vec();
        (kind, cert)
    }

    #[tokio::test]
    async fn after_a_reload_even_a_resuming_client_gets_the_new_certificate() {
        let first = self_signed("gateway.test");
        let second = self_signed("gateway.test");
        let files = files_in("resume", &first);
        let tls = TlsCertificate::load(files.clone()).expect("loads");
        let mut roots = rustls::RootCertStore::empty();
        for (pem, _) in [&first, &second] {
            roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")).expect("root");
        }
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let first_der = CertificateDer::from_pem_slice(first.0.as_bytes()).expect("pem").to_vec();
        let second_der = CertificateDer::from_pem_slice(second.0.as_bytes()).expect("pem").to_vec();

        assert_eq!(handshake(&tls, &client).await, (rustls::HandshakeKind::Full, first_der.clone()));
        // The session cache works: the same client resumes, with the identity it saw.
        assert_eq!(handshake(&tls, &client).await, (rustls::HandshakeKind::Resumed, first_der));
        write(&files, &second);
        tls.reload().expect("reloads");
        // A new configuration has a new cache: no resuming into the old certificate.
        assert_eq!(handshake(&tls, &client).await, (rustls::HandshakeKind::Full, second_der));
    }

    #[test]
    fn p384_and_ed25519_keys_load_too() {
        for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let key = rcgen::KeyPair::generate_for(alg).expect("key");
            let cert = rcgen::CertificateParams::new(vec!["alg.test".to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            let files = files_in("alg", &(cert.pem(), key.serialize_pem()));
            TlsCertificate::load(files).expect("loads");
        }
    }
}
