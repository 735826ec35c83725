//! Share links on a destination that cannot sign: a clear error, nothing made public.

use twindb_tests::*;

#[test]
fn the_local_destination_refuses_to_share_with_a_clear_error() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let d = Daemon::start(&files_config(t.path(), &[&src], "zstd", ""));
    d.ctl(&["run", "daily"]).success();
    let key = ls_keys(&d).remove(0);
    let out = d.ctl(&["share", &key]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot make share links"), "{out:?}");
    assert!(out.stderr.contains("local:"), "{out:?}");
    assert_eq!(d.stop(), 0);
}
