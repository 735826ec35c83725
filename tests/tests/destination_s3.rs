//! The s3 destination against s3s-fs (which checks SigV4 signatures): the conformance
//! suite, failures (server stopped, wrong credentials, cancel), resumed reads; through a
//! recording proxy, the headers s3s-fs does not check (checksums of parts, encryption,
//! storage class).

use sha2::{Digest, Sha256};
use twindb::destination::ErrorKind;
use twindb_tests::conformance::{self, generated, keys, sha256_of};
use twindb_tests::proxy::{Proxy, Seen};
use twindb_tests::ranged;
use twindb_tests::servers::{destination_from, destination_with, S3Server, BUCKET};

/// 5 MiB parts (S3's minimum): the 200 MiB round trip takes 40 of them.
const SMALL_PARTS: &str = "part_size = \"5MiB\"\nupload_concurrency = 4";

#[tokio::test(flavor = "multi_thread")]
async fn s3_passes_the_conformance_suite() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let dest = destination_from("s3", &server.config_section(SMALL_PARTS));
    conformance::run_all(dest.clone(), "conformance", 200 << 20).await;
    // If-Match / If-None-Match, which s3s-fs checks.
    conformance::conditional_writes(dest, "conformance", true).await;
    assert!(
        server.pending_parts().is_empty(),
        "the failed put must abort its multipart upload: {:?}",
        server.pending_parts()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_objects_are_read_in_ranges_pinned_to_their_etag() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let section = server.config_section(SMALL_PARTS);
    for ranges in ["download_ranges = 3", "download_ranges = 1"] {
        let dest = destination_with("s3", ranges, &section);
        ranged::byte_exact(dest.clone(), "ranged").await;
    }
    let dest = destination_with("s3", "download_ranges = 2", &section);
    ranged::replaced_mid_read(dest, "ranged").await;
    let dest = destination_with("s3", "download_ranges = 3", &section);
    ranged::resumes_after_restart(dest, "ranged", &mut || server.restart()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_a_permission_error_naming_the_destination() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let section = server
        .config_section("")
        .replace("twindb-test-secret-Kq9w", "not-the-secret");
    let dest = destination_from("s3", &section);
    let err = dest.check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("s3://{BUCKET}")), "{msg}");
    assert!(!msg.contains("not-the-secret"), "the secret leaked: {msg}");

    let (stream, _) = generated(1000, 1000, 1);
    let err = dest.put("h/daily/files/x.tar", stream).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
}

