//! Restore jobs. The reverse chain comes from the copy's recorded metadata, the stored
//! bytes are checked against the recorded sha256 while they stream, and the result is
//! built in a hidden staging folder that is renamed into place only on success.

mod cache;
mod files;
mod mysql;
mod pitr;
mod purge;

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::files::restore_files;
pub use self::mysql::{restore_mysql, MysqlRestore};
pub use self::pitr::{restore_pitr, windows as pitr_windows, PitrRestore};
pub use self::purge::purge_cache;
use crate::destination::Destination;
use crate::engine::{Engine, JobCtx};
use crate::modifier::drain_all;
use crate::pipeline::{from_stream, hash_tap, pipe, Digested, Stages};
use crate::status::CopyMeta;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no copy {0:?} in the status of this host (see `twindbctl ls`)")]
    UnknownCopy(String),
    #[error("{key} is a {actual} copy, not a {wanted} copy")]
    WrongKind {
        key: String,
        actual: &'static str,
        wanted: &'static str,
    },
    #[error("refusing to restore into {0}: {1}")]
    BadDestination(String, String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Stage(#[from] crate::pipeline::StageError),
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error(transparent)]
    Tool(#[from] crate::mysql::ToolError),
    #[error(transparent)]
    Pitr(#[from] pitr::PitrError),
    #[error("{0}: {1}")]
    Io(String, io::Error),
    #[error("cannot restore TwinDB Backup's copy {key}: {problem}")]
    TwinDbCopy { key: String, problem: String },
    #[error("{0} has no MySQL metadata recorded")]
    NoMysqlMeta(String),
    #[error("incremental {0} records no parent full copy")]
    NoParent(String),
    #[error(
        "the full copy {parent} that incremental {key} was taken against is no longer in the status; \
         the incremental cannot be restored without it"
    )]
    ParentGone { parent: String, key: String },
    #[error("LSNs do not chain: {parent} ends at LSN {parent_to} but incremental {key} starts at LSN {from}")]
    LsnGap {
        parent: String,
        parent_to: u64,
        key: String,
        from: u64,
    },
    #[error(
        "{0} is needed to restore this copy and is not installed (Debian: mariadb-backup or percona-xtrabackup)"
    )]
    ToolMissing(String),
    #[error("{0} is not a folder; refusing to write the recorded my.cnf files through it")]
    NotAFolder(String),
    #[error("cannot read uuid:seqno from {0}")]
    GaleraInfo(String),
    /// A worker thread panicked (a bug): its message.
    #[error("{0}")]
    Internal(String),
}

/// Streams the copy `meta` through its reverse chain into `consume`, verifying the
/// stored bytes' sha256 on the way. `consume` runs on its own thread. Returns where the
/// bytes came from: the copy in `keep_local_path` when it is there and intact (no
/// network), else the destination.
pub(crate) async fn stream_copy(
    engine: &Engine,
    meta: &CopyMeta,
    ctx: &JobCtx,
    consume: impl FnOnce(&mut dyn Read) -> io::Result<()> + Send + 'static,
) -> Result<&'static str, RestoreError> {
    let cancel = ctx.cancel.clone();
    let (stream, expect, modifiers, source) = match intact_local_copy(engine, meta, ctx).await {
        Some((stream, local)) => (
            stream,
            recorded(meta, &local.sha256, local.size),
            local.modifiers.clone(),
            "the local copy",
        ),
        None => (
            get_copy(&engine.dest, meta).await?,
            recorded(meta, &meta.sha256, meta.size),
            meta.modifiers.clone(),
            "the destination",
        ),
    };
    let mut stages: Stages<()> = Stages::new();
    let fetched = from_stream(stream, &cancel);
    let (w, mut r) = pipe(&cancel);
    let w = w.with_counter(ctx.bytes_in.clone());
    stages.spawn("sha256", move || hash_tap(fetched, w, expect).map(|_| ()));
    let env = engine.modifier_env().for_job(&cancel);
    for spec in modifiers.iter().rev() {
        let m = crate::modifier::build(spec, &env);
        let (mut w, next) = pipe(&cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            m.decode(&mut input, &mut w)?;
            w.finish()
        });
        r = next;
    }
    let counter = ctx.bytes_out.clone();
    stages.spawn("extract", move || {
        let mut input = CountingReader {
            inner: r,
            counter,
            reads: 0,
        };
        consume(&mut input)?;
        // The consumer may stop at its format's end marker; read on so the checksum
        // stage sees (and verifies) every stored byte.
        drain_all(&mut input)
    });
    let joined =
        crate::pipeline::until_stopped(&cancel, tokio::task::spawn_blocking(move || stages.join()))
            .await;
    if cancel.is_cancelled() {
        return Err(RestoreError::Cancelled);
    }
    let joined = joined.expect("only a cancel cuts the join short");
    joined.map_err(|e| RestoreError::Io("restore".into(), io::Error::other(e)))??;
    Ok(source)
}

