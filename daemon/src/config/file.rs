//! The config file as written by the user: serde structs that reject unknown keys.
//!
//! Nothing here touches the file system; `super::validate` turns these into typed values.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub daemon: DaemonSection,
    pub source: Option<SourceSection>,
    pub destination: Option<DestinationSection>,
    pub local: Option<LocalSection>,
    pub compression: Option<CompressionSection>,
    pub intervals: Option<IntervalsSection>,
    pub gpg: Option<GpgSection>,
    // Sections of features that later issues build. They are recognised so that a
    // TwinDB user gets "not supported yet" rather than "unknown section".
    pub ssh: Option<toml::Table>,
    pub s3: Option<toml::Table>,
    pub gcs: Option<toml::Table>,
    pub mysql: Option<toml::Table>,
    pub retention: Option<toml::Table>,
    pub retention_local: Option<toml::Table>,
    pub export: Option<toml::Table>,
    pub notify: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    pub socket: Option<String>,
    pub socket_group: Option<String>,
    pub state_dir: Option<String>,
    pub hostname: Option<String>,
    /// A `RUST_LOG`-style filter, e.g. "info" or "twindb=debug".
    pub log: Option<String>,
    /// Enqueue the most frequent run type at start when it is due.
    pub run_at_start: Option<bool>,
    pub metrics_listen: Option<String>,
    pub schedule_hourly: Option<String>,
    pub schedule_daily: Option<String>,
    pub schedule_weekly: Option<String>,
    pub schedule_monthly: Option<String>,
    pub schedule_yearly: Option<String>,
    pub schedule_binlog: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    #[serde(default)]
    pub backup_dirs: Vec<String>,
    #[serde(default)]
    pub backup_mysql: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    pub backup_destination: String,
    pub keep_local_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub program: Option<String>,
    pub threads: Option<u32>,
    pub level: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalsSection {
    pub run_hourly: Option<bool>,
    pub run_daily: Option<bool>,
    pub run_weekly: Option<bool>,
    pub run_monthly: Option<bool>,
    pub run_yearly: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpgSection {
    pub recipient: Option<String>,
    pub keyring: Option<String>,
    pub secret_keyring: Option<String>,
    pub homedir: Option<String>,
}
