use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{drain_all, Modifier, ModifierSpec};

/// gzip in-process (flate2). Decoding accepts multi-member files, as pigz writes them.
pub struct Gzip {
    pub level: u32,
}

impl Modifier for Gzip {
    fn spec(&self) -> ModifierSpec {
        ModifierSpec::Gzip { level: self.level }
    }

    fn encode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let mut enc = GzEncoder::new(output, flate2::Compression::new(self.level));
        crate::pipeline::copy(input, &mut enc)?;
        enc.finish()?.flush()
    }

    fn decode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let mut dec = MultiGzDecoder::new(io::BufReader::with_capacity(256 * 1024, input));
        crate::pipeline::copy(&mut dec, output)?;
        drain_all(dec.get_mut())
    }
}
