//! The gcs destination against gcp-storage-emulator: the conformance suite, a server
//! stopped mid-upload, credentials, customer-supplied keys, resumed reads. The emulator
//! ignores keys and tokens: a recording proxy shows what the client sent, and the
//! token endpoint verifies the signed grants.

use sha2::{Digest, Sha256};
use twindb::destination::ErrorKind;
use twindb_tests::conformance::{self, generated, keys, sha256_of};
use twindb_tests::proxy::{Proxy, Seen};
use twindb_tests::ranged;
use twindb_tests::servers::{destination_from, destination_with, GcsServer, TokenServer, BUCKET};

/// 8 MiB chunks: the 200 MiB round trip takes 25 resumable-upload requests.
const SMALL_CHUNKS: &str = "chunk_size = \"8MiB\"";

#[tokio::test(flavor = "multi_thread")]
async fn gcs_passes_the_conformance_suite() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let dest = destination_from("gcs", &server.config_section(SMALL_CHUNKS));
    conformance::run_all(dest.clone(), "conformance", 200 << 20).await;
    // The emulator sends no generation and ignores ifGenerationMatch: the writes
    // still work; the conflict itself is untested here (docs/safety.md).
    conformance::conditional_writes(dest, "conformance", false).await;
}

/// The emulator tells no generation (real GCS does), so its reads are one stream, still
/// byte-exact, also across a restart. No replacement mid-read here: the emulator serves one request at a time,
/// so a write waits for the read that waits for it.
#[tokio::test(flavor = "multi_thread")]
async fn large_objects_read_byte_exact_with_several_ranges_configured() {
    let Some(mut server) = GcsServer::start() else {
        return;
    };
    let dest = destination_with(
        "gcs",
        "download_ranges = 3",
        &server.config_section(SMALL_CHUNKS),
    );
    ranged::byte_exact(dest.clone(), "ranged").await;
    ranged::resumes_after_restart(dest, "ranged", &mut || server.restart()).await;
}

/// A request that writes or reads object data: a media upload, a resumable session's
/// start, chunk or status query, a download.
fn carries_object_data(r: &Seen) -> bool {
    r.target.starts_with("/upload/") || r.target.contains("alt=media")
}

/// The emulator ignores customer-supplied keys, so the proof is what reached it: through
/// a recording proxy, every request that writes or reads object data carries this key's
/// three headers. One chunk is refused on the way, so the retry's status query and
/// resend are among them.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_supplied_key_goes_with_every_upload_chunk_and_read() {
    use base64::Engine as _;
    let Some(server) = GcsServer::start() else {
        return;
    };
    let proxy = Proxy::in_front_of(&server.endpoint());
    let raw: Vec<u8> = (0..32).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (key, key_sha) = (b64.encode(&raw), b64.encode(Sha256::digest(&raw)));
    let section = server
        .config_section(&format!("{SMALL_CHUNKS}\ngc_encryption_key = \"{key}\""))
        .replace(&server.endpoint(), &proxy.endpoint());
    let dest = destination_from("gcs", &section);

    // The second chunk starts at 8 MiB.
    proxy.refuse_once(|r| {
        r.method == "PUT"
            && r.header("content-range")
                .is_some_and(|c| c.starts_with("bytes 8388608-"))
    });
    let (stream, want) = generated(20 << 20, 1 << 20, 3);
    dest.put("h/daily/files/k.tar", stream).await.unwrap();
    assert_eq!(
        sha256_of(dest.as_ref(), "h/daily/files/k.tar").await.0,
        want
    );
    let (stream, want) = generated(1000, 1000, 4);
    dest.put("h/daily/files/small.tar", stream).await.unwrap();
    assert_eq!(
        sha256_of(dest.as_ref(), "h/daily/files/small.tar").await.0,
        want
    );
    let status = bytes::Bytes::from_static(b"{\"copies\":[]}");
    dest.write_small("h/status", status.clone()).await.unwrap();
    assert_eq!(dest.read_small("h/status").await.unwrap(), Some(status));

    let seen: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(carries_object_data)
        .collect();
    for r in &seen {
        let headers = (
            r.header("x-goog-encryption-algorithm"),
            r.header("x-goog-encryption-key"),
            r.header("x-goog-encryption-key-sha256"),
        );
        assert_eq!(
            headers,
            (Some("AES256"), Some(key.as_str()), Some(key_sha.as_str())),
            "{} {} (content-range {:?}) does not carry the key",
            r.method,
            r.target,
            r.header("content-range")
        );
    }
    // Every kind of such request was among them.
    let count = |what: &dyn Fn(&Seen) -> bool| seen.iter().filter(|r| what(r)).count();
    let range = |r: &Seen| r.header("content-range").unwrap_or_default().to_string();
    let kinds = [
        count(&|r| r.target.contains("uploadType=media")),
        count(&|r| r.method == "POST" && r.target.contains("uploadType=resumable")),
        count(&|r| r.method == "PUT" && range(r).starts_with("bytes ") && range(r) != "bytes */*"),
        count(&|r| r.answer.contains(" 503 ")),
        count(&|r| range(r) == "bytes */*"),
        count(&|r| r.method == "GET"),
    ];
    // media: small.tar and the status; chunks: 3, and the refused one again; reads: 3.
    assert_eq!(kinds, [2, 1, 4, 1, 1, 3], "{seen:#?}");
}

