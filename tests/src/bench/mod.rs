//! Benchmarks of twindb's restores, its ssh and az destinations and its binlog
//! streamer, each beside the shell pipe or client a DBA would use, in the same run
//! (see docs/benchmarks.md).

pub mod az;
pub mod binlog;
pub mod restore;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use twindb_tests::sshd::Sshd;
use twindb_tests::Daemon;

use crate::mib_s;

/// The median of a few timings.
pub fn median(mut secs: Vec<f64>) -> f64 {
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

/// The OpenSSH client logged in to `sshd` with the key twindb uses, as a DBA would
/// type it: the client's default ciphers.
pub fn ssh_command(sshd: &Sshd) -> String {
    format!(
        "ssh -q -i {} -p {} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} {}@127.0.0.1",
        sshd.client_key.display(),
        sshd.port,
        sshd.known_hosts.display(),
        sshd.user
    )
}

/// Waits until `sshd` has started no command for a second (at most 30 s): twindbd's
/// start-up work in the background (the sweep of unrecorded objects, the copy count)
/// runs once per daemon start, not once per job, and must not be timed as the job's.
pub fn wait_quiet(sshd: &Sshd) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let (mut last, mut since) = (sshd.commands(), Instant::now());
    while Instant::now() < deadline && since.elapsed().as_secs_f64() < 1.0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = sshd.commands();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// A twindbd binary under test: the workspace's, or an earlier build given with
/// `--before PATH`, run in the same rounds so that a change is measured in one run.
pub struct Build {
    pub label: &'static str,
    pub exe: PathBuf,
    pub secs: Vec<f64>,
    pub rss_kib: u64,
    /// CPU seconds by thread name, in the last round.
    pub threads: BTreeMap<String, f64>,
}

pub fn builds(before: Option<PathBuf>) -> Vec<Build> {
    let mut v = vec![Build::new("twindb", twindb_tests::bin("twindbd"))];
    if let Some(exe) = before {
        v.push(Build::new("twindb before", exe));
    }
    v
}

impl Build {
    fn new(label: &'static str, exe: PathBuf) -> Build {
        Build {
            label,
            exe,
            secs: Vec::new(),
            rss_kib: 0,
            threads: BTreeMap::new(),
        }
    }

    /// Starts this build's twindbd on `config`, times `job` against it, and stops it.
    pub fn time(&mut self, config: &Path, job: impl FnOnce(&Daemon)) -> f64 {
        self.time_after(config, || {}, job)
    }

    /// Same as [`Build::time`], with `started` called before the clock starts (to let
    /// the daemon's start-up work end first).
    pub fn time_after(
        &mut self,
        config: &Path,
        started: impl FnOnce(),
        job: impl FnOnce(&Daemon),
    ) -> f64 {
        let daemon = Daemon::start_exe(&self.exe, config);
        started();
        let sampler = ThreadCpu::start(daemon.child.id());
        let t = Instant::now();
        job(&daemon);
        let secs = t.elapsed().as_secs_f64();
        self.threads = sampler.stop();
        self.rss_kib = self.rss_kib.max(crate::peak_rss_kib(daemon.child.id()));
        daemon.stop();
        self.secs.push(secs);
        secs
    }
}

/// Prints one comparison: the pipe, each build, ratios, peak RSS, load, thread CPU.
pub fn print(baseline: &str, base: Vec<f64>, builds: &[Build], bytes: u64, target: f64) {
    let base_secs = median(base);
    let base_mib = mib_s(bytes, base_secs);
    println!("  {baseline:<34}: {base_secs:7.2} s  {base_mib:7.1} MiB/s");
    for b in builds {
        let secs = median(b.secs.clone());
        let mib = mib_s(bytes, secs);
        println!(
            "  {:<34}: {secs:7.2} s  {mib:7.1} MiB/s  ratio {:.2}x (target >= {target:.2}x)  peak RSS {:.1} MiB",
            b.label,
            mib / base_mib,
            b.rss_kib as f64 / 1024.0
        );
        print_threads(b.label, &b.threads);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// CPU seconds per thread name of a running process, sampled every 20 ms from
/// `/proc/PID/task` (a pipeline's threads end with their job, so they are read while
/// they run): where a job's time went, without a profiler.
pub struct ThreadCpu {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<std::collections::BTreeMap<String, f64>>,
}

impl ThreadCpu {
    pub fn start(pid: u32) -> ThreadCpu {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut first: std::collections::HashMap<u64, f64> = Default::default();
            let mut last: std::collections::HashMap<u64, (String, f64)> = Default::default();
            let mut initial = true;
            loop {
                let done = flag.load(Ordering::Relaxed);
                for e in std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
                        continue;
                    };
                    let Some((name, secs)) = thread_cpu(&e.path()) else {
                        continue;
                    };
                    // Threads that were there before the job: only what they used since.
                    if initial {
                        first.insert(tid, secs);
                    }
                    last.insert(tid, (name, secs));
                }
                initial = false;
                if done {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let mut by_name = std::collections::BTreeMap::new();
            for (tid, (name, secs)) in last {
                let used = secs - first.get(&tid).copied().unwrap_or(0.0);
                *by_name.entry(name).or_insert(0.0) += used;
            }
            by_name
        });
        ThreadCpu { stop, handle }
    }

    /// CPU seconds by thread name since [`ThreadCpu::start`].
    pub fn stop(self) -> std::collections::BTreeMap<String, f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

/// A thread's name and user + system CPU seconds.
fn thread_cpu(task: &std::path::Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some((name, ticks as f64 / 100.0))
}

/// Prints what [`ThreadCpu::stop`] returned, largest first.
pub fn print_threads(label: &str, cpu: &std::collections::BTreeMap<String, f64>) {
    let mut v: Vec<_> = cpu.iter().filter(|(_, s)| **s >= 0.01).collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1));
    let parts: Vec<String> = v.iter().map(|(n, s)| format!("{n} {s:.2}")).collect();
    println!(
        "    {label}, last round, CPU s by thread: {}",
        parts.join(", ")
    );
}
