//! The engine knows no domain: no event type, topic, table or field name of the repository's
//! sample domain appears in the library code of `core/`, `producers/` or `consumers/`. Everything
//! domain-shaped comes from `topology.toml`; the sample domain's generator lives in `sample/`.
//!
//! The names are read from the repository's own topology and schemas, so a name added to the
//! sample domain is checked too. Tests (`#[cfg(test)]` modules, `tests.rs` files) and comments may
//! use the sample domain as their example; code and its strings may not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_core::topology::{SinkConfig, Topology};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fields generic enough to be any domain's (`reason`, `url`, `created_at`, …) are left out:
/// only names with an underscore, and the two the sample domain is built around.
fn distinctive(field: &str) -> bool {
    (field.contains('_') && !field.ends_with("_at")) || matches!(field, "email" | "country")
}

/// The sample domain's names: event types, topics, projections, ClickHouse objects and
/// distinctive payload fields.
fn domain_names() -> BTreeSet<String> {
    let topology = Topology::load(&repo().join("topology.toml")).unwrap_or_else(|e| panic!("{e}"));
    let mut names = BTreeSet::new();
    for event in topology.events() {
        names.insert(event.event_type.clone());
        names.insert(event.topic.clone());
        let schema: Value = serde_json::from_str(&event.schema_text).expect("schema JSON");
        for field in schema["fields"].as_array().into_iter().flatten().skip(10) {
            if let Some(name) = field["name"].as_str().filter(|n| distinctive(n)) {
                names.insert(name.to_owned());
            }
        }
    }
    for (name, projection) in topology.projections() {
        if name != "analytics" {
            names.insert(name.to_owned());
        }
        if let SinkConfig::ClickHouse { clickhouse } = &projection.sink {
            names.extend(clickhouse.tables.keys().cloned());
            names.extend(clickhouse.state.keys().cloned());
            names.extend(clickhouse.rollups.keys().cloned());
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library lines of `text` (the file at `path`), with their numbers: up to an inline
/// `#[cfg(test)] mod … {`, which runs to the end of the file. The modules it declares test-only
/// (`#[cfg(test)] mod name;`) go to `test_modules`, as the paths of their files and folders.
fn library_lines<'t>(path: &Path, text: &'t str, test_modules: &mut Vec<PathBuf>) -> Vec<(usize, &'t str)> {
    let children = match path.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => path.parent().map(Path::to_path_buf),
        _ => path.parent().map(|p| p.join(path.file_stem().unwrap_or_default())),
    }
    .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            let declared = next.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
            if let Some(name) = declared.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                test_modules.push(children.join(format!("{name}.rs")));
                test_modules.push(children.join(name));
                continue;
            }
            if declared.starts_with("mod ") {
                break;
            }
        }
        out.push((i + 1, *line));
    }
    out
}

/// Whether `word` occurs in `line` on its own (not inside a longer identifier).
fn occurs(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[test]
fn no_name_of_the_sample_domain_in_library_code() {
    let names = domain_names();
    assert!(names.contains("user.registered") && names.contains("users_current") && names.contains("user_id"));
    let mut files = Vec::new();
    for crate_dir in ["core/src", "producers/src", "consumers/src"] {
        rust_files(&repo().join(crate_dir), &mut files);
    }
    assert!(files.len() > 50, "{} files", files.len());
    // A parent module's file (`a.rs`) before its children (`a/b.rs`): by text, `.` sorts before `/`.
    files.sort_by_key(|p| p.to_string_lossy().into_owned());
    let mut test_modules = Vec::new();
    let mut found = Vec::new();
    for file in &files {
        if test_modules.iter().any(|m| file.starts_with(m)) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        for (number, line) in library_lines(file, &text, &mut test_modules) {
            let code = line.split("//").next().unwrap_or_default();
            for name in names.iter().filter(|n| occurs(code, n)) {
                found.push(format!("{}:{number}: `{name}` in {}", file.display(), line.trim()));
            }
        }
    }
    assert!(test_modules.len() > 10, "test modules found: {test_modules:?}");
    assert!(found.is_empty(), "the engine names the sample domain:\n{}", found.join("\n"));
}
