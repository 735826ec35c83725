//! `[source] exclude`, `exclude_caches` and `one_file_system`: each backed up through
//! the real twindbd, restored, and the restored tree compared with the source minus
//! exactly what was to be left out (mode and sha256 of every file).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use twindb_tests::tmpfs::Tmpfs;
use twindb_tests::*;

const SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// A config backing up `src` with `source_keys` added to `[source]`.
fn config(root: &Path, src: &Path, source_keys: &str) -> PathBuf {
    let path = files_config(root, &[src], "zstd", "");
    let text = fs::read_to_string(&path).unwrap();
    let line = format!("backup_dirs = [{:?}]\n", src.display().to_string());
    assert!(text.contains(&line), "files_config changed its layout");
    fs::write(
        &path,
        text.replace(&line, &format!("{line}{source_keys}\n")),
    )
    .unwrap();
    path
}

/// Backs up, restores into `root/restored` and returns the restored tree and the job.
fn back_up_and_restore(d: &Daemon, root: &Path, src: &Path) -> (BTreeMap<PathBuf, Entry>, Value) {
    let out = d.ctl(&["--json", "run", "daily"]).success();
    let job = out.json()[0].clone();
    assert_eq!(job["state"], "succeeded", "{out:?}");
    let keys = ls_keys(d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let dst = root.join("restored");
    d.ctl(&["restore", "file", &keys[0], "--dst", dst.to_str().unwrap()])
        .success();
    let id = job["id"].as_u64().unwrap();
    (snapshot(&restored_path(&dst, src)), d.job(id))
}

/// The source's tree without the entries `gone` says were left out.
fn expected(src: &Path, gone: impl Fn(&Path) -> bool) -> BTreeMap<PathBuf, Entry> {
    let mut want = snapshot(src);
    let before = want.len();
    want.retain(|p, _| !gone(p));
    assert!(want.len() < before, "the test excludes nothing");
    want
}

fn assert_tree(got: &BTreeMap<PathBuf, Entry>, want: &BTreeMap<PathBuf, Entry>) {
    for (p, e) in want {
        assert_eq!(got.get(p), Some(e), "{} differs or is missing", p.display());
    }
    let extra: Vec<_> = got.keys().filter(|p| !want.contains_key(*p)).collect();
    assert!(extra.is_empty(), "restored but excluded: {extra:?}");
}

fn excluded(job: &Value) -> (u64, u64, u64) {
    let x = &job["excluded"][0];
    (
        x["entries"].as_u64().unwrap(),
        x["cache_dirs"].as_u64().unwrap(),
        x["mount_points"].as_u64().unwrap(),
    )
}

#[test]
fn exclude_patterns_leave_out_exactly_what_they_match() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    fs::create_dir_all(src.join("app/logs/old")).unwrap();
    fs::write(src.join("app/logs/a.log"), "a").unwrap();
    fs::write(src.join("app/logs/old/b.log"), "b").unwrap();
    fs::write(
        src.join("app/keep.log"),
        "kept: the pattern is anchored at app/logs",
    )
    .unwrap();
    fs::write(src.join("nested/x.tmp"), "tmp").unwrap();
    fs::write(src.join("top.tmp"), "tmp").unwrap();
    fs::create_dir_all(src.join("nested/build/obj")).unwrap();
    fs::write(src.join("nested/build/obj/o"), "o").unwrap();
    // A file named like the folder pattern: `build/` matches folders only.
    fs::write(src.join("build"), "a file called build stays").unwrap();
    fs::write(
        src.join("per-folder.txt"),
        "left out by an absolute pattern",
    )
    .unwrap();
    let patterns = format!(
        "exclude = [\"*.tmp\", \"build/\", \"app/logs/**/*.log\", {:?}]",
        src.join("per-folder.txt").display().to_string()
    );
    let config = config(t.path(), &src, &patterns);
    let d = Daemon::start(&config);
    let (got, job) = back_up_and_restore(&d, t.path(), &src);

    let want = expected(&src, |p| {
        let s = p.to_str().unwrap();
        s.ends_with(".tmp")
            || s.starts_with("nested/build")
            || s == "app/logs/a.log"
            || s == "app/logs/old/b.log"
            || s == "per-folder.txt"
    });
    assert!(want.contains_key(Path::new("build")));
    assert!(want.contains_key(Path::new("app/logs/old")));
    assert_tree(&got, &want);
    // top.tmp, nested/x.tmp, nested/build (once, not walked), a.log, b.log, per-folder.txt
    assert_eq!(excluded(&job), (6, 0, 0), "{job}");
    let text = d.ctl(&["job", &job["id"].to_string()]).success().stdout;
    assert!(
        text.contains(&format!(
            "excluded from {}: 6 entries matched by exclude",
            src.display()
        )),
        "{text}"
    );
    assert!(
        d.log_text().contains("left out on purpose"),
        "{}",
        d.log_text()
    );
}

