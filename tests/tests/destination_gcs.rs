//! The gcs destination against gcp-storage-emulator: the conformance suite, a server
//! stopped mid-upload, credentials, customer-supplied keys, resumed reads.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use twindb::destination::ErrorKind;
use twindb_tests::conformance::{self, generated, keys, sha256_of};
use twindb_tests::servers::{
    destination_from, service_account_key, GcsServer, TokenServer, BUCKET,
};

/// 8 MiB chunks: the 200 MiB round trip takes 25 resumable-upload requests.
const SMALL_CHUNKS: &str = "chunk_size = \"8MiB\"";

#[tokio::test(flavor = "multi_thread")]
async fn gcs_passes_the_conformance_suite() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let dest = destination_from("gcs", &server.config_section(SMALL_CHUNKS));
    conformance::run_all(dest, "conformance", 200 << 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_supplied_key_is_sent_and_data_round_trips() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    // The emulator does not encrypt, but must accept the headers on every request.
    let section = server.config_section(&format!(
        "{SMALL_CHUNKS}\ngc_encryption_key = \"{}\"",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    ));
    let dest = destination_from("gcs", &section);
    let (stream, want) = generated(20 << 20, 1 << 20, 3);
    dest.put("h/daily/files/k.tar", stream).await.unwrap();
    assert_eq!(sha256_of(dest.as_ref(), "h/daily/files/k.tar").await.0, want);
}

/// A stream that yields `len` bytes slowly, so the server can be stopped mid-way.
fn slow_stream(len: u64) -> twindb::pipeline::ByteStream {
    let (s, _) = generated(len, 1 << 20, 5);
    s.then(|c| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c
    })
    .boxed()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_stopped_mid_upload_fails_within_the_retry_bound_and_leaves_nothing() {
    let Some(mut server) = GcsServer::start() else {
        return;
    };
    let dest = destination_from("gcs", &server.config_section(SMALL_CHUNKS));
    let key = "h/daily/files/stopped.tar";
    let put = {
        let dest = dest.clone();
        tokio::spawn(async move { dest.put(key, slow_stream(200 << 20)).await })
    };
    // About two chunks in, kill the emulator.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.stop();
    let stopped = Instant::now();
    let err = put.await.unwrap().unwrap_err();
    let took = stopped.elapsed();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("gs://{BUCKET}")) && msg.contains(key), "{msg}");
    assert!(took < Duration::from_secs(45), "took {took:?} to fail");

    server.restart();
    assert!(keys(dest.as_ref(), "h/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_are_fetched_and_a_rejected_key_is_a_permission_error() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let t = twindb_tests::scratch();

    // A good key: gcp_auth signs a JWT grant, the token server answers, requests
    // carry the token (the emulator ignores it).
    let tokens = TokenServer::start(true);
    let key = service_account_key(t.path(), &tokens.uri());
    let section = server.config_section(&format!("gc_credentials_file = \"{}\"", key.display()));
    let dest = destination_from("gcs", &section);
    dest.check().await.unwrap();
    let (stream, want) = generated(1 << 20, 1 << 16, 4);
    dest.put("h/x", stream).await.unwrap();
    assert_eq!(sha256_of(dest.as_ref(), "h/x").await.0, want);

    // A revoked key: the token endpoint says invalid_grant.
    let refused = TokenServer::start(false);
    let key = service_account_key(t.path(), &refused.uri());
    let section = server.config_section(&format!("gc_credentials_file = \"{}\"", key.display()));
    let err = destination_from("gcs", &section).check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&format!("gs://{BUCKET}")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_fails_the_check() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let section = server
        .config_section("")
        .replace(&format!("bucket = \"{BUCKET}\""), "bucket = \"no-such-bucket\"");
    let err = destination_from("gcs", &section).check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_broken_by_a_server_restart_resumes_where_it_stopped() {
    let Some(mut server) = GcsServer::start() else {
        return;
    };
    let dest = destination_from("gcs", &server.config_section(SMALL_CHUNKS));
    let key = "h/daily/files/big.tar";
    let (stream, want) = generated(64 << 20, 1 << 20, 9);
    dest.put(key, stream).await.unwrap();

    let mut s = dest.get(key).await.unwrap();
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut restarted = false;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("read after {got} bytes: {e}"));
        got += chunk.len() as u64;
        hasher.update(&chunk);
        if !restarted && got > 4 << 20 {
            server.restart();
            restarted = true;
        }
    }
    assert!(restarted);
    assert_eq!(got, 64 << 20);
    assert_eq!(hex::encode(hasher.finalize()), want);
}
