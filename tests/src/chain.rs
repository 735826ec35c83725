//! Runs bytes through a modifier chain the way backup and restore do: one thread per
//! stage, joined by twindb's bounded pipes. For tests and the benchmark, which need
//! the chain without a daemon around it.

use std::io::{self, Read, Write};

use twindb::modifier::{ModifierEnv, ModifierSpec};
use twindb::pipeline::{pipe, Cancel, Stages};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Encode,
    Decode,
}

/// Streams `input` through `chain` (applied in order to encode, reversed to decode)
/// into `output`, which is returned. Errors print their whole cause with `{:#}`.
pub fn run<R, W>(
    chain: &[ModifierSpec],
    env: &ModifierEnv,
    way: Way,
    mut input: R,
    mut output: W,
) -> anyhow::Result<W>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let cancel = Cancel::default();
    let mut stages: Stages<Option<W>> = Stages::new();
    let (mut w, mut r) = pipe(&cancel);
    stages.spawn("source", move || {
        io::copy(&mut input, &mut w)?;
        w.finish()?;
        Ok(None)
    });
    let specs: Vec<&ModifierSpec> = match way {
        Way::Encode => chain.iter().collect(),
        Way::Decode => chain.iter().rev().collect(),
    };
    for spec in specs {
        let m = twindb::modifier::build(spec, env);
        let (mut w, next) = pipe(&cancel);
        let mut input = r;
        stages.spawn(spec.name(), move || {
            match way {
                Way::Encode => m.encode(&mut input, &mut w)?,
                Way::Decode => m.decode(&mut input, &mut w)?,
            }
            w.finish()?;
            Ok(None)
        });
        r = next;
    }
    stages.spawn("sink", move || {
        io::copy(&mut r, &mut output)?;
        output.flush()?;
        Ok(Some(output))
    });
    let outs = stages.join()?;
    Ok(outs
        .into_iter()
        .flatten()
        .next()
        .expect("the sink returns the output"))
}

/// `run` on bytes in memory.
pub fn run_bytes(
    chain: &[ModifierSpec],
    env: &ModifierEnv,
    way: Way,
    data: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    run(chain, env, way, io::Cursor::new(data), Vec::new())
}
