//! `sluice topology …`: validate and show the topology file, or write a first one from what a
//! registry and a Kafka cluster already hold (`init`).
//!
//! `init` reads through [`sluice_producers::admin::discover`], hands the inventory to the pure
//! [`sluice_core::topology::init::generate`], validates the result as `check` would, and only then
//! writes the files; this module prints what was written and what was left out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use sluice_core::connections::{KafkaConnection, RegistryAuth, RegistryConnection, split_userinfo};
use sluice_core::topology::init::{Filter, Generated, Naming, generate};
use sluice_core::topology::{DEFAULT_FILE, HumanDuration, Topology, TopologyError};
use sluice_producers::Registry;
use sluice_producers::admin::discover::{DiscoverOptions, discover};

use crate::GlobalArgs;
use crate::table::print_table;

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Validate the topology file and print every problem with its line:column and a hint.
    ///
    /// Checks the TOML against the model (unknown keys are errors, with "did you mean"), every
    /// schema file (valid Avro, envelope fields first), and every cross-reference (topics,
    /// event types, document id placeholders, field mappings, thresholds). Exits non-zero on
    /// errors; warnings alone pass.
    #[command(after_help = "Example: sluice topology check ./pipeline/topology.toml")]
    Check(FileArg),
    /// Print the effective topology: the file with every default filled in.
    Show(FileArg),
    /// Write a starting topology.toml from an existing schema registry and Kafka cluster.
    ///
    /// Reads the registry's subjects (latest schema of each) and the cluster's topics (partitions,
    /// replication factor, cleanup.policy, retention), and writes DIR/topology.toml with the
    /// schemas under DIR/schemas/: event types bound to their schemas and topics, the topics as
    /// the cluster has them, a ClickHouse projection `analytics` with a typed table per event type,
    /// and commented-out starting points (a Couchbase projection, a current-state table, a
    /// rollup). Every subject and topic read that did not become part of it is listed in a comment
    /// at the end with the reason. The result passes `sluice topology check` as it is; nothing is
    /// changed in the registry or the cluster.
    ///
    /// Which subjects are event types: an Avro record whose first fields are sluice's envelope
    /// (event_id, event_type, aggregate_id, aggregate_version, occurred_at, producer,
    /// correlation_id, causation_id, traceparent, tracestate), the rule `topology check` applies.
    ///
    /// Which topic: a `<topic>-value` subject (TopicNameStrategy) goes with its topic. A subject
    /// named after its record (`namespace.Name`, RecordNameStrategy) goes with the topic whose
    /// latest records (--sample per partition) are framed with the schema id of one of its
    /// versions, and that topic gets subject_strategy = "record". One found on no topic is
    /// written commented out, with the reason.
    ///
    /// Event type names: the string default of the schema's `event_type` field, else one derived
    /// from the record: the namespace's last segment and the record name in snake case
    /// (sluice.users.UserRegistered → users.user_registered). A derived name must equal what
    /// producers put in `event_type`: the file says so next to each.
    ///
    /// Endpoints: --registry-url and --brokers, else SLUICE_SCHEMA_REGISTRY_URL and
    /// SLUICE_KAFKA_BROKERS as for every command (environment, env file, `[connections]` of
    /// --topology when it loads).
    #[command(after_help = INIT_EXAMPLES)]
    Init(InitArgs),
}

/// The topology file `check` and `show` read: a path argument, as `promtool check rules FILE`
/// takes (`--file PATH` is the older spelling, kept).
#[derive(Debug, clap::Args)]
pub(crate) struct FileArg {
    /// The topology file (default: the global --topology, `topology.toml`).
    #[arg(value_name = "FILE", conflicts_with = "file")]
    path: Option<PathBuf>,
    /// The same as FILE.
    #[arg(long, value_name = "FILE", hide = true)]
    file: Option<PathBuf>,
}

impl FileArg {
    /// The file given, else the global --topology.
    fn or<'a>(&'a self, global: &'a Path) -> &'a Path {
        self.path.as_deref().or(self.file.as_deref()).unwrap_or(global)
    }
}

