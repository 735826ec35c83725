//! A repository written by TwinDB Backup 3.3.0 (tests/fixtures/twindb-3.3, see its
//! FACTS.md), read and restored by twindbd and twindbctl: every copy, from the remote
//! tree served by a real destination (local, ssh, s3, gcs with TwinDB's chunk layout,
//! az under TwinDB's `remote_path`)
//! and from the keep-local tree; TwinDB's damaged status files; and twindb taking
//! over the host (a new incremental on TwinDB's full, TwinDB's files untouched).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use twindb_tests::mariadb::{self, MariaDb};
use twindb_tests::servers::{destination_from, AzServer, GcsServer, S3Server, TokenServer, BUCKET};
use twindb_tests::sshd::Sshd;
use twindb_tests::*;

const HOST: &str = "fixture-db1";
const FULL: &str = "fixture-db1/daily/mysql/mysql-2026-11-25_10_37_51.xbstream.gz";
const INC: &str = "fixture-db1/hourly/mysql/mysql-2026-11-25_10_37_59.xbstream.gz";
const FILES_COMMON: [&str; 3] = [
    "fixture-db1/daily/files/_tmp_twfx_appfiles-2026-11-25_10_37_50.tar.gz",
    "fixture-db1/hourly/files/_tmp_twfx_appfiles-2026-11-25_10_37_58.tar.gz",
    "fixture-db1/weekly/files/_tmp_twfx_appfiles-2026-11-25_10_38_06.tar.bz",
];
const MONTHLY_REMOTE: &str =
    "fixture-db1/monthly/files/_tmp_twfx_appfiles-2026-11-25_10_38_08.tar.gz.gpg";
const MONTHLY_LOCAL: &str =
    "fixture-db1/monthly/files/_tmp_twfx_appfiles-2026-11-25_10_38_08.tar.gz";
const BINLOGS: [&str; 3] = [
    "fixture-db1/binlog/mysql-bin.000001.gz",
    "fixture-db1/binlog/mysql-bin.000002.gz",
    "fixture-db1/binlog/mysql-bin.000003.gz",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/twindb-3.3")
}

/// `cp -a from/. to` (the fixture trees are small).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp {} {}", from.display(), to.display());
}

/// sha256 of every file under `root`, by relative path.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    snapshot(root)
        .into_iter()
        .filter_map(|(p, e)| match e {
            Entry::File { sha256, .. } => Some((p.display().to_string(), sha256)),
            _ => None,
        })
        .collect()
}

/// A twindbd config for host fixture-db1 on `destination` (its `[destination]` key
/// and section), with the fixtures' GPG keys to decrypt TwinDB's encrypted copy.
fn config(root: &Path, destination: &str, section: &str, keep_local: Option<&Path>) -> PathBuf {
    config_with_mysql(root, destination, section, keep_local, None)
}

/// [`config`], backing up the server `mysql_defaults` points at when given.
fn config_with_mysql(
    root: &Path,
    destination: &str,
    section: &str,
    keep_local: Option<&Path>,
    mysql_defaults: Option<&Path>,
) -> PathBuf {
    let fx = fixtures();
    let home = root.join("gnupg");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    let nothing = root.join("nothing");
    fs::create_dir_all(&nothing).unwrap();
    let keep_local = keep_local
        .map(|p| format!("keep_local_path = \"{}\"\n", p.display()))
        .unwrap_or_default();
    let mysql = mysql_defaults
        .map(|f| {
            format!(
                "backup_mysql = true\n\n[mysql]\nmysql_defaults_file = \"{}\"\nfull_backup = \"daily\"\n",
                f.display()
            )
        })
        .unwrap_or_default();
    let text = format!(
        r#"[daemon]
socket = "{root}/twindbd.sock"
state_dir = "{root}/state"
hostname = "{HOST}"
run_at_start = false
log = "info,twindb=debug"
# No scheduled run during a test: a fire at the top of an hour would add a copy the
# test did not make (see files_config).
schedule_hourly = "{never}"
schedule_daily = "{never}"
schedule_weekly = "{never}"
schedule_monthly = "{never}"
schedule_yearly = "{never}"

[source]
backup_dirs = ["{nothing}"]
{mysql}

[destination]
backup_destination = "{destination}"
{keep_local}
{section}

[compression]
program = "gzip"

[gpg]
recipient = "fixtures@example.com"
keyring = "{public}"
secret_keyring = "{secret}"
homedir = "{home}"
"#,
        root = root.display(),
        never = twindb_tests::NEVER,
        nothing = nothing.display(),
        public = fx.join("gpg-fixtures-public.asc").display(),
        secret = fx.join("gpg-fixtures-secret.asc").display(),
        home = home.display(),
    );
    let path = root.join("twindb.toml");
    fs::write(&path, text).unwrap();
    path
}

