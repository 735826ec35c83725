//! The test harness: temp trees, tree comparison, and twindbd/twindbctl driven for real.
//!
//! Binaries come from the workspace's target folder (`cargo nextest run --workspace`
//! builds them). Servers the later suites need are started here too, on 127.0.0.1.

pub mod binlog;
pub mod chain;
pub mod conformance;
pub mod fuse;
pub mod gpg;
pub mod mariadb;
pub mod pause;
pub mod proxy;
pub mod ranged;
pub mod servers;
pub mod sinks;
pub mod sshd;
pub mod tmpfs;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A twindb binary built alongside this test (target/<profile>/NAME).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>; a binary of this crate
    // (twindb-bench) sits in target/<profile>/ itself.
    let beside = exe.parent().expect("target folder").join(name);
    let path = if beside.exists() {
        beside
    } else {
        let dir = exe.parent().and_then(Path::parent).expect("target folder");
        dir.join(name)
    };
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo nextest run --workspace builds every binary)",
        path.display()
    );
    path
}

/// A scratch folder with a short path (Unix socket paths are limited to 107 bytes).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tw")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A schedule that never fires while a test runs (midnight UTC of February 29th).
pub const NEVER: &str = "0 0 0 29 2 *";

/// A config for a files backup of `dirs` into `root/backups`, with `extra` appended.
pub fn files_config(root: &Path, dirs: &[&Path], compression: &str, extra: &str) -> PathBuf {
    let dirs: Vec<String> = dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    let text = format!(
        r#"[daemon]
socket = "{root}/twindbd.sock"
state_dir = "{root}/state"
hostname = "testhost"
run_at_start = false
log = "info,twindb=debug"
# No scheduled run during a test (a test runs its own jobs): a fire at the top of an
# hour would add a copy the test did not make. Midnight of a leap day only.
schedule_hourly = "{never}"
schedule_daily = "{never}"
schedule_weekly = "{never}"
schedule_monthly = "{never}"
schedule_yearly = "{never}"

[source]
backup_dirs = [{dirs}]

[destination]
backup_destination = "local"

[local]
path = "{root}/backups"

[compression]
program = "{compression}"
{extra}
"#,
        never = NEVER,
        root = root.display(),
        dirs = dirs.join(", "),
    );
    let path = root.join("twindb.toml");
    fs::write(&path, text).expect("write config");
    path
}

/// Like [`files_config`], but to the destination `destination` (e.g. "s3") configured
/// by `sections` (e.g. the `[s3]` section).
pub fn files_config_to(
    root: &Path,
    dirs: &[&Path],
    compression: &str,
    destination: &str,
    sections: &str,
) -> PathBuf {
    let path = files_config(root, dirs, compression, "");
    let text = fs::read_to_string(&path).expect("read config");
    let local = format!(
        "backup_destination = \"local\"\n\n[local]\npath = \"{}/backups\"\n",
        root.display()
    );
    assert!(text.contains(&local), "files_config changed its layout");
    let text = text.replace(&local, &format!("backup_destination = \"{destination}\"\n"));
    fs::write(&path, format!("{text}\n{sections}\n")).expect("write config");
    path
}

/// GET `url` with a plain HTTP/1.1 client (no TLS, no redirects): status and body.
pub fn fetch_url(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    raw_http(
        host,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// The status of a GET of `url`, whatever the body (an error's may be chunked).
pub fn status_of(url: &str) -> u16 {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut s, &mut head).expect("status line");
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("status code")
}

/// Sends `request` (whole, with `Connection: close`) to `host` (HOST:PORT); the
/// status and the body of the answer.
pub fn raw_http(host: &str, request: &str) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP headers");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = raw[end + 4..].to_vec();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked answers are not decoded by this test client"
    );
    (status, body)
}

