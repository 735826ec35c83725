//! Bandwidth limits that a reload changes under running jobs: `[daemon]
//! max_upload_rate` (bytes every job sends to the destination) and `max_read_rate`
//! (bytes every job reads from its source). One limiter per direction for the whole
//! daemon, shared by every job and kept across reloads, so two jobs together stay
//! under the limit and a reload applies to the chunks a running job sends next.
//!
//! A limiter hands out time slots: `n` bytes take `n / rate` seconds starting when the
//! previous ones end, and the caller sleeps (in short steps, so a cancel is seen) until
//! its slot starts. No burst beyond one chunk (128 KiB).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pipeline::Cancel;

/// The longest single sleep: a cancel is noticed within it.
const STEP: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct Throttle {
    /// Bytes per second; 0: no limit.
    rate: AtomicU64,
    /// When the last slot handed out ends.
    next_free: Mutex<Option<Instant>>,
    /// Time callers spent waiting, in nanoseconds (metrics, job reports).
    waited_nanos: AtomicU64,
}

impl Throttle {
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        self.rate
            .store(bytes_per_second.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|&r| r > 0)
    }

    /// Blocks until `n` bytes may pass; returns how long it waited.
    pub fn take(&self, n: u64, cancel: &Cancel) -> io::Result<Duration> {
        let Some(rate) = self.rate() else {
            return Ok(Duration::ZERO);
        };
        let now = Instant::now();
        let start = {
            let mut next = self.next_free.lock().expect("throttle lock");
            let start = next.filter(|t| *t > now).unwrap_or(now);
            *next = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
            start
        };
        let mut waited = Duration::ZERO;
        while Instant::now() < start {
            cancel.check()?;
            let left = start.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(STEP));
            waited = now.elapsed();
        }
        self.waited_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        Ok(waited)
    }

    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }
}

/// A pipe's limit ([`crate::pipeline::ChunkWriter::with_limit`]) on `throttle`, adding
/// the time waited to `waited` (the job's, in nanoseconds).
pub fn limit(
    throttles: Arc<Throttles>,
    upload: bool,
    cancel: Cancel,
    waited: Arc<AtomicU64>,
) -> crate::pipeline::Limit {
    Box::new(move |n| {
        let t = if upload {
            &throttles.upload
        } else {
            &throttles.read
        };
        let w = t.take(n as u64, &cancel)?;
        waited.fetch_add(w.as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    })
}

/// The daemon's two limiters.
#[derive(Debug, Default)]
pub struct Throttles {
    pub upload: Throttle,
    pub read: Throttle,
}

impl Throttles {
    /// Takes the rates of a (re)loaded config.
    pub fn configure(&self, daemon: &crate::config::DaemonConfig) {
        self.upload.set_rate(daemon.max_upload_rate);
        self.read.set_rate(daemon.max_read_rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_the_rate_and_a_new_one_applies_to_the_next_chunk() {
        let t = Throttle::default();
        let cancel = Cancel::default();
        assert_eq!(
            t.take(1 << 30, &cancel).unwrap(),
            Duration::ZERO,
            "no limit"
        );
        t.set_rate(Some(4 << 20));
        let start = Instant::now();
        for _ in 0..8 {
            t.take(256 << 10, &cancel).unwrap();
        }
        // 2 MiB at 4 MiB/s in 256 KiB chunks: the last slot starts after 7/16 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(430), "{took:?}");
        t.set_rate(None);
        let start = Instant::now();
        t.take(256 << 10, &cancel).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "the old slot may still end"
        );
    }

    #[test]
    fn a_wait_stops_at_a_cancel() {
        let t = Throttle::default();
        t.set_rate(Some(1));
        let cancel = Cancel::default();
        t.take(1, &cancel).unwrap();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            c.cancel();
        });
        let start = Instant::now();
        assert!(t.take(3600, &cancel).is_err());
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
