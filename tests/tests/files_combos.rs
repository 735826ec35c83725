//! Files copies in the combinations the other suites leave out, each restored and
//! compared: keep_local_path with GPG (the local copy is split off before encryption),
//! and the external compression programs and `none` through a remote destination.

use std::fs;
use std::path::Path;

use twindb_tests::gpg::{have_programs, GpgKey};
use twindb_tests::servers::{S3Server, BUCKET};
use twindb_tests::sshd::Sshd;
use twindb_tests::*;

/// A tree with compressible and incompressible files besides the usual cases.
fn source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    make_tree(&src);
    write_random_file(&src.join("random.bin"), 2 << 20, 77);
    fs::write(src.join("text.csv"), "id,name,amount\n".repeat(50_000)).unwrap();
    src
}

fn restore(d: &Daemon, key: &str, dst: &Path) -> CtlOutput {
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success()
}

#[test]
fn keep_local_with_gpg_keeps_the_local_copy_plain_and_restores_from_either() {
    if !have_programs("keep_local_with_gpg", &["gpg", "gpgconf"]) {
        return;
    }
    let Some(server) = Sshd::start_or_skip("keep_local_with_gpg") else {
        return;
    };
    let t = scratch();
    let src = source(t.path());
    let gpg = GpgKey::generate("keep@twindb.test");
    let kept = t.path().join("kept");
    let config = server.files_config(
        t.path(),
        &[&src],
        "gzip",
        &gpg.config_section(&t.path().join("host-gnupg")),
    );
    let text = fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"ssh\"",
        &format!(
            "backup_destination = \"ssh\"\nkeep_local_path = \"{}\"",
            kept.display()
        ),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();

    let ls = d.ctl(&["--json", "ls"]).success().json();
    let copies = ls["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{ls}");
    let remote_entry = copies.iter().find(|c| c["location"] == "remote").unwrap();
    let key = remote_entry["key"].as_str().unwrap().to_string();
    assert!(key.ends_with(".tar.gz.gpg"), "{key}");
    assert_eq!(
        remote_entry["modifiers"],
        serde_json::json!(["gzip", "gpg"])
    );

    // The server holds the encrypted copy; the local one is the stream before gpg:
    // gzip only, and exactly what decrypting the remote one gives.
    let remote = fs::read(server.root.join(&key)).unwrap();
    let local_path = kept.join(key.strip_suffix(".gpg").unwrap());
    let local = fs::read(&local_path).unwrap();
    assert!(
        remote[0] == 0x84 || remote[0] == 0x85 || remote[0] == 0xC1,
        "not an OpenPGP message: {:x}",
        remote[0]
    );
    assert_eq!(&local[..2], &[0x1f, 0x8b], "the local copy is plain gzip");
    // Both places counted, each with its own stored size.
    let (_, _, metrics) = twindb_tests::sinks::unix_get(&d.socket, "/metrics");
    for (location, size) in [("remote", remote.len()), ("local", local.len())] {
        let labels = format!("{{kind=\"files\",location=\"{location}\",run_type=\"daily\"}}");
        assert!(
            metrics.contains(&format!("twindb_copies{labels} 1\n")),
            "{location}: {metrics}"
        );
        assert!(
            metrics.contains(&format!("twindb_copies_bytes{labels} {size}\n")),
            "{location} {size}: {metrics}"
        );
    }
    let remote_file = t.path().join("remote.gpg");
    fs::write(&remote_file, &remote).unwrap();
    let decrypted = gpg.gpg(&["--decrypt", remote_file.to_str().unwrap()]);
    assert!(
        decrypted == local,
        "the local copy is the remote one decrypted"
    );

    // Both present: the plain local copy is used.
    let dst = t.path().join("r1");
    let out = restore(&d, &key, &dst);
    assert!(out.stdout.contains("from the local copy"), "{out:?}");
    assert_same_tree(&src, &dst);

    // The local copy deleted: the server's copy is decrypted.
    fs::remove_file(&local_path).unwrap();
    let dst = t.path().join("r2");
    let out = restore(&d, &key, &dst);
    assert!(out.stdout.contains("from the destination"), "{out:?}");
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

/// A copy made with `program` through the S3 server: stored under the program's suffix
/// in the program's own format, recorded with it, restored and compared.
fn through_s3(program: &str, suffix: &str, magic: fn(&[u8]) -> bool) {
    if program != "none" && !have_programs(program, &[program]) {
        return;
    }
    let Some(server) = S3Server::start() else {
        return;
    };
    let t = scratch();
    let src = source(t.path());
    let config = files_config_to(t.path(), &[&src], program, "s3", &server.config_section(""));
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();

    let ls = d.ctl(&["--json", "ls"]).success().json();
    let copies = ls["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{ls}");
    let key = copies[0]["key"].as_str().unwrap().to_string();
    assert!(key.ends_with(&format!(".tar{suffix}")), "{key}");
    let chain: Vec<&str> = if program == "none" {
        vec![]
    } else {
        vec![program]
    };
    assert_eq!(copies[0]["modifiers"], serde_json::json!(chain), "{ls}");
    let stored = fs::read(server.root().join(BUCKET).join(&key)).unwrap();
    assert!(magic(&stored), "{key} is not in {program}'s format");

    let dst = t.path().join("restored");
    restore(&d, &key, &dst);
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

fn gzip_magic(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

fn bzip2_magic(b: &[u8]) -> bool {
    b.starts_with(b"BZh")
}

/// A plain tar: "ustar" at offset 257 of the first header.
fn tar_magic(b: &[u8]) -> bool {
    b.get(257..262) == Some(b"ustar")
}

#[test]
fn pigz_through_s3() {
    through_s3("pigz", ".gz", gzip_magic);
}

#[test]
fn bzip2_through_s3() {
    through_s3("bzip2", ".bz", bzip2_magic);
}

#[test]
fn lbzip2_through_s3() {
    through_s3("lbzip2", ".bz", bzip2_magic);
}

#[test]
fn none_through_s3() {
    through_s3("none", "", tar_magic);
}
