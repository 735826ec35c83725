//! Restore of a MySQL copy into a prepared datadir.
//!
//! A full copy is extracted (xbstream/mbstream) and prepared. An incremental is applied
//! on its *recorded* parent (never "the newest full", TwinDB's bug), after checking that
//! the LSNs chain. Every tool's exit status is checked; a failure fails the restore with
//! the tool's stderr tail and leaves nothing at `dst`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{cache, create_private_dir, find_copy, prepare_destination, stream_copy, RestoreError};
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

/// The phase that streams a copy from where it is stored into the extractor: the bytes
/// are extracted as they arrive, so download and extraction are one time.
const DOWNLOAD: &str = "download and extract";

struct Tools {
    backup: String,
    stream: String,
    /// `--use-memory` of every `--prepare`, in bytes.
    prepare_memory: u64,
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
    let staging = prepare_destination(req.dst, &engine.config.daemon.state_dir)?;
    let datadir = staging.path().to_path_buf();
    // Where the copies' bytes came from (keep_local_path, the destination or the
    // restore cache), for the message.
    let mut sources: Vec<&'static str> = Vec::new();

    let how = if meta.backup_type.as_deref() == Some("incremental") {
        let parent_key = meta
            .parent
            .as_deref()
            .ok_or_else(|| RestoreError::NoParent(meta.key.clone()))?;
        let parent =
            find_copy(&status, parent_key, "mysql").map_err(|_| RestoreError::ParentGone {
                parent: parent_key.to_string(),
                key: meta.key.clone(),
            })?;
        let pm = mysql_meta(&parent)?;
        if pm.to_lsn != m.from_lsn {
            return Err(RestoreError::LsnGap {
                parent: parent.key.clone(),
                parent_to: pm.to_lsn,
                key: meta.key.clone(),
                from: m.from_lsn,
            });
        }
        let base = restore_base(engine, &parent, &tools, mode, &datadir, req.cache, ctx).await?;
        sources.push(base);

        let inc_dir = staging.scratch("incremental");
        let _cleanup = RemoveDir(inc_dir.clone());
        create_private_dir(&inc_dir)?;
        ctx.set_phase(format!("extracting incremental {}", meta.key));
        let t = Instant::now();
        sources.push(extract(engine, &meta, &tools, &inc_dir, ctx).await?);
        ctx.took(DOWNLOAD, Some(&meta.key), t);
        ctx.set_phase("applying the incremental");
        let t = Instant::now();
        let mut cmd = Command::new(&tools.backup);
        cmd.arg("--prepare")
            .arg(format!("--use-memory={}", tools.prepare_memory))
            .arg(format!("--target-dir={}", datadir.display()))
            .arg(format!("--incremental-dir={}", inc_dir.display()));
        blocking(ctx, move |cancel| run_tool(cmd, &cancel)).await?;
        if mode == Mode::ApplyLogOnly {
            prepare(&tools, &datadir, false, ctx).await?;
        }
        ctx.took("apply incremental", Some(&meta.key), t);
        format!("incremental on its full copy {}", parent.key)
    } else {
        ctx.set_phase(format!("extracting {}", meta.key));
        let t = Instant::now();
        sources.push(extract(engine, &meta, &tools, &datadir, ctx).await?);
        ctx.took(DOWNLOAD, Some(&meta.key), t);
        ctx.set_phase("preparing");
        let t = Instant::now();
        prepare(&tools, &datadir, false, ctx).await?;
        ctx.took("prepare", Some(&meta.key), t);
        "full copy".to_string()
    };

    write_config_files(&datadir, m)?;
    if m.galera {
        write_grastate(&datadir, m)?;
    }
    staging.commit()?;
    sources.dedup();
    Ok(format!(
        "restored {} ({how}) from {} into {dst} and prepared it. Next steps: stop mysqld; move {dst}/_config (the server's \
         my.cnf files at backup time) out of the datadir; `chown -R mysql:mysql {dst}`; point datadir at {dst} (or \
         move its content into the datadir); start mysqld.",
        meta.key,
        sources.join(" and "),
        dst = req.dst.display()
    ))
}

fn mysql_meta(meta: &CopyMeta) -> Result<&MysqlMeta, RestoreError> {
    meta.mysql
        .as_ref()
        .ok_or_else(|| RestoreError::NoMysqlMeta(meta.key.clone()))
}

