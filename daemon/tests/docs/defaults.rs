//! The defaults in docs/config.md are the code's: for each key of the "Sections and
//! keys" tables, a config without the key is parsed with `twindb::config::parse` and
//! the value it gets is compared with the documented default.
//!
//! A default written as a value (`"info"`, `24`, `["/etc/my.cnf", ...]`) is compared
//! as text with the parsed value. A default written in words ("the system host name",
//! "`[ssh] ssh_user`, else `"root"`") is checked by the case for its key, which first
//! asserts that the docs still say those words. Keys that are required have no
//! default; the few defaults the parsed config cannot show are listed in
//! [`NOT_IN_THE_CONFIG`] with the reason, and their wording is checked too.

use std::path::{Path, PathBuf};
use std::process::Command;

use twindb::config::{Config, DestinationConfig, ExportConfig, S3Credentials, SmtpTls};
use twindb::modifier::ModifierSpec;
use twindb_proto::RunType;

use super::{code_spans, key_rows};

/// Defaults that live outside the parsed config: (section, key, documented default,
/// why it cannot be compared).
const NOT_IN_THE_CONFIG: &[(&str, &str, &str, &str)] = &[
    (
        "gcs",
        "endpoint",
        "`https://storage.googleapis.com`",
        "the config holds None; the GCS destination (destination/gcs.rs) uses its own constant",
    ),
    (
        "daemon",
        "backup_timeout",
        "half the run type's period; 30 min for binlog copies",
        "the config holds None; the queue computes the timeout when a job starts",
    ),
    (
        "mysql",
        "xtrabackup_binary",
        "by server vendor",
        "the config holds None; the tool is chosen from the server's vendor at backup time",
    ),
    (
        "mysql",
        "xbstream_binary",
        "by server vendor",
        "the config holds None; the tool is chosen from the copy's vendor at restore time",
    ),
    (
        "mysql",
        "mysqld_binary",
        "by server vendor",
        "the config holds None; the server is chosen from the copy's vendor by verify",
    ),
];

/// (section, key, default cell) of every row of the key tables that has a default.
fn documented_defaults() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for row in key_rows().0.iter().filter(|r| !r.required) {
        for key in &row.keys {
            for (i, section) in row.sections.iter().enumerate() {
                out.push((section.clone(), key.clone(), row.default_of(i).to_string()));
            }
        }
    }
    out
}

/// The value a documented default names: its first code span without quotes, or the
/// cell's words.
fn documented_value(cell: &str) -> String {
    match code_spans(cell).first() {
        Some(span) => span.trim_matches('"').to_string(),
        None => cell.to_string(),
    }
}

/// A scratch folder with what the configs below name.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        for d in ["data", "backup"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("my.cnf"), "[client]\nuser = root\n").unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        std::fs::write(dir.path().join("pubring.gpg"), "a keyring").unwrap();
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("id"))
            .status()
            .expect("ssh-keygen (openssh-client)")
            .success();
        assert!(ok);
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A local-destination config plus `extra` (`%DIR%` stands for the scratch folder),
    /// parsed and validated as twindbd does.
    fn parse(&self, destination: &str, extra: &str) -> Result<Config, String> {
        let text = format!(
            "[source]\nbackup_dirs = [\"%DIR%/data\"]\n\n[destination]\nbackup_destination = \"{destination}\"\n\n{}{extra}",
            if destination == "local" {
                "[local]\npath = \"%DIR%/backup\"\n\n"
            } else {
                ""
            }
        )
        .replace("%DIR%", &self.path().display().to_string());
        let file: PathBuf = self.path().join("twindb.toml");
        twindb::config::parse(&file, &text).map_err(|e| e.to_string())
    }

    fn ok(&self, destination: &str, extra: &str) -> Config {
        self.parse(destination, extra)
            .unwrap_or_else(|e| panic!("{extra}\n{e}"))
    }

    /// The ssh destination's section, with its required keys and `extra`.
    fn ssh(&self, extra: &str) -> Result<Config, String> {
        self.parse(
            "ssh",
            &format!("[ssh]\nbackup_host = \"backup1\"\nbackup_dir = \"/backup\"\n{extra}"),
        )
    }
}

