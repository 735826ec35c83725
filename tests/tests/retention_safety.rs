//! Retention never deletes what a restore reads: while a restore is queued or running,
//! retention deletes nothing (it catches up at its next run), and it records its
//! deletions before the objects go (tests/tests/crash.rs kills it in between).

use std::fs;
use std::time::{Duration, Instant};

use twindb_tests::*;

#[test]
fn retention_waits_while_a_restore_reads_the_copy() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let pause = t.path().join("pause");
    fs::create_dir_all(&pause).unwrap();
    let config = files_config(
        t.path(),
        &[&src],
        "zstd",
        "\n[retention]\ndaily_copies = 1\n",
    );
    let d = Daemon::start_with_env(
        &config,
        &[
            ("TWINDB_PAUSE_AT", "restore.mid-stream"),
            ("TWINDB_PAUSE_DIR", pause.to_str().unwrap()),
        ],
    );
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    let old = out[0]["copies"][0].as_str().unwrap().to_string();

    // A restore of the old copy, held in the middle of its stream.
    let dst = t.path().join("restored");
    let restore = {
        let (socket, old, dst) = (d.socket.clone(), old.clone(), dst.clone());
        std::thread::spawn(move || {
            ctl(
                &socket,
                &["restore", "file", &old, "--dst", dst.to_str().unwrap()],
            )
        })
    };
    let reached = pause.join("restore.mid-stream.reached");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reached.exists() {
        assert!(
            Instant::now() < deadline,
            "the restore did not start:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A new daily copy: one daily is kept, but the old one is being read.
    std::thread::sleep(Duration::from_millis(1100));
    d.ctl(&["run", "daily"]).success();
    let keys = ls_keys(&d);
    assert!(
        keys.contains(&old),
        "deleted while a restore read it: {keys:?}"
    );
    assert!(t.path().join("backups").join(&old).exists());
    assert!(
        d.log_text()
            .contains("retention deletes nothing while a restore or verify is queued or running"),
        "{}",
        d.log_text()
    );

    fs::write(pause.join("restore.mid-stream.go"), b"").unwrap();
    let out = restore.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_same_tree(&src, &dst);

    // With the restore done, the next retention catches up.
    d.ctl(&["retention"]).success();
    let keys = ls_keys(&d);
    assert!(!keys.contains(&old), "{keys:?}");
    assert_eq!(keys.len(), 1);
    assert!(!t.path().join("backups").join(&old).exists());
}
