//! systemd integration through sd_notify: READY, STATUS lines with the running job,
//! WATCHDOG pings, RELOADING and STOPPING. Everything is a no-op outside systemd
//! (no NOTIFY_SOCKET); a failed notification is logged at debug and ignored.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use twindb_proto::{JobInfo, JobState};

use crate::queue::Queue;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The STATUS line for the jobs now queued or running.
pub fn status_line(active: &[JobInfo]) -> String {
    let running: Vec<String> = active
        .iter()
        .filter(|j| j.state == JobState::Running)
        .map(|j| {
            let mut s = format!("job {} {}", j.id, j.title);
            if !j.progress.phase.is_empty() {
                s.push_str(&format!(": {}", j.progress.phase));
            }
            if j.progress.bytes_in > 0 {
                s.push_str(&format!(", {} read", human_bytes(j.progress.bytes_in)));
            }
            s
        })
        .collect();
    let queued = active
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .count();
    let mut line = if running.is_empty() {
        "idle".to_string()
    } else {
        format!("running {}", running.join("; "))
    };
    if queued > 0 {
        line.push_str(&format!("; {queued} queued"));
    }
    line
}

/// Keeps systemd's STATUS line current: at every job start and end, and every 10 s
/// while a job runs (for its progress).
pub async fn follow_jobs(queue: Arc<Queue>) {
    let mut events = queue.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut last = String::new();
    loop {
        let mut started = None;
        tokio::select! {
            e = events.recv() => match e {
                Ok(u) if u.info.state == JobState::Running => started = Some(u.info),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                _ => {}
            },
            _ = tick.tick() => {}
        }
        let mut active = queue.active();
        // A short job may be over already; still say it ran.
        if let Some(job) = started.filter(|s| !active.iter().any(|j| j.id == s.id)) {
            active.push(job);
        }
        let line = status_line(&active);
        if line != last {
            status(&line);
            last = line;
        }
    }
}

/// Sends WATCHDOG=1 at half the interval systemd asked for (WatchdogSec), as long as
/// every queue lane's worker is alive. If one died (a panic), the pings stop and
/// systemd restarts twindbd, instead of jobs waiting forever in a dead lane.
pub async fn watchdog(queue: Arc<Queue>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let mut tick = tokio::time::interval(interval / 2);
    let mut reported = false;
    loop {
        tick.tick().await;
        if queue.healthy() {
            send(&[NotifyState::Watchdog]);
        } else if !reported {
            tracing::error!(
                "a queue worker died: no more watchdog pings, systemd will restart twindbd"
            );
            reported = true;
        }
    }
}

/// Byte counts for STATUS lines: "3.0 MiB".
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use twindb_proto::{JobKind, Progress, RunType};

    fn job(id: u64, state: JobState, phase: &str, bytes_in: u64) -> JobInfo {
        JobInfo {
            id,
            kind: JobKind::BackupFiles,
            run_type: Some(RunType::Daily),
            title: "daily backup files".into(),
            state,
            queued_at: Utc::now(),
            started_at: None,
            finished_at: None,
            progress: Progress {
                phase: phase.into(),
                bytes_in,
                bytes_out: 0,
                rate: 0.0,
            },
            error: None,
            warnings: vec![],
            copies: vec![],
            message: None,
            verify: None,
            phases: Vec::new(),
            drill: vec![],
            excluded: vec![],
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(&[]), "idle");
        assert_eq!(
            status_line(&[
                job(3, JobState::Running, "backing up /etc", 3 << 20),
                job(4, JobState::Queued, "", 0)
            ]),
            "running job 3 daily backup files: backing up /etc, 3.0 MiB read; 1 queued"
        );
    }
}
