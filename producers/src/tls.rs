//! TLS for the clients sluice builds on rustls (ClickHouse over HTTPS, Couchbase, the probe of
//! `sluice doctor`): whom to trust, who we are, and what a handshake negotiated.
//!
//! A CA file replaces the system's roots (naming a private CA means "this one signs my server's
//! certificate"); without one the system's roots are trusted. Verification is never switched
//! off. One crypto provider, aws-lc-rs, the one reqwest already builds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sluice_core::connections::TlsFiles;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The certificates of a PEM file; none is an error (a wrong file, not an empty trust).
pub fn read_certs(path: &Path, service: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{service}: cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{service}: {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path, service: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{service}: cannot read a private key from {}: {e}", path.display()))
}

/// The roots to verify servers with: the CA file's certificates, or the system's.
pub fn roots(tls: &TlsFiles, service: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in read_certs(ca, service)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{service}: {} is not a usable CA certificate: {e}", ca.display()))?;
            }
        }
        None => {
            // Certificates the system store holds but rustls cannot parse are skipped, as every
            // client does; an empty result fails every handshake, which names the cause.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(roots)
}

/// A rustls client configuration for `tls`, naming `service` in its errors.
pub fn client_config(tls: &TlsFiles, service: &str) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{service}: {e}"))?
        .with_root_certificates(roots(tls, service)?);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(read_certs(cert, service)?, read_key(key, service)?).map_err(|e| {
                format!("{service}: the client certificate {} and its key do not go together: {e}", cert.display())
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// What a TLS handshake negotiated, for `sluice doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `TLSv1.3` or `TLSv1.2`.
    pub protocol: String,
    /// The cipher suite.
    pub cipher: String,
    /// How many certificates the peer presented (verified against the roots and the name before
    /// the handshake completed).
    pub peer_certificates: usize,
}

/// Connects to `host:port` and completes a TLS handshake verifying the server against `tls`'s
/// roots and `host` as its name. Sends nothing else.
pub async fn probe(
    host: &str,
    port: u16,
    tls: &TlsFiles,
    service: &str,
    timeout: Duration,
) -> Result<Handshake, String> {
    let config = client_config(tls, service)?;
    let name =
        ServerName::try_from(host.to_owned()).map_err(|e| format!("{service}: {host:?} is not a server name: {e}"))?;
    let handshake = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("{service}: cannot connect to {host}:{port}: {e}"))?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{service}: TLS handshake with {host}:{port} failed: {}", error_chain(&e)))?;
        let (_, session) = stream.get_ref();
        Ok(Handshake {
            protocol: session
                .protocol_version()
                .map_or_else(|| "?".to_owned(), |v| format!("{v:?}").replace("TLSv1_", "TLSv1.")),
            cipher: session.negotiated_cipher_suite().map_or_else(|| "?".to_owned(), |c| format!("{:?}", c.suite())),
            peer_certificates: session.peer_certificates().map_or(0, <[_]>::len),
        })
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| format!("{service}: no TLS answer from {host}:{port} within {timeout:?}"))?
}

/// The host and port of an `https://host[:port]/…` URL (443 when none); `None` for other schemes.
pub fn https_host_port(url: &str) -> Option<(String, u16)> {
    let authority = url.strip_prefix("https://")?.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    host_port(authority, 443)
}

/// `host[:port]` or `[v6][:port]`, with `default` when no port is given.
pub fn host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, rest)| (h, rest.strip_prefix(':')))?,
        None => authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p))),
    };
    let port = port.map_or(Some(default), |p| p.parse().ok())?;
    Some((host.to_owned(), port))
}

/// An error with its causes: a handshake failure's reason is often two sources down.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// Whether an error text (with its causes) says a TLS peer was refused: an untrusted issuer, a
/// name the certificate does not carry, an expired certificate, or our own certificate refused.
/// Retrying the same connection fails the same way.
pub fn is_certificate_refusal(chain: &str) -> bool {
    const MARKS: &[&str] = &[
        "invalid peer certificate",
        "UnknownIssuer",
        "NotValidForName",
        "certificate verify failed",
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
    ];
    MARKS.iter().any(|m| chain.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_urls() {
        assert_eq!(https_host_port("https://127.0.0.1:18443/apis/ccompat/v7"), Some(("127.0.0.1".to_owned(), 18443)));
        assert_eq!(https_host_port("https://u:p@r.example/x"), Some(("r.example".to_owned(), 443)));
        assert_eq!(https_host_port("http://r:80"), None);
        assert_eq!(host_port("[::1]:9093", 1), Some(("::1".to_owned(), 9093)));
        assert_eq!(host_port("broker", 9092), Some(("broker".to_owned(), 9092)));
    }

    #[test]
    fn certificate_refusals_are_recognised() {
        assert!(is_certificate_refusal("client error (Connect): invalid peer certificate: UnknownIssuer"));
        assert!(is_certificate_refusal("received fatal alert: CertificateRequired"));
        assert!(!is_certificate_refusal("tcp connect error: Connection refused (os error 111)"));
    }

    #[test]
    fn a_file_without_certificates_is_an_error_naming_the_service() {
        let path = std::env::temp_dir().join(format!("sluice-no-cert-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = read_certs(&path, "ClickHouse").expect_err("no certificate");
        assert!(err.starts_with("ClickHouse: ") && err.contains("holds no PEM certificate"), "{err}");
        let tls = TlsFiles { ca_file: Some(path.clone()), ..TlsFiles::default() };
        assert!(client_config(&tls, "ClickHouse").is_err());
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn the_system_roots_are_used_without_a_ca_file() {
        let config = client_config(&TlsFiles::default(), "registry");
        assert!(config.is_ok(), "{:?}", config.err());
    }
}
