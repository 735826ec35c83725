//! A real OpenSSH server on 127.0.0.1 for the ssh destination's tests.
//!
//! Each [`Sshd`] has its own folder with a generated ed25519 host key, an authorized
//! ed25519 client key, a `known_hosts` file that trusts the host key, and a
//! `backups` folder used as `backup_dir`. sshd runs in the foreground as a child of
//! the test and is killed, with every session it forked, on drop.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twindb::config::SshConfig;
use twindb::destination::{Backoff, Ssh};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// An authorized private key.
    pub client_key: PathBuf,
    /// Trusts this server's host key.
    pub known_hosts: PathBuf,
    /// The folder copies go to (`backup_dir`).
    pub root: PathBuf,
    pub user: String,
    /// Lines appended to sshd_config (see [`Sshd::set_session_path`]).
    extra_config: String,
    child: Option<Child>,
}

/// Whether sshd and ssh-keygen are installed. Missing under CI is a failure: a test
/// that needs them calls [`Sshd::start_or_skip`].
pub fn available() -> bool {
    Path::new(SSHD).exists() && which("ssh-keygen")
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh ed25519 key pair at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "twindb-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

/// The `SHA256:...` fingerprint of a public key file, as ssh-keygen prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("run ssh-keygen -l");
    assert!(out.status.success(), "ssh-keygen -l: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

impl Sshd {
    /// Starts a server, or returns None (after saying "skipped") when OpenSSH is not
    /// installed outside CI. Under `CI=true` a missing sshd fails the test.
    pub fn start_or_skip(test: &str) -> Option<Sshd> {
        if !available() {
            assert!(
                !crate::in_ci(),
                "{test}: {SSHD} or ssh-keygen is missing (scripts/test.sh installs openssh-server)"
            );
            eprintln!("{test}: skipped: {SSHD} is not installed (apt-get install openssh-server)");
            return None;
        }
        Some(Sshd::start())
    }

    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("twsshd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        let client_key = d.join("id_ed25519");
        keygen(&client_key);
        fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let root = d.join("backups");
        fs::create_dir(&root).unwrap();
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("current user name");
        // sshd refuses to start as root without its privilege separation folder.
        if nix::unistd::geteuid().is_root() {
            fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        }
        let mut sshd = Sshd {
            port: 0,
            known_hosts: d.join("known_hosts"),
            client_key,
            root,
            user,
            extra_config: String::new(),
            child: None,
            dir,
        };
        sshd.spawn_on_free_port();
        sshd
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path();
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {d}/host_key\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 Subsystem sftp internal-sftp\n{extra}",
                port = self.port,
                d = d.display(),
                extra = self.extra_config,
            ),
        )
        .unwrap();
        fs::write(
            &self.known_hosts,
            format!(
                "[127.0.0.1]:{} {}",
                self.port,
                fs::read_to_string(d.join("host_key.pub")).unwrap()
            ),
        )
        .unwrap();
        config
    }

    /// Picks a free port and starts sshd on it; another test may take the port between
    /// the probe and sshd's bind, so a few tries.
    fn spawn_on_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            if self.spawn().is_ok() {
                return;
            }
        }
        panic!("sshd did not start on any of 5 free ports:\n{}", self.log());
    }

    /// Starts sshd on `self.port` and waits until it answers with its banner.
    fn spawn(&mut self) -> Result<(), ()> {
        let config = self.write_config();
        let log = self.dir.path().join("sshd.log");
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("run sshd -t");
        assert!(check.status.success(), "sshd -t: {check:?}");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(());
            }
            if banner(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(())
    }

    /// Kills sshd and every session it forked, as a crash or power loss of the server
    /// would end them: open connections drop at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // Stopped first, the listener cannot fork a session for a connection that
            // arrives while we look for its children: such a session would outlive it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGSTOP,
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            while state_of(pid) != Some('T') && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut family = descendants(pid);
            family.push(pid);
            for p in family {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) every open session, not the listener: the
    /// connections stay up but nothing moves, as with a hung disk behind the server.
    pub fn freeze_sessions(&self, frozen: bool) {
        let Some(child) = &self.child else { return };
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        for p in descendants(child.id() as i32) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), signal);
        }
    }

    /// Restarts the server with `dir` first in the PATH of its sessions, so that its
    /// programs stand in for the system's (a `sync` that fails, as on a broken disk).
    pub fn set_session_path(&mut self, dir: &Path) {
        self.extra_config = format!(
            "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
            dir.display()
        );
        self.restart();
    }

    /// Restarts the server logging every command it starts, for [`Sshd::commands`].
    pub fn log_commands(&mut self) {
        self.add_config("LogLevel VERBOSE");
    }

    /// Restarts the server with `line` appended to its sshd_config.
    pub fn add_config(&mut self, line: &str) {
        self.extra_config.push_str(line);
        self.extra_config.push('\n');
        self.restart();
    }

    /// Commands (exec channels) started since [`Sshd::log_commands`].
    pub fn commands(&self) -> usize {
        self.log().matches("Starting session: command").count()
    }

    /// Starts the same server (same port, host key and files) again.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.spawn().is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not restart on port {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Open SSH connections: sshd forks one process per connection.
    pub fn connections(&self) -> usize {
        let Some(child) = &self.child else { return 0 };
        let pid = child.id() as i32;
        descendants(pid)
            .into_iter()
            .filter(|&p| parent_of(p) == Some(pid))
            .count()
    }

    pub fn host_key_fingerprint(&self) -> String {
        fingerprint(&self.dir.path().join("host_key.pub"))
    }

    /// The destination's config for this server.
    pub fn config(&self) -> SshConfig {
        SshConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            key: self.client_key.clone(),
            known_hosts: self.known_hosts.clone(),
            accept_new_host_keys: false,
            backup_dir: self.root.display().to_string(),
        }
    }

    pub fn destination(&self) -> Ssh {
        Ssh::new(self.config())
    }

    /// A destination that gives up fast (tests of failures).
    pub fn destination_with(&self, config: SshConfig, backoff: Backoff) -> Ssh {
        Ssh::with_backoff(config, backoff)
    }

    /// The `[ssh]` section for a twindbd config pointing here.
    pub fn config_section(&self) -> String {
        format!(
            "[ssh]\nbackup_host = \"127.0.0.1\"\nssh_port = {}\nssh_user = \"{}\"\nssh_key = \"{}\"\nknown_hosts = \"{}\"\nbackup_dir = \"{}\"\n",
            self.port,
            self.user,
            self.client_key.display(),
            self.known_hosts.display(),
            self.root.display()
        )
    }

    /// A files config (see [`crate::files_config`]) whose destination is this server,
    /// with `extra` appended (more keys or sections).
    pub fn files_config(
        &self,
        root: &Path,
        dirs: &[&Path],
        compression: &str,
        extra: &str,
    ) -> PathBuf {
        let path = crate::files_config(root, dirs, compression, "");
        let text = fs::read_to_string(&path).unwrap().replace(
            "backup_destination = \"local\"",
            "backup_destination = \"ssh\"",
        );
        fs::write(
            &path,
            format!("{text}\n{}\n{extra}\n", self.config_section()),
        )
        .unwrap();
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether an SSH server answers on `port` (its banner starts with "SSH-").
fn banner(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// The state letter of a process (`T` = stopped), from /proc.
fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
}

/// Every process below `pid`, found through /proc (sshd forks one process per
/// connection, which forks the command it runs).
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command name is in parentheses and may hold spaces: read after it.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            if let Some(ppid) = rest.split(' ').nth(1).and_then(|v| v.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
