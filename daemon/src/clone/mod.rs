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
//! The SSH side (connection, host keys, commands, quoting) is [`crate::ssh`]'s; here,
//! `host` runs the steps on one host, `stream` relays the copy between the two, and
//! `replica` turns the copy into a running replica.

mod host;
mod replica;
mod stream;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use twindb_proto::CloneRequest;

use self::host::Host;
use self::replica::{change_master, prepare, wait_for_replication, wait_for_server, Syntax};
use self::stream::{empty_datadir, relay, stream_commands};
use crate::config::CloneConfig;
use crate::engine::{Engine, JobCtx};
use crate::mysql::Vendor;
use crate::ssh::quote as sh;

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

/// What the source is.
struct SourceInfo {
    vendor: Vendor,
    /// Which replication statements the servers take (the clone runs the source's
    /// version).
    syntax: Syntax,
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
    let change = change_master(req, (&src.name, src.mysql_port), &info, &coords);
    dst.sql("configuring replication", &change, "").await?;
    let threads = wait_for_replication(dst, info.syntax, ctx).await?;
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
        syntax: Syntax::of(vendor, version),
        server_id: server_id.parse().unwrap_or(0),
        gtid_mode,
    })
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
}
