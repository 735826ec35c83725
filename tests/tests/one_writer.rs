//! One writer per host status: a second twindbd with the same host name on the same
//! destination (a cloned VM, a copied config) is detected and refused with an error
//! that names the host and what to change, and the first one's copies stay whole;
//! `twindbctl takeover` hands the host to the second when the first is gone for good.

use std::fs;

use twindb_tests::*;

#[test]
fn a_second_daemon_with_the_same_host_name_is_refused() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let a_root = t.path().join("a");
    let b_root = t.path().join("b");
    fs::create_dir_all(&a_root).unwrap();
    fs::create_dir_all(&b_root).unwrap();
    let a_config = files_config(&a_root, &[&src], "zstd", "");
    let b_config = files_config(&b_root, &[&src], "zstd", "");
    // Both write to a's destination, as testhost.
    let text = fs::read_to_string(&b_config).unwrap().replace(
        &format!("{}/backups", b_root.display()),
        &format!("{}/backups", a_root.display()),
    );
    fs::write(&b_config, text).unwrap();

    let a = Daemon::start(&a_config);
    a.ctl(&["run", "daily"]).success();
    let a_copies = ls_keys(&a);
    assert_eq!(a_copies.len(), 1);

    let b = Daemon::start(&b_config);
    let out = b.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0, "the second daemon must not write: {out:?}");
    let job = out.json();
    let error = job[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("another twindbd writes the copies of host testhost"),
        "{job}"
    );
    assert!(error.contains("[daemon] hostname"), "{error}");
    assert!(error.contains("twindbctl takeover"), "{error}");
    assert!(
        b.log_text().contains("another twindbd writes the copies"),
        "said at start too"
    );

    // The first one goes on, its copies whole.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.ctl(&["run", "daily"]).success();
    let keys = ls_keys(&a);
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (i, key) in keys.iter().enumerate() {
        let dst = t.path().join(format!("restore-{i}"));
        a.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
            .success();
        assert_same_tree(&src, &dst);
    }

    // The first host is gone for good: the second takes its copies over.
    drop(a);
    let out = b.ctl(&["takeover"]).success();
    assert!(
        out.stdout
            .contains("now writes the copies of host testhost"),
        "{out:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.ctl(&["run", "daily"]).success();
    assert_eq!(ls_keys(&b).len(), 3);

    // And the first one, back by mistake, is now the one refused.
    let a = Daemon::start(&a_config);
    let out = a.ctl(&["--json", "run", "daily"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(ls_keys(&b).len(), 3);
}
