//! Configuration: parsed and validated once, at start-up, before anything runs.
//!
//! `load` reads a TOML file into [`file::ConfigFile`] (which rejects unknown keys and
//! wrong types) and `validate` turns it into [`Config`], collecting every problem so
//! that the user fixes them all in one go. Every error names the file, the line and
//! the key. Relative paths resolve against the config file's folder.

mod az;
mod binlog;
mod clone;
mod exclude;
mod file;
mod gcs;
mod gpg;
mod modifier_spec;
mod ops;
mod s3;
mod secret;
mod sections;
mod spans;
mod ssh;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use twindb_proto::RunType;

pub use self::az::{AccessTier, AzConfig, MAX_BLOCK_SIZE as AZ_MAX_BLOCK_SIZE};
pub use self::binlog::BinlogConfig;
pub use self::clone::CloneConfig;
pub use self::file::keys;
pub use self::gcs::GcsConfig;
pub use self::gpg::GpgConfig;
pub use self::modifier_spec::ModifierSpec;
pub use self::ops::{
    default_schedule, parse_duration, CronSpec, EmailConfig, ExportConfig, NotifyConfig,
    RetentionPolicy, ScheduleConfig, Secret, SmtpTls,
};
pub use self::s3::{S3Config, S3Credentials};
pub use self::ssh::SshConfig;
pub use self::verify::VerifyConfig;

pub const DEFAULT_CONFIG: &str = "/etc/twindb/twindb.toml";
pub const DEFAULT_SOCKET: &str = "/run/twindb/twindbd.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/twindb";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub daemon: DaemonConfig,
    pub source: SourceConfig,
    pub destination: DestinationConfig,
    /// `[destination] keep_local_path`: every copy is also kept in this local folder.
    pub keep_local_path: Option<PathBuf>,
    pub compression: Compression,
    /// Set when `[source] backup_mysql = true`.
    pub mysql: Option<MysqlConfig>,
    /// Run types that are enabled, most frequent first.
    pub enabled_run_types: Vec<RunType>,
    pub schedule: ScheduleConfig,
    /// Copies to keep on the destination.
    pub retention: RetentionPolicy,
    /// Copies to keep in keep_local_path.
    pub retention_local: RetentionPolicy,
    pub export: Option<ExportConfig>,
    pub notify: Option<NotifyConfig>,
    /// Problems that do not stop twindbd (a secret readable by others...), logged at start.
    pub warnings: Vec<String>,
    /// Encryption; None when there is no `[gpg]` section.
    pub gpg: Option<GpgConfig>,
    /// `twindbctl clone mysql`: `[clone]`, with defaults when the section is absent.
    pub clone: CloneConfig,
    /// `[verify]`: scheduled restore drills.
    pub verify: VerifyConfig,
    /// `[binlog]`: continuous binlog streaming; off unless enabled with backup_mysql.
    pub binlog: BinlogConfig,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    /// Group whose members may use the socket, with its gid.
    pub socket_group: Option<(String, u32)>,
    pub state_dir: PathBuf,
    pub hostname: String,
    pub log: String,
    pub run_at_start: bool,
    /// Where Prometheus scrapes `/metrics` over TCP.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Bytes per second all jobs together may send to the destination / read from
    /// their sources; None: no limit. A reload changes them under running jobs.
    pub max_upload_rate: Option<u64>,
    pub max_read_rate: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub backup_dirs: Vec<PathBuf>,
    /// What files copies leave out.
    pub excludes: crate::source::Excludes,
}

#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// Client options ([client] user, password, socket, host, port) for queries and xtrabackup.
    pub defaults_file: PathBuf,
    /// Runs of this type and longer take full copies; shorter ones take incrementals.
    pub full_backup: RunType,
    pub expire_log_days: u32,
    pub xtrabackup_binary: Option<String>,
    pub xbstream_binary: Option<String>,
    pub mysqld_binary: Option<String>,
    pub config_files: Vec<PathBuf>,
    /// `--throttle=N` for the backup tool: at most N read-write pairs of its 10 MB
    /// chunks per second (xtrabackup and mariabackup alike).
    pub backup_throttle: Option<u32>,
    /// `--use-memory` of `--prepare` on restore; None: derived from the host's memory
    /// when the restore runs ([`crate::mysql::default_prepare_memory`]).
    pub prepare_memory: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum DestinationConfig {
    Local { path: PathBuf },
    Ssh(SshConfig),
    S3(S3Config),
    Gcs(GcsConfig),
    Az(AzConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// `None` when `program = "none"`.
    pub spec: Option<ModifierSpec>,
    pub threads: u32,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// `section.key`, or the section alone.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {}", self.key, self.message)
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    // Relative paths inside resolve against the file's folder, wherever we were started.
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: "(file)".into(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates config text that came from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let spans = spans::Spans::parse(text);
    let raw: file::ConfigFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start);
        let line = at.map(|at| spans.line_of(at));
        // toml's message names the key ("unknown field `x`, expected ...") after a
        // source excerpt; keep only the message, the excerpt adds noise to logs.
        let message = e.message().trim().to_string();
        let key = at
            .and_then(|at| spans.key_at(at))
            .unwrap_or_else(|| "(syntax)".into());
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            key,
            message,
        }])
    })?;
    let mut v = Validator {
        file: path,
        spans,
        base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
        inline_secrets: Vec::new(),
    };
    let mut config = v.validate(raw);
    if !v.inline_secrets.is_empty() && secret::readable_by_others(path) {
        v.warnings.push(format!(
            "{} holds secrets ({}) and is readable by other users: chmod 600 it, or move \
             the secrets to *_file keys",
            path.display(),
            v.inline_secrets.join(", ")
        ));
    }
    config.warnings = std::mem::take(&mut v.warnings);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'a> {
    file: &'a Path,
    spans: spans::Spans,
    base: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// `[section] key` of every secret written in the file itself.
    inline_secrets: Vec<String>,
}

