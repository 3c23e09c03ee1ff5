//! Quotes in a Markdown table, for tests that keep documentation true to
//! the program: the rows of a section that start with an anchor
//! (`| <a id="name"></a>...`), and the code spans of one of their cells.

use std::collections::BTreeMap;

/// The rows of section `heading` (a `## ` line) of `doc` that start with an
/// anchor: anchor id -> the code spans of cell `column` (1 is the first).
/// Panics on a row with fewer cells, or two rows with one id.
pub fn anchored_rows(doc: &str, heading: &str, column: usize) -> BTreeMap<String, Vec<String>> {
    let section = doc
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section ## {heading}"));
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| <a id=\"")) {
        let id = row["| <a id=\"".len()..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string();
        let cells: Vec<&str> = row.split('|').collect();
        let cell = cells
            .get(column)
            .unwrap_or_else(|| panic!("row {id} has no cell {column}: {row}"));
        assert!(
            rows.insert(id.clone(), code_spans(cell)).is_none(),
            "two rows are {id}"
        );
    }
    rows
}

/// Markdown code spans of `text`: a run of n backticks up to the next run
/// of exactly n, with one space of padding stripped on both sides.
pub fn code_spans(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let run_end = |mut i: usize| {
        while i < bytes.len() && bytes[i] == b'`' {
            i += 1;
        }
        i
    };
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open_end = run_end(i);
        let n = open_end - i;
        let mut j = open_end;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let end = run_end(j);
                if end - j == n {
                    close = Some(j);
                    break;
                }
                j = end;
            } else {
                j += 1;
            }
        }
        let Some(close) = close else { break };
        let mut content = &text[open_end..close];
        if content.len() > 2 && content.starts_with(' ') && content.ends_with(' ') {
            content = &content[1..content.len() - 1];
        }
        spans.push(content.to_string());
        i = close + n;
    }
    spans
}