fn local_section(path: &Path) -> String {
    format!("[local]\npath = \"{}\"\n", path.display())
}

fn programs_or_skip(test: &str) -> bool {
    twindb_tests::gpg::have_programs(test, &["gpg", "gpgconf", "bzip2"]) && mariadb::available()
}

/// What FACTS.md says every files copy holds.
fn check_files_restore(d: &Daemon, key: &str, dst: &Path) -> String {
    let out = d
        .ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    let base = dst.join("tmp/twfx/appfiles");
    let want = [
        (
            "release notes.txt",
            "287b7a7f3ab15018db160fa99653f09be61d6ed25f56e8fc6577783e81e98871",
        ),
        (
            "sub/config.ini",
            "0d7d9591c5cf326eea3c8a1e1253a6867a7d6f653ccdd4fa758e9c0d0d67c6b1",
        ),
        (
            "sub/beta.txt",
            "53a33797fba0db1eb036675b0c7420fbb2b4e5fcc3a927572838611c9456a188",
        ),
        (
            "alpha.txt",
            "01ea9ccef610098a2336b255a3f39d4dc1b1a91800ac72ac675b54bf6687a0d7",
        ),
    ];
    let got = snapshot(&base);
    for (name, sha) in want {
        match got.get(Path::new(name)) {
            Some(Entry::File {
                mode,
                sha256,
                mtime,
            }) => {
                assert_eq!(sha256, sha, "{key}: {name}");
                assert_eq!(*mode, 0o644, "{key}: {name}");
                // 2026-01-01 00:00:00 UTC
                assert_eq!(*mtime, 1_767_225_600, "{key}: {name}");
            }
            other => panic!("{key}: {name} restored as {other:?}"),
        }
    }
    assert_eq!(got.get(Path::new("sub")), Some(&Entry::Dir { mode: 0o755 }));
    // The four files, `sub` and the folder itself: nothing else.
    assert_eq!(got.len(), 6, "{key}: {got:?}");
    out.stdout
}

/// Restores a MySQL copy, starts a server on it, returns (rows, min..max, CHECKSUM TABLE).
fn check_mysql_restore(d: &Daemon, key: &str, dst: &Path) -> (String, String, String) {
    d.ctl(&["restore", "mysql", key, "--dst", dst.to_str().unwrap()])
        .success();
    // The my.cnf files TwinDB recorded, as TwinDB restored them.
    assert!(
        dst.join("_config/etc/mysql/my.cnf").is_file(),
        "{key}: _config/etc/mysql/my.cnf"
    );
    fs::rename(dst.join("_config"), dst.with_extension("config")).unwrap();
    let server = MariaDb::start_restored(dst);
    let fp = server.fingerprint(&["shop.orders"]);
    let range = server.sql("SELECT CONCAT(MIN(id), '..', MAX(id)) FROM shop.orders");
    server.stop();
    (fp[0].1.clone(), range, fp[0].2.clone())
}

/// Which tree the destination serves.
#[derive(Clone, Copy, PartialEq)]
enum Tree {
    Remote,
    KeepLocal,
}

