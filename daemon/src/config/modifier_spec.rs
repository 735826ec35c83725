//! What a copy's bytes went through, in order: parsed from `[compression]` and `[gpg]`,
//! recorded in every copy's metadata, and read back by restore (which builds the reverse
//! chain from the record, never from today's config). Building the modifiers is
//! [`crate::modifier`]'s business.

use serde::{Deserialize, Serialize};

/// A modifier as recorded in a copy's metadata, with what is needed to reverse it.
/// Never key material: gpg records whom the copy was encrypted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum ModifierSpec {
    Zstd {
        level: i32,
    },
    /// In-process (flate2); decodes pigz output too.
    Gzip {
        level: u32,
    },
    Pigz {
        level: u32,
    },
    Bzip2 {
        level: u32,
    },
    Lbzip2 {
        level: u32,
    },
    /// None in both fields for a copy without metadata (found by its `.gpg` suffix).
    Gpg {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipient: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
}

impl ModifierSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ModifierSpec::Zstd { .. } => "zstd",
            ModifierSpec::Gzip { .. } => "gzip",
            ModifierSpec::Pigz { .. } => "pigz",
            ModifierSpec::Bzip2 { .. } => "bzip2",
            ModifierSpec::Lbzip2 { .. } => "lbzip2",
            ModifierSpec::Gpg { .. } => "gpg",
        }
    }

    /// The key suffix, as TwinDB wrote it (`.bz`, not `.bz2`).
    pub fn suffix(&self) -> &'static str {
        match self {
            ModifierSpec::Zstd { .. } => ".zst",
            ModifierSpec::Gzip { .. } | ModifierSpec::Pigz { .. } => ".gz",
            ModifierSpec::Bzip2 { .. } | ModifierSpec::Lbzip2 { .. } => ".bz",
            ModifierSpec::Gpg { .. } => ".gpg",
        }
    }

    /// The external program this modifier runs, if any.
    pub fn program(&self) -> Option<&'static str> {
        match self {
            ModifierSpec::Zstd { .. } | ModifierSpec::Gzip { .. } => None,
            ModifierSpec::Pigz { .. } => Some("pigz"),
            ModifierSpec::Bzip2 { .. } => Some("bzip2"),
            ModifierSpec::Lbzip2 { .. } => Some("lbzip2"),
            ModifierSpec::Gpg { .. } => Some("gpg"),
        }
    }

    /// The chain of a copy that has no metadata, from its key's suffixes
    /// (`.tar.gz.gpg` = gzip, then gpg). `.gz` decodes in-process whether gzip or pigz
    /// wrote it; `.bz` needs the bzip2 program.
    pub fn chain_from_key(key: &str) -> Vec<ModifierSpec> {
        let mut chain = Vec::new();
        let mut rest = key;
        loop {
            let (spec, r) = if let Some(r) = rest.strip_suffix(".gz") {
                (ModifierSpec::Gzip { level: 6 }, r)
            } else if let Some(r) = rest.strip_suffix(".zst") {
                (ModifierSpec::Zstd { level: 3 }, r)
            } else if let Some(r) = rest.strip_suffix(".bz") {
                (ModifierSpec::Bzip2 { level: 9 }, r)
            } else if let Some(r) = rest.strip_suffix(".gpg") {
                let spec = ModifierSpec::Gpg {
                    recipient: None,
                    fingerprint: None,
                };
                (spec, r)
            } else {
                break;
            };
            chain.push(spec);
            rest = r;
        }
        chain.reverse();
        chain
    }
}
