//! Replays backed-up binlogs into the throwaway server: each one streams from the
//! destination through its reverse chain into `mysqlbinlog -`, whose output goes
//! straight into one `mysql` client.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::mysql::ToolError;

use super::target::Target;
use super::PitrError;
use crate::engine::{Engine, JobCtx};
use crate::mysql::{find_program, Tool, Vendor};
use crate::restore::{stream_copy, RestoreError};
use crate::status::{CopyMeta, Status};

pub(super) struct ReplayTools {
    binlog: String,
    client: String,
}

impl ReplayTools {
    pub(super) fn find(vendor: Vendor) -> Result<ReplayTools, PitrError> {
        let pick = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| find_program(n).map(|p| p.display().to_string()))
        };
        let (binlog, client) = match vendor {
            Vendor::Mariadb => (
                pick(&["mariadb-binlog", "mysqlbinlog"]),
                pick(&["mariadb", "mysql"]),
            ),
            Vendor::Percona | Vendor::Oracle => (pick(&["mysqlbinlog"]), pick(&["mysql"])),
        };
        match (binlog, client) {
            (Some(binlog), Some(client)) => Ok(ReplayTools { binlog, client }),
            _ => Err(PitrError::NoReplayTools),
        }
    }
}

/// Replays `binlogs` into the server on `socket`; returns the last binlog replayed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replay(
    engine: &Engine,
    tools: &ReplayTools,
    socket: &Path,
    status: &Status,
    binlogs: &[CopyMeta],
    start_pos: u64,
    target: &Target,
    vendor: Vendor,
    gap: &str,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let mut cmd = Command::new(&tools.client);
    cmd.arg("--no-defaults")
        .arg("--binary-mode")
        .arg(format!("--socket={}", socket.display()))
        .args(["--user=root", "--max-allowed-packet=1G"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut client = Tool::spawn(cmd, &ctx.cancel)?;
    let mut stdin = client.take_stdin();
    // The server skips grant checks; loading the grant tables lets replayed
    // GRANT/CREATE USER statements run (this session keeps its privileges).
    stdin
        .write_all(b"FLUSH PRIVILEGES;\n")
        .map_err(|e| RestoreError::Io(tools.client.clone(), e))?;
    let input: OwnedFd = stdin.into();
    let mut last = String::new();
    let mut failure = None;
    let mut reached = !matches!(target, Target::Gtid(..));
    for (i, copy) in binlogs.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            failure = Some(RestoreError::Cancelled);
            break;
        }
        let name = copy
            .binlog
            .as_ref()
            .map(|b| b.name.clone())
            .unwrap_or_default();
        ctx.set_phase(format!("replaying binlog {name}"));
        let mut cmd = Command::new(&tools.binlog);
        // The host's my.cnf could change the output (base64-output=decode-rows...).
        cmd.arg("--no-defaults");
        if i == 0 {
            cmd.arg(format!("--start-position={start_pos}"));
        }
        match target {
            Target::Time(s, _) => {
                cmd.arg(format!("--stop-datetime={s}"));
            }
            Target::Gtid(g, _) => {
                cmd.arg(format!("--stop-position={g}"));
            }
            Target::Position(file, pos) if *file == name => {
                cmd.arg(format!("--stop-position={pos}"));
            }
            Target::Position(..) | Target::Latest => {}
        }
        if vendor != Vendor::Mariadb {
            // The temporary server runs without GTID mode: SET GTID_NEXT would fail.
            cmd.arg("--skip-gtids");
        }
        let out = match input.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                failure = Some(RestoreError::Io(tools.client.clone(), e));
                break;
            }
        };
        cmd.arg("-").stdin(Stdio::piped()).stdout(Stdio::from(out));
        let streamed = replay_one(engine, status, copy, cmd, ctx).await;
        let text = match streamed {
            Ok(text) => text,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        last = name;
        if !reached && !text.contains("Did not reach stop position") {
            reached = true;
            break;
        }
    }
    drop(input);
    // The client's failure (an SQL error) is the cause of a binlog tool's broken pipe.
    let client_done = tokio::task::spawn_blocking(move || client.wait())
        .await
        .map_err(|e| RestoreError::Internal(e.to_string()))?;
    match (client_done, failure) {
        (Err(cause), _) => Err(PitrError::Replay {
            binlog: if last.is_empty() {
                "the first binlog".into()
            } else {
                last
            },
            cause,
        }
        .into()),
        (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) if !reached => Err(PitrError::NotReached {
            target: target.to_string(),
            first: binlogs
                .first()
                .and_then(|b| b.binlog.as_ref())
                .map(|b| b.name.clone())
                .unwrap_or_default(),
            last,
            gap: gap.to_string(),
        }
        .into()),
        (Ok(()), None) => Ok(last),
    }
}

/// Streams one binlog file (a copy, or a streamed file's segments in order) into one
/// `mysqlbinlog -`; returns what it printed on stderr.
async fn replay_one(
    engine: &Engine,
    status: &Status,
    copy: &CopyMeta,
    cmd: Command,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let binlog = cmd.get_program().to_string_lossy().into_owned();
    let mut tool =
        Tool::spawn(cmd, &ctx.cancel).map_err(|e| RestoreError::Io(binlog.clone(), e.into()))?;
    let stdin = Arc::new(Mutex::new(Some(tool.take_stdin())));
    for part in super::streamed::parts(status, copy) {
        let stdin = stdin.clone();
        let streamed = stream_copy(engine, &part, ctx, move |bytes| {
            let mut guard = stdin.lock().expect("stdin lock");
            let Some(w) = guard.as_mut() else {
                return Ok(());
            };
            match io::copy(bytes, w).and_then(|_| w.flush()) {
                Ok(_) => Ok(()),
                // mysqlbinlog stops reading at the stop point; the rest is drained
                // (and checksummed) by stream_copy.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    *guard = None;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .await;
        if let Err(e) = streamed {
            tool.kill();
            return Err(e);
        }
    }
    drop(stdin.lock().expect("stdin lock").take());
    let text = tokio::task::spawn_blocking(move || tool.wait_with_tail())
        .await
        .map_err(|e| RestoreError::Internal(e.to_string()))?
        .map_err(|e: ToolError| RestoreError::Io(binlog.clone(), e.into()))?;
    if let Some(line) = text.lines().find(|l| l.starts_with("ERROR")) {
        return Err(RestoreError::Io(
            binlog,
            io::Error::other(format!("mysqlbinlog: {line}")),
        ));
    }
    Ok(text)
}
