//! MySQL backups against a real MariaDB with real mariabackup, proven by restoring each
//! copy and starting a server on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use twindb_tests::mariadb::{self, batch, mysql_config, MariaDb};
use twindb_tests::*;

#[path = "mysql/cache.rs"]
mod cache;
#[path = "mysql/config.rs"]
mod config;

const TABLES: [&str; 2] = ["shop.orders", "shop.notes"];

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

fn restore_and_fingerprint(
    d: &Daemon,
    key: &str,
    dst: &Path,
    cache: &Path,
    my_cnf: &[(PathBuf, String)],
) -> (Vec<(String, String, String)>, String) {
    let out = d
        .ctl(&[
            "restore",
            "mysql",
            key,
            "--dst",
            dst.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
        .success();
    // The server's my.cnf files as they were at backup time, under _config/<abs path>,
    // the one `!includedir` names too.
    for (path, text) in my_cnf {
        let restored = dst.join("_config").join(path.strip_prefix("/").unwrap());
        assert_eq!(
            fs::read_to_string(&restored).ok().as_deref(),
            Some(text.as_str()),
            "{} is restored as {}",
            path.display(),
            restored.display()
        );
    }
    // _config is not a database: move it out before starting, as the message says.
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let server = MariaDb::start_restored(dst);
    let fp = server.fingerprint(&TABLES);
    server.stop();
    (fp, out.stdout)
}

/// A my.cnf of the test's own (not the host's /etc/mysql/my.cnf, which may be missing)
/// that includes a conf.d folder; returns each file's path and content, my.cnf first.
fn test_my_cnf(root: &Path) -> Vec<(PathBuf, String)> {
    let etc = root.join("etc");
    fs::create_dir_all(etc.join("conf.d")).unwrap();
    let files = vec![
        (
            etc.join("my.cnf"),
            format!(
                "[mysqld]\ninnodb_buffer_pool_size = 64M\n!includedir {}/conf.d\n",
                etc.display()
            ),
        ),
        (
            etc.join("conf.d/server.cnf"),
            "[mysqld]\nmax_connections = 42\n".to_string(),
        ),
    ];
    for (path, text) in &files {
        fs::write(path, text).unwrap();
    }
    files
}

#[test]
fn full_and_incremental_copies_restore_to_the_state_at_backup_time() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM",
    );
    let t = scratch();
    let my_cnf = test_my_cnf(t.path());
    let config = mysql_config(
        t.path(),
        &db,
        &format!(
            "config_files = [\"{}\"]\nprepare_memory = \"200MiB\"",
            my_cnf[0].0.display()
        ),
    );
    // Debug logs show every tool's command line.
    let text = fs::read_to_string(&config).unwrap().replace(
        "run_at_start = false",
        "run_at_start = false\nlog = \"info,twindb=debug\"",
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);

    batch(&db, 1);
    let full1 = run(&d, "daily");
    let at_full1 = db.fingerprint(&TABLES);
    batch(&db, 2);
    let inc1 = run(&d, "hourly");
    let at_inc1 = db.fingerprint(&TABLES);
    batch(&db, 3);
    let inc2 = run(&d, "hourly");
    let at_inc2 = db.fingerprint(&TABLES);
    batch(&db, 4);
    let full2 = run(&d, "daily");
    let at_full2 = db.fingerprint(&TABLES);

    let ls = d.ctl(&["--json", "ls", "--type", "mysql"]).success().json();
    let types: Vec<(String, String)> = ls["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["backup_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (key, want) in [
        (&full1, "full"),
        (&inc1, "incremental"),
        (&inc2, "incremental"),
        (&full2, "full"),
    ] {
        assert!(
            types.contains(&(key.clone(), want.to_string())),
            "{key} should be {want}: {types:?}"
        );
    }

    let cache = t.path().join("cache");
    for (i, (key, want)) in [
        (&full1, &at_full1),
        (&inc1, &at_inc1),
        (&inc2, &at_inc2),
        (&full2, &at_full2),
    ]
    .into_iter()
    .enumerate()
    {
        let dst = t.path().join(format!("restored-{i}"));
        let (got, stdout) = restore_and_fingerprint(&d, key, &dst, &cache, &my_cnf);
        assert_eq!(
            &got, want,
            "{key} must restore to the state at its backup time"
        );
        // Each phase's time, per copy: the base of an incremental, then the incremental.
        let phases = match i {
            1 => vec![
                format!("time: download and extract {full1}: "),
                format!("time: prepare {full1}: "),
                format!("time: store in the cache {full1}: "),
                format!("time: download and extract {inc1}: "),
                format!("time: apply incremental {inc1}: "),
            ],
            2 => vec![
                format!("time: copy from the cache {full1}: "),
                format!("time: download and extract {inc2}: "),
                format!("time: apply incremental {inc2}: "),
            ],
            _ => vec![
                format!("time: download and extract {key}: "),
                format!("time: prepare {key}: "),
            ],
        };
        let mut at = 0;
        for p in &phases {
            let found = stdout[at..].find(p.as_str());
            assert!(found.is_some(), "{p} after byte {at}: {stdout}");
            at += found.unwrap();
        }
        if key == &inc1 {
            // Restored after a newer full exists: it still uses its own parent.
            assert!(
                stdout.contains(&format!("incremental on its full copy {full1}")),
                "{stdout}"
            );
        }
    }
    // Both incrementals of full1 shared one cached, prepared full.
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 1);
    // --json: the phases as data.
    let dst = t.path().join("restored-json");
    let out = d
        .ctl(&[
            "--json",
            "restore",
            "mysql",
            &full2,
            "--dst",
            dst.to_str().unwrap(),
        ])
        .success();
    let phases = out.json()[0]["phases"].clone();
    let names: Vec<(&str, &str)> = phases
        .as_array()
        .unwrap_or_else(|| panic!("{phases}"))
        .iter()
        .map(|p| {
            assert!(p["seconds"].as_f64().unwrap() >= 0.0, "{p}");
            (p["phase"].as_str().unwrap(), p["copy"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        [
            ("download and extract", full2.as_str()),
            ("prepare", full2.as_str())
        ]
    );
    // `[mysql] prepare_memory` reached every prepare (fulls and incrementals), and the
    // extractor ran in parallel.
    let log = d.log_text();
    let starts = |tool: &str| {
        log.lines()
            .filter(|l| l.contains("starting") && l.contains(tool))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let prepares: Vec<String> = starts("mariabackup")
        .into_iter()
        .filter(|l| l.contains("--prepare"))
        .collect();
    assert!(prepares.len() >= 4, "{prepares:?}");
    for l in &prepares {
        assert!(l.contains("\"--use-memory=209715200\""), "{l}");
    }
    let extracts = starts("mbstream");
    assert!(!extracts.is_empty(), "{log}");
    for l in &extracts {
        assert!(l.contains("\"--parallel="), "{l}");
    }

    // Binary logs: closed ones are copied, the current one is not, and they decode.
    let binlogs = d
        .ctl(&["--json", "ls", "--type", "binlog"])
        .success()
        .json();
    let keys: Vec<String> = binlogs["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    assert!(keys.len() >= 4, "{keys:?}");
    let current = db.sql("SHOW MASTER STATUS");
    let current = current.split('\t').next().unwrap();
    assert!(
        !keys.iter().any(|k| k.contains(current)),
        "the current binlog {current} must not be copied: {keys:?}"
    );
    let mut decoded = String::new();
    for k in &keys {
        let path = t.path().join("backups").join(k);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -dc '{}' | mariadb-binlog -", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{k} does not decode: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        decoded.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    for n in 1..=3 {
        assert!(
            decoded.contains(&format!("batch{n}-")),
            "the copied binlogs hold batch {n}"
        );
    }

    // verify: a good copy succeeds. Named by its path under the local destination, as
    // TwinDB's ls printed it: the report names the key it resolved to.
    let by_path = t.path().join("backups").join(&inc2);
    let out = d.ctl(&["verify", "mysql", by_path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(report["copy"], inc2.as_str());
    // The success shows in its gauge, labelled with the copy's run type (state.json
    // keeps it across restarts: state.rs's tests).
    let (_, _, metrics) = twindb_tests::sinks::unix_get(&d.socket, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("twindb_last_verify_success_timestamp_seconds{run_type=\"hourly\"}")),
        "{metrics}"
    );

    cache::purge_the_restore_cache(d, &config, t.path(), &cache, &inc2);
}

#[test]
fn a_broken_backup_fails_with_the_reason_and_leaves_nothing() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    let t = scratch();
    let config = mysql_config(t.path(), &db, "");
    // Wrong credentials.
    fs::write(
        &db.defaults_file,
        format!(
            "[client]\nuser=nobody_here\npassword=wrong\nsocket={}\n",
            db.socket.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0, "{out:?}");
    let jobs = out.json();
    let mysql = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "backup_mysql")
        .unwrap();
    assert_eq!(mysql["state"], "failed");
    let error = mysql["error"].as_str().unwrap();
    assert!(error.contains("Access denied"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password must not appear: {error}"
    );
    assert!(ls_keys(&d).is_empty());

    // The backup tool itself failing (as when it is killed): a stand-in that exits 3.
    fs::write(
        &db.defaults_file,
        format!("[client]\nuser=root\nsocket={}\n", db.socket.display()),
    )
    .unwrap();
    let wrapper = t.path().join("failing-backup.sh");
    fs::write(
        &wrapper,
        "#!/bin/sh\necho 'InnoDB: simulated failure' >&2\nexit 3\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    assert_eq!(d.stop(), 0);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", wrapper.display()),
    );
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0);
    let jobs = out.json();
    let mysql = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "backup_mysql")
        .unwrap();
    let error = mysql["error"].as_str().unwrap();
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(
        error.contains("simulated failure"),
        "the tool's stderr tail is in the error: {error}"
    );
    assert!(
        !ls_keys(&d).iter().any(|k| k.contains("/mysql/")),
        "no MySQL copy may be listed"
    );
}

#[test]
fn verify_of_a_corrupted_copy_fails() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)); \
            CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM",
    );
    batch(&db, 1);
    let t = scratch();
    let config = mysql_config(t.path(), &db, "");
    let d = Daemon::start(&config);
    let key = run(&d, "daily");
    let stored = t.path().join("backups").join(&key);
    let mut bytes = fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&stored, bytes).unwrap();
    let out = d.ctl(&["verify", "mysql", &key]);
    assert_ne!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["success"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{report}"
    );
}

