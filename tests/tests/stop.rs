//! Every job can be stopped (docs/safety.md): cancel, timeout and SIGTERM end a job
//! whose tool hangs, or whose source read blocks in the kernel, within the bound; the
//! tool's whole process group is gone, nothing is listed, Galera is resynced, and the
//! lane takes the next job.
//!
//! The hanging tools are shell scripts that ignore SIGTERM and start a child of their
//! own (which inherits the ignored SIGTERM), so only a SIGKILL to the whole process
//! group ends them. Each writes its pids to a marker file when it starts: the tests
//! wait on that, never on a sleep.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use twindb_tests::fuse::{self, HungFile};
use twindb_tests::mariadb::{self, mysql_config, MariaDb};
use twindb_tests::*;

/// The promise: a stopped job ends within this (design.md, promise 4).
const BOUND: Duration = Duration::from_secs(30);

/// A stand-in for mariabackup. While `DIR/hang` exists it ignores SIGTERM, starts a
/// `sleep` of its own and waits, after writing "its pid, the sleep's pid" to
/// `DIR/<name>.pids`; with `--prepare` only it hangs when `prepare_only`. Otherwise it
/// runs the real mariabackup.
fn hanging_tool(dir: &Path, prepare_only: bool) -> PathBuf {
    let script = dir.join("hanging-mariabackup.sh");
    let condition = if prepare_only {
        format!(
            "[ -e {hang} ] && case \" $* \" in *' --prepare '*) true;; *) false;; esac",
            hang = dir.join("hang").display()
        )
    } else {
        format!("[ -e {} ]", dir.join("hang").display())
    };
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nif {condition}; then\n  trap '' TERM\n  sleep 1000 &\n  echo $$ $! > {pids}.tmp && mv {pids}.tmp {pids}\n  wait\n  wait\n  exit 1\nfi\nexec mariabackup \"$@\"\n",
            pids = dir.join("tool.pids").display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    fs::write(dir.join("hang"), "").unwrap();
    script
}

/// Waits for the stand-in's marker; returns its pids.
fn wait_for_tool(dir: &Path) -> Vec<i32> {
    let marker = dir.join("tool.pids");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs::read_to_string(&marker) {
            return text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "the stand-in tool never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is a live process (a zombie waiting for init is not).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn assert_gone(pids: &[i32]) {
    // The killed sleep is an orphan that init reaps: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pids {
        assert!(
            !alive(*p),
            "process {p} of the tool's group is still running"
        );
    }
}

/// Starts a daily run without waiting; returns the id of its job of `kind`.
fn start_run(d: &Daemon, kind: &str) -> u64 {
    let out = d.ctl(&["--json", "run", "daily", "--no-wait"]).success();
    out.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} job: {out:?}"))["job"]["id"]
        .as_u64()
        .unwrap()
}

/// The job's info (twindbctl exits 1 for a failed or cancelled job: not checked).
fn job(d: &Daemon, id: u64) -> Value {
    d.ctl(&["--json", "job", &id.to_string()]).json()
}

/// Waits until job `id` has ended, at most `limit`; returns its info.
fn wait_ended(d: &Daemon, id: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let info = job(d, id);
        let state = info["state"].as_str().unwrap().to_string();
        if !matches!(state.as_str(), "queued" | "running") {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} is still {state} {} s after it was stopped: {info}\n{}",
            limit.as_secs(),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_running(d: &Daemon, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job(d, id)["state"] != "running" {
        assert!(Instant::now() < deadline, "job {id} never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn schema(db: &MariaDb) {
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)); \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40))",
    );
    mariadb::batch(db, 1);
}

fn no_mysql_copy(d: &Daemon) {
    let keys = ls_keys(d);
    assert!(
        !keys.iter().any(|k| k.contains("/mysql/")),
        "nothing may be listed: {keys:?}"
    );
}

/// `extra` goes into `[daemon]`.
fn with_daemon_keys(config: &Path, extra: &str) {
    let text = fs::read_to_string(config).unwrap();
    let text = text.replacen(
        "run_at_start = false\n",
        &format!("run_at_start = false\n{extra}\n"),
        1,
    );
    fs::write(config, text).unwrap();
}

#[test]
fn a_cancelled_backup_whose_tool_hangs_ends_and_its_process_group_is_gone() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    schema(&db);
    let t = scratch();
    let tool = hanging_tool(t.path(), false);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    let id = start_run(&d, "backup_mysql");
    let pids = wait_for_tool(t.path());
    assert_eq!(pids.len(), 2);

    let asked = Instant::now();
    d.ctl(&["cancel", &id.to_string()]).success();
    let info = wait_ended(&d, id, BOUND);
    assert_eq!(info["state"], "cancelled", "{info}");
    assert!(asked.elapsed() < BOUND);
    assert_gone(&pids);
    no_mysql_copy(&d);

    // The lane is free and the next backup works.
    fs::remove_file(t.path().join("hang")).unwrap();
    let id = start_run(&d, "backup_mysql");
    let info = wait_ended(&d, id, Duration::from_secs(300));
    assert_eq!(info["state"], "succeeded", "{info}");
}

