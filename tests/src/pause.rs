//! Pause points (daemon/src/failpoint.rs) from the test's side: twindbd started with
//! [`Pause::env`] holds a job at the named step until the test calls [`Pause::go`].
//! A test acts while the job is exactly there, instead of sleeping and hoping.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Daemon;

pub struct Pause {
    dir: PathBuf,
    point: &'static str,
}

impl Pause {
    /// A pause at `point` (one of `twindb::failpoint::POINTS`), its files under `root`.
    pub fn new(root: &Path, point: &'static str) -> Pause {
        assert!(
            twindb::failpoint::POINTS.contains(&point),
            "unknown pause point {point}"
        );
        let dir = root.join("pause");
        fs::create_dir_all(&dir).unwrap();
        Pause { dir, point }
    }

    /// The environment for [`Daemon::start_with_env`].
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("TWINDB_PAUSE_AT", self.point),
            ("TWINDB_PAUSE_DIR", self.dir.to_str().expect("UTF-8 path")),
        ]
    }

    /// Blocks until a job of `d` waits at the point.
    pub fn wait_reached(&self, d: &Daemon) {
        let reached = self.dir.join(format!("{}.reached", self.point));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reached.exists() {
            assert!(
                Instant::now() < deadline,
                "no job reached {} within 60 s:\n{}",
                self.point,
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the job (and every later one) go on past the point.
    pub fn go(&self) {
        fs::write(self.dir.join(format!("{}.go", self.point)), b"").unwrap();
    }
}
