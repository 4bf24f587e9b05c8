//! `sluice deploy k8s`: Kubernetes manifests generated from the topology, so the deployment
//! follows the projections, their partitions and their backpressure thresholds instead of a
//! hand-kept chart drifting from them.
//!
//! Pure: the topology and the options in, a list of objects out ([`k8s::manifests`]), written as
//! one YAML stream ([`yaml`]). `cli/tests/deploy.rs` decodes every object strictly with
//! Kubernetes', KEDA's and the Prometheus operator's own Go types (`deploy/validate`).

mod autoscale;
mod k8s;
mod kafka_auth;
mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::GlobalArgs;
pub(crate) use kafka_auth::{KafkaSasl, KafkaTls};

/// `sluice deploy …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeployCommand {
    /// Print (or write) the Kubernetes manifests of the topology: a ConfigMap of the topology and
    /// its schemas, a Deployment, PodDisruptionBudget and autoscaler per projection, the
    /// gateway's Deployment, Service, PodDisruptionBudget and CPU autoscaler, and PodMonitors.
    K8s(K8sArgs),
}

/// Options of `sluice deploy k8s`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Secrets are never written: each --secret VAR becomes VAR_FILE pointing into \
                        the Secret named by --secret-name (key = the variable's name), mounted \
                        read-only; the gateway's tokens come from the Secret \
                        <prefix>-gateway-tokens (key `tokens`). Connection endpoints come from \
                        the topology's [connections] (the ConfigMap carries the topology) or \
                        --env VAR=VALUE. A secured Kafka (--kafka-sasl, --kafka-tls): the Secret \
                        --kafka-secret-name with the keys username, password, ca, cert, key (as \
                        KEDA's kafka scaler names them) serves the pods and KEDA's \
                        TriggerAuthentication alike.")]
pub(crate) struct K8sArgs {
    /// The image, e.g. `registry.example/sluice:1.4.0` (built from the repository's Dockerfile).
    #[arg(long, default_value = concat!("sluice:", env!("CARGO_PKG_VERSION")))]
    pub(crate) image: String,

    /// Namespace of every object (default: none, the one `kubectl apply -n` names).
    #[arg(long)]
    pub(crate) namespace: Option<String>,

    /// Prefix of every object's name.
    #[arg(long, default_value = "sluice")]
    pub(crate) name_prefix: String,

    /// How workers scale: `keda` (a ScaledObject on the consumer group's lag), `hpa` (an
    /// autoscaling/v2 HPA on `sluice_lag_seconds` through the Prometheus adapter) or `none`
    /// (fixed --replicas).
    #[arg(long, value_enum, default_value_t = Autoscaler::Keda)]
    pub(crate) autoscaler: Autoscaler,

    /// Let KEDA stop a projection's workers while it has no lag (off by default: a stopped
    /// worker answers no readiness and starts only after KEDA's polling interval).
    #[arg(long)]
    pub(crate) scale_to_zero: bool,

    /// Replicas per projection without an autoscaler, and the autoscalers' minimum.
    #[arg(long, default_value_t = 1)]
    pub(crate) replicas: u32,

    /// How long a worker or the gateway may spend draining at shutdown; the pods'
    /// terminationGracePeriodSeconds is this plus 15 s, so Kubernetes never kills a drain.
    #[arg(long, default_value = "30s", value_parser = crate::work::parse_duration)]
    pub(crate) drain_deadline: std::time::Duration,

    /// A secret variable given as a mounted file (`VAR_FILE`), repeatable.
    #[arg(long = "secret", value_name = "VAR", default_values_t = ["SLUICE_COUCHBASE_PASSWORD".to_owned(), "SLUICE_CLICKHOUSE_PASSWORD".to_owned()])]
    pub(crate) secrets: Vec<String>,

    /// The Secret holding the --secret values.
    #[arg(long, default_value = "sluice-credentials")]
    pub(crate) secret_name: String,

    /// A plain variable for every pod (the ConfigMap `<prefix>-env`), `VAR=VALUE`, repeatable.
    #[arg(long = "env", value_name = "VAR=VALUE", value_parser = env_pair)]
    pub(crate) env: Vec<(String, String)>,

    /// The SASL mechanism of a secured Kafka: `username` and `password` from the Secret
    /// --kafka-secret-name, for the pods and for KEDA's TriggerAuthentication.
    #[arg(long, value_enum)]
    pub(crate) kafka_sasl: Option<KafkaSasl>,

    /// TLS to Kafka: `none`, `system` (the system's CAs), `ca` (the Secret's `ca`) or `mutual`
    /// (`ca`, and the client's `cert` and `key`). Default: `system` with --kafka-sasl, else none.
    #[arg(long, value_enum)]
    pub(crate) kafka_tls: Option<KafkaTls>,

    /// The Secret of Kafka's credentials and certificates (keys named as KEDA's kafka scaler
    /// names its parameters), read by the pods and by KEDA.
    #[arg(long, default_value = "sluice-kafka-credentials")]
    pub(crate) kafka_secret_name: String,

    /// Write the stream to this file instead of stdout.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

/// How projection workers scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Autoscaler {
    Keda,
    Hpa,
    None,
}

fn env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if k.starts_with("SLUICE_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected SLUICE_VAR=VALUE, got {s:?}")),
    }
}

pub(crate) fn run(global: &GlobalArgs, cmd: DeployCommand) -> anyhow::Result<ExitCode> {
    let DeployCommand::K8s(args) = cmd;
    let topology = crate::context::load_topology(global)?;
    let docs = k8s::manifests(&topology, &args)?;
    let text = yaml::stream(&docs);
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
