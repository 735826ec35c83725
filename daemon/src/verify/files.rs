//! Verify a files copy: restore it, then read the copy again and compare every
//! restored file with its entry in the tar (size and sha256 of regular files, link
//! targets, folders present). The restore already checked the stored bytes against
//! their recorded sha256; this proves the tree on disk is what the tar holds.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use twindb_proto::{CopyKind, VerifyReport};

use super::{failed, Scratch};
use crate::engine::{Engine, JobCtx};
use crate::restore::{find_copy, restore_files, stream_copy};

/// Mismatches listed in a report; the rest are counted.
const SHOWN: usize = 5;

pub async fn verify_files(engine: &Engine, key: &str, ctx: &JobCtx) -> VerifyReport {
    let scratch = match Scratch::new(engine, None, "files") {
        Ok(s) => s,
        Err(e) => return failed(CopyKind::Files, key, 0.0, e),
    };
    let started = Instant::now();
    if let Err(e) = restore_files(engine, key, &scratch.path, ctx).await {
        let secs = started.elapsed().as_secs_f64();
        return failed(CopyKind::Files, key, secs, format!("restore failed: {e}"));
    }
    let restore_seconds = started.elapsed().as_secs_f64();
    ctx.set_phase(format!("comparing the restored files with {key}"));
    let compared = compare(engine, key, scratch.path.clone(), ctx).await;
    match compared {
        Ok(Tally { files, others, bad }) if bad.is_empty() => VerifyReport {
            copy: key.to_string(),
            restore_seconds,
            success: true,
            error: None,
            kind: CopyKind::Files,
            rto_seconds: Some(restore_seconds),
            checks: vec![format!(
                "{files} files match the copy's tar (size and sha256), {others} folders and links present"
            )],
        },
        Ok(t) => {
            let mut text = t.bad[..t.bad.len().min(SHOWN)].join("; ");
            if t.bad.len() > SHOWN {
                text.push_str(&format!(" (and {} more)", t.bad.len() - SHOWN));
            }
            failed(
                CopyKind::Files,
                key,
                restore_seconds,
                format!("the restored tree differs from the copy: {text}"),
            )
        }
        Err(e) => failed(CopyKind::Files, key, restore_seconds, e),
    }
}

#[derive(Default)]
struct Tally {
    files: u64,
    others: u64,
    bad: Vec<String>,
}

async fn compare(engine: &Engine, key: &str, root: PathBuf, ctx: &JobCtx) -> Result<Tally, String> {
    let status = engine
        .status_for_key(key)
        .await
        .map_err(|e| e.to_string())?;
    let meta = find_copy(&status, key, "files").map_err(|e| e.to_string())?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let out = tally.clone();
    stream_copy(engine, &meta, ctx, move |input| {
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let on_disk = root.join(&path);
            let verdict = check_entry(&mut entry, &on_disk, &root);
            let mut t = out.lock().expect("tally lock");
            match verdict {
                Ok(true) => t.files += 1,
                Ok(false) => t.others += 1,
                Err(why) => t.bad.push(format!("{}: {why}", path.display())),
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("reading the copy again: {e}"))?;
    let t = std::mem::take(&mut *tally.lock().expect("tally lock"));
    Ok(t)
}

/// Whether the entry is a regular file that matches (`true`), another entry that is
/// present as it should be (`false`), or why it does not match.
fn check_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    on_disk: &Path,
    root: &Path,
) -> Result<bool, String> {
    let kind = entry.header().entry_type();
    let meta = std::fs::symlink_metadata(on_disk).map_err(|e| format!("not restored ({e})"))?;
    if kind == tar::EntryType::Link {
        // A hard link: the same inode as the file it names, whose bytes were checked
        // when its own entry came by.
        let first = entry
            .link_name()
            .map_err(|e| e.to_string())?
            .unwrap_or_default()
            .into_owned();
        let target = std::fs::symlink_metadata(root.join(&first)).map_err(|e| {
            format!(
                "hard link to {}, which is not restored ({e})",
                first.display()
            )
        })?;
        use std::os::unix::fs::MetadataExt;
        return (meta.ino() == target.ino() && meta.dev() == target.dev())
            .then_some(false)
            .ok_or_else(|| format!("not a hard link to {}", first.display()));
    }
    if kind.is_dir() {
        return meta
            .is_dir()
            .then_some(false)
            .ok_or_else(|| "not a folder".into());
    }
    if kind.is_symlink() {
        let want = entry
            .link_name()
            .map_err(|e| e.to_string())?
            .unwrap_or_default()
            .into_owned();
        let got = std::fs::read_link(on_disk).map_err(|e| format!("not a link ({e})"))?;
        return (got == want)
            .then_some(false)
            .ok_or_else(|| format!("links to {} instead of {}", got.display(), want.display()));
    }
    if !kind.is_file() {
        return Ok(false);
    }
    let want = hash(entry).map_err(|e| format!("reading the tar: {e}"))?;
    let got = std::fs::File::open(on_disk)
        .and_then(|mut f| hash(&mut f))
        .map_err(|e| format!("reading the restored file: {e}"))?;
    if got.0 != want.0 {
        return Err(format!("{} bytes restored, {} in the copy", got.0, want.0));
    }
    if got.1 != want.1 {
        return Err("its content differs from the copy's".into());
    }
    Ok(true)
}

fn hash(r: &mut dyn Read) -> io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, h.finalize().into()))
}
