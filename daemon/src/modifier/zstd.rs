use std::io::{self, Read, Write};

use super::{drain_all, Modifier, ModifierSpec};

/// zstd in-process, multi-threaded (libzstd's own workers).
pub struct Zstd {
    pub level: i32,
    pub threads: u32,
}

impl Modifier for Zstd {
    fn spec(&self) -> ModifierSpec {
        ModifierSpec::Zstd { level: self.level }
    }

    fn encode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let mut enc = ::zstd::stream::Encoder::new(output, self.level)?;
        if self.threads > 1 {
            enc.multithread(self.threads)?;
        }
        crate::pipeline::copy(input, &mut enc)?;
        enc.finish()?.flush()
    }

    fn decode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        // Reads every frame until end of input (pzstd and zstd -T write several).
        let mut dec = ::zstd::stream::Decoder::new(input)?;
        crate::pipeline::copy(&mut dec, output)?;
        drain_all(dec.get_mut())
    }
}
