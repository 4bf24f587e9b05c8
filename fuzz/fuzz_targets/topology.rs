//! Any text as `topology.toml`: parse and validate (`Topology::from_parts`), the schema files it
//! names read from the repository's `schemas/` (any other path: not found).
//!
//! Checked: the answer is a topology or a report with at least one error, never a panic (a hang
//! is libFuzzer's `-timeout`); every diagnostic points into the text (a span within it, on
//! character boundaries, line and column from 1) and has a message; a report prints; an accepted
//! topology's CDC sources all build a mapper.

#![no_main]

use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_core::cdc::CdcMapper;
use sluice_core::topology::{Report, Topology};
use sluice_fuzz::repo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let read = |path: &Path| -> io::Result<String> {
        // Only files under schemas/: the fuzzer must not read the machine's files.
        match path.strip_prefix(repo()) {
            Ok(relative)
                if relative.starts_with("schemas") && !relative.components().any(|c| c.as_os_str() == "..") =>
            {
                std::fs::read_to_string(repo().join(relative))
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "not a repository schema")),
        }
    };
    match Topology::from_parts(text, &repo().join("topology.toml"), read) {
        Ok(topology) => {
            check(text, topology.warnings());
            assert!(!topology.warnings().has_errors());
            for (name, _) in topology.cdc_sources() {
                assert!(CdcMapper::new(&topology, name).is_some(), "cdc source {name} has no mapper");
            }
        }
        Err(report) => {
            assert!(report.has_errors(), "refused without an error: {report}");
            check(text, &report);
        }
    }
});

fn check(text: &str, report: &Report) {
    let lines = text.split('\n').count();
    for d in report.diagnostics() {
        assert!(!d.message.is_empty(), "a diagnostic without a message");
        assert!(d.span.start <= d.span.end && d.span.end <= text.len(), "span {:?} outside the text", d.span);
        assert!(
            text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
            "span {:?} splits a character",
            d.span
        );
        assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{}:{} outside the text", d.line, d.column);
    }
    assert!(report.to_string().lines().count() >= report.diagnostics().len());
}
