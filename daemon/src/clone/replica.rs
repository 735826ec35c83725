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

pub(super) fn change_master(
    req: &CloneRequest,
    src: &Host,
    info: &SourceInfo,
    c: &Coordinates,
) -> String {
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
pub(super) async fn wait_for_replication(dst: &Host, ctx: &JobCtx) -> Result<String, CloneError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quoting() {
        assert_eq!(sql_str("a'b\\c"), "'a''b\\c'");
    }

    #[test]
    fn server_id_differs_from_the_source() {
        for _ in 0..100 {
            let id = unique_server_id(5);
            assert!(id >= 1 && id != 5);
        }
    }
}