/// The emulator ignores tokens, so the proof is on both sides of it: the token endpoint
/// verifies each signed grant (signature, iss, aud, scope, times), and through a
/// recording proxy every storage request carries the token it issued.
#[tokio::test(flavor = "multi_thread")]
async fn service_account_grants_are_signed_and_every_request_carries_the_token() {
    let Some(server) = GcsServer::start() else {
        return;
    };
    let t = twindb_tests::scratch();
    let proxy = Proxy::in_front_of(&server.endpoint());
    let with_key = |key: &std::path::Path| {
        server
            .config_section(&format!(
                "{SMALL_CHUNKS}\ngc_credentials_file = \"{}\"",
                key.display()
            ))
            .replace(&server.endpoint(), &proxy.endpoint())
    };

    let tokens = TokenServer::start(true);
    let dest = destination_from("gcs", &with_key(&tokens.service_account_key(t.path())));
    if let Err(e) = dest.check().await {
        panic!("{e}; the token endpoint saw {:?}", tokens.grants());
    }
    // A media upload and a resumable one of two chunks, read back, listed, deleted.
    for (key, len) in [("h/small", 1 << 20), ("h/big", 9 << 20)] {
        let (stream, want) = generated(len, 1 << 20, 4);
        dest.put(key, stream).await.unwrap();
        assert_eq!(sha256_of(dest.as_ref(), key).await.0, want);
    }
    assert_eq!(keys(dest.as_ref(), "h/").await, ["h/big", "h/small"]);
    dest.delete("h/small").await.unwrap();

    let grants = tokens.grants();
    assert!(!grants.is_empty(), "no token was asked for");
    for g in &grants {
        let claims = g
            .as_ref()
            .unwrap_or_else(|why| panic!("grant refused: {why}"));
        assert_eq!(claims["iss"], "twindb@twindb-test.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], tokens.uri().as_str());
    }
    let seen = proxy.seen();
    // check, 2 uploads (1 + session + 2 chunks), 2 reads, list, delete.
    assert!(seen.len() >= 9, "{seen:#?}");
    let bearer = format!("Bearer {}", tokens.token());
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some(bearer.as_str()),
            "{} {} does not carry the issued token",
            r.method,
            r.target
        );
    }

    // A key whose grant does not verify (the endpoint knows another key) is refused.
    let other = TokenServer::start(true);
    let stale = other.service_account_key(&t.path().join("stale"));
    other.service_account_key(&t.path().join("current"));
    let err = destination_from("gcs", &with_key(&stale))
        .check()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    let grants = other.grants();
    assert!(
        grants
            .iter()
            .all(|g| g.as_ref().is_err_and(|why| why.contains("bad signature"))),
        "{grants:?}"
    );

    // A revoked key: a good grant, but the endpoint says invalid_grant.
    let refused = TokenServer::start(false);
    let key = refused.service_account_key(&t.path().join("revoked"));
    let err = destination_from("gcs", &with_key(&key))
        .check()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&format!("gs://{BUCKET}")), "{err}");
    assert!(refused.grants().iter().all(|g| g.is_ok()));
}

