//! The binlog streamer's stored files as a test reads them back (tests/tests/binlog_*.rs):
//! the config that turns streaming on, and each stored binlog file decoded by hand,
//! whether it is still its segments or was consolidated into one copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mariadb::{mysql_config, MariaDb};
use crate::{ls_keys, Daemon};

/// The config of [`mysql_config`] with `binlog` (a `[binlog]` section, and any other
/// section) appended.
pub fn stream_config(root: &Path, db: &MariaDb, binlog: &str) -> PathBuf {
    let path = mysql_config(root, db, "");
    let mut text = fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(binlog);
    fs::write(&path, text).unwrap();
    path
}

/// `zstd -d -c path`: how the test configs store copies.
pub fn unzstd(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "zstd -d {}", path.display());
    out.stdout
}

/// `mysql-bin.000001-2026-11-25_10_00_00...` -> `mysql-bin.000001`
fn binlog_name(file: &str) -> String {
    file.split('-').take(2).collect::<Vec<_>>().join("-")
}

/// The stored binlog files by name, each decoded with `decode`: a streamed file's
/// segments concatenated in offset order, or the one copy it was consolidated into
/// (that one wins while both are there).
pub fn stored_files(
    d: &Daemon,
    backups: &Path,
    decode: &dyn Fn(&Path) -> Vec<u8>,
) -> BTreeMap<String, Vec<u8>> {
    let mut segments: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    let mut whole = BTreeMap::new();
    for key in ls_keys(d) {
        let parts: Vec<&str> = key.split('/').collect();
        match parts[..] {
            ["dbhost", "binlog", "stream", _server, file, segment] => segments
                .entry(binlog_name(file))
                .or_default()
                .push((segment.to_string(), backups.join(&key))),
            ["dbhost", "binlog", file] => {
                whole.insert(binlog_name(file), decode(&backups.join(&key)));
            }
            _ => {}
        }
    }
    let mut files: BTreeMap<String, Vec<u8>> = segments
        .into_iter()
        .map(|(name, mut parts)| {
            parts.sort();
            let bytes = parts.iter().flat_map(|(_, path)| decode(path)).collect();
            (name, bytes)
        })
        .collect();
    files.extend(whole);
    files
}

/// [`stored_files`] of zstd copies.
pub fn streamed_files(d: &Daemon, backups: &Path) -> BTreeMap<String, Vec<u8>> {
    stored_files(d, backups, &unzstd)
}

/// The server's file as it is once closed: the format description's "in use" flag
/// (byte 21) is cleared when the server closes it.
pub fn as_closed(mut file: Vec<u8>) -> Vec<u8> {
    if file.len() > 21 {
        file[21] &= !1;
    }
    file
}

/// SHOW BINARY LOGS, oldest first.
pub fn server_binlogs(db: &MariaDb) -> Vec<String> {
    db.sql("SHOW BINARY LOGS")
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// The value of an unlabelled metric on /metrics.
pub fn metric(d: &Daemon, name: &str) -> f64 {
    let (_, _, body) = crate::sinks::unix_get(&d.socket, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}