/// A twindbd process.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts twindbd on `config` and waits until its socket answers.
    pub fn start(config: &Path) -> Daemon {
        Self::start_with_env(config, &[])
    }

    /// Same as [`Daemon::start`], with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin("twindbd"));
        cmd.arg("--config").arg(config);
        Self::spawn(cmd, config, env)
    }

    /// Same as [`Daemon::start`], with another twindbd binary (a benchmark comparing
    /// two builds in one run).
    pub fn start_exe(exe: &Path, config: &Path) -> Daemon {
        let mut cmd = Command::new(exe);
        cmd.arg("--config").arg(config);
        Self::spawn(cmd, config, &[])
    }

    /// Same as [`Daemon::start`], run with the umask `umask` (e.g. "000"), as a DBA
    /// starting twindbd by hand from a shell might.
    pub fn start_with_umask(config: &Path, umask: &str) -> Daemon {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" --config \"$1\""))
            .arg(bin("twindbd"))
            .arg(config);
        Self::spawn(cmd, config, &[])
    }

    fn spawn(mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let root = config.parent().expect("config folder");
        let log = root.join("twindbd.log");
        let socket = root.join("twindbd.sock");
        let child = cmd
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn twindbd");
        let mut d = Daemon { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "twindbd exited with {status} before listening:\n{}",
                    d.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "twindbd did not listen within 20 s:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// twindbctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        ctl(&self.socket, args)
    }

    /// `twindbctl --json job ID`: the job's state, progress and error.
    /// (twindbctl exits 1 for a failed or cancelled job; the JSON is the answer.)
    pub fn job(&self, id: u64) -> Value {
        self.ctl(&["--json", "job", &id.to_string()]).json()
    }

    /// Waits until job `id` is succeeded, failed or cancelled, and returns it. A
    /// cancelled job that was running stays "running" until its stages have stopped.
    pub fn wait_final(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.job(id);
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never ended: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns at once (see [`Daemon::wait_exit`]).
    pub fn term(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// Waits up to 30 s for the process to exit; returns the exit code.
    pub fn wait_exit(mut self) -> i32 {
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("twindbd did not exit within 30 s:\n{}", self.log_text()));
        status.code().unwrap_or(-1)
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(self) -> i32 {
        self.term();
        self.wait_exit()
    }

    /// Sends SIGHUP (reload the config).
    pub fn hup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what twindbd said (CI keeps only the test's output).
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!(
                "--- twindbd ({}) log, last {} lines ---\n{tail}",
                exited.map_or("running".to_string(), |s| s.to_string()),
                lines.len().min(80)
            );
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[derive(Debug)]
pub struct CtlOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "twindbctl failed: {self:?}");
        self
    }
}

pub fn ctl(socket: &Path, args: &[&str]) -> CtlOutput {
    output_of(
        Command::new(bin("twindbctl"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            .output(),
    )
}

pub fn output_of(out: std::io::Result<Output>) -> CtlOutput {
    let out = out.expect("run command");
    CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir`, relative to it, hidden ones (temp files) included, but
/// twindb's own status files (and their lock): what a destination folder holds
/// besides the status, to compare with what `ls` lists.
pub fn files_under(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = fs::read_dir(&p) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                if !rel.contains("twindb-status") {
                    out.insert(rel);
                }
            }
        }
    }
    out
}

/// The keys `ls` lists, each once (a copy with a keep-local twin is listed per place).
pub fn listed(d: &Daemon) -> std::collections::BTreeSet<String> {
    ls_keys(d).into_iter().collect()
}

/// Keys of the copies `ls` shows.
pub fn ls_keys(d: &Daemon) -> Vec<String> {
    let v = d.ctl(&["--json", "ls"]).success().json();
    v["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| c["key"].as_str().expect("key").to_string())
        .collect()
}

/// A tree with what a backup must keep: nested and empty folders, text and binary
/// files, symlinks (to a file, to a folder, dangling), modes 600/755, names with
/// spaces and UTF-8.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    fs::create_dir_all(root.join("empty folder")).unwrap();
    fs::create_dir_all(root.join("ünïcødé dïr/ß")).unwrap();
    fs::write(root.join("hello.txt"), "hello twindb\n".repeat(100)).unwrap();
    fs::write(
        root.join("nested/deeper/deepest/data.bin"),
        pseudo_random(300_000, 7),
    )
    .unwrap();
    fs::write(
        root.join("ünïcødé dïr/ß/файл с пробелами.txt"),
        "unicode content ✓\n",
    )
    .unwrap();
    fs::write(root.join("with space.txt"), "").unwrap();
    fs::write(root.join("secret.key"), "top secret\n").unwrap();
    fs::set_permissions(root.join("secret.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        root.join("nested/deeper"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link to hello")).unwrap();
    std::os::unix::fs::symlink("nested/deeper", root.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    let long = "l".repeat(120);
    fs::write(root.join("nested").join(format!("{long}.txt")), "long name").unwrap();
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` bytes of incompressible data to `path` without holding it in memory.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut s = seed;
    while written < len {
        let chunk = pseudo_random(1 << 20, s);
        s += 1;
        let n = chunk.len().min((len - written) as usize);
        f.write_all(&chunk[..n]).unwrap();
        written += n as u64;
    }
    f.flush().unwrap();
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        sha256: String,
        mtime: i64,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every entry under `root`, by relative path: mode and sha256 of every file.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let entry = if meta.file_type().is_symlink() {
            Entry::Symlink {
                target: fs::read_link(&p).unwrap(),
            }
        } else if meta.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Entry::Dir {
                mode: meta.mode() & 0o7777,
            }
        } else {
            Entry::File {
                mode: meta.mode() & 0o7777,
                sha256: hex::encode(Sha256::digest(fs::read(&p).unwrap())),
                mtime: meta.mtime(),
            }
        };
        out.insert(rel, entry);
    }
    out
}

/// Where a backed-up folder lands inside a restore destination (`/a/b` -> `dst/a/b`).
pub fn restored_path(dst: &Path, source: &Path) -> PathBuf {
    dst.join(source.strip_prefix("/").unwrap())
}

/// Asserts that the tree restored into `dst` equals `source`.
pub fn assert_same_tree(source: &Path, dst: &Path) {
    let want = snapshot(source);
    let got = snapshot(&restored_path(dst, source));
    assert!(want.len() > 1, "empty source tree");
    for (path, entry) in &want {
        assert_eq!(
            got.get(path),
            Some(entry),
            "entry {} differs",
            path.display()
        );
    }
    assert_eq!(want.len(), got.len(), "restored tree has extra entries");
}

/// Whether tests that need real servers must fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
