//! `restore --cache`: prepared full copies kept so that several incrementals of one full
//! extract and prepare it once.
//!
//! An entry is copied into a datadir that root's mysqld will run on, so it is trusted
//! only if twindb can prove it wrote it for this very copy:
//!
//! - `ENTRY/manifest.json` records the sha256 of the stored copy it was prepared from,
//!   and every folder and file of `ENTRY/data` with its mode, size and sha256;
//! - the entry, its `data` folder and everything inside are real folders and files (a
//!   symlink anywhere is never followed), owned by twindbd's user, and the entry is
//!   0700: nobody else can add or swap anything in it;
//! - every file's bytes are checked against the manifest while they are copied.
//!
//! Anything else (an entry of an older twindb, a planted symlink, a changed file) is a
//! miss: the full is extracted and prepared again and the entry rebuilt.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{create_private_dir, RestoreError};
use crate::pipeline::Cancel;

const FORMAT: &str = "twindb-restore-cache";
const MANIFEST: &str = "manifest.json";
const DATA: &str = "data";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    /// The recorded sha256 of the stored copy the entry was prepared from.
    copy_sha256: String,
    /// Folders before what they hold.
    items: Vec<Item>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    /// Relative to `data`, '/'-separated plain names.
    path: String,
    /// The mode it had in the prepared datadir, restored on the copy out.
    mode: u32,
    /// None for a folder.
    file: Option<FileSum>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileSum {
    size: u64,
    sha256: String,
}

/// Why an entry was not used.
#[derive(Debug, thiserror::Error)]
pub(super) enum Miss {
    #[error("no cache entry")]
    Absent,
    #[error("cache entry {0} cannot be trusted: {1}")]
    Untrusted(String, String),
}

/// Where the entry for a copy lives: one name per key and prepare mode.
pub(super) fn entry_path(cache: &Path, key: &str, mode: &str) -> PathBuf {
    cache.join(format!("{}.{mode}", key.replace('/', "_")))
}

/// Copies the entry into the empty folder `datadir` after checking it (see the module
/// doc). On a miss `datadir` is left empty.
pub(super) fn load(
    entry: &Path,
    copy_sha256: &str,
    datadir: &Path,
    cancel: &Cancel,
) -> Result<(), Miss> {
    let untrusted = |why: String| Miss::Untrusted(entry.display().to_string(), why);
    match fs::symlink_metadata(entry) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(e) => return Err(untrusted(e.to_string())),
        Ok(m) => private(&m).map_err(untrusted)?,
    }
    let data = entry.join(DATA);
    let loaded = read_manifest(entry).and_then(|manifest| {
        if manifest.format != FORMAT || manifest.copy_sha256 != copy_sha256 {
            return Err("it was not prepared from this copy (its manifest names another)".into());
        }
        let root = fs::symlink_metadata(&data).map_err(|e| e.to_string())?;
        private(&root)?;
        copy_out(&data, &manifest, datadir, cancel)
    });
    loaded.map_err(|why| {
        let _ = empty_folder(datadir);
        untrusted(why)
    })
}

/// Stores the prepared `datadir` as the entry for the copy, replacing what was there.
pub(super) fn store(
    entry: &Path,
    copy_sha256: &str,
    datadir: &Path,
    cancel: &Cancel,
) -> Result<(), RestoreError> {
    let io_err = |p: &Path, e: io::Error| RestoreError::Io(p.display().to_string(), e);
    let cache = entry.parent().expect("an entry has a parent");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .map_err(|e| io_err(cache, e))?;
    // Built aside, then renamed: a half-written entry is never used.
    let name = entry.file_name().unwrap_or_default().to_string_lossy();
    let tmp = cache.join(format!(".{name}.twindb-partial.{}", std::process::id()));
    create_private_dir(&tmp)?;
    let data = tmp.join(DATA);
    create_private_dir(&data)?;
    let mut items = Vec::new();
    copy_in(datadir, &data, "", &mut items, cancel).map_err(|e| io_err(&data, e))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        copy_sha256: copy_sha256.into(),
        items,
    };
    let path = tmp.join(MANIFEST);
    let mut f = new_file(&path).map_err(|e| io_err(&path, e))?;
    f.write_all(&serde_json::to_vec(&manifest).expect("manifest serializes"))
        .map_err(|e| io_err(&path, e))?;
    drop(f);
    // An old or planted entry goes first; a symlink is removed, never followed.
    match fs::symlink_metadata(entry) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(entry).map_err(|e| io_err(entry, e))?,
        Ok(_) => fs::remove_file(entry).map_err(|e| io_err(entry, e))?,
        Err(_) => {}
    }
    fs::rename(&tmp, entry).map_err(|e| io_err(entry, e))
}

