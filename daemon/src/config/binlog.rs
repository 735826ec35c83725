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

    fn parse(extra: &str) -> Result<super::super::Config, super::super::ConfigErrors> {
        super::super::parse(Path::new("/etc/twindb/t.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn defaults_and_units() {
        let c = parse("").unwrap();
        assert!(!c.binlog.enabled);
        assert_eq!(c.binlog.max_lag.as_secs(), 10);
        assert_eq!(c.binlog.segment_size, 16 << 20);
        let c =
            parse("[binlog]\nenabled = true\nmax_lag = \"2s\"\nsegment_size = \"1MiB\"\n").unwrap();
        assert!(c.binlog.enabled);
        assert_eq!(c.binlog.max_lag.as_secs(), 2);
        assert_eq!(c.binlog.segment_size, 1 << 20);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = parse("[binlog]\nmax_lag = \"0s\"\nsegment_size = \"1k\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml:17: [binlog] max_lag"), "{err}");
        assert!(err.contains("t.toml:18: [binlog] segment_size"), "{err}");
        let err = parse("[binlog]\nlag = \"1s\"\n").unwrap_err().to_string();
        assert!(
            err.contains("[binlog] lag") && err.contains("unknown field"),
            "{err}"
        );
    }
}
