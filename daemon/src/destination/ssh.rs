//! A folder on an SSH server, through the [`crate::ssh`] client.
//!
//! Every operation is a short POSIX shell command (`cat`, `mv`, `rm`, `find`) on one
//! SSH connection that is kept open and shared by all operations of this destination;
//! a dropped connection is re-established on the next operation. Streams (a copy's
//! upload, a read) run on an exec channel of their own; everything else (status files,
//! listings, commits, deletes) runs in the connection's long-lived shells
//! ([`Client::run`]), so a job starts the account's login shell twice, not thirty
//! times. The server therefore needs a POSIX shell with coreutils (`base64`, `mktemp`)
//! and GNU find (`-printf`), as any Linux has.
//!
//! - `put` streams the bytes into `cat`, writing `.NAME.twindb-partial.PID.N` beside
//!   the final name (opened by the shell before any byte is sent), checks `cat`'s exit
//!   status and the stored size, flushes the file to disk and renames it into place.
//!   On failure or cancel the temp file is removed (best effort: when the server is
//!   gone, `discard` of the key removes it at the next sweep, and a killed twindbd's
//!   leftovers are removed at its next start by `clean_partials`). `list` never shows
//!   names starting with '.'. A streamed `put` is never retried.
//! - The connection is closed after [`IDLE_CLOSE`] without use, and an operation on a
//!   server that makes no progress for [`STALL`] fails (so a job can always end).
//! - `get` streams `cat`'s output and checks its exit status at the end, so a read
//!   error on the server fails the stream instead of truncating it.
//! - Remote paths are single-quoted for the shell: keys may hold spaces and quotes.
//! - Host keys are checked against `known_hosts` (see [`crate::ssh::host_key`]).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::retry::{retry, Backoff};
use super::{validate_key, Destination, DestinationError, ErrorKind, ObjectMeta, Version};
use crate::config::SshConfig;
use crate::pipeline::{ByteStream, CHUNK};
use crate::ssh::{lost, quote, Client, Exec, Limits, Output, Target, IDLE_CLOSE};

/// Marks an upload in progress; `list` never shows such names (they start with '.').
const PARTIAL: &str = ".twindb-partial";
/// What the upload command prints on stderr once it holds the temp file open.
const READY: &str = "twindb-ready";
/// Removing a temp file after a failure must not hold up the error report for long.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that accepts or sends nothing for this long while a command runs is declared
/// stuck (a hung disk or NFS mount behind it: keepalives still get answers). Without
/// it a job could wait forever and never see its cancel or timeout.
pub const STALL: Duration = Duration::from_secs(600);

/// Timing knobs; the defaults suit production, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub backoff: Backoff,
    pub idle_close: Duration,
    pub stall: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            backoff: Backoff::default(),
            idle_close: IDLE_CLOSE,
            stall: STALL,
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The ssh destination. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Ssh {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SshConfig,
    name: String,
    tuning: Tuning,
    client: Client,
}

