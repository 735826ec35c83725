//! twindbd as an operator meets it: bad configs, kills, concurrent runs, the socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::pause::Pause;
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

/// Starts a daily run without waiting for it; returns the job's id.
fn run_no_wait(d: &Daemon) -> u64 {
    let out = d.ctl(&["--json", "run", "daily", "--no-wait"]).success();
    out.json()["jobs"][0]["job"]["id"].as_u64().unwrap()
}

/// Every copy under `root` whose name says it is an upload in progress. The status
/// file is left out: a running daemon rewrites it through temp files of its own.
fn partials(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|f| f.contains("twindb-partial") && !f.contains("twindb-status"))
        .collect()
}

fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

/// `text` without the terminal colour codes tracing puts around field names.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn sigkill_mid_backup_leaves_no_copy_and_the_next_run_works() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "zstd", "");
    // The job is held with its first chunk at the destination: killed mid-upload.
    let pause = Pause::new(t.path(), "store.mid-put");
    let d = Daemon::start_with_env(&config, &pause.env());
    let id = run_no_wait(&d);
    pause.wait_reached(&d);
    assert_eq!(d.job(id)["state"], "running");
    let backups = t.path().join("backups");
    assert!(
        !partials(&backups).is_empty(),
        "the upload should be in progress: {:?}",
        files_under(&backups)
    );
    d.kill();

    let d = Daemon::start(&config);
    assert!(ls_keys(&d).is_empty(), "a killed backup must not be listed");
    assert!(
        partials(&backups).is_empty(),
        "restart cleans partial uploads: {:?}",
        partials(&backups)
    );
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
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "zstd", "");
    let pause = Pause::new(t.path(), "store.mid-put");
    let d = Daemon::start_with_env(&config, &pause.env());
    let id = run_no_wait(&d);

    // Running, not queued: started, with its first chunk at the destination.
    pause.wait_reached(&d);
    let job = d.job(id);
    assert_eq!(job["state"], "running", "{job}");
    assert!(job["started_at"].is_string(), "{job}");
    let backups = t.path().join("backups");
    assert!(
        !partials(&backups).is_empty(),
        "the upload should be in progress: {:?}",
        files_under(&backups)
    );

    // SIGTERM while it is held; let it go on only once the daemon has cancelled it,
    // so that it cannot simply finish first.
    d.term();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !without_colours(&d.log_text())
        .lines()
        .any(|l| l.contains("cancel requested") && l.contains(&format!("job={id}")))
    {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not cancel the running job {id}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pause.go();
    assert_eq!(d.wait_exit(), 0);

    // No partial upload and no copy left, without a restart's cleanup.
    let left: Vec<String> = files_under(&backups)
        .into_iter()
        .filter(|f| !f.contains("twindb-status"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let d = Daemon::start(&config);
    assert!(ls_keys(&d).is_empty());
    let job = d.job(id);
    assert_eq!(job["state"], "cancelled", "{job}");
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
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "zstd", "");
    let pause = Pause::new(t.path(), "store.before-put");
    let d = Daemon::start_with_env(&config, &pause.env());
    let first = run_no_wait(&d);
    // The first is held while running: it left the queue, so the next two are a
    // queued job and its duplicate.
    pause.wait_reached(&d);
    assert_eq!(d.job(first)["state"], "running");
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
    let second = second["jobs"][0]["job"]["id"].as_u64().unwrap();
    for id in [first, second] {
        d.ctl(&["cancel", &id.to_string()]).success();
    }
    // The running one stops at its next step once let go.
    pause.go();
    for id in [first, second] {
        let job = d.wait_final(id);
        assert_eq!(job["state"], "cancelled", "{job}");
    }
    assert!(ls_keys(&d).is_empty());
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
