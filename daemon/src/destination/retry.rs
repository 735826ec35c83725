//! Bounded exponential backoff for destination operations that are safe to repeat.
//!
//! Failures worth retrying are [`ErrorKind::Unreachable`](super::ErrorKind) (the
//! destination is down) and [`ErrorKind::Throttled`](super::ErrorKind) (it asks us to
//! slow down): both wait with the same backoff.
//!
//! Only idempotent work goes through [`retry`]: connecting, listing, reading from the
//! start, deleting, writing a small object whose bytes are in memory. A streamed `put`
//! is never retried as a whole: its input is a one-shot stream that cannot be replayed,
//! so a failure mid-upload is reported (and the temp object removed) instead.

use std::future::Future;
use std::time::Duration;

use super::DestinationError;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in all, the first one included. 1 means no retry.
    pub attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub initial: Duration,
    /// Upper bound of one pause.
    pub max_delay: Duration,
}

impl Default for Backoff {
    /// 5 tries, pausing 0.5, 1, 2 and 4 s: a destination that stays down fails the
    /// operation within 7.5 s of waiting (plus the time the tries themselves take).
    fn default() -> Self {
        Backoff {
            attempts: 5,
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// No retry at all (tests, or callers that retry themselves).
    pub const NONE: Backoff = Backoff {
        attempts: 1,
        initial: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The pause after failed try number `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// The longest total pause before [`retry`] gives up.
    pub fn total_delay(&self) -> Duration {
        (0..self.attempts.saturating_sub(1))
            .map(|n| self.delay(n))
            .sum()
    }
}

/// Runs `op` until it succeeds, fails with an error that is not worth retrying
/// ([`DestinationError::is_retryable`]), or `backoff.attempts` tries have failed.
/// Returns the last error. Each retry is logged as a warning (it recovered, or will be
/// reported as an error by the caller).
pub async fn retry<T, F, Fut>(backoff: &Backoff, mut op: F) -> Result<T, DestinationError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DestinationError>>,
{
    let mut n = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n + 1 < backoff.attempts => {
                let pause = backoff.delay(n);
                tracing::warn!(
                    error = %format!("{e:#}"),
                    attempt = n + 1,
                    of = backoff.attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    "destination operation failed, retrying"
                );
                tokio::time::sleep(pause).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Tries [`retry`] makes with the default backoff.
pub const ATTEMPTS: u32 = 5;

/// [`retry`] with the default backoff; `what` names the operation in the retry log.
pub async fn retry_as<T, F, Fut>(what: &str, op: F) -> Result<T, DestinationError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DestinationError>>,
{
    use tracing::Instrument;
    retry(&Backoff::default(), op)
        .instrument(tracing::info_span!("destination", op = %what))
        .await
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::destination::ErrorKind;

    fn err(kind: io::ErrorKind) -> DestinationError {
        DestinationError::new("test:dest", "reading", Some("k"), io::Error::from(kind))
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            attempts: 6,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<_> = (0..5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.total_delay(), Duration::from_millis(1700));
        assert_eq!(
            Backoff::default().total_delay(),
            Duration::from_millis(7500)
        );
        assert_eq!(Backoff::NONE.total_delay(), Duration::ZERO);
        assert_eq!(b.delay(200), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_bound() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let e = retry(&Backoff::default(), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(io::ErrorKind::ConnectionRefused))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(tries.load(Ordering::SeqCst), 5);
        assert_eq!(started.elapsed(), Backoff::default().total_delay());
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovering_operation_succeeds() {
        let tries = AtomicU32::new(0);
        let v = retry(&Backoff::default(), || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err(io::ErrorKind::ConnectionReset))
            } else {
                Ok(42)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 42);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    /// A 429 or SlowDown is worth waiting for, with the same backoff as an outage.
    #[tokio::test(start_paused = true)]
    async fn throttled_requests_are_retried_with_backoff() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let v = retry(&Backoff::default(), || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(err(io::ErrorKind::Other).with_kind(ErrorKind::Throttled))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(tries.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), Duration::from_millis(500 + 1000 + 2000));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let tries = AtomicU32::new(0);
        let e = retry(&Backoff::default(), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(io::ErrorKind::PermissionDenied))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