/// The backup tool and stream extractor: `[mysql] xtrabackup_binary`/`xbstream_binary`,
/// else the built-in default for the copy's vendor, resolved in PATH. Never the names
/// recorded in the copy's status: whoever can write to the destination could name any
/// program there, and restore runs as root (docs/safety.md).
fn tools(engine: &Engine, m: &MysqlMeta) -> Result<Tools, RestoreError> {
    let cfg = engine.config.mysql.as_ref();
    let (default_backup, default_stream) = m.vendor.tools();
    let backup = cfg
        .and_then(|c| c.xtrabackup_binary.clone())
        .unwrap_or_else(|| default_backup.to_string());
    let stream = cfg
        .and_then(|c| c.xbstream_binary.clone())
        .unwrap_or_else(|| default_stream.to_string());
    let resolve = |p: &str| {
        find_program(p)
            .map(|path| path.display().to_string())
            .ok_or_else(|| RestoreError::ToolMissing(p.to_string()))
    };
    Ok(Tools {
        backup: resolve(&backup)?,
        stream: resolve(&stream)?,
        prepare_memory: cfg
            .and_then(|c| c.prepare_memory)
            .unwrap_or_else(crate::mysql::default_prepare_memory),
    })
}

/// Extracts and prepares the full copy `parent` into `datadir` for an incremental,
/// through the cache when one is given. Returns where its bytes came from.
async fn restore_base(
    engine: &Engine,
    parent: &CopyMeta,
    tools: &Tools,
    mode: Mode,
    datadir: &Path,
    cache: Option<&Path>,
    ctx: &JobCtx,
) -> Result<&'static str, RestoreError> {
    let entry = cache.map(|c| cache::entry_path(c, &parent.key, mode.name()));
    if let Some(entry) = &entry {
        ctx.set_phase(format!("copying {} from the cache", parent.key));
        let t = Instant::now();
        let (from, to, sha) = (entry.clone(), datadir.to_path_buf(), parent.sha256.clone());
        let cancel = ctx.cancel.clone();
        let loaded = blocking_io(move || Ok(cache::load(&from, &sha, &to, &cancel))).await?;
        if ctx.cancel.is_cancelled() {
            return Err(RestoreError::Cancelled);
        }
        match loaded {
            Ok(()) => {
                ctx.took("copy from the cache", Some(&parent.key), t);
                return Ok("the restore cache");
            }
            Err(cache::Miss::Absent) => {}
            Err(miss) => ctx.warn(format!("{miss}; preparing the full copy again")),
        }
    }
    ctx.set_phase(format!("extracting the full copy {}", parent.key));
    let t = Instant::now();
    let source = extract(engine, parent, tools, datadir, ctx).await?;
    ctx.took(DOWNLOAD, Some(&parent.key), t);
    ctx.set_phase("preparing the full copy");
    let t = Instant::now();
    prepare(tools, datadir, mode == Mode::ApplyLogOnly, ctx).await?;
    ctx.took("prepare", Some(&parent.key), t);
    if let Some(entry) = entry {
        ctx.set_phase(format!("storing the prepared {} in the cache", parent.key));
        let t = Instant::now();
        let (from, sha) = (datadir.to_path_buf(), parent.sha256.clone());
        let cancel = ctx.cancel.clone();
        let stored = blocking_io(move || cache::store(&entry, &sha, &from, &cancel)).await;
        if ctx.cancel.is_cancelled() {
            return Err(RestoreError::Cancelled);
        }
        stored?;
        ctx.took("store in the cache", Some(&parent.key), t);
    }
    Ok(source)
}

async fn prepare(
    tools: &Tools,
    datadir: &Path,
    apply_log_only: bool,
    ctx: &JobCtx,
) -> Result<(), RestoreError> {
    let mut cmd = Command::new(&tools.backup);
    cmd.arg("--prepare")
        .arg(format!("--use-memory={}", tools.prepare_memory));
    if apply_log_only {
        cmd.arg("--apply-log-only");
    }
    cmd.arg(format!("--target-dir={}", datadir.display()));
    blocking(ctx, move |cancel| run_tool(cmd, &cancel)).await
}

/// Streams the copy into `xbstream -x --parallel=N -C dir`; returns where its bytes
/// came from. Both extractors write each file from one thread, so threads are safe.
async fn extract(
    engine: &Engine,
    meta: &CopyMeta,
    tools: &Tools,
    dir: &Path,
    ctx: &JobCtx,
) -> Result<&'static str, RestoreError> {
    let mut cmd = Command::new(&tools.stream);
    cmd.arg("-x")
        .arg(format!("--parallel={}", crate::mysql::extract_threads()))
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
}

async fn blocking_io<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RestoreError> + Send + 'static,
) -> Result<T, RestoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RestoreError::Internal(e.to_string()))?
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
        .map_err(|e| RestoreError::Internal(e.to_string()))?;
    if ctx.cancel.is_cancelled() {
        return Err(RestoreError::Cancelled);
    }
    result.map_err(RestoreError::from)
}