impl fmt::Debug for Ssh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ssh")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Ssh {
    pub fn new(cfg: SshConfig) -> Self {
        Self::with_backoff(cfg, Backoff::default())
    }

    pub fn with_backoff(cfg: SshConfig, backoff: Backoff) -> Self {
        Self::with_tuning(
            cfg,
            Tuning {
                backoff,
                ..Tuning::default()
            },
        )
    }

    pub fn with_tuning(cfg: SshConfig, tuning: Tuning) -> Self {
        let name = format!(
            "ssh://{}@{}:{}{}",
            cfg.user, cfg.host, cfg.port, cfg.backup_dir
        );
        let target = Target {
            host: cfg.host.clone(),
            port: cfg.port,
            user: cfg.user.clone(),
            key: cfg.key.clone(),
            known_hosts: cfg.known_hosts.clone(),
            accept_new_host_keys: cfg.accept_new_host_keys,
        };
        let limits = Limits {
            idle_close: tuning.idle_close,
            stall: Some(tuning.stall),
        };
        let client = Client::new(target, name.clone(), limits);
        Ssh {
            inner: Arc::new(Inner {
                cfg,
                name,
                tuning,
                client,
            }),
        }
    }

    fn err(&self, action: &'static str, key: Option<&str>, e: io::Error) -> DestinationError {
        DestinationError::new(&self.inner.name, action, key, e)
    }

    /// Absolute remote path of `key`.
    fn path(&self, key: &str) -> io::Result<String> {
        validate_key(key)?;
        Ok(format!("{}/{key}", self.inner.cfg.backup_dir))
    }

    /// The folders `mkdir -p` may have made for `key`, deepest first, and backup_dir:
    /// each holds the entry of the next, so each is flushed for the copy to be durable.
    fn folders_of(&self, key: &str) -> Vec<String> {
        let root = &self.inner.cfg.backup_dir;
        let mut out: Vec<String> = key
            .match_indices('/')
            .map(|(i, _)| format!("{root}/{}", &key[..i]))
            .collect();
        out.reverse();
        out.push(root.clone());
        out
    }

    /// `fut`, unless the server makes no progress for the stall limit (see
    /// [`Client::unstalled`]).
    async fn unstalled<T>(&self, fut: impl std::future::Future<Output = T>) -> io::Result<T> {
        self.inner.client.unstalled(fut).await
    }

    /// Starts `command` on a new exec channel.
    async fn exec(
        &self,
        action: &'static str,
        key: Option<&str>,
        command: &str,
    ) -> Result<Exec, DestinationError> {
        self.inner
            .client
            .exec(command)
            .await
            .map_err(|e| self.err(action, key, e))
    }

    /// Runs `command` to its end with `input` on its stdin; its stdout when it exits
    /// with status 0.
    async fn run_once(
        &self,
        action: &'static str,
        key: Option<&str>,
        command: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, DestinationError> {
        let out = self
            .inner
            .client
            .run(command, input)
            .await
            .and_then(|out| out.result().map(|()| out.stdout))
            .map_err(|e| self.err(action, key, e))?;
        Ok(out)
    }

    /// [`Self::run_once`] for idempotent commands, retried on transient failures.
    async fn run(
        &self,
        action: &'static str,
        key: Option<&str>,
        command: &str,
    ) -> Result<Vec<u8>, DestinationError> {
        retry(&self.inner.tuning.backoff, || {
            self.run_once(action, key, command, b"")
        })
        .await
    }

    /// Starts `cat` on the object and waits for its first byte (or its end), so that a
    /// missing object fails here rather than in the middle of the stream.
    async fn open_read(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("reading", Some(key), e))?;
        let mut ch = self
            .exec(
                "reading",
                Some(key),
                &format!("exec cat -- {}", quote(&path)),
            )
            .await?;
        let mut state = Output::default();
        let first = loop {
            let msg = self
                .unstalled(ch.wait())
                .await
                .map_err(|e| self.err("reading", Some(key), e))?;
            match msg {
                Some(msg) => {
                    if let Some(data) = state.take(msg) {
                        break Some(data);
                    }
                }
                None => break None,
            }
        };
        let Some(first) = first else {
            state
                .result()
                .map_err(|e| self.err("reading", Some(key), e))?;
            return Ok(futures::stream::empty().boxed());
        };
        let reader = Reader {
            ch,
            state,
            pending: BytesMut::from(&first[..]),
            done: false,
            ssh: self.clone(),
            key: key.to_string(),
        };
        Ok(futures::stream::unfold(reader, Reader::next).boxed())
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectMeta>, DestinationError> {
        let fail = |e| self.err("listing", Some(prefix), e);
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if dir.split('/').any(|p| p == "..") || dir.starts_with('/') || prefix.contains('\0') {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid prefix {prefix:?}"),
            )));
        }
        let root = quote(&self.inner.cfg.backup_dir);
        let start = quote(&format!("./{dir}"));
        // A missing root or folder holds nothing; hidden names (temp files) are skipped.
        let command = format!(
            "[ -d {root} ] || exit 0; cd -- {root} || exit 1; [ -d {start} ] || exit 0; \
             exec find {start} -mindepth 1 -name '.*' -prune -o -type f -printf '%s %p\\0'"
        );
        let out = self.run("listing", Some(prefix), &command).await?;
        let mut objects = Vec::new();
        for record in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let record = String::from_utf8_lossy(record);
            let parsed = record.split_once(' ').and_then(|(size, path)| {
                Some((size.parse::<u64>().ok()?, path.strip_prefix("./")?))
            });
            let Some((size, key)) = parsed else {
                return Err(fail(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected line from find: {record:?}"),
                )));
            };
            let key = key.trim_start_matches("./").replace("//", "/");
            if key.starts_with(prefix) {
                objects.push(ObjectMeta { key, size });
            }
        }
        Ok(objects)
    }

    /// Streams `data` into a temp file beside `key`, then [`Self::commit`]s it.
    async fn put_stream(&self, key: &str, mut data: ByteStream) -> Result<u64, DestinationError> {
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
}

