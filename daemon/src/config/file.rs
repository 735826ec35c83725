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
    pub mysql: Option<MysqlSection>,
    pub intervals: Option<IntervalsSection>,
    pub ssh: Option<super::ssh::SshSection>,
    pub clone: Option<super::clone::CloneSection>,
    // Sections of features that later issues build. They are recognised so that a
    // TwinDB user gets "not supported yet" rather than "unknown section".
    pub s3: Option<super::s3::S3Section>,
    pub gcs: Option<super::gcs::GcsSection>,
    pub gpg: Option<GpgSection>,
    pub retention: Option<RetentionSection>,
    pub retention_local: Option<RetentionSection>,
    pub export: Option<ExportSection>,
    pub notify: Option<NotifySection>,
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
    /// Random delay added to each scheduled run, e.g. "5m".
    pub jitter: Option<String>,
    /// Timeout of every backup job, e.g. "2h"; default half the run type's period.
    pub backup_timeout: Option<String>,
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
pub struct MysqlSection {
    pub mysql_defaults_file: Option<String>,
    pub full_backup: Option<String>,
    pub expire_log_days: Option<u32>,
    pub xtrabackup_binary: Option<String>,
    pub xbstream_binary: Option<String>,
    /// The server binary used by `verify` (default: mariadbd for MariaDB, mysqld otherwise).
    pub mysqld_binary: Option<String>,
    /// my.cnf files recorded with each copy (default: /etc/my.cnf, /etc/mysql/my.cnf).
    pub config_files: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub hourly_copies: Option<u32>,
    pub daily_copies: Option<u32>,
    pub weekly_copies: Option<u32>,
    pub monthly_copies: Option<u32>,
    pub yearly_copies: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// "datadog" or "statsd".
    pub transport: String,
    pub api_key: Option<String>,
    pub app_key: Option<String>,
    /// DataDog API base URL.
    pub endpoint: Option<String>,
    pub statsd_host: Option<String>,
    pub statsd_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub on_failure: Option<bool>,
    pub on_success: Option<bool>,
    #[serde(default)]
    pub email_to: Vec<String>,
    pub email_from: Option<String>,
    pub smtp_server: Option<String>,
    pub smtp_port: Option<u16>,
    /// "starttls", "tls" or "none".
    pub smtp_tls: Option<String>,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    pub webhook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpgSection {
    pub recipient: Option<String>,
    pub keyring: Option<String>,
    pub secret_keyring: Option<String>,
    pub homedir: Option<String>,
}
