//! Every program twindbd starts (backup tools, compressors, gpg, restore's prepare and
//! copy, mysqlbinlog, verify's server) runs through [`Group`]: in a process group of
//! its own, watched by its job's cancel flag.
//!
//! On cancel (API, timeout, shutdown) or [`Stopper::stop`], the whole group gets
//! SIGTERM, then SIGKILL once the leader has exited or after [`GRACE`], whichever
//! comes first: a tool that ignores SIGTERM, or a child it left behind (mariabackup's
//! own children, a `sleep` in a wrapper script), cannot keep the job alive. The leader
//! is always reaped, and it is reaped only after the last signal: its zombie keeps the
//! group id reserved, so a signal can never reach a recycled group.
//!
//! Also here, the two things every caller of a program needs, written once for the
//! daemon: [`find_program`] finds it as the shell would (a regular file with an execute
//! bit), and [`Tail`] keeps the end of its stderr (local or remote, over SSH) for the
//! error message.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::pipeline::Cancel;

/// How long a group has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);
/// How often the watcher looks at the cancel flag.
const POLL: Duration = Duration::from_millis(100);

/// A started program and its process group.
pub struct Group {
    pub child: Child,
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

#[derive(Default)]
struct State {
    /// Stop asked for by [`Stopper::stop`] (the job's cancel flag is checked apart).
    stop: bool,
    /// The watcher is signalling the group: the leader must not be reaped yet.
    stopping: bool,
    /// The watcher sent its last signal.
    finished: bool,
    /// The leader exited (it is a zombie until reaped).
    exited: bool,
    /// The leader is about to be reaped: no signal may be sent any more.
    done: bool,
}

struct Shared {
    pgid: Pid,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("process group lock")
    }
}

/// Stops a [`Group`] from another thread.
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Asks for the group to be stopped (SIGTERM, then SIGKILL); does not wait.
    pub fn stop(&self) {
        self.0.lock().stop = true;
        self.0.wake.notify_all();
    }
}

impl Group {
    /// Starts `cmd` as the leader of a new process group, stopped when `cancel` is set.
    pub fn spawn(cmd: &mut Command, cancel: &Cancel) -> io::Result<Group> {
        cmd.process_group(0);
        let child = cmd.spawn()?;
        let pgid = Pid::from_raw(child.id() as i32);
        let shared = Arc::new(Shared {
            pgid,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let watcher = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name("twindb-group".into())
                .spawn(move || watch(&shared, &cancel))?
        };
        Ok(Group {
            child,
            shared,
            watcher: Some(watcher),
            status: None,
        })
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// Whether the leader has exited (it is not reaped: [`Group::wait`] does that).
    pub fn exited(&self) -> bool {
        self.status.is_some()
            || matches!(
                waitid(
                    Id::Pid(self.shared.pgid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
                ),
                Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
            )
    }

    /// Waits for the leader to exit and reaps it (after the stop sequence, if one runs).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pid = self.shared.pgid;
        // Wait for the exit without reaping: the zombie keeps the group id ours.
        let exited = loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(_) => break Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => break Err(io::Error::from(e)),
            }
        };
        {
            let mut s = self.shared.lock();
            s.exited = true;
            self.shared.wake.notify_all();
            while s.stopping && !s.finished {
                s = self.shared.wake.wait(s).expect("process group lock");
            }
            s.done = true;
            self.shared.wake.notify_all();
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        exited?;
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Stops the whole group and reaps the leader.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.stopper().stop();
        self.wait()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Never leave a program running, nor a zombie, behind a dropped handle.
            let _ = self.stop();
        }
    }
}

/// `name` as the shell would find it: a name with a '/' as it is, else the first match
/// in `PATH`. Either way only a regular file with an execute bit counts: a folder or a
/// plain file of that name is passed over, as `execvp` passes it over.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Lines of stderr a [`Tail`] keeps: the error is at the end, the rest is in the log.
pub const TAIL_LINES: usize = 30;
/// Bytes a [`Tail`] keeps, however long the lines: a program that prints a megabyte
/// without a newline must not make a megabyte error message.
pub const TAIL_BYTES: usize = 4096;

/// The end of a program's stderr, for its error message: the last [`TAIL_LINES`]
/// lines, at most [`TAIL_BYTES`] bytes, whatever chunks the output arrives in (a line
/// split across two reads is still one line). Bytes need not be UTF-8.
#[derive(Debug, Default, Clone)]
pub struct Tail {
    /// Complete lines, without their newline.
    lines: VecDeque<Vec<u8>>,
    /// The last line while it has no newline yet.
    open: Vec<u8>,
    /// Bytes in `lines`.
    bytes: usize,
}

