//! `sluice schemas …`: the topology's event schemas in the schema registry.
//!
//! Reads the topology and the registry through [`sluice_producers::admin::schemas`]; this module
//! prints one row per event type (stdout) and sets the exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sluice_core::Services;
use sluice_producers::Registry;
use sluice_producers::admin::schemas::{self, RegistrationStatus, Verdict};

use crate::table::print_table;
use crate::{Context, GlobalArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// Register every event type's schema under its subject.
    ///
    /// Sets each subject's compatibility level to the topology's `[registry] compatibility`
    /// first, so the registry refuses a schema that breaks it. Prints subject, id, version and
    /// whether the schema is new or was already registered; exits non-zero when any is refused.
    Register,
    /// Compare every event type's schema with its subject's latest version, changing nothing.
    ///
    /// Says for each: new subject, identical, compatible, or INCOMPATIBLE with the reason
    /// naming the field (checked locally under the topology's level, and by the registry).
    /// Exits non-zero when any is incompatible.
    Check,
}

/// Each registry call's timeout.
const TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) async fn run(args: &GlobalArgs, cmd: SchemasCommand) -> anyhow::Result<ExitCode> {
    let ctx = Context::load_for(args, Services::REGISTRY).await?;
    let topology = ctx.topology()?;
    let registry = Registry::new(&ctx.connections.registry, TIMEOUT)?;
    let level = topology.compatibility();
    match cmd {
        SchemasCommand::Register => {
            let outcomes = schemas::register(&registry, topology).await;
            let mut refused = 0;
            let rows: Vec<Vec<String>> = outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(r) => vec![
                        o.subject.clone(),
                        o.event_type.clone(),
                        r.id.to_string(),
                        r.version.to_string(),
                        match r.status {
                            RegistrationStatus::New => "new".to_owned(),
                            RegistrationStatus::Unchanged => "unchanged".to_owned(),
                        },
                    ],
                    Err(e) => {
                        refused += 1;
                        vec![o.subject.clone(), o.event_type.clone(), "-".into(), "-".into(), e.to_string()]
                    }
                })
                .collect();
            println!("compatibility level of every subject: {level}\n");
            print_table(&["SUBJECT", "EVENT TYPE", "ID", "VERSION", "STATUS"], &rows);
            println!();
            let new =
                outcomes.iter().filter(|o| matches!(&o.result, Ok(r) if r.status == RegistrationStatus::New)).count();
            println!(
                "{} subjects: {new} new, {} unchanged, {refused} refused",
                outcomes.len(),
                outcomes.len() - new - refused
            );
            Ok(if refused > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        SchemasCommand::Check => {
            let outcomes = schemas::check(&registry, topology).await;
            let mut bad = 0;
            let rows: Vec<Vec<String>> = outcomes
                .iter()
                .map(|o| {
                    let (latest, verdict) = match &o.result {
                        Ok(check) => {
                            let note = check
                                .registry_level
                                .as_ref()
                                .map(|l| format!(" (registry level {l}; `schemas register` sets {level})"))
                                .unwrap_or_default();
                            match &check.verdict {
                                Verdict::NewSubject => ("-".to_owned(), format!("new subject{note}")),
                                Verdict::Identical { version, id } => {
                                    (format!("v{version} (id {id})"), format!("identical{note}"))
                                }
                                Verdict::Compatible { latest } => (format!("v{latest}"), format!("compatible{note}")),
                                Verdict::Incompatible(why) => {
                                    bad += 1;
                                    (format!("v{}", why.version), format!("INCOMPATIBLE: {why}{note}"))
                                }
                            }
                        }
                        Err(e) => {
                            bad += 1;
                            ("?".to_owned(), format!("ERROR: {e}"))
                        }
                    };
                    vec![o.subject.clone(), o.event_type.clone(), latest, verdict]
                })
                .collect();
            println!("checked under {level} (the topology's level)\n");
            print_table(&["SUBJECT", "EVENT TYPE", "REGISTERED", "VERDICT"], &rows);
            println!();
            println!("{} subjects: {bad} incompatible or unchecked", outcomes.len());
            Ok(if bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}
