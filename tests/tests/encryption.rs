//! Compression programs and GPG through the real twindbd and twindbctl: every program
//! with and without encryption, restored and compared; interop with the gpg command
//! line; wrong keys, missing keyrings and missing programs; cancel mid-program.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use twindb_tests::gpg::{have_programs, GpgKey};
use twindb_tests::pause::Pause;
use twindb_tests::*;

/// Each test asks only for the programs it runs: a host without gpg still runs the
/// plain chains (and under CI=true nothing is missing: have_programs fails the test).
const GPG: &[&str] = &["gpg", "gpgconf"];

/// What a round trip runs: the compression program when it is an external one (zstd
/// and gzip are built in), gpg when encrypting.
fn needed(program: &str, encrypted: bool) -> Vec<&str> {
    let mut programs = Vec::new();
    if ["pigz", "bzip2", "lbzip2"].contains(&program) {
        programs.push(program);
    }
    if encrypted {
        programs.extend(GPG);
    }
    programs
}

/// Backs up a tree with `program` (encrypted when asked), checks the key's suffixes and
/// the recorded chain, restores and compares.
fn round_trip(program: &str, suffix: &str, encrypted: bool) {
    if !have_programs("round_trip", &needed(program, encrypted)) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    write_random_file(&src.join("random.bin"), 3 << 20, 42);
    fs::write(src.join("text.csv"), "id,name,amount\n".repeat(50_000)).unwrap();
    let key = encrypted.then(|| GpgKey::generate("backup@twindb.test"));
    let extra = match &key {
        Some(k) => k.config_section(&t.path().join("host-gnupg")),
        None => String::new(),
    };
    let config = files_config(t.path(), &[&src], program, &extra);
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();

    let listed = d.ctl(&["--json", "ls"]).success().json();
    let copies = listed["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{listed}");
    let copy = &copies[0];
    let key_name = copy["key"].as_str().unwrap().to_string();
    let want_suffix = format!(".tar{suffix}{}", if encrypted { ".gpg" } else { "" });
    assert!(
        key_name.ends_with(&want_suffix),
        "{key_name} should end with {want_suffix}"
    );
    let mut want_chain: Vec<&str> = match program {
        "none" => vec![],
        p => vec![p],
    };
    if encrypted {
        want_chain.push("gpg");
    }
    assert_eq!(copy["modifiers"], serde_json::json!(want_chain), "{copy}");

    let stored = fs::read(t.path().join("backups").join(&key_name)).unwrap();
    if encrypted {
        // An OpenPGP message: public-key encrypted session key packet first (tag 1,
        // old or new packet format), and nothing of the plain text.
        assert!(
            stored[0] == 0x84 || stored[0] == 0x85 || stored[0] == 0xC1,
            "{:x}",
            stored[0]
        );
        assert!(!contains(&stored, b"id,name,amount"));
        // The recorded key, never key material.
        let status =
            fs::read_to_string(t.path().join("backups/testhost/twindb-status.json")).unwrap();
        assert!(
            status.contains(&key.as_ref().unwrap().fingerprint),
            "{status}"
        );
        assert!(!status.contains("PRIVATE KEY"));
    }

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &key_name, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

macro_rules! round_trips {
    ($($name:ident: $program:expr, $suffix:expr, $encrypted:expr;)*) => {
        $(#[test] fn $name() { round_trip($program, $suffix, $encrypted); })*
    };
}

round_trips! {
    zstd_plain: "zstd", ".zst", false;
    zstd_encrypted: "zstd", ".zst", true;
    gzip_plain: "gzip", ".gz", false;
    gzip_encrypted: "gzip", ".gz", true;
    pigz_plain: "pigz", ".gz", false;
    pigz_encrypted: "pigz", ".gz", true;
    bzip2_plain: "bzip2", ".bz", false;
    bzip2_encrypted: "bzip2", ".bz", true;
    lbzip2_plain: "lbzip2", ".bz", false;
    lbzip2_encrypted: "lbzip2", ".bz", true;
    none_plain: "none", "", false;
    none_encrypted: "none", "", true;
}

/// A copy twindb stored decrypts with plain `gpg --decrypt`, and unpacks with the
/// usual tools: no twindb needed to get the data back.
#[test]
fn a_twindb_copy_restores_with_gpg_zstd_and_tar() {
    if !have_programs(
        "a_twindb_copy_restores_with_gpg",
        &["gpg", "gpgconf", "zstd", "tar"],
    ) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let key = GpgKey::generate("dba@twindb.test");
    let extra = key.config_section(&t.path().join("host-gnupg"));
    let config = files_config(t.path(), &[&src], "zstd", &extra);
    let d = Daemon::start(&config);
    d.ctl(&["run", "weekly"]).success();
    let copy = ls_keys(&d).remove(0);
    assert!(copy.ends_with(".tar.zst.gpg"), "{copy}");
    let stored = t.path().join("backups").join(&copy);
    let dst = t.path().join("by-hand");
    fs::create_dir(&dst).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; gpg --homedir {home} --batch --decrypt {stored} | zstd -dc | tar -xpf - --numeric-owner -C {dst}",
            home = key.home().display(),
            stored = stored.display(),
            dst = dst.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&src, &dst);
}

/// Restore without `secret_keyring`: gpg uses the secret keys of `[gpg] homedir`.
#[test]
fn restore_decrypts_with_the_secret_keys_of_homedir() {
    if !have_programs("restore_decrypts_with_homedir", &["gpg", "gpgconf", "pigz"]) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let key = GpgKey::generate("home@twindb.test");
    let extra = format!(
        "\n[gpg]\nrecipient = \"{}\"\nkeyring = \"{}\"\nhomedir = \"{}\"\n",
        key.email,
        key.public_keyring().display(),
        key.home().display()
    );
    let config = files_config(t.path(), &[&src], "pigz", &extra);
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let copy = ls_keys(&d).remove(0);
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &copy, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
}

fn failed_with(out: &CtlOutput, needles: &[&str]) {
    assert_ne!(out.code, 0, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    eprintln!("as the operator sees it:\n{text}");
    for n in needles {
        assert!(text.contains(n), "the error must name {n:?}: {out:?}");
    }
}

#[test]
fn a_recipient_missing_from_the_keyring_fails_the_run_and_stores_nothing() {
    if !have_programs("a_recipient_missing", GPG) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let key = GpgKey::generate("real@twindb.test");
    let extra = key
        .config_section(&t.path().join("host-gnupg"))
        .replace("real@twindb.test", "typo@twindb.test");
    let config = files_config(t.path(), &[&src], "zstd", &extra);
    let d = Daemon::start(&config);
    let out = d.ctl(&["run", "daily"]);
    failed_with(
        &out,
        &["typo@twindb.test", key.public_keyring().to_str().unwrap()],
    );
    assert!(ls_keys(&d).is_empty());
    assert!(
        !t.path().join("backups/testhost/daily").exists(),
        "nothing is uploaded when the key check fails"
    );
}

#[test]
fn a_missing_keyring_fails_at_start_and_at_run_time() {
    if !have_programs("a_missing_keyring", GPG) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let key = GpgKey::generate("ring@twindb.test");
    let ring = t.path().join("ring.gpg");
    fs::copy(key.public_keyring(), &ring).unwrap();
    let extra = key.config_section(&t.path().join("host-gnupg")).replace(
        key.public_keyring().to_str().unwrap(),
        ring.to_str().unwrap(),
    );
    let config = files_config(t.path(), &[&src], "gzip", &extra);

    // Gone before start: a config error naming the key and the file.
    fs::rename(&ring, t.path().join("moved.gpg")).unwrap();
    let out = output_of(
        Command::new(bin("twindbd"))
            .arg("--config")
            .arg(&config)
            .output(),
    );
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("[gpg] keyring"), "{out:?}");
    assert!(out.stderr.contains(ring.to_str().unwrap()), "{out:?}");

    // Gone after start: the run fails naming it, stores nothing, and gpg did not
    // create an empty keyring in its place.
    fs::rename(t.path().join("moved.gpg"), &ring).unwrap();
    let d = Daemon::start(&config);
    fs::remove_file(&ring).unwrap();
    let out = d.ctl(&["run", "daily"]);
    failed_with(&out, &["[gpg] keyring", ring.to_str().unwrap()]);
    assert!(ls_keys(&d).is_empty());
    assert!(!ring.exists());
}

#[test]
fn restore_with_the_wrong_secret_key_names_the_key_and_leaves_nothing() {
    if !have_programs(
        "restore_with_the_wrong_secret_key",
        &["gpg", "gpgconf", "bzip2"],
    ) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let key = GpgKey::generate("right@twindb.test");
    let other = GpgKey::generate("other@twindb.test");
    let extra = key.config_section(&t.path().join("host-gnupg"));
    let config = files_config(t.path(), &[&src], "bzip2", &extra);
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    let copy = ls_keys(&d).remove(0);
    assert_eq!(d.stop(), 0);

    // Same destination, the other key's secret file.
    let wrong = extra.replace(
        key.secret_key_file().to_str().unwrap(),
        other.secret_key_file().to_str().unwrap(),
    );
    files_config(t.path(), &[&src], "bzip2", &wrong);
    let d = Daemon::start(&config);
    let dst = t.path().join("restored");
    let out = d.ctl(&["restore", "file", &copy, "--dst", dst.to_str().unwrap()]);
    failed_with(
        &out,
        &[
            "right@twindb.test",
            &key.fingerprint,
            other.secret_key_file().to_str().unwrap(),
        ],
    );
    assert!(!dst.exists());
}

/// A folder with symlinks to just the programs given, for a PATH without the others.
fn path_with(dir: &Path, programs: &[&str]) -> String {
    fs::create_dir_all(dir).unwrap();
    for p in programs {
        let real = twindb::process::find_program(p).unwrap();
        std::os::unix::fs::symlink(real, dir.join(p)).unwrap();
    }
    dir.display().to_string()
}

#[test]
fn a_missing_program_fails_at_start_and_at_run_time() {
    if !have_programs("a_missing_program", &["lbzip2"]) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "lbzip2", "");

    let out = output_of(
        Command::new(bin("twindbd"))
            .arg("--check-config")
            .arg("--config")
            .arg(&config)
            .env("PATH", "/nonexistent")
            .output(),
    );
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("[compression] program"), "{out:?}");
    assert!(
        out.stderr.contains("\"lbzip2\" is not installed"),
        "{out:?}"
    );

    // Installed at start, removed before the run.
    let bin_dir = t.path().join("bin");
    let path = path_with(&bin_dir, &["lbzip2"]);
    let d = Daemon::start_with_env(&config, &[("PATH", &path)]);
    fs::remove_file(bin_dir.join("lbzip2")).unwrap();
    let out = d.ctl(&["run", "daily"]);
    failed_with(&out, &["lbzip2", "not installed"]);
    assert!(ls_keys(&d).is_empty());
}

