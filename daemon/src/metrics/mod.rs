//! Metrics: Prometheus text at `/metrics` (on the API socket and on `[daemon]
//! metrics_listen`), and pushes to DataDog or StatsD (`[export]`).
//!
//! Gauges about the last runs are set from the persisted job records at every scrape,
//! so they survive restarts (an alert on "backup too old" must not fire because
//! twindbd restarted). Counters count events since this start, as Prometheus expects.
//! Names are documented in docs/operations.md; docs/grafana-dashboard.json and
//! docs/prometheus-alerts.yml use them.

mod binlog;
pub mod datadog;
pub mod statsd;

use std::cell::RefCell;

use prometheus::core::Collector;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use twindb_proto::{CopyKind, JobInfo, JobKind, JobState, RunType};

use crate::state::KindRecord;
use crate::status::CopyMeta;

/// The `run_type` label of copies and jobs that have none (binlogs).
pub const NO_RUN_TYPE: &str = "none";

pub fn run_type_label(rt: Option<RunType>) -> &'static str {
    rt.map_or(NO_RUN_TYPE, RunType::as_str)
}

pub fn lane_label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::BackupFiles => "backup_files",
        JobKind::BackupMysql => "backup_mysql",
        JobKind::BackupBinlog => "backup_binlog",
        JobKind::Restore => "restore",
        JobKind::Verify => "verify",
        JobKind::Clone => "clone",
    }
}