impl Ssh {
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
    async fn write_small_once(
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

#[async_trait]
impl Destination for Ssh {
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let root = quote(&self.inner.cfg.backup_dir);
        let command = format!(
            "mkdir -p -- {root} && t={root}/.twindb-check.$$ && echo twindb > \"$t\" && rm -f -- \"$t\""
        );
        self.run("checking", None, &command).await.map(|_| ())
    }

    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError> {
        self.put_stream(key, data).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        retry(&self.inner.tuning.backoff, || self.open_read(key)).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        // Gathered whole, then streamed: one `find` per call keeps retries simple, and a
        // listing is a few dozen bytes per copy.
        let this = self.clone();
        let prefix = prefix.to_string();
        futures::stream::once(async move { this.list_all(&prefix).await })
            .flat_map(|r| {
                let items: Vec<_> = match r {
                    Ok(objects) => objects.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            })
            .boxed()
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("deleting", Some(key), e))?;
        self.run("deleting", Some(key), &format!("rm -f -- {}", quote(&path)))
            .await
            .map(|_| ())
    }

    async fn discard(&self, key: &str) -> Result<(), DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("deleting", Some(key), e))?;
        let (dir, file_name) = path.rsplit_once('/').expect("an absolute path");
        // The temp files of this key's puts (see put_stream): the quoted part is
        // literal, the `*` is the shell's; no match leaves a name `rm -f` ignores.
        let temps = quote(&format!("{dir}/.{file_name}{PARTIAL}."));
        self.run(
            "deleting",
            Some(key),
            &format!("rm -f -- {} {temps}*", quote(&path)),
        )
        .await
        .map(|_| ())
    }

    /// The temp files of puts under `prefix`'s folder (see `put_stream`).
    async fn clean_partials(&self, prefix: &str) -> Result<usize, DestinationError> {
        let dir = quote(&format!("{}/{prefix}", self.inner.cfg.backup_dir));
        let command = format!(
            "[ -d {dir} ] || exit 0; exec find {dir} -type f -name '.*{PARTIAL}.*' -print -delete"
        );
        let out = self
            .run("removing partial uploads", Some(prefix), &command)
            .await?;
        Ok(out.iter().filter(|&&b| b == b'\n').count())
    }

    async fn read_small(&self, key: &str) -> Result<Option<Bytes>, DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("reading", Some(key), e))?;
        match self
            .run(
                "reading",
                Some(key),
                &format!("exec cat -- {}", quote(&path)),
            )
            .await
        {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_small(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        self.write_small_if(key, data, Some(&Version::Unknown))
            .await
    }

    /// The file and the version of that very file: opened once, `stat` of the open
    /// descriptor, then its bytes. Output: `absent`, or `v<inode>-<size>-<ctime>` and a
    /// newline before the bytes.
    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("reading", Some(key), e))?;
        let command = format!(
            "f={}; [ -e \"$f\" ] || {{ echo absent; exit 0; }}; exec 3< \"$f\" && stat -L -c %i-%s-%Z /dev/fd/3 && exec cat <&3",
            quote(&path)
        );
        let out = self.run("reading", Some(key), &command).await?;
        let Some(newline) = out.iter().position(|b| *b == b'\n') else {
            return Err(self.err(
                "reading",
                Some(key),
                io::Error::other("the server's answer has no version line"),
            ));
        };
        let version = String::from_utf8_lossy(&out[..newline]).trim().to_string();
        if version == "absent" {
            return Ok(None);
        }
        Ok(Some((
            Bytes::copy_from_slice(&out[newline + 1..]),
            Version::Known(version),
        )))
    }

    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        let expect = match expect {
            Some(Version::Unknown) => None,
            Some(Version::Known(v)) => Some(v.as_str()),
            None => Some("absent"),
        };
        // Unlike a streamed put, the bytes are at hand: the whole write can be repeated.
        let written = retry(&self.inner.tuning.backoff, || {
            self.write_small_once(key, &data, expect)
        })
        .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains(CONFLICT) => {
                // A retry after a lost answer may find our own first write.
                match self.read_small_versioned(key).await? {
                    Some((now, _)) if now == data => Ok(()),
                    _ => Err(e.with_kind(ErrorKind::Conflict)),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// What a conditional write says when the object changed since it was read.
const CONFLICT: &str = "twindb-conflict";

/// Streams a remote `cat`, failing the stream unless it ends with exit status 0.
struct Reader {
    ch: Exec,
    state: Output,
    /// SSH packets (32 KiB) are gathered into pipeline-sized chunks: a quarter of the
    /// hand-offs between the download task and the checksum thread.
    pending: BytesMut,
    done: bool,
    ssh: Ssh,
    key: String,
}

impl Reader {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if self.pending.len() >= CHUNK {
                let chunk = self.pending.split().freeze();
                return Some((Ok(chunk), self));
            }
            let msg = match self.ssh.unstalled(self.ch.wait()).await {
                Ok(msg) => msg,
                Err(e) => {
                    self.done = true;
                    let err = self.ssh.err("reading", Some(&self.key), e);
                    return Some((Err(io::Error::new(io::ErrorKind::TimedOut, err)), self));
                }
            };
            match msg {
                Some(msg) => {
                    if let Some(data) = self.state.take(msg) {
                        self.pending.extend_from_slice(&data);
                    }
                }
                None => {
                    self.done = true;
                    return match self.state.result() {
                        Ok(()) if self.pending.is_empty() => None,
                        Ok(()) => {
                            let chunk = self.pending.split().freeze();
                            Some((Ok(chunk), self))
                        }
                        Err(e) => {
                            let kind = e.kind();
                            let err = self.ssh.err("reading", Some(&self.key), e);
                            Some((Err(io::Error::new(kind, err)), self))
                        }
                    };
                }
            }
        }
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
