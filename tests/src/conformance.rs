//! One destination conformance suite, run unchanged against every backend.
//!
//! - [`run_all`] and [`conditional_writes`]: the contract of the `Destination` trait.
//!   Each backend's test file builds its destination (against a real server started
//!   by the harness) and calls them.
//! - The faults, over a [`TestServer`] (a server the suite can stop, restart and look
//!   into): a read broken by a restart resumes, a missing bucket or folder, a server
//!   stopped mid-upload, a cancelled upload, `clean_partials` after a killed upload,
//!   and `share`. [`fault_suite!`] makes one test of each in a backend's test file;
//!   each fault applies where the backend's [`Behaviour`] says it does.
//!
//! - Parallel ranged reads of the object stores: [`crate::ranged`].
//!
//! What only one backend has (credentials, host keys, checksums, encryption headers)
//! is tested in that backend's own file.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use twindb::destination::{Backoff, Destination, ErrorKind};
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

/// What a backend does about the faults of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// There is a server to stop and restart (not for local).
    pub stoppable: bool,
    /// A read broken by a server restart resumes where it stopped (s3, gcs).
    pub resumes_reads: bool,
    /// `check` of a missing bucket fails as NotFound naming it (s3, gcs); else `check`
    /// creates the missing folder (local, ssh).
    pub missing_root_fails: bool,
    /// A cancelled upload leaves nothing on the server either ([`TestServer::leftovers`]).
    /// Not gcs here: the emulator keeps cancelled sessions (real GCS drops them).
    pub cancel_cleans_server: bool,
    /// An upload broken by an outage is cleaned from the server once it is back (s3
    /// aborts in the background; ssh and gcs leave it to `clean_partials` or expiry).
    pub outage_cleans_server: bool,
    /// `clean_partials` finds and removes what a killed upload left (local, ssh). gcs
    /// sessions expire instead; s3 lists multipart uploads, which s3s-fs cannot (501).
    pub cleans_partials: bool,
    /// `share` signs URLs (s3, gcs); the others refuse clearly.
    pub signs: bool,
}

/// A server the fault suite drives: a destination on it, and the server's own view.
pub trait TestServer: Send {
    fn behaviour(&self) -> Behaviour;

    /// The destination on this server, built as twindbd builds it.
    fn destination(&self) -> Arc<dyn Destination>;

    /// The same destination with its bucket (folder) missing, and that name.
    fn destination_without_root(&self) -> (Arc<dyn Destination>, String);

    /// A destination that can sign share links (gcs needs a service account key).
    fn sharing_destination(&self) -> Arc<dyn Destination> {
        self.destination()
    }

    /// Stops the server (only where [`Behaviour::stoppable`]).
    fn stop(&mut self);

    /// Starts it again, keeping what it stored.
    fn restart(&mut self);

    /// What uploads left on the server, never listed: parts, sessions, temp files, each
    /// with its size.
    fn leftovers(&self) -> Vec<(String, u64)>;

    /// The longest the destination's retries pause in all.
    fn retry_wait(&self) -> Duration {
        Backoff::default().total_delay()
    }
}

/// Bytes of uploads in progress on the server.
fn progress(server: &dyn TestServer) -> u64 {
    server.leftovers().iter().map(|(_, n)| n).sum()
}

/// A stream of `len` bytes in 1 MiB chunks, one every 20 ms, so the server can be
/// stopped, or the put cancelled, mid-way.
pub fn slow_stream(len: u64) -> ByteStream {
    let (s, _) = generated(len, 1 << 20, 5);
    s.then(|c| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c
    })
    .boxed()
}