impl Validator<'_> {
    fn error(&mut self, section: &str, key: &str, message: impl Into<String>) {
        let line = self.spans.line(section, key);
        let key = if key.is_empty() {
            format!("[{section}]")
        } else {
            format!("[{section}] {key}")
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key,
            message: message.into(),
        });
    }

    fn path(&self, value: &str) -> PathBuf {
        normalize(&self.base.join(value))
    }

    fn validate(&mut self, raw: file::ConfigFile) -> Config {
        let schedule = self.schedule(&raw.daemon);
        let daemon = self.daemon(raw.daemon);
        let backup_mysql = raw.source.as_ref().is_some_and(|s| s.backup_mysql);
        let source = self.source(raw.source);
        let verify = self.verify(raw.verify, backup_mysql, !source.backup_dirs.is_empty());
        let mysql = backup_mysql.then(|| self.mysql(raw.mysql.unwrap_or_default()));
        let clone = self.clone_config(
            raw.clone,
            raw.ssh.as_ref(),
            mysql.as_ref().map(|m| m.defaults_file.clone()),
        );
        let (destination, keep_local_path) =
            self.destination(raw.destination, raw.local, raw.ssh, raw.s3, raw.gcs, raw.az);
        self.no_backup_of_backups(&source, &destination, keep_local_path.as_deref());
        let compression = self.compression(raw.compression.unwrap_or_default());
        let enabled_run_types = self.intervals(raw.intervals.unwrap_or_default());
        let retention = self.retention("retention", raw.retention, RetentionPolicy::REMOTE);
        let retention_local = self.retention(
            "retention_local",
            raw.retention_local,
            RetentionPolicy::LOCAL,
        );
        let export = self.export(raw.export);
        let notify = self.notify(raw.notify, &daemon.hostname);
        let gpg = raw.gpg.and_then(|g| self.gpg(g));
        let binlog = self.binlog(raw.binlog, backup_mysql);
        Config {
            file: self.file.to_path_buf(),
            daemon,
            source,
            destination,
            keep_local_path,
            compression,
            mysql,
            enabled_run_types,
            schedule,
            retention,
            retention_local,
            export,
            notify,
            warnings: Vec::new(),
            gpg,
            clone,
            verify,
            binlog,
        }
    }
}

pub fn is_valid_host(h: &str) -> bool {
    !h.is_empty()
        && h != "."
        && h != ".."
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Resolves `.` and `..` and strips trailing slashes, without touching the file
/// system (symlinks stay as the user wrote them).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
        parse(Path::new("/etc/twindb/test.toml"), text)
    }

    const GOOD: &str = r#"
[daemon]
state_dir = "state"
socket = "/tmp/x.sock"
hostname = "db1"

[source]
backup_dirs = ["/tmp"]

[destination]
backup_destination = "local"

[local]
path = "backups"

