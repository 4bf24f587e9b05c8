//! Plain-text tables for the CLI's output: columns two spaces apart, trailing spaces trimmed.

/// `headers` and `rows` as text, one line each; the first `left` columns are left-aligned (names),
/// the others right-aligned (numbers).
pub(crate) fn render<R: AsRef<[String]>>(headers: &[&str], rows: &[R], left: usize) -> String {
    render_with(headers, rows, |i| i < left)
}

/// `headers` and `rows` as text, one line each; the columns `is_left` says are left-aligned, the
/// others right-aligned.
pub(crate) fn render_with<R: AsRef<[String]>>(headers: &[&str], rows: &[R], is_left: impl Fn(usize) -> bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, &w)) in cells.zip(&widths).enumerate() {
            if is_left(i) { l.push_str(&format!("{cell:<w$}  ")) } else { l.push_str(&format!("{cell:>w$}  ")) }
        }
        text.push_str(l.trim_end());
        text.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.as_ref().iter().map(String::as_str));
    }
    text
}

/// Prints a table whose columns are all left-aligned.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render(headers, rows, headers.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_names_left_and_numbers_right() {
        let rows = vec![vec!["users".to_owned(), "7".to_owned()], vec!["sessions".to_owned(), "12".to_owned()]];
        assert_eq!(render(&["TOPIC", "N"], &rows, 1), "TOPIC      N\nusers      7\nsessions  12\n");
        assert_eq!(render(&["TOPIC", "N"], &rows, 2), "TOPIC     N\nusers     7\nsessions  12\n");
    }
}