/// An intact copy whose restored datadir lacks a tablespace: restore (checksums, extract,
/// prepare) succeeds, the server starts, and only verify's own table check can fail.
#[test]
fn verify_fails_when_a_restored_table_cannot_be_opened() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)); \
            CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM",
    );
    batch(&db, 1);
    let t = scratch();
    // mariabackup itself, except that after a prepare it deletes shop/orders.ibd from
    // the prepared datadir, as a lost file would.
    let tool = t.path().join("mariabackup-losing-a-table.sh");
    fs::write(
        &tool,
        "#!/bin/sh\nmariabackup \"$@\" || exit $?\n\
         case \"$*\" in *--prepare*)\n\
           for a; do case \"$a\" in --target-dir=*) rm \"${a#--target-dir=}/shop/orders.ibd\" || exit 9;; esac; done;;\n\
         esac\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&tool)
        .status()
        .unwrap();
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    let key = run(&d, "daily");
    let out = d.ctl(&["verify", "mysql", &key]);
    assert_ne!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["success"], false, "{report}");
    let error = report["error"].as_str().unwrap();
    // Not the checksum, not the restore: the table check on the started server.
    assert!(
        error.starts_with("table shop.orders cannot be read"),
        "{report}"
    );
    assert!(!error.contains("checksum"), "{report}");
}

