//! The first contact with Kafka and the registry at a command's start: what will not heal — a
//! refused login, an untrusted certificate, a name the certificate does not carry — stops the
//! command at once with the service named, instead of surfacing as a quiet retry loop (librdkafka
//! retries a refused login forever). A service that merely does not answer yet is only a warning:
//! the command's own retries take over, as before.

use std::time::Duration;

use anyhow::Context as _;
use sluice_core::{Connections, Services};
use sluice_producers::RegistryError;
use sluice_producers::kafka::check_reachable;
use sluice_producers::registry::Registry;

/// How long the registry's first answer is waited for here.
const REGISTRY_WINDOW: Duration = Duration::from_secs(5);

/// Checks the services of `services` that have a preflight (Kafka, the registry).
pub(crate) async fn check(connections: &Connections, services: Services) -> anyhow::Result<()> {
    if services.kafka {
        check_reachable(&connections.kafka).await?;
    }
    if services.registry {
        let registry = Registry::new(&connections.registry, REGISTRY_WINDOW).context("the schema registry")?;
        match registry.subjects().await {
            Ok(_) => {}
            Err(e @ RegistryError::Refused(_)) => {
                return Err(e).context(format!("schema registry at {}", connections.registry.url));
            }
            Err(e) => {
                tracing::warn!(url = %connections.registry.url, error = %e, "the schema registry did not answer yet; going on")
            }
        }
    }
    Ok(())
}