/// Rebuilds the V4 string-to-sign from the URL's own parts and checks the signature
/// with openssl against the service account's public key.
fn verify_v4_signature(url: &str, key_json: &std::path::Path, dir: &std::path::Path) {
    let rest = url.split_once("://").unwrap().1;
    let (host, path_query) = rest.split_at(rest.find('/').unwrap());
    let (path, query) = path_query.split_once('?').unwrap();
    let (query, signature) = query.rsplit_once("&X-Goog-Signature=").unwrap();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let credential = param("X-Goog-Credential")
        .replace("%2F", "/")
        .replace("%40", "@");
    let scope = credential.split_once('/').unwrap().1;
    let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "GOOG4-RSA-SHA256\n{}\n{scope}\n{}",
        param("X-Goog-Date"),
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(key_json).unwrap()).unwrap();
    std::fs::write(dir.join("key.pem"), json["private_key"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join("to-sign"), to_sign).unwrap();
    std::fs::write(dir.join("sig"), hex::decode(signature).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    run(&[
        "dgst",
        "-sha256",
        "-verify",
        "pub.pem",
        "-signature",
        "sig",
        "to-sign",
    ]);
}

#[test]
fn files_backup_through_twindbd_lists_restores_and_shares() {
    use twindb_tests::*;
    let Some(server) = GcsServer::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let tokens = TokenServer::start(true);
    let key_file = tokens.service_account_key(t.path());
    let section =
        server.config_section(&format!("gc_credentials_file = \"{}\"", key_file.display()));
    // Larger than 3 download ranges, read 3 at once.
    let big = 3 * twindb::destination::DOWNLOAD_RANGE_SIZE + 4321;
    write_random_file(&src.join("big.bin"), big, 11);
    let config = files_config_to(t.path(), &[&src], "gzip", "gcs", &section);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"gcs\"\n",
        "backup_destination = \"gcs\"\ndownload_ranges = 3\n",
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);

    let out = d.ctl(&["--json", "run", "daily"]).success();
    assert_eq!(out.json()[0]["state"], "succeeded", "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert!(key.ends_with(".tar.gz"), "{key}");

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);

    // A V4 signed URL, fetched by a plain HTTP client, gives the stored bytes.
    let out = d
        .ctl(&["--json", "share", key, "--expires", "2h"])
        .success();
    let url = out.json()["url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with(&format!("{}/{BUCKET}/", server.endpoint())),
        "{url}"
    );
    assert!(url.contains("X-Goog-Expires=7200"), "{url}");
    let (status, body) = fetch_url(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = destination_from("gcs", &server.config_section(""));
    let (want, _) = rt.block_on(sha256_of(dest.as_ref(), key));
    assert_eq!(hex::encode(Sha256::digest(&body)), want);
    // The emulator ignores signatures: check it with openssl instead.
    verify_v4_signature(&url, &key_file, t.path());
    assert_eq!(d.stop(), 0);
    let grants = tokens.grants();
    assert!(
        !grants.is_empty() && grants.iter().all(|g| g.is_ok()),
        "{grants:?}"
    );
}

// Resume after a restart, missing bucket or folder, server stopped mid-upload, cancel,
// clean_partials after a kill, share: the shared fault suite (conformance.rs).
twindb_tests::fault_suite!(twindb_tests::servers::GcsHarness::start());
