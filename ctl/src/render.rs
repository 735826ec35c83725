//! Human output: tables, job lines, and progress bars on a terminal.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use twindb_proto::{
    CheckResponse, CopyInfo, EnqueuedJob, JobInfo, JobState, RetentionResponse, StatusResponse,
};

pub fn print_json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn enqueued(e: &EnqueuedJob) {
    let how = if e.coalesced {
        "already queued, joined it"
    } else {
        "queued"
    };
    println!("job {}: {} ({how})", e.job.id, e.job.title);
}

pub fn copies(copies: &[CopyInfo]) {
    if copies.is_empty() {
        println!("no copies");
        return;
    }
    let width = copies.iter().map(|c| c.key.len()).max().unwrap_or(3).max(3);
    // Copies TwinDB Backup wrote are marked in a last column, shown only when there are some.
    let any_twindb = copies.iter().any(|c| c.origin.is_some());
    let origin = |c: Option<&CopyInfo>| match (any_twindb, c) {
        (false, _) => "",
        (true, None) => "  ORIGIN",
        (true, Some(c)) if c.origin.is_some() => "  TwinDB Backup",
        (true, Some(_)) => "  twindb",
    };
    println!(
        "{:<width$}  {:<6}  {:<7}  {:<6}  {:>10}  {:<19}{}",
        "KEY",
        "TYPE",
        "RUN",
        "WHERE",
        "SIZE",
        "FINISHED",
        origin(None)
    );
    for c in copies {
        let run = c
            .run_type
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<width$}  {:<6}  {:<7}  {:<6}  {:>10}  {:<19}{}",
            c.key,
            c.kind.to_string(),
            run,
            c.location,
            HumanBytes(c.size).to_string(),
            when(c.finished),
            origin(Some(c))
        );
    }
}

/// Problems met reading TwinDB Backup's status files, on stderr.
pub fn problems(problems: &[String]) {
    for p in problems {
        eprintln!("warning: {p}");
    }
}

pub fn checks(resp: &CheckResponse) {
    for c in &resp.checks {
        let verdict = if c.ok { "ok  " } else { "FAIL" };
        println!(
            "{verdict}  {:<11}  {}  ({:.2} s)",
            c.role, c.name, c.seconds
        );
        if let Some(e) = &c.error {
            println!("      {e}");
        }
    }
    println!("{}", if resp.healthy { "healthy" } else { "UNHEALTHY" });
}

pub fn jobs(jobs: &[JobInfo]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:>5}  {:<10}  {:<19}  {:>9}  TITLE",
        "ID", "STATE", "QUEUED", "DURATION"
    );
    for j in jobs {
        let duration = match (j.started_at, j.finished_at) {
            (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "-".into(),
        };
        println!(
            "{:>5}  {:<10}  {:<19}  {:>9}  {}",
            j.id,
            j.state.to_string(),
            when(j.queued_at),
            duration,
            j.title
        );
        if let Some(e) = &j.error {
            println!("       error: {e}");
        }
    }
}

pub fn job(j: &JobInfo) {
    println!("job {}: {}", j.id, j.title);
    println!("  state:    {}", j.state);
    println!("  queued:   {}", when(j.queued_at));
    if let Some(t) = j.started_at {
        println!("  started:  {}", when(t));
    }
    if let Some(t) = j.finished_at {
        println!("  finished: {}", when(t));
    }
    println!(
        "  bytes:    {} read, {} written",
        HumanBytes(j.progress.bytes_in),
        HumanBytes(j.progress.bytes_out)
    );
    outcome_lines(j);
}

/// What a finished job produced: copies, warnings, its message and its error.
fn outcome_lines(j: &JobInfo) {
    for c in &j.copies {
        println!("  copy: {c}");
    }
    for w in &j.warnings {
        println!("  warning: {w}");
    }
    for p in &j.phases {
        println!("  {}", phase_line(p));
    }
    for x in &j.excluded {
        println!(
            "  excluded from {}: {} entries matched by exclude, {} cache folders, {} mount points",
            x.dir, x.entries, x.cache_dirs, x.mount_points
        );
    }
    if let Some(m) = &j.message {
        println!("  {m}");
    }
    if let Some(e) = &j.error {
        println!("  error: {e}");
    }
}

/// "time: prepare db1/daily/mysql/...: 12.3s".
fn phase_line(p: &twindb_proto::PhaseTime) -> String {
    match &p.copy {
        Some(copy) => format!("time: {} {copy}: {:.1}s", p.phase, p.seconds),
        None => format!("time: {}: {:.1}s", p.phase, p.seconds),
    }
}

/// "3d 4h", "2h 5m", "42s".
fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

pub fn retention(r: &RetentionResponse) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    if r.deletions.is_empty() {
        println!("retention: nothing to delete; {} copies kept", r.kept);
    } else {
        for d in &r.deletions {
            println!("{verb} {} ({})", d.key, d.reason);
        }
        println!(
            "retention: {verb} {} copies, {} kept{}",
            r.deletions.len(),
            r.kept,
            if r.dry_run {
                " (dry run: nothing was deleted)"
            } else {
                ""
            }
        );
    }
    for e in &r.errors {
        println!("error: {e}");
    }
}

