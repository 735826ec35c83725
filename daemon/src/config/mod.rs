//! Configuration: parsed and validated once, at start-up, before anything runs.
//!
//! `load` reads a TOML file into [`file::ConfigFile`] (which rejects unknown keys and
//! wrong types) and `validate` turns it into [`Config`], collecting every problem so
//! that the user fixes them all in one go. Every error names the file, the line and
//! the key. Relative paths resolve against the config file's folder.

mod file;
mod gpg;

use std::fmt;
use std::path::{Path, PathBuf};

use twindb_proto::RunType;

use crate::modifier::{GpgConfig, ModifierSpec};

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
    pub compression: Compression,
    /// Run types that are enabled, most frequent first.
    pub enabled_run_types: Vec<RunType>,
    /// Encryption; None when there is no `[gpg]` section.
    pub gpg: Option<GpgConfig>,
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
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub backup_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum DestinationConfig {
    Local { path: PathBuf },
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
    let raw: file::ConfigFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        // toml's message names the key ("unknown field `x`, expected ...") after a
        // source excerpt; keep only the message, the excerpt adds noise to logs.
        let message = e.message().trim().to_string();
        let key = key_at(text, e.span().map(|s| s.start)).unwrap_or_else(|| "(syntax)".into());
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            key,
            message,
        }])
    })?;
    let mut v = Validator {
        file: path,
        text,
        base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        errors: Vec::new(),
    };
    let config = v.validate(raw);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
    base: PathBuf,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, section: &str, key: &str, message: impl Into<String>) {
        let line = find_key_line(self.text, section, key);
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
        let not_yet = [
            ("ssh", raw.ssh.is_some(), "the ssh destination"),
            ("s3", raw.s3.is_some(), "the s3 destination"),
            ("gcs", raw.gcs.is_some(), "the gcs destination"),
            ("mysql", raw.mysql.is_some(), "MySQL backups"),
            ("retention", raw.retention.is_some(), "retention"),
            (
                "retention_local",
                raw.retention_local.is_some(),
                "local retention",
            ),
            ("export", raw.export.is_some(), "metric exporters"),
            ("notify", raw.notify.is_some(), "notifications"),
        ];
        for (section, present, what) in not_yet {
            if present {
                self.error(
                    section,
                    "",
                    format!(
                        "{what} is not supported yet by this version of twindb; remove the section"
                    ),
                );
            }
        }

        let daemon = self.daemon(raw.daemon);
        let source = self.source(raw.source);
        let destination = self.destination(raw.destination, raw.local);
        let compression = self.compression(raw.compression.unwrap_or_default());
        let enabled_run_types = self.intervals(raw.intervals.unwrap_or_default());
        let gpg = raw.gpg.and_then(|g| self.gpg(g));
        Config {
            file: self.file.to_path_buf(),
            daemon,
            source,
            destination,
            compression,
            enabled_run_types,
            gpg,
        }
    }

    fn daemon(&mut self, d: file::DaemonSection) -> DaemonConfig {
        for (key, present) in [
            ("metrics_listen", d.metrics_listen.is_some()),
            ("schedule_hourly", d.schedule_hourly.is_some()),
            ("schedule_daily", d.schedule_daily.is_some()),
            ("schedule_weekly", d.schedule_weekly.is_some()),
            ("schedule_monthly", d.schedule_monthly.is_some()),
            ("schedule_yearly", d.schedule_yearly.is_some()),
            ("schedule_binlog", d.schedule_binlog.is_some()),
        ] {
            if present {
                self.error(
                    "daemon",
                    key,
                    "not supported yet by this version of twindb; remove the key",
                );
            }
        }
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
        DaemonConfig {
            socket,
            socket_group,
            state_dir: self.path(d.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR)),
            hostname,
            log,
            run_at_start: d.run_at_start.unwrap_or(true),
        }
    }

    fn source(&mut self, s: Option<file::SourceSection>) -> SourceConfig {
        let Some(s) = s else {
            self.error(
                "source",
                "",
                "missing section: say what to back up with backup_dirs",
            );
            return SourceConfig {
                backup_dirs: vec![],
            };
        };
        if s.backup_mysql {
            self.error(
                "source",
                "backup_mysql",
                "MySQL backups are not supported yet by this version of twindb",
            );
        }
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
        SourceConfig { backup_dirs: dirs }
    }

    fn destination(
        &mut self,
        d: Option<file::DestinationSection>,
        local: Option<file::LocalSection>,
    ) -> DestinationConfig {
        let Some(d) = d else {
            self.error("destination", "", "missing section: set backup_destination");
            return DestinationConfig::Local {
                path: PathBuf::new(),
            };
        };
        if d.keep_local_path.is_some() {
            self.error(
                "destination",
                "keep_local_path",
                "local copies are not supported yet by this version of twindb",
            );
        }
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
            "ssh" | "s3" | "gcs" => {
                self.error(
                    "destination",
                    "backup_destination",
                    format!(
                        "{:?} is not supported yet by this version of twindb",
                        d.backup_destination
                    ),
                );
                DestinationConfig::Local {
                    path: PathBuf::new(),
                }
            }
            other => {
                self.error(
                    "destination",
                    "backup_destination",
                    format!("unknown destination {other:?}: expected local, ssh, s3 or gcs"),
                );
                DestinationConfig::Local {
                    path: PathBuf::new(),
                }
            }
        }
    }

    fn compression(&mut self, c: file::CompressionSection) -> Compression {
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

    fn intervals(&mut self, i: file::IntervalsSection) -> Vec<RunType> {
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

fn is_valid_host(h: &str) -> bool {
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

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The key written at the start of the line holding byte `at`, for parse errors.
fn key_at(text: &str, at: Option<usize>) -> Option<String> {
    let at = at?.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim();
    let section = text[..start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.split(']').next()))
        .map(str::trim);
    let key = line.split('=').next()?.trim();
    if line.starts_with('[') {
        return Some(line.to_string());
    }
    match section {
        Some(s) => Some(format!("[{s}] {key}")),
        None => Some(key.to_string()),
    }
}

/// Line of `key` inside `[section]` (or of the section header when `key` is empty).
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.split(']').next()) {
            in_section = name.trim() == section;
            if in_section && header_line.is_none() {
                header_line = Some(i + 1);
            }
            continue;
        }
        if in_section && !key.is_empty() {
            let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if k == key {
                return Some(i + 1);
            }
        }
    }
    header_line
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
    fn good_config_resolves_relative_paths_against_its_folder() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.daemon.state_dir, Path::new("/etc/twindb/state"));
        let DestinationConfig::Local { path } = &c.destination;
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
    fn unbuilt_sections_say_not_supported_yet() {
        let err = parse_str(&format!("{GOOD}\n[s3]\nbucket = \"b\"\n")).unwrap_err();
        assert!(err.to_string().contains("not supported yet"), "{err}");
        assert_eq!(err.0[0].key, "[s3]");
        assert_eq!(err.0[0].line, Some(20));
    }

    #[test]
    fn intervals_disable_run_types_individually() {
        let c = parse_str(&format!("{GOOD}\n[intervals]\nrun_hourly = false\n")).unwrap();
        assert_eq!(c.enabled_run_types[0], RunType::Daily);
        assert_eq!(c.enabled_run_types.len(), 4);
    }
}
