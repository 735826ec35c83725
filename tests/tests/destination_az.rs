//! The az destination against Azurite (which checks SharedKey signatures): the
//! conformance suite, conditional writes, ranged reads pinned to the ETag, a wrong
//! account key, `remote_path`, and a files backup through twindbd restored file by file
//! and shared by a SAS link.

use sha2::{Digest, Sha256};
use twindb::destination::ErrorKind;
use twindb_tests::conformance::{self, generated, keys, sha256_of};
use twindb_tests::proxy::{Proxy, Seen};
use twindb_tests::ranged;
use twindb_tests::servers::{
    destination_from, destination_with, AzServer, AZ_KEY, AZ_SMALL_BLOCKS, BUCKET,
};

#[tokio::test(flavor = "multi_thread")]
async fn az_passes_the_conformance_suite() {
    let Some(server) = AzServer::start() else {
        return;
    };
    let dest = destination_from("az", &server.config_section(AZ_SMALL_BLOCKS));
    conformance::run_all(dest.clone(), "conformance", 200 << 20).await;
    // If-None-Match: * and If-Match: ETag, which Azurite checks.
    conformance::conditional_writes(dest, "conformance", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blobs_are_read_in_ranges_pinned_to_their_etag() {
    let Some(mut server) = AzServer::start() else {
        return;
    };
    let section = server.config_section(AZ_SMALL_BLOCKS);
    for ranges in ["download_ranges = 3", "download_ranges = 1"] {
        let dest = destination_with("az", ranges, &section);
        ranged::byte_exact(dest.clone(), "ranged").await;
    }
    let dest = destination_with("az", "download_ranges = 2", &section);
    ranged::replaced_mid_read(dest, "ranged").await;
    let dest = destination_with("az", "download_ranges = 3", &section);
    ranged::resumes_after_restart(dest, "ranged", &mut || server.restart()).await;
}

/// A 503 (Azure's ServerBusy) is retried: on a block, which is sent again under a new
/// id and committed once, and on the block list. Through a proxy that refuses once.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_server_is_retried_and_a_resent_block_is_stored_once() {
    let Some(server) = AzServer::start() else {
        return;
    };
    let proxy = Proxy::start(server.port());
    let section = server.config_section(AZ_SMALL_BLOCKS).replace(
        &format!("127.0.0.1:{}", server.port()),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let dest = destination_from("az", &section);
    let is_block = |r: &Seen| r.method == "PUT" && r.target.contains("comp=block&");
    proxy.refuse_once(move |r| is_block(r) && r.body.len() == 4 << 20);
    let (stream, want) = generated(18 << 20, 1 << 20, 8);
    dest.put("h/daily/files/busy.tar", stream).await.unwrap();
    let seen = proxy.seen();
    let blocks: Vec<&Seen> = seen.iter().filter(|r| is_block(r)).collect();
    assert_eq!(blocks.len(), 6, "5 blocks, one sent twice: {blocks:?}");
    assert_eq!(
        blocks.iter().filter(|r| r.answer.contains("503")).count(),
        1
    );
    assert_eq!(
        sha256_of(dest.as_ref(), "h/daily/files/busy.tar").await,
        (want, 18 << 20)
    );

    proxy.refuse_once(|r| r.method == "PUT" && r.target.contains("comp=blocklist"));
    let (stream, want) = generated(9 << 20, 1 << 20, 9);
    dest.put("h/daily/files/busy2.tar", stream).await.unwrap();
    let commits = proxy
        .seen()
        .iter()
        .filter(|r| r.target.contains("comp=blocklist") && r.target.contains("busy2"))
        .count();
    assert_eq!(commits, 2, "the block list sent again");
    assert_eq!(
        sha256_of(dest.as_ref(), "h/daily/files/busy2.tar").await.0,
        want
    );
}

/// Azurite checks the signature: a wrong key is a permission error that names the
/// account and container and never shows the key, for `check` and for a put.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_account_key_is_a_clear_permission_error_without_the_key() {
    let Some(server) = AzServer::start() else {
        return;
    };
    let wrong = "d3JvbmctYnV0LXZhbGlkLWJhc2U2NC1rZXktZm9yLXRoZS10ZXN0";
    let dest = destination_from("az", &server.config_section_with_key(wrong, ""));
    let err = dest.check().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(!err.is_retryable());
    let msg = format!("{err:#} {err:?}");
    assert!(
        msg.contains(&format!("az://devstoreaccount1/{BUCKET}")),
        "{msg}"
    );
    assert!(msg.contains("AccountKey"), "{msg}");
    assert!(
        !msg.contains(wrong) && !msg.contains(AZ_KEY),
        "a key leaked: {msg}"
    );

    let (stream, _) = generated(10 << 20, 1 << 20, 1);
    let err = dest.put("h/daily/files/x.tar", stream).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    let msg = format!("{err:#} {err:?}");
    assert!(!msg.contains(wrong), "the key leaked: {msg}");
}

/// Copies live under `remote_path`: stored as `remote_path/key`, listed and read back
/// by their key; another destination without it does not see them.
#[tokio::test(flavor = "multi_thread")]
async fn copies_live_under_remote_path() {
    let Some(server) = AzServer::start() else {
        return;
    };
    let under = destination_from(
        "az",
        &server.config_section("remote_path = \"/backups/twindb/\""),
    );
    let bare = destination_from("az", &server.config_section(""));
    let (stream, want) = generated(3 << 20, 1 << 16, 5);
    under.put("h/daily/files/a.tar", stream).await.unwrap();
    assert_eq!(keys(under.as_ref(), "h/").await, ["h/daily/files/a.tar"]);
    assert_eq!(
        sha256_of(under.as_ref(), "h/daily/files/a.tar").await.0,
        want
    );
    assert_eq!(
        keys(bare.as_ref(), "").await,
        ["backups/twindb/h/daily/files/a.tar"]
    );
    assert!(under.name().contains("/backups/twindb"), "{}", under.name());
    under.delete("h/daily/files/a.tar").await.unwrap();
    assert!(keys(bare.as_ref(), "").await.is_empty());

    // Names are stored as they are, not percent-encoded: TwinDB's names stay readable.
    let odd = "h/daily/files/_srv_a b [1] #x%y~z-2026-11-25_10_37_50.tar.gz";
    let (stream, want) = generated(1000, 100, 6);
    bare.put(odd, stream).await.unwrap();
    assert_eq!(keys(bare.as_ref(), "h/").await, [odd]);
    assert_eq!(sha256_of(bare.as_ref(), odd).await.0, want);
    // object_store would sign the escaped name, which Azure refuses: said, not linked.
    let err = bare
        .share(odd, std::time::Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("characters a URL escapes"),
        "{err}"
    );
    bare.delete(odd).await.unwrap();
    assert!(keys(bare.as_ref(), "").await.is_empty());
}

#[test]
fn files_backup_through_twindbd_restores_and_shares_by_sas() {
    use twindb_tests::*;
    let Some(server) = AzServer::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    // Larger than 3 download ranges and several blocks.
    let big = 3 * twindb::destination::DOWNLOAD_RANGE_SIZE + 4321;
    write_random_file(&src.join("big.bin"), big, 11);
    let section = server.config_section("block_size = \"4MiB\"\nremote_path = \"twindb\"");
    let config = files_config_to(t.path(), &[&src], "zstd", "az", &section);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"az\"\n",
        "backup_destination = \"az\"\ndownload_ranges = 3\n",
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);

    let out = d.ctl(&["--json", "run", "daily"]).success();
    assert_eq!(out.json()[0]["state"], "succeeded", "{out:?}");
    let keys = ls_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];

    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert!(
        d.log_text().contains(" ranges, 3 at once"),
        "not read in ranges"
    );

    // A SAS link, fetched by a plain HTTP client, gives the stored bytes.
    let out = d
        .ctl(&["--json", "share", key, "--expires", "1h"])
        .success();
    let url = out.json()["url"].as_str().expect("url").to_string();
    assert!(url.starts_with(&server.endpoint()), "{url}");
    assert!(url.contains("sp=r"), "read-only: {url}");
    assert!(!url.contains(AZ_KEY), "{url}");
    let (status, body) = fetch_url(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let dest = destination_from("az", &section);
    let (want, _) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sha256_of(dest.as_ref(), key));
    assert_eq!(hex::encode(Sha256::digest(&body)), want);

    // The signature covers the blob: the same link for another blob is refused, and
    // so is a tampered one.
    let other = url.replacen(key.as_str(), "testhost/daily/files/other.tar", 1);
    assert_eq!(status_of(&other), 403, "{other}");
    let sig = url.find("sig=").expect("signature") + "sig=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig..sig + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(sig..sig + 1, flipped);
    assert_eq!(status_of(&tampered), 403);

    // Expired: a link of 1 s, fetched once its time is over.
    let out = d
        .ctl(&["--json", "share", key, "--expires", "1s"])
        .success();
    let short = out.json()["url"].as_str().expect("url").to_string();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(status_of(&short), 403, "{short}");

    let status = d.ctl(&["status"]).success();
    let all = format!("{}{}{}", status.stdout, status.stderr, d.log_text());
    assert!(!all.contains(AZ_KEY), "the account key leaked");
    assert_eq!(d.stop(), 0);
}