#[test]
fn files_backup_through_twindbd_lists_restores_and_shares() {
    use twindb_tests::*;
    let Some(server) = S3Server::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    // Larger than 3 download ranges, read 3 at once.
    let big = 3 * twindb::destination::DOWNLOAD_RANGE_SIZE + 4321;
    write_random_file(&src.join("big.bin"), big, 11);
    let config = files_config_to(t.path(), &[&src], "zstd", "s3", &server.config_section(""));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"s3\"\n",
        "backup_destination = \"s3\"\ndownload_ranges = 3\n",
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);

    let out = d.ctl(&["--json", "run", "daily"]).success();
    assert_eq!(out.json()[0]["state"], "succeeded", "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    let stored = server.root().join(BUCKET).join(key);
    assert!(
        stored.is_file(),
        "{} is not in the bucket",
        stored.display()
    );

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert!(
        d.log_text().contains(" ranges, 3 at once"),
        "not read in ranges"
    );

    // A presigned link, fetched by a plain HTTP client, gives the stored bytes.
    let out = d
        .ctl(&["--json", "share", key, "--expires", "1h"])
        .success();
    let url = out.json()["url"].as_str().expect("url").to_string();
    assert!(url.starts_with(&server.endpoint()), "{url}");
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");
    assert!(!url.contains("twindb-test-secret"), "{url}");
    let (status, body) = fetch_url(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let want = hex::encode(Sha256::digest(std::fs::read(&stored).unwrap()));
    assert_eq!(hex::encode(Sha256::digest(&body)), want);

    // The server checks the signature: a tampered link is refused.
    let sig = url.find("X-Amz-Signature=").expect("signature") + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig..sig + 1] == "0" { "1" } else { "0" };
    tampered.replace_range(sig..sig + 1, flipped);
    assert_eq!(fetch_url(&tampered).0, 403);

    // Plain text prints the URL alone on stdout.
    let out = d.ctl(&["share", key]).success();
    assert!(out.stdout.trim().starts_with("http://"), "{out:?}");
    assert!(out.stderr.contains("until"), "{out:?}");

    let out = d.ctl(&["share", "testhost/daily/files/nope.tar"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no copy"), "{out:?}");
    let out = d.ctl(&["share", key, "--expires", "8d"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(d.stop(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_in_the_config_credentials_come_from_the_environment() {
    use twindb_tests::servers::{S3_ACCESS_KEY, S3_SECRET_KEY};
    let Some(server) = S3Server::start() else {
        return;
    };
    let t = twindb_tests::scratch();
    let section = format!(
        "[s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\n",
        server.endpoint()
    );
    // nextest runs each test in its own process: the environment is ours to change.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::remove_var("AWS_PROFILE");
    let file = t.path().join("credentials");
    std::fs::write(
        &file,
        format!("[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"),
    )
    .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &file);
    destination_from("s3", &section).check().await.unwrap();

    // The environment variables come first.
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "wrong");
    let err = destination_from("s3", &section).check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");

    // None at all: a clear error that says where credentials may come from.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", t.path().join("none"));
    let err = destination_from("s3", &section).check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// Every part of a multipart upload and every single put carries a `Content-MD5` of the
/// bytes sent, which S3 checks: a part damaged on the way is refused, never stored.
/// s3s-fs 0.14.1 checks that header on PutObject only (not on UploadPart), so the proof
/// is a recording proxy that compares every header with the body it forwards. A single
/// put damaged on the way is refused too (s3s checks its signed payload hash first).
#[tokio::test(flavor = "multi_thread")]
async fn every_part_and_put_carries_a_checksum_the_server_checks() {
    use base64::Engine as _;
    use md5::Digest as _;
    let Some(server) = S3Server::start() else {
        return;
    };
    let proxy = Proxy::in_front_of(&server.endpoint());
    let section = server
        .config_section(SMALL_PARTS)
        .replace(&server.endpoint(), &proxy.endpoint());
    let dest = destination_from("s3", &section);
    let (stream, want) = generated(12 << 20, 1 << 20, 3);
    dest.put("h/daily/files/parts.tar", stream).await.unwrap();
    assert_eq!(
        sha256_of(dest.as_ref(), "h/daily/files/parts.tar").await.0,
        want
    );
    let (stream, _) = generated(1000, 1000, 4);
    dest.put("h/daily/files/single.tar", stream).await.unwrap();

    let puts: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.method == "PUT" && !r.body.is_empty())
        .collect();
    let parts = puts
        .iter()
        .filter(|r| r.target.contains("partNumber="))
        .count();
    assert_eq!(parts, 3, "12 MiB in 5 MiB parts: {puts:?}");
    assert_eq!(puts.len(), 4, "3 parts and 1 single put");
    for r in &puts {
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&r.body));
        assert_eq!(
            r.headers.get("content-md5"),
            Some(&md5),
            "{} {} carries no checksum of its body",
            r.method,
            r.target
        );
    }

    // A body damaged on the way is refused, and nothing is stored.
    proxy.corrupt(true);
    let (stream, _) = generated(1000, 1000, 5);
    let err = dest
        .put("h/daily/files/damaged.tar", stream)
        .await
        .expect_err("a damaged body must be refused");
    proxy.corrupt(false);
    assert!(err.to_string().contains("damaged.tar"), "{err}");
    assert_eq!(
        keys(dest.as_ref(), "h/").await,
        ["h/daily/files/parts.tar", "h/daily/files/single.tar"]
    );
}

/// `server_side_encryption`, `sse_kms_key_id` and `storage_class` go with every
/// PutObject and CreateMultipartUpload of a copy; status files get the encryption but
/// no storage class, so they stay readable at once. s3s-fs ignores the encryption and
/// takes only STANDARD and REDUCED_REDUNDANCY: the proof is a recording proxy.
#[tokio::test(flavor = "multi_thread")]
async fn encryption_and_storage_class_go_with_every_copy_and_no_class_with_status_files() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let proxy = Proxy::in_front_of(&server.endpoint());
    let kms = "arn:aws:kms:eu-west-1:111122223333:key/twindb-test";
    for (sse, kms) in [("AES256", None), ("aws:kms", Some(kms))] {
        let mut extra = format!(
            "{SMALL_PARTS}\nserver_side_encryption = \"{sse}\"\nstorage_class = \"REDUCED_REDUNDANCY\""
        );
        if let Some(k) = kms {
            extra.push_str(&format!("\nsse_kms_key_id = \"{k}\""));
        }
        let section = server
            .config_section(&extra)
            .replace(&server.endpoint(), &proxy.endpoint());
        let dest = destination_from("s3", &section);
        let start = proxy.seen().len();

        // A multipart copy, a single-put copy, a status file written plainly and
        // conditionally.
        let (stream, want) = generated(12 << 20, 1 << 20, 3);
        dest.put("h/daily/files/parts.tar", stream).await.unwrap();
        assert_eq!(
            sha256_of(dest.as_ref(), "h/daily/files/parts.tar").await.0,
            want
        );
        let (stream, _) = generated(1000, 1000, 4);
        dest.put("h/daily/files/single.tar", stream).await.unwrap();
        let status = bytes::Bytes::from_static(b"{\"copies\":[]}");
        dest.write_small("h/status", status.clone()).await.unwrap();
        let (_, version) = dest
            .read_small_versioned("h/status")
            .await
            .unwrap()
            .unwrap();
        dest.write_small_if("h/status", status, Some(&version))
            .await
            .unwrap();

        // PutObject: a PUT that is not a part; CreateMultipartUpload: POST ?uploads.
        let creates: Vec<Seen> = proxy.seen()[start..]
            .iter()
            .filter(|r| {
                (r.method == "PUT" && !r.target.contains("partNumber="))
                    || (r.method == "POST" && r.target.contains("?uploads"))
            })
            .cloned()
            .collect();
        let (copies, statuses): (Vec<&Seen>, Vec<&Seen>) =
            creates.iter().partition(|r| r.target.contains("/files/"));
        // CreateMultipartUpload and PutObject of a copy; two status writes.
        assert_eq!((copies.len(), statuses.len()), (2, 2), "{creates:#?}");
        for r in &creates {
            let headers = (
                r.header("x-amz-server-side-encryption"),
                r.header("x-amz-server-side-encryption-aws-kms-key-id"),
            );
            assert_eq!(headers, (Some(sse), kms), "{} {}", r.method, r.target);
        }
        for r in &copies {
            let class = r.header("x-amz-storage-class");
            assert_eq!(
                class,
                Some("REDUCED_REDUNDANCY"),
                "{} {}",
                r.method,
                r.target
            );
        }
        for r in &statuses {
            let class = r.header("x-amz-storage-class");
            assert_eq!(
                class, None,
                "a status file with a storage class: {}",
                r.target
            );
        }
    }
}

// Resume after a restart, missing bucket or folder, server stopped mid-upload, cancel,
// clean_partials after a kill, share: the shared fault suite (conformance.rs).
twindb_tests::fault_suite!(twindb_tests::servers::S3Harness::start());
