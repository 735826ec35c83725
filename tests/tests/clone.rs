//! `clone mysql` against real servers: a MariaDB source with data and binary logs, an
//! empty second instance reached through a real sshd on 127.0.0.1 (both "hosts" are
//! 127.0.0.1: different MySQL ports and datadirs, so the destination's datadir, config
//! file and start command come from `[clone]`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::mariadb::{self, MariaDb};
use twindb_tests::sshd::Sshd;
use twindb_tests::*;

/// A quote and a backslash: both must survive into CHANGE MASTER.
const PASSWORD: &str = "Rep1-s3cret'p\\w";
const TABLES: [&str; 2] = ["shop.orders", "shop.notes"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The replica twindb starts through `start_command`; killed at the end of the test.
struct Replica {
    dir: PathBuf,
    socket: PathBuf,
    pid: PathBuf,
}

impl Replica {
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-N", "-B", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn fingerprint(&self) -> Vec<(String, String)> {
        TABLES
            .iter()
            .map(|t| {
                let sum = self.sql(&format!("CHECKSUM TABLE {t}"));
                (
                    self.sql(&format!("SELECT COUNT(*) FROM {t}")),
                    sum.split('\t').nth(1).unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn slave_status(&self, field: &str) -> String {
        let out = Command::new("mariadb")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-E", "-e", "SHOW SLAVE STATUS"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.pid) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn source_data(db: &MariaDb) -> Vec<(String, String)> {
    TABLES
        .iter()
        .map(|t| {
            let sum = db.sql(&format!("CHECKSUM TABLE {t}"));
            (
                db.sql(&format!("SELECT COUNT(*) FROM {t}")),
                sum.split('\t').nth(1).unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn config(
    root: &Path,
    db: &MariaDb,
    sshd: &Sshd,
    replica: &Replica,
    port: u16,
    hang: bool,
) -> PathBuf {
    let start = if hang {
        // A start command that never returns: only a cancel ends the job.
        "sleep 30".to_string()
    } else {
        format!(
        "setsid /usr/sbin/mariadbd --defaults-file={dir}/clone.cnf --user=root --datadir={dir}/data \
         --socket={socket} --port={port} --bind-address=127.0.0.1 --pid-file={pid} \
         --log-error={dir}/error.log --tmpdir={dir} --log-bin=mysql-bin --innodb-buffer-pool-size=64M \
         </dev/null >/dev/null 2>&1 &",
        dir = replica.dir.display(),
        socket = replica.socket.display(),
        pid = replica.pid.display(),
        )
    };
    let text = format!(
        r#"[daemon]
socket = "{root}/twindbd.sock"
state_dir = "{root}/state"
hostname = "dbhost"
run_at_start = false

[source]
backup_mysql = true

[mysql]
mysql_defaults_file = "{defaults}"

[destination]
backup_destination = "local"

[local]
path = "{root}/backups"

[clone]
ssh_user = "{user}"
ssh_port = {ssh_port}
ssh_key = "{key}"
known_hosts = "{known}"
datadir = "{dir}/data"
datadir_owner = "root:root"
config_file = "{dir}/clone.cnf"
start_command = "{start}"
"#,
        root = root.display(),
        defaults = db.defaults_file.display(),
        user = sshd.user,
        ssh_port = sshd.port,
        key = sshd.client_key.display(),
        known = sshd.known_hosts.display(),
        dir = replica.dir.display(),
    );
    let path = root.join("twindb.toml");
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn clone_to_an_empty_instance_over_ssh_then_replicate() {
    clone_and_replicate("clone_to_an_empty_instance_over_ssh_then_replicate", false);
}

#[test]
fn clone_with_a_compressed_stream() {
    clone_and_replicate("clone_with_a_compressed_stream", true);
}

#[test]
fn cancel_ends_a_clone_whose_start_command_hangs() {
    clone_and_replicate("cancel_ends_a_clone_whose_start_command_hangs", false);
}

#[test]
fn a_failing_step_names_the_host_and_the_reason_but_never_the_password() {
    clone_and_replicate(
        "a_failing_step_names_the_host_and_the_reason_but_never_the_password",
        false,
    );
}

fn clone_and_replicate(test: &str, compress: bool) {
    let wrong_password = test.starts_with("a_failing_step");
    let hang = test.starts_with("cancel");
    if !mariadb::available() {
        return;
    }
    let Some(sshd) = Sshd::start_or_skip(test) else {
        return;
    };
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; USE shop; \
         CREATE TABLE shop.orders(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB; \
         CREATE TABLE shop.notes(id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=MyISAM; \
         INSERT INTO shop.orders SELECT seq, CONCAT('row-', seq) FROM seq_1_to_5000; \
         INSERT INTO shop.notes VALUES (1, 'one'), (2, 'two'); \
         FLUSH BINARY LOGS; \
         INSERT INTO shop.orders SELECT seq, CONCAT('row-', seq) FROM seq_5001_to_6000",
    );
    let quoted = PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
    db.sql(&format!(
        "CREATE USER repl@'%' IDENTIFIED BY '{quoted}'; GRANT REPLICATION SLAVE ON *.* TO repl@'%'; \
         CREATE USER repl@localhost IDENTIFIED BY '{quoted}'; GRANT REPLICATION SLAVE ON *.* TO repl@localhost"
    ));
    let t = scratch();
    let replica = Replica {
        dir: t.path().join("replica"),
        socket: t.path().join("replica/s"),
        pid: t.path().join("replica/pid"),
    };
    fs::create_dir_all(&replica.dir).unwrap();
    let port = free_port();
    let d = Daemon::start(&config(t.path(), &db, &sshd, &replica, port, hang));

    let source = format!("127.0.0.1:{}", db.port);
    let destination = format!("127.0.0.1:{port}");
    let clone = |d: &Daemon, password: &str| {
        Command::new(bin("twindbctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args([
                "clone",
                "mysql",
                "--source",
                &source,
                "--destination",
                &destination,
                "--replication-user",
                "repl",
            ])
            .args(compress.then_some("--compress"))
            .env("TWINDB_REPLICATION_PASSWORD", password)
            .output()
    };
    if hang {
        let mut cmd = Command::new(bin("twindbctl"));
        cmd.arg("--socket").arg(&d.socket).args([
            "clone",
            "mysql",
            "--source",
            &source,
            "--destination",
            &destination,
            "--replication-user",
            "repl",
        ]);
        let child = cmd
            .env("TWINDB_REPLICATION_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            let jobs = d.ctl(&["--json", "jobs"]).success().json();
            let job = jobs["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kind"] == "clone")
                .cloned();
            if let Some(j) = job.filter(|j| {
                j["progress"]["phase"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("starting mysqld")
            }) {
                break j["id"].as_u64().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the clone never reached its start: {jobs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        d.ctl(&["cancel", &id.to_string()]).success();
        let started = Instant::now();
        let out = output_of(child.wait_with_output());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "cancel took too long"
        );
        assert_ne!(out.code, 0, "{out:?}");
        let job = d.ctl(&["--json", "job", &id.to_string()]).json();
        assert_eq!(job["state"], "cancelled", "{job}");
        assert!(
            job["error"]
                .as_str()
                .unwrap()
                .contains("datadir may hold part of the clone"),
            "{job}"
        );
        return;
    }
    if wrong_password {
        let out = output_of(clone(&d, "Wrong-s3cret-word"));
        assert_ne!(out.code, 0, "{out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("127.0.0.1: starting replication: Slave_IO_Running"),
            "{text}"
        );
        assert!(text.contains("Access denied"), "{text}");
        for s in [text.as_str(), d.log_text().as_str()] {
            assert!(!s.contains("s3cret"), "the password appears: {s}");
        }
        return;
    }
    let out = output_of(clone(&d, PASSWORD));
    assert_eq!(
        out.code,
        0,
        "{out:?}\n{}\n{}",
        d.log_text(),
        fs::read_to_string(replica.dir.join("error.log")).unwrap_or_default()
    );
    assert!(
        out.stdout
            .contains("Slave_IO_Running and Slave_SQL_Running are Yes"),
        "{out:?}"
    );

    // What crossed twindbd: the stream holds at least the 12 MiB ibdata1 of a fresh
    // datadir (mostly zeros), which zstd shrinks to a small fraction.
    let streamed: u64 = out
        .stdout
        .split(" bytes streamed")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {out:?}"));
    if compress {
        assert!(streamed < 6 << 20, "{streamed} bytes with --compress");
    } else {
        assert!(streamed > 12 << 20, "{streamed} bytes without --compress");
    }

    // Rows equal, server_id unique, both threads running.
    let want = source_data(&db);
    assert_eq!(replica.fingerprint(), want);
    assert_ne!(
        replica.sql("SELECT @@server_id"),
        db.sql("SELECT @@server_id")
    );
    assert_eq!(replica.slave_status("Slave_IO_Running"), "Yes");
    assert_eq!(replica.slave_status("Slave_SQL_Running"), "Yes");

    // A write on the source appears on the replica.
    db.sql("INSERT INTO shop.orders VALUES (100001, 'after the clone'); UPDATE shop.notes SET v = 'changed' WHERE id = 2");
    let want = source_data(&db);
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.fingerprint() != want {
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {:?} vs {want:?}; Last_IO_Error {:?}, Last_SQL_Error {:?}",
            replica.fingerprint(),
            replica.slave_status("Last_IO_Error"),
            replica.slave_status("Last_SQL_Error")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A destination that is not empty (and runs mysqld) is refused.
    let again = output_of(clone(&d, PASSWORD));
    assert_ne!(again.code, 0, "{again:?}");
    let text = format!("{}{}", again.stdout, again.stderr);
    assert!(text.contains("127.0.0.1: checking"), "{text}");
    assert!(text.contains("not empty"), "{text}");

    // The password is never printed or logged.
    let jobs = d.ctl(&["--json", "jobs"]).success();
    for (what, s) in [
        ("clone output", out.stdout.as_str()),
        ("clone stderr", out.stderr.as_str()),
        ("refusal", text.as_str()),
        ("jobs", jobs.stdout.as_str()),
        ("daemon log", d.log_text().as_str()),
    ] {
        assert!(
            !s.contains("s3cret"),
            "the password appears in the {what}: {s}"
        );
    }
}
