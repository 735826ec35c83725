//! `clone mysql`: make an empty host a replica of a running server.
//!
//! twindbd opens one SSH connection to each host (`[clone]`, falling back to `[ssh]`):
//! on the source it runs `mariabackup/xtrabackup --backup --stream=xbstream`, on the
//! destination `mbstream/xbstream -x` into the datadir, and relays the bytes between the
//! two channels (nothing staged on disk on either side, no netcat, no open port). Then,
//! on the destination: prepare, copy the listed my.cnf files, write a config file with
//! a unique `server_id`, chown, start mysqld (systemd unit, or `[clone] start_command`),
//! `CHANGE MASTER TO` the coordinates recorded in the copy (GTID when the server has
//! one, else file/position), `START SLAVE`, and wait until both replication threads run.
//!
//! Every step's failure names the host, what was being done and the command's stderr
//! (its [`Tail`](crate::process::Tail)). The MySQL client options (`[clone]
//! mysql_defaults_file`) go to each host through stdin into a mode-600 temp file removed
//! at the end; the replication password only travels in the SQL on the client's stdin
//! and is masked in any message. A cancelled job stops at once: every wait on a host
//! also awaits the job's cancel, and the running remote command's channel is closed.
//!
//! The SSH side (connection, host keys, commands, quoting) is [`crate::ssh`]'s.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use twindb_proto::CloneRequest;

use crate::config::CloneConfig;
use crate::engine::{Engine, JobCtx};
use crate::mysql::Vendor;
use crate::pipeline::Cancel;
use crate::ssh::{quote as sh, Client, Exec, Limits, Output, Target, IDLE_CLOSE};

/// How long mysqld may take to accept connections after the start command.
const START_LIMIT: Duration = Duration::from_secs(180);
/// How long the replication threads may take to be both running.
const REPLICATION_LIMIT: Duration = Duration::from_secs(60);

/// Why a clone was refused or failed. Its Display is the job's error, word for word
/// what operators (and the tests) read.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("{0:?} is not HOST or HOST:PORT")]
    BadAddress(String),
    #[error("the source and the destination are the same server")]
    SameServer,
    #[error("--replication-user is empty")]
    NoReplicationUser,
    #[error("cannot read [clone] mysql_defaults_file {}: {cause}", path.display())]
    DefaultsFile { path: PathBuf, cause: io::Error },
    #[error(
        "{host}: checking binary logging: log_bin is off: a replica needs the source's binary log"
    )]
    NoBinaryLog { host: String },
    /// A step on a host failed: what was being done and what the host said.
    #[error("{host}: {what}: {detail}")]
    Step {
        host: String,
        what: String,
        detail: String,
    },
    #[error("mysqld did not accept connections within {} s after the start command: {last}", START_LIMIT.as_secs())]
    NotStarted { last: Box<CloneError> },
    #[error("cancelled")]
    Cancelled,
}

