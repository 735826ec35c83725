//! Talking to the MySQL/MariaDB server being backed up: connection from the defaults
//! file, what the server is (vendor, version, Galera), binary logs, and its my.cnf files.

mod cnf;
mod throwaway;
mod tool;

use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use serde::{Deserialize, Serialize};

pub use self::cnf::{read_config_files, ConfigFile};
pub use self::throwaway::{mysqld_binary, Throwaway, ThrowawayError};
pub use self::tool::{default_prepare_memory, extract_threads, run_tool, Tool, ToolError};

#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("cannot read the MySQL defaults file {path}: {cause}")]
    DefaultsFile { path: String, cause: std::io::Error },
    #[error("MySQL server at {target}: {cause}")]
    Server {
        target: String,
        cause: mysql_async::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// `[client]` options of a defaults file (what `mysql --defaults-file` would use).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOptions {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<String>,
}

impl ClientOptions {
    pub fn from_defaults_file(path: &Path) -> Result<ClientOptions, MysqlError> {
        let text = std::fs::read_to_string(path).map_err(|cause| MysqlError::DefaultsFile {
            path: path.display().to_string(),
            cause,
        })?;
        Ok(Self::parse(&text))
    }

    /// Reads the client groups; later values win, as in the MySQL clients.
    pub fn parse(text: &str) -> ClientOptions {
        let mut opts = ClientOptions::default();
        let mut in_client = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_client = matches!(
                    group.trim(),
                    "client" | "client-server" | "client-mariadb" | "mysql"
                );
                continue;
            }
            if !in_client {
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), unquote(v.trim())),
                None => (line, String::new()),
            };
            match key.replace('_', "-").as_str() {
                "user" => opts.user = Some(value),
                "password" => opts.password = Some(value),
                "host" => opts.host = Some(value),
                "port" => opts.port = value.parse().ok(),
                "socket" => opts.socket = Some(value),
                _ => {}
            }
        }
        opts
    }

    /// Where we connect, without credentials, for messages.
    pub fn target(&self) -> String {
        match (&self.socket, &self.host) {
            (Some(s), None) => format!("socket {s}"),
            (_, Some(h)) if h != "localhost" => format!("{h}:{}", self.port.unwrap_or(3306)),
            (Some(s), _) => format!("socket {s}"),
            _ => "localhost".into(),
        }
    }

    fn opts(&self) -> OptsBuilder {
        let mut b = OptsBuilder::default()
            .user(self.user.clone().or(Some("root".into())))
            .pass(self.password.clone())
            .stmt_cache_size(0);
        let host = self.host.clone().unwrap_or_else(|| "localhost".into());
        if host == "localhost" || (self.socket.is_some() && self.host.is_none()) {
            let socket = self
                .socket
                .clone()
                .unwrap_or_else(|| "/run/mysqld/mysqld.sock".into());
            b = b.socket(Some(socket)).prefer_socket(true);
        } else {
            b = b
                .ip_or_hostname(host)
                .tcp_port(self.port.unwrap_or(3306))
                .prefer_socket(false);
        }
        b
    }
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Mariadb,
    Percona,
    Oracle,
}

impl Vendor {
    /// Backup tool and stream extractor, as TwinDB 3.x chose them.
    pub fn tools(self) -> (&'static str, &'static str) {
        match self {
            Vendor::Mariadb => ("mariabackup", "mbstream"),
            Vendor::Percona | Vendor::Oracle => ("xtrabackup", "xbstream"),
        }
    }

    /// What the backup tool gets on a Galera node (docs/mysql.md#galera has the table
    /// and the reasons). `--galera-info` always: the copy records the node's
    /// `uuid:seqno`, from which restore writes grastate.dat. `--no-backup-locks` only
    /// for XtraBackup (as TwinDB passed it on PXC): there it makes XtraBackup take FLUSH
    /// TABLES WITH READ LOCK, under which the Galera position it records is consistent
    /// with the data ("--galera-info has no effect when backup locks are used").
    /// mariabackup is not given it: MariaDB documents it as Percona Server's and not
    /// supported with MariaDB Server, 10.11 lists it as obsolete (from 10.4 it locks with
    /// BACKUP STAGE and still records the position), and Enterprise builds lack it.
    pub fn galera_backup_options(self) -> &'static [&'static str] {
        match self {
            Vendor::Mariadb => &["--galera-info"],
            Vendor::Percona | Vendor::Oracle => &["--galera-info", "--no-backup-locks"],
        }
    }

    pub fn mysqld(self) -> &'static str {
        match self {
            Vendor::Mariadb => "mariadbd",
            Vendor::Percona | Vendor::Oracle => "mysqld",
        }
    }

    pub fn from_version(version: &str, comment: &str) -> Vendor {
        if version.to_lowercase().contains("mariadb") {
            Vendor::Mariadb
        } else if comment.to_lowercase().contains("percona") {
            Vendor::Percona
        } else {
            Vendor::Oracle
        }
    }
}

/// What the server is, recorded with every copy.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    pub vendor: Vendor,
    pub version: String,
    pub galera: bool,
    pub wsrep_provider_version: Option<String>,
    pub log_bin: bool,
    pub log_bin_basename: Option<String>,
}

pub struct Server {
    conn: Conn,
    target: String,
}

impl Server {
    pub async fn connect(opts: &ClientOptions) -> Result<Server, MysqlError> {
        let target = opts.target();
        let conn = tokio::time::timeout(Duration::from_secs(30), Conn::new(opts.opts()))
            .await
            .map_err(|_| {
                MysqlError::Other(format!("MySQL server at {target}: no answer within 30 s"))
            })?
            .map_err(|cause| MysqlError::Server {
                target: target.clone(),
                cause,
            })?;
        Ok(Server { conn, target })
    }

