//! Point-in-time restore against a real MariaDB: full + incremental copies and backed-up
//! binary logs, rolled forward to a time, a GTID and a binlog position, proven by
//! starting a server on each result; and a window with a purged binlog refused.

use std::fs;
use std::path::Path;
use std::time::Duration;

use twindb_tests::mariadb::{self, batch, mysql_config, MariaDb};
use twindb_tests::*;

fn run(d: &Daemon, args: &[&str]) {
    let mut all = vec!["--json", "run"];
    all.extend_from_slice(args);
    let out = d.ctl(&all).success();
    for j in out.json().as_array().unwrap() {
        assert_eq!(j["state"], "succeeded", "{j}");
    }
}

const TABLES: [&str; 2] = ["shop.orders", "shop.notes"];

/// Row counts and `CHECKSUM TABLE`s, as [`MariaDb::fingerprint`] gives them.
type Fingerprint = Vec<(String, String, String)>;

/// The batches (1..=9) present in a restored datadir, whether user `app` exists, and
/// the tables' fingerprint, to compare with the source's at the target.
fn batches_in(dst: &Path) -> (Vec<u32>, bool, Fingerprint) {
    // _config is not a database: out of the datadir before starting, as the message says.
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let server = MariaDb::start_restored(dst);
    let fp = server.fingerprint(&TABLES);
    let orders = server.sql("SELECT DISTINCT FLOOR((id - 1) / 1000) FROM shop.orders ORDER BY 1");
    let notes = server.sql("SELECT id FROM shop.notes ORDER BY id");
    let app = server.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'app'");
    server.stop();
    let orders: Vec<u32> = orders.lines().map(|l| l.parse().unwrap()).collect();
    let notes: Vec<u32> = notes.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(orders, notes, "both tables hold the same batches");
    let count = fs::read_dir(dst.join("shop")).unwrap().count();
    assert!(count > 0);
    (orders, app == "1", fp)
}

/// Sleeps past the next second boundary, so that events before and after differ in
/// their (second-resolution) binlog timestamps.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn restore_to_a_time_a_gtid_and_a_position_then_refuse_a_gap() {
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
    let d = Daemon::start(&mysql_config(t.path(), &db, ""));

    batch(&db, 1);
    run(&d, &["daily"]);
    batch(&db, 2);
    run(&d, &["hourly"]);
    batch(&db, 3);
    // Rows of the copies changed after them; UUID() is unsafe for statement logging, so
    // these come as row events (which a `base64-output=decode-rows` would skip).
    db.sql("UPDATE shop.orders SET v = UUID() WHERE id % 100 = 0");
    // Replayed from the binlogs: needs the grant tables on the temporary server.
    db.sql("CREATE USER app@localhost IDENTIFIED BY 'x'; GRANT SELECT ON shop.* TO app@localhost");
    let at_target = db.fingerprint(&TABLES);
    let gtid = db.sql("SELECT @@gtid_binlog_pos");
    let status = db.sql("SHOW MASTER STATUS");
    let mut fields = status.split('\t');
    let position = format!("{}:{}", fields.next().unwrap(), fields.next().unwrap());
    next_second();
    // The server's local time, as `--until` is read (same host, same time zone).
    let until = db.sql("SELECT NOW()");
    next_second();
    batch(&db, 4);
    run(&d, &["hourly", "--binlogs-only"]);

    let pitr = d.ctl(&["--json", "ls", "--pitr"]).success().json();
    let windows = pitr["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "{pitr}");
    // The target lies inside the window.
    let utc = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let target = chrono::NaiveDateTime::parse_from_str(&until, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_local_timezone(chrono::Local)
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        utc(&windows[0]["from"]) < target && target < utc(&windows[0]["to"]),
        "{until} in {pitr}"
    );
    let text = d.ctl(&["ls", "--pitr"]).success().stdout;
    assert!(text.contains("point-in-time restore is possible"), "{text}");

    let full = d.ctl(&["--json", "ls", "--type", "mysql"]).success().json()["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backup_type"] == "full")
        .map(|c| c["key"].as_str().unwrap().to_string())
        .unwrap();
    for (i, target) in [
        vec!["--until", until.as_str()],
        vec!["--until-gtid", gtid.as_str()],
        vec!["--until-position", position.as_str()],
        // A named, older copy: batch 2 comes from the binlogs too.
        vec![full.as_str(), "--until", until.as_str()],
    ]
    .into_iter()
    .enumerate()
    {
        let dst = t.path().join(format!("pitr-{i}"));
        let mut args = vec!["restore", "mysql", "--dst", dst.to_str().unwrap()];
        args.extend_from_slice(&target);
        let out = d.ctl(&args);
        assert_eq!(out.code, 0, "{target:?}: {out:?}\n{}", d.log_text());
        assert!(out.stdout.contains("replayed binary logs"), "{out:?}");
        // The newest copy before the target (the incremental, on its full), or the
        // one named.
        let base = if i == 3 {
            format!("restored {full} ")
        } else {
            "restored dbhost/hourly/mysql/".to_string()
        };
        assert!(out.stdout.contains(&base), "{target:?}: {out:?}");
        // Each phase's time: the copy's, then the replay's.
        for phase in ["time: download and extract ", "time: binlog replay: "] {
            assert!(out.stdout.contains(phase), "{phase}: {out:?}");
        }
        let (got, app, fp) = batches_in(&dst);
        assert_eq!(got, vec![1, 2, 3], "{target:?}: batches 1-3, not 4");
        assert_eq!(
            fp, at_target,
            "{target:?}: the rows of the source at the target"
        );
        assert!(app, "{target:?}: the replayed CREATE USER is there");
    }

    // Binlogs purged on the server before they were copied: a gap in the window.
    let before_gap = db.sql("SHOW MASTER STATUS");
    let gap_first = before_gap.split('\t').next().unwrap().to_string();
    batch(&db, 5);
    db.sql("FLUSH BINARY LOGS");
    batch(&db, 6);
    db.sql("FLUSH BINARY LOGS");
    let current = db.sql("SHOW MASTER STATUS");
    let current = current.split('\t').next().unwrap().to_string();
    // MariaDB keeps a binlog its InnoDB checkpoint still needs and purges it later:
    // retry until the first file of the gap is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        db.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
        if !db.sql("SHOW BINARY LOGS").contains(&gap_first) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{gap_first} was not purged"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    batch(&db, 7);
    run(&d, &["hourly", "--binlogs-only"]);
    next_second();
    let later = db.sql("SELECT NOW()");
    let dst = t.path().join("pitr-gap");
    let out = d.ctl(&[
        "restore",
        "mysql",
        "--until",
        &later,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!("binary log {gap_first} ")) && all.contains("is not backed up"),
        "the gap is named: {all}"
    );
    assert!(!dst.exists(), "nothing is restored");
    // The window still ends before the gap.
    let pitr = d.ctl(&["--json", "ls", "--pitr"]).success().json();
    let windows = pitr["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "{pitr}");
    let last = windows[0]["last_binlog"].as_str().unwrap();
    assert!(
        last < gap_first.as_str(),
        "the window ends before {gap_first}: {pitr}"
    );
}

