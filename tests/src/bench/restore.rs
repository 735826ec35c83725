//! `twindb-bench restore --from local|ssh|s3|gcs|az` and `twindb-bench restore --mysql`:
//! a copy made once by a real twindbd, then restored by `twindbctl restore` (sha256
//! checked, as always) beside the shell pipe that reads the same stored object with a
//! common client: `cat`, `ssh cat`, `aws s3 cp -`, curl of the GCS emulator's JSON API
//! media download (`?alt=media`) or `azure-storage-blob`'s `download_blob().readinto`
//! to stdout, each piped into `zstd -d -T0 | tar -x` for files; `zstd -d | mbstream -x`
//! then `mariabackup --prepare` per copy for MySQL (a full copy, and an incremental on
//! its full).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use twindb_tests::servers::{
    AzServer, GcsServer, S3Server, AZURITE_INSTALL, AZ_KEY, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY,
};
use twindb_tests::sshd::Sshd;
use twindb_tests::{files_config, files_config_to, Daemon};

use super::ssh::zstd3;
use super::{builds, print, ssh_command, wait_quiet};
use crate::{dir_bytes, dir_size, generate};

/// The az baseline: the blob named by `AZ_BLOB` written to stdout by Microsoft's SDK
/// (`pip install azure-storage-blob`). One connection: `readinto` refuses a stream that
/// cannot seek (a pipe) when `max_concurrency` is above 1 ("Target stream handle must
/// be seekable"), and `chunks()` reads one chunk at a time too.
const AZ_DOWNLOAD: &str = r#"
import os, sys
from azure.storage.blob import BlobClient
blob = BlobClient.from_connection_string(
    os.environ["AZ_CONN"], os.environ["AZ_CONTAINER"], os.environ["AZ_BLOB"])
blob.download_blob().readinto(sys.stdout.buffer)
"#;

/// Where the copy is stored, and how the shell reads it back.
enum Place {
    Local,
    Ssh(Sshd),
    S3(S3Server),
    Gcs(GcsServer),
    Az(AzServer),
}

impl Place {
    fn start(from: &str) -> Place {
        match from {
            "local" => Place::Local,
            "ssh" => {
                let mut sshd = Sshd::start();
                sshd.log_commands();
                Place::Ssh(sshd)
            }
            "s3" => Place::S3(S3Server::start().expect(
                "s3s-fs is missing: cargo install s3s-fs --version 0.14.1 --features binary --locked",
            )),
            "gcs" => Place::Gcs(GcsServer::start().expect(
                "gcp-storage-emulator is missing: pip install gcp-storage-emulator==2026.7.19",
            )),
            "az" => Place::Az(
                AzServer::start()
                    .unwrap_or_else(|| panic!("azurite is missing: {AZURITE_INSTALL}")),
            ),
            other => {
                eprintln!("unknown --from {other:?}; known: local, ssh, s3, gcs, az");
                std::process::exit(2);
            }
        }
    }

    fn config(&self, root: &Path, data: &Path) -> PathBuf {
        let (destination, section) = match self {
            Place::Local => return files_config(root, &[data], "zstd", "level = 3"),
            Place::Ssh(s) => ("ssh", s.config_section()),
            Place::S3(s) => ("s3", s.config_section("")),
            Place::Gcs(s) => ("gcs", s.config_section("")),
            Place::Az(s) => ("az", s.config_section("")),
        };
        zstd3(files_config_to(
            root,
            &[data],
            "zstd",
            destination,
            &section,
        ))
    }

    /// Commands the ssh server started so far.
    fn commands(&self) -> Option<usize> {
        match self {
            Place::Ssh(s) => Some(s.commands()),
            _ => None,
        }
    }

    /// The target ratio (docs/benchmarks.md): 1.00x from an object store, 0.95x from a
    /// file or over ssh.
    fn target(&self) -> f64 {
        match self {
            Place::Local | Place::Ssh(_) => 0.95,
            Place::S3(_) | Place::Gcs(_) | Place::Az(_) => 1.0,
        }
    }