    fn err(&self, cause: mysql_async::Error) -> MysqlError {
        MysqlError::Server {
            target: self.target.clone(),
            cause,
        }
    }

    pub async fn query_opt_string(&mut self, sql: &str) -> Result<Option<String>, MysqlError> {
        let row: Option<Option<String>> =
            self.conn.query_first(sql).await.map_err(|e| self.err(e))?;
        Ok(row.flatten())
    }

    pub async fn exec(&mut self, sql: &str) -> Result<(), MysqlError> {
        self.conn.query_drop(sql).await.map_err(|e| self.err(e))
    }

    pub async fn info(&mut self) -> Result<ServerInfo, MysqlError> {
        let version = self
            .query_opt_string("SELECT @@version")
            .await?
            .unwrap_or_default();
        let comment = self
            .query_opt_string("SELECT @@version_comment")
            .await?
            .unwrap_or_default();
        // Unknown on MySQL without wsrep: that means "not Galera", not an error.
        let galera = matches!(
            self.query_opt_string("SELECT @@wsrep_on")
                .await
                .ok()
                .flatten()
                .as_deref(),
            Some("1" | "ON")
        );
        let wsrep_provider_version = if galera {
            self.status_value("wsrep_provider_version").await?
        } else {
            None
        };
        let log_bin = matches!(
            self.query_opt_string("SELECT @@log_bin").await?.as_deref(),
            Some("1" | "ON")
        );
        let log_bin_basename = self
            .query_opt_string("SELECT @@log_bin_basename")
            .await
            .ok()
            .flatten();
        Ok(ServerInfo {
            vendor: Vendor::from_version(&version, &comment),
            version,
            galera,
            wsrep_provider_version,
            log_bin,
            log_bin_basename,
        })
    }

    pub async fn status_value(&mut self, name: &str) -> Result<Option<String>, MysqlError> {
        // SHOW cannot be a prepared statement; names are ours, so check, then inline.
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(MysqlError::Other(format!(
                "bad status variable name {name:?}"
            )));
        }
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.and_then(|(_, v)| v))
    }

    /// Closed and current binary logs, `(name, size)`, in the server's order.
    pub async fn binary_logs(&mut self) -> Result<Vec<String>, MysqlError> {
        let rows: Vec<mysql_async::Row> = self
            .conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0))
            .collect())
    }

    /// Closed and current binary logs with their sizes, in the server's order.
    pub async fn binary_log_sizes(&mut self) -> Result<Vec<(String, u64)>, MysqlError> {
        let rows: Vec<mysql_async::Row> = self
            .conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
            .collect())
    }

    /// User tables, `(schema, table)`.
    pub async fn tables(&mut self) -> Result<Vec<(String, String)>, MysqlError> {
        self.conn
            .query(
                "SELECT table_schema, table_name FROM information_schema.tables \
                 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys')",
            )
            .await
            .map_err(|e| self.err(e))
    }

    /// `CHECK TABLE`'s verdict lines, `(Msg_type, Msg_text)`: a sound table has one
    /// `status` line saying `OK` (warnings and notes may come before it).
    pub async fn check_table(
        &mut self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, MysqlError> {
        let sql = format!(
            "CHECK TABLE `{}`.`{}`",
            schema.replace('`', "``"),
            table.replace('`', "``")
        );
        let rows: Vec<(String, String, String, String)> =
            self.conn.query(sql).await.map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(|(_, _, t, m)| (t, m)).collect())
    }

    /// How many rows `sql` returns (a drill's probe).
    pub async fn count_rows(&mut self, sql: &str) -> Result<usize, MysqlError> {
        let rows: Vec<mysql_async::Row> = self.conn.query(sql).await.map_err(|e| self.err(e))?;
        Ok(rows.len())
    }

    pub async fn disconnect(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// The daemon's one PATH lookup, here too because the MySQL tools are found with it.
pub use crate::process::find_program;

/// The numeric sequence of a binlog name (`mysql-bin.000012` -> 12), for ordering.
pub fn binlog_sequence(name: &str) -> Option<u64> {
    name.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_client_group() {
        let o = ClientOptions::parse(
            "[mysqld]\nuser=mysql\n[client]\nuser = backup\npassword=\"s3 cret\"\nsocket=/run/x.sock\n# c\n[mysqldump]\nuser=z\n",
        );
        assert_eq!(o.user.as_deref(), Some("backup"));
        assert_eq!(o.password.as_deref(), Some("s3 cret"));
        assert_eq!(o.socket.as_deref(), Some("/run/x.sock"));
        assert_eq!(o.target(), "socket /run/x.sock");
    }

    #[test]
    fn vendor_detection_as_twindb() {
        assert_eq!(
            Vendor::from_version("10.11.19-MariaDB-0+deb12u1-log", ""),
            Vendor::Mariadb
        );
        assert_eq!(
            Vendor::from_version("8.0.36-28", "Percona Server (GPL)"),
            Vendor::Percona
        );
        assert_eq!(
            Vendor::from_version("8.0.36", "MySQL Community Server - GPL"),
            Vendor::Oracle
        );
    }

    #[test]
    fn binlogs_order_by_number_not_string() {
        let mut names = vec!["mysql-bin.1000000", "mysql-bin.999999", "mysql-bin.000002"];
        names.sort_by_key(|n| binlog_sequence(n));
        assert_eq!(
            names,
            vec!["mysql-bin.000002", "mysql-bin.999999", "mysql-bin.1000000"]
        );
    }
}