pub struct Metrics {
    registry: Registry,
    last_success: GaugeVec,
    last_run: GaugeVec,
    last_run_success: GaugeVec,
    last_duration: GaugeVec,
    last_read: GaugeVec,
    last_written: GaugeVec,
    read_total: CounterVec,
    written_total: CounterVec,
    jobs_total: CounterVec,
    failures_total: CounterVec,
    copies: GaugeVec,
    copies_bytes: GaugeVec,
    queue_depth: GaugeVec,
    running: GaugeVec,
    last_verify_success: GaugeVec,
    verify_last_success: GaugeVec,
    verify_restore_seconds: GaugeVec,
    verify_failures_total: CounterVec,
    restore_duration: GaugeVec,
    restores_total: CounterVec,
    retention_deleted_total: CounterVec,
    notification_failures_total: CounterVec,
    throttled_seconds_total: CounterVec,
    binlog: binlog::BinlogMetrics,
    /// Every metric registered, with its label names: see [`Metrics::descriptions`].
    descriptions: Vec<(String, Vec<String>)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Every collector is registered here, so that `descriptions` lists all of them:
        // a labelled metric is absent from a scrape until its first value is set.
        let descriptions = RefCell::new(Vec::new());
        let register = |c: Box<dyn Collector>| {
            let mut descriptions = descriptions.borrow_mut();
            descriptions.extend(
                c.desc()
                    .iter()
                    .map(|d| (d.fq_name.clone(), d.variable_labels.clone())),
            );
            registry.register(c).expect("unique metric");
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(c.clone()));
            c
        };
        let kr = &["kind", "run_type"];
        let m = Metrics {
            last_success: gauge(
                "twindb_last_success_timestamp_seconds",
                "When the last successful backup of this kind and run type finished (Unix time).",
                kr,
            ),
            last_run: gauge(
                "twindb_last_run_timestamp_seconds",
                "When the last backup of this kind and run type started, whatever its outcome (Unix time).",
                kr,
            ),
            last_run_success: gauge(
                "twindb_last_run_success",
                "1 if the last backup of this kind and run type succeeded, 0 if it failed or was cancelled.",
                kr,
            ),
            last_duration: gauge(
                "twindb_last_duration_seconds",
                "How long the last backup of this kind and run type took.",
                kr,
            ),
            last_read: gauge(
                "twindb_last_read_bytes",
                "Bytes the last backup of this kind and run type read from its source.",
                kr,
            ),
            last_written: gauge(
                "twindb_last_written_bytes",
                "Bytes the last backup of this kind and run type stored on the destination.",
                kr,
            ),
            read_total: counter(
                "twindb_read_bytes_total",
                "Bytes read from sources by backups since twindbd started.",
                kr,
            ),
            written_total: counter(
                "twindb_written_bytes_total",
                "Bytes stored on the destination by backups since twindbd started.",
                kr,
            ),
            jobs_total: counter(
                "twindb_backups_total",
                "Backups that ended since twindbd started, by outcome (succeeded, failed, cancelled).",
                &["kind", "run_type", "outcome"],
            ),
            failures_total: counter(
                "twindb_failures_total",
                "Backups that failed since twindbd started.",
                kr,
            ),
            copies: gauge(
                "twindb_copies",
                "Copies kept, by kind, run type and location (remote or local).",
                &["kind", "run_type", "location"],
            ),
            copies_bytes: gauge(
                "twindb_copies_bytes",
                "Stored bytes of the copies kept, by kind, run type and location.",
                &["kind", "run_type", "location"],
            ),
            queue_depth: gauge(
                "twindb_queue_depth",
                "Jobs waiting in each lane.",
                &["lane"],
            ),
            running: gauge(
                "twindb_running_jobs",
                "Jobs running in each lane (0 or 1).",
                &["lane"],
            ),
            last_verify_success: gauge(
                "twindb_last_verify_success_timestamp_seconds",
                "When the last successful verify (restore test) of a MySQL copy finished (Unix time).",
                &["run_type"],
            ),
            verify_last_success: gauge(
                "twindb_verify_last_success_timestamp_seconds",
                "When the last verify or restore drill of this kind of copy (mysql, files) succeeded (Unix time).",
                &["kind"],
            ),
            verify_restore_seconds: gauge(
                "twindb_verify_restore_seconds",
                "The recovery time the last successful verify or drill of this kind measured: seconds from the start of the restore until the server accepted queries (mysql) or every file was restored (files).",
                &["kind"],
            ),
            verify_failures_total: counter(
                "twindb_verify_failures_total",
                "Verifies and drill items that failed since twindbd started, by kind of copy.",
                &["kind"],
            ),
            restore_duration: gauge(
                "twindb_last_restore_duration_seconds",
                "How long the last successful restore of this kind took.",
                &["kind"],
            ),
            restores_total: counter(
                "twindb_restores_total",
                "Restores that ended since twindbd started, by outcome.",
                &["kind", "outcome"],
            ),
            retention_deleted_total: counter(
                "twindb_retention_deleted_copies_total",
                "Copies deleted by retention since twindbd started.",
                &["kind", "location"],
            ),
            notification_failures_total: counter(
                "twindb_notification_failures_total",
                "Notifications that could not be sent, by channel (email, webhook, datadog, statsd).",
                &["channel"],
            ),
            throttled_seconds_total: counter(
                "twindb_throttled_seconds_total",
                "Seconds jobs waited for the bandwidth limits, by direction (upload: [daemon] max_upload_rate, read: max_read_rate).",
                &["direction"],
            ),
            binlog: binlog::BinlogMetrics::new(&gauge, &counter),
            registry: registry.clone(),
            descriptions: vec![],
        };
        let build = GaugeVec::new(
            Opts::new("twindb_build_info", "twindbd's version; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        register(Box::new(build));
        let start = Gauge::new(
            "twindb_start_time_seconds",
            "When twindbd started (Unix time).",
        )
        .expect("valid metric");
        start.set(chrono::Utc::now().timestamp() as f64);
        register(Box::new(start));
        Metrics {
            descriptions: descriptions.into_inner(),
            ..m
        }
    }

    /// The name and label names of every metric twindbd exports, also of those that
    /// have no value yet (docs/operations.md documents each; daemon/tests/docs.rs
    /// checks it).
    pub fn descriptions(&self) -> &[(String, Vec<String>)] {
        &self.descriptions
    }

    /// Sets the gauges that describe the last runs and the queue.
    pub fn refresh(&self, records: &[KindRecord], active: &[JobInfo]) {
        for r in records {
            let labels = [r.kind.as_str(), run_type_label(r.run_type)];
            let rec = &r.record;
            if let Some(t) = rec.last_success_finished {
                self.last_success
                    .with_label_values(&labels)
                    .set(t.timestamp() as f64);
            }
            if let Some(t) = rec.last_run {
                self.last_run
                    .with_label_values(&labels)
                    .set(t.timestamp() as f64);
            }
            if let Some(state) = rec.last_state {
                let ok = if state == JobState::Succeeded {
                    1.0
                } else {
                    0.0
                };
                self.last_run_success.with_label_values(&labels).set(ok);
            }
            if let Some(d) = rec.last_duration_seconds {
                self.last_duration.with_label_values(&labels).set(d);
            }
            if let Some(b) = rec.last_read {
                self.last_read.with_label_values(&labels).set(b as f64);
            }
            if let Some(b) = rec.last_size {
                self.last_written.with_label_values(&labels).set(b as f64);
            }
        }
        for lane in JobKind::ALL {
            let in_lane = |state: JobState| {
                active
                    .iter()
                    .filter(|j| j.kind == lane && j.state == state)
                    .count() as f64
            };
            let label = [lane_label(lane)];
            self.queue_depth
                .with_label_values(&label)
                .set(in_lane(JobState::Queued));
            self.running
                .with_label_values(&label)
                .set(in_lane(JobState::Running));
        }
    }

    /// Counts a finished job. `copy_kind` is what it backed up or restored. A verify
    /// or clone is neither a backup nor a restore: it is not counted here (verify has
    /// its own gauge).
    pub fn job_finished(&self, job: &JobInfo, copy_kind: CopyKind) {
        let outcome = job.state.to_string();
        if matches!(job.kind, JobKind::Verify | JobKind::Clone) {
            return;
        }
        if job.kind == JobKind::Restore {
            self.restores_total
                .with_label_values(&[copy_kind.as_str(), &outcome])
                .inc();
            if let (JobState::Succeeded, Some(a), Some(b)) =
                (job.state, job.started_at, job.finished_at)
            {
                self.restore_duration
                    .with_label_values(&[copy_kind.as_str()])
                    .set((b - a).num_milliseconds() as f64 / 1000.0);
            }
            return;
        }
        let labels = [copy_kind.as_str(), run_type_label(job.run_type)];
        self.jobs_total
            .with_label_values(&[labels[0], labels[1], &outcome])
            .inc();
        if job.state == JobState::Failed {
            self.failures_total.with_label_values(&labels).inc();
        }
        self.read_total
            .with_label_values(&labels)
            .inc_by(job.progress.bytes_in as f64);
        self.written_total
            .with_label_values(&labels)
            .inc_by(job.progress.bytes_out as f64);
    }

    /// Replaces the copy counts of `location` ("remote" or "local") with `copies`.
    /// Counts the copies on the destination (`location="remote"`) and, with
    /// `keep_local`, their twins in `keep_local_path` (`location="local"`).
    pub fn set_copies(&self, copies: &[CopyMeta], keep_local: bool) {
        let remote = |c: &CopyMeta| Some(c.size);
        let local = |c: &CopyMeta| c.local.as_ref().map(|l| l.size);
        self.set_location("remote", copies, &remote);
        if keep_local {
            self.set_location("local", copies, &local);
        }
    }

    /// One location's gauges: `size` is a copy's stored size there, None when absent.
    fn set_location(
        &self,
        location: &str,
        copies: &[CopyMeta],
        size: &dyn Fn(&CopyMeta) -> Option<u64>,
    ) {
        for kind in [CopyKind::Files, CopyKind::Mysql, CopyKind::Binlog] {
            let run_types: Vec<Option<RunType>> = if kind == CopyKind::Binlog {
                vec![None]
            } else {
                RunType::ALL.into_iter().map(Some).collect()
            };
            for rt in run_types {
                let of = copies
                    .iter()
                    .filter(|c| c.kind == kind && c.run_type == rt)
                    .filter_map(size);
                let labels = [kind.as_str(), run_type_label(rt), location];
                let (n, bytes) = of.fold((0u64, 0u64), |(n, b), size| (n + 1, b + size));
                self.copies.with_label_values(&labels).set(n as f64);
                self.copies_bytes
                    .with_label_values(&labels)
                    .set(bytes as f64);
            }
        }
    }

    pub fn retention_deleted(&self, kind: CopyKind, location: &str) {
        self.retention_deleted_total
            .with_label_values(&[kind.as_str(), location])
            .inc();
    }

    pub fn notification_failed(&self, channel: &str) {
        self.notification_failures_total
            .with_label_values(&[channel])
            .inc();
    }

    /// When verifies of MySQL copies last succeeded, per run type (from state.json, so
    /// the gauge survives a restart).
    pub fn refresh_verified(&self, verified: &[crate::state::Verified]) {
        for v in verified {
            self.last_verify_success
                .with_label_values(&[run_type_label(v.run_type)])
                .set(v.at.timestamp() as f64);
        }
    }

    /// The time jobs waited for the bandwidth limits, from the limiters' own totals.
    pub fn refresh_throttle(&self, t: &crate::throttle::Throttles) {
        for (direction, throttle) in [("upload", &t.upload), ("read", &t.read)] {
            let c = self.throttled_seconds_total.with_label_values(&[direction]);
            let more = throttle.waited().as_secs_f64() - c.get();
            if more > 0.0 {
                c.inc_by(more);
            }
        }
    }

    /// For every verify and drill item: its outcome and measured recovery time.
    pub fn verify_finished(&self, report: &twindb_proto::VerifyReport) {
        let kind = [report.kind.as_str()];
        if report.success {
            self.verify_last_success
                .with_label_values(&kind)
                .set(chrono::Utc::now().timestamp() as f64);
            if let Some(rto) = report.rto_seconds {
                self.verify_restore_seconds
                    .with_label_values(&kind)
                    .set(rto);
            }
        } else {
            self.verify_failures_total.with_label_values(&kind).inc();
        }
    }

    /// The last drill as `state.json` kept it: the drill gauges survive a restart, so
    /// "no successful drill in 8 days" does not start over with each start.
    pub fn refresh_drill(&self, last: Option<&JobInfo>) {
        let Some(job) = last else {
            return;
        };
        let Some(at) = job.finished_at else {
            return;
        };
        for r in job.drill.iter().filter(|r| r.success) {
            let kind = [r.kind.as_str()];
            let last = self.verify_last_success.with_label_values(&kind);
            if last.get() < at.timestamp() as f64 {
                last.set(at.timestamp() as f64);
                if let Some(rto) = r.rto_seconds {
                    self.verify_restore_seconds
                        .with_label_values(&kind)
                        .set(rto);
                }
            }
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

/// One value pushed to DataDog or StatsD.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub value: f64,
    pub tags: Vec<String>,
}

/// What TwinDB exported: the duration of each successful backup and restore, in
/// seconds, as `twindb.{kind}.backup_time` and `twindb.{kind}.restore_time`. Verify
/// and clone jobs export nothing: they are neither.
pub fn points_for(job: &JobInfo, copy_kind: CopyKind) -> Vec<Point> {
    let (JobState::Succeeded, Some(a), Some(b)) = (job.state, job.started_at, job.finished_at)
    else {
        return vec![];
    };
    let what = match job.kind {
        JobKind::Restore => "restore_time",
        JobKind::Verify | JobKind::Clone => return vec![],
        _ => "backup_time",
    };
    let mut tags = vec![format!("kind:{copy_kind}")];
    if let Some(rt) = job.run_type {
        tags.push(format!("run_type:{rt}"));
    }
    vec![Point {
        name: format!("twindb.{copy_kind}.{what}"),
        value: (b - a).num_milliseconds() as f64 / 1000.0,
        tags,
    }]
}

/// Pushes a finished job's points to the configured exporter. A failure is logged and
/// counted, never more: exporting must not fail a backup.
pub async fn export(
    config: &crate::config::ExportConfig,
    host: &str,
    job: &JobInfo,
    copy_kind: CopyKind,
    metrics: &Metrics,
) {
    use crate::config::ExportConfig;
    let points = points_for(job, copy_kind);
    if points.is_empty() {
        return;
    }
    let (channel, result) = match config {
        ExportConfig::Datadog {
            api_key,
            app_key,
            endpoint,
        } => (
            "datadog",
            datadog::send(endpoint, api_key, app_key.as_ref(), host, &points)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e))),
        ),
        ExportConfig::Statsd { host, port } => (
            "statsd",
            statsd::send(host, *port, &points)
                .await
                .map_err(|e| format!("{host}:{port}: {e}")),
        ),
    };
    match result {
        Ok(()) => tracing::debug!(job = job.id, channel, "metrics exported"),
        Err(e) => {
            metrics.notification_failed(channel);
            tracing::warn!(job = job.id, channel, error = %e, "could not export metrics");
        }
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use twindb_proto::Progress;

    fn job(kind: JobKind, state: JobState) -> JobInfo {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
        JobInfo {
            id: 1,
            kind,
            run_type: Some(RunType::Daily),
            title: "daily backup files".into(),
            state,
            queued_at: t,
            started_at: Some(t),
            finished_at: Some(t + chrono::Duration::seconds(12)),
            progress: Progress {
                phase: String::new(),
                bytes_in: 1000,
                bytes_out: 400,
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

    /// Every `twindb_*` name the docs, the dashboard and the alert rules use exists.
    #[test]
    fn the_docs_dashboard_and_alerts_use_real_metric_names() {
        let m = Metrics::new();
        let rec = crate::state::RunRecord {
            last_success_finished: Some(Utc::now()),
            last_run: Some(Utc::now()),
            last_state: Some(JobState::Failed),
            last_duration_seconds: Some(1.0),
            last_read: Some(1),
            last_size: Some(1),
            ..Default::default()
        };
        m.refresh(
            &[KindRecord {
                kind: CopyKind::Files,
                run_type: Some(RunType::Daily),
                record: rec,
            }],
            &[],
        );
        m.job_finished(
            &job(JobKind::BackupFiles, JobState::Failed),
            CopyKind::Files,
        );
        m.job_finished(&job(JobKind::Restore, JobState::Succeeded), CopyKind::Files);
        m.set_copies(&[], true);
        m.retention_deleted(CopyKind::Files, "remote");
        m.notification_failed("email");
        m.refresh_verified(&[crate::state::Verified {
            run_type: Some(RunType::Daily),
            at: Utc::now(),
        }]);
        m.refresh_throttle(&crate::throttle::Throttles::default());
        let report = |success| twindb_proto::VerifyReport {
            copy: "k".into(),
            restore_seconds: 1.0,
            success,
            error: None,
            kind: CopyKind::Mysql,
            rto_seconds: Some(2.0),
            checks: vec![],
        };
        m.verify_finished(&report(true));
        m.verify_finished(&report(false));
        let text = m.render();
        let names: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        for (file, doc) in [
            (
                "prometheus-alerts.yml",
                include_str!("../../../docs/prometheus-alerts.yml"),
            ),
            (
                "grafana-dashboard.json",
                include_str!("../../../docs/grafana-dashboard.json"),
            ),
            ("operations.md", include_str!("../../../docs/operations.md")),
        ] {
            let mut rest = doc;
            let mut found = 0;
            while let Some(i) = rest.find("twindb_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                if name.ends_with('_') || name == "twindb_tests" {
                    continue;
                }
                found += 1;
                assert!(
                    names.contains(name.as_str()),
                    "{file} uses {name}, which twindbd does not export"
                );
            }
            assert!(found > 3, "{file}");
        }
    }

    /// A verify or clone is no backup: it counts in no backup counter and exports
    /// no `backup_time` (it once counted as a MySQL backup).
    #[test]
    fn verify_and_clone_jobs_count_as_no_backup() {
        let m = Metrics::new();
        for kind in [JobKind::Verify, JobKind::Clone] {
            for state in [JobState::Succeeded, JobState::Failed] {
                m.job_finished(&job(kind, state), CopyKind::Mysql);
                assert_eq!(points_for(&job(kind, state), CopyKind::Mysql), vec![]);
            }
        }
        let text = m.render();
        assert!(
            !text.contains("twindb_backups_total")
                && !text.contains("twindb_failures_total")
                && !text.contains("twindb_restores_total"),
            "{text}"
        );
        m.job_finished(
            &job(JobKind::BackupMysql, JobState::Failed),
            CopyKind::Mysql,
        );
        assert!(m.render().contains("twindb_failures_total{kind=\"mysql\""));
    }

    #[test]
    fn renders_records_counters_and_build_info() {
        let m = Metrics::new();
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 12).unwrap();
        let rec = crate::state::RunRecord {
            last_success_finished: Some(t),
            last_state: Some(JobState::Succeeded),
            last_size: Some(400),
            ..Default::default()
        };
        m.refresh(
            &[KindRecord {
                kind: CopyKind::Files,
                run_type: Some(RunType::Daily),
                record: rec,
            }],
            &[job(JobKind::BackupFiles, JobState::Queued)],
        );
        m.job_finished(
            &job(JobKind::BackupFiles, JobState::Failed),
            CopyKind::Files,
        );
        let text = m.render();
        for line in [
            format!(
                "twindb_last_success_timestamp_seconds{{kind=\"files\",run_type=\"daily\"}} {}",
                t.timestamp()
            ),
            "twindb_last_written_bytes{kind=\"files\",run_type=\"daily\"} 400".into(),
            "twindb_failures_total{kind=\"files\",run_type=\"daily\"} 1".into(),
            "twindb_read_bytes_total{kind=\"files\",run_type=\"daily\"} 1000".into(),
            "twindb_queue_depth{lane=\"backup_files\"} 1".into(),
            "twindb_queue_depth{lane=\"clone\"} 0".into(),
            "twindb_running_jobs{lane=\"verify\"} 0".into(),
            format!(
                "twindb_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