impl Tail {
    /// Adds output as it arrives.
    pub fn push(&mut self, mut data: &[u8]) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            self.open.extend_from_slice(&data[..at]);
            let mut line = std::mem::take(&mut self.open);
            keep_end(&mut line);
            self.bytes += line.len();
            self.lines.push_back(line);
            data = &data[at + 1..];
        }
        self.open.extend_from_slice(data);
        keep_end(&mut self.open);
        let open = usize::from(!self.open.is_empty());
        while self.lines.len() + open > TAIL_LINES || self.bytes + self.open.len() > TAIL_BYTES {
            let Some(first) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= first.len();
        }
    }

    /// Removes the complete line `line` if it was said, and tells whether it was (a
    /// marker a remote command prints when it is ready).
    pub fn take_line(&mut self, line: &str) -> bool {
        let Some(at) = self.lines.iter().position(|l| l == line.as_bytes()) else {
            return false;
        };
        if let Some(l) = self.lines.remove(at) {
            self.bytes -= l.len();
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.open.is_empty()
    }

    /// The kept lines, joined by newlines (the unfinished last one included).
    pub fn text(&self) -> String {
        let mut out = Vec::with_capacity(self.bytes + self.lines.len() + self.open.len());
        for line in self
            .lines
            .iter()
            .chain(Some(&self.open).filter(|o| !o.is_empty()))
        {
            if !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(line);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Cuts `line` to its last [`TAIL_BYTES`] bytes.
fn keep_end(line: &mut Vec<u8>) {
    if line.len() > TAIL_BYTES {
        line.drain(..line.len() - TAIL_BYTES);
    }
}

fn watch(shared: &Shared, cancel: &Cancel) {
    let mut s = shared.lock();
    loop {
        if s.done {
            return;
        }
        if s.stop || cancel.is_cancelled() {
            break;
        }
        s = shared.wake.wait_timeout(s, POLL).expect("lock").0;
    }
    s.stopping = true;
    tracing::info!(
        pgid = shared.pgid.as_raw(),
        "stopping a program: SIGTERM to its process group"
    );
    let _ = killpg(shared.pgid, Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while !s.exited {
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                pgid = shared.pgid.as_raw(),
                "a program ignored SIGTERM for {} s: SIGKILL to its process group",
                GRACE.as_secs()
            );
            break;
        }
        s = shared.wake.wait_timeout(s, deadline - now).expect("lock").0;
    }
    // Also for a leader that obeyed: whatever it left in its group goes with it.
    let _ = killpg(shared.pgid, Signal::SIGKILL);
    s.finished = true;
    shared.wake.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        // A zombie has no /proc/PID/cmdline content; a gone process has no folder.
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    }

    #[test]
    fn cancel_stops_a_group_that_ignores_sigterm() {
        let t = tempfile::tempdir().unwrap();
        let pids = t.path().join("pids");
        let cancel = Cancel::default();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "trap '' TERM; sleep 1000 & echo $$ $! > {}; wait",
            pids.display()
        ));
        let mut g = Group::spawn(&mut cmd, &cancel).unwrap();
        while !std::fs::read_to_string(&pids).is_ok_and(|s| s.ends_with('\n')) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        cancel.cancel();
        let status = g.wait().unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < GRACE + Duration::from_secs(2));
        for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
            let pid: i32 = pid.parse().unwrap();
            // The orphaned sleep is reaped by init: wait for it briefly.
            let deadline = Instant::now() + Duration::from_secs(2);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(!alive(pid), "process {pid} survived");
        }
    }

    #[test]
    fn find_program_wants_a_regular_file_with_an_execute_bit() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let plain = t.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let runnable = t.path().join("runnable");
        std::fs::write(&runnable, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&runnable, std::fs::Permissions::from_mode(0o755)).unwrap();
        let folder = t.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_string();
        assert_eq!(find_program(&path(&runnable)), Some(runnable.clone()));
        assert_eq!(find_program(&path(&plain)), None, "no execute bit");
        assert_eq!(find_program(&path(&folder)), None, "a folder");
        assert!(find_program("sh").is_some());
        assert!(find_program("twindb-no-such-program").is_none());
    }

    #[test]
    fn tail_keeps_the_last_lines_across_chunks() {
        let mut t = Tail::default();
        assert!(t.is_empty());
        t.push(b"first li");
        t.push(b"ne\nsecond\n");
        t.push(b"third, unfinished");
        assert_eq!(t.text(), "first line\nsecond\nthird, unfinished");
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert_eq!(text.lines().count(), TAIL_LINES);
        assert!(
            text.starts_with("line 70\n") && text.ends_with("line 99"),
            "{text}"
        );
        // Bytes are bounded too, keeping the end of an endless line.
        t.push(&vec![b'x'; 3 * TAIL_BYTES]);
        t.push(b"the error");
        let text = t.text();
        assert!(text.len() <= TAIL_BYTES, "{}", text.len());
        assert!(text.ends_with("xxthe error"), "{text}");
        // Not UTF-8 is kept, not dropped.
        let mut t = Tail::default();
        t.push(b"bad \xff byte\n");
        assert_eq!(t.text(), "bad \u{fffd} byte");
    }

    #[test]
    fn tail_gives_up_a_marker_line() {
        let mut t = Tail::default();
        t.push(b"warning\ntwindb-ready\nafter\n");
        assert!(!t.take_line("twindb"));
        assert!(t.take_line("twindb-ready"));
        assert!(!t.take_line("twindb-ready"));
        assert_eq!(t.text(), "warning\nafter");
    }

    #[test]
    fn a_program_that_ends_on_its_own_is_reaped_untouched() {
        let cancel = Cancel::default();
        let mut g = Group::spawn(Command::new("true").arg("x"), &cancel).unwrap();
        assert!(g.wait().unwrap().success());
        cancel.cancel();
        drop(g);
    }
}
