//! A directory on this host (a mounted disk, NFS...).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::guard::OnDrop;
use super::{Destination, DestinationError, ErrorKind, Key, ObjectMeta, Version};
use crate::pipeline::{ByteStream, CHUNK};

/// Marks an upload in progress; `list` never shows such names.
const PARTIAL: &str = ".twindb-partial";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Local { root: root.into() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        Ok(self.root.join(&*Key::new(key)?))
    }

    fn err(&self, action: &'static str, key: &str, e: io::Error) -> DestinationError {
        DestinationError::new(&self.name(), action, Some(key), e)
    }

    /// Removes upload leftovers (a killed twindbd) under `prefix`'s folder.
    /// Only call this while no upload to that folder can be running.
    pub fn remove_partials(&self, prefix: &str) -> io::Result<usize> {
        let dir = self.root.join(prefix);
        let mut removed = 0;
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if entry.file_name().to_string_lossy().contains(PARTIAL) {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl Destination for Local {
    fn name(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let probe = self
            .root
            .join(format!(".twindb-check.{}", std::process::id()));
        let name = self.name();
        let fail = |e| DestinationError::new(&name, "checking", None, e);
        tokio::fs::create_dir_all(&self.root).await.map_err(fail)?;
        tokio::fs::write(&probe, b"twindb").await.map_err(fail)?;
        tokio::fs::remove_file(&probe).await.map_err(fail)
    }

    async fn put(&self, key: &str, mut data: ByteStream) -> Result<u64, DestinationError> {
        let path = self.path(key).map_err(|e| self.err("storing", key, e))?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        create_dirs_durably(&dir)
            .await
            .map_err(|e| self.err("storing", key, e))?;
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let temp = dir.join(format!(
            ".{file_name}{PARTIAL}.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // Deletes the temp file unless the upload committed, also when the future is dropped.
        let guard = {
            let temp = temp.clone();
            OnDrop::new(move || {
                let _ = std::fs::remove_file(temp);
            })
        };
        // Copies hold secrets (/etc/shadow, keys): readable by root only, whatever the umask.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(|e| self.err("storing", key, e))?;
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| {
                let mut err = self.err("storing", key, e);
                err.kind = ErrorKind::Input;
                err
            })?;
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| self.err("storing", key, e))?;
        }
        file.flush()
            .await
            .map_err(|e| self.err("storing", key, e))?;
        file.sync_all()
            .await
            .map_err(|e| self.err("storing", key, e))?;
        drop(file);
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(|e| self.err("storing", key, e))?;
        // Make the rename itself durable. If that fails the copy may vanish at a crash:
        // it must not stay listed as stored.
        if let Err(e) = sync_dir(&dir).await {
            let _ = tokio::fs::remove_file(&path).await;
            guard.disarm();
            return Err(self.err("storing", key, e));
        }
        guard.disarm();
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let path = self.path(key).map_err(|e| self.err("reading", key, e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.err("reading", key, e))?;
        Ok(tokio_util::io::ReaderStream::with_capacity(file, CHUNK).boxed())
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let name = self.name();
        let walk =
            tokio::task::spawn_blocking(move || walk(&root, &prefix).map_err(|e| (prefix, e)));
        futures::stream::once(walk)
            .flat_map(move |joined| {
                let items: Vec<Result<ObjectMeta, DestinationError>> = match joined {
                    Ok(Ok(objects)) => objects.into_iter().map(Ok).collect(),
                    Ok(Err((prefix, e))) => vec![Err(DestinationError::new(
                        &name,
                        "listing",
                        Some(&prefix),
                        e,
                    ))],
                    Err(e) => vec![Err(DestinationError::new(
                        &name,
                        "listing",
                        None,
                        io::Error::other(e),
                    ))],
                };
                futures::stream::iter(items)
            })
            .boxed()
    }

    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(bytes::Bytes, Version)>, DestinationError> {
        let path = self.path(key).map_err(|e| self.err("reading", key, e))?;
        let read = tokio::task::spawn_blocking(move || -> io::Result<_> {
            use std::io::Read;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            // The version of the very file read (same descriptor).
            let version = version_of(&f.metadata()?);
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(Some((bytes::Bytes::from(bytes), version)))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        read.map_err(|e| self.err("reading", key, e))
    }

    /// Under an exclusive lock on `.NAME.twindb-lock` beside the key (flock: another
    /// process on this host, or on another host of an NFS mount with locking), the
    /// object is compared with what was read, then replaced as `write_small` does. A
    /// replacement is a new file, so its inode and change time tell it apart.
    async fn write_small_if(
        &self,
        key: &str,
        data: bytes::Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        if expect == Some(&Version::Unknown) {
            return self.write_small(key, data).await;
        }
        let path = self.path(key).map_err(|e| self.err("storing", key, e))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let lock_path = path.with_file_name(format!(".{name}.twindb-lock"));
        let checked =
            tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, Option<Version>)> {
                if let Some(dir) = lock_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)?;
                lock.lock()?;
                let now = match std::fs::metadata(&path) {
                    Ok(m) => Some(version_of(&m)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                Ok((lock, now))
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| self.err("locking", key, e))?;
        let (_lock, now) = checked;
        if now.as_ref() != expect {
            return Err(self
                .err(
                    "storing",
                    key,
                    io::Error::other("it changed since it was read: another writer"),
                )
                .with_kind(ErrorKind::Conflict));
        }
        self.write_small(key, data).await
    }

    async fn clean_partials(&self, prefix: &str) -> Result<usize, DestinationError> {
        let this = self.clone();
        let owned = prefix.to_string();
        tokio::task::spawn_blocking(move || this.remove_partials(&owned))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| self.err("cleaning partial uploads under", prefix, e))
    }

    async fn discard(&self, key: &str) -> Result<(), DestinationError> {
        let path = self.path(key).map_err(|e| self.err("deleting", key, e))?;
        // The temp files of this key's puts, named as in `put`.
        let temp_prefix = format!(
            ".{}{PARTIAL}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let removed = tokio::task::spawn_blocking(move || remove_temps(&dir, &temp_prefix))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        removed.map_err(|e| self.err("deleting", key, e))?;
        self.delete(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        let path = self.path(key).map_err(|e| self.err("deleting", key, e))?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("deleting", key, e)),
        }
    }
}

/// Removes the files of `dir` whose name starts with `prefix`; a missing `dir` has none.
fn remove_temps(dir: &Path, prefix: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

fn version_of(m: &std::fs::Metadata) -> Version {
    use std::os::unix::fs::MetadataExt;
    Version::Known(format!("{}-{}.{}", m.ino(), m.ctime(), m.ctime_nsec()))
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    if tests::SYNC_FAILS.lock().unwrap().iter().any(|d| d == dir) {
        return Err(io::Error::from_raw_os_error(nix::libc::EIO));
    }
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// Creates `dir` and its missing parents, each made durable in its parent: a folder
/// whose entry is lost at a crash loses every copy in it.
async fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while tokio::fs::symlink_metadata(at).await.is_err() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match tokio::fs::create_dir(d).await {
            Ok(()) => {}
            // Another upload made it meanwhile; it syncs its parent itself, but its
            // sync may not have happened yet: do it here too.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            sync_dir(parent).await?;
        }
    }
    Ok(())
}

/// Every committed object under `root` whose key starts with `prefix`.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut out = Vec::new();
    let mut stack = vec![(root.join(start_rel), start_rel.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    stack.push((entry.path(), key));
                }
            } else if meta.is_file() && key.starts_with(prefix) {
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::TryStreamExt;

    fn stream(chunks: Vec<io::Result<Bytes>>) -> ByteStream {
        futures::stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let d = Local::new(dir.path());
        d.check().await.unwrap();
        let n = d
            .put(
                "h/daily/files/a.tar",
                stream(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Ok(Bytes::from_static(b"def")),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(n, 6);
        let got: Vec<Bytes> = d
            .get("h/daily/files/a.tar")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), b"abcdef");
        let listed: Vec<ObjectMeta> = d.list("h/daily/").try_collect().await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectMeta {
                key: "h/daily/files/a.tar".into(),
                size: 6
            }]
        );
        assert!(d
            .list("h/weekly/")
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .is_empty());
        d.delete("h/daily/files/a.tar").await.unwrap();
        d.delete("h/daily/files/a.tar").await.unwrap();
        let Err(err) = d.get("h/daily/files/a.tar").await else {
            panic!("a deleted key must not be found");
        };
        assert_eq!(err.kind, ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = Local::new(dir.path());
        let err = d
            .put(
                "h/daily/files/b.tar",
                stream(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Err(io::Error::other("source died")),
                ]),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Input);
        assert!(err.to_string().contains("source died"), "{err}");
        let all: Vec<_> = walk_all(dir.path());
        assert!(all.is_empty(), "{all:?}");
    }

    /// Folders whose fsync fails, to test the error paths (a disk error on fsync).
    pub(super) static SYNC_FAILS: std::sync::Mutex<Vec<PathBuf>> =
        std::sync::Mutex::new(Vec::new());

    #[tokio::test]
    async fn a_failed_folder_fsync_fails_the_put_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = Local::new(dir.path());
        d.check().await.unwrap();
        // The folder of the object: the rename is not durable.
        SYNC_FAILS
            .lock()
            .unwrap()
            .push(dir.path().join("h/daily/files"));
        let err = d
            .put(
                "h/daily/files/a.tar",
                stream(vec![Ok(Bytes::from_static(b"abc"))]),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Input/output error"), "{err}");
        let listed: Vec<ObjectMeta> = d.list("h/").try_collect().await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");
        assert!(walk_all(dir.path()).is_empty());

        // The parent of a new folder: the folder itself may vanish at a crash.
        SYNC_FAILS.lock().unwrap().clear();
        SYNC_FAILS.lock().unwrap().push(dir.path().join("h"));
        let err = d
            .put(
                "h/weekly/files/b.tar",
                stream(vec![Ok(Bytes::from_static(b"abc"))]),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Input/output error"), "{err}");
        let listed: Vec<ObjectMeta> = d.list("h/").try_collect().await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");
        SYNC_FAILS.lock().unwrap().clear();
        d.put(
            "h/weekly/files/b.tar",
            stream(vec![Ok(Bytes::from_static(b"abc"))]),
        )
        .await
        .unwrap();
    }

    /// A put that could not remove its temp file (the disk went away) leaves it for
    /// `discard` of its key, which leaves other keys' temp files alone.
    #[tokio::test]
    async fn discard_removes_the_key_and_its_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = Local::new(dir.path());
        let files = dir.path().join("h/daily/files");
        std::fs::create_dir_all(&files).unwrap();
        for name in [
            "a.tar",
            ".a.tar.twindb-partial.1.0",
            ".a.tar.twindb-partial.2.5",
            ".a.tar.gz.twindb-partial.1.1",
            "b.tar",
        ] {
            std::fs::write(files.join(name), name).unwrap();
        }
        d.discard("h/daily/files/a.tar").await.unwrap();
        let mut left: Vec<_> = walk_all(dir.path())
            .into_iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".a.tar.gz.twindb-partial.1.1", "b.tar"]);
        d.discard("h/nothing/here.tar").await.unwrap();
    }

    fn walk_all(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_all(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