/// ls shows exactly TwinDB's copies, marked as such; every one restores to what
/// FACTS.md says. Returns the files restores' messages.
fn check_every_copy(d: &Daemon, tree: Tree, scratch: &Path) -> Vec<String> {
    let ls = d.ctl(&["--json", "ls"]).success().json();
    let copies = ls["copies"].as_array().unwrap();
    assert!(ls.get("problems").is_none(), "{ls}");
    let remote: BTreeMap<String, &serde_json::Value> = copies
        .iter()
        .filter(|c| c["location"] == "remote")
        .map(|c| (c["key"].as_str().unwrap().to_string(), c))
        .collect();
    let monthly = match tree {
        Tree::Remote => MONTHLY_REMOTE,
        Tree::KeepLocal => MONTHLY_LOCAL,
    };
    let mut want: Vec<&str> = FILES_COMMON.to_vec();
    want.extend([monthly, FULL, INC]);
    want.extend(BINLOGS);
    want.sort();
    assert_eq!(remote.keys().collect::<Vec<_>>(), want, "{ls}");
    for c in remote.values() {
        assert_eq!(c["origin"], "twindb-backup", "{c}");
        assert_eq!(c["host"], HOST, "{c}");
    }
    assert_eq!(remote[FULL]["backup_type"], "full");
    assert_eq!(remote[INC]["backup_type"], "incremental");
    assert_eq!(remote[FULL]["run_type"], "daily");
    assert_eq!(remote[BINLOGS[0]]["kind"], "binlog");
    assert_eq!(remote[monthly]["run_type"], "monthly");
    assert_eq!(remote[FULL]["size"], 770_611);
    // The backup time TwinDB recorded (backup_started), not the time of the read.
    assert_eq!(remote[FULL]["started"], "2026-11-25T10:37:51Z");
    if tree == Tree::Remote {
        // The first event's time, from binlog-status.
        assert_eq!(remote[BINLOGS[2]]["started"], "2026-11-25T10:38:01Z");
        assert_eq!(
            remote[MONTHLY_REMOTE]["modifiers"],
            serde_json::json!(["gzip", "gpg"])
        );
    }
    assert_eq!(
        remote[FILES_COMMON[2]]["modifiers"],
        serde_json::json!(["bzip2"])
    );
    // Human output marks them.
    let human = d.ctl(&["ls"]).success().stdout;
    assert!(human.contains("ORIGIN"), "{human}");
    let line = human.lines().find(|l| l.starts_with(FULL)).unwrap();
    assert!(line.ends_with("TwinDB Backup"), "{human}");

    let mut messages = Vec::new();
    for (i, key) in FILES_COMMON.iter().chain([&monthly]).enumerate() {
        messages.push(check_files_restore(
            d,
            key,
            &scratch.join(format!("files{i}")),
        ));
    }
    assert_eq!(
        check_mysql_restore(d, FULL, &scratch.join("full")),
        ("1000".into(), "1..1000".into(), "938751653".into())
    );
    assert_eq!(
        check_mysql_restore(d, INC, &scratch.join("inc")),
        ("1500".into(), "1..1500".into(), "471472178".into())
    );
    messages
}

#[test]
fn remote_tree_on_a_local_destination() {
    if !programs_or_skip("remote_tree_on_a_local_destination") {
        return;
    }
    let t = scratch();
    let repo = t.path().join("repo");
    copy_tree(&fixtures().join("remote"), &repo);
    let before = hashes(&repo);
    let d = Daemon::start(&config(t.path(), "local", &local_section(&repo), None));
    let messages = check_every_copy(&d, Tree::Remote, t.path());
    assert!(messages[0].contains("from the destination"), "{messages:?}");
    assert_eq!(d.stop(), 0);
    // Reading and restoring wrote nothing there.
    assert_eq!(hashes(&repo), before);
}

#[test]
fn remote_tree_over_ssh() {
    if !programs_or_skip("remote_tree_over_ssh") {
        return;
    }
    let Some(sshd) = Sshd::start_or_skip("remote_tree_over_ssh") else {
        return;
    };
    copy_tree(&fixtures().join("remote"), &sshd.root);
    let before = hashes(&sshd.root);
    let t = scratch();
    let d = Daemon::start(&config(t.path(), "ssh", &sshd.config_section(), None));
    check_every_copy(&d, Tree::Remote, t.path());
    assert_eq!(d.stop(), 0);
    assert_eq!(hashes(&sshd.root), before);
}

