//! Secrets in the config: inline, or read from a file named by a `*_file` key, never
//! printed. Also byte sizes ("16MiB") shared by the destination sections.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use super::ops::Secret;
use super::Validator;

impl Secret {
    /// The value, for the one place that hands it to a signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether others than the owner may read `path` (mode o+r or g+r).
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

impl Validator<'_> {
    /// The secret of `key`, given inline or as the content of the file named by `{key}_file`.
    pub(super) fn secret(
        &mut self,
        section: &str,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(
                    section,
                    &format!("{key}_file"),
                    format!("set {key} or {key}_file, not both"),
                );
                None
            }
            (Some(v), None) => {
                if v.is_empty() {
                    self.error(section, key, "must not be empty");
                    return None;
                }
                self.inline_secrets.push(format!("[{section}] {key}"));
                Some(Secret(v))
            }
            (None, Some(f)) => {
                let path = self.path(&f);
                let file_key = format!("{key}_file");
                match std::fs::read_to_string(&path) {
                    // A trailing newline is what `echo secret > file` leaves; it is never
                    // part of a key.
                    Ok(s) if !s.trim().is_empty() => {
                        if readable_by_others(&path) {
                            self.warnings.push(format!(
                                "{}: [{section}] {file_key}: {} holds a secret and is readable by \
                                 other users: chmod 600 it",
                                self.file.display(),
                                path.display()
                            ));
                        }
                        Some(Secret(s.trim().to_string()))
                    }
                    Ok(_) => {
                        self.error(section, &file_key, format!("{} is empty", path.display()));
                        None
                    }
                    Err(e) => {
                        self.error(section, &file_key, format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A byte size: an integer (bytes) or a string such as "16MiB", "5 MiB", "1GiB".
    pub(super) fn byte_size(
        &mut self,
        section: &str,
        key: &str,
        value: Option<toml::Value>,
    ) -> Option<u64> {
        let parsed = match value? {
            toml::Value::Integer(n) if n > 0 => Ok(n as u64),
            toml::Value::String(s) => parse_size(&s).ok_or(s),
            other => Err(other.to_string()),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(v) => {
                self.error(
                    section,
                    key,
                    format!("{v} is not a size: use bytes or a string like \"16MiB\""),
                );
                None
            }
        }
    }
}

/// "16MiB", "16 MiB", "16M", "1GiB", "5242880" -> bytes (binary units).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("5 MiB"), Some(5 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("16MB"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        assert!(!format!("{:?}", Secret("hunter2".into())).contains("hunter2"));
    }
}