    /// The shell command that writes the stored object `key` to stdout, its label, and
    /// the environment it needs (credentials; `root` holds the AWS CLI's empty config).
    fn fetch(&self, root: &Path, key: &str) -> (String, &'static str, Vec<(&str, String)>) {
        match self {
            Place::Local => (
                format!("cat {}", root.join("backups").join(key).display()),
                "cat | zstd -d -T0 | tar -x",
                vec![],
            ),
            Place::Ssh(s) => (
                format!("{} 'cat {}'", ssh_command(s), s.root.join(key).display()),
                "ssh cat | zstd -d -T0 | tar -x",
                vec![],
            ),
            Place::S3(s) => {
                let aws_config = root.join("aws-config");
                fs::write(&aws_config, "[default]\n").unwrap();
                (
                    format!(
                        "aws s3 cp s3://{BUCKET}/{key} - --endpoint-url {} --only-show-errors",
                        s.endpoint()
                    ),
                    "aws s3 cp - | zstd -d -T0 | tar -x",
                    vec![
                        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
                        ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
                        ("AWS_DEFAULT_REGION", "us-east-1".into()),
                        ("AWS_CONFIG_FILE", aws_config.display().to_string()),
                    ],
                )
            }
            // The JSON API's media download; the emulator serves it by the same handler
            // as the `/storage/v1/…?alt=media` that twindb reads.
            Place::Gcs(s) => (
                format!(
                    "curl -sSf '{}/download/storage/v1/b/{BUCKET}/o/{}?alt=media'",
                    s.endpoint(),
                    url_encode(key)
                ),
                "curl | zstd -d -T0 | tar -x",
                vec![],
            ),
            Place::Az(s) => (
                format!("python3 -c '{AZ_DOWNLOAD}'"),
                "readinto | zstd -d -T0 | tar -x",
                vec![
                    ("AZ_CONN", s.connection_string(AZ_KEY)),
                    ("AZ_CONTAINER", BUCKET.into()),
                    ("AZ_BLOB", key.into()),
                ],
            ),
        }
    }
}

/// `s` as one URL path segment: every byte but RFC 3986's unreserved ones as `%XX`
/// (a key's `/` too, as the JSON API wants its object names).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn files(size_gib: f64, data: Option<PathBuf>, from: &str, before: Option<PathBuf>) {
    let place = Place::start(from);
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-data"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let input = dir_size(&data);
    let config = place.config(scratch.path(), &data);

    // The copy, made once.
    let daemon = Daemon::start(&config);
    let run = daemon.ctl(&["--json", "run", "daily"]);
    assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
    let key = twindb_tests::ls_keys(&daemon)
        .pop()
        .expect("the copy's key");
    let stored = run.json()[0]["progress"]["bytes_out"].as_u64().unwrap_or(0);
    daemon.stop();

    let (fetch, baseline, env) = place.fetch(scratch.path(), &key);
    let dst = scratch.path().join("restored");
    let mut base = Vec::new();
    let mut builds = builds(before);
    // Alternated, so that a burst of load elsewhere hits every side.
    for round in 1..=3 {
        settle(&dst);
        fs::create_dir(&dst).unwrap();
        let t = Instant::now();
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; {fetch} | zstd -q -d -T0 | tar -x -C {}",
                dst.display()
            ))
            .envs(env.iter().cloned())
            .status()
            .unwrap();
        assert!(status.success(), "baseline pipe failed");
        base.push(t.elapsed().as_secs_f64());
        assert_restored(&dst, &data, input);
        let mut line = format!("  round {round}: pipe {:.2} s", base[round - 1]);
        for b in &mut builds {
            settle(&dst);
            let mut before = None;
            let secs = b.time_after(
                &config,
                || {
                    if let Place::Ssh(sshd) = &place {
                        wait_quiet(sshd);
                    }
                    before = place.commands();
                },
                |d| {
                    let out = d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()]);
                    assert_eq!(out.code, 0, "twindb restore failed: {out:?}");
                },
            );
            assert_restored(&dst, &data, input);
            line += &format!(", {} {secs:.2} s", b.label);
            if let Some(before) = before {
                line += &format!(
                    " ({} remote commands)",
                    place.commands().unwrap_or(0) - before
                );
            }
        }
        eprintln!("{line}");
    }
    settle(&dst);
    println!(
        "files restore of {:.2} GiB (half text, half random, zstd level 3, {:.0} MiB stored) from {from} (median of 3)",
        input as f64 / (1u64 << 30) as f64,
        stored as f64 / (1 << 20) as f64
    );
    print(baseline, base, &builds, input, place.target());
}

/// Removes the last restore and flushes its dirty pages, so that the next run does not
/// pay for the previous one's writeback.
fn settle(dst: &Path) {
    let _ = fs::remove_dir_all(dst);
    let _ = Command::new("sync").status();
}

/// The restored tree holds as many bytes as the source (the contents are checked by
/// the tests; twindb checks the stored bytes' sha256 before it reports success).
fn assert_restored(dst: &Path, data: &Path, input: u64) {
    let restored = twindb_tests::restored_path(dst, data);
    assert_eq!(dir_size(&restored), input, "restored tree differs in size");
}

