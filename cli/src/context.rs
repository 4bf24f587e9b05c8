//! What every subcommand starts from: the validated topology and the resolved endpoints.

use anyhow::Context as _;
use sluice_core::topology::{SinkConfig, Topology, TopologyError};
use sluice_core::{Connections, Env, Services};

use crate::GlobalArgs;

/// The topology and the endpoints, resolved once per command.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The validated topology.
    pub(crate) topology: Option<Topology>,
    /// The endpoints; only those of the services the command asked for are guaranteed set (see
    /// [`Context::load_for`]).
    pub(crate) connections: Connections,
}

/// The process environment over the env file (explicit or discovered).
fn env(args: &GlobalArgs) -> anyhow::Result<Env> {
    Ok(match &args.env_file {
        Some(path) => Env::with_file(path)?,
        None => Env::discover()?,
    })
}

/// The variables as every command layers them (process environment > env file > the
/// `[connections]` of the topology when it loads), for a command that needs only some endpoints
/// and no topology (`topology init`).
pub(crate) fn env_with_topology_defaults(args: &GlobalArgs) -> anyhow::Result<Env> {
    let env = env(args)?;
    Ok(match Topology::load(&args.topology) {
        Ok(t) => env.with_defaults(t.connections().env_defaults()),
        Err(_) => env,
    })
}

/// Loads the topology, printing its report (every problem with its location) when invalid.
pub(crate) fn load_topology(args: &GlobalArgs) -> anyhow::Result<Topology> {
    match Topology::load(&args.topology) {
        Ok(t) => {
            if !t.warnings().is_empty() {
                eprint!("{}", t.warnings());
            }
            Ok(t)
        }
        Err(TopologyError::Invalid(report)) => {
            eprint!("{report}");
            anyhow::bail!("{} is invalid (run `sluice topology check` for the list)", args.topology.display())
        }
        Err(e) => Err(e).context("reading the topology (pass --topology PATH or run from the repository root)"),
    }
}

/// Kafka, the registry and the sink of `projection`; every service when the topology has no such
/// projection (the command then says so, naming the ones it has).
fn services_of(topology: &Topology, projection: &str) -> Services {
    let sink = match topology.projection(projection).map(|p| &p.sink) {
        Some(SinkConfig::Couchbase { .. }) => Services::COUCHBASE,
        Some(SinkConfig::ClickHouse { .. }) => Services::CLICKHOUSE,
        None => Services::ALL,
    };
    Services::KAFKA.and(Services::REGISTRY).and(sink)
}

impl Context {
    /// Topology and every service's endpoint; the topology's `[connections]` are the lowest layer.
    pub(crate) async fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        Self::load_for(args, Services::ALL).await
    }

    /// Topology and the endpoints of `services`, the ones the command talks to: a variable of
    /// another service may be unset (`sluice publish` needs no Couchbase or ClickHouse settings).
    /// Kafka and the registry are contacted once ([`crate::preflight`]): a refused login or
    /// certificate stops the command here.
    pub(crate) async fn load_for(args: &GlobalArgs, services: Services) -> anyhow::Result<Self> {
        Self::load_with(args, |_| services).await
    }

    /// Topology and the endpoints of the services one projection's command talks to: Kafka, the
    /// registry and the projection's sink (`sluice work --projection analytics` needs no
    /// Couchbase settings).
    pub(crate) async fn load_for_projection(args: &GlobalArgs, projection: &str) -> anyhow::Result<Self> {
        Self::load_with(args, |topology| services_of(topology, projection)).await
    }

    /// Topology and the endpoints of the services `services` picks from it.
    async fn load_with(args: &GlobalArgs, services: impl FnOnce(&Topology) -> Services) -> anyhow::Result<Self> {
        let topology = load_topology(args)?;
        let services = services(&topology);
        let env = env(args)?.with_defaults(topology.connections().env_defaults());
        let connections = Connections::for_services(&env, services).context("finding the services")?;
        crate::preflight::check(&connections, services).await?;
        Ok(Self { topology: Some(topology), connections })
    }

    /// Connections only (for `doctor`): the topology's defaults are used when it loads, but a
    /// missing or broken topology does not stop a health check.
    pub(crate) fn connections_only(args: &GlobalArgs) -> anyhow::Result<Self> {
        let mut env = env(args)?;
        let topology = Topology::load(&args.topology).ok();
        if let Some(t) = &topology {
            env = env.with_defaults(t.connections().env_defaults());
        }
        if let Some(file) = env.file() {
            println!("endpoints from {} (SLUICE_* variables override it)\n", file.display());
        }
        let connections = Connections::from_env(&env).context("finding the services")?;
        Ok(Self { topology, connections })
    }

    /// The topology, which `load` guarantees.
    pub(crate) fn topology(&self) -> anyhow::Result<&Topology> {
        self.topology.as_ref().context("no topology loaded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_command_needs_its_own_sink_only() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
        let topology = Topology::load(&path).expect("the repository's topology");
        let base = Services::KAFKA.and(Services::REGISTRY);
        assert_eq!(services_of(&topology, "user_state"), base.and(Services::COUCHBASE));
        assert_eq!(services_of(&topology, "analytics"), base.and(Services::CLICKHOUSE));
        assert_eq!(services_of(&topology, "no_such_projection"), Services::ALL);
    }
}