/// Removes everything inside `dir` (never following symlinks), keeping `dir`.
pub(super) fn empty_folder(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn read_manifest(entry: &Path) -> Result<Manifest, String> {
    let path = entry.join(MANIFEST);
    let mut f = open_nofollow(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let m = f.metadata().map_err(|e| e.to_string())?;
    if !m.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    private(&m)?;
    let mut text = Vec::new();
    f.read_to_end(&mut text).map_err(|e| e.to_string())?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A real file or folder (not a symlink), owned by twindbd's user, that nobody else
/// can read or write: all of an entry is, as [`store`] makes it.
fn private(m: &fs::Metadata) -> Result<(), String> {
    if m.file_type().is_symlink() {
        return Err("it is a symlink".into());
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "it belongs to uid {}, not to twindbd's user",
            m.uid()
        ));
    }
    if m.mode() & 0o077 != 0 {
        return Err(format!("its mode {:o} lets others in", m.mode() & 0o7777));
    }
    Ok(())
}

/// Copies every item of the manifest from `data` into `datadir`, checking each one.
fn copy_out(
    data: &Path,
    manifest: &Manifest,
    datadir: &Path,
    cancel: &Cancel,
) -> Result<(), String> {
    let mut dirs = Vec::new();
    for item in &manifest.items {
        if !plain_relative(&item.path) {
            return Err(format!("the manifest names {:?}", item.path));
        }
        let src = data.join(&item.path);
        let dst = datadir.join(&item.path);
        let meta = fs::symlink_metadata(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let bad = |why: &str| format!("{}: {why}", src.display());
        private(&meta).map_err(|why| bad(&why))?;
        match &item.file {
            None if meta.is_dir() => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dst)
                    .map_err(|e| bad(&e.to_string()))?;
                dirs.push((dst, item.mode & 0o777));
            }
            Some(sum) if meta.is_file() => {
                let got = copy_file(&src, &dst, cancel).map_err(|e| bad(&e.to_string()))?;
                if got.size != sum.size || got.sha256 != sum.sha256 {
                    return Err(bad("its content differs from the manifest"));
                }
                fs::set_permissions(&dst, fs::Permissions::from_mode(item.mode & 0o777))
                    .map_err(|e| bad(&e.to_string()))?;
            }
            _ => {
                return Err(bad(
                    "is not what the manifest records (a symlink, or a file swapped for a folder)",
                ))
            }
        }
    }
    // Folders last, deepest first: a read-only folder must not stop what goes inside.
    for (dir, mode) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Copies the tree `from` into the private folder `to`, recording each item; files and
/// folders of the entry are private (0600/0700), their real modes go to the manifest.
fn copy_in(
    from: &Path,
    to: &Path,
    rel: &str,
    items: &mut Vec<Item>,
    cancel: &Cancel,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|n| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a file name that is not UTF-8: {n:?}"),
            )
        })?;
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(e.path())?;
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(to.join(&name))?;
            items.push(Item {
                path: path.clone(),
                mode,
                file: None,
            });
            copy_in(&e.path(), &to.join(&name), &path, items, cancel)?;
        } else if meta.is_file() {
            let sum = copy_file(&e.path(), &to.join(&name), cancel)?;
            items.push(Item {
                path,
                mode,
                file: Some(sum),
            });
        } else {
            return Err(io::Error::other(format!(
                "{} is not a file or folder; a prepared datadir holds none",
                e.path().display()
            )));
        }
    }
    Ok(())
}

