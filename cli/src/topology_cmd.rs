//! `sluice topology …`: validate and show the topology file.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_core::topology::{Topology, TopologyError};

use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Validate the topology file and print every problem with its line:column and a hint.
    ///
    /// Checks the TOML against the model (unknown keys are errors, with "did you mean"), every
    /// schema file (valid Avro, envelope fields first), and every cross-reference (topics,
    /// event types, document id placeholders, field mappings, thresholds). Exits non-zero on
    /// errors; warnings alone pass.
    Check,
    /// Print the effective topology: the file with every default filled in.
    Show,
}

pub(crate) fn run(args: &GlobalArgs, cmd: TopologyCommand) -> anyhow::Result<ExitCode> {
    let path = &args.topology;
    match (Topology::load(path), cmd) {
        (Ok(t), TopologyCommand::Check) => {
            if !t.warnings().is_empty() {
                print!("{}", t.warnings());
            }
            let events = t.events().count();
            let projections = t.projections().count();
            let topics = t.topics().count();
            println!("{}: ok — {topics} topics, {events} event types, {projections} projections", path.display());
            Ok(ExitCode::SUCCESS)
        }
        (Ok(t), TopologyCommand::Show) => {
            print!("{}", toml::to_string_pretty(t.config())?);
            Ok(ExitCode::SUCCESS)
        }
        (Err(TopologyError::Invalid(report)), _) => {
            eprint!("{report}");
            Ok(ExitCode::FAILURE)
        }
        (Err(e), _) => Err(e.into()),
    }
}