/// The checksum to verify; none for TwinDB Backup's copies, which recorded none.
fn recorded(meta: &CopyMeta, sha256: &str, size: u64) -> Option<Digested> {
    meta.twindb.is_none().then(|| Digested {
        sha256: sha256.to_string(),
        size,
    })
}

/// The stored bytes of `meta`: one object, or TwinDB's GCS parts one after the other.
async fn get_copy(
    dest: &Arc<dyn Destination>,
    meta: &CopyMeta,
) -> Result<crate::pipeline::ByteStream, crate::destination::DestinationError> {
    use futures::{StreamExt, TryStreamExt};
    let mut objects = crate::status::twindb::TwindbCopy::objects(meta);
    // The first object is opened now, so that a missing copy fails here; the other
    // parts as the stream reaches them.
    let first = dest.get(&objects.remove(0)).await?;
    if objects.is_empty() {
        return Ok(first);
    }
    let dest = dest.clone();
    let rest = futures::stream::iter(objects)
        .then(move |key| {
            let dest = dest.clone();
            async move { dest.get(&key).await.map_err(io::Error::other) }
        })
        .try_flatten();
    Ok(first.chain(rest).boxed())
}

/// The keep_local copy of `meta`, opened, if it exists and its bytes match their
/// recorded sha256. Checking first costs one local read and spares a restore that
/// fails half-way on a damaged local copy; any doubt falls back to the destination.
async fn intact_local_copy<'a>(
    engine: &Engine,
    meta: &'a CopyMeta,
    ctx: &JobCtx,
) -> Option<(crate::pipeline::ByteStream, &'a crate::status::LocalCopy)> {
    use futures::StreamExt;
    use sha2::Digest;
    let (local, copy) = (engine.keep_local.as_ref()?, meta.local.as_ref()?);
    let mut stream = match local.get(&copy.key).await {
        Ok(s) => s,
        Err(e) if e.kind == crate::destination::ErrorKind::NotFound => {
            tracing::info!(key = %meta.key, "no local copy in keep_local_path; restoring from the destination");
            return None;
        }
        Err(e) => {
            ctx.warn(format!(
                "cannot read the local copy of {} ({e}); using the destination",
                meta.key
            ));
            return None;
        }
    };
    if meta.twindb.is_some() {
        // TwinDB recorded no checksum: use the local copy as TwinDB did. Its bytes
        // are still checked by the decompressor and the extractor.
        return Some((stream, copy));
    }
    ctx.set_phase(format!("checking the local copy of {}", meta.key));
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                size += c.len() as u64;
                hasher.update(&c);
            }
            Err(e) => {
                ctx.warn(format!(
                    "cannot read the local copy of {} ({e}); using the destination",
                    meta.key
                ));
                return None;
            }
        }
    }
    if size != copy.size || hex::encode(hasher.finalize()) != copy.sha256 {
        ctx.warn(format!(
            "the local copy of {} in {} is damaged (checksum mismatch); restoring from {} instead",
            meta.key,
            local.name(),
            engine.dest.name()
        ));
        return None;
    }
    let stream = local.get(&copy.key).await.ok()?;
    Some((stream, copy))
}

pub(crate) fn find_copy(
    status: &crate::status::Status,
    key: &str,
    wanted: &'static str,
) -> Result<CopyMeta, RestoreError> {
    let meta = status
        .find(key)
        .ok_or_else(|| RestoreError::UnknownCopy(key.to_string()))?
        .clone();
    if let Some(problem) = meta.twindb.as_ref().and_then(|t| t.problem.as_ref()) {
        return Err(RestoreError::TwinDbCopy {
            key: key.to_string(),
            problem: problem.clone(),
        });
    }
    if meta.kind.as_str() != wanted {
        return Err(RestoreError::WrongKind {
            key: key.into(),
            actual: meta.kind.as_str(),
            wanted,
        });
    }
    Ok(meta)
}