[compression]
program = "gzip"
level = 5
"#;

    #[test]
    fn bandwidth_limits_are_byte_sizes_per_second() {
        let with = |v: &str| {
            parse_str(&GOOD.replace(
                "hostname = \"db1\"\n",
                &format!("hostname = \"db1\"\nmax_upload_rate = {v}\nmax_read_rate = 1024\n"),
            ))
        };
        let c = with("\"8MiB/s\"").unwrap();
        assert_eq!(c.daemon.max_upload_rate, Some(8 << 20));
        assert_eq!(c.daemon.max_read_rate, Some(1024));
        assert_eq!(
            with("\"512K\"").unwrap().daemon.max_upload_rate,
            Some(512 << 10)
        );
        let err = with("\"fast\"").unwrap_err().to_string();
        assert!(
            err.contains("test.toml:6: [daemon] max_upload_rate: fast is not a size"),
            "{err}"
        );
        assert!(with("0").is_err());
    }

    #[test]
    fn good_config_resolves_relative_paths_against_its_folder() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.daemon.state_dir, Path::new("/etc/twindb/state"));
        let DestinationConfig::Local { path } = &c.destination else {
            panic!("a local destination")
        };
        assert_eq!(path, Path::new("/etc/twindb/backups"));
        assert_eq!(c.compression.spec, Some(ModifierSpec::Gzip { level: 5 }));
        assert_eq!(c.enabled_run_types, RunType::ALL.to_vec());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("level = 5", "level = 5\nspeed = 1");
        let err = parse_str(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("speed"), "{msg}");
        assert!(msg.contains("/etc/twindb/test.toml:19"), "{msg}");
        assert_eq!(err.0[0].key, "[compression] speed");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse_str(&format!("{GOOD}\n[cloud]\nx = 1\n")).unwrap_err();
        assert!(err.to_string().contains("cloud"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse_str(&GOOD.replace("level = 5", "level = \"high\"")).unwrap_err();
        assert_eq!(err.0[0].key, "[compression] level", "{err}");
        assert!(err.to_string().contains(":18:"), "{err}");
    }

    #[test]
    fn bad_program_and_missing_dir_are_both_reported() {
        let text = GOOD
            .replace("\"gzip\"", "\"lzma\"")
            .replace("[\"/tmp\"]", "[\"/nonexistent/twindb\"]");
        let err = parse_str(&text).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"[compression] program"), "{err}");
        assert!(keys.contains(&"[source] backup_dirs"), "{err}");
        assert!(err.to_string().contains("/nonexistent/twindb"), "{err}");
    }

    #[test]
    fn a_bad_cron_expression_names_its_key() {
        let text = GOOD.replace(
            "hostname = \"db1\"",
            "hostname = \"db1\"\nschedule_daily = \"every day\"\nschedule_hourly = \"*/3 * * * * *\"",
        );
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].key, "[daemon] schedule_daily");
        assert_eq!(err.0[0].line, Some(6));
        assert!(
            err.to_string().contains("not a valid cron expression"),
            "{err}"
        );
    }

    #[test]
    fn schedules_default_to_cron_nicknames_and_take_5_field_overrides() {
        let c = parse_str(&GOOD.replace(
            "hostname = \"db1\"",
            "hostname = \"db1\"\nschedule_daily = \"30 2 * * *\"\njitter = \"5m\"\nmetrics_listen = \"127.0.0.1:9469\"",
        ))
        .unwrap();
        assert_eq!(c.schedule.spec(RunType::Daily).expr, "0 30 2 * * *");
        assert_eq!(c.schedule.spec(RunType::Hourly).expr, "0 0 * * * *");
        assert_eq!(c.schedule.jitter, std::time::Duration::from_secs(300));
        assert!(c.schedule.binlog.is_none());
        assert_eq!(
            c.daemon.metrics_listen,
            Some("127.0.0.1:9469".parse().unwrap())
        );
    }

    #[test]
    fn retention_defaults_differ_between_remote_and_local() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.retention, RetentionPolicy::REMOTE);
        assert_eq!(c.retention_local, RetentionPolicy::LOCAL);
        let c = parse_str(&format!(
            "{GOOD}\n[retention]\ndaily_copies = 30\n[retention_local]\nhourly_copies = 3\n"
        ))
        .unwrap();
        assert_eq!(c.retention.daily, 30);
        assert_eq!(c.retention.hourly, 24);
        assert_eq!(c.retention_local.hourly, 3);
        // A missing local key is the local default, not the remote value.
        assert_eq!(c.retention_local.daily, 1);
        assert_eq!(c.retention_local.monthly, 0);
    }

    #[test]
    fn export_and_notify_are_validated() {
        let c = parse_str(&format!(
            "{GOOD}\n[export]\ntransport = \"datadog\"\napi_key = \"k\"\nendpoint = \"http://127.0.0.1:9/\"\n\n[notify]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nemail_to = [\"ops@example.com\"]\nsmtp_server = \"127.0.0.1\"\nsmtp_tls = \"none\"\n"
        ))
        .unwrap();
        match c.export.unwrap() {
            ExportConfig::Datadog {
                endpoint, api_key, ..
            } => {
                assert_eq!(endpoint, "http://127.0.0.1:9");
                assert_eq!(format!("{api_key:?}"), "<secret>");
            }
            other => panic!("{other:?}"),
        }
        let n = c.notify.unwrap();
        assert!(n.on_failure && !n.on_success);
        let email = n.email.unwrap();
        assert_eq!((email.port, email.from.as_str()), (25, "twindb@db1"));

        let err = parse_str(&format!(
            "{GOOD}\n[export]\ntransport = \"datadog\"\n\n[notify]\nwebhook_url = \"ftp://x\"\nemail_to = [\"not an address\"]\n"
        ))
        .unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "[export] api_key",
            "[notify] webhook_url",
            "[notify] email_to",
            "[notify] smtp_server",
        ] {
            assert!(keys.contains(&k), "{k} missing: {err}");
        }
        let err = parse_str(&format!("{GOOD}\n[notify]\non_success = true\n")).unwrap_err();
        assert_eq!(err.0[0].key, "[notify]", "{err}");
    }

    #[test]
    fn intervals_disable_run_types_individually() {
        let c = parse_str(&format!("{GOOD}\n[intervals]\nrun_hourly = false\n")).unwrap();
        assert_eq!(c.enabled_run_types[0], RunType::Daily);
        assert_eq!(c.enabled_run_types.len(), 4);
    }
}
