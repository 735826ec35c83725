//! Restore of a MySQL copy into a prepared datadir.
//!
//! A full copy is extracted (xbstream/mbstream) and prepared. An incremental is applied
//! on its *recorded* parent (never "the newest full", TwinDB's bug), after checking that
//! the LSNs chain. Every tool's exit status is checked; a failure fails the restore with
//! the tool's stderr tail and leaves nothing at `dst`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{find_copy, prepare_destination, stream_copy, RestoreError};
use crate::engine::{Engine, JobCtx};
use crate::mysql::{find_program, run_tool, Tool, Vendor};
use crate::pipeline::Cancel;
use crate::status::{CopyMeta, MysqlMeta};

pub struct MysqlRestore<'a> {
    pub key: &'a str,
    pub dst: &'a Path,
    /// Keeps prepared full copies, so restoring several incrementals of one full
    /// extracts and prepares the full once.
    pub cache: Option<&'a Path>,
}

/// How the base of an incremental must be prepared; part of the cache key, because a
/// base prepared one way cannot take an incremental prepared the other way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// mariabackup >= 10.2: a plain `--prepare` base still accepts incrementals.
    Mariabackup,
    /// xtrabackup: the base is prepared with `--apply-log-only`.
    ApplyLogOnly,
}

impl Mode {
    fn for_vendor(v: Vendor) -> Mode {
        match v {
            Vendor::Mariadb => Mode::Mariabackup,
            Vendor::Percona | Vendor::Oracle => Mode::ApplyLogOnly,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Mariabackup => "prepared",
            Mode::ApplyLogOnly => "apply-log-only",
        }
    }
}

struct Tools {
    backup: String,
    stream: String,
}

pub async fn restore_mysql(
    engine: &Engine,
    req: MysqlRestore<'_>,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let status = engine.status_for_key(req.key).await?;
    let meta = find_copy(&status, req.key, "mysql")?;
    let m = mysql_meta(&meta)?;
    let tools = tools(engine, m)?;
    let mode = Mode::for_vendor(m.vendor);
    let staging = prepare_destination(req.dst)?;
    let datadir = staging.path().to_path_buf();

    let how = if meta.backup_type.as_deref() == Some("incremental") {
        let parent_key = meta.parent.as_deref().ok_or_else(|| {
            RestoreError::Other(format!(
                "incremental {} records no parent full copy",
                meta.key
            ))
        })?;
        let parent = find_copy(&status, parent_key, "mysql").map_err(|_| {
            RestoreError::Other(format!(
                "the full copy {parent_key} that incremental {} was taken against is no longer in the status; \
                 the incremental cannot be restored without it",
                meta.key
            ))
        })?;
        let pm = mysql_meta(&parent)?;
        if pm.to_lsn != m.from_lsn {
            return Err(RestoreError::Other(format!(
                "LSNs do not chain: {} ends at LSN {} but incremental {} starts at LSN {}",
                parent.key, pm.to_lsn, meta.key, m.from_lsn
            )));
        }
        restore_base(engine, &parent, &tools, mode, &datadir, req.cache, ctx).await?;

        let inc_dir = staging.scratch("incremental");
        let _cleanup = RemoveDir(inc_dir.clone());
        std::fs::create_dir_all(&inc_dir)
            .map_err(|e| RestoreError::Io(inc_dir.display().to_string(), e))?;
        ctx.set_phase(format!("extracting incremental {}", meta.key));
        extract(engine, &meta, &tools, &inc_dir, ctx).await?;
        ctx.set_phase("applying the incremental");
        let mut cmd = Command::new(&tools.backup);
        cmd.arg("--prepare")
            .arg(format!("--target-dir={}", datadir.display()))
            .arg(format!("--incremental-dir={}", inc_dir.display()));
        blocking(ctx, move |cancel| run_tool(cmd, &cancel)).await?;
        if mode == Mode::ApplyLogOnly {
            prepare(&tools, &datadir, false, ctx).await?;
        }
        format!("incremental on its full copy {}", parent.key)
    } else {
        ctx.set_phase(format!("extracting {}", meta.key));
        extract(engine, &meta, &tools, &datadir, ctx).await?;
        ctx.set_phase("preparing");
        prepare(&tools, &datadir, false, ctx).await?;
        "full copy".to_string()
    };

    write_config_files(&datadir, m)?;
    if m.galera {
        write_grastate(&datadir, m)?;
    }
    staging.commit()?;
    Ok(format!(
        "restored {} ({how}) into {dst} and prepared it. Next steps: stop mysqld; move {dst}/_config (the server's \
         my.cnf files at backup time) out of the datadir; `chown -R mysql:mysql {dst}`; point datadir at {dst} (or \
         move its content into the datadir); start mysqld.",
        meta.key,
        dst = req.dst.display()
    ))
}

