//! Restore of a files copy into an absent or empty folder.

use std::path::Path;

use super::{find_copy, prepare_destination, stream_copy, RestoreError};
use crate::engine::{Engine, JobCtx};

pub async fn restore_files(
    engine: &Engine,
    key: &str,
    dst: &Path,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let meta = find_copy(&engine.status_for_key(key).await?, key, "files")?;
    let staging = prepare_destination(dst, &engine.config.daemon.state_dir)?;
    ctx.set_phase(format!("restoring {key}"));
    let target = staging.path().to_path_buf();
    let source = stream_copy(engine, &meta, ctx, move |input| {
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
        archive.set_overwrite(false);
        archive.unpack(&target)
    })
    .await?;
    staging.commit()?;
    let checked = if meta.twindb.is_some() {
        "a TwinDB Backup copy: no checksum was recorded, the decompressor and tar checked it"
    } else {
        "every byte checked against its recorded sha256"
    };
    Ok(format!(
        "restored {key} from {source} into {} ({checked})",
        dst.display(),
    ))
}
