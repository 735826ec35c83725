//! A directory as a tar stream, as `tar cf - DIR` would write it: members are named by
//! the absolute path without its leading '/', so TwinDB and twindb copies restore alike.
//! As GNU tar, a file with several hard links is stored once and its other names as
//! hard-link entries to the first, so a restore links them again.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

use super::exclude::{is_cache_dir, Excludes, CACHEDIR_TAG};
use super::{Source, SourceReport};

pub struct FileSource {
    dir: PathBuf,
    excludes: Excludes,
}

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSource {
            dir: dir.into(),
            excludes: Excludes::default(),
        }
    }

    /// Leaves out what `[source] exclude`, `exclude_caches` and `one_file_system` say.
    pub fn with_excludes(mut self, excludes: Excludes) -> Self {
        self.excludes = excludes;
        self
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport> {
        let mut builder = tar::Builder::new(out);
        builder.mode(HeaderMode::Complete);
        builder.follow_symlinks(false);
        let mut report = SourceReport::default();
        // The top folder must exist: its absence is an error, not a warning.
        let top = fs::symlink_metadata(&self.dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
        let mut stack = vec![self.dir.clone()];
        // (device, inode) of each stored file that has other hard links, and the name it
        // was stored under: only those files, as GNU tar keeps them.
        let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
        while let Some(path) = stack.pop() {
            let name = archive_name(&path);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    report
                        .warnings
                        .push(format!("{}: vanished during the backup", path.display()));
                    continue;
                }
                Err(e) => {
                    report
                        .warnings
                        .push(format!("{}: skipped: {e}", path.display()));
                    continue;
                }
            };
            let ft = meta.file_type();
            if self.excludes.matches(&self.dir, &path, ft.is_dir()) {
                tracing::debug!(path = %path.display(), "excluded by a pattern");
                report.excluded.entries += 1;
                continue;
            }
            if ft.is_dir() {
                append_dir(&mut builder, &name, &meta)?;
                // As GNU tar: the folder itself is stored, what it holds is not.
                if self.excludes.one_file_system && meta.dev() != top.dev() {
                    tracing::info!(path = %path.display(), "another file system: contents left out");
                    report.excluded.mount_points += 1;
                    continue;
                }
                if self.excludes.caches && is_cache_dir(&path) {
                    // GNU tar's --exclude-caches: the tag stays, so that the restored
                    // folder still says it is a cache.
                    tracing::info!(path = %path.display(), "cache folder (CACHEDIR.TAG): contents left out");
                    report.excluded.cache_dirs += 1;
                    stack.push(path.join(CACHEDIR_TAG));
                    continue;
                }
                match sorted_children(&path) {
                    // Reverse so that popping visits children in name order.
                    Ok(children) => stack.extend(children.into_iter().rev()),
                    Err(e) => report
                        .warnings
                        .push(format!("{}: cannot list: {e}", path.display())),
                }
            } else if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(target) => {
                        let mut h = header(&meta, EntryType::Symlink);
                        builder.append_link(&mut h, &name, target)?;
                    }
                    Err(e) => report
                        .warnings
                        .push(format!("{}: vanished or unreadable: {e}", path.display())),
                }
            } else if ft.is_file() {
                let id = (meta.dev(), meta.ino());
                match linked.get(&id) {
                    Some(first) if meta.nlink() > 1 => {
                        let mut h = header(&meta, EntryType::Link);
                        builder.append_link(&mut h, &name, first)?;
                    }
                    _ => {
                        let stored = append_file(&mut builder, &path, &name, &mut report)?;
                        if stored && meta.nlink() > 1 {
                            linked.insert(id, name);
                        }
                    }
                }
            } else {
                report.warnings.push(format!(
                    "{}: skipped: not a regular file, folder or symlink",
                    path.display()
                ));
            }
        }
        builder.into_inner()?.flush()?;
        Ok(report)
    }
}

