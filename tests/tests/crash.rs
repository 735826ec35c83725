//! kill -9 at every step of a backup and a retention (crash points, src/failpoint.rs):
//! after a restart every listed copy restores byte-exact, nothing unrecorded is left
//! on the destination or in keep_local_path, the interrupted job is recorded as
//! failed, and the next run succeeds.
//!
//! gzip is the chain on purpose: a gzip copy left unrecorded has the name and shape of
//! one of TwinDB Backup's, so a leak would show in `ls` as a TwinDB copy.

use std::fs;
use std::time::{Duration, Instant};

use twindb_tests::*;

struct Setup {
    t: tempfile::TempDir,
    src: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn setup(extra: &str) -> Setup {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "gzip", extra);
    let text = fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"local\"\n",
        &format!(
            "backup_destination = \"local\"\nkeep_local_path = \"{}/local\"\n",
            t.path().display()
        ),
    );
    fs::write(&config, text).unwrap();
    Setup { t, src, config }
}

/// Runs `twindbctl run daily` on a daemon that crashes at `point`; returns the id of
/// the job it was running.
fn crash_during_run(s: &Setup, point: &str) -> u64 {
    let mut d = Daemon::start_with_env(&s.config, &[("TWINDB_CRASH_AT", point)]);
    let queued = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    let id = queued["jobs"][0]["job"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("job id in {queued}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.alive() {
        assert!(
            Instant::now() < deadline,
            "twindbd did not reach {point}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = d.log_text();
    assert!(log.contains(&format!("crash point {point}")), "{log}");
    id
}

/// After a restart: the crashed job is recorded as failed, the sweep leaves exactly
/// the listed copies (remote and local), each of which restores byte-exact, and the
/// next run succeeds.
fn check_after_restart(s: &Setup, crashed_job: u64, listed_before: usize) {
    let d = Daemon::start(&s.config);
    // A failed job: twindbctl exits 1 and prints it.
    let job = d.ctl(&["--json", "job", &crashed_job.to_string()]).json();
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"], "twindbd stopped while it ran", "{job}");

    let backups = s.t.path().join("backups");
    let local = s.t.path().join("local");
    let deadline = Instant::now() + Duration::from_secs(20);
    let keys = loop {
        let keys = listed(&d);
        if files_under(&backups) == keys && files_under(&local) == keys {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "unrecorded objects stay: listed {keys:?}, remote {:?}, local {:?}\n{}",
            files_under(&backups),
            files_under(&local),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(keys.len() >= listed_before, "{keys:?}");
    for (i, key) in keys.iter().enumerate() {
        let dst = s.t.path().join(format!("restore-{i}"));
        d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
            .success();
        assert_same_tree(&s.src, &dst);
    }

    // The next run works, and its copy too.
    std::thread::sleep(Duration::from_millis(1100));
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    assert_eq!(out[0]["state"], "succeeded", "{out}");
    let key = out[0]["copies"][0].as_str().unwrap().to_string();
    let dst = s.t.path().join("restore-next");
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&s.src, &dst);
}

fn crash_backup_at(point: &str) {
    let s = setup("");
    // One good copy first: a crash must never cost a copy already listed.
    let d = Daemon::start(&s.config);
    d.ctl(&["run", "daily"]).success();
    assert_eq!(listed(&d).len(), 1);
    drop(d);
    std::thread::sleep(Duration::from_millis(1100));
    let job = crash_during_run(&s, point);
    check_after_restart(&s, job, 1);
}

#[test]
fn kill_9_before_the_put() {
    crash_backup_at("store.before-put");
}

#[test]
fn kill_9_mid_put() {
    crash_backup_at("store.mid-put");
}

#[test]
fn kill_9_after_commit_before_record() {
    crash_backup_at("store.committed");
}

/// Retention keeps one daily copy: the second run deletes the first, and twindbd dies
/// in the middle of that.
fn crash_retention_at(point: &str) {
    let s = setup("\n[retention]\ndaily_copies = 1\n\n[retention_local]\ndaily_copies = 1\n");
    let d = Daemon::start(&s.config);
    d.ctl(&["run", "daily"]).success();
    drop(d);
    std::thread::sleep(Duration::from_millis(1100));
    let job = crash_during_run(&s, point);
    check_after_restart(&s, job, 1);
}

#[test]
fn kill_9_after_retention_recorded_its_deletions() {
    crash_retention_at("retention.recorded");
}

#[test]
fn kill_9_after_retention_deleted_one_object() {
    crash_retention_at("retention.deleted-one");
}

/// kill -9 in the middle of a restore: the staging folder beside `--dst` is removed at
/// the next start, nothing appears at `--dst`, and the restore then works.
#[test]
fn kill_9_mid_restore() {
    let s = setup("");
    let d = Daemon::start(&s.config);
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    let key = out[0]["copies"][0].as_str().unwrap().to_string();
    drop(d);

    let place = s.t.path().join("restores");
    fs::create_dir_all(&place).unwrap();
    let dst = place.join("etc");
    let mut d = Daemon::start_with_env(&s.config, &[("TWINDB_CRASH_AT", "restore.mid-stream")]);
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.alive() {
        assert!(
            Instant::now() < deadline,
            "twindbd did not reach the crash point:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = fs::read_dir(&place)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 1 && left[0].starts_with(".etc.twindb-partial."),
        "the killed restore left its staging folder: {left:?}"
    );

    let d = Daemon::start(&s.config);
    // Removed at start, before any job runs (the socket may answer a moment earlier).
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_dir(&place).unwrap().next().is_some() {
        assert!(
            Instant::now() < deadline,
            "the staging folder stays:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&s.src, &dst);
}
