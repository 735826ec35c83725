//! The binlog streamer's metrics (daemon/src/binlog/).

use std::time::Duration;

use prometheus::{CounterVec, GaugeVec};

use super::Metrics;

pub(super) struct BinlogMetrics {
    lag: GaugeVec,
    bytes: CounterVec,
    segments: CounterVec,
    gaps: CounterVec,
    consolidated: CounterVec,
}

impl BinlogMetrics {
    pub(super) fn new(
        gauge: &dyn Fn(&str, &str, &[&str]) -> GaugeVec,
        counter: &dyn Fn(&str, &str, &[&str]) -> CounterVec,
    ) -> BinlogMetrics {
        let m = BinlogMetrics {
            lag: gauge(
                "twindb_binlog_lag_seconds",
                "Age of the oldest binlog event the streamer read and has not stored yet; 0 when caught up.",
                &[],
            ),
            bytes: counter(
                "twindb_binlog_bytes_total",
                "Binlog bytes the streamer stored since twindbd started (before compression).",
                &[],
            ),
            segments: counter(
                "twindb_binlog_segments_total",
                "Binlog segments the streamer stored since twindbd started.",
                &[],
            ),
            gaps: counter(
                "twindb_binlog_gap",
                "Gaps found in the binlog stream since twindbd started: a stored position the server no longer had.",
                &[],
            ),
            consolidated: counter(
                "twindb_binlog_consolidated_total",
                "Rotated binlog files the streamer stored as segments and consolidated into one copy since twindbd started.",
                &[],
            ),
        };
        // Present in every scrape from the start, so that rate() and alerts see 0.
        m.lag.with_label_values(&[] as &[&str]).set(0.0);
        m.bytes.with_label_values(&[] as &[&str]).inc_by(0.0);
        m.segments.with_label_values(&[] as &[&str]).inc_by(0.0);
        m.gaps.with_label_values(&[] as &[&str]).inc_by(0.0);
        m.consolidated.with_label_values(&[] as &[&str]).inc_by(0.0);
        m
    }
}

impl Metrics {
    pub fn binlog_lag(&self, lag: Duration) {
        self.binlog
            .lag
            .with_label_values(&[] as &[&str])
            .set(lag.as_secs_f64());
    }

    pub fn binlog_segment_stored(&self, bytes: u64) {
        self.binlog
            .bytes
            .with_label_values(&[] as &[&str])
            .inc_by(bytes as f64);
        self.binlog.segments.with_label_values(&[] as &[&str]).inc();
    }

    pub fn binlog_gap(&self) {
        self.binlog.gaps.with_label_values(&[] as &[&str]).inc();
    }

    pub fn binlog_consolidated(&self) {
        self.binlog
            .consolidated
            .with_label_values(&[] as &[&str])
            .inc();
    }
}
