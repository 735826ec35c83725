//! MySQL chains (full, incremental, binary logs) through the remote destinations, with
//! GPG and with `keep_local_path`, each restore proven by starting a server on it and
//! comparing row counts and `CHECKSUM TABLE` with the source's at that moment.
//!
//! The combinations: ssh + GPG + keep_local_path (the local copy is split off before
//! encryption, so the two copies differ), S3 + keep_local_path, GCS + GPG.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use twindb_tests::gpg::{have_programs, GpgKey};
use twindb_tests::mariadb::{self, batch, mysql_config, MariaDb};
use twindb_tests::servers::{GcsServer, S3Server};
use twindb_tests::sshd::Sshd;
use twindb_tests::*;

const TABLES: [&str; 2] = ["shop.orders", "shop.notes"];

type Fingerprint = Vec<(String, String, String)>;

/// Where the copies go and what is done to them on the way.
struct Combo<'a> {
    /// `backup_destination`.
    destination: &'a str,
    /// Its section (`[ssh]`, `[s3]`, `[gcs]`).
    section: String,
    gpg: Option<&'a GpgKey>,
    keep_local: bool,
}

/// A MySQL config for `db` whose copies go to `combo`'s destination.
fn config(root: &Path, db: &MariaDb, combo: &Combo) -> PathBuf {
    let path = mysql_config(root, db, "");
    let text = fs::read_to_string(&path).unwrap();
    let local = format!(
        "backup_destination = \"local\"\n\n[local]\npath = \"{}/backups\"\n",
        root.display()
    );
    assert!(text.contains(&local), "mysql_config changed its layout");
    let mut destination = format!("backup_destination = \"{}\"\n", combo.destination);
    if combo.keep_local {
        destination.push_str(&format!(
            "keep_local_path = \"{}\"\n",
            root.join("kept").display()
        ));
    }
    let mut text = text.replace(&local, &destination);
    text.push_str(&format!("\n{}\n", combo.section));
    if let Some(key) = combo.gpg {
        text.push_str(&key.config_section(&root.join("host-gnupg")));
    }
    fs::write(&path, text).unwrap();
    path
}

/// Runs `args` and returns the MySQL copy it made (None for `--binlogs-only`).
fn run(d: &Daemon, args: &[&str]) -> Option<String> {
    let mut all = vec!["--json", "run"];
    all.extend_from_slice(args);
    let out = d.ctl(&all).success();
    let mut key = None;
    for j in out.json().as_array().unwrap() {
        assert_eq!(j["state"], "succeeded", "{j}");
        if j["kind"] == "backup_mysql" {
            key = j["copies"][0].as_str().map(str::to_string);
        }
    }
    key
}

