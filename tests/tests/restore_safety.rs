//! Nothing read from a destination or a cache chooses what a restore runs or where it
//! writes, and what a restore extracts is private while it is extracted (docs/safety.md).
//! Against a real MariaDB with real mariabackup.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use twindb_tests::mariadb::{self, batch, mysql_config, MariaDb};
use twindb_tests::*;

/// `shop.archive` is written once, before the first copy, and never changes after.
const TABLES: [&str; 3] = ["shop.orders", "shop.notes", "shop.archive"];

fn shop(db: &MariaDb) {
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM; \
         CREATE TABLE shop.archive(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         USE shop; INSERT INTO shop.archive SELECT seq, CONCAT('archived-', seq) FROM seq_1_to_2000",
    );
}

/// Runs one run type and returns the key of the MySQL copy it made.
fn run(d: &Daemon, run_type: &str) -> String {
    let out = d.ctl(&["--json", "run", run_type]).success();
    let jobs = out.json();
    let mysql = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "backup_mysql")
        .unwrap_or_else(|| panic!("no mysql job: {out:?}"));
    assert_eq!(mysql["state"], "succeeded", "{mysql}");
    mysql["copies"][0].as_str().unwrap().to_string()
}

fn restore(d: &Daemon, key: &str, dst: &Path, cache: Option<&Path>) -> CtlOutput {
    let mut args = vec!["restore", "mysql", key, "--dst", dst.to_str().unwrap()];
    if let Some(c) = cache {
        args.extend(["--cache", c.to_str().unwrap()]);
    }
    d.ctl(&args)
}

/// Starts a server on the restored `dst` and returns its tables' checksums.
fn fingerprint_of(dst: &Path) -> Vec<(String, String, String)> {
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let server = MariaDb::start_restored(dst);
    let fp = server.fingerprint(&TABLES);
    server.stop();
    fp
}

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Rewrites the host's status as someone who can write to the destination could: the
/// status checksum is recomputed, so twindb reads the result as valid.
fn tamper_status(status: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(status).unwrap()).unwrap();
    for c in doc["copies"].as_array_mut().unwrap() {
        edit(c);
    }
    let copies = serde_json::to_string(&doc["copies"]).unwrap();
    doc["sha256"] = hex::encode(Sha256::digest(copies.as_bytes())).into();
    fs::write(status, serde_json::to_string(&doc).unwrap()).unwrap();
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_program_named_in_the_status_is_never_run() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    shop(&db);
    batch(&db, 1);
    let t = scratch();
    let d = Daemon::start(&mysql_config(t.path(), &db, ""));
    let key = run(&d, "daily");
    let want = db.fingerprint(&TABLES);

    // Stand-ins that would do the job (so a restore that ran them could succeed), and
    // leave a mark.
    let evil_dir = t.path().join("evil");
    fs::create_dir(&evil_dir).unwrap();
    let marker = t.path().join("evil-ran");
    let (tool, stream) = (evil_dir.join("backup"), evil_dir.join("stream"));
    script(
        &tool,
        &format!("touch {}; exec mariabackup \"$@\"", marker.display()),
    );
    script(
        &stream,
        &format!("touch {}; exec mbstream \"$@\"", marker.display()),
    );
    let status = t.path().join("backups/dbhost/twindb-status.json");
    tamper_status(&status, |c| {
        if let Some(m) = c.get_mut("mysql").and_then(|m| m.as_object_mut()) {
            m.insert("tool".into(), tool.display().to_string().into());
            m.insert("stream_tool".into(), stream.display().to_string().into());
        }
    });
    let ls = d.ctl(&["--json", "ls"]).success().json();
    assert!(
        ls.to_string().contains(&key),
        "the edited status reads: {ls}"
    );

    let dst = t.path().join("restored");
    restore(&d, &key, &dst, None).success();
    assert!(!marker.exists(), "restore ran the program the status named");
    assert_eq!(fingerprint_of(&dst), want);
}

