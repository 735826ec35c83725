//! The binlog streamer's stored files as a test reads them back (tests/tests/binlog_*.rs):
//! the config that turns streaming on, and each stored binlog file decoded by hand,
//! whether it is still its segments or was consolidated into one copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mariadb::{mysql_config, MariaDb};
use crate::{ls_keys, Daemon};

/// Streaming with a short `max_lag` and small segments, so that tests see several.
pub const STREAM: &str = "[binlog]\nenabled = true\nmax_lag = \"1s\"\nsegment_size = \"8KiB\"\n";

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

/// `zstd -d -c` of `bytes`: how the test configs store copies.
pub fn unzstd(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args(["-d", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "zstd -d of {} bytes", bytes.len());
    out.stdout
}

/// [`unzstd`] of a stored object.
pub fn unzstd_file(path: &Path) -> Vec<u8> {
    unzstd(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
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
    decode: &dyn Fn(&[u8]) -> Vec<u8>,
) -> BTreeMap<String, Vec<u8>> {
    // Objects listed can be retired (consolidated) before they are read: list again,
    // a little later (a retirement of many segments deletes them one by one).
    let mut missing = PathBuf::new();
    for _ in 0..50 {
        match try_stored_files(d, backups, decode) {
            Ok(files) => return files,
            Err(path) => missing = path,
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "listed objects kept vanishing before they were read (5 s), the last {}; listed:\n{}\nlog:\n{}",
        missing.display(),
        ls_keys(d).join("\n"),
        d.log_text()
    );
}

fn try_stored_files(
    d: &Daemon,
    backups: &Path,
    decode: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<BTreeMap<String, Vec<u8>>, PathBuf> {
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
                let path = backups.join(&key);
                whole.insert(binlog_name(file), decode(&read(&path)?));
            }
            _ => {}
        }
    }
    let mut files = BTreeMap::new();
    for (name, mut parts) in segments {
        if whole.contains_key(&name) {
            continue;
        }
        parts.sort();
        let mut bytes = Vec::new();
        for (_, path) in parts {
            bytes.extend(decode(&read(&path)?));
        }
        files.insert(name, bytes);
    }
    files.extend(whole);
    Ok(files)
}

/// The object's bytes, or its path when it is gone.
fn read(path: &Path) -> Result<Vec<u8>, PathBuf> {
    fs::read(path).map_err(|_| path.to_path_buf())
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

/// Waits until the streamed bytes of every file in `names` equal the server's file.
pub fn wait_streamed(
    d: &Daemon,
    backups: &Path,
    db: &MariaDb,
    names: &[String],
) -> BTreeMap<String, Vec<u8>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let streamed = streamed_files(d, backups);
        let same = names.iter().all(|n| {
            let server = as_closed(fs::read(db.datadir.join(n)).unwrap());
            streamed.get(n) == Some(&server)
        });
        if same {
            return streamed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not catch up within 60 s: {:?}\n{}",
            streamed
                .iter()
                .map(|(k, v)| (k, v.len()))
                .collect::<Vec<_>>(),
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Restores the newest full copy plus the stored binlogs to `--until latest` into
/// `dst` and starts a server on it.
pub fn restore_latest(d: &Daemon, dst: &Path) -> MariaDb {
    let out = d.ctl(&[
        "restore",
        "mysql",
        "--until",
        "latest",
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log_text());
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    MariaDb::start_restored(dst)
}