/// Waits until uploads in progress hold `bytes` on the server.
async fn wait_for_progress(server: &dyn TestServer, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress(server) < bytes {
        assert!(
            Instant::now() < deadline,
            "the upload did not get {bytes} bytes to the server: {:?}",
            server.leftovers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server holds nothing of uploads.
async fn wait_no_leftovers(server: &dyn TestServer, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.leftovers().is_empty() {
        assert!(Instant::now() < deadline, "{why}: {:?}", server.leftovers());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stores a small object and reads it back: the destination works.
async fn works(d: &dyn Destination, key: &str) {
    let (stream, want) = generated(10_000, 4096, 8);
    d.put(key, stream)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert_eq!(sha256_of(d, key).await, (want, 10_000));
    d.delete(key).await.unwrap();
}

/// A read broken by a server restart resumes where it stopped, byte-exact.
pub async fn read_resumes_after_restart(server: &mut dyn TestServer) {
    assert!(
        server.behaviour().resumes_reads,
        "reads of this destination do not resume: leave this fault out of its fault_suite!"
    );
    let dest = server.destination();
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
    assert_eq!(sha256_of(dest.as_ref(), key).await.0, want);
}

/// A missing bucket fails `check` naming it; a missing folder is created by `check`.
pub async fn missing_root(server: &mut dyn TestServer) {
    let (dest, missing) = server.destination_without_root();
    if server.behaviour().missing_root_fails {
        let err = dest.check().await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&missing), "{err}");
        assert!(!err.is_retryable());
    } else {
        dest.check()
            .await
            .unwrap_or_else(|e| panic!("check of a missing folder: {e}"));
        works(dest.as_ref(), "h/daily/files/first.tar").await;
    }
}

/// A server stopped mid-upload fails the put clearly (Unreachable, naming the
/// destination and the key) within the retry bound; while it is down, operations
/// fail the same way after the bounded retries; once it is back nothing is listed and
/// the next run works.
pub async fn server_stopped_mid_upload(server: &mut dyn TestServer) {
    assert!(
        server.behaviour().stoppable,
        "no server to stop: leave this fault out of its fault_suite!"
    );
    let dest = server.destination();
    let key = "h/daily/files/stopped.tar";
    let put = {
        let dest = dest.clone();
        tokio::spawn(async move { dest.put(key, slow_stream(400 << 20)).await })
    };
    wait_for_progress(server, 16 << 20).await;
    server.stop();
    let stopped = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(120), put)
        .await
        .expect("the upload fails")
        .unwrap()
        .unwrap_err();
    let took = stopped.elapsed();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err:#}");
    assert!(err.is_retryable());
    let msg = format!("{err:#}");
    assert!(msg.contains(&dest.name()) && msg.contains(key), "{msg}");
    let bound = server.retry_wait() + Duration::from_secs(30);
    assert!(took < bound, "took {took:?} to fail");

    // Back up: nothing is listed as a copy.
    server.restart();
    assert!(keys(dest.as_ref(), "h/").await.is_empty());
    if server.behaviour().outage_cleans_server {
        // The abort that failed while the server was down goes on in the background.
        wait_no_leftovers(server, "the broken upload was not cleaned up").await;
    }

    // While the server is down, operations fail as Unreachable after the retries.
    server.stop();
    let started = Instant::now();
    let err = dest
        .check()
        .await
        .expect_err("check passed while the server is stopped");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err:#}");
    let took = started.elapsed();
    assert!(took >= server.retry_wait(), "not retried: {took:?}");
    assert!(
        took < server.retry_wait() + Duration::from_secs(20),
        "{took:?}"
    );

    // Back up again: the destination reconnects by itself and the next run works.
    server.restart();
    works(dest.as_ref(), "h/daily/files/next.tar").await;
    assert_eq!(keys(dest.as_ref(), "h/").await, Vec::<String>::new());
}

/// A cancelled put (its future dropped: a cancelled job) leaves nothing listed, and
/// nothing on the server where the backend can remove it.
pub async fn cancel_leaves_nothing(server: &mut dyn TestServer) {
    let dest = server.destination();
    let put = {
        let dest = dest.clone();
        tokio::spawn(async move {
            dest.put("h/daily/files/c.tar", slow_stream(400 << 20))
                .await
        })
    };
    wait_for_progress(server, 8 << 20).await;
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());
    if server.behaviour().cancel_cleans_server {
        wait_no_leftovers(server, "the cancelled upload left").await;
    }
    assert!(keys(dest.as_ref(), "h/").await.is_empty());
}

/// What a killed twindbd left (an upload whose cleanup never ran) is removed by
/// `clean_partials`, which says how many it removed; the copies stay.
pub async fn clean_partials_after_a_kill(server: &mut dyn TestServer) {
    let dest = server.destination();
    let (stream, _) = generated(1000, 1000, 3);
    dest.put("h/daily/files/kept.tar", stream).await.unwrap();
    // Driven until it stored something, then forgotten: its cleanup never runs, as if
    // the process had been killed.
    let mut put = Box::pin(dest.put("h/daily/files/killed.tar", slow_stream(400 << 20)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress(server) < 8 << 20 {
        assert!(
            Instant::now() < deadline,
            "nothing stored: {:?}",
            server.leftovers()
        );
        tokio::select! {
            r = &mut put => panic!("the put ended: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    std::mem::forget(put);
    // Let parts already on their way land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!server.leftovers().is_empty());

    let removed = dest
        .clean_partials("h/")
        .await
        .unwrap_or_else(|e| panic!("clean_partials: {e}"));
    if server.behaviour().cleans_partials {
        assert!(removed >= 1, "removed {removed}");
        wait_no_leftovers(server, "clean_partials left").await;
    } else {
        assert_eq!(removed, 0);
    }
    assert_eq!(keys(dest.as_ref(), "h/").await, ["h/daily/files/kept.tar"]);
    assert_eq!(
        dest.clean_partials("h/").await.unwrap(),
        0,
        "nothing more to remove"
    );
}

/// `share` signs a link that gives the stored bytes to a plain HTTP client, and
/// refuses a missing key; destinations that cannot sign say so.
pub async fn share(server: &mut dyn TestServer) {
    let dest = server.sharing_destination();
    let key = "h/daily/files/shared.tar";
    let (stream, want) = generated(100_000, 4096, 4);
    dest.put(key, stream).await.unwrap();
    let result = dest.share(key, Duration::from_secs(3600)).await;
    if !server.behaviour().signs {
        let err = result.expect_err("this destination cannot sign");
        assert_eq!(err.kind, ErrorKind::Other, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&dest.name()) && msg.contains(key), "{msg}");
        assert!(
            msg.contains("cannot make share links (s3, gcs and az can)"),
            "{msg}"
        );
        return;
    }
    let url = result.unwrap_or_else(|e| panic!("share: {e}"));
    // Azure's SAS states the expiry as a time (se=), the others as a duration.
    assert!(url.contains("3600") || url.contains("se="), "{url}");
    let (status, body) = tokio::task::spawn_blocking(move || crate::fetch_url(&url))
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hex::encode(Sha256::digest(&body)), want);
    let err = dest
        .share("h/daily/files/nope.tar", Duration::from_secs(60))
        .await
        .expect_err("a link to nothing");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

/// One test of each fault for the backend whose [`TestServer`] `$start` makes
/// (`Option<_>`: `None` skips, as a missing server does outside CI).
#[macro_export]
macro_rules! fault_suite {
    (@one $start:expr, $fault:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $fault() {
            let Some(mut server) = $start else {
                return;
            };
            $crate::conformance::$fault(&mut server).await;
        }
    };
    ($start:expr; $($fault:ident),+ $(,)?) => {
        $( $crate::fault_suite!(@one $start, $fault); )+
    };
    ($start:expr) => {
        $crate::fault_suite!($start;
            read_resumes_after_restart,
            missing_root,
            server_stopped_mid_upload,
            cancel_leaves_nothing,
            clean_partials_after_a_kill,
            share,
        );
    };
}
