//! Restore drills (`[verify]`): a drill fires at its cron time, restores the latest
//! MySQL chain on a real MariaDB and the latest files copy, checks them, and reports
//! each one's recovery time in the job, `status` and the metrics; a drill over a copy
//! damaged on the destination fails, notifies, and counts in the metrics.

use std::fs;
use std::path::Path;
use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::Value;
use twindb_tests::mariadb::{self, batch, mysql_config, MariaDb};
use twindb_tests::sinks::{free_port, wait_for, HttpSink};
use twindb_tests::{fetch_url, files_config, make_tree, scratch, Daemon};

fn shop(db: &MariaDb) {
    db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM",
    );
}

fn metrics(port: u16) -> String {
    let (code, body) = fetch_url(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

/// The value of the sample of `name` with `labels` (e.g. `kind="mysql"`).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// The restore drills among the daemon's jobs.
fn drills(d: &Daemon) -> Vec<Value> {
    d.ctl(&["--json", "jobs"]).success().json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["title"] == "restore drill")
        .cloned()
        .collect()
}

/// Adds `text` at the end of the config and reloads it.
fn add_to_config(d: &Daemon, config: &Path, text: &str) {
    let mut all = fs::read_to_string(config).unwrap();
    all.push_str(text);
    fs::write(config, all).unwrap();
    d.hup();
}

#[test]
fn a_scheduled_drill_restores_the_latest_copies_and_reports_their_rto() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    shop(&db);
    batch(&db, 1);
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let port = free_port();
    let config = mysql_config(t.path(), &db, "");
    let text = fs::read_to_string(&config).unwrap().replace(
        "[source]\nbackup_mysql = true\n",
        &format!(
            "metrics_listen = \"127.0.0.1:{port}\"\n\n[source]\nbackup_mysql = true\nbackup_dirs = [{:?}]\n",
            src.display().to_string()
        ),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    batch(&db, 2);
    d.ctl(&["run", "hourly"]).success();
    // After the last copy, in a binary log copied since: only a drill rolled forward
    // with the binlogs finds it.
    db.sql("INSERT INTO shop.orders VALUES (99999, 'after the last copy')");
    d.ctl(&["run", "hourly", "--binlogs-only"]).success();
    assert!(drills(&d).is_empty(), "no drill before its schedule");

    // The drill's schedule: one second a little ahead, in UTC, so that it fires once.
    let at = Utc::now() + chrono::Duration::seconds(8);
    let at = at.with_nanosecond(0).unwrap();
    add_to_config(
        &d,
        &config,
        &format!(
            "\n[verify]\nschedule = \"{} {} {} * * *\"\nroll_forward = true\ncheck_schemas = [\"shop\"]\nprobe_sql = \"SELECT id FROM shop.orders WHERE id = 99999\"\n",
            at.second(),
            at.minute(),
            at.hour()
        ),
    );
    let status = wait_for(Duration::from_secs(20), "the next drill in status", || {
        let s = d.ctl(&["--json", "status"]).success().json();
        (s["next_drill"].as_str().is_some()).then_some(s)
    });
    assert_eq!(
        status["next_drill"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap(),
        at,
        "{status}"
    );

    let job = wait_for(Duration::from_secs(300), "the scheduled drill", || {
        drills(&d)
            .into_iter()
            .find(|j| matches!(j["state"].as_str(), Some("succeeded" | "failed")))
    });
    assert_eq!(job["state"], "succeeded", "{job}\n{}", d.log_text());
    let started: chrono::DateTime<Utc> = job["started_at"].as_str().unwrap().parse().unwrap();
    assert!(started >= at, "fired at {started}, scheduled at {at}");
    let reports = job["drill"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{job}");
    let mysql = reports.iter().find(|r| r["kind"] == "mysql").unwrap();
    assert_eq!(mysql["success"], true, "{mysql}");
    let rto = mysql["rto_seconds"].as_f64().unwrap();
    assert!(rto > mysql["restore_seconds"].as_f64().unwrap(), "{mysql}");
    let checks = mysql["checks"].to_string();
    assert!(
        checks.contains("CHECK TABLE: 2 tables of shop OK"),
        "{checks}"
    );
    assert!(checks.contains("probe query: 1 rows"), "{checks}");
    assert!(checks.contains("rolled forward"), "{checks}");
    // The latest copy: the hourly incremental, restored on its full.
    assert!(
        mysql["copy"].as_str().unwrap().contains("/hourly/mysql/"),
        "{mysql}"
    );
    let files = reports.iter().find(|r| r["kind"] == "files").unwrap();
    assert_eq!(files["success"], true, "{files}");
    assert!(
        files["checks"][0].as_str().unwrap().contains("files match"),
        "{files}"
    );

    // status keeps the last drill; the metrics have each kind's RTO and success time.
    let status = d.ctl(&["--json", "status"]).success().json();
    assert_eq!(status["last_drill"]["id"], job["id"], "{status}");
    let human = d.ctl(&["status"]).success().stdout;
    assert!(human.contains("restore drill: succeeded"), "{human}");
    assert!(human.contains("recovered in"), "{human}");
    let m = metrics(port);
    let got = sample(&m, "twindb_verify_restore_seconds", "kind=\"mysql\"").unwrap();
    assert!((got - rto).abs() < 1e-6, "{got} vs {rto}");
    assert!(sample(&m, "twindb_verify_restore_seconds", "kind=\"files\"").is_some());
    let last = sample(
        &m,
        "twindb_verify_last_success_timestamp_seconds",
        "kind=\"mysql\"",
    );
    assert!(last.unwrap() >= at.timestamp() as f64, "{m}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_drill_over_a_damaged_copy_fails_notifies_and_counts() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    // Big enough that the damage is inside the tar's data, not in its padding.
    fs::write(
        src.join("big.bin"),
        twindb_tests::pseudo_random(256 * 1024, 7),
    )
    .unwrap();
    let hook = HttpSink::start();
    let port = free_port();
    let config = files_config(
        t.path(),
        &[&src],
        "none",
        &format!(
            "\n[verify]\nfiles = true\n\n[notify]\nwebhook_url = \"{}\"\n",
            hook.url("/hook")
        ),
    );
    let text = fs::read_to_string(&config).unwrap().replace(
        "run_at_start = false\n",
        &format!("run_at_start = false\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    let key = out[0]["copies"][0].as_str().unwrap().to_string();

    // A healthy copy passes.
    let ok = d.ctl(&["verify", "drill"]).success().stdout;
    assert!(ok.contains("restore drill succeeded"), "{ok}");
    assert!(hook.requests().is_empty(), "on_success is off");

    // One byte flipped in the middle of the stored copy.
    let stored = t.path().join("backups").join(&key);
    let mut bytes = fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&stored, bytes).unwrap();

    let out = d.ctl(&["--json", "verify", "drill"]);
    assert_eq!(out.code, 1, "{out:?}");
    let reports = out.json();
    assert_eq!(reports[0]["success"], false, "{reports}");
    let error = reports[0]["error"].as_str().unwrap();
    assert!(error.contains("sha256"), "{error}");

    let req = wait_for(Duration::from_secs(30), "the webhook notice", || {
        hook.requests().into_iter().next()
    });
    let body = req.json();
    assert_eq!(body["event"], "verify_failed", "{body}");
    assert!(body["text"].as_str().unwrap().contains("Drill: "), "{body}");
    let m = metrics(port);
    assert_eq!(
        sample(&m, "twindb_verify_failures_total", "kind=\"files\""),
        Some(1.0),
        "{m}"
    );
    assert!(sample(&m, "twindb_verify_restore_seconds", "kind=\"files\"").is_some());
    assert_eq!(d.stop(), 0);
}
