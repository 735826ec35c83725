//! `twindb-bench binlog`: the binlog streamer under a steady write load on a real
//! MariaDB, beside the same load with no streamer.
//!
//! 1. Throughput: a fixed number of write batches sent as fast as the server takes them,
//!    alternately with twindbd stopped and with twindbd streaming (caught up before the
//!    load starts), `--rounds` times each; the best of each side is compared.
//! 2. Lag: the load at a steady `--rate-mib` of binlog for `--seconds`, with
//!    `twindb_binlog_lag_seconds` sampled every 100 ms (p50, p99, max), the streamer's
//!    CPU seconds (twindbd plus its `mariadb-binlog` child) and their peak RSS.
//!
//! The lag metric is the age of the oldest event twindbd read and has not stored yet,
//! so it leaves out the moment between the server's commit and `mariadb-binlog`
//! passing the event on (a local socket: well under a millisecond when caught up).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twindb_tests::mariadb::{mysql_config, MariaDb};
use twindb_tests::Daemon;

use crate::{cpu_secs, peak_rss_kib, status_kib};

/// Rows per batch: 1000 rows of about 1 KiB (512 B of text, 512 B of random bytes), so
/// one batch is about 1 MiB of row events in the binlog.
const ROWS: u32 = 1000;
const BATCH_BYTES: f64 = 1024.0 * 1024.0;

pub struct Args {
    pub rate_mib: f64,
    pub seconds: f64,
    pub max_lag: String,
    pub rounds: u32,
}

pub fn run(a: Args) {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE bench; \
         CREATE TABLE bench.t(id BIGINT AUTO_INCREMENT PRIMARY KEY, txt VARCHAR(600), bin VARBINARY(600)) ENGINE=InnoDB",
    );
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = scratch.path();
    let config = mysql_config(root, &db, "");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[binlog]\nenabled = true\nmax_lag = \"{}\"\n",
        a.max_lag
    ));
    fs::write(&config, text).unwrap();

    // Throughput: as many batches as `--seconds` would take at the target rate.
    let batches = ((a.rate_mib * a.seconds).ceil() as u32).max(20);
    let (mut without, mut with) = (f64::MAX, f64::MAX);
    for round in 1..=a.rounds {
        let t = load(&db, batches, None);
        truncate(&db);
        let daemon = Daemon::start(&config);
        wait_caught_up(&daemon, &db);
        let s = load(&db, batches, None);
        wait_caught_up(&daemon, &db);
        daemon.stop();
        truncate(&db);
        println!("  round {round}: {batches} batches, no streamer {t:.2} s, streaming {s:.2} s");
        without = without.min(t);
        with = with.min(s);
    }

    // Lag at a steady rate.
    let daemon = Daemon::start(&config);
    wait_caught_up(&daemon, &db);
    let pid = daemon.child.id();
    let reader = reader_pid(pid);
    let (own_before, reader_before) = (cpu_secs(pid), reader.map_or(0.0, cpu_secs));
    let rss_idle = status_kib(pid, "VmRSS:");
    let period = Duration::from_secs_f64(BATCH_BYTES / (a.rate_mib * 1024.0 * 1024.0));
    let steady = (a.seconds / period.as_secs_f64()).ceil() as u32;
    let loader = std::thread::spawn({
        let socket = db.socket.clone();
        move || load_on(&socket, steady, Some(period))
    });
    let mut lags = Vec::new();
    while !loader.is_finished() {
        lags.push(lag(&daemon));
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = loader.join().unwrap();
    let drained = Instant::now();
    wait_caught_up(&daemon, &db);
    let tail = drained.elapsed().as_secs_f64();
    let reader_now = reader_pid(pid);
    let own = cpu_secs(pid) - own_before;
    let read = reader_now.map_or(0.0, cpu_secs) - reader_before;
    let cpu = own + read;
    let rss_twindbd = peak_rss_kib(pid);
    let rss_reader = reader_now.map_or(0, peak_rss_kib);
    daemon.stop();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];

    let mib = batches as f64 * BATCH_BYTES / (1 << 20) as f64;
    println!("Binlog streaming, max_lag {}, zstd", a.max_lag);
    println!(
        "  server throughput, {mib:.0} MiB of binlog (best of {}): no streamer {:.1} MiB/s, streaming {:.1} MiB/s, ratio {:.3}x (target >= 0.97x)",
        a.rounds,
        mib / without,
        mib / with,
        without / with
    );
    println!(
        "  steady load: {:.1} MiB/s asked, {:.1} MiB/s written for {secs:.1} s; {} lag samples",
        a.rate_mib,
        steady as f64 * BATCH_BYTES / (1 << 20) as f64 / secs,
        lags.len()
    );
    println!(
        "  lag p50 {:.2} s, p99 {:.2} s, max {:.2} s (target p99 <= max_lag); caught up {tail:.2} s after the load",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  streamer CPU {cpu:.2} s ({:.0}% of one core): twindbd {own:.2} s, mariadb-binlog {read:.2} s",
        cpu / secs * 100.0,
    );
    println!(
        "  peak RSS: twindbd {:.1} MiB ({:.1} MiB before the load), mariadb-binlog {:.1} MiB (target < 64 MiB)",
        rss_twindbd as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_reader as f64 / 1024.0
    );
}

