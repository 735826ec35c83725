//! docs/status-format.md documents every field twindbd writes in a status file, and
//! its JSON examples are what twindbd reads: a document example decodes with
//! `Status::decode` (its checksum is right), a copy entry example parses as a
//! `CopyMeta`.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use twindb::modifier::ModifierSpec;
use twindb::mysql::{ConfigFile, Vendor};
use twindb::status::twindb::TwindbCopy;
use twindb::status::{
    layout, BinlogMeta, CopyMeta, LocalCopy, MysqlMeta, Pending, SegmentMeta, Status, Writer,
    WriterId,
};
use twindb_proto::{CopyKind, RunType};

use super::{code_blocks, code_spans, read, repo};

fn page() -> String {
    read(&repo().join("docs/status-format.md"))
}

/// One of each modifier. The match has no wildcard: a new modifier does not compile
/// until it is added here, and so to the field check.
fn every_modifier() -> Vec<ModifierSpec> {
    let all = vec![
        ModifierSpec::Zstd { level: 3 },
        ModifierSpec::Gzip { level: 6 },
        ModifierSpec::Pigz { level: 6 },
        ModifierSpec::Bzip2 { level: 9 },
        ModifierSpec::Lbzip2 { level: 9 },
        ModifierSpec::Gpg {
            recipient: Some("backup@example.com".into()),
            fingerprint: Some("87A0ACA0010A8BD13B7271C103A75F6B82BEF328".into()),
        },
    ];
    for m in &all {
        match m {
            ModifierSpec::Zstd { .. }
            | ModifierSpec::Gzip { .. }
            | ModifierSpec::Pigz { .. }
            | ModifierSpec::Bzip2 { .. }
            | ModifierSpec::Lbzip2 { .. }
            | ModifierSpec::Gpg { .. } => {}
        }
    }
    all
}

/// A status with every optional field set. The struct literals name every field
/// (no `..Default::default()`): a new field does not compile until it is set here.
fn full_status() -> Status {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 3).unwrap();
    let copy = CopyMeta {
        key: "db1/daily/mysql/mysql-2026-11-25_00_00_03.xbstream.zst".into(),
        kind: CopyKind::Mysql,
        run_type: Some(RunType::Daily),
        backup_type: Some("incremental".into()),
        parent: Some("db1/weekly/mysql/mysql-2026-11-22_00_00_02.xbstream.zst".into()),
        host: "db1".into(),
        source: "mysql".into(),
        started: t,
        finished: t,
        source_size: 1,
        size: 1,
        sha256: "00".into(),
        modifiers: every_modifier(),
        mysql: Some(MysqlMeta {
            from_lsn: 1,
            to_lsn: 2,
            last_lsn: 2,
            binlog_file: Some("mysql-bin.000012".into()),
            binlog_position: Some(4),
            gtid: Some("0-1-10".into()),
            vendor: Vendor::Mariadb,
            version: "10.11.6-MariaDB".into(),
            tool: "mariabackup".into(),
            stream_tool: "mbstream".into(),
            galera: false,
            wsrep_provider_version: Some("26.4.16".into()),
            config: vec![ConfigFile {
                path: "/etc/mysql/my.cnf".into(),
                content_base64: "W215c3FsZF0K".into(),
            }],
        }),
        binlog: Some(BinlogMeta {
            name: "mysql-bin.000012".into(),
            first_event: t,
            server_id: Some(1),
            segment: None,
            consolidated: Some(SegmentMeta {
                server_uuid: "server-id-1".into(),
                start: 0,
                end: 1,
                first_event_time: t,
                last_event_time: t,
                gtid: Some("0-1-10".into()),
                last: true,
            }),
        }),
        local: Some(LocalCopy {
            key: "db1/daily/mysql/mysql-2026-11-25_00_00_03.xbstream.zst".into(),
            size: 1,
            sha256: "00".into(),
            modifiers: every_modifier(),
        }),
        twindb: Some(TwindbCopy {
            parts: vec!["x/part-0000000000000000".into()],
            problem: Some("no record".into()),
        }),
    };
    Status {
        generation: 1,
        copies: vec![copy],
        pending: vec![Pending {
            key: "db1/daily/files/_etc-2026-11-25_00_00_03.tar.zst".into(),
            local: Some("db1/daily/files/_etc-2026-11-25_00_00_03.tar.zst".into()),
            since: t,
            reason: "storing".into(),
        }],
        writer: Some(Writer {
            who: WriterId {
                id: "5f0c".into(),
                machine: "db1".into(),
            },
            pid: 4711,
            at: t,
        }),
        problems: vec![],
    }
}

