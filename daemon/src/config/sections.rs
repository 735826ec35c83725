//! Validation of the core sections: `[daemon]`, `[source]`, `[destination]` and its
//! backend's section, `[compression]`, `[mysql]` and `[intervals]`. The other sections
//! are validated in their own files.

use std::path::{Path, PathBuf};

use twindb_proto::RunType;

use super::{
    az, file, gcs, is_valid_host, s3, ssh, Compression, DaemonConfig, DestinationConfig,
    ModifierSpec, MysqlConfig, SourceConfig, Validator, DEFAULT_SOCKET, DEFAULT_STATE_DIR,
};

/// Ranges of one object read at once from an object store, by default and at most.
pub const DEFAULT_DOWNLOAD_RANGES: usize = 4;
pub const MAX_DOWNLOAD_RANGES: usize = 64;
/// The least `[mysql] prepare_memory` accepted.
const MIN_PREPARE_MEMORY: u64 = 16 << 20;

impl Validator<'_> {
    pub(super) fn daemon(&mut self, d: file::DaemonSection) -> DaemonConfig {
        let metrics_listen = self.metrics_listen(d.metrics_listen.as_deref());
        let socket = self.path(d.socket.as_deref().unwrap_or(DEFAULT_SOCKET));
        // The kernel limits a Unix socket path to 107 bytes; say so now, not at bind time.
        if socket.as_os_str().len() > 107 {
            self.error(
                "daemon",
                "socket",
                format!(
                    "{} is longer than the 107 bytes a Unix socket path may have",
                    socket.display()
                ),
            );
        }
        let socket_group =
            d.socket_group
                .and_then(|name| match nix::unistd::Group::from_name(&name) {
                    Ok(Some(g)) => Some((name, g.gid.as_raw())),
                    _ => {
                        self.error("daemon", "socket_group", format!("no such group {name:?}"));
                        None
                    }
                });
        let hostname = match d.hostname {
            Some(h) if is_valid_host(&h) => h,
            Some(h) => {
                self.error(
                    "daemon",
                    "hostname",
                    format!("{h:?} is not a usable host name (letters, digits, '.', '-', '_')"),
                );
                h
            }
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        };
        let log = d.log.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            self.error(
                "daemon",
                "log",
                format!("{log:?} is not a valid log filter (e.g. \"info\", \"twindb=debug\")"),
            );
        }
        let max_upload_rate = self.rate("max_upload_rate", d.max_upload_rate);
        let max_read_rate = self.rate("max_read_rate", d.max_read_rate);
        DaemonConfig {
            socket,
            socket_group,
            state_dir: self.path(d.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR)),
            hostname,
            log,
            run_at_start: d.run_at_start.unwrap_or(true),
            metrics_listen,
            max_upload_rate,
            max_read_rate,
        }
    }

    /// A `[daemon]` bandwidth limit: bytes per second, as a byte size with an optional
    /// `/s` ("8MiB", "8MiB/s", 8388608).
    fn rate(&mut self, key: &str, value: Option<toml::Value>) -> Option<u64> {
        let value = match value? {
            toml::Value::String(s) => {
                toml::Value::String(s.trim().trim_end_matches("/s").to_string())
            }
            other => other,
        };
        self.byte_size("daemon", key, Some(value))
    }

    pub(super) fn source(&mut self, s: Option<file::SourceSection>) -> SourceConfig {
        let Some(s) = s else {
            self.error(
                "source",
                "",
                "missing section: say what to back up with backup_dirs",
            );
            return SourceConfig {
                backup_dirs: vec![],
                excludes: Default::default(),
            };
        };
        if s.backup_dirs.is_empty() && !s.backup_mysql {
            self.error(
                "source",
                "backup_dirs",
                "nothing to back up: list at least one directory",
            );
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in &s.backup_dirs {
            let p = self.path(d);
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => self.error(
                    "source",
                    "backup_dirs",
                    format!("{} is not a directory", p.display()),
                ),
                Err(e) => self.error("source", "backup_dirs", format!("{}: {e}", p.display())),
            }
            if dirs.contains(&p) {
                self.error(
                    "source",
                    "backup_dirs",
                    format!("{} is listed twice", p.display()),
                );
            }
            dirs.push(p);
        }
        let excludes = self.excludes(&s, &dirs);
        SourceConfig {
            backup_dirs: dirs,
            excludes,
        }
    }

    pub(super) fn destination(
        &mut self,
        d: Option<file::DestinationSection>,
        local: Option<file::LocalSection>,
        ssh: Option<ssh::SshSection>,
        s3: Option<s3::S3Section>,
        gcs: Option<gcs::GcsSection>,
        az: Option<az::AzSection>,
    ) -> (DestinationConfig, Option<PathBuf>) {
        let Some(d) = d else {
            self.error("destination", "", "missing section: set backup_destination");
            return (
                DestinationConfig::Local {
                    path: PathBuf::new(),
                },
                None,
            );
        };
        let keep_local_path = match d.keep_local_path.as_deref() {
            None => None,
            Some("") => {
                self.error(
                    "destination",
                    "keep_local_path",
                    "must not be empty (remove the key to keep no local copy)",
                );
                None
            }
            Some(p) => Some(self.path(p)),
        };
        let mut destination = self.remote_destination(&d, local, ssh, s3, gcs, az);
        let ranges = self.download_ranges(d.download_ranges);
        match &mut destination {
            DestinationConfig::S3(c) => c.download_ranges = ranges,
            DestinationConfig::Gcs(c) => c.download_ranges = ranges,
            DestinationConfig::Az(c) => c.download_ranges = ranges,
            DestinationConfig::Local { .. } | DestinationConfig::Ssh(_) => {}
        }
        if let (DestinationConfig::Local { path }, Some(keep)) = (&destination, &keep_local_path) {
            if !path.as_os_str().is_empty() && (keep.starts_with(path) || path.starts_with(keep)) {
                self.error(
                    "destination",
                    "keep_local_path",
                    format!(
                        "{} overlaps the local destination {}: a local copy must live apart from the copies it doubles",
                        keep.display(),
                        path.display()
                    ),
                );
            }
        }
        (destination, keep_local_path)
    }

    /// `[destination] download_ranges`, 1..=64.
    fn download_ranges(&mut self, value: Option<u32>) -> usize {
        let n = value.map_or(DEFAULT_DOWNLOAD_RANGES, |n| n as usize);
        if !(1..=MAX_DOWNLOAD_RANGES).contains(&n) {
            self.error(
                "destination",
                "download_ranges",
                format!("{n} is out of range 1..={MAX_DOWNLOAD_RANGES}"),
            );
        }
        n.clamp(1, MAX_DOWNLOAD_RANGES)
    }

    pub(super) fn remote_destination(
        &mut self,
        d: &file::DestinationSection,
        local: Option<file::LocalSection>,
        ssh: Option<ssh::SshSection>,
        s3: Option<s3::S3Section>,
        gcs: Option<gcs::GcsSection>,
        az: Option<az::AzSection>,
    ) -> DestinationConfig {
        match d.backup_destination.as_str() {
            "local" => {
                let Some(local) = local else {
                    self.error(
                        "local",
                        "",
                        "backup_destination = \"local\" needs a [local] section with path",
                    );
                    return DestinationConfig::Local {
                        path: PathBuf::new(),
                    };
                };
                if local.path.is_empty() {
                    self.error("local", "path", "must not be empty");
                }
                DestinationConfig::Local {
                    path: self.path(&local.path),
                }
            }
            "ssh" => DestinationConfig::Ssh(self.ssh(ssh)),
            "s3" => DestinationConfig::S3(self.s3(s3)),
            "gcs" => DestinationConfig::Gcs(self.gcs(gcs)),
            "az" => DestinationConfig::Az(self.az(az)),
            other => {
                self.error(
                    "destination",
                    "backup_destination",
                    format!("unknown destination {other:?}: expected local, ssh, s3, gcs or az"),
                );
                DestinationConfig::Local {
                    path: PathBuf::new(),
                }
            }
        }
    }

    /// A folder that contains the destination would copy every copy again, forever.
    pub(super) fn no_backup_of_backups(
        &mut self,
        source: &SourceConfig,
        destination: &DestinationConfig,
        keep_local_path: Option<&Path>,
    ) {
        let local_dest = match destination {
            DestinationConfig::Local { path } => Some(path.as_path()),
            _ => None,
        };
        for path in local_dest.into_iter().chain(keep_local_path) {
            for dir in &source.backup_dirs {
                // Left out by an exclude pattern (as TwinDB users did with tar's
                // --exclude): the copies are not copied again.
                let excluded = path
                    .ancestors()
                    .take_while(|a| a.starts_with(dir) && *a != dir.as_path())
                    .any(|a| source.excludes.matches(dir, a, true));
                if !path.as_os_str().is_empty() && path.starts_with(dir) && !excluded {
                    self.error(
                        "source",
                        "backup_dirs",
                        format!(
                            "{} contains {}, where copies are stored; back up a folder beside it",
                            dir.display(),
                            path.display()
                        ),
                    );
                }
            }
        }
    }

    pub(super) fn compression(&mut self, c: file::CompressionSection) -> Compression {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let threads = c.threads.unwrap_or(cpus);
        if threads == 0 || threads > 256 {
            self.error(
                "compression",
                "threads",
                format!("{threads} is out of range 1..=256"),
            );
        }
        let program = c.program.as_deref().unwrap_or("zstd");
        let spec = match program {
            "zstd" => {
                let level = c.level.unwrap_or(3);
                if !(1..=19).contains(&level) {
                    self.error(
                        "compression",
                        "level",
                        format!("{level} is out of range 1..=19 for zstd"),
                    );
                }
                Some(ModifierSpec::Zstd { level })
            }
            "gzip" => {
                let level = c.level.unwrap_or(6);
                if !(1..=9).contains(&level) {
                    self.error(
                        "compression",
                        "level",
                        format!("{level} is out of range 1..=9 for gzip"),
                    );
                }
                Some(ModifierSpec::Gzip {
                    level: level as u32,
                })
            }
            "none" => None,
            "pigz" | "bzip2" | "lbzip2" => {
                let level = c.level.unwrap_or(if program == "pigz" { 6 } else { 9 });
                if !(1..=9).contains(&level) {
                    self.error(
                        "compression",
                        "level",
                        format!("{level} is out of range 1..=9 for {program}"),
                    );
                }
                self.program_installed("compression", "program", program);
                let level = level.clamp(1, 9) as u32;
                Some(match program {
                    "pigz" => ModifierSpec::Pigz { level },
                    "bzip2" => ModifierSpec::Bzip2 { level },
                    _ => ModifierSpec::Lbzip2 { level },
                })
            }
            other => {
                self.error(
                    "compression",
                    "program",
                    format!("unknown program {other:?}: expected zstd, gzip, pigz, bzip2, lbzip2 or none"),
                );
                None
            }
        };
        Compression {
            spec,
            threads: threads.clamp(1, 256),
        }
    }

    pub(super) fn mysql(&mut self, m: file::MysqlSection) -> MysqlConfig {
        let defaults_file = self.path(m.mysql_defaults_file.as_deref().unwrap_or("/root/.my.cnf"));
        if let Err(e) = std::fs::metadata(&defaults_file) {
            self.error(
                "mysql",
                "mysql_defaults_file",
                format!(
                    "{}: {e} (it holds the [client] user and password twindb connects with)",
                    defaults_file.display()
                ),
            );
        }
        let full_backup = match m
            .full_backup
            .as_deref()
            .unwrap_or("daily")
            .parse::<RunType>()
        {
            Ok(r) => r,
            Err(e) => {
                self.error("mysql", "full_backup", e);
                RunType::Daily
            }
        };
        for (key, program) in [
            ("xtrabackup_binary", &m.xtrabackup_binary),
            ("xbstream_binary", &m.xbstream_binary),
            ("mysqld_binary", &m.mysqld_binary),
        ] {
            if let Some(p) = program {
                if crate::mysql::find_program(p).is_none() {
                    self.error("mysql", key, format!("program {p:?} not found in PATH"));
                }
            }
        }
        let config_files = match m.config_files {
            Some(files) => files.iter().map(|f| self.path(f)).collect(),
            None => vec![
                PathBuf::from("/etc/my.cnf"),
                PathBuf::from("/etc/mysql/my.cnf"),
            ],
        };
        let prepare_memory = self.byte_size("mysql", "prepare_memory", m.prepare_memory);
        if let Some(n) = prepare_memory.filter(|&n| n < MIN_PREPARE_MEMORY) {
            self.error(
                "mysql",
                "prepare_memory",
                format!("{n} bytes is less than the 16MiB mariabackup and xtrabackup need"),
            );
        }
        MysqlConfig {
            defaults_file,
            prepare_memory,
            full_backup,
            expire_log_days: m.expire_log_days.unwrap_or(7),
            xtrabackup_binary: m.xtrabackup_binary,
            xbstream_binary: m.xbstream_binary,
            mysqld_binary: m.mysqld_binary,
            config_files,
            backup_throttle: match m.backup_throttle {
                Some(0) => {
                    self.error(
                        "mysql",
                        "backup_throttle",
                        "0 would stop the backup tool: leave the key out for no limit",
                    );
                    None
                }
                n => n,
            },
        }
    }

    pub(super) fn intervals(&mut self, i: file::IntervalsSection) -> Vec<RunType> {
        // Unlike TwinDB, a missing key means "enabled", whatever the other keys say.
        let flags = [
            (RunType::Hourly, i.run_hourly),
            (RunType::Daily, i.run_daily),
            (RunType::Weekly, i.run_weekly),
            (RunType::Monthly, i.run_monthly),
            (RunType::Yearly, i.run_yearly),
        ];
        flags
            .into_iter()
            .filter(|(_, on)| on.unwrap_or(true))
            .map(|(r, _)| r)
            .collect()
    }
}
