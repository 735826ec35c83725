//! A real MariaDB server for tests: its own datadir, socket and free port on 127.0.0.1,
//! binary logging on. Killed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::in_ci;

const GALERA: &str = "/usr/lib/galera/libgalera_smm.so";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// `[client]` options for twindb's `mysql_defaults_file`.
    pub defaults_file: PathBuf,
    child: Child,
}

/// Whether mariadbd and mariabackup are installed; under CI their absence fails the test.
pub fn available() -> bool {
    let ok = [
        "/usr/sbin/mariadbd",
        "/usr/bin/mariabackup",
        "/usr/bin/mariadb-install-db",
    ]
    .iter()
    .all(|p| Path::new(p).exists());
    assert!(
        ok || !in_ci(),
        "MariaDB is not installed: scripts/test.sh installs mariadb-server and mariadb-backup"
    );
    if !ok {
        eprintln!("skipped: MariaDB is not installed (run scripts/test.sh)");
    }
    ok
}

impl MariaDb {
    /// Initializes a new datadir and starts a server with binary logging.
    pub fn start() -> MariaDb {
        Self::init_and_start(&[])
    }

    /// A single-node Galera cluster (galera-4), bootstrapped on loopback.
    pub fn start_galera() -> MariaDb {
        assert!(
            Path::new(GALERA).exists() || !in_ci(),
            "galera-4 is not installed: scripts/test.sh installs it"
        );
        let port = free_port();
        Self::init_and_start(&[
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--wsrep-on=ON",
            &format!("--wsrep-provider={GALERA}"),
            "--wsrep-cluster-address=gcomm://",
            &format!("--wsrep-node-address=127.0.0.1:{port}"),
            &format!("--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{port}"),
        ])
    }

    fn init_and_start(extra: &[&str]) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("twdb")
            .tempdir_in("/tmp")
            .unwrap();
        let datadir = dir.path().join("data");
        let tmp = private_tmpdir(dir.path());
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut args = vec!["--log-bin=mysql-bin", "--server-id=1"];
        args.extend_from_slice(extra);
        let mut db = Self::start_on(dir, datadir, &args);
        let defaults = db.dir.path().join("client.cnf");
        fs::write(
            &defaults,
            format!("[client]\nuser=root\nsocket={}\n", db.socket.display()),
        )
        .unwrap();
        db.defaults_file = defaults;
        db
    }

    /// Starts a server on an existing (restored) datadir, without binary logging.
    pub fn start_restored(datadir: &Path) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("twdb")
            .tempdir_in("/tmp")
            .unwrap();
        Self::start_on(dir, datadir.to_path_buf(), &["--skip-log-bin"])
    }

    fn start_on(dir: tempfile::TempDir, datadir: PathBuf, extra: &[&str]) -> MariaDb {
        let socket = dir.path().join("s");
        let log = dir.path().join("error.log");
        // Another test may bind the free port between the probe and mariadbd's bind:
        // a server that exits for that is started again on another port.
        for attempt in 1.. {
            let port = free_port();
            let _ = fs::remove_file(&log);
            let mut child = Command::new("/usr/sbin/mariadbd")
                .arg("--no-defaults")
                .arg("--user=root")
                .arg(format!("--datadir={}", datadir.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg("--innodb-buffer-pool-size=64M")
                .arg(format!("--tmpdir={}", private_tmpdir(dir.path()).display()))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mariadbd");
            match wait_ready(&mut child, &socket, &log) {
                Ok(()) => {
                    return MariaDb {
                        dir,
                        datadir,
                        socket,
                        port,
                        defaults_file: PathBuf::new(),
                        child,
                    }
                }
                Err(text) if attempt < 5 && text.contains("Address already in use") => {}
                Err(text) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{text}");
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Runs SQL with the mariadb client; returns its tab-separated output without headers.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-N", "-B", "-e", sql])
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Row counts and `CHECKSUM TABLE` of `tables` (schema.table), in order.
    pub fn fingerprint(&self, tables: &[&str]) -> Vec<(String, String, String)> {
        tables
            .iter()
            .map(|t| {
                let count = self.sql(&format!("SELECT COUNT(*) FROM {t}"));
                let sum = self.sql(&format!("CHECKSUM TABLE {t}"));
                let sum = sum.split('\t').nth(1).unwrap_or("").to_string();
                (t.to_string(), count, sum)
            })
            .collect()
    }

    pub fn stop(mut self) {
        let _ = self.sql("SHUTDOWN");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A tmpdir of this server's own: servers sharing /tmp delete each other's temp
/// table files (`#sql-temptable-*`) and fail at random when tests run in parallel.
fn private_tmpdir(dir: &Path) -> PathBuf {
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).expect("server tmpdir");
    tmp
}

/// Waits until the server answers on its socket; Err with the error log if it exits
/// or does not start within 60 s.
fn wait_ready(child: &mut Child, socket: &Path, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Command::new("mariadb")
        .arg("-uroot")
        .arg(format!("--socket={}", socket.display()))
        .args(["-e", "select 1"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!(
                "mariadbd exited ({s}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "mariadbd did not start:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A twindbd config that backs up `db` (full copies daily) to `{root}/backups`, zstd;
/// `extra` goes into `[mysql]`.
pub fn mysql_config(root: &Path, db: &MariaDb, extra: &str) -> PathBuf {
    let text = format!(
        r#"[daemon]
socket = "{root}/twindbd.sock"
state_dir = "{root}/state"
hostname = "dbhost"
run_at_start = false
# No scheduled run during a test: a fire at the top of an hour would add a copy the
# test did not make (see files_config).
schedule_hourly = "{never}"
schedule_daily = "{never}"
schedule_weekly = "{never}"
schedule_monthly = "{never}"
schedule_yearly = "{never}"

[source]
backup_mysql = true

[mysql]
mysql_defaults_file = "{defaults}"
full_backup = "daily"
{extra}

[destination]
backup_destination = "local"

[local]
path = "{root}/backups"

[compression]
program = "zstd"
"#,
        root = root.display(),
        never = crate::NEVER,
        defaults = db.defaults_file.display(),
    );
    let path = root.join("twindb.toml");
    fs::write(&path, text).unwrap();
    path
}

/// Batch `n` of the tests' `shop` schema: orders `n*1000+1 ..= n*1000+1000` and note `n`.
pub fn batch(db: &MariaDb, n: u32) {
    let from = n * 1000 + 1;
    let to = n * 1000 + 1000;
    db.sql(&format!(
        "USE shop; INSERT INTO orders SELECT seq, CONCAT('batch{n}-', seq) FROM seq_{from}_to_{to}; \
         INSERT INTO notes VALUES ({n}, 'note {n}')"
    ));
}
