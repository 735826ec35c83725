//! The binlog streamer against a real MariaDB: the stored segments are the server's
//! files byte for byte, and the stream resumes without a gap or a duplicate.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::binlog::{
    metric, restore_latest, server_binlogs, stream_config, streamed_files, wait_streamed, STREAM,
};
use twindb_tests::mariadb::{self, MariaDb};
use twindb_tests::servers::S3Server;
use twindb_tests::*;

#[test]
fn streamed_segments_are_the_servers_files_byte_for_byte() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB");
    let t = scratch();
    let backups = t.path().join("backups");
    let d = Daemon::start(&stream_config(t.path(), &db, STREAM));
    // Rows larger than a segment, and files rotated mid-stream.
    for round in 0..3 {
        for i in 0..20 {
            let id = round * 100 + i;
            db.sql(&format!(
                "INSERT INTO shop.t VALUES ({id}, REPEAT(UUID(), {}))",
                1 + i * 20
            ));
        }
        db.sql("FLUSH BINARY LOGS");
    }
    db.sql("INSERT INTO shop.t VALUES (999, 'in the open file')");
    let names = server_binlogs(&db);
    assert!(names.len() >= 4, "{names:?}");
    let streamed = wait_streamed(&d, &backups, &db, &names);

    // mariadb-binlog reads what was stored, every file.
    let dir = t.path().join("read");
    fs::create_dir_all(&dir).unwrap();
    for name in &names {
        let path = dir.join(name);
        fs::write(&path, &streamed[name]).unwrap();
        let out = Command::new("mariadb-binlog").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "mariadb-binlog {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = String::from_utf8_lossy(
        &Command::new("mariadb-binlog")
            .arg(dir.join(names.last().unwrap()))
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(last.contains("in the open file"), "{last}");

    // `status` shows the streamer where the server writes.
    let status = d.ctl(&["--json", "status"]).success().json();
    let stream = &status["binlog_stream"];
    assert_eq!(stream["state"], "running", "{status}");
    assert_eq!(
        stream["file"].as_str(),
        names.last().map(String::as_str),
        "{status}"
    );
    assert_eq!(
        stream["position"].as_u64(),
        Some(
            fs::metadata(db.datadir.join(names.last().unwrap()))
                .unwrap()
                .len()
        ),
        "{status}"
    );
    let text = d.ctl(&["status"]).success().stdout;
    assert!(
        text.contains("binlog stream: running at mysql-bin."),
        "{text}"
    );

    // The periodic binlog job copies none of the files streamed whole.
    let out = d
        .ctl(&["--json", "run", "hourly", "--binlogs-only"])
        .success();
    let jobs = out.json();
    for j in jobs.as_array().unwrap() {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["copies"].as_array().map(Vec::len), Some(0), "{j}");
    }
    d.stop();
}