const INIT_EXAMPLES: &str = "Examples:
  sluice topology init --out ./pipeline
      everything the registry and the cluster hold, into ./pipeline/topology.toml and ./pipeline/schemas/
  sluice topology init --subjects com.acme.orders. --subjects orders- --topics orders
      only the subjects and topics starting with those prefixes (a shared registry, a big cluster)
  sluice topology init --registry-url http://registry:8081 --brokers kafka:9092 --force
      other endpoints than the environment's; overwrite ./topology.toml
  sluice topology init --sample 0
      read no records: subjects named after their records are then written commented out

Then: sluice topology check ./pipeline/topology.toml";

/// `sluice topology init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Directory to write topology.toml and schemas/ into (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,

    /// Overwrite DIR/topology.toml and the schema files of the same names when they exist.
    #[arg(long)]
    force: bool,

    /// Also consider internal topics: `_*` (`_schemas`, `__consumer_offsets`), `*.dlq`, Kafka
    /// Connect's `connect-configs|offsets|status`, Kafka Streams' `*-changelog`, `*-repartition`.
    #[arg(long)]
    include_internal: bool,

    /// Only subjects starting with PREFIX (repeat for several; default: every subject).
    #[arg(long = "subjects", value_name = "PREFIX")]
    subjects: Vec<String>,

    /// Only topics starting with PREFIX (repeat for several; default: every topic).
    #[arg(long = "topics", value_name = "PREFIX")]
    topics: Vec<String>,

    /// The schema registry's Confluent API URL (default: SLUICE_SCHEMA_REGISTRY_URL).
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,

    /// Kafka bootstrap servers, host:port[,host:port…] (default: SLUICE_KAFKA_BROKERS).
    #[arg(long, value_name = "SERVERS")]
    brokers: Option<String>,

    /// How many of the latest records of each partition to read to find the topic of subjects
    /// named after their records (0: read none).
    #[arg(long, value_name = "N", default_value_t = 200)]
    sample: u64,

    /// The longest time reading those records may take; what was read by then counts.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    sample_timeout: HumanDuration,
}