/// Every object key of a JSON value, at any depth.
fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_field_of_a_status_file_is_in_status_format_md() {
    let status = full_status();
    let mut fields = BTreeSet::new();
    // The index, a manifest, a pending marker and the writer object.
    let objects = [
        status.encode(),
        layout::encode_manifest(&status.copies[0]),
        layout::encode_pending(&status.pending[0]),
        serde_json::to_vec(status.writer.as_ref().unwrap()).unwrap(),
    ];
    for bytes in objects {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        keys(&doc, &mut fields);
    }
    let page = page();
    let spans: BTreeSet<&str> = code_spans(&page).into_iter().collect();
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !spans.contains(f.as_str()))
        .collect();
    assert!(fields.len() > 40, "{fields:?}");
    assert!(
        missing.is_empty(),
        "fields twindbd writes that docs/status-format.md does not name as `field`: {missing:?}"
    );
}

#[test]
fn json_examples_in_status_format_md_are_read_by_twindbd() {
    let page = page();
    let blocks = code_blocks(&page).unwrap();
    let mut kinds = BTreeSet::new();
    let mut documents = 0;
    let mut manifests = 0;
    let mut problems = Vec::new();
    for (line, _, body) in blocks.into_iter().filter(|b| b.1 == "json") {
        let value: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("line {line}: not JSON: {e}"));
                continue;
            }
        };
        let one_line: String = body.lines().map(str::trim_start).collect();
        if value.get("format").and_then(|f| f.as_str()) == Some(layout::MANIFEST_FORMAT) {
            let key = value["copy"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match layout::decode_manifest(one_line.as_bytes(), &key) {
                Ok(c) => {
                    manifests += 1;
                    kinds.insert(c.kind.as_str());
                }
                Err(e) => problems.push(format!("line {line}: {e}")),
            }
        } else if value.get("reason").is_some() {
            if let Err(e) = serde_json::from_value::<Pending>(value) {
                problems.push(format!("line {line}: not a pending marker: {e}"));
            }
        } else if value.get("machine").is_some() {
            if let Err(e) = serde_json::from_value::<Writer>(value) {
                problems.push(format!("line {line}: not a writer: {e}"));
            }
        } else if value.get("format").is_some() {
            // Written on several lines here; the file has them on one. Joining the
            // lines gives the exact bytes, so the example's checksum must be right.
            match Status::decode(one_line.as_bytes()) {
                Ok(s) => {
                    documents += 1;
                    kinds.extend(s.copies.iter().map(|c| c.kind.as_str()));
                }
                Err(e) => problems.push(format!("line {line}: {e}")),
            }
        } else {
            match serde_json::from_value::<CopyMeta>(value) {
                Ok(c) => {
                    kinds.insert(c.kind.as_str());
                }
                Err(e) => problems.push(format!("line {line}: not a copy entry: {e}")),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(documents >= 1, "no example of an index document");
    assert!(manifests >= 1, "no example of a manifest");
    assert_eq!(
        kinds,
        BTreeSet::from(["binlog", "files", "mysql"]),
        "an example of each kind of copy"
    );
}

/// The inline examples of the nested objects (`{"name":"zstd","level":3}`, a binlog
/// object) are read by twindbd too.
#[test]
fn inline_json_objects_in_status_format_md_are_read_by_twindbd() {
    let page = page();
    let mut checked = 0;
    let mut problems = Vec::new();
    for span in code_spans(&page) {
        if !span.starts_with('{') || !span.ends_with('}') || span.contains("...") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(span) else {
            continue;
        };
        checked += 1;
        let ok = if value.get("name").is_some() && value.get("first_event").is_some() {
            serde_json::from_value::<BinlogMeta>(value).map(drop)
        } else if value.get("name").is_some() {
            serde_json::from_value::<ModifierSpec>(value).map(drop)
        } else {
            continue;
        };
        if let Err(e) = ok {
            problems.push(format!("{span}: {e}"));
        }
    }
    assert!(checked >= 6, "only {checked} inline objects");
    assert!(problems.is_empty(), "{problems:#?}");
}
