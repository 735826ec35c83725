//! Crash points for the fault-injection tests (tests/tests/crash.rs): with
//! `TWINDB_CRASH_AT=<name>` in its environment, twindbd kills itself with SIGKILL when
//! it reaches the step of that name, exactly as `kill -9` or a power cut would stop it
//! there. The tests then restart it and check that every listed copy restores and that
//! nothing unrecorded is left.
//!
//! Compiled in only with the `failpoints` feature, which the test crate turns on; a
//! build of twindbd alone (release, the Debian package) has none.

/// The steps a test can crash at, in the order a job reaches them.
pub const POINTS: &[&str] = &[
    // backup::store: the copy is recorded as pending, nothing stored yet
    "store.before-put",
    // backup::store: the first chunk reached the destination
    "store.mid-put",
    // backup::store: the destination committed the copy, not yet recorded
    "store.committed",
    // retention::apply: the deletions are recorded, no object deleted yet
    "retention.recorded",
    // retention::apply: one object deleted
    "retention.deleted-one",
    // restore::stream_copy: the first chunk reached the extractor
    "restore.mid-stream",
];

#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown crash point {name}");
    if std::env::var("TWINDB_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::error!("crash point {name}: twindbd kills itself (TWINDB_CRASH_AT)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}