/// After `RESET MASTER` the server's binlog names start again: the new files are copied
/// (under keys of their own, beside the old copies of the same names), the job warns,
/// a copy taken after the reset rolls forward through the new files only, and a copy
/// from before it is refused with the reason instead of replaying the wrong files.
#[test]
fn reset_master_starts_a_new_history_that_restores() {
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
    let d = Daemon::start(&mysql_config(t.path(), &db, ""));
    let binlog_keys = |d: &Daemon| -> Vec<String> {
        d.ctl(&["--json", "ls", "--type", "binlog"])
            .success()
            .json()["copies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap().to_string())
            .collect()
    };

    batch(&db, 1);
    run(&d, &["daily"]);
    let before_reset = d.ctl(&["--json", "ls", "--type", "mysql"]).success().json()["copies"][0]
        ["key"]
        .as_str()
        .unwrap()
        .to_string();
    batch(&db, 2);
    run(&d, &["hourly", "--binlogs-only"]);
    let old = binlog_keys(&d);
    assert!(!old.is_empty());

    next_second();
    db.sql("RESET MASTER");
    batch(&db, 3);
    let out = d
        .ctl(&["--json", "run", "hourly", "--binlogs-only"])
        .success()
        .json();
    let job = &out.as_array().unwrap()[0];
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        job["warnings"]
            .to_string()
            .contains("do not continue the copied ones"),
        "the restart is reported: {job}"
    );
    let new: Vec<String> = binlog_keys(&d)
        .into_iter()
        .filter(|k| !old.contains(k))
        .collect();
    let first_new = db.sql("SHOW BINARY LOGS");
    let first_new = first_new
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap();
    assert!(
        new.iter().any(|k| k.contains(&format!("/{first_new}-"))),
        "the new {first_new} is copied beside the old one: old {old:?}, new {new:?}"
    );
    assert!(
        old.iter().any(|k| k.contains(&format!("/{first_new}-"))),
        "an old copy of that name is kept: {old:?}"
    );

    next_second();
    run(&d, &["daily"]);
    batch(&db, 4);
    // Row events (UUID() is unsafe for statement logging), replayed too.
    db.sql("UPDATE shop.orders SET v = UUID() WHERE id % 100 = 0");
    let at_target = db.fingerprint(&TABLES);
    next_second();
    let until = db.sql("SELECT NOW()");
    next_second();
    batch(&db, 5);
    run(&d, &["hourly", "--binlogs-only"]);

    let dst = t.path().join("after-reset");
    let out = d.ctl(&[
        "restore",
        "mysql",
        "--until",
        &until,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log_text());
    assert!(out.stdout.contains("replayed binary logs"), "{out:?}");
    let (got, _, fp) = batches_in(&dst);
    assert_eq!(
        got,
        vec![1, 2, 3, 4],
        "the rows written after RESET MASTER, not batch 5"
    );
    assert_eq!(fp, at_target, "the rows of the source at the target");

    // The copy from before the reset cannot reach that time: said, nothing restored.
    let dst = t.path().join("across-reset");
    let out = d.ctl(&[
        "restore",
        "mysql",
        &before_reset,
        "--until",
        &until,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("started again"), "{all}");
    assert!(!dst.exists(), "nothing is restored");
}