/// `HOST[:PORT]`, PORT defaulting to 3306.
fn host_port(s: &str) -> Result<(String, u16), CloneError> {
    let bad = || CloneError::BadAddress(s.to_string());
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (s, 3306),
    };
    if host.is_empty()
        || port == 0
        || host.starts_with('-')
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@/'\"`$;&|<>()\\".contains(c))
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A string literal for SQL run under `sql_mode = NO_BACKSLASH_ESCAPES` (see
/// [`change_master`]): quotes doubled, backslashes literal, whatever the server's mode.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One host, over SSH.
struct Host {
    name: String,
    mysql_port: u16,
    ssh: Client,
    /// The temp file holding the MySQL client options, once written.
    defaults: Option<String>,
    /// Masked out of every message from this host.
    secret: Option<String>,
    /// The job's: a command that hangs (a start command that keeps its output open)
    /// must not hold the job forever.
    cancel: Cancel,
}

impl Host {
    fn new(cfg: &CloneConfig, name: &str, mysql_port: u16, cancel: Cancel) -> Host {
        let target = Target {
            host: name.to_string(),
            port: cfg.ssh_port,
            user: cfg.ssh_user.clone(),
            key: cfg.ssh_key.clone(),
            known_hosts: cfg.known_hosts.clone(),
            accept_new_host_keys: cfg.accept_new_host_keys,
        };
        let label = format!("ssh://{}@{name}:{}/", cfg.ssh_user, cfg.ssh_port);
        // No stall limit: a prepare or a start command may rightly be silent for long;
        // the job's cancel and timeout end a step that hangs.
        let limits = Limits {
            idle_close: IDLE_CLOSE,
            stall: None,
        };
        let ssh = Client::new(target, label, limits);
        Host {
            name: name.to_string(),
            mysql_port,
            ssh,
            defaults: None,
            secret: None,
            cancel,
        }
    }

    fn fail(&self, what: &str, detail: String) -> CloneError {
        let detail = match &self.secret {
            Some(s) if !s.is_empty() => detail.replace(s.as_str(), "***"),
            _ => detail,
        };
        CloneError::Step {
            host: self.name.clone(),
            what: what.to_string(),
            detail,
        }
    }

    /// An SSH failure (connecting, starting the command), worded as it always was: the
    /// host's `ssh://` URL, then the cause.
    fn ssh_failed(&self, what: &str, e: io::Error) -> CloneError {
        let t = self.ssh.target();
        self.fail(
            what,
            format!("ssh://{}@{}:{}/: clone: {e}", t.user, t.host, t.port),
        )
    }

    /// Runs `command` with `input` on its stdin; what it said when it exits 0.
    async fn run(&self, what: &str, command: &str, input: &[u8]) -> Result<Output, CloneError> {
        let out = tokio::select! {
            out = self.ssh.output(command, input) => out,
            // Dropping the command closes its channel.
            () = self.cancel.cancelled() => return Err(CloneError::Cancelled),
        };
        let out = out.map_err(|e| self.ssh_failed(what, e))?;
        let stderr = out.stderr.text();
        match (&out.signal, out.status) {
            (Some(sig), _) => Err(self.fail(what, format!("killed by signal {sig}\n{stderr}"))),
            (None, Some(0)) => Ok(out),
            (None, Some(n)) => Err(self.fail(what, format!("exit status {n}\n{stderr}"))),
            (None, None) => Err(self.fail(
                what,
                format!("the connection closed before the command ended\n{stderr}"),
            )),
        }
    }

    /// Writes the MySQL client options to a mode-600 temp file on the host.
    async fn put_defaults(&mut self, content: &[u8]) -> Result<(), CloneError> {
        let out = self
            .run(
                "writing the MySQL client options to a temp file",
                "umask 077 && t=$(mktemp /tmp/twindb-clone.XXXXXXXX) && cat > \"$t\" && echo \"$t\"",
                content,
            )
            .await?;
        self.defaults = Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        Ok(())
    }

    /// Removes the client options file; a failure is a warning (it holds a password).
    async fn remove_defaults(&mut self, ctx: &JobCtx) {
        if let Some(t) = self.defaults.take() {
            let what = format!("removing the temp file {t}");
            if let Err(e) = self.run(&what, &format!("rm -f {}", sh(&t)), b"").await {
                ctx.warn(format!("{e}; remove it by hand"));
            }
        }
    }

    /// The shell words that run the mysql client against this host's server over TCP.
    fn client(&self, extra: &str) -> String {
        format!(
            "C=$(command -v mariadb || command -v mysql) || {{ echo 'no mysql client (mariadb or mysql) in PATH' >&2; exit 127; }}; \
             \"$C\" --defaults-file={} --host=127.0.0.1 --port={} {extra}",
            sh(self.defaults.as_deref().unwrap_or("/dev/null")),
            self.mysql_port
        )
    }

    /// Runs SQL given on stdin; returns the client's batch output.
    async fn sql(&self, what: &str, sql: &str, extra: &str) -> Result<String, CloneError> {
        let out = self.run(what, &self.client(extra), sql.as_bytes()).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What the source is.
struct SourceInfo {
    vendor: Vendor,
    server_id: u64,
    gtid_mode: bool,
}

pub async fn clone_mysql(
    engine: &Engine,
    req: &CloneRequest,
    ctx: &JobCtx,
) -> Result<String, CloneError> {
    let cfg = &engine.config.clone;
    let (src_name, src_port) = host_port(&req.source)?;
    let (dst_name, dst_port) = host_port(&req.destination)?;
    if (src_name.as_str(), src_port) == (dst_name.as_str(), dst_port) {
        return Err(CloneError::SameServer);
    }
    if req.replication_user.is_empty() {
        return Err(CloneError::NoReplicationUser);
    }
    let defaults =
        std::fs::read(&cfg.mysql_defaults_file).map_err(|cause| CloneError::DefaultsFile {
            path: cfg.mysql_defaults_file.clone(),
            cause,
        })?;
    let mut src = Host::new(cfg, &src_name, src_port, ctx.cancel.clone());
    let mut dst = Host::new(cfg, &dst_name, dst_port, ctx.cancel.clone());
    dst.secret = Some(req.replication_password.clone());
    src.secret = Some(req.replication_password.clone());
    let result = run(cfg, req, &mut src, &mut dst, &defaults, ctx).await;
    src.remove_defaults(ctx).await;
    dst.remove_defaults(ctx).await;
    result
}

async fn run(
    cfg: &CloneConfig,
    req: &CloneRequest,
    src: &mut Host,
    dst: &mut Host,
    defaults: &[u8],
    ctx: &JobCtx,
) -> Result<String, CloneError> {
    let datadir = sh(&cfg.datadir);
    ctx.set_phase(format!("checking the destination {}", dst.name));
    dst.run(
        "checking that the datadir is empty",
        &format!(
            "if [ -e {datadir} ] && [ -n \"$(ls -A {datadir})\" ]; then echo \"the datadir {} is not empty: refusing to clone into it\" >&2; exit 3; fi",
            cfg.datadir
        ),
        b"",
    )
    .await?;
    let mut running = format!(
        "A=$(command -v mariadb-admin || command -v mysqladmin) || {{ echo 'no mysqladmin (mariadb-admin) in PATH' >&2; exit 127; }}; \
         if \"$A\" --no-defaults --host=127.0.0.1 --port={port} --connect-timeout=3 ping >/dev/null 2>&1; then \
         echo 'a mysqld answers on port {port}: stop it first' >&2; exit 3; fi",
        port = dst.mysql_port
    );
    if cfg.start_command.is_none() {
        running.push_str(
            "; for u in mariadb mysql mysqld; do if systemctl is-active --quiet \"$u\" 2>/dev/null; then \
             echo \"the $u service is running: stop it first\" >&2; exit 3; fi; done; true",
        );
    }
    dst.run("checking that no mysqld runs", &running, b"")
        .await?;

    ctx.set_phase(format!("inspecting the source {}", src.name));
    src.put_defaults(defaults).await?;
    dst.put_defaults(defaults).await?;
    let info = source_info(src).await?;
    let (backup, stream) = info.vendor.tools();

    ctx.set_phase(format!(
        "streaming a copy from {} into {}:{}",
        src.name, dst.name, cfg.datadir
    ));
    if req.compress {
        for host in [&*src, &*dst] {
            host.run(
                "checking for zstd (--compress)",
                "command -v zstd >/dev/null || { echo 'zstd is not installed' >&2; exit 127; }",
                b"",
            )
            .await?;
        }
    }
    let (send, receive) = stream_commands(
        backup,
        stream,
        src.defaults.as_deref().unwrap_or("/dev/null"),
        src.mysql_port,
        &datadir,
        req.compress,
    );
    let streamed = relay(src, &send, dst, &receive, ctx).await;
    let bytes = match streamed {
        Ok(b) => b,
        Err(e) => {
            empty_datadir(dst, &datadir, ctx).await;
            return Err(e);
        }
    };
    let prepared = prepare(cfg, src, dst, &info, backup, &datadir, ctx).await;
    let coords = match prepared {
        Ok(c) => c,
        Err(e) => {
            empty_datadir(dst, &datadir, ctx).await;
            return Err(e);
        }
    };

    ctx.set_phase(format!("starting mysqld on {}", dst.name));
    let start = match &cfg.start_command {
        Some(c) => c.clone(),
        None => "for u in mariadb mysql mysqld; do if systemctl cat \"$u.service\" >/dev/null 2>&1; then \
                 exec systemctl start \"$u\"; fi; done; \
                 echo 'no mariadb, mysql or mysqld systemd unit: set [clone] start_command' >&2; exit 3"
            .to_string(),
    };
    dst.run("starting mysqld", &start, b"").await?;
    wait_for_server(dst, ctx).await?;

    ctx.set_phase("configuring replication");
    let change = change_master(req, src, &info, &coords);
    dst.sql("configuring replication", &change, "").await?;
    let threads = wait_for_replication(dst, ctx).await?;
    Ok(format!(
        "cloned {} into {}:{} ({bytes} bytes streamed, server_id {}); replicating from {} {}; {threads}",
        req.source,
        dst.name,
        cfg.datadir,
        coords.server_id,
        req.source,
        coords.describe(),
    ))
}

async fn source_info(src: &Host) -> Result<SourceInfo, CloneError> {
    let out = src
        .sql(
            "reading the server's version",
            "SELECT @@version, @@version_comment, @@server_id, @@log_bin",
            "-N -B",
        )
        .await?;
    let fields: Vec<&str> = out.trim().split('\t').collect();
    let [version, comment, server_id, log_bin] = fields[..] else {
        return Err(src.fail(
            "reading the server's version",
            format!("unexpected answer {out:?}"),
        ));
    };
    if !matches!(log_bin, "1" | "ON") {
        return Err(CloneError::NoBinaryLog {
            host: src.name.clone(),
        });
    }
    let vendor = Vendor::from_version(version, comment);
    let gtid_mode = match vendor {
        Vendor::Mariadb => true,
        _ => src
            .sql("reading gtid_mode", "SELECT @@gtid_mode", "-N -B")
            .await?
            .trim()
            .eq_ignore_ascii_case("ON"),
    };
    Ok(SourceInfo {
        vendor,
        server_id: server_id.parse().unwrap_or(0),
        gtid_mode,
    })
}

/// The commands on the source and on the destination. With compression, each side's
/// two programs are joined by a pipe whose first program's exit status is kept in a
/// temp file (POSIX sh has no pipefail), so a failure of either is reported.
fn stream_commands(
    backup: &str,
    stream: &str,
    defaults: &str,
    port: u16,
    datadir: &str,
    compress: bool,
) -> (String, String) {
    let backup = format!(
        "{backup} --defaults-file={} --host=127.0.0.1 --port={port} --backup --stream=xbstream --target-dir=\"$d\"",
        sh(defaults)
    );
    let extract = format!("{stream} -x -C {datadir}");
    if !compress {
        return (
            format!(
                "d=$(mktemp -d /tmp/twindb-clone.XXXXXXXX) || exit 1; {backup}; rc=$?; rm -rf \"$d\"; exit $rc"
            ),
            format!("mkdir -p {datadir} && {extract}"),
        );
    }
    (
        format!(
            "d=$(mktemp -d /tmp/twindb-clone.XXXXXXXX) && r=$(mktemp /tmp/twindb-clone.XXXXXXXX) || exit 1; \
             {{ {backup}; echo $? > \"$r\"; }} | zstd -q -1 -T0 -c; z=$?; rc=$(cat \"$r\"); rm -rf \"$d\" \"$r\"; \
             [ \"$rc\" = 0 ] || exit \"${{rc:-1}}\"; exit $z"
        ),
        format!(
            "mkdir -p {datadir} && r=$(mktemp /tmp/twindb-clone.XXXXXXXX) || exit 1; \
             {{ zstd -q -d -c; echo $? > \"$r\"; }} | {extract}; x=$?; z=$(cat \"$r\"); rm -f \"$r\"; \
             [ \"$z\" = 0 ] || {{ echo \"zstd -d failed ($z)\" >&2; exit \"${{z:-1}}\"; }}; exit $x"
        ),
    )
}

/// Relays `from_cmd`'s stdout on `from` into `to_cmd`'s stdin on `to`; both must exit 0.
async fn relay(
    from: &Host,
    from_cmd: &str,
    to: &Host,
    to_cmd: &str,
    ctx: &JobCtx,
) -> Result<u64, CloneError> {
    let what_to = "extracting the stream into the datadir";
    let what_from = "streaming a backup";
    let mut sink = to
        .ssh
        .exec(to_cmd)
        .await
        .map_err(|e| to.ssh_failed(what_to, e))?;
    let mut source = from
        .ssh
        .exec(from_cmd)
        .await
        .map_err(|e| from.ssh_failed(what_from, e))?;
    let mut from_out = Output::default();
    let mut bytes = 0u64;
    let mut write_failed = None;
    loop {
        let msg = tokio::select! {
            m = source.wait() => m,
            () = ctx.cancel.cancelled() => return Err(hang_up(&source, &sink).await),
        };
        let Some(msg) = msg else { break };
        let Some(data) = from_out.take(msg) else {
            continue;
        };
        if write_failed.is_some() {
            continue;
        }
        let n = data.len() as u64;
        bytes += n;
        ctx.bytes_in
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = sink.data_bytes(data).await {
            // The extractor stopped: its stderr says why; stop the source.
            write_failed = Some(e.to_string());
            let _ = source.close().await;
        } else {
            ctx.bytes_out
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _ = sink.eof().await;
    let mut to_out = Output::default();
    loop {
        let msg = tokio::select! {
            m = sink.wait() => m,
            () = ctx.cancel.cancelled() => return Err(hang_up(&source, &sink).await),
        };
        let Some(msg) = msg else { break };
        to_out.take(msg);
    }
    let status = |out: &Output| out.status.map_or("unknown".into(), |s| s.to_string());
    if to_out.status != Some(0) {
        return Err(to.fail(
            what_to,
            format!(
                "exit status {}{}\n{}",
                status(&to_out),
                write_failed.map_or(String::new(), |w| format!(" ({w})")),
                to_out.stderr.text()
            ),
        ));
    }
    if from_out.status != Some(0) {
        return Err(from.fail(
            what_from,
            format!(
                "exit status {}\n{}",
                status(&from_out),
                from_out.stderr.text()
            ),
        ));
    }
    Ok(bytes)
}

/// Closes both channels of a cancelled relay, so that both commands get a hangup.
async fn hang_up(source: &Exec, sink: &Exec) -> CloneError {
    let _ = source.close().await;
    let _ = sink.close().await;
    CloneError::Cancelled
}

/// After a failure: the next attempt needs an empty datadir again. Not emptied, it
/// is a warning (the job has failed already, for its own reason).
async fn empty_datadir(dst: &Host, datadir: &str, ctx: &JobCtx) {
    if let Err(e) = dst
        .run(
            "emptying the datadir after the failure",
            &format!("[ ! -d {datadir} ] || find {datadir} -mindepth 1 -delete"),
            b"",
        )
        .await
    {
        ctx.warn(e.to_string());
    }
}

/// Where the replica starts, from the copy.
struct Coordinates {
    file: String,
    position: u64,
    gtid: Option<String>,
    server_id: u32,
}

impl Coordinates {
    fn describe(&self) -> String {
        match &self.gtid {
            Some(g) => format!("at GTID {g}"),
            None => format!("at {}:{}", self.file, self.position),
        }
    }
}

async fn prepare(
    cfg: &CloneConfig,
    src: &Host,
    dst: &Host,
    info: &SourceInfo,
    backup: &str,
    datadir: &str,
    ctx: &JobCtx,
) -> Result<Coordinates, CloneError> {
    ctx.set_phase(format!("preparing the copy on {}", dst.name));
    dst.run(
        "preparing the copy",
        &format!("{backup} --prepare --target-dir={datadir}"),
        b"",
    )
    .await?;
    let info_file = dst
        .run(
            "reading the binlog coordinates of the copy",
            &format!("cat {datadir}/xtrabackup_binlog_info"),
            b"",
        )
        .await?;
    let text = String::from_utf8_lossy(&info_file.stdout).into_owned();
    let mut fields = text.trim().split('\t');
    let (Some(file), Some(pos)) = (
        fields.next(),
        fields.next().and_then(|p| p.trim().parse().ok()),
    ) else {
        return Err(dst.fail(
            "reading the binlog coordinates of the copy",
            format!("unexpected xtrabackup_binlog_info {text:?}"),
        ));
    };
    let gtid = fields
        .next()
        .map(|g| g.trim().replace('\n', ""))
        .filter(|g| !g.is_empty() && info.gtid_mode);

    ctx.set_phase(format!("installing the configuration on {}", dst.name));
    for f in &cfg.copy_config_files {
        let content = src
            .run(&format!("reading {f}"), &format!("cat {}", sh(f)), b"")
            .await?;
        let dir = std::path::Path::new(f)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "/".into());
        dst.run(
            &format!("installing {f}"),
            &format!("mkdir -p {} && cat > {}", sh(&dir), sh(f)),
            &content.stdout,
        )
        .await?;
    }
    let server_id = unique_server_id(info.server_id);
    let dir = std::path::Path::new(&cfg.config_file)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "/".into());
    dst.run(
        &format!("writing {}", cfg.config_file),
        &format!("mkdir -p {} && cat > {}", sh(&dir), sh(&cfg.config_file)),
        format!(
            "# Written by twindb clone: this server is a replica of {}.\n[mysqld]\nserver_id = {server_id}\n",
            src.name
        )
        .as_bytes(),
    )
    .await?;
    dst.run(
        "changing the datadir's owner",
        &format!("chown -R {} {datadir}", sh(&cfg.datadir_owner)),
        b"",
    )
    .await?;
    Ok(Coordinates {
        file: file.to_string(),
        position: pos,
        gtid,
        server_id,
    })
}

/// A server_id other than the source's: 2..2^31, from the clock (no two clones made
/// in the same nanosecond), as TwinDB's IP-derived id collided on NAT and loopback.
fn unique_server_id(source: u64) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut id = ((nanos ^ u128::from(std::process::id())) % 0x7fff_fffe) as u32 + 2;
    if u64::from(id) == source {
        id = if id > 2 { id - 1 } else { id + 1 };
    }
    id
}

async fn wait_for_server(dst: &Host, ctx: &JobCtx) -> Result<(), CloneError> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        match dst
            .sql("connecting to the new server", "SELECT 1", "-N -B")
            .await
        {
            Ok(_) => return Ok(()),
            Err(CloneError::Cancelled) => return Err(CloneError::Cancelled),
            Err(e) if Instant::now() > deadline => {
                return Err(CloneError::NotStarted { last: Box::new(e) })
            }
            Err(_) => pause(ctx, Duration::from_secs(1)).await?,
        }
    }
}

