//! A destination that dies or fills up in the middle of a copy, for every kind of
//! destination, through the real twindbd: the job fails with an error that names the
//! destination and the cause, `ls` lists nothing new, nothing unrecorded stays on the
//! destination once it is back, and the next run succeeds and restores byte-exact.
//!
//! The faults are real: "fills up" is a small tmpfs under the destination's storage
//! (the local path, the sshd's backup_dir, s3s-fs's data folder, Azurite's block
//! folder), which the kernel
//! fills with ENOSPC because it has less room than the copy; "dies" kills the server
//! once the copy's bytes are seen arriving on it. Nothing depends on how fast a copy
//! goes.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use twindb_tests::servers::{destination_from, AzServer, GcsServer, S3Server, BUCKET};
use twindb_tests::sshd::Sshd;
use twindb_tests::tmpfs::Tmpfs;
use twindb_tests::*;

/// The copy that meets the fault: larger than any tmpfs below, and large enough that
/// a server is stopped long before the copy could end.
const BIG: u64 = 64 << 20;
/// Room on a full destination: the status and a first small copy fit, `BIG` does not.
const SMALL_FS: &str = "8m";
/// Room once the destination is "back".
const LARGE_FS: &str = "512m";

/// A files backup of `src` (the usual tree) with gzip at level 1, to `destination`
/// configured by `sections` ("local" when `sections` is empty). gzip on purpose: an
/// unrecorded gzip copy has the name and shape of one of TwinDB Backup's, so a leak
/// would show in `ls` as a TwinDB copy.
struct Setup {
    t: tempfile::TempDir,
    src: PathBuf,
    config: PathBuf,
}

fn setup(destination: &str, sections: &str) -> Setup {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = if destination == "local" {
        files_config(t.path(), &[&src], "gzip", "")
    } else {
        files_config_to(t.path(), &[&src], "gzip", destination, sections)
    };
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("program = \"gzip\"\n", "program = \"gzip\"\nlevel = 1\n");
    fs::write(&config, text).unwrap();
    Setup { t, src, config }
}

impl Setup {
    /// Adds the file that makes the next copy too big for a full destination.
    fn add_big_file(&self) {
        write_random_file(&self.src.join("big.bin"), BIG, 11);
    }
}

/// One good copy before the fault: the fault must never cost a copy already listed.
fn first_copy(d: &Daemon) -> BTreeSet<String> {
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    assert_eq!(out[0]["state"], "succeeded", "{out}");
    let keys = listed(d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    // Copies are named by the second they start in.
    std::thread::sleep(Duration::from_millis(1100));
    keys
}

/// Queues a daily run and returns its job id.
fn start_run(d: &Daemon) -> u64 {
    let queued = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    queued["jobs"][0]["job"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("job id in {queued}"))
}

/// Waits for job `id` to end; asserts that it failed within `limit` (no hang) and
/// returns its error.
fn failed_job(d: &Daemon, id: u64, limit: Duration) -> String {
    let started = Instant::now();
    let out = d.ctl(&["--json", "job", &id.to_string(), "--follow"]);
    let took = started.elapsed();
    let job = out.json();
    assert_eq!(job["state"], "failed", "{job}\n{}", d.log_text());
    assert!(took < limit, "the job took {took:?} to fail:\n{job}");
    job["error"].as_str().unwrap_or_default().to_string()
}

/// Polls `cond` every 20 ms for at most `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The destination is back: the next run succeeds, its copy restores byte-exact, the
/// copies listed before the fault are still listed, and (its retention swept what
/// the failed job left) the destination holds exactly the listed copies.
fn next_run_succeeds(
    s: &Setup,
    d: &Daemon,
    before: &BTreeSet<String>,
    stored: impl Fn() -> BTreeSet<String>,
) {
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    assert_eq!(out[0]["state"], "succeeded", "{out}");
    let key = out[0]["copies"][0].as_str().unwrap().to_string();
    let keys = listed(d);
    assert!(keys.is_superset(before), "{keys:?} lost one of {before:?}");
    assert_eq!(keys.len(), before.len() + 1, "{keys:?}");
    assert!(keys.contains(&key), "{keys:?}");
    let dst = s.t.path().join("restored");
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&s.src, &dst);
    assert_eq!(
        stored(),
        keys,
        "the destination holds more than the listed copies:\n{}",
        d.log_text()
    );
}

fn assert_names(error: &str, destination: &str, causes: &[&str]) {
    assert!(
        error.contains(destination),
        "the error does not name {destination}: {error}"
    );
    assert!(
        causes.iter().any(|c| error.contains(c)),
        "the error does not say why ({causes:?}): {error}"
    );
}

