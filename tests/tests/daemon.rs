//! twindbd as an operator meets it: bad configs, kills, concurrent runs, the socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::*;

fn check_config(path: &std::path::Path) -> CtlOutput {
    output_of(
        Command::new(bin("twindbd"))
            .arg("--check-config")
            .arg("--config")
            .arg(path)
            .output(),
    )
}

#[test]
fn config_errors_name_the_key_and_nothing_runs() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let good = files_config(t.path(), &[&src], "zstd", "");
    assert_eq!(check_config(&good).code, 0, "{:?}", check_config(&good));
    let text = fs::read_to_string(&good).unwrap();

    let cases = [
        (
            "unknown key",
            text.replace("program = \"zstd\"", "program = \"zstd\"\nlevle = 3"),
            "levle",
        ),
        (
            "wrong type",
            text.replace("run_at_start = false", "run_at_start = \"no\""),
            "run_at_start",
        ),
        (
            "missing backup dir",
            text.replace(
                &format!("{:?}", src.display().to_string()),
                "\"/nonexistent/twindb-src\"",
            ),
            "backup_dirs",
        ),
        (
            "bad program",
            text.replace("program = \"zstd\"", "program = \"rar\""),
            "program",
        ),
    ];
    for (what, bad, key) in cases {
        let path = t.path().join(format!("{}.toml", what.replace(' ', "-")));
        fs::write(&path, &bad).unwrap();
        let out = check_config(&path);
        assert_eq!(out.code, 78, "{what}: {out:?}");
        assert!(
            out.stderr.contains(key),
            "{what}: the error must name {key}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(path.to_str().unwrap()),
            "{what}: the error must name the file: {}",
            out.stderr
        );

        // Started for real, it refuses too, before creating anything.
        let run = output_of(
            Command::new(bin("twindbd"))
                .arg("--config")
                .arg(&path)
                .output(),
        );
        assert_eq!(run.code, 78, "{what}: {run:?}");
        assert!(run.stderr.contains(key), "{what}: {}", run.stderr);
        assert!(
            !t.path().join("state").exists(),
            "{what}: nothing may run on a bad config"
        );
        assert!(!t.path().join("twindbd.sock").exists(), "{what}");
    }
}

#[test]
fn sigkill_mid_backup_leaves_no_copy_and_the_next_run_works() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    // Large and incompressible enough that the backup is still running when killed.
    for i in 0..6 {
        write_random_file(&src.join(format!("big{i}.bin")), 64 << 20, i);
    }
    let config = files_config(t.path(), &[&src], "zstd", "level = 19\nthreads = 1");
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily", "--no-wait"]).success();
    let id = out.json()["jobs"][0]["job"]["id"].as_u64().unwrap();

    // Wait until bytes are flowing, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = d.ctl(&["--json", "job", &id.to_string()]).success().json();
        if job["progress"]["bytes_out"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            job["state"] != "succeeded",
            "the backup finished before the kill; make it bigger"
        );
        assert!(Instant::now() < deadline, "backup never started: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let partials = |root: &std::path::Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).into_iter().flatten() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().contains("twindb-partial") {
                    found.push(e.path().display().to_string());
                }
            }
        }
        found
    };
    assert!(
        !partials(&t.path().join("backups")).is_empty(),
        "the upload should be in progress"
    );
    d.kill();

    let d = Daemon::start(&config);
    assert!(ls_keys(&d).is_empty(), "a killed backup must not be listed");
    assert!(
        partials(&t.path().join("backups")).is_empty(),
        "restart cleans partial uploads"
    );

    // A small source now, so the next run is quick.
    for i in 0..6 {
        fs::remove_file(src.join(format!("big{i}.bin"))).unwrap();
    }
    make_tree(&src.join("tree"));
    d.ctl(&["run", "daily"]).success();
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1);
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &keys[0], "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
}

#[test]
fn sigterm_cancels_the_running_backup_and_exits_zero() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..4 {
        write_random_file(&src.join(format!("big{i}.bin")), 64 << 20, 100 + i);
    }
    let config = files_config(t.path(), &[&src], "zstd", "level = 19\nthreads = 1");
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily", "--no-wait"]).success();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), 0);
    let d = Daemon::start(&config);
    assert!(ls_keys(&d).is_empty());
    let jobs = d.ctl(&["--json", "jobs"]).success().json();
    assert_eq!(jobs["jobs"][0]["state"], "cancelled", "{jobs}");
}