#[test]
fn a_backup_whose_tool_hangs_times_out() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    schema(&db);
    let t = scratch();
    let tool = hanging_tool(t.path(), false);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    with_daemon_keys(&config, "backup_timeout = \"3s\"");
    let d = Daemon::start(&config);
    let id = start_run(&d, "backup_mysql");
    let pids = wait_for_tool(t.path());
    let info = wait_ended(&d, id, BOUND + Duration::from_secs(3));
    assert_eq!(info["state"], "failed", "{info}");
    let error = info["error"].as_str().unwrap();
    assert!(error.contains("timed out after 3 s"), "{error}");
    assert_gone(&pids);
    no_mysql_copy(&d);
}

#[test]
fn sigterm_stops_twindbd_while_a_tool_hangs() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    schema(&db);
    let t = scratch();
    let tool = hanging_tool(t.path(), false);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    start_run(&d, "backup_mysql");
    let pids = wait_for_tool(t.path());
    let asked = Instant::now();
    // Daemon::stop panics unless twindbd exits within 30 s.
    assert_eq!(d.stop(), 0);
    assert!(asked.elapsed() < BOUND);
    assert_gone(&pids);
}

#[test]
fn a_cancelled_galera_backup_whose_tool_hangs_turns_wsrep_desync_off() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start_galera();
    schema(&db);
    let t = scratch();
    let tool = hanging_tool(t.path(), false);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    let id = start_run(&d, "backup_mysql");
    let pids = wait_for_tool(t.path());
    assert_eq!(
        db.sql("SELECT @@wsrep_desync"),
        "1",
        "desynced for the backup"
    );
    d.ctl(&["cancel", &id.to_string()]).success();
    let info = wait_ended(&d, id, BOUND);
    assert_eq!(info["state"], "cancelled", "{info}");
    assert_eq!(
        db.sql("SELECT @@wsrep_desync"),
        "0",
        "wsrep_desync must be OFF after a cancelled backup"
    );
    assert_gone(&pids);
}

#[test]
fn a_cancelled_files_backup_whose_read_blocks_in_the_kernel_ends() {
    if !fuse::available() {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "before the hung file\n").unwrap();
    let hung = HungFile::mount(&src.join("hung-nfs-file"), 1 << 20);
    let config = files_config(t.path(), &[&src], "gzip", "");
    let d = Daemon::start(&config);
    let id = start_run(&d, "backup_files");
    wait_running(&d, id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hung.reads() == 0 {
        assert!(Instant::now() < deadline, "the backup never read the file");
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    d.ctl(&["cancel", &id.to_string()]).success();
    let info = wait_ended(&d, id, BOUND);
    assert_eq!(info["state"], "cancelled", "{info}");
    assert!(asked.elapsed() < BOUND);
    assert!(ls_keys(&d).is_empty(), "nothing may be listed");
    // The stuck thread is left behind; the daemon still stops.
    let asked = Instant::now();
    assert_eq!(d.stop(), 0);
    assert!(asked.elapsed() < BOUND);
    drop(hung);
}

#[test]
fn a_cancelled_restore_whose_prepare_hangs_leaves_nothing() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    schema(&db);
    let t = scratch();
    let tool = hanging_tool(t.path(), true);
    let config = mysql_config(
        t.path(),
        &db,
        &format!("xtrabackup_binary = \"{}\"", tool.display()),
    );
    let d = Daemon::start(&config);
    // The backup runs the real mariabackup: only --prepare hangs.
    let id = start_run(&d, "backup_mysql");
    let info = wait_ended(&d, id, Duration::from_secs(300));
    assert_eq!(info["state"], "succeeded", "{info}");
    let key = info["copies"][0].as_str().unwrap().to_string();

    let parent = t.path().join("restore-here");
    fs::create_dir_all(&parent).unwrap();
    let dst = parent.join("datadir");
    let mut follower = Command::new(bin("twindbctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["restore", "mysql", &key, "--dst", dst.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = wait_for_tool(t.path());
    let jobs = d.ctl(&["--json", "jobs"]).success().json();
    let restore = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "restore")
        .unwrap_or_else(|| panic!("no restore job: {jobs}"))["id"]
        .as_u64()
        .unwrap();
    let asked = Instant::now();
    d.ctl(&["cancel", &restore.to_string()]).success();
    let info = wait_ended(&d, restore, BOUND);
    assert_eq!(info["state"], "cancelled", "{info}");
    assert!(asked.elapsed() < BOUND);
    assert_gone(&pids);
    assert!(!dst.exists(), "nothing at --dst");
    let left: Vec<_> = fs::read_dir(&parent).unwrap().collect();
    assert!(left.is_empty(), "the staging folder is removed: {left:?}");
    let _ = follower.wait();
}