/// Sends `batches` write batches through one client session and returns the seconds
/// until the server has committed them all; `period` paces them, else they go as
/// fast as the server takes them.
fn load(db: &MariaDb, batches: u32, period: Option<Duration>) -> f64 {
    load_on(&db.socket, batches, period)
}

fn load_on(socket: &Path, batches: u32, period: Option<Duration>) -> f64 {
    let mut client: Child = Command::new("mariadb")
        .arg("-uroot")
        .arg(format!("--socket={}", socket.display()))
        .arg("bench")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("mariadb client");
    let mut stdin = client.stdin.take().unwrap();
    // Row events whatever the server's default format (RANDOM_BYTES is unsafe for
    // statement logging anyway).
    writeln!(stdin, "SET SESSION binlog_format = ROW;").unwrap();
    let start = Instant::now();
    for b in 0..batches {
        if let Some(p) = period {
            let at = start + p * b;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        writeln!(
            stdin,
            "INSERT INTO t(txt, bin) SELECT REPEAT(CONCAT('order ', seq % 977, ' customer ', seq % 50000, ';'), 16), RANDOM_BYTES(512) FROM seq_1_to_{ROWS};"
        )
        .unwrap();
    }
    drop(stdin);
    let status = client.wait().unwrap();
    assert!(status.success(), "the write load failed");
    start.elapsed().as_secs_f64()
}

fn truncate(db: &MariaDb) {
    db.sql("TRUNCATE bench.t");
}

/// Waits until the streamer stored everything up to the server's current position.
fn wait_caught_up(d: &Daemon, db: &MariaDb) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let master = db.sql("SHOW MASTER STATUS");
        let mut cols = master.split('\t');
        let (file, pos) = (cols.next().unwrap_or(""), cols.next().unwrap_or("0"));
        let status = d.ctl(&["--json", "status"]).json();
        let s = &status["binlog_stream"];
        if s["file"] == file && s["position"].as_u64() == pos.parse().ok() && lag(d) == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the streamer did not catch up: server at {file}:{pos}, streamer {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lag(d: &Daemon) -> f64 {
    let (_, _, body) = twindb_tests::sinks::unix_get(&d.socket, "/metrics");
    body.lines()
        .find_map(|l| {
            l.strip_prefix("twindb_binlog_lag_seconds ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The `mariadb-binlog` child twindbd reads the server through.
fn reader_pid(twindbd: u32) -> Option<u32> {
    let tasks = fs::read_dir(format!("/proc/{twindbd}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|p| {
            fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim().starts_with("mariadb-binlog") || c.trim() == "mysqlbinlog")
        })
}
