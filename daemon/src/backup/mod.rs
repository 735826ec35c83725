//! Backup jobs: run a source through the modifiers into the destination and record
//! the copy in the status, only once it is committed.

mod binlog;
mod files;
mod mysql;

use std::io;

use futures::StreamExt;

use crate::destination::{Destination, DestinationError, ErrorKind, Local};
use crate::engine::JobCtx;
use crate::modifier::{GpgError, ModifierEnv, ModifierSpec};
use crate::pipeline::{self, hash_tap, pipe, ChunkReader, ChunkWriter, Digested, Stages};
use crate::source::{Source, SourceReport};

pub use self::binlog::backup_binlogs;
pub use self::files::backup_files;
pub use self::mysql::{backup_mysql, choose_parent};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Stage(#[from] pipeline::StageError),
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error(transparent)]
    Mysql(#[from] crate::mysql::MysqlError),
    #[error(transparent)]
    Gpg(#[from] GpgError),
    #[error("MySQL backups are not configured ([source] backup_mysql)")]
    MysqlNotConfigured,
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error("the incremental starts at LSN {from} but its parent ends at LSN {parent_to}; copy discarded")]
    LsnGap { from: u64, parent_to: u64 },
}

enum StageOut {
    Source(SourceReport),
    Done,
    Digest(Digested),
    Local(Digested),
}

/// Today's chain (compression, then gpg), with the gpg recipient's key checked first
/// so that a wrong or missing key fails before any work.
pub async fn backup_chain(
    engine: &crate::engine::Engine,
) -> Result<Vec<ModifierSpec>, BackupError> {
    let config = engine.config.clone();
    let chain = tokio::task::spawn_blocking(move || {
        crate::modifier::backup_chain(config.compression.spec.as_ref(), config.gpg.as_ref())
    })
    .await
    .map_err(|e| pipeline::StageError {
        stage: "gpg".into(),
        cause: io::Error::other(e),
    })??;
    Ok(chain)
}

/// The key of the keep_local copy: the local copy is not encrypted (as TwinDB kept it),
/// so it has no `.gpg` suffix.
pub fn local_key(key: &str) -> &str {
    key.strip_suffix(".gpg").unwrap_or(key)
}

/// What `store` committed.
#[derive(Debug)]
pub struct Stored {
    pub digest: Digested,
    pub report: SourceReport,
    /// The copy kept in `keep_local_path`, under the same key.
    pub local: Option<Digested>,
}

/// Streams `source` through `chain` into `dest` under `key`, and into `keep_local` too
/// when given (a tee of the same stream: the source is read once). Nothing is stored
/// unless every stage and every destination finished cleanly: when one of the two puts
/// fails, the other's committed object is deleted again.
pub async fn store(
    dest: &dyn Destination,
    keep_local: Option<&Local>,
    mut source: Box<dyn Source>,
    chain: &[ModifierSpec],
    env: &ModifierEnv,
    key: &str,
    ctx: &JobCtx,
) -> Result<Stored, BackupError> {
    let cancel = ctx.cancel.clone();
    let env = &env.for_job(&cancel);
    let mut stages: Stages<StageOut> = Stages::new();
    let limit = |upload| {
        crate::throttle::limit(
            ctx.throttle.clone(),
            upload,
            cancel.clone(),
            ctx.throttled.clone(),
        )
    };

    let (w, mut r) = pipe(&cancel);
    let mut w = w
        .with_counter(ctx.bytes_in.clone())
        .with_limit(limit(false));
    stages.spawn("source", move || {
        let report = source.write_to(&mut w)?;
        w.finish()?;
        Ok(StageOut::Source(report))
    });
    let (before, after) = crate::modifier::split_at_encryption(chain);
    r = encode_stages(&mut stages, before, r, env, &cancel);
    // The keep-local tee sits after compression and before encryption, as in TwinDB
    // (compress -> tee -> gpg -> destination): see docs/encryption.md for why.
    let local_stream = keep_local.map(|_| {
        let (w_remote, r_remote) = pipe(&cancel);
        let (w_local, r_local) = pipe(&cancel);
        let input = std::mem::replace(&mut r, r_remote);
        stages.spawn("keep-local", move || {
            tee(input, w_remote, w_local).map(StageOut::Local)
        });
        r_local.into_stream()
    });
    r = encode_stages(&mut stages, after, r, env, &cancel);
    let (w, last) = pipe(&cancel);
    let w = w
        .with_counter(ctx.bytes_out.clone())
        .with_limit(limit(true));
    stages.spawn("sha256", move || hash_tap(r, w, None).map(StageOut::Digest));

    crate::failpoint::point("store.before-put");
    let mut first = true;
    let remote_stream = last
        .into_stream()
        .inspect(move |_| {
            if std::mem::take(&mut first) {
                crate::failpoint::point("store.mid-put");
            }
        })
        .boxed();
    let puts = async {
        match (keep_local, local_stream) {
            (Some(local), Some(stream)) => {
                let (remote, local) = tokio::join!(
                    dest.put(key, remote_stream),
                    local.put(local_key(key), stream)
                );
                (remote, Some(local))
            }
            _ => (dest.put(key, remote_stream).await, None),
        }
    };
    // Stuck stages never end the stream: a put cut short here is dropped before it
    // commits, so nothing is stored or listed.
    let Some((put, local_put)) = pipeline::until_stopped(&cancel, puts).await else {
        return Err(pipeline::left_behind().into());
    };
    let joined =
        match pipeline::until_stopped(&cancel, tokio::task::spawn_blocking(move || stages.join()))
            .await
        {
            Some(Ok(joined)) => joined,
            Some(Err(e)) => Err(pipeline::StageError {
                stage: "pipeline".into(),
                cause: io::Error::other(e),
            }),
            // Whatever a put committed is deleted below.
            None => Err(pipeline::left_behind()),
        };

    let remote_committed = put.is_ok();
    let local_committed = matches!(local_put, Some(Ok(_)));
    let outcome = if cancel.is_cancelled() {
        Err(BackupError::Cancelled)
    } else {
        outcome(put, local_put, joined)
    };
    let outs = match outcome {
        Ok(outs) => outs,
        Err(failure) => {
            // Never keep half of a copy: remove whichever side committed.
            if remote_committed {
                if let Err(e) = dest.delete(key).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not remove the remote half of a failed copy");
                }
            }
            if let (Some(local), true) = (keep_local, local_committed) {
                if let Err(e) = local.delete(local_key(key)).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not remove the local half of a failed copy");
                }
            }
            return Err(failure);
        }
    };

    crate::failpoint::point("store.committed");
    let mut digest = None;
    let mut local = None;
    let mut report = SourceReport::default();
    for o in outs {
        match o {
            StageOut::Source(r) => report = r,
            StageOut::Digest(d) => digest = Some(d),
            StageOut::Local(d) => local = Some(d),
            StageOut::Done => {}
        }
    }
    Ok(Stored {
        digest: digest.expect("the sha256 stage always reports"),
        report,
        local,
    })
}

