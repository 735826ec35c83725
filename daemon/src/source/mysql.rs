//! A physical copy of a MySQL/MariaDB server: `xtrabackup`/`mariabackup --backup
//! --stream=xbstream`. LSNs and binlog coordinates are read from the files written by
//! `--extra-lsndir`, not parsed from stderr.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Source, SourceReport};
use crate::mysql::{Tool, Vendor};
use crate::pipeline::Cancel;

pub struct MySqlSource {
    pub tool: String,
    pub defaults_file: PathBuf,
    /// `Some(lsn)` for an incremental copy: changes after the parent's to_lsn.
    pub incremental_lsn: Option<u64>,
    pub galera: bool,
    /// The server's vendor: which Galera options its tool takes.
    pub vendor: Vendor,
    /// Scratch folder: `target/` for the tool, `lsn/` for its metadata.
    pub work_dir: PathBuf,
    /// The job's cancel: stops the tool even while it writes nothing.
    pub cancel: Cancel,
}

impl MySqlSource {
    pub fn lsn_dir(&self) -> PathBuf {
        self.work_dir.join("lsn")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.tool);
        // --defaults-file must come first.
        cmd.arg(format!("--defaults-file={}", self.defaults_file.display()))
            .arg("--backup")
            .arg("--stream=xbstream")
            .arg(format!(
                "--target-dir={}",
                self.work_dir.join("target").display()
            ))
            .arg(format!("--extra-lsndir={}", self.lsn_dir().display()));
        if let Some(lsn) = self.incremental_lsn {
            cmd.arg(format!("--incremental-lsn={lsn}"));
        }
        if self.galera {
            cmd.args(self.vendor.galera_backup_options());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        cmd
    }
}

impl Source for MySqlSource {
    fn describe(&self) -> String {
        format!("{} --backup", self.tool)
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport> {
        std::fs::create_dir_all(self.work_dir.join("target"))?;
        std::fs::create_dir_all(self.lsn_dir())?;
        let cmd = self.command();
        // At INFO: which options the tool got (Galera's, an incremental's LSN) is what a
        // DBA asks first when a copy surprises them. No secret is on this line: the
        // password stays in the defaults file.
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        tracing::info!(command = %format!("{} {}", self.tool, args.join(" ")), "running the backup tool");
        let mut tool = Tool::spawn(cmd, &self.cancel)?;
        let mut stdout = tool.take_stdout();
        if let Err(e) = crate::pipeline::copy(&mut stdout, out) {
            // Cancelled or a later stage failed: stop the tool, keep its story.
            let tail = tool.tail();
            tool.kill();
            if crate::pipeline::is_propagated(&e) {
                return Err(e);
            }
            return Err(io::Error::other(format!(
                "{e}; {} said:\n{tail}",
                self.tool
            )));
        }
        tool.wait()?;
        Ok(SourceReport::default())
    }
}

/// What the tool recorded about the copy it made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XtrabackupMeta {
    pub backup_type: String,
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
}

impl XtrabackupMeta {
    /// Reads `xtrabackup_checkpoints` and `xtrabackup_info` from an `--extra-lsndir`.
    pub fn read(dir: &Path) -> io::Result<XtrabackupMeta> {
        let checkpoints = std::fs::read_to_string(dir.join("xtrabackup_checkpoints"))
            .map_err(|e| io::Error::new(e.kind(), format!("xtrabackup_checkpoints: {e}")))?;
        let info = std::fs::read_to_string(dir.join("xtrabackup_info")).unwrap_or_default();
        let mut m = XtrabackupMeta::default();
        for (k, v) in key_values(&checkpoints) {
            match k {
                "backup_type" => m.backup_type = v.to_string(),
                "from_lsn" => m.from_lsn = v.parse().unwrap_or(0),
                "to_lsn" => m.to_lsn = v.parse().unwrap_or(0),
                "last_lsn" => m.last_lsn = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        if m.to_lsn == 0 {
            return Err(io::Error::other("xtrabackup_checkpoints has no to_lsn"));
        }
        for (k, v) in key_values(&info) {
            if k == "binlog_pos" {
                parse_binlog_pos(v, &mut m);
            }
        }
        // MySQL's xtrabackup writes GTIDs as the third field of xtrabackup_binlog_info.
        if let Ok(b) = std::fs::read_to_string(dir.join("xtrabackup_binlog_info")) {
            let mut fields = b.split_whitespace();
            if let (Some(f), Some(p)) = (fields.next(), fields.next()) {
                m.binlog_file.get_or_insert_with(|| f.to_string());
                m.binlog_position = m.binlog_position.or(p.parse().ok());
            }
            if let Some(g) = fields.next() {
                m.gtid.get_or_insert_with(|| g.to_string());
            }
        }
        Ok(m)
    }
}

fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// `filename 'mysql-bin.000001', position '639', GTID of the last change '0-1-2'`
fn parse_binlog_pos(v: &str, m: &mut XtrabackupMeta) {
    let quoted: Vec<&str> = v.split('\'').skip(1).step_by(2).collect();
    if v.contains("filename") {
        m.binlog_file = quoted
            .first()
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty());
    }
    if v.contains("position") {
        m.binlog_position = quoted.get(1).and_then(|s| s.parse().ok());
    }
    if v.contains("GTID") {
        m.gtid = quoted
            .get(2)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(vendor: Vendor, galera: bool) -> Vec<String> {
        let source = MySqlSource {
            tool: "tool".into(),
            defaults_file: "/etc/my.cnf".into(),
            incremental_lsn: None,
            galera,
            vendor,
            work_dir: "/w".into(),
            cancel: Cancel::default(),
        };
        source
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn galera_options_by_vendor() {
        let has = |v, g, a: &str| args(v, g).iter().any(|x| x == a);
        for v in [Vendor::Mariadb, Vendor::Percona, Vendor::Oracle] {
            assert!(has(v, true, "--galera-info"), "{v:?}");
            assert!(!has(v, false, "--galera-info"), "{v:?}");
            assert!(!has(v, false, "--no-backup-locks"), "{v:?}");
        }
        assert!(has(Vendor::Percona, true, "--no-backup-locks"));
        assert!(has(Vendor::Oracle, true, "--no-backup-locks"));
        assert!(!has(Vendor::Mariadb, true, "--no-backup-locks"));
        assert!(args(Vendor::Mariadb, true)[0].starts_with("--defaults-file="));
    }

    #[test]
    fn reads_mariabackup_metadata() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("xtrabackup_checkpoints"),
            "backup_type = incremental\nfrom_lsn = 129186\nto_lsn = 159694\nlast_lsn = 160989\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("xtrabackup_info"),
            "tool_name = mariabackup\nbinlog_pos = filename 'mysql-bin.000002', position '11057', GTID of the last change '0-1-4'\n",
        )
        .unwrap();
        let m = XtrabackupMeta::read(t.path()).unwrap();
        assert_eq!((m.from_lsn, m.to_lsn, m.last_lsn), (129186, 159694, 160989));
        assert_eq!(m.binlog_file.as_deref(), Some("mysql-bin.000002"));
        assert_eq!(m.binlog_position, Some(11057));
        assert_eq!(m.gtid.as_deref(), Some("0-1-4"));
    }
}
