//! Retrying transient destination errors with bounded exponential backoff.

use std::future::Future;
use std::time::Duration;

use super::DestinationError;

/// Attempts in all, the first included. With the delays below a destination that
/// stays down fails after about 8 s of waiting, plus the attempts' own timeouts.
pub const ATTEMPTS: u32 = 5;
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(4);

/// Runs `op` until it succeeds, fails with an error that is not
/// [`DestinationError::is_retryable`], or has failed [`ATTEMPTS`] times.
/// `what` names the operation in the log.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, DestinationError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DestinationError>>,
{
    let mut delay = FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                // Jitter spreads the retries of parallel uploads apart.
                let jitter = Duration::from_millis(u64::from(rand_below(250)));
                tracing::warn!(
                    attempt,
                    of = ATTEMPTS,
                    "{what} failed, retrying in {:.1} s: {e:#}",
                    (delay + jitter).as_secs_f64()
                );
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A cheap, good-enough random number for jitter (no crypto needed).
fn rand_below(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::destination::ErrorKind;

    fn err(kind: ErrorKind) -> DestinationError {
        let mut e = DestinationError::new("test:", "storing", Some("k"), io::Error::other("boom"));
        e.kind = kind;
        e
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let got = retry("op", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err(ErrorKind::Unreachable))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound_and_never_retries_permanent_errors() {
        let calls = AtomicU32::new(0);
        let e = retry("op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(ErrorKind::Unreachable))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);

        calls.store(0, Ordering::SeqCst);
        let e = retry("op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(ErrorKind::PermissionDenied))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