/// Restores with `args` (a key, or a PITR target) into a new folder under `root`,
/// starts a server on it and returns the tables' fingerprint and the job's message.
fn restore(d: &Daemon, root: &Path, name: &str, args: &[&str]) -> (Fingerprint, String) {
    let dst = root.join(name);
    let mut all = vec!["restore", "mysql", "--dst", dst.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = d.ctl(&all);
    assert_eq!(out.code, 0, "{args:?}: {out:?}\n{}", d.log_text());
    // _config is not a database: out of the datadir before starting, as the message says.
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let server = MariaDb::start_restored(&dst);
    let fp = server.fingerprint(&TABLES);
    server.stop();
    (fp, out.stdout)
}

/// Sleeps past the next second boundary (binlog timestamps have one-second resolution).
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

/// Full, incremental and binary logs through `combo`; each restored and compared, a
/// point in time too; with keep_local_path, restored from the local copies and again
/// with them deleted, from the destination.
fn full_incremental_and_pitr(combo: Combo) {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM",
    );
    let t = scratch();
    let d = Daemon::start(&config(t.path(), &db, &combo));

    batch(&db, 1);
    let full = run(&d, &["daily"]).expect("a full copy");
    let at_full = db.fingerprint(&TABLES);
    batch(&db, 2);
    let inc = run(&d, &["hourly"]).expect("an incremental copy");
    let at_inc = db.fingerprint(&TABLES);
    batch(&db, 3);
    // Row events too (UUID() is unsafe for statement logging).
    db.sql("UPDATE shop.orders SET v = UUID() WHERE id % 100 = 0");
    let at_target = db.fingerprint(&TABLES);
    next_second();
    let until = db.sql("SELECT NOW()");
    next_second();
    batch(&db, 4);
    run(&d, &["hourly", "--binlogs-only"]);

    // What was stored, and how.
    let ls = d.ctl(&["--json", "ls"]).success().json();
    let copies = ls["copies"].as_array().unwrap();
    let remote = |key: &str| {
        copies
            .iter()
            .find(|c| c["key"] == key && c["location"] == "remote")
            .unwrap_or_else(|| panic!("{key} is not on the destination: {ls}"))
    };
    assert_eq!(remote(&full)["backup_type"], "full", "{ls}");
    assert_eq!(remote(&inc)["backup_type"], "incremental", "{ls}");
    let binlogs: Vec<&serde_json::Value> = copies
        .iter()
        .filter(|c| c["kind"] == "binlog" && c["location"] == "remote")
        .collect();
    assert!(!binlogs.is_empty(), "binary logs are copied: {ls}");
    for c in std::iter::once(remote(&full))
        .chain([remote(&inc)])
        .chain(binlogs.iter().copied())
    {
        let encrypted = c["modifiers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "gpg");
        assert_eq!(encrypted, combo.gpg.is_some(), "{c}");
    }
    let local: Vec<&serde_json::Value> =
        copies.iter().filter(|c| c["location"] == "local").collect();
    if combo.keep_local {
        for key in [&full, &inc] {
            // Split off before encryption: plain, under the key without `.gpg`.
            let plain = key.strip_suffix(".gpg").unwrap_or(key);
            let copy = local
                .iter()
                .find(|c| c["key"] == plain)
                .unwrap_or_else(|| panic!("{key} is kept locally as {plain}: {ls}"));
            assert_eq!(copy["modifiers"], serde_json::json!(["zstd"]), "{copy}");
        }
    } else {
        assert!(local.is_empty(), "{ls}");
    }

    let source = if combo.keep_local {
        "from the local copy"
    } else {
        "from the destination"
    };
    let (got, msg) = restore(&d, t.path(), "full", &[&full]);
    assert_eq!(got, at_full, "{full}: the state at its backup time");
    assert!(msg.contains(source), "{msg}");
    let (got, msg) = restore(&d, t.path(), "inc", &[&inc]);
    assert_eq!(got, at_inc, "{inc}: the state at its backup time");
    assert!(msg.contains(source), "{msg}");
    let (got, msg) = restore(&d, t.path(), "pitr", &["--until", &until]);
    assert_eq!(got, at_target, "--until {until}: the state at that time");
    assert!(
        msg.contains("replayed binary logs") && msg.contains(&format!("restored {inc} ")),
        "{msg}"
    );

    if combo.keep_local {
        // The local copies gone: every restore falls back to the destination.
        let kept = t.path().join("kept");
        for c in &local {
            fs::remove_file(kept.join(c["key"].as_str().unwrap())).unwrap();
        }
        let (got, msg) = restore(&d, t.path(), "inc-remote", &[&inc]);
        assert_eq!(got, at_inc, "{inc} from the destination");
        assert!(msg.contains("from the destination"), "{msg}");
        // (A PITR message does not name its sources; with the local copies gone, the
        // bytes can only have come from the destination.)
        let (got, _) = restore(&d, t.path(), "pitr-remote", &["--until", &until]);
        assert_eq!(got, at_target, "--until {until} from the destination");
    }
    assert_eq!(d.stop(), 0);
}

#[test]
fn through_ssh_with_gpg_and_keep_local_path() {
    if !mariadb::available() || !have_programs("through_ssh", &["gpg", "gpgconf"]) {
        return;
    }
    let Some(server) = Sshd::start_or_skip("through_ssh_with_gpg_and_keep_local_path") else {
        return;
    };
    let key = GpgKey::generate("backup@twindb.test");
    full_incremental_and_pitr(Combo {
        destination: "ssh",
        section: server.config_section(),
        gpg: Some(&key),
        keep_local: true,
    });
}

#[test]
fn through_s3_with_keep_local_path() {
    if !mariadb::available() {
        return;
    }
    let Some(server) = S3Server::start() else {
        return;
    };
    full_incremental_and_pitr(Combo {
        destination: "s3",
        section: server.config_section(""),
        gpg: None,
        keep_local: true,
    });
}

#[test]
fn through_gcs_with_gpg() {
    if !mariadb::available() || !have_programs("through_gcs", &["gpg", "gpgconf"]) {
        return;
    }
    let Some(server) = GcsServer::start() else {
        return;
    };
    let key = GpgKey::generate("backup@twindb.test");
    full_incremental_and_pitr(Combo {
        destination: "gcs",
        section: server.config_section(""),
        gpg: Some(&key),
        keep_local: false,
    });
}
