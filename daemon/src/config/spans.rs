//! Where each section and key of the config file was written, from the TOML parser's
//! spans, so that every error names its line.
//!
//! The file is parsed twice: once into spanned tables (here), once into the serde
//! structs of `file.rs`. Both come from the same parser, so a line found here is the
//! line serde read the value from, whatever the quoting, dotted keys or inline tables.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// The spans of every key of a config file.
#[derive(Debug, Default)]
pub(super) struct Spans {
    /// 0-based offsets of the start of each line.
    line_starts: Vec<usize>,
    /// Section path (`"s3"`, `"notify.email"`) and key, with the span of the key and
    /// of the whole entry (key through value). Sections have an empty key.
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    key_span: Range<usize>,
    whole: Range<usize>,
}

impl Spans {
    /// Spans of `text`; what a syntax error keeps from being parsed is missing.
    pub(super) fn parse(text: &str) -> Spans {
        let (table, _errors) = DeTable::parse_recoverable(text);
        let mut spans = Spans {
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            entries: Vec::new(),
        };
        spans.walk("", table.get_ref());
        spans
    }

    fn walk(&mut self, section: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            let key_span = key.span();
            let whole = key_span.start.min(value.span().start)..value.span().end;
            match value.get_ref() {
                DeValue::Table(inner) => {
                    let path = if section.is_empty() {
                        name.to_string()
                    } else {
                        format!("{section}.{name}")
                    };
                    self.entries.push(Entry {
                        section: path.clone(),
                        key: String::new(),
                        key_span,
                        whole,
                    });
                    self.walk(&path, inner);
                }
                _ => self.entries.push(Entry {
                    section: section.to_string(),
                    key: name.to_string(),
                    key_span,
                    whole,
                }),
            }
        }
    }

    /// 1-based line of `key` in `[section]`; of the section's header when `key` is
    /// empty or not written (a required key that is missing); `None` when neither is.
    pub(super) fn line(&self, section: &str, key: &str) -> Option<usize> {
        let find = |key: &str| {
            self.entries
                .iter()
                .find(|e| e.section == section && e.key == key)
        };
        let entry = find(key).or_else(|| find(""))?;
        Some(self.line_of(entry.key_span.start))
    }

    /// 1-based line of byte offset `at`.
    pub(super) fn line_of(&self, at: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= at)
            .max(1)
    }

    /// `[section] key` of the innermost entry written at byte offset `at` (for serde's
    /// errors, which carry a span but name only the field).
    pub(super) fn key_at(&self, at: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|e| e.whole.contains(&at) || e.key_span.contains(&at))
            .min_by_key(|e| e.whole.len())
            .map(|e| match (e.section.as_str(), e.key.as_str()) {
                (s, "") => format!("[{s}]"),
                ("", k) => k.to_string(),
                (s, k) => format!("[{s}] {k}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\n[daemon]\nstate_dir = \"/var/lib/twindb\"\n\n[s3]\n\"bucket\" = \"b\"\nregion=\"x\"\n[notify.email]\nto = [\"a\",\n  \"b\"]\n";

    #[test]
    fn lines_come_from_the_parser() {
        let s = Spans::parse(TEXT);
        assert_eq!(s.line("daemon", "state_dir"), Some(3));
        assert_eq!(s.line("s3", "bucket"), Some(6), "quoted keys");
        assert_eq!(s.line("s3", "region"), Some(7));
        assert_eq!(
            s.line("s3", "missing"),
            Some(5),
            "a missing key: its section"
        );
        assert_eq!(s.line("s3", ""), Some(5));
        assert_eq!(s.line("notify.email", "to"), Some(9));
        assert_eq!(s.line("gcs", "bucket"), None);
    }

    #[test]
    fn an_offset_names_its_key() {
        let s = Spans::parse(TEXT);
        let at = TEXT.find("\"b\"]").unwrap();
        assert_eq!(s.key_at(at).as_deref(), Some("[notify.email] to"));
        let at = TEXT.find("region").unwrap();
        assert_eq!(s.key_at(at).as_deref(), Some("[s3] region"));
        assert_eq!(s.line_of(at), 7);
    }
}
