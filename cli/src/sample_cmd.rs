//! `sluice sample`: realistic events of the default domain as JSON lines, for demos and load.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use sluice_sample as sample;

/// Options of `sluice sample`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: sluice sample --users 1000 | sluice publish\n\
                        Every user registers, updates the profile, maybe changes e-mail, opens sessions \
                        with heartbeats, views pages, clicks and buys; one user in ten is erased (GDPR).")]
pub(crate) struct SampleArgs {
    /// How many users (about 12 events each).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seed: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of every aggregate id, so several runs do not touch the same entities.
    #[arg(long, default_value = "demo-")]
    prefix: String,
}

pub(crate) fn run(args: &SampleArgs) -> anyhow::Result<ExitCode> {
    // Event ids are `<run>-0000-4000-8000-<n>`: the run part comes from the seed and prefix so
    // the same arguments give the same ids (re-publishing them is then a harmless duplicate).
    let mut h: u32 = 0x811c_9dc5;
    for b in args.prefix.bytes().chain(args.seed.to_le_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let run = format!("{h:08x}");
    let (events, _) = sample::generate(args.users, args.seed, &run, &args.prefix);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for e in &events {
        writeln!(out, "{e}")?;
    }
    out.flush()?;
    eprintln!("{} events for {} users", events.len(), args.users);
    Ok(ExitCode::SUCCESS)
}
