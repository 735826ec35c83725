//! A small tmpfs mounted over a folder: a destination that really fills up (ENOSPC
//! from the kernel, not a simulated error). Needs root, as CI has.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs on a folder, unmounted on drop. Declare it after whatever owns the folder
/// (a temp dir, a server) and before a daemon writing into it, so that it is dropped
/// after the daemon and before the folder is removed.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: "8m") on `dir`, creating it. `None`
    /// (after saying "skipped") when not root outside CI; under `CI=true` a failure.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            assert!(!crate::in_ci(), "mounting a tmpfs needs root, as CI runs");
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).expect("tmpfs mount point");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(dir));
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Grows (or shrinks) it in place; what it holds stays.
    pub fn resize(&self, size: &str) {
        run(Command::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size}"))
            .arg(&self.dir));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy if busy: a server killed a moment ago may still hold a file open.
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run mount");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}
