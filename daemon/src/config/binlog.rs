//! The `[binlog]` section: continuous binlog streaming (daemon/src/binlog/). Off unless
//! `enabled = true`, and only with `[source] backup_mysql = true`.

use std::time::Duration;

use serde::Deserialize;

use super::Validator;

/// `[binlog]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinlogSection {
    pub enabled: Option<bool>,
    /// "10s", "1m": how long an event may wait before the segment holding it is stored.
    pub max_lag: Option<String>,
    /// "16MiB": a segment is stored once it is this large, whatever its age.
    pub segment_size: Option<toml::Value>,
}

/// The validated `[binlog]` section (defaults when the section is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogConfig {
    pub enabled: bool,
    pub max_lag: Duration,
    pub segment_size: u64,
}

pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(10);
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

impl Default for BinlogConfig {
    fn default() -> Self {
        BinlogConfig {
            enabled: false,
            max_lag: DEFAULT_MAX_LAG,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

impl Validator<'_> {
    pub(super) fn binlog(&mut self, b: Option<BinlogSection>, backup_mysql: bool) -> BinlogConfig {
        let b = b.unwrap_or_default();
        let enabled = b.enabled.unwrap_or(false);
        if enabled && !backup_mysql {
            self.error(
                "binlog",
                "enabled",
                "binlog streaming needs MySQL backups: set [source] backup_mysql = true",
            );
        }
        let max_lag = match b.max_lag.as_deref() {
            None => DEFAULT_MAX_LAG,
            Some(s) => match super::parse_duration(s) {
                Some(d) if d >= Duration::from_secs(1) => d,
                _ => {
                    self.error(
                        "binlog",
                        "max_lag",
                        format!("{s:?} is not a duration of at least 1s (e.g. \"10s\", \"1m\")"),
                    );
                    DEFAULT_MAX_LAG
                }
            },
        };
        let segment_size = match self.byte_size("binlog", "segment_size", b.segment_size) {
            // A segment must hold at least the magic and a format description.
            Some(n) if n < 4096 => {
                self.error("binlog", "segment_size", "must be at least 4KiB");
                DEFAULT_SEGMENT_SIZE
            }
            Some(n) => n,
            None => DEFAULT_SEGMENT_SIZE,
        };
        BinlogConfig {
            enabled: enabled && backup_mysql,
            max_lag,
            segment_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{parse, Config, ConfigErrors};

    const BASE: &str = r#"
[daemon]
state_dir = "state"
socket = "/tmp/x.sock"
hostname = "db1"

[source]
backup_mysql = true

[destination]
backup_destination = "local"

[local]
path = "/backups"
"#;

    /// BASE, a `[mysql]` section with a defaults file that exists, then `extra`.
    fn config(extra: &str) -> (String, Result<Config, ConfigErrors>) {
        let dir = tempfile::tempdir().unwrap();
        let cnf = dir.path().join("my.cnf");
        std::fs::write(&cnf, "[client]\nuser=root\n").unwrap();
        let text = format!(
            "{BASE}\n[mysql]\nmysql_defaults_file = \"{}\"\n{extra}",
            cnf.display()
        );
        let parsed = parse(Path::new("/etc/twindb/t.toml"), &text);
        (text, parsed)
    }

    fn line_of(text: &str, what: &str) -> usize {
        text.lines().position(|l| l.starts_with(what)).unwrap() + 1
    }

    #[test]
    fn defaults_and_units() {
        let c = config("").1.unwrap();
        assert!(!c.binlog.enabled);
        assert_eq!(c.binlog.max_lag.as_secs(), 10);
        assert_eq!(c.binlog.segment_size, 16 << 20);
        let c = config("[binlog]\nenabled = true\nmax_lag = \"2s\"\nsegment_size = \"1MiB\"\n")
            .1
            .unwrap();
        assert!(c.binlog.enabled);
        assert_eq!(c.binlog.max_lag.as_secs(), 2);
        assert_eq!(c.binlog.segment_size, 1 << 20);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let (text, parsed) = config("[binlog]\nmax_lag = \"0s\"\nsegment_size = \"1k\"\n");
        let err = parsed.unwrap_err().to_string();
        let at = |key: &str| format!("t.toml:{}: [binlog] {key}", line_of(&text, key));
        assert!(err.contains(&at("max_lag")), "{err}");
        assert!(err.contains(&at("segment_size")), "{err}");
        let err = config("[binlog]\nlag = \"1s\"\n")
            .1
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[binlog] lag") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn streaming_needs_mysql_backups() {
        let text = BASE.replace("backup_mysql = true", "backup_dirs = [\"/etc\"]");
        let err = parse(
            Path::new("/etc/twindb/t.toml"),
            &format!("{text}[binlog]\nenabled = true\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[binlog] enabled") && err.contains("backup_mysql"),
            "{err}"
        );
    }
}
