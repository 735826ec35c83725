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
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::retry::{retry, Backoff};
use super::{validate_key, Destination, DestinationError, ErrorKind, ObjectMeta, Version};
use crate::config::SshConfig;
use crate::pipeline::ByteStream;
use crate::ssh::{quote, Client, Exec, Limits, Target, IDLE_CLOSE};

mod read;
mod write;

/// Marks an upload in progress; `list` never shows such names (they start with '.').
const PARTIAL: &str = ".twindb-partial";
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
