//! Files backups to an SSH server through the real twindbd and twindbctl, with and
//! without keep_local_path, proven by restoring them.

use std::fs;
use std::path::{Path, PathBuf};

use twindb_tests::sshd::Sshd;
use twindb_tests::*;

fn restore(d: &Daemon, key: &str, dst: &Path) -> CtlOutput {
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
}

#[test]
fn files_backup_to_ssh_lists_restores_and_checks() {
    let Some(mut server) = Sshd::start_or_skip("files_backup_to_ssh") else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = server.files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);

    let out = d.ctl(&["check"]).success();
    assert!(out.stdout.contains("ok"), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("ssh://{}@127.0.0.1:{}", server.user, server.port)),
        "{out:?}"
    );

    let out = d.ctl(&["--json", "run", "daily"]).success();
    assert_eq!(out.json()[0]["state"], "succeeded", "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert!(key.starts_with("testhost/daily/files/_tmp_tw"), "{key}");
    assert!(server.root.join(key).is_file(), "the copy is on the server");
    assert!(server.root.join("testhost/twindb-status.json").is_file());
    let ls = d.ctl(&["--json", "ls"]).success().json();
    assert_eq!(ls["copies"][0]["location"], "remote");

    let dst = t.path().join("restored");
    let out = restore(&d, key, &dst).success();
    assert!(out.stdout.contains("succeeded"), "{out:?}");
    assert_same_tree(&src, &dst);

    // The server goes away: `check` says so, naming the destination, and exits 1.
    server.stop();
    let out = d.ctl(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAIL"), "{out:?}");
    assert!(
        out.stdout.contains(&format!("127.0.0.1:{}", server.port)),
        "{out:?}"
    );
    let json = d.ctl(&["--json", "check"]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["healthy"], false);

    // Back again: the daemon reconnects on its own.
    server.restart();
    d.ctl(&["check"]).success();
    assert_eq!(ls_keys(&d), keys);
    assert_eq!(d.stop(), 0);
}

/// A config whose copies go to `server` and are also kept in `root/kept`.
fn keep_local_config(server: &Sshd, root: &Path, src: &Path) -> (PathBuf, PathBuf) {
    let kept = root.join("kept");
    let config = server.files_config(root, &[src], "gzip", "");
    let text = fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"ssh\"",
        &format!(
            "backup_destination = \"ssh\"\nkeep_local_path = \"{}\"",
            kept.display()
        ),
    );
    fs::write(&config, text).unwrap();
    (config, kept)
}

