//! A binlog file the streamer stored whole becomes one copy, its segments go: the copy
//! is the server's file byte for byte (also encrypted), point-in-time restore reads it
//! with the file still streaming, and a crash between recording the copy and retiring
//! the segments leaves a restorable state that the next start finishes.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::binlog::{
    metric, restore_latest, server_binlogs, stream_config, wait_streamed, STREAM,
};
use twindb_tests::gpg::{have_programs, GpgKey};
use twindb_tests::mariadb::{self, MariaDb};
use twindb_tests::*;

/// Rows larger than a segment, so that each file has several.
fn write_rows(db: &MariaDb, from: u32) {
    for i in 0..12 {
        db.sql(&format!(
            "INSERT INTO shop.t VALUES ({}, REPEAT(UUID(), {}))",
            from + i,
            1 + i * 25
        ));
    }
}

/// The keys `ls` lists under `dbhost/binlog/`, split into consolidated files
/// (`dbhost/binlog/{name}-...`) and segments (`dbhost/binlog/stream/...`).
fn binlog_keys(d: &Daemon) -> (Vec<String>, Vec<String>) {
    ls_keys(d)
        .into_iter()
        .filter(|k| k.starts_with("dbhost/binlog/"))
        .partition(|k| !k.starts_with("dbhost/binlog/stream/"))
}

/// The objects on the local destination under `backups/dbhost/binlog/stream/`.
fn segment_objects(backups: &Path) -> Vec<String> {
    let root = backups.join("dbhost/binlog/stream");
    files_under(&root).into_iter().collect()
}

/// Waits until every file of `names` is listed as one consolidated copy and none of
/// their segments is listed or stored any more.
fn wait_consolidated(d: &Daemon, backups: &Path, names: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (whole, segments) = binlog_keys(d);
        let objects = segment_objects(backups);
        let done = names.iter().all(|n| {
            let dir = format!("/{n}-");
            whole.iter().any(|k| k.contains(&format!("binlog/{n}-")))
                && !segments.iter().any(|k| k.contains(&dir))
                && !objects.iter().any(|o| o.contains(&format!("{n}-")))
        });
        if done {
            return whole;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} not consolidated within 60 s: copies {whole:?}, segments {segments:?}, \
             objects {objects:?}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Restores the newest full copy plus the binlogs to `--until latest` into `dst` and
/// checks the server started on it has the source's rows (`CHECKSUM TABLE`).
fn assert_restores_latest(d: &Daemon, db: &MariaDb, dst: &Path) {
    let restored = restore_latest(d, dst);
    assert_eq!(
        restored.fingerprint(&["shop.t"]),
        db.fingerprint(&["shop.t"]),
        "{}",
        d.log_text()
    );
    restored.stop();
}

/// Waits until the stored bytes of the server's current file reach its end.
fn wait_caught_up(d: &Daemon, backups: &Path, db: &MariaDb) {
    let current = server_binlogs(db).pop().unwrap();
    wait_streamed(d, backups, db, &[current]);
}

#[test]
fn a_rotated_file_becomes_one_copy_of_the_servers_file_and_its_segments_go() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB");
    let t = scratch();
    let backups = t.path().join("backups");
    let d = Daemon::start(&stream_config(t.path(), &db, STREAM));
    d.ctl(&["run", "daily"]).success();
    write_rows(&db, 0);
    db.sql("FLUSH BINARY LOGS");
    write_rows(&db, 100);
    db.sql("FLUSH BINARY LOGS");
    // The open file, still streaming.
    write_rows(&db, 200);
    let mut names = server_binlogs(&db);
    names.pop();
    assert!(names.len() >= 2, "{names:?}");

    let whole = wait_consolidated(&d, &backups, &names);
    for name in &names {
        let key = whole
            .iter()
            .find(|k| k.contains(&format!("binlog/{name}-")))
            .unwrap();
        assert!(key.ends_with(".zst"), "{key}");
        let stored = twindb_tests::binlog::unzstd_file(&backups.join(key));
        assert!(
            stored == fs::read(db.datadir.join(name)).unwrap(),
            "{key} is not the server's {name}"
        );
    }
    assert!(metric(&d, "twindb_binlog_consolidated_total") >= names.len() as f64);
    // Recorded as a closed-file copy: the periodic binlog job copies none of them.
    let jobs = d
        .ctl(&["--json", "run", "hourly", "--binlogs-only"])
        .success()
        .json();
    for j in jobs.as_array().unwrap() {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["copies"].as_array().map(Vec::len), Some(0), "{j}");
    }

    // Point-in-time restore across the consolidated files and the open one.
    wait_caught_up(&d, &backups, &db);
    assert_restores_latest(&d, &db, &t.path().join("restored"));
    d.stop();
}

