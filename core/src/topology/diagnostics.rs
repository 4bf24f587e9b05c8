//! What is wrong with a topology file, and where: every problem found, with a `file:line:column`
//! location and a hint, printed the way compilers print.
//!
//! Parsing and validation collect [`Issue`]s (a byte range in the topology text, a message, a
//! hint); [`Report::new`] turns them into [`Diagnostic`]s with line and column, sorted by
//! position, for `sluice topology check` to print. Pure code.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub(crate) use crate::suggest::closest;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The topology cannot be used.
    Error,
    /// The topology works, but probably not as intended.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// A problem as found, before it is given a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) severity: Severity,
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Issue {
    pub(crate) fn error(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, span, message: message.into(), hint: None }
    }

    pub(crate) fn warning(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, span, message: message.into(), hint: None }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Sets `hint` unless there is one already.
    pub(crate) fn hint_if_none(mut self, hint: impl Into<String>) -> Self {
        self.hint.get_or_insert_with(|| hint.into());
        self
    }
}

/// One problem in the topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line in the topology file.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte range in the topology file.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub hint: Option<String>,
}

/// Every problem found in one topology file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    path: PathBuf,
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Locates `issues` in `text` (the topology file at `path`) and sorts them by position.
    pub(crate) fn new(path: &Path, text: &str, issues: Vec<Issue>) -> Self {
        let lines = LineIndex::new(text);
        let mut diagnostics: Vec<Diagnostic> = issues
            .into_iter()
            .map(|issue| {
                let (line, column) = lines.locate(text, issue.span.start);
                Diagnostic {
                    severity: issue.severity,
                    line,
                    column,
                    span: issue.span,
                    message: issue.message,
                    hint: issue.hint,
                }
            })
            .collect();
        diagnostics.sort_by(|a, b| (a.span.start, a.severity, &a.message).cmp(&(b.span.start, b.severity, &b.message)));
        diagnostics.dedup();
        Self { path: path.to_owned(), diagnostics }
    }

    /// The topology file the report is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every problem, sorted by position.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// How many errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// How many warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    /// True when there is at least one error (warnings alone do not make a topology unusable).
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// True when there is nothing at all to report.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

impl fmt::Display for Report {
    /// `path:line:col: error: message` and `  hint: …` lines, then a count line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for d in &self.diagnostics {
            writeln!(f, "{path}:{}:{}: {}: {}", d.line, d.column, d.severity, d.message)?;
            if let Some(hint) = &d.hint {
                writeln!(f, "  hint: {hint}")?;
            }
        }
        let (errors, warnings) = (self.error_count(), self.warning_count());
        match (errors, warnings) {
            (0, 0) => writeln!(f, "{path}: no problems found"),
            (0, w) => writeln!(f, "{path}: {}", plural(w, "warning")),
            (e, 0) => writeln!(f, "{path}: {}", plural(e, "error")),
            (e, w) => writeln!(f, "{path}: {}, {}", plural(e, "error"), plural(w, "warning")),
        }
    }
}

/// Byte offsets of line starts, to turn a byte offset into line and column.
#[derive(Debug)]
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        Self(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn locate(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.0.partition_point(|&start| start <= offset).max(1);
        let start = self.0[line - 1];
        let column = text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        (line, column)
    }
}

fn show(candidate: &str, quote: bool) -> String {
    if quote { format!("\"{candidate}\"") } else { format!("`{candidate}`") }
}

/// "did you mean `x`?" when a candidate is close (by the one rule of [`closest`]); `quote` shows
/// it as a TOML string instead.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str], quote: bool) -> Option<String> {
    closest(word, candidates.iter().copied()).map(|best| format!("did you mean {}?", show(best, quote)))
}

/// [`did_you_mean`], or else "expected one of: …" (in the order given).
pub(crate) fn suggest(word: &str, candidates: &[&str], quote: bool) -> Option<String> {
    if candidates.is_empty() {
        return None;
    }
    did_you_mean(word, candidates, quote).or_else(|| {
        let all: Vec<String> = candidates.iter().map(|c| show(c, quote)).collect();
        Some(format!("expected one of: {}", all.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let text = "a = 1\n\nbé = 'x'\n";
        let lines = LineIndex::new(text);
        assert_eq!(lines.locate(text, 0), (1, 1));
        assert_eq!(lines.locate(text, 4), (1, 5));
        assert_eq!(lines.locate(text, 6), (2, 1));
        assert_eq!(lines.locate(text, 7), (3, 1));
        // `é` is two bytes but one column.
        assert_eq!(lines.locate(text, text.rfind('=').unwrap_or(0)), (3, 4));
        assert_eq!(lines.locate(text, text.len()), (4, 1));
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(closest("partitons", ["partitions", "retention"]), Some("partitions"));
        assert_eq!(closest("Couchbse", ["couchbase", "clickhouse"]), Some("couchbase"));
        assert_eq!(closest("xyz", ["partitions"]), None);
        assert_eq!(closest("ab", ["xy"]), None);
    }

    #[test]
    fn prints_like_a_compiler() {
        let text = "[topics]\nx = 1\n";
        let report = Report::new(
            Path::new("topology.toml"),
            text,
            vec![
                Issue::warning(9..10, "second").hint("do this"),
                Issue::error(0..8, "first"),
                Issue::error(0..8, "first"),
            ],
        );
        assert_eq!(
            report.to_string(),
            "topology.toml:1:1: error: first\n\
             topology.toml:2:1: warning: second\n  hint: do this\n\
             topology.toml: 1 error, 1 warning\n"
        );
        let clean = Report::new(Path::new("t.toml"), "", vec![]);
        assert_eq!(clean.to_string(), "t.toml: no problems found\n");
        assert!(!clean.has_errors());
    }
}