fn change_master(req: &CloneRequest, src: &Host, info: &SourceInfo, c: &Coordinates) -> String {
    let common = format!(
        "MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}",
        sql_str(&src.name),
        src.mysql_port,
        sql_str(&req.replication_user),
        sql_str(&req.replication_password)
    );
    // Our literals need no backslash escaping in this mode (see sql_str).
    let mode = "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';";
    let sql = match (&c.gtid, info.vendor) {
        (Some(g), Vendor::Mariadb) => format!(
            "STOP SLAVE; SET GLOBAL gtid_slave_pos = {}; CHANGE MASTER TO {common}, MASTER_USE_GTID = slave_pos; START SLAVE;\n",
            sql_str(g)
        ),
        (Some(g), _) => format!(
            "STOP SLAVE; RESET MASTER; SET GLOBAL gtid_purged = {}; CHANGE MASTER TO {common}, MASTER_AUTO_POSITION = 1; START SLAVE;\n",
            sql_str(g)
        ),
        (None, _) => format!(
            "STOP SLAVE; CHANGE MASTER TO {common}, MASTER_LOG_FILE = {}, MASTER_LOG_POS = {}; START SLAVE;\n",
            sql_str(&c.file),
            c.position
        ),
    };
    format!("{mode}\n{sql}")
}

