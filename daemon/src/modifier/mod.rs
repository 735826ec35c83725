//! Modifiers transform a copy's bytes on the way to the destination (compression,
//! later encryption) and revert the transformation on restore.
//!
//! Each copy records the [`ModifierSpec`]s applied to it, in order; restore builds the
//! reverse chain from that record, never from today's config.

mod gzip;
mod zstd;

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

pub use self::gzip::Gzip;
pub use self::zstd::Zstd;

/// One stream transformation. `encode` and `decode` each run on their own thread.
pub trait Modifier: Send + Sync {
    /// What goes into the copy's metadata.
    fn spec(&self) -> ModifierSpec;
    /// Copies `input` to `output`, transformed, until `input` ends.
    fn encode(&self, input: &mut dyn Read, output: &mut dyn Write) -> io::Result<()>;
    /// The inverse of `encode`. Reads `input` to its end, so that a checksum
    /// computed upstream sees every stored byte.
    fn decode(&self, input: &mut dyn Read, output: &mut dyn Write) -> io::Result<()>;
}

/// A modifier as recorded in a copy's metadata, with what is needed to reverse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum ModifierSpec {
    Zstd { level: i32 },
    Gzip { level: u32 },
}

impl ModifierSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ModifierSpec::Zstd { .. } => "zstd",
            ModifierSpec::Gzip { .. } => "gzip",
        }
    }

    /// The key suffix, as TwinDB wrote it.
    pub fn suffix(&self) -> &'static str {
        match self {
            ModifierSpec::Zstd { .. } => ".zst",
            ModifierSpec::Gzip { .. } => ".gz",
        }
    }

    /// Builds the modifier; `threads` only matters for compression.
    pub fn build(&self, threads: u32) -> Box<dyn Modifier> {
        match *self {
            ModifierSpec::Zstd { level } => Box::new(Zstd { level, threads }),
            ModifierSpec::Gzip { level } => Box::new(Gzip { level }),
        }
    }

    /// The chain of a copy that has no metadata, from its key's suffixes.
    pub fn chain_from_key(key: &str) -> Vec<ModifierSpec> {
        let mut chain = Vec::new();
        let mut rest = key;
        loop {
            if let Some(r) = rest.strip_suffix(".gz") {
                chain.push(ModifierSpec::Gzip { level: 6 });
                rest = r;
            } else if let Some(r) = rest.strip_suffix(".zst") {
                chain.push(ModifierSpec::Zstd { level: 3 });
                rest = r;
            } else {
                break;
            }
        }
        chain.reverse();
        chain
    }
}

/// Reads whatever is left of `input`, so that trailing bytes still pass the hash tap.
pub(crate) fn drain_all(input: &mut dyn Read) -> io::Result<()> {
    io::copy(input, &mut io::sink()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(spec: ModifierSpec, data: &[u8]) {
        let m = spec.build(2);
        let mut encoded = Vec::new();
        m.encode(&mut &data[..], &mut encoded).unwrap();
        let mut decoded = Vec::new();
        m.decode(&mut &encoded[..], &mut decoded).unwrap();
        assert_eq!(decoded, data, "{spec:?}");
    }

    #[test]
    fn every_modifier_round_trips() {
        let mut data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        data.extend_from_slice(b"tail");
        for spec in [
            ModifierSpec::Zstd { level: 3 },
            ModifierSpec::Gzip { level: 6 },
        ] {
            round_trip(spec, &data);
            round_trip(spec, b"");
        }
    }

    #[test]
    fn chain_from_key_reads_suffixes_in_order() {
        assert_eq!(
            ModifierSpec::chain_from_key("h/daily/files/_etc-2026.tar.gz"),
            vec![ModifierSpec::Gzip { level: 6 }]
        );
        assert!(ModifierSpec::chain_from_key("h/daily/files/_etc-2026.tar").is_empty());
    }

    #[test]
    fn spec_serializes_with_its_name() {
        let json = serde_json::to_string(&ModifierSpec::Zstd { level: 3 }).unwrap();
        assert_eq!(json, r#"{"name":"zstd","level":3}"#);
    }
}