/// Pids of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            let comm = head
                .split_once(" (")
                .map(|(_, c)| c.to_string())
                .unwrap_or_default();
            out.push((child, comm));
        }
    }
    out
}

/// Cancelling a backup while bzip2 runs kills bzip2 and reaps it: no zombie, no hang.
#[test]
fn cancel_kills_and_reaps_the_compression_program() {
    if !have_programs("cancel_kills_the_program", &["bzip2"]) {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    // bzip2's output (random data does not shrink) is far larger than the pipes after
    // it, so while the job is held at its first stored chunk, bzip2 is blocked in the
    // middle of its stream: running, whatever the machine's speed.
    write_random_file(&src.join("big.bin"), 16 << 20, 77);
    let config = files_config(t.path(), &[&src], "bzip2", "");
    let pause = Pause::new(t.path(), "store.mid-put");
    let d = Daemon::start_with_env(&config, &pause.env());
    let pid = d.child.id();
    let out = d.ctl(&["--json", "run", "daily", "--no-wait"]).success();
    let id = out.json()["jobs"][0]["job"]["id"].as_u64().unwrap();

    pause.wait_reached(&d);
    assert!(
        children_of(pid).iter().any(|(_, c)| c == "bzip2"),
        "bzip2 should be running: {:?}",
        children_of(pid)
    );
    assert_eq!(d.job(id)["state"], "running");
    d.ctl(&["cancel", &id.to_string()]).success();
    let cancelled_at = Instant::now();
    pause.go();
    let job = d.wait_final(id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(20),
        "the cancel took {:?}",
        cancelled_at.elapsed()
    );
    assert!(
        children_of(pid).is_empty(),
        "no child process may survive the cancel: {:?}",
        children_of(pid)
    );
    assert!(ls_keys(&d).is_empty());
    assert_eq!(d.stop(), 0);
}
