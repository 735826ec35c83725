//! Restore of a files copy into an absent or empty folder.
//!
//! The copy is unpacked into a hidden sibling folder and renamed into place only when
//! the whole stream passed its sha256 check, so a failed restore never leaves a tree
//! that looks complete.

use std::io;
use std::path::{Path, PathBuf};

use twindb_proto::CopyKind;

use super::RestoreError;
use crate::engine::{Engine, JobCtx};
use crate::modifier::{drain_all, ModifierEnv};
use crate::pipeline::{from_stream, hash_tap, pipe, Digested, Stages};

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
    let staging = prepare_destination(dst)?;
    let mut guard = RemoveOnDrop(Some(staging.clone()));

    ctx.set_phase(format!("restoring {key}"));
    let cancel = ctx.cancel.clone();
    let stream = engine.dest.get(key).await?;
    let mut stages: Stages<()> = Stages::new();

    let fetched = from_stream(stream, &cancel);
    let (w, mut r) = pipe(&cancel);
    let w = w.with_counter(ctx.bytes_in.clone());
    let expect = Digested {
        sha256: meta.sha256.clone(),
        size: meta.size,
    };
    stages.spawn("sha256", move || {
        hash_tap(fetched, w, Some(expect)).map(|_| ())
    });
    let env = ModifierEnv::from_config(&engine.config);
    for spec in meta.modifiers.iter().rev() {
        let m = spec.build(&env);
        let (mut w, next) = pipe(&cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            m.decode(&mut input, &mut w)?;
            w.finish()
        });
        r = next;
    }
    let target = staging.clone();
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

    // A leftover empty folder is replaced by the restored tree.
    if dst.exists() {
        std::fs::remove_dir(dst).map_err(|e| RestoreError::Io(dst.display().to_string(), e))?;
    }
    std::fs::rename(&staging, dst).map_err(|e| RestoreError::Io(dst.display().to_string(), e))?;
    guard.0 = None;
    Ok(format!(
        "restored {key} into {} ({} bytes checked against sha256 {})",
        dst.display(),
        meta.size,
        meta.sha256
    ))
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