#[test]
fn a_crash_between_record_and_retire_leaves_a_restorable_state_the_next_start_finishes() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB");
    let t = scratch();
    let backups = t.path().join("backups");
    let config = stream_config(t.path(), &db, STREAM);
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    d.stop();

    let point = "binlog.consolidated.before-retire";
    let d = Daemon::start_with_env(&config, &[("TWINDB_CRASH_AT", point)]);
    write_rows(&db, 0);
    db.sql("FLUSH BINARY LOGS");
    assert_eq!(d.wait_exit(), -1, "killed at {point}");
    let rotated = server_binlogs(&db)[0].clone();

    // Both are there: the file's copy and its segments.
    // Without the streamer: nothing consolidates or retires meanwhile.
    let off = t.path().join("off.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&off, text.replace("enabled = true", "enabled = false")).unwrap();
    let d = Daemon::start(&off);
    let (whole, segments) = binlog_keys(&d);
    let dir = format!("/{rotated}-");
    assert!(
        whole
            .iter()
            .any(|k| k.contains(&format!("binlog/{rotated}-"))),
        "{whole:?}"
    );
    assert!(segments.iter().any(|k| k.contains(&dir)), "{segments:?}");
    assert_restores_latest(&d, &db, &t.path().join("restored-crashed"));
    d.stop();

    // The next start retires the segments, and the stream goes on.
    let d = Daemon::start(&config);
    wait_consolidated(&d, &backups, &[rotated]);
    let (whole, _) = binlog_keys(&d);
    assert_eq!(whole.len(), 1, "consolidated once: {whole:?}");
    write_rows(&db, 100);
    wait_caught_up(&d, &backups, &db);
    assert_restores_latest(&d, &db, &t.path().join("restored"));
    d.stop();
}

#[test]
fn an_encrypted_consolidated_copy_decrypts_to_the_servers_file() {
    if !mariadb::available() || !have_programs("consolidated_gpg", &["gpg", "gpgconf", "zstd"]) {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB");
    let t = scratch();
    let backups = t.path().join("backups");
    let key = GpgKey::generate("binlog@twindb.test");
    let extra = format!(
        "{STREAM}{}",
        key.config_section(&t.path().join("host-gnupg"))
    );
    let d = Daemon::start(&stream_config(t.path(), &db, &extra));
    write_rows(&db, 0);
    db.sql("FLUSH BINARY LOGS");
    let name = server_binlogs(&db)[0].clone();
    let whole = wait_consolidated(&d, &backups, std::slice::from_ref(&name));
    let copy = &whole[0];
    assert!(copy.ends_with(".zst.gpg"), "{copy}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; gpg --homedir {home} --batch --decrypt {stored} | zstd -dc",
            home = key.home().display(),
            stored = backups.join(copy).display(),
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == fs::read(db.datadir.join(&name)).unwrap(),
        "{copy} does not decrypt to the server's {name}"
    );
    d.stop();
}

/// With `keep_local_path`, the local twins of the segments go with them, and the
/// consolidated copy has its own twin, the file.
#[test]
fn with_keep_local_the_segments_local_twins_go_too() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB");
    let t = scratch();
    let backups = t.path().join("backups");
    let local = t.path().join("local");
    let config = stream_config(t.path(), &db, STREAM);
    let text = fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"local\"",
        &format!(
            "backup_destination = \"local\"\nkeep_local_path = \"{}\"",
            local.display()
        ),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    write_rows(&db, 0);
    db.sql("FLUSH BINARY LOGS");
    let name = server_binlogs(&db)[0].clone();
    let whole = wait_consolidated(&d, &backups, std::slice::from_ref(&name));
    let twins = files_under(&local.join("dbhost/binlog"));
    assert!(
        !twins
            .iter()
            .any(|f| f.contains(&format!("{name}-")) && f.starts_with("stream/")),
        "{twins:?}"
    );
    let twin = local.join(&whole[0]);
    assert!(
        twindb_tests::binlog::unzstd_file(&twin) == fs::read(db.datadir.join(&name)).unwrap(),
        "{} is not the server's {name}: {twins:?}",
        twin.display()
    );
    d.stop();
}
