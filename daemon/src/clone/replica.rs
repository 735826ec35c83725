//! From a copy in the datadir to a running replica: prepare, configuration, start,
//! `CHANGE MASTER TO` the copy's coordinates, and the wait for both threads.

use std::time::{Duration, Instant};

use twindb_proto::CloneRequest;

use super::host::Host;
use super::{pause, CloneError, SourceInfo, REPLICATION_LIMIT, START_LIMIT};
use crate::config::CloneConfig;
use crate::engine::JobCtx;
use crate::mysql::Vendor;
use crate::ssh::quote as sh;

/// A string literal for SQL run under `sql_mode = NO_BACKSLASH_ESCAPES` (see
/// [`change_master`]): quotes doubled, backslashes literal, whatever the server's mode.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Where the replica starts, from the copy.
pub(super) struct Coordinates {
    file: String,
    position: u64,
    gtid: Option<String>,
    pub(super) server_id: u32,
}

impl Coordinates {
    pub(super) fn describe(&self) -> String {
        match &self.gtid {
            Some(g) => format!("at GTID {g}"),
            None => format!("at {}:{}", self.file, self.position),
        }
    }
}

pub(super) async fn prepare(
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

pub(super) async fn wait_for_server(dst: &Host, ctx: &JobCtx) -> Result<(), CloneError> {
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

/// The replication statements a server understands. MySQL renamed them in 8.0.23
/// (`CHANGE REPLICATION SOURCE TO`, `START REPLICA`, `SHOW REPLICA STATUS`) and removed
/// the old names in 8.4, with `RESET MASTER` (`RESET BINARY LOGS AND GTIDS` since
/// 8.2); MariaDB keeps the old ones (it has `START REPLICA` as an alias only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Syntax {
    source: bool,
    reset_binary_logs: bool,
}

impl Syntax {
    pub(super) fn of(vendor: Vendor, version: &str) -> Syntax {
        let v = numeric_version(version);
        let mysql = vendor != Vendor::Mariadb;
        Syntax {
            source: mysql && v >= (8, 0, 23),
            reset_binary_logs: mysql && v >= (8, 2, 0),
        }
    }

    fn words(self) -> Words {
        if self.source {
            Words {
                change: "CHANGE REPLICATION SOURCE TO",
                start: "START REPLICA",
                stop: "STOP REPLICA",
                show: "SHOW REPLICA STATUS",
                prefix: "SOURCE",
                thread: "Replica",
            }
        } else {
            Words {
                change: "CHANGE MASTER TO",
                start: "START SLAVE",
                stop: "STOP SLAVE",
                show: "SHOW SLAVE STATUS",
                prefix: "MASTER",
                thread: "Slave",
            }
        }
    }
}

struct Words {
    change: &'static str,
    start: &'static str,
    stop: &'static str,
    show: &'static str,
    /// `MASTER_HOST` or `SOURCE_HOST`, and so on.
    prefix: &'static str,
    /// `Slave_IO_Running` or `Replica_IO_Running`.
    thread: &'static str,
}

/// `8.0.36-28` or `10.11.6-MariaDB-0+deb12u1` as (8, 0, 36); what does not parse is 0.
fn numeric_version(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The statements that point the clone at `source` (`host`, MySQL port) from `c`.
pub(super) fn change_master(
    req: &CloneRequest,
    source: (&str, u16),
    info: &SourceInfo,
    c: &Coordinates,
) -> String {
    let w = info.syntax.words();
    let p = w.prefix;
    let mut common = format!(
        "{p}_HOST={}, {p}_PORT={}, {p}_USER={}, {p}_PASSWORD={}",
        sql_str(source.0),
        source.1,
        sql_str(&req.replication_user),
        sql_str(&req.replication_password)
    );
    if info.syntax.source {
        // MySQL 8's default caching_sha2_password refuses a replica that connects
        // without TLS unless it may ask the source for its RSA key.
        common.push_str(", GET_SOURCE_PUBLIC_KEY = 1");
    }
    let (change, start, stop) = (w.change, w.start, w.stop);
    // Our literals need no backslash escaping in this mode (see sql_str).
    let mode = "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';";
    let reset = if info.syntax.reset_binary_logs {
        "RESET BINARY LOGS AND GTIDS"
    } else {
        "RESET MASTER"
    };
    let sql = match (&c.gtid, info.vendor) {
        (Some(g), Vendor::Mariadb) => format!(
            "{stop}; SET GLOBAL gtid_slave_pos = {}; {change} {common}, MASTER_USE_GTID = slave_pos; {start};\n",
            sql_str(g)
        ),
        (Some(g), _) => format!(
            "{stop}; {reset}; SET GLOBAL gtid_purged = {}; {change} {common}, {p}_AUTO_POSITION = 1; {start};\n",
            sql_str(g)
        ),
        (None, _) => format!(
            "{stop}; {change} {common}, {p}_LOG_FILE = {}, {p}_LOG_POS = {}; {start};\n",
            sql_str(&c.file),
            c.position
        ),
    };
    format!("{mode}\n{sql}")
}

/// Waits until both replication threads (`Slave_IO_Running` and `Slave_SQL_Running`,
/// or `Replica_…` on MySQL 8.0.23 and later) are `Yes`.
pub(super) async fn wait_for_replication(
    dst: &Host,
    syntax: Syntax,
    ctx: &JobCtx,
) -> Result<String, CloneError> {
    let w = syntax.words();
    let show = format!("{}\\G", w.show);
    let (io_name, sql_name) = (
        format!("{}_IO_Running", w.thread),
        format!("{}_SQL_Running", w.thread),
    );
    let deadline = Instant::now() + REPLICATION_LIMIT;
    loop {
        let out = dst.sql(&format!("reading {}", w.show), &show, "").await?;
        let field = |name: &str| {
            out.lines()
                .filter_map(|l| l.trim().split_once(": "))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let (io, sqlt) = (field(&io_name), field(&sql_name));
        if io == "Yes" && sqlt == "Yes" {
            return Ok(format!("{io_name} and {sql_name} are Yes"));
        }
        // A thread that stopped with an error (wrong password, missing binlog) will
        // not recover by waiting: report it now.
        let errors = [(&io_name, "Last_IO_Error"), (&sql_name, "Last_SQL_Error")];
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
                    "after {} s {io_name} = {io:?}, {sql_name} = {sqlt:?}; Last_IO_Error: {}; Last_SQL_Error: {}",
                    REPLICATION_LIMIT.as_secs(),
                    field("Last_IO_Error"),
                    field("Last_SQL_Error")
                ),
            ));
        }
        pause(ctx, Duration::from_secs(1)).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quoting() {
        assert_eq!(sql_str("a'b\\c"), "'a''b\\c'");
    }

    #[test]
    fn each_server_gets_the_replication_statements_it_knows() {
        let of = |vendor, version| Syntax::of(vendor, version);
        let old = Syntax {
            source: false,
            reset_binary_logs: false,
        };
        assert_eq!(of(Vendor::Mariadb, "11.4.2-MariaDB-log"), old);
        assert_eq!(of(Vendor::Oracle, "5.7.44-log"), old);
        assert_eq!(of(Vendor::Percona, "8.0.22-13"), old);
        let source = Syntax {
            source: true,
            reset_binary_logs: false,
        };
        assert_eq!(of(Vendor::Percona, "8.0.36-28"), source);
        assert_eq!(
            of(Vendor::Oracle, "8.4.3"),
            Syntax {
                source: true,
                reset_binary_logs: true
            }
        );
        assert_eq!(numeric_version("10.11.6-MariaDB-0+deb12u1"), (10, 11, 6));
        assert_eq!(numeric_version("garbage"), (0, 0, 0));
    }

    #[test]
    fn mysql_8_4_is_pointed_at_its_source_with_the_new_statements() {
        let req = CloneRequest {
            source: "db1".into(),
            destination: "db2".into(),
            replication_user: "repl".into(),
            replication_password: "it's".into(),
            compress: false,
        };
        let info = |vendor, version| SourceInfo {
            vendor,
            syntax: Syntax::of(vendor, version),
            server_id: 1,
            gtid_mode: true,
        };
        let gtid = Coordinates {
            file: "binlog.000002".into(),
            position: 157,
            gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into()),
            server_id: 1,
        };
        let sql = change_master(&req, ("db1", 3306), &info(Vendor::Oracle, "8.4.3"), &gtid);
        assert!(
            sql.contains(
                "STOP REPLICA; RESET BINARY LOGS AND GTIDS; SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'; \
                 CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='it''s', \
                 GET_SOURCE_PUBLIC_KEY = 1, SOURCE_AUTO_POSITION = 1; START REPLICA;"
            ),
            "{sql}"
        );
        let file = Coordinates { gtid: None, ..gtid };
        let sql = change_master(
            &req,
            ("db1", 3306),
            &info(Vendor::Mariadb, "10.11.6-MariaDB"),
            &file,
        );
        assert!(
            sql.contains(
                "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='it''s', \
                 MASTER_LOG_FILE = 'binlog.000002', MASTER_LOG_POS = 157; START SLAVE;"
            ),
            "{sql}"
        );
    }

    #[test]
    fn server_id_differs_from_the_source() {
        for _ in 0..100 {
            let id = unique_server_id(5);
            assert!(id >= 1 && id != 5);
        }
    }
}
