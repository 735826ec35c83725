//! TwinDB's config dialect: Python's `configparser` with its defaults, which TwinDB used.
//!
//! - `[section]` headers; section names are case-sensitive, key names are not (lowered).
//! - `key = value` or `key: value` (the first `=` or `:` splits), spaces around trimmed.
//! - Whole-line comments start with `#` or `;`; there are no inline comments.
//! - An indented line continues the previous value (joined with a newline).
//! - Interpolation: `%%` is `%`, `%(name)s` is the value of `name` in the same section
//!   or `[DEFAULT]`; any other `%` is an error, as in Python.
//! - A duplicate section or key is an error (Python 3's `strict` mode).
//!
//! Quotes are not removed here: TwinDB stripped them itself, in some sections only.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Ini {
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Lower case, as configparser's `optionxform` makes it.
    pub key: String,
    /// Interpolated, not unquoted.
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IniError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Ini {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

pub fn parse(text: &str) -> Result<Ini, IniError> {
    let mut sections: Vec<Section> = Vec::new();
    // Whether the last line was a key whose value an indented line may continue.
    let mut in_value = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| IniError { line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            in_value = false;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if indented && in_value {
            let entry = sections
                .last_mut()
                .and_then(|s| s.entries.last_mut())
                .expect("in_value implies an entry");
            entry.value.push('\n');
            entry.value.push_str(trimmed);
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(err(format!(
                    "{trimmed:?}: a section header needs a closing ]"
                )));
            };
            let name = &rest[..end];
            if name.is_empty() {
                return Err(err("empty section name".into()));
            }
            if let Some(first) = sections.iter().find(|s| s.name == name) {
                return Err(err(format!(
                    "section [{name}] is already defined on line {}",
                    first.line
                )));
            }
            sections.push(Section {
                name: name.to_string(),
                line,
                entries: Vec::new(),
            });
            in_value = false;
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(err("a key before the first [section] header".into()));
        };
        let Some(split) = trimmed.find(['=', ':']) else {
            // The line is not echoed: it may be a secret missing its `key =`.
            return Err(err(
                "not a `key = value` line, a [section] header or a comment".into(),
            ));
        };
        let key = trimmed[..split].trim().to_lowercase();
        if key.is_empty() {
            return Err(err("a value without a key".into()));
        }
        if let Some(first) = section.entries.iter().find(|e| e.key == key) {
            return Err(err(format!(
                "[{}] {key} is already set on line {}",
                section.name, first.line
            )));
        }
        section.entries.push(Entry {
            key,
            value: trimmed[split + 1..].trim().to_string(),
            line,
        });
        in_value = true;
    }
    let mut ini = Ini { sections };
    interpolate_all(&mut ini)?;
    Ok(ini)
}

fn interpolate_all(ini: &mut Ini) -> Result<(), IniError> {
    let snapshot = ini.clone();
    for section in &mut ini.sections {
        for entry in &mut section.entries {
            entry.value =
                interpolate(&snapshot, &section.name, &entry.value, 0).map_err(|message| {
                    IniError {
                        line: entry.line,
                        message: format!("[{}] {}: {message}", section.name, entry.key),
                    }
                })?;
        }
    }
    Ok(())
}

