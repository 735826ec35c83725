//! The replication connection: `mariadb-binlog --read-from-remote-server --raw
//! --stop-never` (or `mysqlbinlog`), a supervised child that writes the events it
//! receives, byte for byte, to one file per binlog in a spool folder, which this side
//! reads as they grow.
//!
//! Why a child and not mysql_async's binlog stream: MariaDB sends its annotate events
//! only to a replica that asks for them with a dump flag mysql_async cannot set; without
//! them the stored file is not the server's (docs/mysql.md).
//!
//! The spool stays small: what a committed segment holds is freed at once (a hole
//! punched in the spool file) and a finished file is deleted. A spool file starts with
//! the magic; on a resume inside a file the format description follows (sent with
//! `log_pos` 0), then the events from the resume position.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::mysql::binlog_sequence;
use crate::pipeline::Cancel;
use crate::process::Group;

use super::event::{Header, HEADER_LEN};

/// Reads at most this much of a spool file at once.
const READ: usize = 256 << 10;

pub struct Spool {
    dir: PathBuf,
    group: Group,
    stop: Cancel,
    reading: Option<Reading>,
}

struct Reading {
    name: String,
    file: File,
    /// Bytes of the spool file read so far.
    offset: u64,
    /// Read, not yet a whole event.
    buf: Vec<u8>,
}

impl Spool {
    /// Empties `dir` and starts the child from `file` at `pos`.
    pub fn start(
        program: &Path,
        defaults_file: &Path,
        replica_id: u32,
        file: &str,
        pos: u64,
        dir: &Path,
    ) -> io::Result<Spool> {
        stop_leftover(dir);
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        let stderr = File::create(dir.join("stderr.log"))?;
        let mut cmd = Command::new(program);
        // The password stays in the defaults file: never on a command line.
        cmd.arg(format!("--defaults-file={}", defaults_file.display()))
            .args(["--read-from-remote-server", "--raw", "--stop-never"])
            .arg(format!("--stop-never-slave-server-id={replica_id}"))
            .arg(format!("--start-position={pos}"))
            .arg(format!("--result-file={}/", dir.display()))
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let stop = Cancel::default();
        let group = Group::spawn(&mut cmd, &stop)?;
        fs::write(dir.join("child.pid"), group.child.id().to_string())?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            group,
            stop,
            reading: None,
        })
    }

    /// The next whole event of file `name`, if the child wrote one.
    pub fn next_event(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        if self.reading.as_ref().is_none_or(|r| r.name != name) {
            let path = self.dir.join(name);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut magic = [0u8; 4];
            if file.read(&mut magic)? < 4 {
                // Not even the magic yet: try again later.
                return Ok(None);
            }
            self.reading = Some(Reading {
                name: name.to_string(),
                file,
                offset: 4,
                buf: Vec::new(),
            });
        }
        let r = self.reading.as_mut().expect("opened above");
        loop {
            if r.buf.len() >= HEADER_LEN {
                let size = Header::parse(&r.buf).map_or(0, |h| h.size as usize);
                if size < HEADER_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: a broken event at spool offset {}",
                            name,
                            r.offset - r.buf.len() as u64
                        ),
                    ));
                }
                if r.buf.len() >= size {
                    let rest = r.buf.split_off(size);
                    return Ok(Some(std::mem::replace(&mut r.buf, rest)));
                }
            }
            let mut chunk = vec![0u8; READ];
            let n = r.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            r.offset += n as u64;
            r.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The first spool file after `name`: once it exists, `name` is complete.
    pub fn next_file_after(&self, name: &str) -> Option<String> {
        let after = binlog_sequence(name)?;
        fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| binlog_sequence(n).is_some_and(|s| s > after) && n.len() == name.len())
            .min_by_key(|n| binlog_sequence(n))
    }

    /// Frees what was read of the current file (it is stored) and deletes the files
    /// before it.
    pub fn release(&self) {
        let Some(r) = &self.reading else { return };
        let done = r.offset - r.buf.len() as u64;
        use nix::fcntl::{fallocate, FallocateFlags};
        let _ = fallocate(
            &r.file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            0,
            done as i64,
        );
        if let Ok(entries) = fs::read_dir(&self.dir) {
            let current = binlog_sequence(&r.name);
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if binlog_sequence(&n).is_some_and(|s| Some(s) < current) && n.len() == r.name.len()
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Whether the child ended; with what it said last.
    pub fn ended(&mut self) -> Option<String> {
        if !self.group.exited() {
            return None;
        }
        let status = self.group.wait().ok();
        let text = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let said = tail.into_iter().rev().collect::<Vec<_>>().join("; ");
        Some(format!(
            "mariadb-binlog exited ({}){}",
            status.map_or("?".into(), |s| s.to_string()),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ))
    }

    /// Stops the child; what it wrote can still be read.
    pub fn stop(&mut self) {
        self.stop.cancel();
        let _ = self.group.wait();
    }
}

/// A child an earlier twindbd left running (it was killed): the spool folder is its.
fn stop_leftover(dir: &Path) {
    let Ok(pid) = fs::read_to_string(dir.join("child.pid")) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours =
        String::from_utf8_lossy(&cmdline).contains(&format!("--result-file={}/", dir.display()));
    if ours {
        tracing::info!(
            pid,
            "stopping the binlog reader an earlier twindbd left running"
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
