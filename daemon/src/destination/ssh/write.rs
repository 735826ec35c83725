//! Storing an object: a stream into a temp file beside it on its own exec channel,
//! or small bytes in one command of the connection's shell; either way committed by
//! one command that checks the size, flushes and renames.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::{DestinationError, ErrorKind, Ssh, CONFLICT, PARTIAL};
use crate::destination::retry::retry;
use crate::pipeline::ByteStream;
use crate::ssh::{lost, quote, Output};

/// What the upload command prints on stderr once it holds the temp file open.
const READY: &str = "twindb-ready";
/// Removing a temp file after a failure must not hold up the error report for long.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Ssh {
    /// Streams `data` into a temp file beside `key`, then [`Self::commit`]s it.
    pub(super) async fn put_stream(
        &self,
        key: &str,
        mut data: ByteStream,
    ) -> Result<u64, DestinationError> {
        let fail = |e| self.err("storing", Some(key), e);
        let path = self.path(key).map_err(fail)?;
        let (dir, _) = path.rsplit_once('/').expect("an absolute path");
        let temp = Self::temp_of(&path);
        // Copies hold whole folders, secrets included: readable by the login user only.
        // The shell opens the temp file before it says it is ready, so that removing
        // the temp file after a failure can never come before its creation.
        let command = format!(
            "umask 077 && mkdir -p -- {} && exec > {} && echo {READY} >&2 && exec cat",
            quote(dir),
            quote(&temp)
        );
        let ch = retry(&self.inner.tuning.backoff, || {
            self.exec("storing", Some(key), &command)
        })
        .await?;
        let guard = TempGuard(Some((self.clone(), temp.clone())));
        let (mut rd, wr) = ch.split();

        let mut state = Output::default();
        while !state.stderr.take_line(READY) {
            let msg = match self.unstalled(rd.wait()).await {
                Ok(msg) => msg,
                Err(e) => {
                    guard.remove().await;
                    return Err(fail(e));
                }
            };
            match msg {
                Some(msg) => {
                    state.take(msg);
                }
                None => {
                    guard.remove().await;
                    return Err(fail(state.result().err().unwrap_or_else(|| {
                        io::Error::other("the remote command ended before it was ready")
                    })));
                }
            }
        }
        let mut size = 0u64;
        let pump = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(|e| {
                    let mut err = fail(e);
                    err.kind = ErrorKind::Input;
                    err
                })?;
                size += chunk.len() as u64;
                self.unstalled(wr.data_bytes(chunk))
                    .await
                    .map_err(fail)?
                    .map_err(|e| fail(lost("while sending", &e)))?;
            }
            Ok(())
        };
        let pumped = {
            tokio::pin!(pump);
            // Watch the channel while writing: if `cat` dies (disk full) or the
            // connection drops, the writer would otherwise wait for window space forever.
            loop {
                tokio::select! {
                    r = &mut pump => break r,
                    msg = rd.wait() => match msg {
                        Some(msg) => { state.take(msg); }
                        None => {
                            break Err(fail(state.result().err().unwrap_or_else(|| {
                                io::Error::new(io::ErrorKind::BrokenPipe, "the remote cat stopped reading")
                            })));
                        }
                    },
                }
            }
        };
        if let Err(e) = pumped {
            // No EOF: `cat` must not see a clean end of a truncated stream. The temp
            // file is removed either way.
            let _ = wr.close().await;
            guard.remove().await;
            return Err(e);
        }
        let finished = async {
            wr.eof()
                .await
                .map_err(|e| lost("at the end of the upload", &e))?;
            while let Some(msg) = self.unstalled(rd.wait()).await? {
                state.take(msg);
            }
            state.result()
        };
        if let Err(e) = finished.await {
            guard.remove().await;
            return Err(fail(e));
        }

        let commit = self.commit(key, &temp, size, None).map_err(fail)?;
        match self.run_once("storing", Some(key), &commit, b"").await {
            Ok(_) => {
                guard.disarm();
                Ok(size)
            }
            Err(e) => {
                guard.remove().await;
                Err(e)
            }
        }
    }

    /// The command that commits the upload in `temp` as `key`: the size must match what
    /// was sent; flush to disk before the rename makes the copy visible, then flush the
    /// folder so the rename itself is durable. A failed flush fails the copy: before the
    /// rename the temp file goes, after it the object goes too (it may vanish at a
    /// crash, so it must not look stored). With `expect` (a version as
    /// [`Destination::read_small_versioned`] reads it, or `absent`), the rename happens
    /// only if the object is still that, checked under `flock` on `.NAME.twindb-lock`
    /// beside it; else the command exits 75 (a conflict). Not retried: after a lost
    /// answer the rename may or may not have happened.
    fn commit(&self, key: &str, temp: &str, size: u64, expect: Option<&str>) -> io::Result<String> {
        let path = self.path(key)?;
        let condition = match expect {
            None => String::new(),
            Some(v) => {
                let (dir, name) = path.rsplit_once('/').expect("an absolute path");
                format!(
                    "exec 9>> {lock} && flock 9 || exit 1; \
                     [ \"$(stat -c %i-%s-%Z -- {p} 2>/dev/null || echo absent)\" = {v} ] || \
                     {{ rm -f -- {t}; echo \"{CONFLICT}: it changed since it was read\" >&2; exit 75; }}; ",
                    lock = quote(&format!("{dir}/.{name}.twindb-lock")),
                    p = quote(&path),
                    v = quote(v),
                    t = quote(temp),
                )
            }
        };
        Ok(format!(
            "{condition}t={t}; [ \"$(wc -c < \"$t\")\" -eq {size} ] || {{ echo \"stored size differs from the {size} bytes sent\" >&2; exit 1; }}; \
             sync -- \"$t\" || {{ echo \"sync of the stored file failed\" >&2; exit 1; }}; \
             mv -f -- \"$t\" {p} || exit 1; \
             sync -- {dirs} || {{ rm -f -- {p}; echo \"sync of the folders of the copy failed\" >&2; exit 1; }}",
            t = quote(temp),
            p = quote(&path),
            dirs = self.folders_of(key).iter().map(|d| quote(d)).collect::<Vec<_>>().join(" "),
        ))
    }

    /// A temp file name beside `path` for one put.
    fn temp_of(path: &str) -> String {
        let (dir, file_name) = path.rsplit_once('/').expect("an absolute path");
        format!(
            "{dir}/.{file_name}{PARTIAL}.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Stores the small `data` under `key` in one remote command: written to a temp
    /// file, then [`Self::commit`]ted; on any failure the temp file goes.
    pub(super) async fn write_small_once(
        &self,
        key: &str,
        data: &[u8],
        expect: Option<&str>,
    ) -> Result<(), DestinationError> {
        let fail = |e| self.err("storing", Some(key), e);
        let path = self.path(key).map_err(fail)?;
        let temp = Self::temp_of(&path);
        let (dir, _) = path.rsplit_once('/').expect("an absolute path");
        let commit = self
            .commit(key, &temp, data.len() as u64, expect)
            .map_err(fail)?;
        // The commit runs in a subshell of its own: its `exit` must not skip the cleanup.
        let command = format!(
            "umask 077 && mkdir -p -- {d} && cat > {t} && ( {commit} ) || {{ s=$?; rm -f -- {t}; exit $s; }}",
            d = quote(dir),
            t = quote(&temp),
        );
        self.run_once("storing", Some(key), &command, data)
            .await
            .map(|_| ())
    }
}

/// Removes a temp file unless the upload committed, also when the future is dropped.
struct TempGuard(Option<(Ssh, String)>);

impl TempGuard {
    async fn remove(mut self) {
        if let Some((ssh, temp)) = self.0.take() {
            remove_temp(ssh, temp).await;
        }
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some((ssh, temp)) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(remove_temp(ssh, temp));
            }
        }
    }
}

async fn remove_temp(ssh: Ssh, temp: String) {
    let command = format!("rm -f -- {}", quote(&temp));
    let removed = tokio::time::timeout(
        CLEANUP_TIMEOUT,
        ssh.run_once("removing a partial upload", None, &command, b""),
    )
    .await;
    if !matches!(removed, Ok(Ok(_))) {
        tracing::warn!(destination = %ssh.inner.name, temp = %temp,
            "could not remove a partial upload; the next sweep (retention, start) removes it");
    }
}