fn mysql_meta(meta: &CopyMeta) -> Result<&MysqlMeta, RestoreError> {
    meta.mysql
        .as_ref()
        .ok_or_else(|| RestoreError::Other(format!("{} has no MySQL metadata recorded", meta.key)))
}

fn tools(engine: &Engine, m: &MysqlMeta) -> Result<Tools, RestoreError> {
    let cfg = engine.config.mysql.as_ref();
    let backup = cfg
        .and_then(|c| c.xtrabackup_binary.clone())
        .unwrap_or_else(|| m.tool.clone());
    let stream = cfg
        .and_then(|c| c.xbstream_binary.clone())
        .unwrap_or_else(|| m.stream_tool.clone());
    for p in [&backup, &stream] {
        if find_program(p).is_none() {
            return Err(RestoreError::Other(format!(
                "{p} is needed to restore this copy and is not installed (Debian: mariadb-backup or percona-xtrabackup)"
            )));
        }
    }
    Ok(Tools { backup, stream })
}

/// Extracts and prepares the full copy `parent` into `datadir` for an incremental,
/// through the cache when one is given.
async fn restore_base(
    engine: &Engine,
    parent: &CopyMeta,
    tools: &Tools,
    mode: Mode,
    datadir: &Path,
    cache: Option<&Path>,
    ctx: &JobCtx,
) -> Result<(), RestoreError> {
    let entry = cache.map(|c| c.join(format!("{}.{}", parent.key.replace('/', "_"), mode.name())));
    if let Some(entry) = &entry {
        if entry.is_dir() {
            ctx.set_phase(format!("copying {} from the cache", parent.key));
            copy_tree(entry, datadir, ctx).await?;
            return Ok(());
        }
    }
    ctx.set_phase(format!("extracting the full copy {}", parent.key));
    extract(engine, parent, tools, datadir, ctx).await?;
    ctx.set_phase("preparing the full copy");
    prepare(tools, datadir, mode == Mode::ApplyLogOnly, ctx).await?;
    if let Some(entry) = entry {
        // Copy, then rename: a half-written cache entry is never used.
        let tmp = entry.with_extension("twindb-partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| RestoreError::Io(tmp.display().to_string(), e))?;
        copy_tree(datadir, &tmp, ctx).await?;
        std::fs::rename(&tmp, &entry)
            .map_err(|e| RestoreError::Io(entry.display().to_string(), e))?;
    }
    Ok(())
}

async fn prepare(
    tools: &Tools,
    datadir: &Path,
    apply_log_only: bool,
    ctx: &JobCtx,
) -> Result<(), RestoreError> {
    let mut cmd = Command::new(&tools.backup);
    cmd.arg("--prepare");
    if apply_log_only {
        cmd.arg("--apply-log-only");
    }
    cmd.arg(format!("--target-dir={}", datadir.display()));
    blocking(ctx, move |cancel| run_tool(cmd, &cancel)).await
}

/// Streams the copy into `xbstream -x -C dir`.
async fn extract(
    engine: &Engine,
    meta: &CopyMeta,
    tools: &Tools,
    dir: &Path,
    ctx: &JobCtx,
) -> Result<(), RestoreError> {
    let mut cmd = Command::new(&tools.stream);
    cmd.arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let cancel = ctx.cancel.clone();
    stream_copy(engine, meta, ctx, move |input| {
        let mut tool = Tool::spawn(cmd, &cancel)?;
        let mut stdin = tool.take_stdin();
        let copied = crate::pipeline::copy(input, &mut stdin).and_then(|_| stdin.flush());
        drop(stdin);
        match copied {
            Ok(()) => tool.wait().map_err(io::Error::from),
            Err(e)
                if crate::pipeline::is_propagated(&e) || e.kind() != io::ErrorKind::BrokenPipe =>
            {
                tool.kill();
                Err(e)
            }
            // The extractor stopped reading: its exit status and stderr say why.
            Err(e) => match tool.wait() {
                Err(failed) => Err(failed.into()),
                Ok(()) => Err(e),
            },
        }
    })
    .await
    .map(|_| ())
}

async fn copy_tree(from: &Path, to: &Path, ctx: &JobCtx) -> Result<(), RestoreError> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", from.display()))
        .arg(to);
    blocking(ctx, move |cancel| run_tool(cmd, &cancel)).await
}

