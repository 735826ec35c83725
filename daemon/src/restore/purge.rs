//! `twindbctl cache purge`: removes the entries of a restore cache (see [`super::cache`]).
//!
//! Only what twindb puts in a cache is touched: entry folders (`KEY.MODE`) and the
//! partial entries (`.NAME.twindb-partial.PID`) of restores that were interrupted.
//! Anything else in the folder (the user may have pointed `--cache` at a shared one)
//! stays. Partial entries of this twindbd's own process may be in progress and stay
//! too. Nothing is followed through a symlink. The API refuses a purge while a restore
//! uses the folder. A restore that starts while a purge runs may find its entry gone or
//! half-removed: that is a cache miss (the manifest check fails), and it prepares the
//! full copy again.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use twindb_proto::{CacheEntry, CachePurgeResponse};

/// The suffixes of entry names: the prepare modes of `restore::mysql::Mode::name`.
const ENTRY_SUFFIXES: [&str; 2] = [".prepared", ".apply-log-only"];
const PARTIAL: &str = ".twindb-partial.";

/// Removes the entries of `cache` stored more than `older_than` before `now` (all of
/// them without `older_than`).
pub fn purge_cache(
    cache: &Path,
    older_than: Option<Duration>,
    now: SystemTime,
) -> io::Result<CachePurgeResponse> {
    let mut out = CachePurgeResponse {
        cache: cache.display().to_string(),
        removed: Vec::new(),
        kept: Vec::new(),
    };
    let mut names: Vec<_> = fs::read_dir(cache)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    let ours = format!("{PARTIAL}{}", std::process::id());
    for name in names {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        let partial = name.starts_with('.') && name.contains(PARTIAL);
        let entry = !name.starts_with('.') && ENTRY_SUFFIXES.iter().any(|s| name.ends_with(s));
        if !(partial || entry) || (partial && name.ends_with(&ours)) {
            continue;
        }
        let path = cache.join(&name);
        let meta = fs::symlink_metadata(&path)?;
        if !meta.is_dir() {
            continue;
        }
        // An entry's manifest is its last file written: its time is the entry's.
        let stored = fs::symlink_metadata(path.join("manifest.json"))
            .and_then(|m| m.modified())
            .or_else(|_| meta.modified())?;
        let age = now.duration_since(stored).unwrap_or_default();
        let e = CacheEntry {
            name,
            bytes: size_of(&path)?,
            age_seconds: age.as_secs(),
        };
        if older_than.is_some_and(|limit| age < limit) {
            out.kept.push(e);
        } else {
            fs::remove_dir_all(&path)?;
            tracing::info!(entry = %path.display(), bytes = e.bytes, "removed a restore cache entry");
            out.removed.push(e);
        }
    }
    Ok(out)
}

/// Bytes of the files under `dir`, never following a symlink.
fn size_of(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.size();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cache: &Path, name: &str, bytes: usize) {
        let dir = cache.join(name);
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("data/ibdata1"), vec![0u8; bytes]).unwrap();
        fs::write(dir.join("manifest.json"), "{}").unwrap();
    }

    #[test]
    fn only_cache_entries_go_and_only_those_old_enough() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        entry(c, "h_daily_mysql_a.xbstream.prepared", 100);
        entry(c, "h_daily_mysql_b.xbstream.apply-log-only", 10);
        entry(c, ".x.prepared.twindb-partial.1", 5);
        entry(c, &format!(".y.prepared{PARTIAL}{}", std::process::id()), 5);
        entry(c, "someone-elses", 1);
        fs::write(c.join("notes.prepared"), "a file, not an entry").unwrap();
        std::os::unix::fs::symlink(c.join("someone-elses"), c.join("link.prepared")).unwrap();

        // Nothing is an hour old yet.
        let now = SystemTime::now();
        let r = purge_cache(c, Some(Duration::from_secs(3600)), now).unwrap();
        assert!(r.removed.is_empty(), "{r:?}");
        assert_eq!(r.kept.len(), 3, "{r:?}");

        let later = now + Duration::from_secs(7200);
        let r = purge_cache(c, Some(Duration::from_secs(3600)), later).unwrap();
        let removed: Vec<(&str, u64)> = r
            .removed
            .iter()
            .map(|e| (e.name.as_str(), e.bytes))
            .collect();
        assert_eq!(
            removed,
            [
                (".x.prepared.twindb-partial.1", 7),
                ("h_daily_mysql_a.xbstream.prepared", 102),
                ("h_daily_mysql_b.xbstream.apply-log-only", 12),
            ]
        );
        assert!(r.removed.iter().all(|e| e.age_seconds >= 7200));
        let left: Vec<String> = fs::read_dir(c)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(c.join("someone-elses/data/ibdata1").exists());
    }
}
