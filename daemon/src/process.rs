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

use std::io;
use std::os::unix::process::CommandExt;
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
    fn a_program_that_ends_on_its_own_is_reaped_untouched() {
        let cancel = Cancel::default();
        let mut g = Group::spawn(Command::new("true").arg("x"), &cancel).unwrap();
        assert!(g.wait().unwrap().success());
        cancel.cancel();
        drop(g);
    }
}