/// Runs a tool off the async threads. The job's cancel stops the tool (see
/// [`crate::process`]), and a cancelled tool's failure is reported as the cancel.
async fn blocking(
    ctx: &JobCtx,
    f: impl FnOnce(Cancel) -> Result<(), crate::mysql::ToolError> + Send + 'static,
) -> Result<(), RestoreError> {
    let cancel = ctx.cancel.clone();
    let result = tokio::task::spawn_blocking(move || f(cancel))
        .await
        .map_err(|e| RestoreError::Other(e.to_string()))?;
    if ctx.cancel.is_cancelled() {
        return Err(RestoreError::Cancelled);
    }
    result.map_err(RestoreError::from)
}

/// The server's my.cnf files as they were at backup time, under `_config/<abs path>`.
fn write_config_files(datadir: &Path, m: &MysqlMeta) -> Result<(), RestoreError> {
    for f in &m.config {
        let rel = f.path.trim_start_matches('/');
        if rel.split('/').any(|p| p == "..") {
            continue;
        }
        let path = datadir.join("_config").join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RestoreError::Io(dir.display().to_string(), e))?;
        }
        std::fs::write(&path, f.content())
            .map_err(|e| RestoreError::Io(path.display().to_string(), e))?;
    }
    Ok(())
}

/// grastate.dat from `xtrabackup_galera_info` (`uuid:seqno`), so the node can join its
/// cluster with IST instead of a full SST.
fn write_grastate(datadir: &Path, m: &MysqlMeta) -> Result<(), RestoreError> {
    let info_path = datadir.join("xtrabackup_galera_info");
    let info = std::fs::read_to_string(&info_path)
        .map_err(|e| RestoreError::Io(info_path.display().to_string(), e))?;
    let text = grastate(&info, m.wsrep_provider_version.as_deref()).ok_or_else(|| {
        RestoreError::Other(format!(
            "cannot read uuid:seqno from {}",
            info_path.display()
        ))
    })?;
    let path: PathBuf = datadir.join("grastate.dat");
    std::fs::write(&path, text).map_err(|e| RestoreError::Io(path.display().to_string(), e))
}

/// `version` is the grastate file format (2.1), as Galera writes it; the provider
/// version recorded at backup time goes in a comment (TwinDB put it in `version`).
fn grastate(galera_info: &str, provider_version: Option<&str>) -> Option<String> {
    let line = galera_info.lines().next()?.trim();
    let (uuid, rest) = line.split_once(':')?;
    let seqno = rest.split(|c: char| c == ',' || c.is_whitespace()).next()?;
    seqno.parse::<i64>().ok()?;
    Some(format!(
        "# GALERA saved state\n# wsrep_provider_version at backup: {}\nversion: 2.1\nuuid:    {uuid}\nseqno:   {seqno}\nsafe_to_bootstrap: 0\n",
        provider_version.unwrap_or("unknown")
    ))
}

pub(super) struct RemoveDir(pub(super) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grastate_from_galera_info() {
        let g = grastate(
            "5ee99582-bb8d-11e2-b8e3-23de375c1d30:8204\n",
            Some("26.4.16(r7dce5149)"),
        )
        .unwrap();
        assert!(g.contains("uuid:    5ee99582-bb8d-11e2-b8e3-23de375c1d30\n"));
        assert!(g.contains("seqno:   8204\n"));
        assert!(g.contains("version: 2.1\n"));
        assert!(g.contains("26.4.16(r7dce5149)"));
        assert!(grastate("garbage", None).is_none());
    }
}
