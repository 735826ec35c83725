//! Backup jobs: run a source through the modifiers into the destination and record
//! the copy in the status, only once it is committed.

mod files;

use std::io;

use crate::destination::{Destination, ErrorKind};
use crate::engine::JobCtx;
use crate::modifier::{GpgError, ModifierEnv, ModifierSpec};
use crate::pipeline::{self, hash_tap, pipe, Digested, Stages};
use crate::source::{Source, SourceReport};

pub use self::files::backup_files;

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
    Gpg(#[from] GpgError),
}

enum StageOut {
    Source(SourceReport),
    Done,
    Digest(Digested),
}

/// Today's chain (compression, then gpg), with the gpg recipient's key checked first
/// so that a wrong or missing key fails before any work.
pub async fn backup_chain(
    engine: &crate::engine::Engine,
) -> Result<Vec<ModifierSpec>, BackupError> {
    let config = engine.config.clone();
    let chain = tokio::task::spawn_blocking(move || crate::modifier::backup_chain(&config))
        .await
        .map_err(|e| pipeline::StageError {
            stage: "gpg".into(),
            source: io::Error::other(e),
        })??;
    Ok(chain)
}

/// What `store` committed.
#[derive(Debug)]
pub struct Stored {
    pub digest: Digested,
    pub report: SourceReport,
}

/// Streams `source` through `chain` into `dest` under `key`. Nothing is stored unless
/// every stage finished cleanly.
pub async fn store(
    dest: &dyn Destination,
    mut source: Box<dyn Source>,
    chain: &[ModifierSpec],
    env: &ModifierEnv,
    key: &str,
    ctx: &JobCtx,
) -> Result<Stored, BackupError> {
    let cancel = ctx.cancel.clone();
    let mut stages: Stages<StageOut> = Stages::new();

    let (w, mut r) = pipe(&cancel);
    let mut w = w.with_counter(ctx.bytes_in.clone());
    stages.spawn("source", move || {
        let report = source.write_to(&mut w)?;
        w.finish()?;
        Ok(StageOut::Source(report))
    });
    for spec in chain {
        let m = spec.build(env);
        let (mut w, next) = pipe(&cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            m.encode(&mut input, &mut w)?;
            w.finish()?;
            Ok(StageOut::Done)
        });
        r = next;
    }
    let (w, last) = pipe(&cancel);
    let w = w.with_counter(ctx.bytes_out.clone());
    stages.spawn("sha256", move || hash_tap(r, w, None).map(StageOut::Digest));

    let put = dest.put(key, last.into_stream()).await;
    let joined = tokio::task::spawn_blocking(move || stages.join())
        .await
        .map_err(|e| pipeline::StageError {
            stage: "pipeline".into(),
            source: io::Error::other(e),
        })?;

    if cancel.is_cancelled() {
        if put.is_ok() {
            let _ = dest.delete(key).await;
        }
        return Err(BackupError::Cancelled);
    }
    match (put, joined) {
        (Ok(_), Ok(outs)) => {
            let mut digest = None;
            let mut report = SourceReport::default();
            for o in outs {
                match o {
                    StageOut::Source(r) => report = r,
                    StageOut::Digest(d) => digest = Some(d),
                    StageOut::Done => {}
                }
            }
            Ok(Stored {
                digest: digest.expect("the sha256 stage always reports"),
                report,
            })
        }
        (Ok(_), Err(stage)) => {
            // Cannot happen when stages only finish their pipe on success, but never
            // keep a copy a stage disowned.
            let _ = dest.delete(key).await;
            Err(stage.into())
        }
        (Err(e), Err(stage)) if e.kind == ErrorKind::Input => Err(stage.into()),
        (Err(e), _) => Err(e.into()),
    }
}
