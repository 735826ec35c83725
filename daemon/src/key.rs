//! Copy keys, as TwinDB named them (design.md section 4), so both tools read each
//! other's trees: `{host}/{run_type}/files/{dir with '/' as '_'}-{ts}.tar{suffixes}`.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use twindb_proto::RunType;

use crate::modifier::ModifierSpec;

/// `%Y-%m-%d_%H_%M_%S`, in UTC for twindb (TwinDB used local time).
pub const TS_FORMAT: &str = "%Y-%m-%d_%H_%M_%S";

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

/// `/var/lib/app/` -> `_var_lib_app`.
pub fn dir_part(dir: &Path) -> String {
    let s = dir.to_string_lossy();
    let trimmed = s.trim_end_matches('/');
    trimmed.replace('/', "_")
}

pub fn suffixes(chain: &[ModifierSpec]) -> String {
    chain.iter().map(|m| m.suffix()).collect()
}

pub fn files_key(
    host: &str,
    run_type: RunType,
    dir: &Path,
    t: DateTime<Utc>,
    chain: &[ModifierSpec],
) -> String {
    format!(
        "{host}/{run_type}/files/{}-{}.tar{}",
        dir_part(dir),
        timestamp(t),
        suffixes(chain)
    )
}

pub fn mysql_key(
    host: &str,
    run_type: RunType,
    t: DateTime<Utc>,
    chain: &[ModifierSpec],
) -> String {
    format!(
        "{host}/{run_type}/mysql/mysql-{}.xbstream{}",
        timestamp(t),
        suffixes(chain)
    )
}

/// `{host}/binlog/{name}-{ts}{suffixes}`, `ts` the file's first event: a name alone
/// is reused after `RESET MASTER` or a failover, and a key must never name two files.
/// (Earlier twindb and TwinDB Backup wrote `{host}/binlog/{name}{suffixes}`; those
/// still read: restore goes by the recorded key.)
pub fn binlog_key(
    host: &str,
    name: &str,
    first_event: DateTime<Utc>,
    chain: &[ModifierSpec],
) -> String {
    format!(
        "{host}/binlog/{name}-{}{}",
        timestamp(first_event),
        suffixes(chain)
    )
}

/// A segment the binlog streamer stored: the bytes of binlog file `name` of the server
/// `server_uuid` (begun at `first_event`) from offset `start` on. Four parts under
/// `binlog/`, so it is never taken for a closed-file copy (`{host}/binlog/{name}...`,
/// TwinDB's or twindb's); the file's first event tells a file from another of the same
/// name (after `RESET MASTER`), and the zero-padded offset sorts a file's segments.
pub fn binlog_segment_key(
    host: &str,
    server_uuid: &str,
    name: &str,
    first_event: DateTime<Utc>,
    start: u64,
    chain: &[ModifierSpec],
) -> String {
    format!(
        "{host}/binlog/stream/{server_uuid}/{name}-{}/{start:020}{}",
        timestamp(first_event),
        suffixes(chain)
    )
}

/// The time stamped in a key's file name, if any.
pub fn parse_timestamp(key: &str) -> Option<DateTime<Utc>> {
    let name = key.rsplit('/').next()?;
    // The stamp is the 19 characters after the last '-' that starts one.
    (0..name.len().saturating_sub(18)).rev().find_map(|i| {
        let candidate = name.get(i..i + 19)?;
        NaiveDateTime::parse_from_str(candidate, TS_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn files_key_matches_twindb_layout() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 3).unwrap();
        let k = files_key(
            "db1",
            RunType::Daily,
            Path::new("/etc/"),
            t,
            &[ModifierSpec::Zstd { level: 3 }],
        );
        assert_eq!(k, "db1/daily/files/_etc-2026-11-25_00_00_03.tar.zst");
        assert_eq!(parse_timestamp(&k), Some(t));
        let k = files_key(
            "db1",
            RunType::Hourly,
            Path::new("/tmp/twfx/appfiles"),
            t,
            &[],
        );
        assert_eq!(
            k,
            "db1/hourly/files/_tmp_twfx_appfiles-2026-11-25_00_00_03.tar"
        );
    }
}