/// The server's my.cnf files as they were at backup time, under `_config/<abs path>`.
/// The recorded paths come from the destination: a path with `..` is skipped, folders
/// are created private and files 0600 (they may hold passwords), and nothing is written
/// through a symlink (the datadir came from the copy too).
fn write_config_files(datadir: &Path, m: &MysqlMeta) -> Result<(), RestoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_err = |p: &Path, e| RestoreError::Io(p.display().to_string(), e);
    for f in &m.config {
        let Some((name, folders)) = plain_components(&f.path) else {
            tracing::warn!(path = %f.path, "skipping a recorded my.cnf path that leaves _config");
            continue;
        };
        let mut dir = datadir.join("_config");
        real_dir(&dir)?;
        for part in folders {
            dir.push(part);
            real_dir(&dir)?;
        }
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // Also when the file was there already (a path recorded twice).
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(&path, e))?;
        file.write_all(&f.content()).map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}

/// Makes `dir` a private folder, or checks that it is a real folder (not a symlink).
fn real_dir(dir: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        // symlink_metadata does not follow: a symlink is not a dir here.
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(RestoreError::NotAFolder(dir.display().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| RestoreError::Io(dir.display().to_string(), e)),
        Err(e) => Err(RestoreError::Io(dir.display().to_string(), e)),
    }
}

/// The file name and folders of a recorded path, read as relative to `_config`: empty
/// and `.` parts are dropped (as the kernel would); None when a part is `..` or holds a
/// NUL, or nothing is left.
fn plain_components(path: &str) -> Option<(&str, Vec<&str>)> {
    let mut parts = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p if p.contains('\0') => return None,
            p => parts.push(p),
        }
    }
    let (name, folders) = parts.split_last()?;
    Some((name, folders.to_vec()))
}

/// grastate.dat from `xtrabackup_galera_info` (`uuid:seqno`), so the node can join its
/// cluster with IST instead of a full SST.
fn write_grastate(datadir: &Path, m: &MysqlMeta) -> Result<(), RestoreError> {
    let info_path = galera_info_path(datadir);
    let info = std::fs::read_to_string(&info_path)
        .map_err(|e| RestoreError::Io(info_path.display().to_string(), e))?;
    let text = grastate(&info, m.wsrep_provider_version.as_deref())
        .ok_or_else(|| RestoreError::GaleraInfo(info_path.display().to_string()))?;
    let path: PathBuf = datadir.join("grastate.dat");
    std::fs::write(&path, text).map_err(|e| RestoreError::Io(path.display().to_string(), e))
}

/// MariaDB 11's mariadb-backup names the file `mariadb_backup_galera_info`; earlier
/// versions and XtraBackup `xtrabackup_galera_info`.
fn galera_info_path(datadir: &Path) -> PathBuf {
    let new = datadir.join("mariadb_backup_galera_info");
    if new.exists() {
        new
    } else {
        datadir.join("xtrabackup_galera_info")
    }
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
    fn recorded_my_cnf_paths_stay_under_config() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            plain_components("/etc/mysql//conf.d/./x.cnf"),
            Some(("x.cnf", vec!["etc", "mysql", "conf.d"]))
        );
        assert_eq!(plain_components("my.cnf"), Some(("my.cnf", vec![])));
        for bad in [
            "/etc/../../root/.ssh/authorized_keys",
            "..",
            "/",
            "",
            "/a/b\0c",
        ] {
            assert_eq!(plain_components(bad), None, "{bad:?}");
        }
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        // A `_config/etc` symlink (as if it came with the copy) is not written through.
        std::fs::create_dir(t.path().join("_config")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, t.path().join("_config/etc")).unwrap();
        let meta = |path: &str| MysqlMeta {
            from_lsn: 0,
            to_lsn: 1,
            last_lsn: 1,
            binlog_file: None,
            binlog_position: None,
            gtid: None,
            vendor: Vendor::Mariadb,
            version: "10.11".into(),
            tool: "mariabackup".into(),
            stream_tool: "mbstream".into(),
            galera: false,
            wsrep_provider_version: None,
            config: vec![crate::mysql::ConfigFile {
                path: path.into(),
                content_base64: "W215c3FsZF0K".into(),
            }],
        };
        let err = write_config_files(t.path(), &meta("/etc/my.cnf")).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        write_config_files(t.path(), &meta("/srv/my.cnf")).unwrap();
        let written = t.path().join("_config/srv/my.cnf");
        assert_eq!(std::fs::read(&written).unwrap(), b"[mysqld]\n");
        let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn galera_info_under_either_name() {
        let t = tempfile::tempdir().unwrap();
        assert!(galera_info_path(t.path()).ends_with("xtrabackup_galera_info"));
        std::fs::write(t.path().join("mariadb_backup_galera_info"), "u:1").unwrap();
        assert!(galera_info_path(t.path()).ends_with("mariadb_backup_galera_info"));
    }

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