#[test]
fn two_runs_at_once_both_report_the_outcome() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    write_random_file(&src.join("some.bin"), 8 << 20, 9);
    let config = files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);
    let spawn = || {
        Command::new(bin("twindbctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(["run", "daily"])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (output_of(a.join().unwrap()), output_of(b.join().unwrap()))
    });
    for out in [&a, &b] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("daily backup files: succeeded"),
            "{out:?}"
        );
    }
    // Either the second joined the first (coalesced, one copy) or it was queued behind it.
    let keys = ls_keys(&d);
    let coalesced = a.stdout.contains("already queued") || b.stdout.contains("already queued");
    assert_eq!(
        keys.len(),
        if coalesced { 1 } else { 2 },
        "{keys:?}\n{a:?}\n{b:?}"
    );
    for key in &keys {
        let dst = t.path().join(format!(
            "r-{}",
            key.len() + keys.iter().position(|k| k == key).unwrap()
        ));
        d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
            .success();
        assert_same_tree(&src, &dst);
    }
}

#[test]
fn a_queued_duplicate_is_coalesced() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    write_random_file(&src.join("big.bin"), 96 << 20, 5);
    let config = files_config(t.path(), &[&src], "zstd", "level = 19\nthreads = 1");
    let d = Daemon::start(&config);
    let first = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    // The first is running now; the next two are a queued job and its duplicate.
    std::thread::sleep(Duration::from_millis(300));
    let second = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    let third = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    assert_eq!(second["jobs"][0]["coalesced"], false);
    assert_eq!(third["jobs"][0]["coalesced"], true, "{third}");
    assert_eq!(
        second["jobs"][0]["job"]["id"],
        third["jobs"][0]["job"]["id"]
    );
    for j in [&first, &second] {
        let id = j["jobs"][0]["job"]["id"].as_u64().unwrap().to_string();
        d.ctl(&["cancel", &id]).success();
    }
    let id = second["jobs"][0]["job"]["id"].as_u64().unwrap().to_string();
    let job = d.ctl(&["--json", "job", &id]).json();
    assert_eq!(job["state"], "cancelled");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let config = files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start(&config);
    // Same state_dir, another socket.
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("twindbd.sock", "other.sock");
    let other = t.path().join("other.toml");
    fs::write(&other, text).unwrap();
    let out = output_of(
        Command::new(bin("twindbd"))
            .arg("--config")
            .arg(&other)
            .output(),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("another twindbd"), "{out:?}");
    assert!(
        out.stderr.contains(&d.child.id().to_string()),
        "the message names the pid: {out:?}"
    );
}

#[test]
fn twindbctl_says_when_the_daemon_is_not_running() {
    let t = scratch();
    let out = ctl(&t.path().join("none.sock"), &["status"]);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("twindbd is not running"), "{out:?}");
    assert!(out.stderr.contains("none.sock"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
}

/// Needs root (to create users): CI runs as root.
#[test]
fn the_socket_refuses_users_outside_socket_group() {
    if !nix::unistd::geteuid().is_root() {
        assert!(!in_ci(), "this test needs root");
        eprintln!("skipped: not root");
        return;
    }
    let user = "twindb-stranger";
    let member = "twindb-member";
    let group = "twindb-ops";
    let sh = |args: &[&str]| Command::new(args[0]).args(&args[1..]).output().unwrap();
    sh(&["groupadd", "-f", group]);
    for u in [user, member] {
        if !sh(&["id", u]).status.success() {
            let out = sh(&["useradd", "--no-create-home", "--shell", "/bin/sh", u]);
            assert!(out.status.success(), "useradd: {out:?}");
        }
    }
    sh(&["usermod", "-aG", group, member]);

    let t = scratch();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let config = files_config(t.path(), &[&src], "zstd", "");
    let text = fs::read_to_string(&config).unwrap().replace(
        "[daemon]\n",
        &format!("[daemon]\nsocket_group = \"{group}\"\n"),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    let as_user = |u: &str| {
        output_of(
            Command::new("runuser")
                .args(["-u", u, "--"])
                .arg(bin("twindbctl"))
                .arg("--socket")
                .arg(&d.socket)
                .arg("status")
                .output(),
        )
    };

    // A member of socket_group gets in (a supplementary group, as `usermod -aG` makes it).
    let out = as_user(member);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("twindbd"), "{out:?}");

    // The socket's mode keeps a stranger out...
    let out = as_user(user);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    // ...and so does the peer check, should the socket be opened up by mistake.
    fs::set_permissions(&d.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_user(user);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("may not use twindbd"), "{out:?}");
}
