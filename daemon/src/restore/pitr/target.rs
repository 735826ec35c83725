//! What a point-in-time target means: a local time, a MariaDB GTID list or a binlog
//! position, and whether a copy lies before it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use twindb_proto::PitrTarget;

use super::PitrError;
use crate::mysql::binlog_sequence;
use crate::status::CopyMeta;

/// The target, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// The text as mysqlbinlog gets it, and the instant it means here.
    Time(String, DateTime<Utc>),
    Gtid(String, Gtids),
    Position(String, u64),
    /// `--until latest`: every backed-up event after the copy (streamed ones too).
    Latest,
}

/// A MariaDB GTID list: domain -> (server, sequence number).
pub(super) type Gtids = BTreeMap<u32, u64>;

pub(super) fn parse_gtids(s: &str) -> Option<Gtids> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let (Some(d), Some(_server), Some(n), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        out.insert(d.parse().ok()?, n.parse().ok()?);
    }
    (!out.is_empty()).then_some(out)
}

impl Target {
    pub(super) fn parse(t: &PitrTarget) -> Result<Target, PitrError> {
        match t {
            PitrTarget::Time(s) if s.trim().eq_ignore_ascii_case("latest") => Ok(Target::Latest),
            PitrTarget::Time(s) => {
                let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").map_err(
                    |cause| PitrError::BadTime {
                        text: s.clone(),
                        cause,
                    },
                )?;
                let at = Local
                    .from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(|| PitrError::NoSuchLocalTime(s.clone()))?;
                Ok(Target::Time(
                    naive.format("%Y-%m-%d %H:%M:%S").to_string(),
                    at.with_timezone(&Utc),
                ))
            }
            PitrTarget::Gtid(g) => {
                let set = parse_gtids(g).ok_or_else(|| PitrError::BadGtid(g.clone()))?;
                Ok(Target::Gtid(g.trim().to_string(), set))
            }
            PitrTarget::Position { file, position } => {
                if binlog_sequence(file).is_none() {
                    return Err(PitrError::BadPosition(file.clone()));
                }
                Ok(Target::Position(file.clone(), *position))
            }
        }
    }

    /// Whether the target lies after `copy`, so that `copy` can be rolled forward to it.
    pub(super) fn follows(&self, copy: &CopyMeta) -> bool {
        let Some(m) = &copy.mysql else { return false };
        // A copy taken while binary logging was off cannot be rolled forward.
        if m.binlog_file.is_none() || m.binlog_position.is_none() {
            return false;
        }
        match self {
            Target::Time(_, at) => copy.finished < *at,
            Target::Latest => true,
            Target::Gtid(_, want) => m.gtid.as_deref().and_then(parse_gtids).is_some_and(|have| {
                have.iter()
                    .all(|(d, n)| want.get(d).is_some_and(|w| n <= w))
            }),
            Target::Position(file, pos) => match (m.binlog_file.as_deref(), m.binlog_position) {
                (Some(f), Some(p)) => (binlog_sequence(f), p) <= (binlog_sequence(file), *pos),
                _ => false,
            },
        }
    }
}

/// As the operator wrote it: `2026-11-25 10:00:00`, `GTID 0-1-1234`, `mysql-bin.000012:4`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Time(s, _) => f.write_str(s),
            Target::Latest => f.write_str("the latest backed-up event"),
            Target::Gtid(g, _) => write!(f, "GTID {g}"),
            Target::Position(file, p) => write!(f, "{file}:{p}"),
        }
    }
}
