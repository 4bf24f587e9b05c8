//! How every registry client sluice makes (publisher, `sluice schemas`, the workers' decoders,
//! `sluice doctor`) reaches the registry: the CA it trusts, its client certificate, and the
//! credentials it sends. One place, so a setting reaches all of them or none.
//!
//! A CA file replaces the system's roots rather than adding to them: naming a private CA means
//! "this is who signs my registry's certificate", and nobody else should be trusted for it.

use std::time::Duration;

use reqwest::{Certificate, ClientBuilder, Identity, RequestBuilder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice_core::connections::{RegistryAuth, RegistryConnection, TlsFiles};

use crate::RegistryError;

/// A reqwest client builder that trusts what `tls` names and presents its client certificate.
pub fn tls_client_builder(tls: &TlsFiles, service: &str) -> Result<ClientBuilder, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{service}: cannot read the CA file {}: {e}", ca.display()))?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{service}: the CA file {} holds no PEM certificate: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = std::fs::read(cert).map_err(|e| format!("{service}: cannot read {}: {e}", cert.display()))?;
        pem.extend(std::fs::read(key).map_err(|e| format!("{service}: cannot read {}: {e}", key.display()))?);
        let identity = Identity::from_pem(&pem).map_err(|e| {
            format!("{service}: the client certificate {} or its key is not usable: {e}", cert.display())
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// The HTTP client for the calls schema_registry_converter lacks.
pub(super) fn http_client(conn: &RegistryConnection, timeout: Duration) -> Result<reqwest::Client, RegistryError> {
    tls_client_builder(&conn.tls, "schema registry")
        .map_err(RegistryError::Rejected)?
        .timeout(timeout)
        .build()
        .map_err(|e| RegistryError::Rejected(format!("cannot build the registry client: {e}")))
}

/// Settings for schema_registry_converter's calls: the same TLS, the same credentials.
pub fn sr_settings(conn: &RegistryConnection, timeout: Duration) -> Result<SrSettings, RegistryError> {
    let base_url = conn.url.trim_end_matches('/').to_owned();
    let mut builder = SrSettings::new_builder(base_url);
    builder.set_timeout(timeout);
    match &conn.auth {
        RegistryAuth::None => {}
        RegistryAuth::Basic { username, password } => {
            builder.set_basic_authorization(username, Some(password.expose()));
        }
        RegistryAuth::Bearer(token) => {
            builder.set_token_authorization(token.expose());
        }
    }
    let tls = tls_client_builder(&conn.tls, "schema registry").map_err(RegistryError::Rejected)?;
    builder
        .build_with(tls)
        .map_err(|e| RegistryError::Rejected(format!("cannot build the registry client: {}", e.error)))
}

/// Adds the connection's credentials to a request.
pub(super) fn authorize(request: RequestBuilder, auth: &RegistryAuth) -> RequestBuilder {
    match auth {
        RegistryAuth::None => request,
        RegistryAuth::Basic { username, password } => request.basic_auth(username, Some(password.expose())),
        RegistryAuth::Bearer(token) => request.bearer_auth(token.expose()),
    }
}

/// Whether an error (with its causes, as text) means the registry refused us for good: our
/// credentials (401/403) or its certificate (untrusted issuer, wrong name). Retrying won't help.
pub fn is_refusal(chain: &str) -> bool {
    const MARKS: &[&str] = &["status 401", "status 403", "401 Unauthorized", "403 Forbidden"];
    MARKS.iter().any(|m| chain.contains(m)) || crate::tls::is_certificate_refusal(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_credentials_and_certificates() {
        assert!(is_refusal("HTTP request to schema registry failed with status 401 Unauthorized"));
        assert!(is_refusal("error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"));
        assert!(is_refusal("invalid peer certificate: certificate not valid for name \"localhost\"; NotValidForName"));
        assert!(!is_refusal("error sending request: client error (Connect): tcp connect error: Connection refused"));
        assert!(!is_refusal("HTTP request to schema registry failed with status 503 Service Unavailable"));
    }
}