#[test]
fn a_cache_entry_is_checked_before_use_and_never_followed_through_a_symlink() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    shop(&db);
    batch(&db, 1);
    let t = scratch();
    let d = Daemon::start(&mysql_config(t.path(), &db, ""));
    run(&d, "daily");
    batch(&db, 2);
    let inc = run(&d, "hourly");
    let want = db.fingerprint(&TABLES);
    let cache = t.path().join("cache");
    let dst = |n: u32| t.path().join(format!("restored-{n}"));

    restore(&d, &inc, &dst(0), Some(&cache)).success();
    assert_eq!(fingerprint_of(&dst(0)), want);
    let entries: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let archive = |entry: &Path| {
        files_under(entry)
            .into_iter()
            .find(|p| p.ends_with("shop/archive.ibd"))
            .expect("the entry holds shop/archive.ibd")
    };

    // 1. A file of the entry changed (a disk error, a hand edit): detected, rebuilt.
    // xtrabackup_checkpoints: the incremental's apply reads it and rewrites no part
    // of it before, so a changed one that were used would fail or damage the restore.
    let checkpoints = files_under(entry)
        .into_iter()
        .find(|p| p.ends_with("xtrabackup_checkpoints"))
        .expect("the entry holds xtrabackup_checkpoints");
    let text = fs::read_to_string(&checkpoints).unwrap();
    let changed = text.replace("to_lsn = ", "to_lsn = 1");
    assert_ne!(text, changed, "{text}");
    fs::write(&checkpoints, changed).unwrap();
    restore(&d, &inc, &dst(1), Some(&cache)).success();
    assert_eq!(fingerprint_of(&dst(1)), want, "a changed entry was used");

    // 2. Symlinks in the entry, to a file of someone else's choosing: in place of a
    // file, and under a new name.
    let planted_file = t.path().join("planted-file");
    fs::write(&planted_file, "not a tablespace").unwrap();
    let ibd = archive(entry);
    fs::remove_file(&ibd).unwrap();
    std::os::unix::fs::symlink(&planted_file, &ibd).unwrap();
    // (mariabackup removes unknown .ibd files when it applies the incremental; a
    // name it does not know stays.)
    std::os::unix::fs::symlink(&planted_file, checkpoints.with_file_name("planted-link")).unwrap();
    restore(&d, &inc, &dst(2), Some(&cache)).success();
    for f in files_under(&dst(2)) {
        assert!(
            !fs::symlink_metadata(&f).unwrap().file_type().is_symlink(),
            "a symlink from the cache was copied into the datadir: {}",
            f.display()
        );
    }
    assert_eq!(fingerprint_of(&dst(2)), want);
    assert_eq!(
        fs::read_to_string(&planted_file).unwrap(),
        "not a tablespace"
    );

    // 3. The entry itself is a symlink to a tree of someone else's choosing.
    let planted = t.path().join("planted");
    fs::create_dir(&planted).unwrap();
    fs::write(planted.join("PLANTED"), "x").unwrap();
    fs::remove_dir_all(entry).unwrap();
    std::os::unix::fs::symlink(&planted, entry).unwrap();
    restore(&d, &inc, &dst(3), Some(&cache)).success();
    assert!(
        !dst(3).join("PLANTED").exists(),
        "the symlinked entry was followed"
    );
    assert_eq!(fingerprint_of(&dst(3)), want);
    assert_eq!(
        fs::read_dir(&planted).unwrap().count(),
        1,
        "the planted tree is untouched"
    );
}

#[test]
fn restore_staging_is_private_whatever_the_umask() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    shop(&db);
    batch(&db, 1);
    let t = scratch();
    // A stream extractor that records the mode of the folder it extracts into, then
    // does the job.
    let probe = t.path().join("staging-mode");
    let extractor = t.path().join("extract.sh");
    script(
        &extractor,
        &format!(
            "prev=''; for a; do [ \"$prev\" = -C ] && stat -c %a \"$a\" >> {}; prev=$a; done\n\
             exec mbstream \"$@\"",
            probe.display()
        ),
    );
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xbstream_binary = \"{}\"", extractor.display()),
    );
    let d = Daemon::start_with_umask(&config, "000");
    let key = run(&d, "daily");
    let want = db.fingerprint(&TABLES);
    let dst = t.path().join("restored");
    restore(&d, &key, &dst, None).success();
    assert_eq!(
        fs::read_to_string(&probe).unwrap().trim(),
        "700",
        "the staging folder must be 0700 while the copy is extracted"
    );
    let config_dir = dst.join("_config");
    if config_dir.exists() {
        for f in files_under(&config_dir) {
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} holds my.cnf secrets", f.display());
        }
    }
    assert_eq!(fingerprint_of(&dst), want);
}