/// While the destination is down `ls` cannot read its status: it fails, naming the
/// destination. Once it is back, `ls` lists what it listed before the fault.
fn down_then_back(d: &Daemon, destination: &str, back: impl FnOnce(), before: &BTreeSet<String>) {
    let out = d.ctl(&["ls"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(destination), "{out:?}");
    back();
    assert_eq!(&listed(d), before);
}

const NO_SPACE: &[&str] = &["No space left on device"];

#[test]
fn a_full_local_destination_fails_the_copy_and_the_next_run_works() {
    let s = setup("local", "");
    let backups = s.t.path().join("backups");
    let Some(fs_) = Tmpfs::mount(&backups, SMALL_FS) else {
        return;
    };
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    let error = failed_job(&d, id, Duration::from_secs(120));
    assert_names(&error, &format!("local:{}", backups.display()), NO_SPACE);
    assert_eq!(listed(&d), before);
    // The partial file is gone with the job: the space is free again at once.
    assert_eq!(files_under(&backups), before);

    fs_.resize(LARGE_FS);
    next_run_succeeds(&s, &d, &before, || files_under(&backups));
}

/// The ssh server's backup_dir on a small tmpfs: the remote `cat` fails with ENOSPC.
#[test]
fn a_full_ssh_destination_fails_the_copy_and_the_next_run_works() {
    let Some(server) = Sshd::start_or_skip("a_full_ssh_destination") else {
        return;
    };
    let Some(fs_) = Tmpfs::mount(&server.root, SMALL_FS) else {
        return;
    };
    let s = setup("ssh", &server.config_section());
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    let error = failed_job(&d, id, Duration::from_secs(120));
    assert_names(
        &error,
        &format!("ssh://{}@127.0.0.1:{}", server.user, server.port),
        NO_SPACE,
    );
    assert_eq!(listed(&d), before);

    fs_.resize(LARGE_FS);
    next_run_succeeds(&s, &d, &before, || files_under(&server.root));
}

/// The ssh server dies (sshd and its sessions killed) once part of the copy is in its
/// temp file on the server.
#[test]
fn an_ssh_destination_that_dies_mid_copy_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = Sshd::start_or_skip("an_ssh_destination_that_dies") else {
        return;
    };
    let s = setup("ssh", &server.config_section());
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    wait_for(
        "8 MiB of the copy on the server",
        Duration::from_secs(60),
        || {
            files_under(&server.root)
                .iter()
                .filter(|f| f.contains(".twindb-partial"))
                .any(|f| fs::metadata(server.root.join(f)).is_ok_and(|m| m.len() >= 8 << 20))
        },
    );
    server.stop();
    let error = failed_job(&d, id, Duration::from_secs(60));
    let dest = format!("ssh://{}@127.0.0.1:{}", server.user, server.port);
    assert_names(
        &error,
        &dest,
        &["connection", "Connection", "connecting", "lost"],
    );
    down_then_back(&d, &dest, || server.restart(), &before);
    next_run_succeeds(&s, &d, &before, || files_under(&server.root));
}

/// What s3s-fs holds: the objects of the bucket and the parts of unfinished
/// multipart uploads.
fn in_bucket(server: &S3Server) -> BTreeSet<String> {
    let mut all = files_under(&server.root().join(BUCKET));
    all.extend(server.pending_parts());
    all
}

