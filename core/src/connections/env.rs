//! The environment sluice reads its endpoints and credentials from: the process environment over
//! an env file over the topology's `[connections]` defaults.
//!
//! Every secret variable `NAME` may instead be given as `NAME_FILE`, the path of a file holding the
//! value (the convention of Kubernetes secret mounts and Docker secrets); a trailing newline in the
//! file is dropped. Setting both is an error rather than a silent choice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Secret;

/// Errors reading the environment.
#[derive(Debug, Error)]
pub enum EnvError {
    /// The env file could not be read.
    #[error("cannot read env file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the env file is not `[export ]NAME=value`.
    #[error("{path}:{line}: expected `export NAME=value`, got {text:?}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// Required variables are not set anywhere.
    #[error(
        "missing {}: start the local services with `dev/up` (it writes .dev/env), \
         or set them to point at your clusters (see README, 'Environment')",
        .0.join(", ")
    )]
    Missing(Vec<&'static str>),
    /// A variable has a value sluice cannot use.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable.
        name: String,
        /// What is wrong and what would be right. Never contains a secret value.
        message: String,
    },
    /// A file a variable names (a `…_FILE` secret, a CA, a certificate, a properties file) cannot
    /// be read.
    #[error("{name}={path}: cannot read the file: {source}")]
    File {
        /// The variable naming the file.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl EnvError {
    /// A variable whose value is wrong.
    pub fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { name: name.into(), message: message.into() }
    }
}

/// Parses an env file: `NAME=value` or `export NAME=value` lines; blank lines and `#` comments are
/// skipped; a value may be wrapped in single or double quotes. Pure, so it is tested without files.
pub fn parse_env_file(path: &Path, text: &str) -> Result<BTreeMap<String, String>, EnvError> {
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let body = line.strip_prefix("export ").map_or(line, str::trim_start);
        let syntax = || EnvError::Syntax { path: path.to_owned(), line: i + 1, text: raw.to_owned() };
        let (name, value) = body.split_once('=').ok_or_else(syntax)?;
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(syntax());
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(l, r)| value.strip_prefix(*l).and_then(|v| v.strip_suffix(*r)))
            .unwrap_or(value);
        vars.insert(name.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

/// The process environment layered over an optional env file, over optional defaults (the
/// topology's `[connections]`).
#[derive(Debug, Clone, Default)]
pub struct Env {
    file: BTreeMap<String, String>,
    path: Option<PathBuf>,
    defaults: BTreeMap<String, String>,
}

impl Env {
    /// Only the process environment.
    pub fn process() -> Self {
        Self::default()
    }

    /// The process environment over the variables of `path`.
    pub fn with_file(path: &Path) -> Result<Self, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read { path: path.to_owned(), source })?;
        Ok(Self { file: parse_env_file(path, &text)?, path: Some(path.to_owned()), defaults: BTreeMap::new() })
    }

    /// From explicit variables (tests, or a caller that already parsed a file).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { file: vars.into_iter().collect(), path: None, defaults: BTreeMap::new() }
    }

    /// Adds a lowest layer: values used only when neither the process environment nor the file
    /// sets the variable (e.g. `Topology::connections().env_defaults()`).
    #[must_use]
    pub fn with_defaults(mut self, defaults: impl IntoIterator<Item = (String, String)>) -> Self {
        self.defaults.extend(defaults);
        self
    }

    /// The process environment over `$SLUICE_ENV_FILE`, or else over the nearest `.dev/env` in the
    /// current directory or one of its parents (so `cargo test` in any crate finds the rig's file).
    pub fn discover() -> Result<Self, EnvError> {
        if let Some(path) = std::env::var_os("SLUICE_ENV_FILE") {
            return Self::with_file(Path::new(&path));
        }
        let cwd = std::env::current_dir().unwrap_or_default();
        match cwd.ancestors().map(|dir| dir.join(".dev/env")).find(|p| p.is_file()) {
            Some(path) => Self::with_file(&path),
            None => Ok(Self::process()),
        }
    }

    /// The env file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A variable: the process environment first, then the file, then the defaults; empty counts
    /// as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let non_empty = |v: &String| !v.is_empty();
        std::env::var(name)
            .ok()
            .filter(non_empty)
            .or_else(|| self.file.get(name).filter(|v| non_empty(v)).cloned())
            .or_else(|| self.defaults.get(name).filter(|v| non_empty(v)).cloned())
    }

    /// A secret variable: `NAME` itself, or the contents of the file `NAME_FILE` names (one
    /// trailing newline dropped). Both set is an error, so a stale value never wins unnoticed.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, EnvError> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => Err(EnvError::invalid(name, format!("set either {name} or {file_var}, not both"))),
            (Some(value), None) => Ok(Some(Secret::new(value))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|source| EnvError::File {
                    name: file_var.clone(),
                    path: path.clone().into(),
                    source,
                })?;
                let value = text.strip_suffix('\n').map_or(text.as_str(), |v| v.strip_suffix('\r').unwrap_or(v));
                if value.is_empty() {
                    return Err(EnvError::invalid(file_var, format!("the file {path} is empty")));
                }
                Ok(Some(Secret::new(value)))
            }
            (None, None) => Ok(None),
        }
    }

    /// A path variable whose file must be readable now, so a typo fails at start with the
    /// variable's name rather than deep inside a client library.
    pub fn readable_file(&self, name: &str) -> Result<Option<PathBuf>, EnvError> {
        let Some(path) = self.get(name) else { return Ok(None) };
        std::fs::File::open(&path).map_err(|source| EnvError::File {
            name: name.to_owned(),
            path: path.clone().into(),
            source,
        })?;
        Ok(Some(PathBuf::from(path)))
    }

    /// A yes/no variable (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, EnvError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(_) => Err(EnvError::invalid(name, "expected true or false")),
        }
    }
}
