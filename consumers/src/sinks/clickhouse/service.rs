//! The network side of the ClickHouse sink: building a client for one server and finding out what
//! that server supports.

use clickhouse::Client;
use sluice_core::connections::ClickHouseConnection;

use super::capabilities::{Capabilities, Version};
use super::Error;

/// A client tuned to the server it talks to.
#[derive(Clone)]
pub struct ClickHouse {
    /// The `clickhouse` crate's client, with row validation on only where the server supports it.
    pub client: Client,
    /// What the server can do.
    pub capabilities: Capabilities,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse").field("capabilities", &self.capabilities).finish_non_exhaustive()
    }
}

/// A client for `conn` with the crate's defaults (no validation decided yet).
fn base_client(conn: &ClickHouseConnection) -> Client {
    let mut client = Client::default().with_url(&conn.url);
    if let Some(user) = &conn.user {
        client = client.with_user(user);
    }
    if let Some(password) = &conn.password {
        client = client.with_password(password.expose());
    }
    client
}

impl ClickHouse {
    /// Connects: asks the server's version (in a format every version speaks) and configures the
    /// client for it. Fails when the server does not answer.
    pub async fn connect(conn: &ClickHouseConnection) -> Result<Self, Error> {
        let probe = base_client(conn).with_validation(false);
        let text: String = probe
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|source| Error::Unreachable { url: conn.url.clone(), source })?;
        let version = Version::parse(&text).ok_or_else(|| Error::BadVersion(text.clone()))?;
        let capabilities = Capabilities::of(version);
        let mut client = base_client(conn).with_validation(capabilities.row_binary_with_names_and_types);
        if !capabilities.exception_in_stream_header {
            // Old servers report an error that happens mid-stream by appending its text to a 200
            // body, which the crate would decode as rows. Buffering the whole result server-side
            // turns such errors into a proper error status.
            client = client.with_setting("wait_end_of_query", "1");
        }
        tracing::info!(
            url = %conn.url, %version,
            validation = capabilities.row_binary_with_names_and_types,
            dedup_token = capabilities.insert_deduplication_token,
            "connected to ClickHouse; strategy chosen from its version"
        );
        Ok(Self { client, capabilities })
    }
}