pub fn status(s: &StatusResponse) {
    println!(
        "twindbd {} on {}, up {} (since {}), destination {}",
        s.version,
        s.host,
        uptime(s.uptime_seconds),
        when(s.started_at),
        s.destination
    );
    if s.running.is_empty() && s.queued.is_empty() {
        println!("idle");
    }
    for j in &s.running {
        println!(
            "running: job {} {} — {} ({} read, {}/s)",
            j.id,
            j.title,
            j.progress.phase,
            HumanBytes(j.progress.bytes_in),
            HumanBytes(j.progress.rate as u64)
        );
    }
    for j in &s.queued {
        println!("queued:  job {} {}", j.id, j.title);
    }
    if let Some(b) = &s.binlog_stream {
        println!(
            "binlog stream: {} at {}:{}, lag {:.1}s",
            b.state,
            b.file.as_deref().unwrap_or("-"),
            b.position,
            b.lag_seconds
        );
        if let (Some(e), Some(at)) = (&b.last_error, b.last_error_at) {
            println!("  last error ({}): {e}", when(at));
        }
        if let (Some(g), Some(at)) = (&b.last_gap, b.last_gap_at) {
            println!("  last gap ({}): {g}", when(at));
        }
    }
    println!();
    println!(
        "{:<8}  {:<8}  {:<19}  {:<10}  {:>9}  {:>10}  NEXT RUN",
        "RUN", "ENABLED", "LAST RUN", "OUTCOME", "DURATION", "SIZE"
    );
    for r in &s.run_types {
        println!(
            "{:<8}  {:<8}  {:<19}  {:<10}  {:>9}  {:>10}  {}",
            r.run_type.to_string(),
            if r.enabled { "yes" } else { "no" },
            r.last_run.map(when).unwrap_or_else(|| "never".into()),
            r.last_state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            r.last_duration_seconds
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_else(|| "-".into()),
            r.last_size
                .map(|b| HumanBytes(b).to_string())
                .unwrap_or_else(|| "-".into()),
            r.next_run.map(when).unwrap_or_else(|| "-".into()),
        );
        if let Some(e) = &r.last_error {
            println!("          last error: {e}");
        }
    }
    match (&s.last_drill, s.next_drill) {
        (None, None) => {}
        (None, Some(next)) => println!("\nrestore drill: none yet, next {}", when(next)),
        (Some(last), next) => {
            let next = next
                .map(|t| format!(", next {}", when(t)))
                .unwrap_or_default();
            let at = last.finished_at.map(when).unwrap_or_else(|| "-".into());
            println!("\nrestore drill: {} {at}{next}", last.state);
            drill_lines(&last.drill);
        }
    }
}

/// A drill's outcome: a line per copy, with its recovery time or its error.
pub fn drill(info: &JobInfo) {
    println!("restore drill {}", info.state);
    drill_lines(&info.drill);
    if info.drill.is_empty() {
        if let Some(e) = &info.error {
            println!("  {e}");
        }
    }
}

fn drill_lines(reports: &[twindb_proto::VerifyReport]) {
    for r in reports {
        match (&r.error, r.rto_seconds) {
            (None, Some(rto)) => println!(
                "  {:<6} {}: recovered in {rto:.1} s (restore {:.1} s); {}",
                r.kind.as_str(),
                r.copy,
                r.restore_seconds,
                r.checks.join("; ")
            ),
            (Some(e), _) => println!("  {:<6} {}: FAILED: {e}", r.kind.as_str(), r.copy),
            (None, None) => println!("  {:<6} {}: ok", r.kind.as_str(), r.copy),
        }
    }
}

/// Where progress goes: bars on a terminal, plain lines otherwise, nothing with --json.
pub struct Display {
    multi: Option<MultiProgress>,
    json: bool,
}

impl Display {
    pub fn new(json: bool) -> Display {
        let tty = !json && std::io::stderr().is_terminal();
        Display {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            json,
        }
    }

    pub fn follower(&self) -> Follower {
        Follower {
            bar: self.multi.as_ref().map(|m| m.add(new_bar())),
            quiet: self.json,
            last_line: RefCell::default(),
        }
    }
}

/// One job's progress.
pub struct Follower {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_line: RefCell<String>,
}

impl Follower {
    pub fn update(&self, j: &JobInfo) {
        if let Some(bar) = &self.bar {
            bar.set_position(j.progress.bytes_in);
            bar.set_message(format!(
                "job {} {}: {} (written {})",
                j.id,
                j.state,
                if j.progress.phase.is_empty() {
                    &j.title
                } else {
                    &j.progress.phase
                },
                HumanBytes(j.progress.bytes_out)
            ));
            return;
        }
        if self.quiet {
            return;
        }
        if j.state.is_final() {
            return;
        }
        let mut line = format!("job {}: {}", j.id, j.state);
        if !j.progress.phase.is_empty() {
            line = format!("{line}: {}", j.progress.phase);
        }
        if *self.last_line.borrow() != line {
            eprintln!("{line}");
            *self.last_line.borrow_mut() = line;
        }
    }

    pub fn finish(&self, j: &JobInfo) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let outcome = match j.state {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "cancelled",
            _ => "ended",
        };
        let took = match (j.started_at, j.finished_at) {
            (Some(a), Some(b)) => format!(" in {:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => String::new(),
        };
        println!(
            "job {} {}: {outcome}{took}, {} read, {} written",
            j.id,
            j.title,
            HumanBytes(j.progress.bytes_in),
            HumanBytes(j.progress.bytes_out)
        );
        outcome_lines(j);
    }
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes} read ({bytes_per_sec}) {elapsed} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `ls --pitr`: the times `restore mysql --until` can reach, in local time (the
/// time zone `--until` is read in, when twindbctl runs on the database host).
pub fn pitr(resp: &twindb_proto::PitrResponse) {
    if resp.windows.is_empty() {
        println!(
            "no point-in-time restore is possible: no MySQL copy has its binary logs backed up after it"
        );
        return;
    }
    println!(
        "point-in-time restore is possible (local time, {}):",
        Local::now().format("%:z")
    );
    for w in &resp.windows {
        println!(
            "  from {} to {}  (from {}, binlogs {} to {})",
            when(w.from),
            when(w.to),
            w.first_copy,
            w.first_binlog,
            w.last_binlog
        );
    }
}