/// Python's `BasicInterpolation`, which also stops at 10 levels of nesting.
fn interpolate(ini: &Ini, section: &str, value: &str, depth: usize) -> Result<String, String> {
    if depth > 10 {
        return Err("interpolation nested too deep (a %(name)s loop?)".into());
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            let Some(end) = r.find(")s") else {
                return Err("bad interpolation: expected %(name)s".into());
            };
            let name = r[..end].to_lowercase();
            let found = [section, "DEFAULT"]
                .iter()
                .filter_map(|s| ini.section(s))
                .find_map(|s| s.entries.iter().find(|e| e.key == name))
                .ok_or_else(|| format!("%({name})s refers to a key that is not set"))?;
            out.push_str(&interpolate(ini, section, &found.value, depth + 1)?);
            rest = &r[end + 2..];
        } else {
            // Values are not echoed: this one may be a secret.
            return Err(
                "a '%' must be written '%%' (TwinDB's configparser treats it as interpolation)"
                    .into(),
            );
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Python's `str.strip("\"'")`, which TwinDB applied to the values of most sections.
pub fn unquote(value: &str) -> &str {
    value.trim_matches(['"', '\''])
}

/// configparser's `getboolean`.
pub fn boolean(value: &str) -> Option<bool> {
    match value.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `shlex.split` (POSIX mode, no comments), which TwinDB applied to `backup_dirs`.
pub fn shell_split(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                match chars.next() {
                    Some(n) => w.push(n),
                    None => return Err("no escaped character after the final \\".into()),
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => w.push(n),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash escapes only `"` and `\`.
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\')) => w.push(n),
                            Some(n) => {
                                w.push('\\');
                                w.push(n);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(n) => w.push(n),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowered_and_both_separators_work() {
        let ini = parse("[s3]\nAWS_Access_Key_ID = a\nbucket: b=c\n  \n").unwrap();
        let s = ini.section("s3").unwrap();
        assert_eq!(s.entries[0].key, "aws_access_key_id");
        assert_eq!(s.entries[0].value, "a");
        assert_eq!(s.entries[1].key, "bucket");
        assert_eq!(s.entries[1].value, "b=c", "the first separator splits");
        assert_eq!(s.entries[1].line, 3);
    }

    #[test]
    fn comments_continuations_and_case_sensitive_sections() {
        let text = "# head\n; semi\n[source]\nbackup_dirs = /etc\n    /home\n  # not a value\n[Source]\nx=1\n";
        let ini = parse(text).unwrap();
        assert_eq!(
            ini.section("source").unwrap().entries[0].value,
            "/etc\n/home"
        );
        assert!(
            ini.section("Source").is_some(),
            "section names keep their case"
        );
        // No inline comments in Python 3's configparser.
        let ini = parse("[a]\nk = v # c\n").unwrap();
        assert_eq!(ini.sections[0].entries[0].value, "v # c");
    }

    #[test]
    fn structural_errors_name_the_line() {
        assert_eq!(parse("k=v\n").unwrap_err().line, 1);
        assert_eq!(parse("[a]\nk=1\nK=2\n").unwrap_err().line, 3);
        assert_eq!(parse("[a]\n[a]\n").unwrap_err().line, 2);
        assert_eq!(parse("[a]\njust words\n").unwrap_err().line, 2);
        assert_eq!(parse("[a\n").unwrap_err().line, 1);
    }

    #[test]
    fn interpolation_as_configparser() {
        let ini = parse("[DEFAULT]\nroot=/srv\n[a]\nd=%(root)s/x\np=50%%\n").unwrap();
        let a = ini.section("a").unwrap();
        assert_eq!(a.entries[0].value, "/srv/x");
        assert_eq!(a.entries[1].value, "50%");
        let e = parse("[a]\np=s3cr%t\n").unwrap_err();
        assert!(!e.to_string().contains("s3cr"), "no value in errors: {e}");
        let e = parse("[a]\ns3cr3t\n").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "no line in errors: {e}");
        assert!(parse("[a]\np=%(nope)s\n").is_err());
        assert!(parse("[a]\np=%(p)s\n").is_err(), "a loop");
    }

    #[test]
    fn unquote_and_booleans() {
        assert_eq!(unquote("\"/root/.ssh/id_rsa\""), "/root/.ssh/id_rsa");
        assert_eq!(unquote("'x'"), "x");
        assert_eq!(unquote("x"), "x");
        for t in ["yes", "YES", "true", "on", "1"] {
            assert_eq!(boolean(t), Some(true), "{t}");
        }
        for f in ["no", "False", "off", "0"] {
            assert_eq!(boolean(f), Some(false), "{f}");
        }
        assert_eq!(boolean("y"), None);
    }

    #[test]
    fn shell_split_like_shlex() {
        assert_eq!(
            shell_split("/etc /root  /home").unwrap(),
            ["/etc", "/root", "/home"]
        );
        assert_eq!(
            shell_split(r#""/srv/my data" '/a b' /c\ d "x\"y" "a\b""#).unwrap(),
            ["/srv/my data", "/a b", "/c d", "x\"y", "a\\b"]
        );
        assert_eq!(shell_split("/a\n/b").unwrap(), ["/a", "/b"]);
        assert_eq!(shell_split("").unwrap(), Vec::<String>::new());
        assert!(shell_split("'/open").is_err());
        assert_eq!(shell_split("''").unwrap(), [""]);
    }
}
