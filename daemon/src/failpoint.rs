//! Named points in a job for the fault-injection tests (tests/tests/crash.rs):
//! - with `TWINDB_CRASH_AT=<name>` in its environment, twindbd kills itself with
//!   SIGKILL when it reaches the point of that name, exactly as `kill -9` or a power cut
//!   would stop it there. The tests then restart it and check that every listed copy
//!   restores and that nothing unrecorded is left.
//! - with `TWINDB_PAUSE_AT=<name>` and `TWINDB_PAUSE_DIR=<dir>`, the job waits there:
//!   it creates `<dir>/<name>.reached` and goes on once `<dir>/<name>.go` exists. A test
//!   thereby acts while a job is at an exact step, without sleeping and hoping.
//!
//! Compiled in only with the `failpoints` feature, which the test crate turns on
//! (`cargo build --workspace`); twindbd built without the test crate (`cargo build
//! --release`, the workspace's default members) has none. Where compiled in, a point
//! costs one environment lookup when reached.

/// The steps a test can crash at, in the order a job reaches them.
pub const POINTS: &[&str] = &[
    // backup::store: the copy is recorded as pending, nothing stored yet
    "store.before-put",
    // backup::store: the first chunk reached the destination
    "store.mid-put",
    // backup::store: the destination committed the copy, not yet recorded
    "store.committed",
    // binlog::segment: a streamed segment is stored, not yet recorded
    "binlog.segment.before-record",
    // binlog::consolidate: a rotated file is recorded as one copy, its segments not
    // retired yet
    "binlog.consolidated.before-retire",
    // retention::apply: the deletions are recorded, no object deleted yet
    "retention.recorded",
    // retention::apply: one object deleted
    "retention.deleted-one",
    // restore::stream_copy: the first chunk reached the extractor
    "restore.mid-stream",
];

/// Called where a job reaches the point `name`. Blocks (a pause), so call it from a
/// pipeline thread or at a step where blocking one runtime thread for a test is fine.
#[cfg(feature = "failpoints")]
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown point {name}");
    if std::env::var("TWINDB_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::error!("crash point {name}: twindbd kills itself (TWINDB_CRASH_AT)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    if let (Ok(at), Ok(dir)) = (
        std::env::var("TWINDB_PAUSE_AT"),
        std::env::var("TWINDB_PAUSE_DIR"),
    ) {
        if at == name {
            let dir = std::path::Path::new(&dir);
            tracing::warn!("pause point {name}: waiting for {name}.go (TWINDB_PAUSE_AT)");
            let _ = std::fs::write(dir.join(format!("{name}.reached")), b"");
            while !dir.join(format!("{name}.go")).exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str) {}