/// Waits until `Slave_IO_Running` and `Slave_SQL_Running` are both `Yes`.
async fn wait_for_replication(dst: &Host, ctx: &JobCtx) -> Result<String, CloneError> {
    let deadline = Instant::now() + REPLICATION_LIMIT;
    loop {
        let out = dst
            .sql("reading SHOW SLAVE STATUS", "SHOW SLAVE STATUS\\G", "")
            .await?;
        let field = |name: &str| {
            out.lines()
                .filter_map(|l| l.trim().split_once(": "))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let (io, sqlt) = (field("Slave_IO_Running"), field("Slave_SQL_Running"));
        if io == "Yes" && sqlt == "Yes" {
            return Ok("Slave_IO_Running and Slave_SQL_Running are Yes".into());
        }
        // A thread that stopped with an error (wrong password, missing binlog) will
        // not recover by waiting: report it now.
        let errors = [
            ("Slave_IO_Running", "Last_IO_Error"),
            ("Slave_SQL_Running", "Last_SQL_Error"),
        ];
        if let Some((thread, error)) = errors
            .iter()
            .find(|(t, e)| field(t) != "Yes" && !field(e).is_empty())
        {
            return Err(dst.fail(
                "starting replication",
                format!("{thread} = {:?}: {}", field(thread), field(error)),
            ));
        }
        if Instant::now() > deadline {
            return Err(dst.fail(
                "starting replication",
                format!(
                    "after {} s Slave_IO_Running = {io:?}, Slave_SQL_Running = {sqlt:?}; Last_IO_Error: {}; Last_SQL_Error: {}",
                    REPLICATION_LIMIT.as_secs(),
                    field("Last_IO_Error"),
                    field("Last_SQL_Error")
                ),
            ));
        }
        pause(ctx, Duration::from_secs(1)).await?;
    }
}

/// Waits `pause` between two looks at a host, or ends at once when the job is cancelled.
async fn pause(ctx: &JobCtx, pause: Duration) -> Result<(), CloneError> {
    tokio::select! {
        () = tokio::time::sleep(pause) => Ok(()),
        () = ctx.cancel.cancelled() => Err(CloneError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(host_port("db1").unwrap(), ("db1".into(), 3306));
        assert_eq!(
            host_port("10.0.0.2:3307").unwrap(),
            ("10.0.0.2".into(), 3307)
        );
        for bad in ["", ":3306", "db1:x", "db1:0", "-oProxy", "a b", "db;rm"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(sql_str("a'b\\c"), "'a''b\\c'");
    }

    #[test]
    fn refusals_keep_their_words() {
        let cases = [
            (
                host_port("a b").unwrap_err(),
                "\"a b\" is not HOST or HOST:PORT",
            ),
            (
                CloneError::SameServer,
                "the source and the destination are the same server",
            ),
            (CloneError::NoReplicationUser, "--replication-user is empty"),
            (
                CloneError::NoBinaryLog { host: "db1".into() },
                "db1: checking binary logging: log_bin is off: a replica needs the source's binary log",
            ),
            (
                CloneError::NotStarted {
                    last: Box::new(CloneError::Step {
                        host: "db2".into(),
                        what: "connecting to the new server".into(),
                        detail: "exit status 1\nrefused".into(),
                    }),
                },
                "mysqld did not accept connections within 180 s after the start command: db2: connecting to the new server: exit status 1\nrefused",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        let err = CloneError::DefaultsFile {
            path: "/root/.my.cnf".into(),
            cause: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(err
            .to_string()
            .starts_with("cannot read [clone] mysql_defaults_file /root/.my.cnf: "));
    }

    #[test]
    fn server_id_differs_from_the_source() {
        for _ in 0..100 {
            let id = unique_server_id(5);
            assert!(id >= 1 && id != 5);
        }
    }
}
