//! One destination conformance suite, run unchanged against every backend.
//!
//! Each backend's test file builds its destination (against a real server started by
//! the harness) and calls [`run_all`]. Backend-specific failures (server stopped
//! mid-upload, wrong credentials) are tested beside it, in the backend's own file.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use twindb::destination::{Destination, ErrorKind};
use twindb::pipeline::ByteStream;

use crate::pseudo_random;

/// A stream of `len` deterministic bytes in chunks of `chunk`, and its sha256.
pub fn generated(len: u64, chunk: usize, seed: u64) -> (ByteStream, String) {
    let mut hasher = Sha256::new();
    let mut chunks = Vec::new();
    let mut left = len;
    let mut s = seed;
    // Hash up front by regenerating: the stream itself is produced lazily below.
    while left > 0 {
        let n = (chunk as u64).min(left) as usize;
        hasher.update(pseudo_random(n, s));
        chunks.push((n, s));
        s += 1;
        left -= n as u64;
    }
    let stream = futures::stream::iter(chunks)
        .map(|(n, s)| Ok(Bytes::from(pseudo_random(n, s))))
        .boxed();
    (stream, hex::encode(hasher.finalize()))
}

/// A stream that yields `good` bytes and then fails.
pub fn failing_after(good: u64) -> ByteStream {
    let (head, _) = generated(good, 64 * 1024, 77);
    head.chain(futures::stream::once(async {
        Err(io::Error::other("source failed half-way"))
    }))
    .boxed()
}

pub async fn sha256_of(dest: &dyn Destination, key: &str) -> (String, u64) {
    let mut stream = dest
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading {key}: {e}"));
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()), size)
}

pub async fn keys(dest: &dyn Destination, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = dest
        .list(prefix)
        .map_ok(|o| o.key)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"));
    keys.sort();
    keys
}

/// Every contract of the `Destination` trait. `prefix` isolates runs sharing a bucket;
/// `big` is the size of the large round trip (200 MiB in the suites).
pub async fn run_all(dest: Arc<dyn Destination>, prefix: &str, big: u64) {
    let d = dest.as_ref();
    d.check().await.unwrap_or_else(|e| panic!("check: {e}"));

    // Round trips, byte-exact.
    for (i, len) in [0u64, 1, 1 << 20, big].into_iter().enumerate() {
        let key = format!("{prefix}/rt/obj-{i}");
        let (stream, want) = generated(len, 1 << 20, i as u64);
        let stored = d
            .put(&key, stream)
            .await
            .unwrap_or_else(|e| panic!("put {len} B: {e}"));
        assert_eq!(stored, len, "put reports the stored size");
        let (got, size) = sha256_of(d, &key).await;
        assert_eq!(size, len, "{key}: size");
        assert_eq!(got, want, "{key}: sha256");
    }

    // Listing by prefix sees exactly what was put under it.
    assert_eq!(
        keys(d, &format!("{prefix}/rt/")).await,
        (0..4)
            .map(|i| format!("{prefix}/rt/obj-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        keys(d, &format!("{prefix}/rt/obj-1")).await,
        vec![format!("{prefix}/rt/obj-1")]
    );
    assert!(keys(d, &format!("{prefix}/nothing-here/")).await.is_empty());

    // Overwrite replaces the content whole.
    let key = format!("{prefix}/rt/obj-1");
    let (stream, want) = generated(3000, 1000, 99);
    d.put(&key, stream).await.unwrap();
    assert_eq!(sha256_of(d, &key).await, (want, 3000));

    // Delete, and delete of a missing key, succeed; a deleted key is not found.
    d.delete(&key).await.unwrap();
    d.delete(&key).await.unwrap();
    match d.get(&key).await {
        Err(e) => assert_eq!(e.kind, ErrorKind::NotFound, "{e}"),
        Ok(mut s) => {
            // Some stores only fail on first read.
            let first = s.next().await;
            assert!(
                matches!(first, Some(Err(_))),
                "a deleted key must not be readable"
            );
        }
    }
    assert!(!keys(d, &format!("{prefix}/rt/")).await.contains(&key));

    // A put whose input fails half-way leaves nothing listed.
    let key = format!("{prefix}/failed/obj");
    let err = d.put(&key, failing_after(3 << 20)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input, "{err}");
    assert!(
        keys(d, &format!("{prefix}/failed/")).await.is_empty(),
        "a failed put must leave nothing"
    );

    // Small objects (status files).
    let key = format!("{prefix}/small/status.json");
    assert_eq!(d.read_small(&key).await.unwrap(), None);
    d.write_small(&key, Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    assert_eq!(
        d.read_small(&key).await.unwrap().as_deref(),
        Some(&b"{\"a\":1}"[..])
    );

    // Clean up what this run wrote.
    for k in keys(d, &format!("{prefix}/")).await {
        d.delete(&k).await.unwrap();
    }
    assert!(keys(d, &format!("{prefix}/")).await.is_empty());
}

/// Conditional small writes (the status of a host): a write over what was read
/// succeeds, a write over something that changed since, or over an object that
/// appeared, fails with [`ErrorKind::Conflict`] and changes nothing. `enforced` is
/// false where the test server cannot check (the GCS emulator sends no generation and
/// ignores `ifGenerationMatch`): the writes must then still succeed.
pub async fn conditional_writes(dest: Arc<dyn Destination>, prefix: &str, enforced: bool) {
    use twindb::destination::Version;
    let d = dest.as_ref();
    let key = format!("{prefix}/cas/status.json");
    assert!(d.read_small_versioned(&key).await.unwrap().is_none());
    d.write_small_if(&key, Bytes::from_static(b"one"), None)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let (bytes, v1) = d
        .read_small_versioned(&key)
        .await
        .unwrap()
        .expect("written");
    assert_eq!(&bytes[..], b"one");
    if !enforced {
        assert_eq!(v1, Version::Unknown, "a version the server does not check");
        d.write_small_if(&key, Bytes::from_static(b"two"), Some(&v1))
            .await
            .unwrap();
        return;
    }
    assert!(matches!(v1, Version::Known(_)), "{v1:?}");
    // Created meanwhile by someone else.
    let err = d
        .write_small_if(&key, Bytes::from_static(b"other"), None)
        .await
        .expect_err("an object that appeared is a conflict");
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    d.write_small_if(&key, Bytes::from_static(b"two"), Some(&v1))
        .await
        .unwrap_or_else(|e| panic!("over the version read: {e}"));
    let (bytes, v2) = d.read_small_versioned(&key).await.unwrap().unwrap();
    assert_eq!(&bytes[..], b"two");
    assert_ne!(v1, v2);
    // A stale version (another writer wrote since) changes nothing.
    let err = d
        .write_small_if(&key, Bytes::from_static(b"stale"), Some(&v1))
        .await
        .expect_err("a stale version is a conflict");
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(&d.read_small(&key).await.unwrap().unwrap()[..], b"two");
    d.delete(&key).await.unwrap();
}