fn archive_name(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

fn sorted_children(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut children = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    children.sort();
    Ok(children)
}

fn header(meta: &Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_metadata_in_mode(meta, HeaderMode::Complete);
    h.set_entry_type(kind);
    if kind != EntryType::Regular {
        h.set_size(0);
    }
    h
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, name: &Path, meta: &Metadata) -> io::Result<()> {
    let mut h = header(meta, EntryType::Directory);
    let mut name = name.as_os_str().to_owned();
    name.push("/");
    b.append_data(&mut h, Path::new(&name), io::empty())
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    report: &mut SourceReport,
) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report
                .warnings
                .push(format!("{}: vanished during the backup", path.display()));
            return Ok(false);
        }
        Err(e) => {
            report
                .warnings
                .push(format!("{}: skipped: {e}", path.display()));
            return Ok(false);
        }
    };
    // Metadata of the open file, so that size and content belong to the same inode.
    let before = file.metadata()?;
    let mut h = header(&before, EntryType::Regular);
    let mut body = Exact {
        inner: file,
        remaining: before.len(),
        short: false,
        error: None,
    };
    b.append_data(&mut h, name, &mut body)?;
    if let Some(e) = body.error {
        report.warnings.push(format!(
            "{}: read failed, stored zero-filled: {e}",
            path.display()
        ));
    } else if body.short {
        report.warnings.push(format!(
            "{}: shrank during the backup, stored zero-filled",
            path.display()
        ));
    } else if let Ok(after) = body.inner.metadata() {
        if after.len() != before.len()
            || after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec()
        {
            report.warnings.push(format!(
                "{}: changed during the backup, the copy may be inconsistent",
                path.display()
            ));
        }
    }
    Ok(true)
}

/// Yields exactly `remaining` bytes: the tar header promised that many, whatever the
/// file does meanwhile. A file that shrinks or fails to read is padded with zeros.
struct Exact {
    inner: File,
    remaining: u64,
    short: bool,
    error: Option<io::Error>,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = if self.short || self.error.is_some() {
            0
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    self.error = Some(e);
                    0
                }
            }
        };
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            self.remaining -= want as u64;
            return Ok(want);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tar_holds_dirs_files_symlinks_with_modes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("data");
        fs::create_dir_all(root.join("empty dir")).unwrap();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/ünï côdé.txt"), "hello").unwrap();
        fs::set_permissions(
            root.join("sub/ünï côdé.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/ünï côdé.txt", root.join("link")).unwrap();
        let mut out = Vec::new();
        let report = FileSource::new(&root).write_to(&mut out).unwrap();
        assert!(report.warnings.is_empty(), "{report:?}");
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let rel = p
                .trim_start_matches(&archive_name(&root).to_string_lossy().into_owned())
                .to_string();
            seen.push((
                rel,
                e.header().entry_type(),
                e.header().mode().unwrap() & 0o777,
            ));
        }
        let kinds: Vec<_> = seen.iter().map(|(p, k, _)| (p.as_str(), *k)).collect();
        assert_eq!(
            kinds,
            vec![
                ("/", EntryType::Directory),
                ("/empty dir/", EntryType::Directory),
                ("/link", EntryType::Symlink),
                ("/sub/", EntryType::Directory),
                ("/sub/ünï côdé.txt", EntryType::Regular),
            ]
        );
        assert_eq!(seen[4].2, 0o600);
    }

    fn names(out: &[u8], root: &Path) -> Vec<String> {
        let prefix = archive_name(root).to_string_lossy().into_owned();
        tar::Archive::new(out)
            .entries()
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path().unwrap().to_string_lossy().into_owned();
                p.trim_start_matches(&prefix).to_string()
            })
            .collect()
    }

    #[test]
    fn excludes_leave_out_matches_and_cache_contents_but_keep_the_tag() {
        use crate::source::exclude::{Pattern, CACHEDIR_SIGNATURE};
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("data");
        fs::create_dir_all(root.join("a/build")).unwrap();
        fs::create_dir_all(root.join("cache/sub")).unwrap();
        fs::write(root.join("a/build/x"), "x").unwrap();
        fs::write(root.join("a/keep.txt"), "k").unwrap();
        fs::write(root.join("a/drop.tmp"), "d").unwrap();
        fs::write(root.join("cache/sub/big"), "b").unwrap();
        fs::write(root.join("cache/CACHEDIR.TAG"), CACHEDIR_SIGNATURE).unwrap();
        let excludes = Excludes {
            patterns: vec![
                Pattern::parse("*.tmp").unwrap(),
                Pattern::parse("build/").unwrap(),
            ],
            caches: true,
            one_file_system: true,
        };
        let mut out = Vec::new();
        let report = FileSource::new(&root)
            .with_excludes(excludes)
            .write_to(&mut out)
            .unwrap();
        assert_eq!(
            names(&out, &root),
            ["/", "/a/", "/a/keep.txt", "/cache/", "/cache/CACHEDIR.TAG"]
        );
        assert_eq!(report.excluded.entries, 2);
        assert_eq!(report.excluded.cache_dirs, 1);
        assert_eq!(report.excluded.mount_points, 0);
    }

    #[test]
    fn a_file_that_shrinks_is_padded_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, vec![7u8; 10]).unwrap();
        let mut e = Exact {
            inner: File::open(&p).unwrap(),
            remaining: 20,
            short: false,
            error: None,
        };
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 20);
        assert!(e.short);
        assert_eq!(&out[10..], &[0u8; 10]);
    }
}
