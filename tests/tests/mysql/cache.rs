//! The restore cache of `restore mysql --cache`, purged through twindbd.

use std::fs;
use std::path::Path;

use twindb_tests::{ctl, Daemon};

/// `cache purge` keeps entries younger than --older-than, is refused while a restore
/// uses the cache, then removes the entry.
pub fn purge_the_restore_cache(d: Daemon, config: &Path, root: &Path, cache: &Path, inc: &str) {
    let cache_arg = cache.to_str().unwrap();
    let out = d
        .ctl(&["cache", "purge", "--cache", cache_arg, "--older-than", "1d"])
        .success();
    assert!(
        out.stdout.contains("removed 0 entries (0 B), kept 1"),
        "{out:?}"
    );
    assert_eq!(fs::read_dir(cache).unwrap().count(), 1);
    d.stop();

    let pause = twindb_tests::pause::Pause::new(root, "restore.mid-stream");
    let d = Daemon::start_with_env(config, &pause.env());
    let restore = {
        let (socket, inc) = (d.socket.clone(), inc.to_string());
        let dst = root.join("restored-while-purging");
        let cache = cache_arg.to_string();
        std::thread::spawn(move || {
            let dst = dst.to_str().unwrap();
            ctl(
                &socket,
                &["restore", "mysql", &inc, "--dst", dst, "--cache", &cache],
            )
        })
    };
    pause.wait_reached(&d);
    let out = d.ctl(&["cache", "purge", "--cache", cache_arg]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("uses the cache"), "{out:?}");
    assert_eq!(fs::read_dir(cache).unwrap().count(), 1, "nothing removed");
    pause.go();
    let out = restore.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");

    let out = d
        .ctl(&["--json", "cache", "purge", "--cache", cache_arg])
        .success()
        .json();
    let removed = out["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{out}");
    assert!(removed[0]["bytes"].as_u64().unwrap() > 1 << 20, "{out}");
    assert_eq!(fs::read_dir(cache).unwrap().count(), 0);
    d.stop();
}
