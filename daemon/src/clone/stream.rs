//! The copy itself: the backup tool's stream on the source relayed into the extractor
//! on the destination, both exit statuses checked.

use super::host::Host;
use super::CloneError;
use crate::engine::JobCtx;
use crate::ssh::{quote as sh, Exec, Output};

/// The commands on the source and on the destination. With compression, each side's
/// two programs are joined by a pipe whose first program's exit status is kept in a
/// temp file (POSIX sh has no pipefail), so a failure of either is reported.
pub(super) fn stream_commands(
    backup: &str,
    stream: &str,
    defaults: &str,
    port: u16,
    datadir: &str,
    compress: bool,
) -> (String, String) {
    let backup = format!(
        "{backup} --defaults-file={} --host=127.0.0.1 --port={port} --backup --stream=xbstream --target-dir=\"$d\"",
        sh(defaults)
    );
    let extract = format!("{stream} -x -C {datadir}");
    if !compress {
        return (
            format!(
                "d=$(mktemp -d /tmp/twindb-clone.XXXXXXXX) || exit 1; {backup}; rc=$?; rm -rf \"$d\"; exit $rc"
            ),
            format!("mkdir -p {datadir} && {extract}"),
        );
    }
    (
        format!(
            "d=$(mktemp -d /tmp/twindb-clone.XXXXXXXX) && r=$(mktemp /tmp/twindb-clone.XXXXXXXX) || exit 1; \
             {{ {backup}; echo $? > \"$r\"; }} | zstd -q -1 -T0 -c; z=$?; rc=$(cat \"$r\"); rm -rf \"$d\" \"$r\"; \
             [ \"$rc\" = 0 ] || exit \"${{rc:-1}}\"; exit $z"
        ),
        format!(
            "mkdir -p {datadir} && r=$(mktemp /tmp/twindb-clone.XXXXXXXX) || exit 1; \
             {{ zstd -q -d -c; echo $? > \"$r\"; }} | {extract}; x=$?; z=$(cat \"$r\"); rm -f \"$r\"; \
             [ \"$z\" = 0 ] || {{ echo \"zstd -d failed ($z)\" >&2; exit \"${{z:-1}}\"; }}; exit $x"
        ),
    )
}

/// Relays `from_cmd`'s stdout on `from` into `to_cmd`'s stdin on `to`; both must exit 0.
pub(super) async fn relay(
    from: &Host,
    from_cmd: &str,
    to: &Host,
    to_cmd: &str,
    ctx: &JobCtx,
) -> Result<u64, CloneError> {
    let what_to = "extracting the stream into the datadir";
    let what_from = "streaming a backup";
    let mut sink = to
        .ssh
        .exec(to_cmd)
        .await
        .map_err(|e| to.ssh_failed(what_to, e))?;
    let mut source = from
        .ssh
        .exec(from_cmd)
        .await
        .map_err(|e| from.ssh_failed(what_from, e))?;
    let mut from_out = Output::default();
    let mut bytes = 0u64;
    let mut write_failed = None;
    loop {
        let msg = tokio::select! {
            m = source.wait() => m,
            () = ctx.cancel.cancelled() => return Err(hang_up(&source, &sink).await),
        };
        let Some(msg) = msg else { break };
        let Some(data) = from_out.take(msg) else {
            continue;
        };
        if write_failed.is_some() {
            continue;
        }
        let n = data.len() as u64;
        bytes += n;
        ctx.bytes_in
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = sink.data_bytes(data).await {
            // The extractor stopped: its stderr says why; stop the source.
            write_failed = Some(e.to_string());
            let _ = source.close().await;
        } else {
            ctx.bytes_out
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _ = sink.eof().await;
    let mut to_out = Output::default();
    loop {
        let msg = tokio::select! {
            m = sink.wait() => m,
            () = ctx.cancel.cancelled() => return Err(hang_up(&source, &sink).await),
        };
        let Some(msg) = msg else { break };
        to_out.take(msg);
    }
    let status = |out: &Output| out.status.map_or("unknown".into(), |s| s.to_string());
    if to_out.status != Some(0) {
        return Err(to.fail(
            what_to,
            format!(
                "exit status {}{}\n{}",
                status(&to_out),
                write_failed.map_or(String::new(), |w| format!(" ({w})")),
                to_out.stderr.text()
            ),
        ));
    }
    if from_out.status != Some(0) {
        return Err(from.fail(
            what_from,
            format!(
                "exit status {}\n{}",
                status(&from_out),
                from_out.stderr.text()
            ),
        ));
    }
    Ok(bytes)
}

/// Closes both channels of a cancelled relay, so that both commands get a hangup.
async fn hang_up(source: &Exec, sink: &Exec) -> CloneError {
    let _ = source.close().await;
    let _ = sink.close().await;
    CloneError::Cancelled
}

/// After a failure: the next attempt needs an empty datadir again. Not emptied, it
/// is a warning (the job has failed already, for its own reason).
pub(super) async fn empty_datadir(dst: &Host, datadir: &str, ctx: &JobCtx) {
    if let Err(e) = dst
        .run(
            "emptying the datadir after the failure",
            &format!("[ ! -d {datadir} ] || find {datadir} -mindepth 1 -delete"),
            b"",
        )
        .await
    {
        ctx.warn(e.to_string());
    }
}