/// What went wrong, the most telling cause first: a destination's own failure (remote,
/// then local), then a stage's, then a put that only saw its input fail.
fn outcome(
    put: Result<u64, DestinationError>,
    local_put: Option<Result<u64, DestinationError>>,
    joined: Result<Vec<StageOut>, pipeline::StageError>,
) -> Result<Vec<StageOut>, BackupError> {
    let mut input_failure = None;
    for p in [Some(put), local_put].into_iter().flatten() {
        match p {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Input => {
                input_failure.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let outs = joined?;
    match input_failure {
        // Cannot happen when stages only finish their pipes on success, but never keep
        // a copy whose input a destination saw fail.
        Some(e) => Err(e.into()),
        None => Ok(outs),
    }
}

/// One stage per modifier of `specs`, each encoding what the previous one wrote; returns
/// the reading end of the last.
fn encode_stages(
    stages: &mut Stages<StageOut>,
    specs: &[ModifierSpec],
    mut r: ChunkReader,
    env: &ModifierEnv,
    cancel: &pipeline::Cancel,
) -> ChunkReader {
    for spec in specs {
        let m = crate::modifier::build(spec, env);
        let (mut w, next) = pipe(cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            m.encode(&mut input, &mut w)?;
            w.finish()?;
            Ok(StageOut::Done)
        });
        r = next;
    }
    r
}

/// Sends every chunk of `input` to both outputs; returns sha256 and size of the bytes.
/// The slower side sets the pace (bounded pipes), and a side that stops fails the tee,
/// and with it the whole copy.
fn tee(mut input: ChunkReader, mut a: ChunkWriter, mut b: ChunkWriter) -> io::Result<Digested> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = input.recv() {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        a.send(chunk.clone())?;
        b.send(chunk)?;
    }
    a.finish()?;
    b.finish()?;
    Ok(Digested {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// Records `key` as pending (with its keep-local twin) before anything is stored: a
/// copy that is never recorded is then known, swept, and never listed.
pub(crate) async fn begin_put(
    engine: &crate::engine::Engine,
    key: &str,
) -> Result<crate::status::Writing, BackupError> {
    let local = engine.keep_local.as_ref().map(|_| local_key(key));
    Ok(engine.status.begin_put(key, local).await?)
}

/// The status record of the keep_local copy `store` wrote, if it wrote one.
pub(crate) fn local_record(
    stored: &Stored,
    key: &str,
    chain: &[ModifierSpec],
) -> Option<crate::status::LocalCopy> {
    stored.local.as_ref().map(|d| crate::status::LocalCopy {
        key: local_key(key).to_string(),
        size: d.size,
        sha256: d.sha256.clone(),
        modifiers: crate::modifier::split_at_encryption(chain).0.to_vec(),
    })
}