/// Checks that `dst` is absent or an empty folder, and makes the staging folder beside
/// it, recorded in `state_dir` so that a start after a crash removes it.
pub(crate) fn prepare_destination(dst: &Path, state_dir: &Path) -> Result<Staging, RestoreError> {
    let bad = |why: String| RestoreError::BadDestination(dst.display().to_string(), why);
    if !dst.is_absolute() {
        return Err(bad("the path must be absolute".into()));
    }
    let mut existing_mode = None;
    match std::fs::symlink_metadata(dst) {
        Ok(m) if !m.is_dir() => return Err(bad("it exists and is not a folder".into())),
        Ok(m) => {
            let mut entries = std::fs::read_dir(dst).map_err(|e| bad(e.to_string()))?;
            if entries.next().is_some() {
                return Err(bad(
                    "the folder is not empty; restore into an empty or new folder".into(),
                ));
            }
            existing_mode = Some(m.permissions().mode() & 0o7777);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    let parent = dst
        .parent()
        .ok_or_else(|| bad("it has no parent folder".into()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| bad(format!("creating {}: {e}", parent.display())))?;
    let name = dst.file_name().unwrap_or_default().to_string_lossy();
    let staging = parent.join(format!(".{name}.twindb-partial.{}", std::process::id()));
    // The staging folder and its sibling scratch folders (Staging::scratch).
    let record = crate::state::ScratchRecord::new(
        state_dir,
        &crate::state::Leftover::Siblings {
            dir: parent.to_path_buf(),
            prefix: format!(".{name}.twindb-"),
            suffix: format!(".{}", std::process::id()),
        },
    )
    .map_err(|e| {
        bad(format!(
            "recording the staging folder in {}: {e}",
            state_dir.display()
        ))
    })?;
    create_private_dir(&staging).map_err(|e| bad(e.to_string()))?;
    Ok(Staging {
        path: Some(staging),
        dst: dst.to_path_buf(),
        existing_mode,
        _record: record,
    })
}

/// Creates `path` as a new folder only root (the owner) can enter: 0700 whatever the
/// umask, so what is extracted into it (a copy of /etc/shadow, a datadir) is never
/// reachable by others before it gets its recorded mode. A leftover of that name (a
/// killed restore) is removed first; a symlink planted there is removed, never followed.
pub(crate) fn create_private_dir(path: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let io_err = |what: &str, e| RestoreError::Io(format!("{what} {}", path.display()), e);
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| io_err("removing stale", e))?
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| io_err("removing stale", e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("checking", e)),
    }
    // create, not create_all: it fails if anything appeared there meanwhile.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| io_err("creating", e))?;
    // The mode given to mkdir is masked by the umask (umask 0777 would leave 0000).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("setting the mode of", e))
}

/// A restore in progress; removed unless [`Staging::commit`] renames it into place.
pub(crate) struct Staging {
    path: Option<PathBuf>,
    dst: PathBuf,
    /// The mode of the empty folder the restore replaces; it keeps it.
    existing_mode: Option<u32>,
    /// Dropped after the folder is removed (Drop runs before the fields drop).
    _record: crate::state::ScratchRecord,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("staging not committed yet")
    }

    /// A sibling scratch folder for intermediate work (e.g. an extracted incremental).
    pub fn scratch(&self, what: &str) -> PathBuf {
        let name = self.dst.file_name().unwrap_or_default().to_string_lossy();
        self.dst
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!(".{name}.twindb-{what}.{}", std::process::id()))
    }

    pub fn commit(mut self) -> Result<(), RestoreError> {
        let staging = self.path.take().expect("committed once");
        let io_err = |e| RestoreError::Io(self.dst.display().to_string(), e);
        // An existing (empty) folder is replaced by the restored tree, with its mode;
        // a new one stays 0700 (only what the copy recorded is restored with its mode).
        if let Some(mode) = self.existing_mode {
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
            std::fs::remove_dir(&self.dst).map_err(io_err)?;
        }
        std::fs::rename(&staging, &self.dst).map_err(io_err)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

struct CountingReader<R> {
    inner: R,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Reads so far, up to 2: the test point sits at the second read, once the
    /// extractor has had its first chunk (and costs nothing after it).
    reads: u8,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reads < 2 {
            self.reads += 1;
            if self.reads == 2 {
                crate::failpoint::point("restore.mid-stream");
            }
        }
        let n = self.inner.read(buf)?;
        self.counter
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` under `mask`; nextest runs each test in its own process, and the other
    /// tests of this module do not depend on the umask.
    fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
        use nix::sys::stat::{umask, Mode};
        let old = umask(Mode::from_bits_truncate(mask));
        let out = f();
        umask(old);
        out
    }

    #[test]
    fn staging_is_0700_whatever_the_umask() {
        for mask in [0o000, 0o022, 0o777] {
            let dir = tempfile::tempdir().unwrap();
            let state = tempfile::tempdir().unwrap();
            let dst = dir.path().join("restored");
            let staging = with_umask(mask, || prepare_destination(&dst, state.path()).unwrap());
            let mode = std::fs::metadata(staging.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o700, "umask {mask:o}");
            let scratch = staging.scratch("incremental");
            with_umask(mask, || create_private_dir(&scratch).unwrap());
            let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o700, "umask {mask:o}");
            // A new folder stays private; an existing empty one keeps its mode.
            staging.commit().unwrap();
            let mode = std::fs::metadata(&dst).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o700);
        }
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let dst = dir.path().join("existing");
        std::fs::create_dir(&dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o750)).unwrap();
        prepare_destination(&dst, state.path())
            .unwrap()
            .commit()
            .unwrap();
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o750);
    }

    #[test]
    fn a_symlink_planted_as_the_staging_folder_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "x").unwrap();
        let dst = dir.path().join("restored");
        let name = format!(".restored.twindb-partial.{}", std::process::id());
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(&name)).unwrap();
        let staging = prepare_destination(&dst, state.path()).unwrap();
        let meta = std::fs::symlink_metadata(staging.path()).unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink());
        assert!(
            elsewhere.join("keep").exists(),
            "the symlink target was emptied"
        );
    }
}
