//! The ssh destination against a real OpenSSH sshd on 127.0.0.1.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use twindb::destination::{Backoff, Destination, ErrorKind, Ssh, SshTuning as Tuning};
use twindb_tests::conformance::{self, generated, keys, sha256_of};
use twindb_tests::sshd::{self, Sshd};

/// Fails fast: the failure tests below wait for the whole retry bound.
fn quick() -> Backoff {
    Backoff {
        attempts: 3,
        initial: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_passes_the_conformance_suite() {
    let Some(server) = Sshd::start_or_skip("ssh_passes_the_conformance_suite") else {
        return;
    };
    let dest: Arc<dyn Destination> = Arc::new(server.destination());
    conformance::run_all(dest, "conformance", 200 << 20).await;
    // Nothing left behind on the server, not even temp files.
    let left: Vec<_> = walk(&server.root);
    assert!(left.is_empty(), "{left:?}");
}

/// Conditional status writes: compared under `flock` on the server.
#[tokio::test(flavor = "multi_thread")]
async fn ssh_small_writes_are_conditional() {
    let Some(server) = Sshd::start_or_skip("ssh_small_writes_are_conditional") else {
        return;
    };
    let dest: Arc<dyn Destination> = Arc::new(server.destination());
    conformance::conditional_writes(dest, "cas", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_spaces_and_quotes_round_trip_on_one_connection() {
    let Some(server) = Sshd::start_or_skip("keys_with_spaces_and_quotes") else {
        return;
    };
    let d = server.destination();
    let key = "h/daily/files/_srv_it's a \"dir\" $(x)-2026.tar.zst";
    let (stream, want) = generated(100_000, 4096, 5);
    d.put(key, stream).await.unwrap();
    assert_eq!(sha256_of(&d, key).await, (want, 100_000));
    assert_eq!(keys(&d, "h/daily/").await, vec![key.to_string()]);
    assert!(server.root.join(key).is_file());
    d.delete(key).await.unwrap();
    assert!(keys(&d, "h/").await.is_empty());
    // Every operation above shared one SSH connection.
    let logins = server.log().matches("Accepted publickey").count();
    assert_eq!(logins, 1, "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_and_reopened_on_demand() {
    let Some(server) = Sshd::start_or_skip("an_idle_connection_is_closed") else {
        return;
    };
    let d = Ssh::with_tuning(
        server.config(),
        Tuning {
            backoff: quick(),
            idle_close: Duration::from_secs(3),
            ..Tuning::default()
        },
    );
    d.write_small("h/a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    d.write_small("h/b", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(server.log().matches("Accepted publickey").count(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.connections() > 0 {
        assert!(Instant::now() < deadline, "not closed when idle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys(&d, "h/").await, ["h/a", "h/b"]);
    assert_eq!(server.log().matches("Accepted publickey").count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_skips_partial_uploads_and_other_hidden_names() {
    let Some(server) = Sshd::start_or_skip("listing_skips_partial_uploads") else {
        return;
    };
    let d = server.destination();
    let dir = server.root.join("h/daily/files");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.tar"), "a").unwrap();
    fs::write(dir.join(".a.tar.twindb-partial.1.0"), "partial").unwrap();
    fs::create_dir_all(server.root.join("h/.hidden")).unwrap();
    fs::write(server.root.join("h/.hidden/x"), "x").unwrap();
    let listed: Vec<_> = d.list("h/").map(|o| o.unwrap()).collect().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, "h/daily/files/a.tar");
    assert_eq!(listed[0].size, 1);
    assert!(keys(&d, "nothing/at/all/").await.is_empty());
    assert!(keys(&d, "h/daily/files/b").await.is_empty());

    // A killed twindbd's leftovers are removed at its next start.
    assert_eq!(d.clean_partials("h").await.unwrap(), 1);
    assert!(!dir.join(".a.tar.twindb-partial.1.0").exists());
    assert!(dir.join("a.tar").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_server_fails_the_upload_instead_of_hanging() {
    let Some(server) = Sshd::start_or_skip("a_stalled_server") else {
        return;
    };
    let d = Ssh::with_tuning(
        server.config(),
        Tuning {
            backoff: quick(),
            stall: Duration::from_secs(2),
            ..Tuning::default()
        },
    );
    let stream = endless();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut sent = 0u64;
    let stream = stream
        .inspect(move |chunk| {
            if let Ok(c) = chunk {
                sent += c.len() as u64;
                if sent >= 10 << 20 {
                    let _ = sent_tx.try_send(());
                }
            }
        })
        .boxed();
    let upload = {
        let d = d.clone();
        tokio::spawn(async move { d.put("h/daily/files/stuck.tar", stream).await })
    };
    sent_rx.recv().await.expect("10 MiB sent");
    server.freeze_sessions(true);
    let err = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("a stalled upload fails within 30 s")
        .unwrap()
        .unwrap_err();
    server.freeze_sessions(false);
    let msg = format!("{err:#}");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{msg}");
    assert!(msg.contains("no progress for 2 s"), "{msg}");
    assert!(msg.contains("h/daily/files/stuck.tar"), "{msg}");
    // A new connection is used afterwards; nothing is listed as a copy, and the temp
    // file was removed.
    assert!(keys(&d, "h/").await.is_empty());
    let left = walk(&server.root);
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_input_stream_removes_the_temp_file() {
    let Some(server) = Sshd::start_or_skip("a_failed_input_stream") else {
        return;
    };
    let d = server.destination();
    let err = d
        .put("h/x/obj", conformance::failing_after(5 << 20))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input, "{err:#}");
    let left = walk(&server.root);
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_permission_denied_naming_the_destination() {
    let Some(server) = Sshd::start_or_skip("a_wrong_key") else {
        return;
    };
    let other = server.dir.path().join("not_authorized");
    sshd::keygen(&other);
    let mut config = server.config();
    config.key = other;
    let d = server.destination_with(config, quick());
    let started = Instant::now();
    let err = d.check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err:#}");
    assert!(!err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    let msg = format!("{err:#}");
    assert!(msg.contains(&d.name()), "{msg}");
    assert!(msg.contains("refused key authentication"), "{msg}");
    let err = d.put("h/k", generated(10, 10, 1).0).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err:#}");
    assert!(format!("{err:#}").contains("h/k"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_host_key_is_refused_with_its_fingerprint() {
    let Some(server) = Sshd::start_or_skip("a_changed_host_key") else {
        return;
    };
    // known_hosts holds another key for this host and port.
    let impostor = server.dir.path().join("impostor");
    sshd::keygen(&impostor);
    let known = server.dir.path().join("known_hosts_changed");
    fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {}",
            server.port,
            fs::read_to_string(impostor.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let before = fs::read_to_string(&known).unwrap();
    for accept_new in [false, true] {
        let mut config = server.config();
        config.known_hosts = known.clone();
        config.accept_new_host_keys = accept_new;
        let d = server.destination_with(config, quick());
        let err = d.check().await.unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{msg}");
        assert!(msg.contains("HOST KEY CHANGED"), "{msg}");
        assert!(msg.contains(&server.host_key_fingerprint()), "{msg}");
        assert!(msg.contains(&d.name()), "{msg}");
        // A changed key is never written over, even with accept_new_host_keys.
        assert_eq!(fs::read_to_string(&known).unwrap(), before);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_host_key_is_refused_unless_accepted_explicitly() {
    let Some(server) = Sshd::start_or_skip("an_unknown_host_key") else {
        return;
    };
    let known = server.dir.path().join("known_hosts_empty");
    let mut config = server.config();
    config.known_hosts = known.clone();
    let d = server.destination_with(config.clone(), quick());
    let err = d.check().await.unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{msg}");
    assert!(msg.contains("is not in"), "{msg}");
    assert!(msg.contains(&server.host_key_fingerprint()), "{msg}");
    assert!(!known.exists());

    config.accept_new_host_keys = true;
    server
        .destination_with(config.clone(), quick())
        .check()
        .await
        .unwrap();
    let recorded = fs::read_to_string(&known).unwrap();
    assert!(
        recorded
            .trim_start()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", server.port)),
        "{recorded}"
    );
    // Now known: accepted without accept_new_host_keys, and recorded once.
    config.accept_new_host_keys = false;
    let d = server.destination_with(config, quick());
    d.check().await.unwrap();
    d.write_small("h/s", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(fs::read_to_string(&known).unwrap(), recorded);
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_listening_is_unreachable_within_the_retry_bound() {
    let Some(mut server) = Sshd::start_or_skip("nobody_listening") else {
        return;
    };
    server.stop();
    let d = server.destination_with(server.config(), quick());
    let started = Instant::now();
    let err = d.read_small("h/twindb-status.json").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err:#}");
    assert!(
        format!("{err:#}").contains("connecting to 127.0.0.1"),
        "{err:#}"
    );
    assert!(took >= quick().total_delay(), "{took:?}");
    assert!(
        took < quick().total_delay() + Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rsa_client_key_works_too() {
    let Some(server) = Sshd::start_or_skip("an_rsa_client_key") else {
        return;
    };
    let rsa = server.dir.path().join("id_rsa");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let authorized = server.dir.path().join("authorized_keys");
    let mut keys_text = fs::read_to_string(&authorized).unwrap();
    keys_text.push_str(&fs::read_to_string(rsa.with_extension("pub")).unwrap());
    fs::write(&authorized, keys_text).unwrap();
    let mut config = server.config();
    config.key = rsa;
    let d = server.destination_with(config, quick());
    d.write_small("h/small", Bytes::from_static(b"rsa"))
        .await
        .unwrap();
    assert_eq!(
        d.read_small("h/small").await.unwrap().as_deref(),
        Some(&b"rsa"[..])
    );
}

/// 1 MiB chunks for ever: more than is sent before the server goes away.
fn endless() -> twindb::pipeline::ByteStream {
    let chunk = Bytes::from(twindb_tests::pseudo_random(1 << 20, 9));
    futures::stream::repeat_with(move || Ok(chunk.clone())).boxed()
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(p) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A remote `sync` that fails (a disk error on the server) fails the put: the copy may
/// not be on disk, so it must not look stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_remote_sync_fails_the_put_and_leaves_nothing() {
    let Some(mut server) = Sshd::start_or_skip("a_failed_remote_sync_fails_the_put") else {
        return;
    };
    let bin = server.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    // Fails only on the folder flush (its argument list ends with backup_dir), so the
    // file flush before the rename passes and the error path after it is the one taken.
    let root = server.root.display().to_string();
    fs::write(
        bin.join("sync"),
        format!(
            "#!/bin/sh\nfor a; do last=$a; done\n\
             [ \"$last\" = '{root}' ] && {{ echo 'sync: Input/output error' >&2; exit 1; }}\n\
             exec /bin/sync \"$@\"\n"
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(bin.join("sync"))
        .status()
        .unwrap();
    server.set_session_path(&bin);
    let d = server.destination_with(server.config(), quick());
    let (stream, _) = generated(100_000, 4096, 5);
    let err = d
        .put("h/daily/files/a.tar", stream)
        .await
        .expect_err("a failed sync must fail the put");
    assert!(err.to_string().contains("sync"), "{err}");
    assert!(keys(&d, "h/").await.is_empty());
    let left = walk(&server.root);
    assert!(left.is_empty(), "{left:?}");

    // And a sync that fails before the rename (every call fails).
    fs::write(
        bin.join("sync"),
        "#!/bin/sh\necho 'sync: Input/output error' >&2\nexit 1\n",
    )
    .unwrap();
    let (stream, _) = generated(100_000, 4096, 6);
    let err = d.put("h/daily/files/b.tar", stream).await.unwrap_err();
    assert!(err.to_string().contains("sync"), "{err}");
    assert!(keys(&d, "h/").await.is_empty());
    assert!(walk(&server.root).is_empty());
}

// Resume after a restart, missing bucket or folder, server stopped mid-upload, cancel,
// clean_partials after a kill, share: the shared fault suite (conformance.rs).
twindb_tests::fault_suite!(twindb_tests::servers::SshHarness::start("ssh_fault_suite");
    // A read broken by an sshd restart is not resumed (one `cat` per get).
    missing_root,
    server_stopped_mid_upload,
    cancel_leaves_nothing,
    clean_partials_after_a_kill,
    share,
);

/// The cipher the server logged for the client's traffic (sshd at LogLevel DEBUG1).
fn negotiated_cipher(server: &Sshd) -> String {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("kex: client->server cipher:"))
        .unwrap_or_else(|| panic!("no cipher in the sshd log:\n{log}"));
    line.split("cipher: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

/// On a CPU with AES instructions twindb asks for AES-GCM (several times the bytes per
/// CPU second of chacha20-poly1305 there, on both ends); a server that allows only
/// chacha20-poly1305 or only AES-GCM still gets byte-exact copies.
#[tokio::test(flavor = "multi_thread")]
async fn aes_gcm_is_preferred_on_aes_hardware_and_any_openssh_cipher_works() {
    let Some(mut server) = Sshd::start_or_skip("aes_gcm_is_preferred") else {
        return;
    };
    server.add_config("LogLevel DEBUG1");
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpu
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let aes = flags.contains(&"aes") && (flags.contains(&"pclmulqdq") || flags.contains(&"pmull"));
    let round_trip = |server: &Sshd, key: &'static str| {
        let d = server.destination();
        async move {
            let (stream, want) = generated(3 << 20, 64 << 10, 9);
            d.put(key, stream).await.unwrap();
            assert_eq!(sha256_of(&d, key).await, (want, 3 << 20));
        }
    };
    round_trip(&server, "h/default").await;
    let want = if aes {
        "aes128-gcm@openssh.com"
    } else {
        "chacha20-poly1305@openssh.com"
    };
    assert_eq!(negotiated_cipher(&server), want);

    for only in [
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
    ] {
        let mut restricted = Sshd::start();
        restricted.add_config(&format!("LogLevel DEBUG1\nCiphers {only}"));
        round_trip(&restricted, "h/restricted").await;
        assert_eq!(negotiated_cipher(&restricted), only);
    }
}