/// keep_local_path beside az: both copies written, a restore from either; retention
/// deletes the older copy's blob in Azure and its local twin.
#[test]
fn keep_local_and_retention_with_az() {
    use twindb_tests::*;
    let Some(server) = AzServer::start() else {
        return;
    };
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let kept = t.path().join("kept");
    let sections = format!(
        "{}\n[retention]\ndaily_copies = 1\n\n[retention_local]\ndaily_copies = 1\n",
        server.config_section("")
    );
    let config = files_config_to(t.path(), &[&src], "zstd", "az", &sections);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "backup_destination = \"az\"\n",
        &format!(
            "backup_destination = \"az\"\nkeep_local_path = \"{}\"\n",
            kept.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    d.ctl(&["check"]).success();
    let dest = destination_from("az", &server.config_section(""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blobs = || -> Vec<String> {
        rt.block_on(keys(dest.as_ref(), "testhost/"))
            .into_iter()
            .filter(|k| !k.contains("twindb-status"))
            .collect()
    };

    d.ctl(&["run", "daily"]).success();
    // One key, listed twice: remote and local.
    let mut first = ls_keys(&d);
    first.dedup();
    assert_eq!(first.len(), 1, "{first:?}");
    let key = first[0].clone();
    let ls = d.ctl(&["--json", "ls"]).success().json();
    assert_eq!(ls["copies"].as_array().unwrap().len(), 2, "{ls}");
    assert_eq!(blobs(), std::slice::from_ref(&key));
    assert!(kept.join(&key).is_file());

    // Both there: the local copy is used; without it, the blob in Azure.
    let dst = t.path().join("r1");
    let out = d
        .ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert!(out.stdout.contains("from the local copy"), "{out:?}");
    assert_same_tree(&src, &dst);
    std::fs::remove_file(kept.join(&key)).unwrap();
    let dst = t.path().join("r2");
    let out = d
        .ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    assert!(out.stdout.contains("from the destination"), "{out:?}");
    assert_same_tree(&src, &dst);

    // Keys have a one-second resolution.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    d.ctl(&["run", "daily"]).success();
    d.ctl(&["retention"]).success();
    let mut after = ls_keys(&d);
    after.dedup();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0], key);
    assert_eq!(blobs(), after, "the older blob is deleted in Azure");
    assert!(kept.join(&after[0]).is_file());
    let dst = t.path().join("r3");
    d.ctl(&["restore", "file", &after[0], "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

twindb_tests::fault_suite!(twindb_tests::servers::AzHarness::start());

/// `[az] access_tier`: every copy is set to it once stored, a one-block blob and a
/// block-list one alike; status files keep the account's default.
#[tokio::test(flavor = "multi_thread")]
async fn copies_take_the_configured_access_tier() {
    let Some(server) = AzServer::start() else {
        return;
    };
    let dest = destination_from(
        "az",
        &server.config_section(&format!("{AZ_SMALL_BLOCKS}\naccess_tier = \"Cool\"")),
    );
    for (key, size) in [
        ("h/daily/files/small.tar", 1000),
        ("h/daily/files/large.tar", 9 << 20),
    ] {
        let (stream, want) = generated(size, 1 << 20, 3);
        dest.put(key, stream).await.unwrap();
        assert_eq!(server.blob_tier(key).as_deref(), Some("Cool"), "{key}");
        assert_eq!(sha256_of(dest.as_ref(), key).await, (want, size));
    }
    dest.write_small(
        "h/twindb-status.d/writer.json",
        bytes::Bytes::from_static(b"{}"),
    )
    .await
    .unwrap();
    assert_ne!(
        server.blob_tier("h/twindb-status.d/writer.json").as_deref(),
        Some("Cool")
    );
}
