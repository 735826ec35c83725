//! Raw binlog events as the server sends them (the bytes of the file): the 19-byte
//! header, where an event sits in its file, the next file a ROTATE names, and the
//! MariaDB GTID state.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

pub const MAGIC: &[u8; 4] = b"\xfebin";
pub const HEADER_LEN: usize = 19;

pub const STOP_EVENT: u8 = 3;
pub const ROTATE_EVENT: u8 = 4;
pub const FORMAT_DESCRIPTION_EVENT: u8 = 15;
pub const HEARTBEAT_LOG_EVENT: u8 = 27;
pub const HEARTBEAT_LOG_EVENT_V2: u8 = 41;
pub const MARIADB_GTID_EVENT: u8 = 162;
pub const MARIADB_GTID_LIST_EVENT: u8 = 163;

/// Set on events the server made up for the replica (a ROTATE that starts a stream):
/// they are in no file.
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
/// Set in the format description of the file being written; cleared in the file
/// when the server closes it (and left out of the checksum).
const LOG_EVENT_BINLOG_IN_USE_F: u16 = 0x1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub timestamp: u32,
    pub kind: u8,
    pub server_id: u32,
    pub size: u32,
    /// The offset in the file just after this event; 0 on events in no file.
    pub log_pos: u32,
    pub flags: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        Some(Header {
            timestamp: u32_at(0)?,
            kind: *b.get(4)?,
            server_id: u32_at(5)?,
            size: u32_at(9)?,
            log_pos: u32_at(13)?,
            flags: u16::from_le_bytes(b.get(17..19)?.try_into().ok()?),
        })
    }

    pub fn time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(i64::from(self.timestamp), 0)
            .single()
            .unwrap_or_default()
    }

    /// Where the event sits in the file, `[start, end)`, or None when it is in no file
    /// (a fake ROTATE, a heartbeat, the format description resent on a resume).
    pub fn place(&self) -> Option<(u64, u64)> {
        if self.log_pos == 0
            || self.flags & LOG_EVENT_ARTIFICIAL_F != 0
            || matches!(self.kind, HEARTBEAT_LOG_EVENT | HEARTBEAT_LOG_EVENT_V2)
        {
            return None;
        }
        let end = u64::from(self.log_pos);
        end.checked_sub(u64::from(self.size))
            .map(|start| (start, end))
    }
}

/// The format description as the closed file holds it: the server clears "in use"
/// when it closes the file, and the checksum never covers that flag.
pub fn as_closed(event: &mut [u8]) {
    if event.get(4) == Some(&FORMAT_DESCRIPTION_EVENT) && event.len() > 18 {
        event[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
    }
}

/// The file name and offset a ROTATE event points to. `checksum_len` is 4 when the
/// server checksums events (binlog_checksum = CRC32), else 0.
pub fn rotate_target(event: &[u8], checksum_len: usize) -> Option<(String, u64)> {
    let body = event.get(HEADER_LEN..event.len().checked_sub(checksum_len)?)?;
    let pos = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let name = std::str::from_utf8(body.get(8..)?).ok()?;
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| (name.to_string(), pos))
}

/// MariaDB's GTID position (`gtid_binlog_pos`): the last GTID of each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidState(BTreeMap<u32, (u32, u64)>);

impl GtidState {
    pub fn parse(s: &str) -> GtidState {
        let mut st = GtidState::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            if let (Some(d), Some(srv), Some(n), None) =
                (it.next(), it.next(), it.next(), it.next())
            {
                if let (Ok(d), Ok(srv), Ok(n)) = (d.parse(), srv.parse(), n.parse()) {
                    st.0.insert(d, (srv, n));
                }
            }
        }
        st
    }

    /// Takes in a GTID event (the start of a transaction) or a GTID list (the state
    /// at the start of a file).
    pub fn observe(&mut self, event: &[u8]) {
        let Some(h) = Header::parse(event) else {
            return;
        };
        let body = &event[HEADER_LEN.min(event.len())..];
        let u32_at = |i: usize| {
            body.get(i..i + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let u64_at = |i: usize| {
            body.get(i..i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        match h.kind {
            MARIADB_GTID_EVENT => {
                if let (Some(seq), Some(domain)) = (u64_at(0), u32_at(8)) {
                    self.0.insert(domain, (h.server_id, seq));
                }
            }
            MARIADB_GTID_LIST_EVENT => {
                let count = u32_at(0).unwrap_or(0) & 0x0fff_ffff;
                for i in 0..count as usize {
                    let at = 4 + i * 16;
                    if let (Some(d), Some(s), Some(n)) =
                        (u32_at(at), u32_at(at + 4), u64_at(at + 8))
                    {
                        self.0.insert(d, (s, n));
                    }
                }
            }
            _ => {}
        }
    }

    pub fn render(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, log_pos: u32, flags: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len()) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        e.push(kind);
        e.extend_from_slice(&7u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    #[test]
    fn places_and_fakes() {
        let e = event(2, 300, 0, &[0; 81]);
        assert_eq!(Header::parse(&e).unwrap().place(), Some((200, 300)));
        let fake = event(ROTATE_EVENT, 0, LOG_EVENT_ARTIFICIAL_F, &[0; 20]);
        assert_eq!(Header::parse(&fake).unwrap().place(), None);
        let hb = event(HEARTBEAT_LOG_EVENT, 300, 0, &[0; 20]);
        assert_eq!(Header::parse(&hb).unwrap().place(), None);
    }

    #[test]
    fn rotate_with_and_without_checksum() {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"mysql-bin.000002");
        let plain = event(ROTATE_EVENT, 0, 0, &body);
        assert_eq!(
            rotate_target(&plain, 0),
            Some(("mysql-bin.000002".into(), 4))
        );
        body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let summed = event(ROTATE_EVENT, 0, 0, &body);
        assert_eq!(
            rotate_target(&summed, 4),
            Some(("mysql-bin.000002".into(), 4))
        );
        assert_eq!(
            rotate_target(&summed, 0),
            None,
            "checksum bytes are no name"
        );
    }

    #[test]
    fn gtid_state_follows_lists_and_events() {
        let mut st = GtidState::parse("0-1-5");
        let mut list = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 9u64), (3, 2, 4)] {
            list.extend_from_slice(&d.to_le_bytes());
            list.extend_from_slice(&s.to_le_bytes());
            list.extend_from_slice(&n.to_le_bytes());
        }
        st.observe(&event(MARIADB_GTID_LIST_EVENT, 100, 0, &list));
        assert_eq!(st.render().as_deref(), Some("0-1-9,3-2-4"));
        let mut g = 10u64.to_le_bytes().to_vec();
        g.extend_from_slice(&0u32.to_le_bytes());
        g.push(0);
        st.observe(&event(MARIADB_GTID_EVENT, 200, 0, &g));
        assert_eq!(st.render().as_deref(), Some("0-7-10,3-2-4"));
        assert_eq!(GtidState::parse("0-7-10,3-2-4"), st);
    }

    #[test]
    fn the_in_use_flag_is_cleared_on_the_format_description_only() {
        let mut fde = event(FORMAT_DESCRIPTION_EVENT, 256, 1, &[0; 10]);
        as_closed(&mut fde);
        assert_eq!(Header::parse(&fde).unwrap().flags, 0);
        let mut other = event(2, 256, 1, &[0; 10]);
        as_closed(&mut other);
        assert_eq!(Header::parse(&other).unwrap().flags, 1);
    }
}
