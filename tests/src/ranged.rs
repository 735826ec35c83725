//! Parallel ranged reads (`[destination] download_ranges`), part of the destination
//! conformance suite for the object stores: byte-exact whatever the size against the
//! range size, and an object replaced mid-read fails instead of mixing versions.
//! and a read broken by a server restart resumes every range.

use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use twindb::destination::{Destination, DestinationError, ErrorKind, DOWNLOAD_RANGE_SIZE};

use crate::conformance::{generated, sha256_of};

/// Reads of every size around the range size are byte-exact: empty, one byte, a range
/// less one, one, one plus one, and several ranges with a short last one.
pub async fn byte_exact(dest: Arc<dyn Destination>, prefix: &str) {
    let d = dest.as_ref();
    let r = DOWNLOAD_RANGE_SIZE;
    for (i, len) in [0, 1, r - 1, r, r + 1, 3 * r + 12_345]
        .into_iter()
        .enumerate()
    {
        let key = format!("{prefix}/ranged/obj-{i}");
        let (stream, want) = generated(len, 1 << 20, 40 + i as u64);
        d.put(&key, stream)
            .await
            .unwrap_or_else(|e| panic!("put {len} B: {e}"));
        assert_eq!(sha256_of(d, &key).await, (want, len), "{key}: {len} bytes");
        d.delete(&key).await.unwrap();
    }
}

/// An object replaced while it is read fails the read as a conflict naming the
/// destination and the key, never a mix of versions. The object holds 6 ranges: those
/// not yet opened when it is replaced meet the new version.
pub async fn replaced_mid_read(dest: Arc<dyn Destination>, prefix: &str) {
    let d = dest.as_ref();
    let key = format!("{prefix}/ranged/replaced");
    let len = 6 * DOWNLOAD_RANGE_SIZE + 5;
    let (stream, _) = generated(len, 1 << 20, 60);
    d.put(&key, stream).await.unwrap();

    let mut s = d.get(&key).await.unwrap();
    s.next().await.expect("a first chunk").unwrap();
    let (stream, _) = generated(len, 1 << 20, 61);
    d.put(&key, stream).await.unwrap();
    let mut failure = None;
    while let Some(chunk) = s.next().await {
        if let Err(e) = chunk {
            failure = Some(e);
            break;
        }
    }
    let e = failure.expect("a read across two versions must fail");
    let inner = e.into_inner().expect("a destination error");
    let e = inner
        .downcast_ref::<DestinationError>()
        .unwrap_or_else(|| panic!("not a destination error: {inner}"));
    let text = e.to_string();
    assert_eq!(e.kind, ErrorKind::Conflict, "{text}");
    assert!(
        text.starts_with(&format!("{}: reading {key}: ", d.name())),
        "names the destination and the key: {text}"
    );
    assert!(text.contains("replaced while it was read"), "{text}");
    d.delete(&key).await.unwrap();
}

/// The server restarted while the first range is open, before any byte was read: that
/// range resumes from where its connection broke, the others open on the restarted
/// server, and the bytes are exact. `restart` kills the server and starts it again.
pub async fn resumes_after_restart(
    dest: Arc<dyn Destination>,
    prefix: &str,
    restart: &mut dyn FnMut(),
) {
    let d = dest.as_ref();
    let key = format!("{prefix}/ranged/restarted");
    let len = 5 * DOWNLOAD_RANGE_SIZE + 77;
    let (stream, want) = generated(len, 1 << 20, 70);
    d.put(&key, stream).await.unwrap();
    // `get` returns once the first answer's headers arrived; no range task runs yet.
    let mut s = d.get(&key).await.unwrap();
    restart();
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("read after {got} bytes: {e}"));
        got += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(got, len);
    assert_eq!(hex::encode(hasher.finalize()), want);
    d.delete(&key).await.unwrap();
}
