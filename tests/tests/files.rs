//! Files backups through the real twindbd and twindbctl, proven by restoring them.

use std::fs;

use twindb_tests::*;

fn backup_and_restore(compression: &str, suffix: &str) {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], compression, "");
    let d = Daemon::start(&config);

    let out = d.ctl(&["--json", "run", "daily"]).success();
    let jobs = out.json();
    assert_eq!(jobs[0]["state"], "succeeded", "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert!(key.starts_with("testhost/daily/files/_tmp_tw"), "{key}");
    assert!(
        key.ends_with(&format!(".tar{suffix}")),
        "{key} should end with .tar{suffix}"
    );

    let dst = t.path().join("restored");
    let out = d
        .ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert!(out.stdout.contains("succeeded"), "{out:?}");
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

#[test]
fn round_trip_with_zstd() {
    backup_and_restore("zstd", ".zst");
}

#[test]
fn round_trip_with_gzip() {
    backup_and_restore("gzip", ".gz");
}

#[test]
fn round_trip_without_compression() {
    backup_and_restore("none", "");
}

#[test]
fn a_gzip_copy_restores_after_the_config_switched_to_zstd() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "gzip", "");
    let d = Daemon::start(&config);
    d.ctl(&["run", "weekly"]).success();
    assert_eq!(d.stop(), 0);

    // Same state and destination, new compression.
    files_config(t.path(), &[&src], "zstd", "level = 5");
    let d = Daemon::start(&config);
    d.ctl(&["run", "weekly"]).success();
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let gz = keys
        .iter()
        .find(|k| k.ends_with(".tar.gz"))
        .expect("the gzip copy is listed");
    assert!(keys.iter().any(|k| k.ends_with(".tar.zst")), "{keys:?}");

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", gz, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
}

#[test]
fn a_corrupted_copy_fails_with_a_checksum_error_and_leaves_nothing() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "none", "");
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);

    // Flip one byte in the middle of the stored copy.
    let stored = t.path().join("backups").join(&key);
    let mut bytes = fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&stored, bytes).unwrap();

    let dst = t.path().join("restored");
    let out = d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("checksum mismatch"), "{out:?}");
    assert!(
        !dst.exists(),
        "a failed restore must not leave {}",
        dst.display()
    );
    let leftovers: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_refuses_a_non_empty_destination_and_keeps_its_content() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);
    let dst = t.path().join("busy");
    fs::create_dir_all(&dst).unwrap();
    fs::write(dst.join("keep.me"), "precious").unwrap();
    let out = d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("not empty"), "{out:?}");
    assert_eq!(fs::read_to_string(dst.join("keep.me")).unwrap(), "precious");
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 1);

    // An existing empty folder is fine.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    d.ctl(&["restore", "file", &key, "--dst", empty.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &empty);
}

#[test]
fn several_folders_make_one_copy_each() {
    let t = scratch();
    let a = t.path().join("a");
    let b = t.path().join("b dir");
    make_tree(&a);
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("only.txt"), "b").unwrap();
    let config = files_config(t.path(), &[&a, &b], "zstd", "");
    let d = Daemon::start(&config);
    let out = d.ctl(&["run", "hourly"]).success();
    assert!(out.stdout.contains("stored 2 copies"), "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 2);
    for (dir, needle) in [(&a, "_a-"), (&b, "_b dir-")] {
        let key = keys
            .iter()
            .find(|k| k.contains(needle))
            .expect("copy of each dir");
        let dst = t.path().join(format!("r{needle}"));
        d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
            .success();
        assert_same_tree(dir, &dst);
    }
}

/// A lost host's copies restore on its replacement, which has another host name.
#[test]
fn another_hosts_copies_list_and_restore() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let old_root = t.path().join("old");
    fs::create_dir_all(&old_root).unwrap();
    let d = Daemon::start(&files_config(&old_root, &[&src], "zstd", ""));
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).pop().expect("one copy");
    assert_eq!(d.stop(), 0);

    let new_root = t.path().join("new");
    fs::create_dir_all(&new_root).unwrap();
    let config = files_config(&new_root, &[&src], "zstd", "");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("hostname = \"testhost\"", "hostname = \"newhost\"")
        .replace(
            &format!("{}/backups", new_root.display()),
            &format!("{}/backups", old_root.display()),
        );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    assert!(ls_keys(&d).is_empty(), "newhost has no copies of its own");
    let listed = d
        .ctl(&["--json", "ls", "--host", "testhost"])
        .success()
        .json();
    assert_eq!(listed["copies"][0]["key"], key.as_str(), "{listed}");

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);

    let bad = d.ctl(&["ls", "--host", ".."]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("not a host name"), "{bad:?}");
    assert_eq!(d.stop(), 0);
}

/// Hard links are stored once and restored as links again (as GNU tar does), and a
/// restore drill checks the restored names share one file. A file whose other link
/// is outside the folder is stored whole.
#[test]
fn hard_links_restore_as_links() {
    use std::os::unix::fs::MetadataExt;
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("a"), 300_000, 1);
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    fs::hard_link(src.join("a"), src.join("sub/c")).unwrap();
    let outside = t.path().join("outside");
    write_random_file(&outside, 1000, 2);
    fs::hard_link(&outside, src.join("y")).unwrap();
    let config = files_config(t.path(), &[&src], "none", "\n[verify]\nfiles = true\n");
    let d = Daemon::start(&config);
    let key = d.ctl(&["--json", "run", "daily"]).success().json()[0]["copies"][0]
        .as_str()
        .unwrap()
        .to_string();

    // Stored once: the copy is about one file's size, not three.
    let stored = fs::metadata(t.path().join("backups").join(&key))
        .unwrap()
        .len();
    assert!(stored < 2 * 300_000, "{stored} bytes stored");

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    let inode = |p: &str| {
        fs::metadata(restored_path(&dst, &src).join(p))
            .unwrap()
            .ino()
    };
    assert_eq!(inode("a"), inode("b"));
    assert_eq!(inode("a"), inode("sub/c"));
    assert_ne!(inode("a"), inode("y"));

    let drill = d.ctl(&["--json", "verify", "drill"]).success().json();
    assert_eq!(drill[0]["success"], true, "{drill}");
    assert_eq!(d.stop(), 0);
}