/// A row every ~50 ms, each carrying its commit time, through one client session.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(db: &MariaDb) -> Writer {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        db.sql(
            "CREATE DATABASE IF NOT EXISTS app; \
             CREATE TABLE IF NOT EXISTS app.w(id INT AUTO_INCREMENT PRIMARY KEY, t DATETIME(3)) ENGINE=InnoDB",
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut client = Command::new("mariadb")
            .arg("-uroot")
            .arg(format!("--socket={}", db.socket.display()))
            .arg("--force")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stdin = client.stdin.take().unwrap();
            while !flag.load(Ordering::SeqCst) {
                if writeln!(stdin, "INSERT INTO app.w(t) VALUES (NOW(3));").is_err()
                    || stdin.flush().is_err()
                {
                    break;
                }
                // The write load itself, not a synchronisation.
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(stdin);
            let _ = client.kill();
            let _ = client.wait();
        });
        Writer { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// The end of the point-in-time window `ls --pitr` shows, once it passes `after`.
fn wait_window_past(d: &Daemon, after: chrono::DateTime<chrono::Utc>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pitr = d.ctl(&["--json", "ls", "--pitr"]).success().json();
        let to = pitr["windows"]
            .as_array()
            .and_then(|w| w.last())
            .and_then(|w| w["to"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if to.is_some_and(|t| t > after) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the window did not pass {after}: {pitr}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_ok(d: &Daemon, args: &[&str]) {
    let mut all = vec!["--json", "run"];
    all.extend_from_slice(args);
    for j in d.ctl(&all).success().json().as_array().unwrap() {
        assert_eq!(j["state"], "succeeded", "{j}");
    }
}

#[test]
fn a_lost_server_loses_at_most_max_lag_of_writes() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    let t = scratch();
    let max_lag = 2;
    let d = Daemon::start(&stream_config(
        t.path(),
        &db,
        &format!("[binlog]\nenabled = true\nmax_lag = \"{max_lag}s\"\n"),
    ));
    let writer = Writer::start(&db);
    run_ok(&d, &["daily"]);
    wait_window_past(&d, chrono::Utc::now() + chrono::Duration::seconds(3));

    // The host is lost: kill -9, and its datadir is gone.
    let killed_at = chrono::Local::now().naive_local();
    drop(db);
    writer.stop();

    let restored = restore_latest(&d, &t.path().join("restored"));
    let rows = restored.sql("SELECT COUNT(*), MAX(id), MAX(t) FROM app.w");
    let f: Vec<&str> = rows.split('\t').collect();
    assert_eq!(f[0], f[1], "no row missing before the newest: {rows}");
    let newest = chrono::NaiveDateTime::parse_from_str(f[2], "%Y-%m-%d %H:%M:%S%.3f").unwrap();
    let loss = (killed_at - newest).num_milliseconds() as f64 / 1000.0;
    println!("measured loss: {loss:.3} s of writes (max_lag {max_lag} s)");
    assert!(
        loss <= (max_lag + 2) as f64,
        "rows committed {loss} s before the kill are missing\n{}",
        d.log_text()
    );
    restored.stop();
    d.stop();
}

fn soon(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::seconds(secs)
}

/// Once the stream holds a last row written now, the table restored to `--until
/// latest` is the source's, row for row: no event lost, none replayed twice (a
/// duplicate would also fail the replay on the primary key).
fn assert_restores_the_source(d: &Daemon, db: &MariaDb, objects: &Path, dst: &Path) {
    db.sql("INSERT INTO app.w(t) VALUES (NOW(3))");
    wait_caught_up(d, objects, db);
    let source = db.fingerprint(&["app.w"]);
    let restored = restore_latest(d, dst);
    assert_eq!(restored.fingerprint(&["app.w"]), source, "{}", d.log_text());
    restored.stop();
    assert!(!d.log_text().contains("gap"), "{}", d.log_text());
}

/// Waits until the stored segments reach the server's current position.
fn wait_caught_up(d: &Daemon, objects: &Path, db: &MariaDb) {
    let status = db.sql("SHOW MASTER STATUS");
    let mut f = status.split('\t');
    let (file, pos): (String, usize) =
        (f.next().unwrap().into(), f.next().unwrap().parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while streamed_files(d, objects).get(&file).map_or(0, Vec::len) < pos {
        assert!(
            Instant::now() < deadline,
            "the stream did not reach {file}:{pos}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the daemon's log, past `from`, says `what`.
fn wait_log(d: &Daemon, from: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.log_text().get(from..).unwrap_or_default().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_stream_resumes_after_a_server_restart_and_a_destination_outage() {
    if !mariadb::available() {
        return;
    }
    let Some(mut s3) = S3Server::start() else {
        return;
    };
    let db = MariaDb::start();
    let t = scratch();
    let config = stream_config(
        t.path(),
        &db,
        "[binlog]\nenabled = true\nmax_lag = \"1s\"\n",
    );
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace(
            "backup_destination = \"local\"",
            "backup_destination = \"s3\"",
        )
        .replace(
            &format!("[local]\npath = \"{}/backups\"\n", t.path().display()),
            &s3.config_section(""),
        );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    let w = Writer::start(&db);
    run_ok(&d, &["daily"]);
    wait_window_past(&d, soon(2));

    // The server restarts: the file it wrote ends with a STOP event, a new one begins.
    w.stop();
    let db = db.restart();
    let w = Writer::start(&db);
    wait_window_past(&d, soon(2));

    // The destination goes away while events keep coming, then comes back.
    let from = d.log_text().len();
    s3.stop();
    wait_log(&d, from, "binlog stream stopped; retrying");
    // The events read and not stored age: the lag shows it while the destination is away.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&d, "twindb_binlog_lag_seconds") < 1.0 {
        assert!(Instant::now() < deadline, "no lag shown:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    s3.restart();
    wait_window_past(&d, soon(2));
    w.stop();
    let objects = s3.root().join(twindb_tests::servers::BUCKET);
    assert_restores_the_source(&d, &db, &objects, &t.path().join("restored"));
    assert_eq!(metric(&d, "twindb_binlog_gap"), 0.0);
    assert!(metric(&d, "twindb_binlog_segments_total") > 0.0);
    assert!(metric(&d, "twindb_binlog_bytes_total") > 0.0);
    d.stop();
}

/// Waits until the streamer has counted a gap.
fn wait_gap_counted(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(d, "twindb_binlog_gap") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no gap counted:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn restarting_twindbd_neither_duplicates_nor_loses_events() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    let t = scratch();
    let config = stream_config(
        t.path(),
        &db,
        "[binlog]\nenabled = true\nmax_lag = \"1s\"\n",
    );
    let d = Daemon::start(&config);
    let w = Writer::start(&db);
    run_ok(&d, &["daily"]);
    wait_window_past(&d, soon(2));
    assert_eq!(d.stop(), 0, "SIGTERM");
    let d = Daemon::start(&config);
    wait_window_past(&d, soon(2));
    d.stop();
    // Killed (SIGKILL) mid-upload of a segment, once it is stored, and before it is
    // recorded: the next start resumes from the last recorded segment.
    for point in [
        "store.mid-put",
        "store.committed",
        "binlog.segment.before-record",
    ] {
        let d = Daemon::start_with_env(&config, &[("TWINDB_CRASH_AT", point)]);

        let code = d.wait_exit();
        assert_eq!(code, -1, "{point}: killed by its signal");
    }
    let d = Daemon::start(&config);
    wait_window_past(&d, soon(2));
    // A time inside the streamed window: exactly the rows committed before it.
    let until = db.sql("SELECT NOW()");
    wait_window_past(&d, soon(2));
    w.stop();
    let dst = t.path().join("until-time");
    let out = d.ctl(&[
        "restore",
        "mysql",
        "--until",
        &until,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log_text());
    let _ = fs::rename(dst.join("_config"), dst.with_extension("config"));
    let restored = MariaDb::start_restored(&dst);
    let before = db.sql(&format!("SELECT COUNT(*) FROM app.w WHERE t < '{until}'"));
    assert_eq!(
        restored.sql("SELECT COUNT(*) FROM app.w"),
        before,
        "--until {until}"
    );
    restored.stop();

    let objects = t.path().join("backups");
    assert_restores_the_source(&d, &db, &objects, &t.path().join("restored"));
    d.stop();
}

/// `RESET MASTER` under the stream: the stored position is gone from the server. The
/// gap is counted and logged once, and the stream goes on with the new history.
#[test]
fn reset_master_is_a_gap_and_the_stream_goes_on() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE app; CREATE TABLE app.g(id INT PRIMARY KEY, v TEXT)");
    let t = scratch();
    let backups = t.path().join("backups");
    let d = Daemon::start(&stream_config(t.path(), &db, STREAM));
    for i in 0..50 {
        db.sql(&format!("INSERT INTO app.g VALUES ({i}, REPEAT('x', 500))"));
    }
    wait_caught_up(&d, &backups, &db);
    db.sql("RESET MASTER");
    db.sql("INSERT INTO app.g VALUES (1000, 'after the reset')");
    wait_gap_counted(&d);
    assert!(
        d.log_text().contains("binlog stream gap"),
        "{}",
        d.log_text()
    );
    // The new mysql-bin.000001 is streamed whole, under a key of its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys: Vec<String> = ls_keys(&d)
            .into_iter()
            .filter(|k| k.contains("/mysql-bin.000001-"))
            .collect();
        let files: std::collections::BTreeSet<&str> =
            keys.iter().map(|k| k.rsplit('/').nth(1).unwrap()).collect();
        if files.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{keys:?}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&d, "twindb_binlog_gap"), 1.0, "{}", d.log_text());
    d.stop();
}

/// `PURGE BINARY LOGS` of files the streamer never read (twindbd was down meanwhile):
/// the gap is counted and notified, `ls --pitr` shows the windows on both sides of
/// it, a target inside it is refused, and a copy taken after it restores to `--until
/// latest`.
#[test]
fn purged_binlogs_are_a_gap_reported_and_refused() {
    if !mariadb::available() {
        return;
    }
    let db = MariaDb::start();
    db.sql("CREATE DATABASE app; CREATE TABLE app.g(id INT PRIMARY KEY, v TEXT)");
    let t = scratch();
    let backups = t.path().join("backups");
    let hook = twindb_tests::sinks::HttpSink::start();
    let config = stream_config(
        t.path(),
        &db,
        &format!(
            "{STREAM}\n[notify]\nwebhook_url = \"{}\"\n",
            hook.url("/hook")
        ),
    );
    let d = Daemon::start(&config);
    db.sql("INSERT INTO app.g VALUES (1, 'before')");
    run_ok(&d, &["daily"]);
    // Binlog events carry whole seconds: a write in a later second than the copy's
    // end opens a window after it.
    std::thread::sleep(Duration::from_millis(1100));
    db.sql("INSERT INTO app.g VALUES (2, 'streamed')");
    wait_caught_up(&d, &backups, &db);
    assert_eq!(d.stop(), 0);

    // While twindbd is down: writes in files that are purged before it is back.
    std::thread::sleep(Duration::from_millis(1100));
    db.sql("FLUSH BINARY LOGS");
    db.sql("INSERT INTO app.g VALUES (3, 'lost')");
    std::thread::sleep(Duration::from_millis(1100));
    let inside = chrono::Local::now().naive_local();
    std::thread::sleep(Duration::from_millis(1100));
    db.sql("INSERT INTO app.g VALUES (4, 'lost too')");
    db.sql("FLUSH BINARY LOGS");
    let current = db.sql("SHOW MASTER STATUS");
    let current = current.split('\t').next().unwrap().to_string();
    // MariaDB keeps a file that crash recovery may still need (its binlog checkpoint)
    // until InnoDB has caught up: purge until only the current file is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        db.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
        if server_binlogs(&db) == [current.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", server_binlogs(&db));
        std::thread::sleep(Duration::from_millis(200));
    }

    let d = Daemon::start(&config);
    wait_gap_counted(&d);
    let notice = twindb_tests::sinks::wait_for(Duration::from_secs(30), "the gap notice", || {
        hook.requests()
            .into_iter()
            .map(|r| r.json())
            .find(|b| b["event"] == "binlog_gap")
    });
    assert!(
        notice["text"].as_str().unwrap().contains("mysql-bin"),
        "{notice}"
    );
    // `status` shows it for as long as twindbd runs, not only until the next read.
    let status = d.ctl(&["--json", "status"]).success().json();
    let gap = status["binlog_stream"]["last_gap"]
        .as_str()
        .unwrap_or_default();
    assert!(gap.starts_with("binlog stream gap: "), "{status}");
    assert!(gap.contains("mysql-bin"), "{status}");
    assert!(
        status["binlog_stream"]["last_gap_at"].is_string(),
        "{status}"
    );
    let text = d.ctl(&["status"]).success().stdout;
    assert!(text.contains("  last gap ("), "{text}");

    // A copy after the gap, and more writes streamed after it.
    run_ok(&d, &["daily"]);
    std::thread::sleep(Duration::from_millis(1100));
    db.sql("INSERT INTO app.g VALUES (5, 'after')");
    wait_caught_up(&d, &backups, &db);
    let pitr = d.ctl(&["--json", "ls", "--pitr"]).success().json();
    let windows = pitr["windows"].as_array().unwrap();
    assert_eq!(
        windows.len(),
        2,
        "one window on each side of the gap: {pitr}\n{}",
        d.ctl(&["--json", "ls"]).stdout
    );

    let inside = inside.format("%Y-%m-%d %H:%M:%S").to_string();
    let dst = t.path().join("inside");
    let out = d.ctl(&[
        "restore",
        "mysql",
        "--until",
        &inside,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "a target inside the gap restored: {out:?}");
    assert!(
        out.stdout
            .contains("binary log mysql-bin.000002 is not backed up"),
        "{out:?}"
    );
    assert!(!dst.join("ibdata1").exists(), "nothing was restored");

    let restored = restore_latest(&d, &t.path().join("latest"));
    assert_eq!(
        restored.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.g"),
        "1,2,3,4,5"
    );
    restored.stop();
    assert_eq!(metric(&d, "twindb_binlog_gap"), 1.0, "counted once");
    d.stop();
}
