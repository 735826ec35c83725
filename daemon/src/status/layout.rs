//! Where one host's status lives on its destination, and how its small objects are
//! encoded (docs/status-format.md describes both).
//!
//! Every record is its own object, written once: a copy's manifest, a pending marker,
//! a tombstone for a deleted keep-local twin, the writer. The index
//! (`{host}/twindb-status.json`) only saves reading every manifest; it is rebuilt
//! from them when it is missing, damaged or behind. Recording a copy therefore costs
//! the same few requests however many copies the host has.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{CopyMeta, Pending, StatusError};

/// The folder of a host's records, beside its copies.
pub const RECORDS: &str = "twindb-status.d";
pub const MANIFEST_FORMAT: &str = "twindb-copy";
pub const MANIFEST_VERSION: u32 = 1;

/// The kinds of record objects, each in a folder of its own under [`RECORDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// One per listed copy: its [`CopyMeta`].
    Copy,
    /// One per object that may exist and is no copy (being stored, being deleted).
    Pending,
    /// The keep-local twin of a listed copy was deleted by `[retention_local]`.
    LocalGone,
}

impl Record {
    fn dir(self) -> &'static str {
        match self {
            Record::Copy => "copies",
            Record::Pending => "pending",
            Record::LocalGone => "local-gone",
        }
    }
}

/// The names of one host's status objects.
#[derive(Debug, Clone)]
pub struct Layout {
    host: String,
}

impl Layout {
    pub fn new(host: &str) -> Layout {
        Layout {
            host: host.to_string(),
        }
    }

    pub fn index(&self) -> String {
        format!("{}/twindb-status.json", self.host)
    }

    /// Version 1 kept its previous generation here; still read, never written.
    pub fn prev(&self) -> String {
        format!("{}/twindb-status.json.prev", self.host)
    }

    pub fn writer(&self) -> String {
        format!("{}/{RECORDS}/writer.json", self.host)
    }

    /// Everything under the records folder (for one listing).
    pub fn records_prefix(&self) -> String {
        format!("{}/{RECORDS}/", self.host)
    }

    /// The object of `kind` recording `key`: the key without its `{host}/`, under the
    /// kind's folder, with `.json`. Keys of other hosts have no record here.
    pub fn record(&self, kind: Record, key: &str) -> Result<String, StatusError> {
        let rest = key
            .strip_prefix(&self.host)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                StatusError::Corrupt(format!(
                    "{key:?} is not a key of host {:?}; its record cannot be kept",
                    self.host
                ))
            })?;
        Ok(format!(
            "{}/{RECORDS}/{}/{rest}.json",
            self.host,
            kind.dir()
        ))
    }

    /// The kind and copy key a listed record object stands for; `None` for the writer
    /// and for names twindb never writes.
    pub fn parse(&self, object: &str) -> Option<(Record, String)> {
        let rest = object.strip_prefix(&self.records_prefix())?;
        let (dir, name) = rest.split_once('/')?;
        let kind = [Record::Copy, Record::Pending, Record::LocalGone]
            .into_iter()
            .find(|k| k.dir() == dir)?;
        let key = name.strip_suffix(".json").filter(|k| !k.is_empty())?;
        Some((kind, format!("{}/{key}", self.host)))
    }
}

/// A copy's manifest: `{"format":"twindb-copy","version":1,"sha256":H,"copy":{...}}`,
/// H the sha256 of the exact bytes of `copy`.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    sha256: String,
    copy: Box<RawValue>,
}

pub fn encode_manifest(copy: &CopyMeta) -> Vec<u8> {
    let body = serde_json::to_string(copy).expect("a copy serializes");
    let doc = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        sha256: hex::encode(Sha256::digest(body.as_bytes())),
        copy: RawValue::from_string(body).expect("valid json"),
    };
    let mut out = serde_json::to_vec(&doc).expect("a manifest serializes");
    out.push(b'\n');
    out
}

/// The copy a manifest records, checked against its checksum and its object's name
/// (`key`): a manifest copied under another name must not list another copy.
pub fn decode_manifest(bytes: &[u8], key: &str) -> Result<CopyMeta, StatusError> {
    let doc: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| StatusError::Corrupt(format!("not a copy manifest: {e}")))?;
    if doc.format != MANIFEST_FORMAT {
        return Err(StatusError::Corrupt(format!(
            "unexpected manifest format {:?}",
            doc.format
        )));
    }
    if doc.version > MANIFEST_VERSION {
        return Err(StatusError::Newer(doc.version));
    }
    let got = hex::encode(Sha256::digest(doc.copy.get().as_bytes()));
    if got != doc.sha256 {
        return Err(StatusError::Corrupt(format!(
            "manifest checksum mismatch (stored {}, computed {got})",
            doc.sha256
        )));
    }
    let copy: CopyMeta = serde_json::from_str(doc.copy.get())
        .map_err(|e| StatusError::Corrupt(format!("bad copy entry: {e}")))?;
    if copy.key != key {
        return Err(StatusError::Corrupt(format!(
            "the manifest of {key} records {}",
            copy.key
        )));
    }
    Ok(copy)
}

/// A pending marker's body. Its name already says which key it is for, so a damaged
/// body loses only the keep-local twin's name and the reason.
pub fn encode_pending(p: &Pending) -> Vec<u8> {
    let mut out = serde_json::to_vec(p).expect("a pending entry serializes");
    out.push(b'\n');
    out
}

pub fn decode_pending(bytes: &[u8], key: &str) -> Pending {
    match serde_json::from_slice::<Pending>(bytes) {
        Ok(p) if p.key == key => p,
        _ => Pending {
            key: key.to_string(),
            local: None,
            since: DateTime::<Utc>::UNIX_EPOCH,
            reason: "unreadable marker".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_round_trip_and_other_hosts_have_none() {
        let l = Layout::new("db1");
        let name = l
            .record(Record::Copy, "db1/daily/files/_etc-x.tar.zst")
            .unwrap();
        assert_eq!(
            name,
            "db1/twindb-status.d/copies/daily/files/_etc-x.tar.zst.json"
        );
        assert_eq!(
            l.parse(&name),
            Some((Record::Copy, "db1/daily/files/_etc-x.tar.zst".into()))
        );
        assert_eq!(l.parse(&l.writer()), None);
        assert!(l.record(Record::Pending, "db2/daily/files/a.tar").is_err());
        assert!(l.record(Record::Pending, "db1").is_err());
        assert!(l.record(Record::Pending, "db10/daily/files/a.tar").is_err());
    }
}