/// Copies one file (never through a symlink, into a new 0600 file); its size and sha256.
/// A cancelled job stops it at the next MiB.
fn copy_file(from: &Path, to: &Path, cancel: &Cancel) -> io::Result<FileSum> {
    let mut src = open_nofollow(from)?;
    let mut dst = new_file(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok(FileSum {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn new_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(dir: &Path) -> PathBuf {
        let d = dir.join("prepared");
        fs::create_dir_all(d.join("shop")).unwrap();
        fs::write(d.join("ibdata1"), vec![7u8; 100_000]).unwrap();
        fs::write(d.join("shop/orders.ibd"), b"pages").unwrap();
        fs::set_permissions(d.join("shop"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(d.join("ibdata1"), fs::Permissions::from_mode(0o640)).unwrap();
        d
    }

    fn fresh(dir: &Path, n: u32) -> PathBuf {
        let d = dir.join(format!("datadir-{n}"));
        fs::create_dir(&d).unwrap();
        d
    }

    fn untrusted(r: Result<(), Miss>) -> String {
        match r {
            Err(Miss::Untrusted(_, why)) => why,
            other => panic!("expected an untrusted entry, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_round_trips_with_its_modes_and_is_private() {
        let t = tempfile::tempdir().unwrap();
        let entry = entry_path(
            &t.path().join("cache"),
            "h/daily/mysql/a.xbstream",
            "prepared",
        );
        assert!(matches!(
            load(&entry, "sha", &fresh(t.path(), 0), &Cancel::default()),
            Err(Miss::Absent)
        ));
        store(&entry, "sha", &prepared(t.path()), &Cancel::default()).unwrap();
        let mode = fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let out = fresh(t.path(), 1);
        load(&entry, "sha", &out, &Cancel::default()).unwrap();
        assert_eq!(fs::read(out.join("shop/orders.ibd")).unwrap(), b"pages");
        let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("shop"), mode("ibdata1")), (0o750, 0o640));
        // Prepared from another copy (same key, other bytes): not used.
        let why = untrusted(load(
            &entry,
            "other",
            &fresh(t.path(), 2),
            &Cancel::default(),
        ));
        assert!(why.contains("not prepared from this copy"), "{why}");
    }

    #[test]
    fn a_changed_file_or_a_symlink_makes_the_entry_untrusted_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let entry = t.path().join("cache/e.prepared");
        store(&entry, "sha", &prepared(t.path()), &Cancel::default()).unwrap();

        fs::write(entry.join("data/shop/orders.ibd"), b"PAGES").unwrap();
        let out = fresh(t.path(), 1);
        let why = untrusted(load(&entry, "sha", &out, &Cancel::default()));
        assert!(why.contains("differs"), "{why}");
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            0,
            "a miss leaves datadir empty"
        );

        store(&entry, "sha", &prepared(t.path()), &Cancel::default()).unwrap();
        let secret = t.path().join("secret");
        fs::write(&secret, b"pages").unwrap();
        fs::remove_file(entry.join("data/shop/orders.ibd")).unwrap();
        std::os::unix::fs::symlink(&secret, entry.join("data/shop/orders.ibd")).unwrap();
        let why = untrusted(load(&entry, "sha", &fresh(t.path(), 2), &Cancel::default()));
        assert!(why.contains("symlink"), "{why}");

        let planted = t.path().join("planted");
        fs::create_dir(&planted).unwrap();
        fs::remove_dir_all(&entry).unwrap();
        std::os::unix::fs::symlink(&planted, &entry).unwrap();
        let why = untrusted(load(&entry, "sha", &fresh(t.path(), 3), &Cancel::default()));
        assert!(why.contains("symlink"), "{why}");
        // Storing replaces the symlink, never writes through it.
        store(&entry, "sha", &prepared(t.path()), &Cancel::default()).unwrap();
        assert_eq!(fs::read_dir(&planted).unwrap().count(), 0);
        load(&entry, "sha", &fresh(t.path(), 4), &Cancel::default()).unwrap();
    }
}