/// A generated MariaDB, a full copy and two incrementals (each against the full, as
/// twindb takes them); the full and the second incremental restored by twindb and by
/// the tools by hand.
pub fn mysql(size_gib: f64, before: Option<PathBuf>) {
    use twindb_tests::mariadb::MariaDb;
    let db = MariaDb::start();
    crate::load(&db, size_gib);
    let datadir_bytes = dir_bytes(&db.datadir);
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = scratch.path().join("twindb");
    fs::create_dir_all(&root).unwrap();
    let memory = 256u64 << 20;
    let config = twindb_tests::mariadb::mysql_config(
        &root,
        &db,
        &format!("prepare_memory = \"{}MiB\"", memory >> 20),
    );
    let config_text = fs::read_to_string(&config).unwrap().replacen(
        "program = \"zstd\"\n",
        "program = \"zstd\"\nlevel = 3\n",
        1,
    );
    fs::write(&config, config_text).unwrap();
    let daemon = Daemon::start(&config);
    let mut seen = Vec::new();
    let mut copy = |run_type: &str| {
        let run = daemon.ctl(&["--json", "run", run_type]);
        assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
        let key = twindb_tests::ls_keys(&daemon)
            .into_iter()
            .find(|k| k.contains("/mysql/") && !seen.contains(k))
            .expect("the new MySQL copy's key");
        seen.push(key.clone());
        key
    };
    let full = copy("daily");
    // Each incremental holds about 5 % of the rows changed.
    let change = |n: u64| {
        db.sql(&format!(
            "UPDATE bench.t SET bin = RANDOM_BYTES(512) WHERE id % 20 = {n}"
        ))
    };
    change(1);
    let inc1 = copy("hourly");
    change(2);
    let inc2 = copy("hourly");
    daemon.stop();
    let stored = |key: &str| root.join("backups").join(key);
    eprintln!("copies: {full}, {inc1}, {inc2}");

    let tools = |dir: &Path, key: &str| {
        format!(
            "zstd -q -d -T0 < {} | mbstream -x -C {}",
            stored(key).display(),
            dir.display()
        )
    };
    let prepare = |dir: &Path, inc: Option<&Path>| {
        format!(
            " && mariabackup --prepare --use-memory={memory} --target-dir={}{} 2>/dev/null",
            dir.display(),
            inc.map(|i| format!(" --incremental-dir={}", i.display()))
                .unwrap_or_default()
        )
    };
    let dst = scratch.path().join("restored");
    let inc_dir = scratch.path().join("incremental");
    for (what, key, chain) in [
        ("full", &full, false),
        ("second incremental (on its full)", &inc2, true),
    ] {
        let mut base = Vec::new();
        let mut builds = builds(before.clone());
        for round in 1..=3 {
            let _ = fs::remove_dir_all(&inc_dir);
            settle(&dst);
            fs::create_dir(&dst).unwrap();
            let mut script = format!("set -o pipefail; {}", tools(&dst, &full));
            if chain {
                // twindb's incrementals are taken against the newest full copy
                // (TwinDB's rule), so the second one applies on the full alone.
                fs::create_dir(&inc_dir).unwrap();
                script += &format!(" && {}", tools(&inc_dir, &inc2));
                script += &prepare(&dst, None);
                script += &prepare(&dst, Some(&inc_dir));
            } else {
                script += &prepare(&dst, None);
            }
            let t = Instant::now();
            let status = Command::new("bash")
                .arg("-c")
                .arg(&script)
                .status()
                .unwrap();
            assert!(status.success(), "baseline failed: {script}");
            base.push(t.elapsed().as_secs_f64());

            let mut line = format!("  {what}, round {round}: tools {:.2} s", base[round - 1]);
            for b in &mut builds {
                settle(&dst);
                let secs = b.time(&config, |d| {
                    let out = d.ctl(&["restore", "mysql", key, "--dst", dst.to_str().unwrap()]);
                    assert_eq!(out.code, 0, "twindb restore failed: {out:?}");
                });
                line += &format!(", {} {secs:.2} s", b.label);
            }
            eprintln!("{line}");
        }
        println!(
            "MySQL restore, {what}, datadir {:.2} GiB, zstd level 3, --use-memory={}MiB (median of 3)",
            datadir_bytes as f64 / (1u64 << 30) as f64,
            memory >> 20
        );
        print(
            "zstd -d | mbstream -x; --prepare",
            base,
            &builds,
            datadir_bytes,
            0.95,
        );
    }
    settle(&dst);
    let _ = fs::remove_dir_all(&inc_dir);
}
