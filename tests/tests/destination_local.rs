//! The destination conformance suite against the local destination.

use std::sync::Arc;

use twindb::destination::{Destination, ErrorKind, Local};
use twindb_tests::conformance;

#[tokio::test(flavor = "multi_thread")]
async fn local_passes_the_conformance_suite() {
    let t = twindb_tests::scratch();
    let dest: Arc<dyn Destination> = Arc::new(Local::new(t.path().join("root")));
    conformance::run_all(dest.clone(), "conformance", 200 << 20).await;
    conformance::conditional_writes(dest, "conformance", true).await;
}

#[tokio::test]
async fn an_unusable_root_fails_check_naming_the_destination() {
    // Not even root can create folders in /proc.
    let dest = Local::new("/proc/twindb-cannot-write-here");
    let err = dest.check().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("local:/proc/twindb-cannot-write-here"),
        "{err}"
    );
    assert_ne!(err.kind, ErrorKind::Input);
}

// Resume after a restart, missing bucket or folder, server stopped mid-upload, cancel,
// clean_partials after a kill, share: the shared fault suite (conformance.rs).
twindb_tests::fault_suite!(twindb_tests::servers::LocalHarness::start();
    // No server to stop or restart: reads are of a local file.
    missing_root,
    cancel_leaves_nothing,
    clean_partials_after_a_kill,
    share,
);