/// A stand-in backup tool that records the node's wsrep_desync while it runs, then
/// runs mariabackup (or fails, when `fail` is set).
fn desync_probe(dir: &Path, db: &MariaDb, fail: bool) -> std::path::PathBuf {
    let probe = dir.join("desync-during-backup");
    let script = dir.join(if fail { "probe-fail.sh" } else { "probe.sh" });
    let tail = if fail {
        "echo 'simulated failure' >&2; exit 1".to_string()
    } else {
        "exec mariabackup \"$@\"".to_string()
    };
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nmariadb -uroot --socket={} -N -e 'select @@wsrep_desync' > {}\n{tail}\n",
            db.socket.display(),
            probe.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    script
}

#[test]
fn galera_nodes_are_desynced_for_the_backup_and_always_resynced() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start_galera();
    assert_eq!(db.sql("SELECT @@wsrep_on"), "1");
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)); \
            CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40))",
    );
    batch(&db, 1);
    let t = scratch();
    let probe = t.path().join("desync-during-backup");

    // A successful backup: desynced while it runs, synced after.
    let tool = desync_probe(t.path(), &db, false);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    let at_backup = db.fingerprint(&TABLES);
    let seqno = db.sql("SHOW STATUS LIKE 'wsrep_last_committed'");
    let seqno = seqno.split('\t').nth(1).unwrap().to_string();
    let key = run(&d, "daily");
    assert_eq!(
        fs::read_to_string(&probe).unwrap().trim(),
        "1",
        "wsrep_desync was ON during the backup"
    );
    assert_eq!(db.sql("SELECT @@wsrep_desync"), "0", "and OFF after it");
    // The Galera options reached the tool (docs/mysql.md#galera): --galera-info, and
    // not XtraBackup's --no-backup-locks, which MariaDB does not support.
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("running the backup tool"))
        .unwrap_or_else(|| panic!("no tool command line in the log:\n{log}"));
    assert!(line.contains(" --galera-info"), "{line}");
    assert!(!line.contains("--no-backup-locks"), "{line}");

    // The restore writes grastate.dat from the copy's galera info.
    let dst = t.path().join("restored");
    d.ctl(&["restore", "mysql", &key, "--dst", dst.to_str().unwrap()])
        .success();
    let grastate = fs::read_to_string(dst.join("grastate.dat")).unwrap();
    let uuid = db.sql("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'");
    let uuid = uuid.split('\t').nth(1).unwrap();
    assert!(grastate.contains(&format!("uuid:    {uuid}")), "{grastate}");
    // The node's position at backup time (nothing was written during the backup), so
    // it can rejoin with IST.
    assert!(
        grastate.contains(&format!("seqno:   {seqno}\n")),
        "seqno {seqno}: {grastate}"
    );
    let provider = db.sql("SHOW STATUS LIKE 'wsrep_provider_version'");
    assert!(
        grastate.contains(provider.split('\t').nth(1).unwrap()),
        "{grastate}"
    );
    // And the data: a server started on the restored datadir holds the rows as they
    // were at backup time.
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let restored = MariaDb::start_restored(&dst);
    assert_eq!(
        restored.fingerprint(&TABLES),
        at_backup,
        "the Galera node's copy restores to the state at backup time"
    );
    restored.stop();
    assert_eq!(d.stop(), 0);

    // A failed backup: the node is resynced all the same.
    fs::remove_file(&probe).unwrap();
    let tool = desync_probe(t.path(), &db, true);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    let out = d.ctl(&["run", "daily"]);
    assert_ne!(out.code, 0);
    assert_eq!(fs::read_to_string(&probe).unwrap().trim(), "1");
    assert_eq!(
        db.sql("SELECT @@wsrep_desync"),
        "0",
        "wsrep_desync must be OFF after a failed backup"
    );
}