#[test]
fn exclude_caches_keeps_the_folder_and_its_tag_only() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let cache = src.join("nested/cache");
    fs::create_dir_all(cache.join("objects")).unwrap();
    fs::write(
        cache.join("CACHEDIR.TAG"),
        format!("{SIGNATURE}\n# a cache\n"),
    )
    .unwrap();
    fs::write(cache.join("objects/blob"), pseudo_random(10_000, 3)).unwrap();
    // A tag without the signature is no tag: that folder is copied whole.
    let fake = src.join("notacache");
    fs::create_dir_all(&fake).unwrap();
    fs::write(fake.join("CACHEDIR.TAG"), "just a file\n").unwrap();
    fs::write(fake.join("data"), "kept").unwrap();
    let config = config(t.path(), &src, "exclude_caches = true");
    let d = Daemon::start(&config);
    let (got, job) = back_up_and_restore(&d, t.path(), &src);

    let want = expected(&src, |p| p.starts_with("nested/cache/objects"));
    assert!(want.contains_key(Path::new("nested/cache/CACHEDIR.TAG")));
    assert!(want.contains_key(Path::new("notacache/data")));
    assert_tree(&got, &want);
    assert_eq!(excluded(&job), (0, 1, 0), "{job}");
}

#[test]
fn one_file_system_stores_a_mount_point_empty() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let mnt = src.join("nested/mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "4m") else {
        return;
    };
    fs::create_dir_all(mnt.join("inner")).unwrap();
    fs::write(mnt.join("inner/on-tmpfs"), "another file system").unwrap();
    let config = config(t.path(), &src, "one_file_system = true");
    let d = Daemon::start(&config);
    let (got, job) = back_up_and_restore(&d, t.path(), &src);

    let want = expected(&src, |p| {
        p.starts_with("nested/mnt") && p != Path::new("nested/mnt")
    });
    assert!(
        want.contains_key(Path::new("nested/mnt")),
        "the mount point stays"
    );
    assert_tree(&got, &want);
    assert_eq!(excluded(&job), (0, 0, 1), "{job}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_backup_dir_holding_the_destination_is_accepted_when_the_destination_is_excluded() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let inside = src.join("backups");
    let config = config(
        t.path(),
        &src,
        &format!("exclude = [{:?}]", format!("{}/", inside.display())),
    );
    let text = fs::read_to_string(&config).unwrap();
    let local = format!("path = \"{}/backups\"", t.path().display());
    assert!(text.contains(&local), "files_config changed its layout");
    fs::write(
        &config,
        text.replace(&local, &format!("path = \"{}\"", inside.display())),
    )
    .unwrap();
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily"]).success();
    let job = out.json()[0].clone();
    assert_eq!(job["state"], "succeeded", "{out:?}");
    let key = ls_keys(&d).remove(0);
    assert!(
        inside.join(&key).is_file(),
        "the copy is in the excluded folder"
    );
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &key, "--dst", dst.to_str().unwrap()])
        .success();
    let got = snapshot(&restored_path(&dst, &src));
    let want = expected(&src, |p| p.starts_with("backups"));
    assert_tree(&got, &want);
    assert_eq!(excluded(&job), (1, 0, 0), "{job}");
    assert_eq!(d.stop(), 0);
}