/// The value a path default gets: from the config when the file exists on this host,
/// else from the error that names it (`/root/.ssh/id_rsa: No such file...`).
fn path_default(parsed: Result<Config, String>, get: impl Fn(&Config) -> PathBuf) -> String {
    match parsed {
        Ok(c) => get(&c).display().to_string(),
        Err(e) => e
            .lines()
            .filter_map(|l| l.split(": ").nth(2))
            .map(|m| m.split([':', ' ']).next().unwrap().to_string())
            .find(|p| p.starts_with('/'))
            .unwrap_or(e),
    }
}

fn some_or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

/// Strings as the docs write an array: `["a", "b"]`.
fn array(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", items.join(", "))
}

fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes >> 20)
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// What the parsed config says for `[section] key` when the key is left out, as the
/// docs write it; or, for a default in words, whether the code does what they say.
fn code_default(s: &Scratch, section: &str, key: &str, cell: &str) -> Result<String, String> {
    let base = || s.ok("local", "");
    let words = |said: &str| -> Result<(), String> {
        if cell == said {
            Ok(())
        } else {
            Err(format!(
                "the docs now say {cell:?}, the test checks {said:?}: update the test"
            ))
        }
    };
    let retention = |c: &Config, local: bool| {
        let r = if local {
            &c.retention_local
        } else {
            &c.retention
        };
        match key {
            "hourly_copies" => r.hourly,
            "daily_copies" => r.daily,
            "weekly_copies" => r.weekly,
            "monthly_copies" => r.monthly,
            "yearly_copies" => r.yearly,
            _ => unreachable!("{key}"),
        }
        .to_string()
    };
    let with_mysql = |extra: &str| {
        // `Scratch::parse` writes a `[source]` without backup_mysql.
        let text = format!(
            "[source]\nbackup_dirs = [\"%DIR%/data\"]\nbackup_mysql = true\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = \"%DIR%/backup\"\n\n{extra}"
        )
        .replace("%DIR%", &s.path().display().to_string());
        twindb::config::parse(&s.path().join("twindb.toml"), &text).map_err(|e| e.to_string())
    };
    let value = match (section, key) {
        ("daemon", "socket") => base().daemon.socket.display().to_string(),
        ("daemon", "socket_group") => some_or_none(base().daemon.socket_group.map(|g| g.0)),
        ("daemon", "state_dir") => base().daemon.state_dir.display().to_string(),
        ("daemon", "hostname") => {
            words("the system host name")?;
            let got = base().daemon.hostname;
            if got != system_hostname() {
                return Err(format!("{got} is not the system host name"));
            }
            return Ok(String::new());
        }
        ("daemon", "log") => base().daemon.log,
        ("daemon", "run_at_start") => base().daemon.run_at_start.to_string(),
        ("daemon", k) if k.starts_with("schedule_") && k != "schedule_binlog" => {
            let rt: RunType = k["schedule_".len()..].parse().unwrap();
            let c = base();
            let spec = &c
                .schedule
                .run_types
                .iter()
                .find(|(r, _)| *r == rt)
                .unwrap()
                .1;
            spec.written.clone()
        }
        ("daemon", "schedule_binlog") => {
            words("none (off)")?;
            return match base().schedule.binlog {
                None => Ok(String::new()),
                Some(s) => Err(format!("{s:?}")),
            };
        }
        ("daemon", "jitter") => base().schedule.jitter.as_secs().to_string(),
        ("daemon", "metrics_listen") => some_or_none(base().daemon.metrics_listen),
        ("daemon", "max_upload_rate") => some_or_none(base().daemon.max_upload_rate),
        ("daemon", "max_read_rate") => some_or_none(base().daemon.max_read_rate),
        ("source", "backup_dirs") => {
            // Left out, the list is empty; that is valid only with backup_mysql.
            let text = format!(
                "[source]\nbackup_mysql = true\n[destination]\nbackup_destination = \"local\"\n[local]\npath = \"{0}/backup\"\n[mysql]\nmysql_defaults_file = \"{0}/my.cnf\"\n",
                s.path().display()
            );
            let c = twindb::config::parse(&s.path().join("twindb.toml"), &text)
                .map_err(|e| e.to_string())?;
            array(c.source.backup_dirs.iter().map(|p| p.display().to_string()))
        }
        ("source", "backup_mysql") => base().mysql.is_some().to_string(),
        ("source", "exclude") => array(
            base()
                .source
                .excludes
                .patterns
                .iter()
                .map(|p| p.as_str().to_string()),
        ),
        ("source", "exclude_caches") => base().source.excludes.caches.to_string(),
        ("source", "one_file_system") => base().source.excludes.one_file_system.to_string(),
        ("mysql", "mysql_defaults_file") => path_default(with_mysql(""), |c| {
            c.mysql.as_ref().unwrap().defaults_file.clone()
        }),
        ("mysql", k) => {
            let c = with_mysql(&format!(
                "[mysql]\nmysql_defaults_file = \"{}/my.cnf\"\n",
                s.path().display()
            ))?;
            let m = c.mysql.unwrap();
            match k {
                "full_backup" => m.full_backup.to_string(),
                "expire_log_days" => m.expire_log_days.to_string(),
                "config_files" => array(m.config_files.iter().map(|p| p.display().to_string())),
                "prepare_memory" => {
                    words("a quarter of the host's memory, at least 128 MiB, at most 4 GiB")?;
                    // Worked out at restore time (twindb::mysql::default_prepare_memory).
                    return match m.prepare_memory {
                        None => Ok(String::new()),
                        Some(n) => Err(n.to_string()),
                    };
                }
                "backup_throttle" => some_or_none(m.backup_throttle),
                _ => return Err("no case in this test".into()),
            }
        }
        ("binlog", k) => {
            let c = with_mysql(&format!(
                "[mysql]\nmysql_defaults_file = \"{}/my.cnf\"\n",
                s.path().display()
            ))?;
            match k {
                "enabled" => c.binlog.enabled.to_string(),
                "max_lag" => format!("{}s", c.binlog.max_lag.as_secs()),
                "segment_size" => mib(c.binlog.segment_size),
                _ => return Err("no case in this test".into()),
            }
        }
        ("destination", "download_ranges") => {
            match s.ok("s3", "[s3]\nbucket = \"b\"\n").destination {
                DestinationConfig::S3(c) => c.download_ranges.to_string(),
                other => panic!("{other:?}"),
            }
        }
        ("destination", "keep_local_path") => {
            some_or_none(base().keep_local_path.map(|p| p.display().to_string()))
        }
        ("ssh", k) => {
            let keys = format!(
                "ssh_key = \"{0}/id\"\nknown_hosts = \"{0}/known_hosts\"\n",
                s.path().display()
            );
            let ssh = |c: Config| match c.destination {
                DestinationConfig::Ssh(ssh) => ssh,
                other => panic!("{other:?}"),
            };
            match k {
                "ssh_user" => ssh(s.ssh(&keys)?).user,
                "ssh_port" | "port" => ssh(s.ssh(&keys)?).port.to_string(),
                "accept_new_host_keys" => ssh(s.ssh(&keys)?).accept_new_host_keys.to_string(),
                "ssh_key" => path_default(
                    s.ssh(&format!(
                        "known_hosts = \"{}/known_hosts\"\n",
                        s.path().display()
                    )),
                    |c| ssh(c.clone()).key,
                ),
                "known_hosts" => path_default(
                    s.ssh(&format!("ssh_key = \"{}/id\"\n", s.path().display())),
                    |c| ssh(c.clone()).known_hosts,
                ),
                _ => return Err("no case in this test".into()),
            }
        }
        ("s3", k) => {
            let s3 = |extra: &str| match s
                .ok("s3", &format!("[s3]\nbucket = \"b\"\n{extra}"))
                .destination
            {
                DestinationConfig::S3(c) => c,
                other => panic!("{other:?}"),
            };
            let c = s3("");
            match k {
                "aws_access_key_id" | "aws_secret_access_key" | "aws_secret_access_key_file" => {
                    match c.credentials {
                        S3Credentials::Environment => "none".into(),
                        S3Credentials::Static { .. } => "static credentials".into(),
                    }
                }
                "aws_default_region" => c.region,
                "endpoint" => {
                    words("none (AWS)")?;
                    return match c.endpoint {
                        None => Ok(String::new()),
                        Some(e) => Err(e),
                    };
                }
                "force_path_style" => {
                    words("`true` with `endpoint`, else `false`")?;
                    let with = s3("endpoint = \"http://127.0.0.1:9000\"\n").force_path_style;
                    return match (with, c.force_path_style) {
                        (true, false) => Ok(String::new()),
                        other => Err(format!("(with endpoint, without) = {other:?}")),
                    };
                }
                "part_size" => mib(c.part_size),
                "upload_concurrency" => c.upload_concurrency.to_string(),
                "server_side_encryption" => some_or_none(c.server_side_encryption),
                "sse_kms_key_id" => {
                    words("the bucket's default KMS key")?;
                    return match c.sse_kms_key_id {
                        None => Ok(String::new()),
                        Some(k) => Err(k),
                    };
                }
                "storage_class" => {
                    words("the bucket's default (`STANDARD`)")?;
                    return match c.storage_class {
                        None => Ok(String::new()),
                        Some(k) => Err(k),
                    };
                }
                _ => return Err("no case in this test".into()),
            }
        }
        ("gcs", k) => {
            let c = match s.ok("gcs", "[gcs]\nbucket = \"b\"\n").destination {
                DestinationConfig::Gcs(c) => c,
                other => panic!("{other:?}"),
            };
            match k {
                "gc_credentials_file" => {
                    some_or_none(c.credentials_file.map(|p| p.display().to_string()))
                }
                "gc_encryption_key" | "gc_encryption_key_file" => {
                    some_or_none(c.encryption_key.map(|_| "a key"))
                }
                "chunk_size" => mib(c.chunk_size),
                _ => return Err("no case in this test".into()),
            }
        }
        ("az", k) => {
            let section = "[az]\nconnection_string = \"AccountName=a;AccountKey=a2V5\"\n\
                           container_name = \"abc\"\n";
            let c = match s.ok("az", section).destination {
                DestinationConfig::Az(c) => c,
                other => panic!("{other:?}"),
            };
            match k {
                // The inline string was read; there is no file.
                "connection_string_file" => "none".into(),
                "remote_path" => c.remote_path,
                "block_size" => mib(c.block_size),
                "upload_concurrency" => c.upload_concurrency.to_string(),
                "access_tier" => c
                    .access_tier
                    .map_or("none".into(), |t| t.as_str().to_string()),
                _ => return Err("no case in this test".into()),
            }
        }
        ("compression", "program") => match base().compression.spec {
            Some(spec) => spec.name().to_string(),
            None => "none".into(),
        },
        ("compression", "level") => {
            // `zstd: `3`; gzip, pigz: `6`; bzip2, lbzip2: `9``: each program's level.
            for part in cell.split(';') {
                let (programs, level) = part.split_once(':').ok_or(cell)?;
                let level: u32 = documented_value(level).parse().map_err(|_| cell)?;
                for program in programs.split(',').map(str::trim) {
                    let c = s.ok(
                        "local",
                        &format!("[compression]\nprogram = \"{program}\"\n"),
                    );
                    let got = match c.compression.spec {
                        Some(ModifierSpec::Zstd { level }) => level as u32,
                        Some(
                            ModifierSpec::Gzip { level }
                            | ModifierSpec::Pigz { level }
                            | ModifierSpec::Bzip2 { level }
                            | ModifierSpec::Lbzip2 { level },
                        ) => level,
                        other => return Err(format!("{program}: {other:?}")),
                    };
                    if got != level {
                        return Err(format!("{program}: level {got}, documented {level}"));
                    }
                }
            }
            return Ok(String::new());
        }
        ("compression", "threads") => {
            words("the number of CPUs twindbd may use")?;
            let cpus = std::thread::available_parallelism().unwrap().get() as u32;
            let got = base().compression.threads;
            if got != cpus.min(256) {
                return Err(format!("{got} threads, {cpus} CPUs"));
            }
            return Ok(String::new());
        }
        ("gpg", k) => {
            let c = s.ok(
                "local",
                &format!(
                    "[gpg]\nrecipient = \"backup@example.com\"\nkeyring = \"{}/pubring.gpg\"\n",
                    s.path().display()
                ),
            );
            let g = c.gpg.unwrap();
            match k {
                "secret_keyring" => some_or_none(g.secret_keyring.map(|p| p.display().to_string())),
                "homedir" => {
                    words("gpg's default")?;
                    return match g.homedir {
                        None => Ok(String::new()),
                        Some(h) => Err(h.display().to_string()),
                    };
                }
                _ => return Err("no case in this test".into()),
            }
        }
        ("intervals", k) => {
            let rt: RunType = k.strip_prefix("run_").unwrap().parse().unwrap();
            base().enabled_run_types.contains(&rt).to_string()
        }
        ("retention", _) => retention(&base(), false),
        ("retention_local", _) => retention(&base(), true),
        ("export", k) => {
            let datadog = s.ok(
                "local",
                "[export]\ntransport = \"datadog\"\napi_key = \"k\"\n",
            );
            let statsd = s.ok("local", "[export]\ntransport = \"statsd\"\n");
            match (k, datadog.export.unwrap(), statsd.export.unwrap()) {
                ("app_key", ExportConfig::Datadog { app_key, .. }, _) => {
                    some_or_none(app_key.map(|_| "a key"))
                }
                ("endpoint", ExportConfig::Datadog { endpoint, .. }, _) => endpoint,
                ("statsd_host", _, ExportConfig::Statsd { host, .. }) => host,
                ("statsd_port", _, ExportConfig::Statsd { port, .. }) => port.to_string(),
                ("api_key", ..) => {
                    // Documented as none: required with "datadog", so leaving it out
                    // there is an error.
                    match s.parse("local", "[export]\ntransport = \"datadog\"\n") {
                        Err(e) if e.contains("api_key") => "none".into(),
                        other => return Err(format!("{other:?}")),
                    }
                }
                _ => return Err("no case in this test".into()),
            }
        }
        ("notify", k) => {
            let webhook = s
                .ok(
                    "local",
                    "[notify]\nwebhook_url = \"http://127.0.0.1:1/hook\"\n",
                )
                .notify
                .unwrap();
            let email_with = |extra: &str| {
                let c = s.ok(
                    "local",
                    &format!(
                        "[notify]\nemail_to = [\"dba@example.com\"]\nsmtp_server = \"mail\"\n{extra}"
                    ),
                );
                (c.daemon.hostname.clone(), c.notify.unwrap().email.unwrap())
            };
            match k {
                "on_failure" => webhook.on_failure.to_string(),
                "on_success" => webhook.on_success.to_string(),
                "webhook_url" => {
                    let email = s
                        .ok(
                            "local",
                            "[notify]\nemail_to = [\"dba@example.com\"]\nsmtp_server = \"mail\"\n",
                        )
                        .notify
                        .unwrap();
                    some_or_none(email.webhook)
                }
                "email_to" => array(webhook.email.iter().flat_map(|e| e.to.clone())),
                "email_from" => {
                    let (host, email) = email_with("");
                    email.from.replace(&host, "HOST")
                }
                "smtp_server" => some_or_none(webhook.email.map(|e| e.server)),
                "smtp_tls" => match email_with("").1.tls {
                    SmtpTls::Starttls => "starttls".into(),
                    SmtpTls::Tls => "tls".into(),
                    SmtpTls::None => "none".into(),
                },
                "smtp_port" => {
                    words("587 / 465 / 25")?;
                    let ports: Vec<u16> = ["starttls", "tls", "none"]
                        .iter()
                        .map(|t| email_with(&format!("smtp_tls = \"{t}\"\n")).1.port)
                        .collect();
                    return if ports == [587, 465, 25] {
                        Ok(String::new())
                    } else {
                        Err(format!("{ports:?}"))
                    };
                }
                "smtp_user" => some_or_none(email_with("").1.user),
                "smtp_password" => some_or_none(email_with("").1.password.map(|_| "a password")),
                _ => return Err("no case in this test".into()),
            }
        }
        ("clone", k) => {
            let c = base().clone;
            // "`[ssh] ssh_user`, else `"root"`": taken from that key when it is set,
            // else the value after "else".
            let spans = code_spans(cell);
            if let Some(from) = spans
                .first()
                .filter(|s| s.starts_with('[') && s.contains("] "))
            {
                let fallback = documented_value(&format!("`{}`", spans.last().unwrap()));
                let own = match k {
                    "ssh_user" => c.ssh_user.clone(),
                    "ssh_port" => c.ssh_port.to_string(),
                    "ssh_key" => c.ssh_key.display().to_string(),
                    "known_hosts" => c.known_hosts.display().to_string(),
                    "accept_new_host_keys" => c.accept_new_host_keys.to_string(),
                    "mysql_defaults_file" => c.mysql_defaults_file.display().to_string(),
                    _ => return Err("no case in this test".into()),
                };
                if own != fallback {
                    return Err(format!("without {from}: {own}, documented {fallback}"));
                }
                // With the key set in the section it names, clone takes that value.
                let inherited = match k {
                    "mysql_defaults_file" => {
                        let c = with_mysql(&format!(
                            "[mysql]\nmysql_defaults_file = \"{}/my.cnf\"\n",
                            s.path().display()
                        ))?;
                        (
                            c.clone.mysql_defaults_file == s.path().join("my.cnf"),
                            *from,
                        )
                    }
                    _ => {
                        let c = s.ssh(&format!(
                            "ssh_user = \"backup\"\nssh_port = 2222\nssh_key = \"{0}/id\"\nknown_hosts = \"{0}/known_hosts\"\naccept_new_host_keys = true\n",
                            s.path().display()
                        ))?;
                        let cl = &c.clone;
                        let ok = match k {
                            "ssh_user" => cl.ssh_user == "backup",
                            "ssh_port" => cl.ssh_port == 2222,
                            "ssh_key" => cl.ssh_key == s.path().join("id"),
                            "known_hosts" => cl.known_hosts == s.path().join("known_hosts"),
                            _ => cl.accept_new_host_keys,
                        };
                        (ok, *from)
                    }
                };
                if !inherited.0 {
                    return Err(format!("not taken from {}", inherited.1));
                }
                return Ok(String::new());
            }
            match k {
                "datadir" => c.datadir,
                "datadir_owner" => c.datadir_owner,
                "config_file" => c.config_file,
                "copy_config_files" => array(c.copy_config_files),
                "start_command" => {
                    if !cell.starts_with("none") {
                        return Err(format!("the docs now say {cell:?}: update the test"));
                    }
                    return match c.start_command {
                        None => Ok(String::new()),
                        Some(cmd) => Err(cmd),
                    };
                }
                _ => return Err("no case in this test".into()),
            }
        }
        ("verify", k) => {
            // An empty section: what a key left out gets (the same as no section).
            let v = s.ok("local", "[verify]\n").verify;
            match k {
                "schedule" => some_or_none(v.schedule.map(|c| c.written)),
                "mysql" => {
                    words("`[source] backup_mysql`")?;
                    let on = with_mysql(&format!(
                        "[mysql]\nmysql_defaults_file = \"{}/my.cnf\"\n\n[verify]\n",
                        s.path().display()
                    ))?
                    .verify
                    .mysql;
                    if v.mysql || !on {
                        return Err(format!("without MySQL {}, with it {on}", v.mysql));
                    }
                    return Ok(String::new());
                }
                "files" => {
                    words("`true` when `backup_dirs` is not empty")?;
                    v.files.to_string()
                }
                "check_schemas" => array(v.check_schemas),
                "roll_forward" => v.roll_forward.to_string(),
                "probe_sql" => some_or_none(v.probe_sql),
                "scratch_dir" => {
                    words("`[daemon] state_dir`")?;
                    return match v.scratch_dir {
                        None => Ok(String::new()),
                        Some(p) => Err(p.display().to_string()),
                    };
                }
                _ => return Err("no case in this test".into()),
            }
        }
        _ => return Err("no case in this test".into()),
    };
    Ok(value)
}

#[test]
fn documented_defaults_are_the_parsed_configs_values() {
    let scratch = Scratch::new();
    let rows = documented_defaults();
    assert!(
        rows.len() > 80,
        "only {} keys with defaults found",
        rows.len()
    );
    let mut problems = Vec::new();
    for (section, key, cell) in &rows {
        if let Some(&(.., said, why)) = NOT_IN_THE_CONFIG
            .iter()
            .find(|(s, k, ..)| s == section && k == key)
        {
            if said != cell {
                problems.push(format!(
                    "[{section}] {key}: the docs now say {cell:?}; this test knows {said:?} ({why})"
                ));
            }
            continue;
        }
        match code_default(&scratch, section, key, cell) {
            // A default in words that the code was checked against.
            Ok(v) if v.is_empty() => {}
            Ok(v) => {
                let documented = documented_value(cell);
                let documented = if documented.starts_with("none") {
                    "none".to_string()
                } else {
                    documented
                };
                if v != documented {
                    problems.push(format!(
                        "[{section}] {key}: documented default {documented:?}, the code's is {v:?}"
                    ));
                }
            }
            Err(e) => problems.push(format!("[{section}] {key} ({cell}): {e}")),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