#[test]
fn keep_local_writes_both_copies_and_restores_from_either() {
    let Some(server) = Sshd::start_or_skip("keep_local_writes_both_copies") else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let (config, kept) = keep_local_config(&server, t.path(), &src);
    let d = Daemon::start(&config);
    d.ctl(&["check"]).success();
    d.ctl(&["run", "daily"]).success();

    let ls = d.ctl(&["--json", "ls"]).success().json();
    let copies = ls["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{ls}");
    let key = copies[0]["key"].as_str().unwrap().to_string();
    assert_eq!(copies[1]["key"], key.as_str());
    let mut locations: Vec<_> = copies
        .iter()
        .map(|c| c["location"].as_str().unwrap())
        .collect();
    locations.sort();
    assert_eq!(locations, ["local", "remote"]);
    let out = d.ctl(&["ls"]).success();
    assert!(
        out.stdout.contains("local") && out.stdout.contains("remote"),
        "{out:?}"
    );

    // Both copies exist, byte for byte the same (no encryption: the tee is after gzip).
    let remote = server.root.join(&key);
    let local = kept.join(&key);
    assert!(key.ends_with(".tar.gz"), "{key}");
    assert_eq!(fs::read(&remote).unwrap(), fs::read(&local).unwrap());

    // Both present: the local copy is used.
    let dst = t.path().join("r1");
    let out = restore(&d, &key, &dst).success();
    assert!(out.stdout.contains("from the local copy"), "{out:?}");
    assert_same_tree(&src, &dst);

    // The remote copy gone: restores from the local one.
    let aside = t.path().join("remote-aside");
    fs::rename(&remote, &aside).unwrap();
    let dst = t.path().join("r2");
    let out = restore(&d, &key, &dst).success();
    assert!(out.stdout.contains("from the local copy"), "{out:?}");
    assert_same_tree(&src, &dst);
    fs::rename(&aside, &remote).unwrap();

    // The local copy gone: restores from the server, and ls stops showing it.
    fs::rename(&local, t.path().join("local-aside")).unwrap();
    let dst = t.path().join("r3");
    let out = restore(&d, &key, &dst).success();
    assert!(out.stdout.contains("from the destination"), "{out:?}");
    assert_same_tree(&src, &dst);
    let ls = d.ctl(&["--json", "ls"]).success().json();
    assert_eq!(ls["copies"].as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls["copies"][0]["location"], "remote");

    // A damaged local copy fails its checksum; the restore falls back to the server.
    fs::rename(t.path().join("local-aside"), &local).unwrap();
    let mut bytes = fs::read(&local).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&local, bytes).unwrap();
    let dst = t.path().join("r4");
    let out = d.ctl(&[
        "--json",
        "restore",
        "file",
        &key,
        "--dst",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let job = &out.json()[0];
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("from the destination"),
        "{job}"
    );
    let warnings = job["warnings"].to_string();
    assert!(warnings.contains("checksum mismatch"), "{warnings}");
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_failed_local_write_fails_the_copy_and_nothing_is_kept_anywhere() {
    let Some(server) = Sshd::start_or_skip("a_failed_local_write") else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let (config, kept) = keep_local_config(&server, t.path(), &src);
    let d = Daemon::start(&config);
    // The host's folder in keep_local_path is a file: no local copy can be written.
    fs::create_dir_all(&kept).unwrap();
    fs::write(kept.join("testhost"), "in the way").unwrap();
    let out = d.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0, "{out:?}");
    let error = out.json()[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains(&kept.display().to_string()), "{error}");
    assert!(ls_keys(&d).is_empty());
    // The status was written before the upload began (the copy's pending marker):
    // the host's folder exists.
    assert!(server.root.join("testhost/twindb-status.d").is_dir());
    let on_server: Vec<_> = walk(&server.root.join("testhost"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("twindb-status"))
        .collect();
    assert!(on_server.is_empty(), "{on_server:?}");

    // And the other way round: the server cannot store it, so no local copy either.
    fs::remove_file(kept.join("testhost")).unwrap();
    let _ = fs::remove_dir_all(server.root.join("testhost/daily"));
    fs::write(server.root.join("testhost/daily"), "in the way").unwrap();
    let out = d.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0, "{out:?}");
    let error = out.json()[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("ssh://"), "{error}");
    assert!(kept.is_dir());
    assert!(walk(&kept).is_empty(), "{:?}", walk(&kept));
    assert!(ls_keys(&d).is_empty());
}

/// A killed twindbd's temp files, on the server and in keep_local_path, are gone once
/// the next twindbd has started (both through `Destination::clean_partials`); another
/// host's are not ours to remove.
#[test]
fn start_removes_partial_uploads_on_the_server_and_in_keep_local() {
    let Some(server) = Sshd::start_or_skip("start_removes_partial_uploads") else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let (config, kept) = keep_local_config(&server, t.path(), &src);
    let partial = "testhost/daily/files/.x.tar.gz.twindb-partial.1.0";
    let other = "otherhost/daily/files/.x.tar.gz.twindb-partial.1.0";
    for path in [
        server.root.join(partial),
        server.root.join(other),
        kept.join(partial),
    ] {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "half a copy").unwrap();
    }
    let d = Daemon::start(&config);
    // Answering means started: the socket listens before the start-up work is done.
    d.ctl(&["check"]).success();
    for path in [server.root.join(partial), kept.join(partial)] {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert!(
        server.root.join(other).exists(),
        "another host's upload was removed"
    );
    assert_eq!(d.stop(), 0);
}

/// Every file under `p`, which must exist: "nothing left" over a folder that is not
/// there proves nothing.
fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = fs::read_dir(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for e in entries.map(Result::unwrap) {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// The login shell starts once per stream, not once per status file: a backup job's
/// status reads and writes, commit, listing and retention run in the connection's
/// long-lived shells (the code before ran 30 commands per job, each starting the
/// account's shell and its rc files), and so do a restore's.
#[test]
fn a_job_starts_a_remote_command_per_stream_not_per_status_file() {
    let Some(mut server) = Sshd::start_or_skip("a_job_starts_a_remote_command_per_stream") else {
        return;
    };
    server.log_commands();
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = server.files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();

    let before = server.commands();
    d.ctl(&["run", "daily"]).success();
    let backup = server.commands() - before;
    let key = ls_keys(&d).pop().unwrap();
    let before = server.commands();
    restore(&d, &key, &t.path().join("restored")).success();
    let restored = server.commands() - before;
    assert_same_tree(&src, &t.path().join("restored"));
    // One stream each, and a shell if the connection had to be opened again.
    assert!(
        backup <= 2,
        "{backup} remote commands for a backup:\n{}",
        server.log()
    );
    assert!(
        restored <= 2,
        "{restored} remote commands for a restore:\n{}",
        server.log()
    );
    assert_eq!(d.stop(), 0);
}
