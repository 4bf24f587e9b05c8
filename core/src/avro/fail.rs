//! A JSON → Avro conversion failure on its way up from where it happened to
//! [`super::json_to_avro`], which turns it into the user-facing [`ConvertError`].

use std::fmt::Write as _;

use super::error::{ConvertError, ConvertErrorKind, quote};

/// A conversion failure on its way up: the path is collected in reverse while unwinding, so the
/// happy path never builds one.
#[derive(Debug)]
pub(super) struct Fail {
    pub(super) rev_path: Vec<Segment>,
    pub(super) kind: ConvertErrorKind,
}

#[derive(Debug)]
pub(super) enum Segment {
    /// A record field or a map key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl Fail {
    pub(super) fn here(kind: ConvertErrorKind) -> Self {
        Self { rev_path: Vec::new(), kind }
    }

    pub(super) fn at(mut self, segment: Segment) -> Self {
        self.rev_path.push(segment);
        self
    }

    /// A type mismatch at the value itself (not inside it).
    pub(super) fn is_shallow_type_mismatch(&self) -> bool {
        self.rev_path.is_empty() && matches!(self.kind, ConvertErrorKind::WrongType { .. })
    }

    pub(super) fn into_error(self) -> ConvertError {
        let mut path = String::from("$");
        for segment in self.rev_path.iter().rev() {
            match segment {
                Segment::Key(key) if is_identifier(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Segment::Key(key) => {
                    let _ = write!(path, "[{}]", quote(key));
                }
                Segment::Index(i) => {
                    let _ = write!(path, "[{i}]");
                }
            }
        }
        ConvertError { path, kind: self.kind }
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