/// Each registry call's and Kafka admin request's timeout.
const TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) async fn run(args: &GlobalArgs, cmd: TopologyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TopologyCommand::Check(file) => check(file.or(&args.topology)),
        TopologyCommand::Show(file) => show(file.or(&args.topology)),
        TopologyCommand::Init(init_args) => init(args, init_args).await,
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match Topology::load(path) {
        Ok(t) => {
            if !t.warnings().is_empty() {
                print!("{}", t.warnings());
            }
            let events = t.events().count();
            let projections = t.projections().count();
            let topics = t.topics().count();
            println!("{}: ok — {topics} topics, {events} event types, {projections} projections", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => report(e),
    }
}

fn show(path: &Path) -> anyhow::Result<ExitCode> {
    match Topology::load(path) {
        Ok(t) => {
            print!("{}", toml::to_string_pretty(t.config())?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => report(e),
    }
}

fn report(e: TopologyError) -> anyhow::Result<ExitCode> {
    match e {
        TopologyError::Invalid(report) => {
            eprint!("{report}");
            Ok(ExitCode::FAILURE)
        }
        e => Err(e.into()),
    }
}

async fn init(args: &GlobalArgs, a: InitArgs) -> anyhow::Result<ExitCode> {
    let target = a.out.join(DEFAULT_FILE);
    if target.exists() && !a.force {
        bail!("{} exists: pass --force to overwrite it, or --out another directory", target.display());
    }
    let env = crate::context::env_with_topology_defaults(args)?;
    // The same security settings as every other command; the flags only change where.
    let mut kafka = KafkaConnection::from_env(&env)?;
    let mut registry_conn = RegistryConnection::from_env(&env)?;
    if let Some(brokers) = a.brokers {
        kafka.brokers = brokers;
    }
    if let Some(url) = a.registry_url {
        let (url, credentials) = split_userinfo(&url);
        registry_conn.url = url;
        if let Some((username, password)) = credentials {
            registry_conn.auth = RegistryAuth::Basic { username, password };
        }
    }
    if kafka.brokers.is_empty() || registry_conn.url.is_empty() {
        bail!(
            "where are the registry and Kafka? pass --registry-url and --brokers, or set SLUICE_SCHEMA_REGISTRY_URL \
             and SLUICE_KAFKA_BROKERS (the environment, the env file, or [connections] of --topology)"
        );
    };
    let filter =
        Filter { include_internal: a.include_internal, subject_prefixes: a.subjects, topic_prefixes: a.topics };
    let options = DiscoverOptions {
        filter: filter.clone(),
        records_per_partition: a.sample,
        records_deadline: a.sample_timeout.get(),
        kafka_timeout: TIMEOUT,
    };
    eprintln!("reading the registry at {} and the Kafka cluster at {} …", registry_conn.url, kafka.brokers);
    let registry = Registry::new(&registry_conn, TIMEOUT)?;
    let inventory = discover(&registry, &kafka, &options).await.context("reading the registry and the cluster")?;
    let generated = generate(&inventory, &filter);
    if let Err(report) = generated.check(&a.out) {
        eprint!("{report}");
        bail!(
            "the topology `topology init` made does not pass `sluice topology check` (a bug: please report it with \
             the messages above); nothing was written"
        );
    }
    write(&a.out, &generated, a.force)?;
    summary(&a.out, &target, &generated);
    Ok(ExitCode::SUCCESS)
}

/// Writes the schema files, then the topology; refuses to overwrite a schema file without
/// `force` before writing anything.
fn write(out: &Path, generated: &Generated, force: bool) -> anyhow::Result<()> {
    if !force && let Some(existing) = generated.schemas.iter().map(|s| out.join(&s.path)).find(|p| p.exists()) {
        bail!("{} exists: pass --force to overwrite it, or --out another directory", existing.display());
    }
    for schema in &generated.schemas {
        let path = out.join(&schema.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &schema.text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let target = out.join(DEFAULT_FILE);
    std::fs::write(&target, &generated.topology).with_context(|| format!("writing {}", target.display()))
}

/// How many left-out subjects are listed before "… and N more".
const LISTED: usize = 20;

fn summary(out: &Path, target: &Path, generated: &Generated) {
    if generated.events.is_empty() {
        println!("no subject is a sluice event schema bound to a topic: the topology has no event type yet");
    } else {
        let rows: Vec<Vec<String>> = generated
            .events
            .iter()
            .map(|e| {
                let name = match e.naming {
                    Naming::SchemaDefault => "schema default",
                    Naming::Derived => "derived: producers must send it",
                };
                vec![e.event_type.clone(), e.topic.clone(), e.subject.clone(), name.to_owned()]
            })
            .collect();
        print_table(&["EVENT TYPE", "TOPIC", "SUBJECT", "NAME"], &rows);
    }
    if !generated.skipped.is_empty() {
        println!("\nnot written ({}; listed at the end of the file):", generated.skipped.len());
        for s in generated.skipped.iter().take(LISTED) {
            println!("  {}: {}", s.subject, s.reason);
        }
        if generated.skipped.len() > LISTED {
            println!("  … and {} more", generated.skipped.len() - LISTED);
        }
    }
    if !generated.unused_topics.is_empty() {
        let names: Vec<&str> = generated.unused_topics.iter().map(|(t, _)| t.as_str()).take(LISTED).collect();
        let more = generated.unused_topics.len().saturating_sub(LISTED);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!("\ntopics with no sluice event type ({}): {}{more}", generated.unused_topics.len(), names.join(", "));
    }
    println!(
        "\nwrote {} and {} schema files under {}",
        target.display(),
        generated.schemas.len(),
        out.join("schemas").display()
    );
    println!("next: sluice topology check {}", target.display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        topology: TopologyCommand,
    }

    fn checked(args: &[&str]) -> Result<PathBuf, clap::Error> {
        match Cli::try_parse_from([&["sluice", "check"][..], args].concat())?.topology {
            TopologyCommand::Check(file) => Ok(file.or(Path::new("topology.toml")).to_owned()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn check_takes_the_file_as_an_argument() {
        assert_eq!(checked(&["other/topology.toml"]).ok(), Some(PathBuf::from("other/topology.toml")));
        assert_eq!(checked(&["--file", "other.toml"]).ok(), Some(PathBuf::from("other.toml")), "the older spelling");
        assert_eq!(checked(&[]).ok(), Some(PathBuf::from("topology.toml")), "the global --topology");
        let both = checked(&["a.toml", "--file", "b.toml"]).expect_err("two files");
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict, "{both}");
    }
}
