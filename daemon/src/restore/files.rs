//! Restore of a files copy into an absent or empty folder.
//!
//! The copy is unpacked into a hidden sibling folder and renamed into place only when
//! the whole stream passed its sha256 check, so a failed restore never leaves a tree
//! that looks complete. A copy kept in `keep_local_path` is preferred over the remote
//! one; when it is missing or fails its checksum, the remote copy is used.

use std::io;
use std::path::{Path, PathBuf};

use twindb_proto::CopyKind;

use super::RestoreError;
use crate::destination::{Destination, ErrorKind};
use crate::engine::{Engine, JobCtx};
use crate::modifier::{drain_all, ModifierSpec};
use crate::pipeline::{from_stream, hash_tap, pipe, ByteStream, Digested, Stages};

pub async fn restore_files(
    engine: &Engine,
    key: &str,
    dst: &Path,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let status = engine.status.load().await?;
    let meta = status
        .find(key)
        .ok_or_else(|| RestoreError::UnknownCopy(key.to_string()))?
        .clone();
    if meta.kind != CopyKind::Files {
        return Err(RestoreError::WrongKind {
            key: key.into(),
            actual: meta.kind.as_str(),
            wanted: "files",
        });
    }
    ctx.set_phase(format!("restoring {key}"));
    let cancel = ctx.cancel.clone();

    // The local copy first (no network), when there is one and it reads back intact;
    // otherwise, or when it fails its checksum half-way, the remote one from scratch.
    let mut from = None;
    if let (Some(local), Some(copy)) = (&engine.keep_local, &meta.local) {
        match local.get(&copy.key).await {
            Ok(stream) => {
                let staging = prepare_destination(dst)?;
                let guard = RemoveOnDrop(Some(staging.clone()));
                let expect = Digested {
                    sha256: copy.sha256.clone(),
                    size: copy.size,
                };
                match unpack(stream, expect.clone(), &copy.modifiers, &staging, ctx).await {
                    Ok(()) => from = Some((guard, staging, "the local copy", expect)),
                    Err(RestoreError::Cancelled) => return Err(RestoreError::Cancelled),
                    Err(e) => {
                        drop(guard);
                        ctx.bytes_in.store(0, std::sync::atomic::Ordering::Relaxed);
                        ctx.bytes_out.store(0, std::sync::atomic::Ordering::Relaxed);
                        ctx.warn(format!(
                            "the local copy of {key} in {} failed ({e:#}); restoring from {} instead",
                            local.name(),
                            engine.dest.name()
                        ));
                    }
                }
            }
            Err(e) if e.kind == ErrorKind::NotFound => tracing::info!(
                key,
                "no local copy in keep_local_path; restoring from the destination"
            ),
            Err(e) => ctx.warn(format!(
                "cannot read the local copy of {key} ({e:#}); restoring from {} instead",
                engine.dest.name()
            )),
        }
    }
    let (mut guard, staging, source, checked) = match from {
        Some(done) => done,
        None => {
            let staging = prepare_destination(dst)?;
            let guard = RemoveOnDrop(Some(staging.clone()));
            let stream = engine.dest.get(key).await?;
            let expect = Digested {
                sha256: meta.sha256.clone(),
                size: meta.size,
            };
            unpack(stream, expect.clone(), &meta.modifiers, &staging, ctx).await?;
            (guard, staging, "the destination", expect)
        }
    };
    if cancel.is_cancelled() {
        return Err(RestoreError::Cancelled);
    }

    // A leftover empty folder is replaced by the restored tree.
    if dst.exists() {
        std::fs::remove_dir(dst).map_err(|e| RestoreError::Io(dst.display().to_string(), e))?;
    }
    std::fs::rename(&staging, dst).map_err(|e| RestoreError::Io(dst.display().to_string(), e))?;
    guard.0 = None;
    Ok(format!(
        "restored {key} from {source} into {} ({} bytes checked against sha256 {})",
        dst.display(),
        checked.size,
        checked.sha256,
    ))
}

/// Streams one stored copy through its checksum and reverse modifiers into tar,
/// unpacking into `staging`. Fails on any mismatch, so nothing half-checked is kept.
async fn unpack(
    stream: ByteStream,
    expect: Digested,
    modifiers: &[ModifierSpec],
    staging: &Path,
    ctx: &JobCtx,
) -> Result<(), RestoreError> {
    let cancel = ctx.cancel.clone();
    let mut stages: Stages<()> = Stages::new();

    let fetched = from_stream(stream, &cancel);
    let (w, mut r) = pipe(&cancel);
    let w = w.with_counter(ctx.bytes_in.clone());
    stages.spawn("sha256", move || {
        hash_tap(fetched, w, Some(expect)).map(|_| ())
    });
    for spec in modifiers.iter().rev() {
        let m = spec.build(1);
        let (mut w, next) = pipe(&cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            m.decode(&mut input, &mut w)?;
            w.finish()
        });
        r = next;
    }
    let target = staging.to_path_buf();
    let counter = ctx.bytes_out.clone();
    stages.spawn("tar", move || {
        let mut input = CountingReader { inner: r, counter };
        {
            let mut archive = tar::Archive::new(&mut input);
            archive.set_preserve_permissions(true);
            archive.set_preserve_mtime(true);
            archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
            archive.set_overwrite(false);
            archive.unpack(&target)?;
        }
        // The tar end marker may come before the end of the stream; read on so the
        // checksum stage sees (and verifies) every byte.
        drain_all(&mut input)
    });
    let joined = tokio::task::spawn_blocking(move || stages.join()).await;
    if cancel.is_cancelled() {
        return Err(RestoreError::Cancelled);
    }
    joined.map_err(|e| RestoreError::Io("restore".into(), io::Error::other(e)))??;
    Ok(())
}

/// Checks that `dst` is absent or an empty folder, and makes the staging folder beside it.
fn prepare_destination(dst: &Path) -> Result<PathBuf, RestoreError> {
    let bad = |why: String| RestoreError::BadDestination(dst.display().to_string(), why);
    if !dst.is_absolute() {
        return Err(bad("the path must be absolute".into()));
    }
    match std::fs::symlink_metadata(dst) {
        Ok(m) if !m.is_dir() => return Err(bad("it exists and is not a folder".into())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dst).map_err(|e| bad(e.to_string()))?;
            if entries.next().is_some() {
                return Err(bad(
                    "the folder is not empty; restore into an empty or new folder".into(),
                ));
            }
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
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| bad(format!("removing stale {}: {e}", staging.display())))?;
    }
    std::fs::create_dir(&staging)
        .map_err(|e| bad(format!("creating {}: {e}", staging.display())))?;
    Ok(staging)
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

struct CountingReader<R> {
    inner: R,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
