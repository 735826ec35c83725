//! `COPY` as TwinDB's `ls` printed it and runbooks hold it: `s3://bucket/KEY`,
//! `gs://bucket/KEY`, `user@host:/backup_dir/KEY`, a path under the local destination or
//! keep_local_path, a tail of the key. Each form restores the right copy (every file
//! compared); another bucket or host, and an ambiguous tail, are refused.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use twindb_tests::servers::{GcsServer, S3Server, TokenServer, BUCKET};
use twindb_tests::sshd::Sshd;
use twindb_tests::*;

/// Restores `copy` into a new folder and compares it with `src`.
fn restores(d: &Daemon, root: &Path, src: &Path, copy: &str, n: usize) {
    let dst = root.join(format!("restored-{n}"));
    let out = d.ctl(&["restore", "file", copy, "--dst", dst.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{copy}: {out:?}");
    assert_same_tree(src, &dst);
}

fn refused(d: &Daemon, root: &Path, copy: &str, says: &str) {
    let dst = root.join("refused");
    let out = d.ctl(&["restore", "file", copy, "--dst", dst.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{copy}: {out:?}");
    assert!(out.stderr.contains(says), "{copy}: {out:?}");
    assert!(!dst.exists(), "{copy}");
}

#[test]
fn local_and_keep_local_paths_and_tails_restore_the_copy() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let other = t.path().join("other");
    make_tree(&other);
    fs::write(other.join("only-here"), "a different folder").unwrap();
    let kept = t.path().join("kept");
    let config = files_config(t.path(), &[&src, &other], "zstd", "");
    let text = fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"local\"",
        &format!(
            "backup_destination = \"local\"\nkeep_local_path = \"{}\"",
            kept.display()
        ),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let keys = ls_keys(&d);
    let key = keys
        .iter()
        .find(|k| k.contains("_src-"))
        .expect("src's copy")
        .clone();
    let name = key.rsplit('/').next().unwrap();
    let root = t.path().join("backups");
    for (n, copy) in [
        key.clone(),
        root.join(&key).display().to_string(),
        kept.join(&key).display().to_string(),
        format!("daily/files/{name}"),
        name.to_string(),
    ]
    .iter()
    .enumerate()
    {
        restores(&d, t.path(), &src, copy, n);
    }
    refused(
        &d,
        t.path(),
        &format!("/srv/elsewhere/{key}"),
        "a local path outside",
    );
    refused(
        &d,
        t.path(),
        &format!("s3://bucket/{key}"),
        "an s3:// URL, but the destination is local",
    );
    refused(&d, t.path(), "daily/files/nope.tar.zst", "no copy matches");
    assert_eq!(d.stop(), 0);
}

#[test]
fn an_ambiguous_tail_is_refused_with_the_candidates() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    // Two copies with the same file name under two run types, as TwinDB Backup left
    // them (twindb lists TwinDB's files copies from the destination's folders): the
    // tail `files/NAME` names both.
    let name = "_etc-2024-05-01_00_00_03.tar.gz";
    for run_type in ["daily", "hourly"] {
        let dir = t
            .path()
            .join("backups/testhost")
            .join(run_type)
            .join("files");
        fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("tar")
            .arg("czf")
            .arg(dir.join(name))
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let d = Daemon::start(&files_config(t.path(), &[&src], "zstd", ""));
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 2, "{keys:?}");
    for tail in [format!("files/{name}"), name.to_string()] {
        let out = d.ctl(&["restore", "file", &tail, "--dst", "/tmp/x"]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains("matches 2 copies"), "{out:?}");
        assert!(
            out.stderr.contains(&format!("testhost/daily/files/{name}"))
                && out
                    .stderr
                    .contains(&format!("testhost/hourly/files/{name}")),
            "{out:?}"
        );
    }
    // The run type part makes it one.
    restores(&d, t.path(), &src, &format!("hourly/files/{name}"), 0);
    assert_eq!(d.stop(), 0);
}

#[test]
fn s3_urls_restore_and_share_and_another_bucket_is_refused() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config_to(t.path(), &[&src], "zstd", "s3", &server.config_section(""));
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);
    restores(&d, t.path(), &src, &format!("s3://{BUCKET}/{key}"), 0);
    refused(
        &d,
        t.path(),
        &format!("s3://other-bucket/{key}"),
        &format!("the bucket \"other-bucket\" is not the configured bucket \"{BUCKET}\""),
    );
    refused(
        &d,
        t.path(),
        &format!("gs://{BUCKET}/{key}"),
        "a gs:// URL, but the destination is s3",
    );

    let out = d
        .ctl(&["--json", "share", &format!("s3://{BUCKET}/{key}")])
        .success();
    assert_eq!(out.json()["copy"], key.as_str(), "{out:?}");
    let (status, body) = fetch_url(out.json()["url"].as_str().unwrap());
    assert_eq!(status, 200);
    let stored = fs::read(server.root().join(BUCKET).join(&key)).unwrap();
    assert_eq!(Sha256::digest(&body), Sha256::digest(&stored));
    let out = d.ctl(&["share", &format!("s3://other-bucket/{key}")]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("not the configured bucket"), "{out:?}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn gs_urls_restore_and_another_bucket_is_refused() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let tokens = TokenServer::start(true);
    let key_file = tokens.service_account_key(t.path());
    let section =
        server.config_section(&format!("gc_credentials_file = \"{}\"", key_file.display()));
    let config = files_config_to(t.path(), &[&src], "gzip", "gcs", &section);
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);
    restores(&d, t.path(), &src, &format!("gs://{BUCKET}/{key}"), 0);
    refused(
        &d,
        t.path(),
        &format!("gs://other-bucket/{key}"),
        "is not the configured bucket",
    );
    refused(
        &d,
        t.path(),
        &format!("s3://{BUCKET}/{key}"),
        "an s3:// URL, but the destination is gcs",
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn ssh_paths_restore_with_or_without_user_and_another_host_is_refused() {
    let Some(server) = Sshd::start_or_skip("ssh_paths_restore") else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = server.files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);
    let dir = server.root.display().to_string();
    restores(
        &d,
        t.path(),
        &src,
        &format!("{}@127.0.0.1:{dir}/{key}", server.user),
        0,
    );
    restores(&d, t.path(), &src, &format!("127.0.0.1:{dir}/{key}"), 1);
    refused(
        &d,
        t.path(),
        &format!("backup@db-backup.example:{dir}/{key}"),
        "the host \"db-backup.example\" is not the configured backup_host \"127.0.0.1\"",
    );
    refused(
        &d,
        t.path(),
        &format!("127.0.0.1:/elsewhere/{key}"),
        "is not under the configured backup_dir",
    );
    assert_eq!(d.stop(), 0);
}