#[test]
fn remote_tree_over_s3() {
    if !programs_or_skip("remote_tree_over_s3") {
        return;
    }
    let Some(s3) = S3Server::start() else {
        return;
    };
    copy_tree(&fixtures().join("remote"), &s3.root().join(BUCKET));
    let t = scratch();
    let d = Daemon::start(&config(t.path(), "s3", &s3.config_section(""), None));
    check_every_copy(&d, Tree::Remote, t.path());
    // A TwinDB runbook's line: the copy as TwinDB's ls printed it, an s3:// URL.
    let url = format!("s3://{BUCKET}/{}", FILES_COMMON[0]);
    let message = check_files_restore(&d, &url, &t.path().join("by-url"));
    // The job names the key the URL resolved to.
    assert!(
        message.contains(FILES_COMMON[0]) && !message.contains("s3://"),
        "{message}"
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn keep_local_tree_as_the_destination() {
    if !programs_or_skip("keep_local_tree_as_the_destination") {
        return;
    }
    let t = scratch();
    let repo = t.path().join("repo");
    copy_tree(&fixtures().join("local"), &repo);
    let d = Daemon::start(&config(t.path(), "local", &local_section(&repo), None));
    check_every_copy(&d, Tree::KeepLocal, t.path());
    assert_eq!(d.stop(), 0);
}

/// The remote tree as the destination and the keep-local tree as keep_local_path:
/// restores read the local copies (the encrypted copy's local twin is not encrypted).
#[test]
fn keep_local_tree_beside_the_destination_is_preferred() {
    if !programs_or_skip("keep_local_tree_beside_the_destination_is_preferred") {
        return;
    }
    let t = scratch();
    let repo = t.path().join("repo");
    let local = t.path().join("local");
    copy_tree(&fixtures().join("remote"), &repo);
    copy_tree(&fixtures().join("local"), &local);
    let d = Daemon::start(&config(
        t.path(),
        "local",
        &local_section(&repo),
        Some(&local),
    ));
    let ls = d.ctl(&["--json", "ls"]).success().json();
    let local_keys: Vec<&str> = ls["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["location"] == "local")
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert!(local_keys.contains(&MONTHLY_LOCAL), "{ls}");
    assert!(local_keys.contains(&FULL), "{ls}");
    let messages = check_every_copy(&d, Tree::Remote, t.path());
    for m in &messages {
        assert!(m.contains("from the local copy"), "{messages:?}");
    }
    assert_eq!(d.stop(), 0);
}

/// TwinDB's GCS layout: every copy stored as `KEY/part-NNNNNNNNNNNNNNNN` objects
/// (here several small parts per copy), the status files as single objects.
#[test]
fn remote_tree_on_gcs_in_twindb_chunk_layout() {
    if !programs_or_skip("remote_tree_on_gcs_in_twindb_chunk_layout") {
        return;
    }
    let Some(gcs) = GcsServer::start() else {
        return;
    };
    let dest = destination_from("gcs", &gcs.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let remote = fixtures().join("remote");
    for (rel, _) in hashes(&remote) {
        let bytes = fs::read(remote.join(&rel)).unwrap();
        let is_status = rel.ends_with("status");
        let chunks: Vec<(String, Vec<u8>)> = if is_status {
            vec![(rel.clone(), bytes)]
        } else {
            // 3 parts for the MySQL copies; small copies have 1 or 2.
            bytes
                .chunks(300_000.min(bytes.len().div_ceil(2)).max(1))
                .enumerate()
                .map(|(i, c)| (format!("{rel}/part-{i:016}"), c.to_vec()))
                .collect()
        };
        for (key, data) in chunks {
            let stream =
                futures::StreamExt::boxed(futures::stream::once(async move { Ok(data.into()) }));
            rt.block_on(dest.put(&key, stream)).unwrap();
        }
    }
    let t = scratch();
    let tokens = TokenServer::start(true);
    let key_file = tokens.service_account_key(t.path());
    let section = gcs.config_section(&format!("gc_credentials_file = \"{}\"", key_file.display()));
    let d = Daemon::start(&config(t.path(), "gcs", &section, None));
    check_every_copy(&d, Tree::Remote, t.path());
    // One signed URL cannot download several objects: refused, saying why.
    let out = d.ctl(&["share", FULL]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("GCS layout"), "{out:?}");
    assert_eq!(d.stop(), 0);
}

/// TwinDB 3.x's Azure destination stored each copy as one blob named `remote_path/key`:
/// the tree uploaded so, read through `[az] remote_path`, every copy restored.
#[test]
fn remote_tree_on_az_under_remote_path() {
    if !programs_or_skip("remote_tree_on_az_under_remote_path") {
        return;
    }
    let Some(az) = AzServer::start() else {
        return;
    };
    let bare = destination_from("az", &az.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let remote = fixtures().join("remote");
    for (rel, _) in hashes(&remote) {
        let data = fs::read(remote.join(&rel)).unwrap();
        let stream =
            futures::StreamExt::boxed(futures::stream::once(async move { Ok(data.into()) }));
        rt.block_on(bare.put(&format!("twindb-backups/{rel}"), stream))
            .unwrap();
    }
    let t = scratch();
    let section = az.config_section("remote_path = \"/twindb-backups\"");
    let d = Daemon::start(&config(t.path(), "az", &section, None));
    check_every_copy(&d, Tree::Remote, t.path());
    // A TwinDB runbook's line: the copy as TwinDB's ls printed it, its blob name.
    let name = format!("twindb-backups/{}", FILES_COMMON[0]);
    let message = check_files_restore(&d, &name, &t.path().join("by-name"));
    assert!(message.contains(FILES_COMMON[0]), "{message}");
    assert_eq!(d.stop(), 0);
}

/// A broken md5, an empty file and the legacy bare-base64 form each give their own result.
#[test]
fn damaged_and_legacy_status_files() {
    if !programs_or_skip("damaged_and_legacy_status_files") {
        return;
    }
    let t = scratch();
    let repo = t.path().join("repo");
    copy_tree(&fixtures().join("remote"), &repo);
    let status = repo.join(HOST).join("status");
    let original = fs::read_to_string(&status).unwrap();
    let d = Daemon::start(&config(t.path(), "local", &local_section(&repo), None));

    // Broken md5: one base64 character of the body changed.
    let at = original.find("\"status\": \"").unwrap() + 40;
    let mut bad = original.clone().into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    fs::write(&status, &bad).unwrap();
    let ls = d.ctl(&["--json", "ls"]).success().json();
    let problems = ls["problems"].to_string();
    assert!(problems.contains("is corrupt"), "{ls}");
    assert!(
        problems.contains("feded6d497f701f249d63236403d31fe"),
        "{ls}"
    );
    let human = d.ctl(&["ls"]).success();
    assert!(human.stderr.contains("is corrupt"), "{human:?}");
    // The MySQL copies are still listed, and refuse to restore, saying why.
    let out = d.ctl(&[
        "restore",
        "mysql",
        FULL,
        "--dst",
        t.path().join("m").to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("is corrupt"), "{out:?}");
    // Files copies need no status.
    check_files_restore(&d, FILES_COMMON[0], &t.path().join("f1"));
    // A copy truncated on upload (TwinDB 3.3's ssh upload did that, FACTS.md) has no
    // checksum to catch it: the decompressor does, the restore fails, nothing is left.
    let weekly = repo.join(FILES_COMMON[2]);
    let bytes = fs::read(&weekly).unwrap();
    fs::write(&weekly, &bytes[..bytes.len() - 40]).unwrap();
    let dst = t.path().join("truncated");
    let out = d.ctl(&[
        "restore",
        "file",
        FILES_COMMON[2],
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("bzip2"), "{out:?}");
    assert!(!dst.exists());

    // Empty.
    fs::write(&status, "").unwrap();
    let ls = d.ctl(&["--json", "ls"]).success().json();
    assert!(ls["problems"].to_string().contains("is empty"), "{ls}");
    let out = d.ctl(&[
        "restore",
        "mysql",
        INC,
        "--dst",
        t.path().join("m").to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("is empty"), "{out:?}");

    // Legacy: the bare base64 body. Read as the version-1 file is.
    let wrapper: serde_json::Value = serde_json::from_str(&original).unwrap();
    fs::write(&status, wrapper["status"].as_str().unwrap()).unwrap();
    let ls = d.ctl(&["--json", "ls", "--type", "mysql"]).success().json();
    assert!(ls.get("problems").is_none(), "{ls}");
    let inc = ls["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == INC)
        .unwrap();
    assert_eq!(inc["backup_type"], "incremental");
    assert_eq!(
        check_mysql_restore(&d, FULL, &t.path().join("legacy-full")),
        ("1000".into(), "1..1000".into(), "938751653".into())
    );
    assert_eq!(d.stop(), 0);
}

/// twindb takes over the host: its incremental is taken against TwinDB's full (the
/// server's LSN allows it), restores on it to the state FACTS.md gives, and every file
/// TwinDB wrote is still there, byte for byte.
#[test]
fn a_new_incremental_uses_twindb_full_as_parent() {
    if !programs_or_skip("a_new_incremental_uses_twindb_full_as_parent") {
        return;
    }
    let t = scratch();
    let repo = t.path().join("repo");
    copy_tree(&fixtures().join("remote"), &repo);
    let before = hashes(&repo);
    let config_path = config(t.path(), "local", &local_section(&repo), None);

    // A server on TwinDB's full (the host as it was at the daily run), then batch2.
    let d = Daemon::start(&config_path);
    let datadir = t.path().join("live");
    d.ctl(&["restore", "mysql", FULL, "--dst", datadir.to_str().unwrap()])
        .success();
    assert_eq!(d.stop(), 0);
    fs::remove_dir_all(datadir.join("_config")).unwrap();
    let db = MariaDb::start_restored(&datadir);
    db.sql("USE shop; INSERT INTO orders SELECT seq, CONCAT('batch2-', seq) FROM seq_1001_to_1500");
    let defaults = t.path().join("client.cnf");
    fs::write(
        &defaults,
        format!("[client]\nuser=root\nsocket={}\n", db.socket.display()),
    )
    .unwrap();
    let config_path = config_with_mysql(
        t.path(),
        "local",
        &local_section(&repo),
        None,
        Some(&defaults),
    );
    let d = Daemon::start(&config_path);
    let out = d.ctl(&["--json", "run", "hourly"]).success();
    let jobs = out.json();
    let mysql = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "backup_mysql")
        .unwrap_or_else(|| panic!("no mysql job: {out:?}"));
    assert_eq!(mysql["state"], "succeeded", "{mysql}\n{}", d.log_text());
    let new_key = mysql["copies"][0].as_str().unwrap().to_string();
    db.stop();

    let ls = d.ctl(&["--json", "ls", "--type", "mysql"]).success().json();
    let new = ls["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == new_key.as_str())
        .unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(new["backup_type"], "incremental", "{ls}");
    assert!(new.get("origin").is_none(), "{new}");
    let own: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.join(HOST).join("twindb-status.json")).unwrap())
            .unwrap();
    let recorded = own["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == new_key.as_str())
        .unwrap();
    assert_eq!(recorded["parent"], FULL, "{recorded}");
    // Only twindb's own copies are in its status file.
    assert!(
        own["copies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("twindb").is_none()),
        "{own}"
    );

    assert_eq!(
        check_mysql_restore(&d, &new_key, &t.path().join("restored")),
        ("1500".into(), "1..1500".into(), "471472178".into())
    );
    // verify restores TwinDB's incremental on its full and starts a server on it.
    let out = d.ctl(&["--json", "verify", "mysql", INC]).success();
    assert_eq!(out.json()["success"], true, "{out:?}");
    assert_eq!(d.stop(), 0);

    // Every file TwinDB wrote is unchanged; twindb added only its own files.
    let after = hashes(&repo);
    for (path, sha) in &before {
        assert_eq!(after.get(path), Some(sha), "{path} changed or vanished");
    }
    let own_keys: Vec<&str> = own["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        added
            .iter()
            .all(|k| k.starts_with("fixture-db1/twindb-status")
                || *k == "fixture-db1/.twindb-status.json.twindb-lock"
                || own_keys.contains(&k.as_str())),
        "{added:?}"
    );
    let fx_status = fs::read(fixtures().join("remote/fixture-db1/status")).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&fx_status)),
        "04fdfdef3ca3e693cbe9d5961af07b3dda63e5e4c5a2c1cd927357469e85bc9f"
    );
}

/// The binlog copies, read from an S3 destination and decoded by their key's chain,
/// are TwinDB's raw binlogs (FACTS.md sizes), and replayed from the position recorded
/// in the restored incremental they roll it forward to the last state FACTS.md gives.
#[test]
fn binlog_copies_roll_the_restored_incremental_forward() {
    if !programs_or_skip("binlog_copies_roll_the_restored_incremental_forward") {
        return;
    }
    let Some(s3) = S3Server::start() else {
        return;
    };
    copy_tree(&fixtures().join("remote"), &s3.root().join(BUCKET));
    let t = scratch();
    let d = Daemon::start(&config(t.path(), "s3", &s3.config_section(""), None));
    let dst = t.path().join("inc");
    d.ctl(&["restore", "mysql", INC, "--dst", dst.to_str().unwrap()])
        .success();
    assert_eq!(d.stop(), 0);
    let info = fs::read_to_string(dst.join("xtrabackup_binlog_info")).unwrap();
    let fields: Vec<&str> = info.split_whitespace().collect();
    assert_eq!(fields[..2], ["mysql-bin.000002", "11057"], "{info}");

    let dest = destination_from("s3", &s3.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let binlogs = t.path().join("binlogs");
    fs::create_dir(&binlogs).unwrap();
    for (key, raw_size) in BINLOGS.iter().zip([19649, 11104, 11104]) {
        let stored: Vec<u8> = rt.block_on(async {
            let chunks: Vec<bytes::Bytes> =
                futures::TryStreamExt::try_collect(dest.get(key).await.unwrap())
                    .await
                    .unwrap();
            chunks.concat()
        });
        let chain = twindb::modifier::ModifierSpec::chain_from_key(key);
        let raw = twindb_tests::chain::run_bytes(
            &chain,
            &twindb::modifier::ModifierEnv::default(),
            twindb_tests::chain::Way::Decode,
            stored,
        )
        .unwrap();
        assert_eq!(raw.len(), raw_size, "{key}");
        // The binlog magic number.
        assert_eq!(&raw[..4], b"\xfebin", "{key}");
        let name = key.rsplit('/').next().unwrap().trim_end_matches(".gz");
        fs::write(binlogs.join(name), raw).unwrap();
    }

    fs::rename(dst.join("_config"), dst.with_extension("config")).unwrap();
    let server = MariaDb::start_restored(&dst);
    let replay = format!(
        "mariadb-binlog --start-position={pos} {dir}/mysql-bin.000002 {dir}/mysql-bin.000003 \
         | mariadb -uroot --socket={socket}",
        pos = fields[1],
        dir = binlogs.display(),
        socket = server.socket.display()
    );
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &replay])
        .output()
        .unwrap();
    assert!(out.status.success(), "{replay}: {out:?}");
    let fp = server.fingerprint(&["shop.orders"]);
    let range = server.sql("SELECT CONCAT(MIN(id), '..', MAX(id)) FROM shop.orders");
    server.stop();
    assert_eq!(
        (fp[0].1.as_str(), range.as_str(), fp[0].2.as_str()),
        ("2000", "1..2000", "2027630342")
    );
}
