//! Modifiers transform a copy's bytes on the way to the destination (compression,
//! encryption) and revert the transformation on restore.
//!
//! Each copy records the [`ModifierSpec`]s applied to it, in order; restore builds the
//! reverse chain from that record, never from today's config. zstd and gzip run
//! in-process; pigz, bzip2, lbzip2 and gpg are external programs (`program.rs`).

mod gpg;
mod gzip;
pub mod program;
mod zstd;

use std::io::{self, Read, Write};

use crate::config::GpgConfig;
use crate::pipeline::Cancel;

pub use self::gpg::{resolve as resolve_gpg, Gpg, GpgError};
pub use self::gzip::Gzip;
pub use self::program::{Compressor, Program};
pub use self::zstd::Zstd;
pub use crate::config::ModifierSpec;

/// One stream transformation. `encode` and `decode` each run on their own thread
/// (and may start more, for an external program's pipes).
pub trait Modifier: Send + Sync {
    /// What goes into the copy's metadata.
    fn spec(&self) -> ModifierSpec;
    /// Copies `input` to `output`, transformed, until `input` ends.
    fn encode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()>;
    /// The inverse of `encode`. Reads `input` to its end, so that a checksum
    /// computed upstream sees every stored byte.
    fn decode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()>;
}

/// What building a modifier needs besides its spec: today's config, and the job's
/// cancel, which stops a modifier's program (see [`crate::process`]).
#[derive(Debug, Clone)]
pub struct ModifierEnv {
    /// Worker threads for zstd, pigz and lbzip2.
    pub threads: u32,
    pub gpg: Option<GpgConfig>,
    pub cancel: Cancel,
}

impl Default for ModifierEnv {
    fn default() -> Self {
        ModifierEnv {
            threads: 1,
            gpg: None,
            cancel: Cancel::default(),
        }
    }
}

impl ModifierEnv {
    /// `threads` from `[compression] threads`, `gpg` the `[gpg]` section.
    pub fn new(threads: u32, gpg: Option<GpgConfig>) -> ModifierEnv {
        ModifierEnv {
            threads,
            gpg,
            cancel: Cancel::default(),
        }
    }

    /// This env for a job: its programs stop when `cancel` is set.
    pub fn for_job(&self, cancel: &Cancel) -> ModifierEnv {
        ModifierEnv {
            cancel: cancel.clone(),
            ..self.clone()
        }
    }
}

/// Builds the modifier a spec names.
pub fn build(spec: &ModifierSpec, env: &ModifierEnv) -> Box<dyn Modifier> {
    let threads = env.threads.max(1);
    let program = |compressor, level| -> Box<dyn Modifier> {
        Box::new(Program {
            compressor,
            level,
            threads,
            cancel: env.cancel.clone(),
        })
    };
    match spec {
        ModifierSpec::Zstd { level } => Box::new(Zstd {
            level: *level,
            threads,
        }),
        ModifierSpec::Gzip { level } => Box::new(Gzip { level: *level }),
        ModifierSpec::Pigz { level } => program(Compressor::Pigz, *level),
        ModifierSpec::Bzip2 { level } => program(Compressor::Bzip2, *level),
        ModifierSpec::Lbzip2 { level } => program(Compressor::Lbzip2, *level),
        ModifierSpec::Gpg {
            recipient,
            fingerprint,
        } => Box::new(Gpg {
            recipient: recipient.clone(),
            fingerprint: fingerprint.clone(),
            config: env.gpg.clone(),
            cancel: env.cancel.clone(),
        }),
    }
}

/// The chain a backup applies with today's config (`[compression]`, then `[gpg]`).
/// Checks the gpg recipient's key (runs `gpg --list-keys`: call off the async runtime).
pub fn backup_chain(
    compression: Option<&ModifierSpec>,
    gpg: Option<&GpgConfig>,
) -> Result<Vec<ModifierSpec>, GpgError> {
    let mut chain: Vec<ModifierSpec> = compression.into_iter().cloned().collect();
    if let Some(gpg) = gpg {
        chain.push(gpg::resolve(gpg)?);
    }
    Ok(chain)
}

/// Splits a backup chain where encryption starts. A local copy (keep_local_path) is
/// tee'd between the two parts: compressed but not encrypted, as TwinDB did (see
/// docs/encryption.md). It records the first part as its chain, and its key has the
/// first part's suffixes only.
pub fn split_at_encryption(chain: &[ModifierSpec]) -> (&[ModifierSpec], &[ModifierSpec]) {
    let at = chain
        .iter()
        .position(|m| matches!(m, ModifierSpec::Gpg { .. }))
        .unwrap_or(chain.len());
    chain.split_at(at)
}

/// Reads whatever is left of `input`, so that trailing bytes still pass the hash tap.
pub(crate) fn drain_all(input: &mut dyn Read) -> io::Result<()> {
    io::copy(input, &mut io::sink()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(spec: ModifierSpec, data: &[u8]) {
        let m = build(
            &spec,
            &ModifierEnv {
                threads: 2,
                ..Default::default()
            },
        );
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
            round_trip(spec.clone(), &data);
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
        let gpg = ModifierSpec::Gpg {
            recipient: None,
            fingerprint: None,
        };
        assert_eq!(
            ModifierSpec::chain_from_key("h/monthly/files/_etc-2026.tar.gz.gpg"),
            vec![ModifierSpec::Gzip { level: 6 }, gpg.clone()]
        );
        assert_eq!(
            ModifierSpec::chain_from_key("h/weekly/files/_etc-2026.tar.bz"),
            vec![ModifierSpec::Bzip2 { level: 9 }]
        );
        assert_eq!(
            ModifierSpec::chain_from_key("h/hourly/mysql/mysql-2026.xbstream.zst.gpg"),
            vec![ModifierSpec::Zstd { level: 3 }, gpg]
        );
        // Only trailing suffixes count.
        assert!(ModifierSpec::chain_from_key("h/binlog/mysql-bin.000001").is_empty());
    }

    #[test]
    fn local_copies_split_before_encryption() {
        let gpg = ModifierSpec::Gpg {
            recipient: Some("t@x".into()),
            fingerprint: None,
        };
        let chain = [ModifierSpec::Pigz { level: 6 }, gpg.clone()];
        let (local, rest) = split_at_encryption(&chain);
        assert_eq!(local, &[ModifierSpec::Pigz { level: 6 }]);
        assert_eq!(rest, &[gpg]);
        let plain = [ModifierSpec::Zstd { level: 3 }];
        assert_eq!(split_at_encryption(&plain), (&plain[..], &[][..]));
    }

    #[test]
    fn spec_serializes_with_its_name() {
        let json = serde_json::to_string(&ModifierSpec::Zstd { level: 3 }).unwrap();
        assert_eq!(json, r#"{"name":"zstd","level":3}"#);
        let gpg = ModifierSpec::Gpg {
            recipient: Some("t@x".into()),
            fingerprint: Some("87A0".into()),
        };
        let json = serde_json::to_string(&gpg).unwrap();
        assert_eq!(
            json,
            r#"{"name":"gpg","recipient":"t@x","fingerprint":"87A0"}"#
        );
        assert_eq!(serde_json::from_str::<ModifierSpec>(&json).unwrap(), gpg);
        let bare: ModifierSpec = serde_json::from_str(r#"{"name":"gpg"}"#).unwrap();
        assert_eq!(bare.suffix(), ".gpg");
        let json = serde_json::to_string(&ModifierSpec::Lbzip2 { level: 9 }).unwrap();
        assert_eq!(json, r#"{"name":"lbzip2","level":9}"#);
    }
}