/// s3s-fs's data folder on a small tmpfs: storing a part fails with ENOSPC on the
/// server. s3s-fs answers `InternalError` with no message (it logs the cause), as an
/// S3 server may: the error gives the server's own answer, all twindb can know.
#[test]
fn a_full_s3_destination_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    // Stopped while its folder changes under it.
    server.stop();
    let Some(fs_) = Tmpfs::mount(&server.root(), SMALL_FS) else {
        return;
    };
    fs::create_dir_all(server.root().join(BUCKET)).unwrap();
    server.restart();
    let s = setup("s3", &server.config_section("part_size = \"5MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    let error = failed_job(&d, id, Duration::from_secs(120));
    assert_names(
        &error,
        &format!("s3://{BUCKET}"),
        &["InternalError (HTTP 500)"],
    );
    assert_eq!(listed(&d), before);

    fs_.resize(LARGE_FS);
    next_run_succeeds(&s, &d, &before, || in_bucket(&server));
}

/// s3s-fs is killed once parts of the copy are stored.
#[test]
fn an_s3_destination_that_dies_mid_copy_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let s = setup("s3", &server.config_section("part_size = \"5MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    wait_for(
        "a part of the copy on the server",
        Duration::from_secs(60),
        || !server.pending_parts().is_empty(),
    );
    server.stop();
    let error = failed_job(&d, id, Duration::from_secs(60));
    let dest = format!("s3://{BUCKET}");
    assert_names(
        &error,
        &dest,
        &["connection", "Connection", "dispatch failure", "io error"],
    );
    down_then_back(&d, &dest, || server.restart(), &before);
    next_run_succeeds(&s, &d, &before, || in_bucket(&server));
}

/// The GCS emulator's storage folder on a small tmpfs: storing a chunk of the
/// resumable upload fails with ENOSPC on the server. The emulator answers by closing
/// the connection (its handler raised): the error says so, all twindb can know.
#[test]
fn a_full_gcs_destination_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = GcsServer::start() else {
        return;
    };
    server.stop();
    let Some(fs_) = Tmpfs::mount(&server.storage(), SMALL_FS) else {
        return;
    };
    server.restart();
    let s = setup("gcs", &server.config_section("chunk_size = \"8MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    let error = failed_job(&d, id, Duration::from_secs(120));
    assert_names(&error, &format!("gs://{BUCKET}"), &["connection closed"]);
    assert_eq!(listed(&d), before);

    fs_.resize(LARGE_FS);
    let dest = destination_from("gcs", &server.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    next_run_succeeds(&s, &d, &before, || {
        rt.block_on(conformance::keys(dest.as_ref(), "testhost/"))
            .into_iter()
            .filter(|k| !k.contains("twindb-status"))
            .collect()
    });
}

/// The GCS emulator is killed once the copy is under way.
#[test]
fn a_gcs_destination_that_dies_mid_copy_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = GcsServer::start() else {
        return;
    };
    let s = setup("gcs", &server.config_section("chunk_size = \"8MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    // The emulator shows nothing of an upload until it ends: the job's progress says
    // how much the destination has taken (two chunks sent, a third on its way).
    wait_for("16 MiB of the copy sent", Duration::from_secs(60), || {
        let job = d.ctl(&["--json", "job", &id.to_string()]).json();
        job["progress"]["bytes_out"].as_u64().unwrap_or(0) >= 16 << 20
    });
    server.stop();
    let error = failed_job(&d, id, Duration::from_secs(60));
    let dest = format!("gs://{BUCKET}");
    assert_names(
        &error,
        &dest,
        &["connection", "Connection", "connect", "io error"],
    );
    down_then_back(&d, &dest, || server.restart(), &before);
    let dest = destination_from("gcs", &server.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    next_run_succeeds(&s, &d, &before, || {
        rt.block_on(conformance::keys(dest.as_ref(), "testhost/"))
            .into_iter()
            .filter(|k| !k.contains("twindb-status"))
            .collect()
    });
}

/// What Azurite lists under the host: the committed blobs but the status.
fn az_copies(server: &AzServer) -> BTreeSet<String> {
    let dest = destination_from("az", &server.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(conformance::keys(dest.as_ref(), "testhost/"))
        .into_iter()
        .filter(|k| !k.contains("twindb-status"))
        .collect()
}

/// Azurite's folder on a small tmpfs: storing a block fails with ENOSPC on the server,
/// which answers `500 Internal Server Error` with no message, or, when the failed write
/// breaks the block's request stream first, resets the connection: the error gives that.
#[test]
fn a_full_az_destination_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = AzServer::start() else {
        return;
    };
    server.stop();
    let Some(fs_) = Tmpfs::mount(&server.extents(), SMALL_FS) else {
        return;
    };
    server.restart();
    let s = setup("az", &server.config_section("block_size = \"4MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    let error = failed_job(&d, id, Duration::from_secs(120));
    assert_names(
        &error,
        &format!("az://devstoreaccount1/{BUCKET}"),
        &["500 Internal Server Error", "Connection reset by peer"],
    );
    assert_eq!(listed(&d), before);

    fs_.resize(LARGE_FS);
    next_run_succeeds(&s, &d, &before, || az_copies(&server));
}

/// Azurite is stopped once blocks of the copy are stored.
#[test]
fn an_az_destination_that_dies_mid_copy_fails_the_copy_and_the_next_run_works() {
    let Some(mut server) = AzServer::start() else {
        return;
    };
    let s = setup("az", &server.config_section("block_size = \"4MiB\""));
    let d = Daemon::start(&s.config);
    let before = first_copy(&d);
    s.add_big_file();

    let id = start_run(&d);
    wait_for(
        "blocks of the copy on the server",
        Duration::from_secs(60),
        || server.stored_bytes() >= 8 << 20,
    );
    server.stop();
    let error = failed_job(&d, id, Duration::from_secs(60));
    let dest = format!("az://devstoreaccount1/{BUCKET}");
    assert_names(
        &error,
        &dest,
        &[
            "connection",
            "Connection",
            "connect",
            "error sending request",
        ],
    );
    down_then_back(&d, &dest, || server.restart(), &before);
    next_run_succeeds(&s, &d, &before, || az_copies(&server));
}
