//! JSON values written as block-style YAML, for manifests a person reads and diffs.
//!
//! Hand-written because no YAML crate is in the build and the subset is small: maps, lists and
//! scalars, in the order given. A string is written plain only when YAML would read it back as
//! the same string (letters, digits and `._/-:` not starting or ending oddly, not a word YAML
//! gives a meaning such as `true`, `null`, `on`, not a number); anything else is a JSON string
//! literal, which is a valid YAML double-quoted scalar. `cli/tests/deploy.rs` decodes the output
//! with Kubernetes' own decoder.

use serde_json::Value;

/// `docs` as one YAML stream, each document after a `---` line.
pub(crate) fn stream(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        block(&mut out, doc, 0);
    }
    out
}

fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                pad(out, indent);
                out.push_str(&scalar_str(k));
                out.push(':');
                nested(out, v, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                pad(out, indent);
                out.push('-');
                match item {
                    // A map in a list starts on the dash's line: `- name: x`.
                    Value::Object(m) if !m.is_empty() => {
                        let mut first = String::new();
                        block(&mut first, item, indent + 2);
                        out.push(' ');
                        out.push_str(&first[indent + 2..]);
                    }
                    _ => nested(out, item, indent),
                }
            }
        }
        _ => {
            pad(out, indent);
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar or empty collection on the same line, else a block.
fn nested(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::String(s) if literal_block(s) => {
            // `|` keeps the text as written, final newline included; `|-` when it has none.
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// Multi-line text a literal block carries unchanged: no control character but the newlines, no
/// first line starting with a space (it would set the block's indentation), not ending in blank
/// lines (`|` keeps only one final newline).
fn literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.split('\n').any(|l| l.ends_with([' ', '\t']))
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        Value::String(s) => scalar_str(s),
        other => other.to_string(),
    }
}

/// Words YAML 1.1 or 1.2 reads as something other than a string.
const SPECIAL: &[&str] = &["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"];

fn scalar_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._/-:".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain { s.to_owned() } else { Value::String(s.to_owned()).to_string() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn writes_block_yaml_and_quotes_what_yaml_would_misread() {
        let doc = json!({
            "kind": "Deployment",
            "spec": {"replicas": 2, "ports": [{"name": "http", "port": 8080}], "args": ["work", "--projection", "a_b"]},
            "labels": {},
            "words": ["on", "no", "1.5", "0.0.0.0:9464", "a: b", "trailing \nspace", "", "sluice:0.1.0"],
            "text": "line one\n\n  indented\n",
            "flag": true,
        });
        assert_eq!(
            stream(&[doc]),
            "---\nkind: Deployment\nspec:\n  replicas: 2\n  ports:\n    - name: http\n      port: 8080\n  args:\n    - \
             work\n    - \"--projection\"\n    - a_b\nlabels: {}\nwords:\n  - \"on\"\n  - \"no\"\n  - \"1.5\"\n  - \
             \"0.0.0.0:9464\"\n  - \"a: b\"\n  - \"trailing \\nspace\"\n  - \"\"\n  - sluice:0.1.0\ntext: |\n  line \
             one\n\n    indented\nflag: true\n"
        );
    }
}
