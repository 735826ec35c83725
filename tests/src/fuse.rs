//! A file whose reads never return, as on a hung NFS mount: a FUSE file system of one
//! regular file, served here, that answers everything but READ. Needs root and
//! /dev/fuse (no libfuse: the few messages are written by hand).
//!
//! A read is answered only when the kernel interrupts it, which it does for a fatal
//! signal (as an NFS mount with `intr`): the reading process can exit, but nothing
//! inside it can unblock the read. Dropping it ends the connection, which fails the
//! stuck reads (ENOTCONN), then unmounts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const READ: u32 = 15;
const RELEASE: u32 = 18;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const INTERRUPT: u32 = 36;
const DESTROY: u32 = 38;
const BATCH_FORGET: u32 = 42;
/// Open flag: no page cache, every read reaches the server.
const FOPEN_DIRECT_IO: u32 = 1;

pub struct HungFile {
    pub path: PathBuf,
    /// Reads received (and left unanswered).
    reads: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<File>>,
}

/// Whether FUSE mounts are possible here; under CI their absence fails the test.
pub fn available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && nix::unistd::geteuid().is_root();
    assert!(
        ok || !crate::in_ci(),
        "the hung-read tests need root and /dev/fuse"
    );
    ok
}

impl HungFile {
    /// Mounts at `path` (created as an empty file) a file of `size` bytes that cannot
    /// be read.
    pub fn mount(path: &Path, size: u64) -> HungFile {
        fs::write(path, b"").expect("mount point");
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/fuse")
            .expect("open /dev/fuse");
        let options = format!(
            "fd={},rootmode=100644,user_id=0,group_id=0",
            dev.as_raw_fd()
        );
        mount(
            Some("twindb-hung"),
            path,
            Some("fuse"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .expect("mount the FUSE file");
        let reads = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (reads, stop) = (reads.clone(), stop.clone());
            std::thread::spawn(move || serve(dev, size, &reads, &stop))
        };
        HungFile {
            path: path.to_path_buf(),
            reads,
            stop,
            server: Some(server),
        }
    }

    /// Reads received so far (each one blocks its reader).
    pub fn reads(&self) -> u32 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Drop for HungFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.server.take() {
            // Closing the last handle of /dev/fuse aborts the connection.
            drop(s.join());
        }
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

fn serve(mut dev: File, size: u64, reads: &AtomicU32, stop: &AtomicBool) -> File {
    let mut buf = vec![0u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // ENOENT: a request interrupted before we read it.
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => continue,
            Err(_) => break,
        };
        if n < 40 {
            continue;
        }
        let opcode = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        let unique = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        let body = &buf[40..n];
        let answer: Option<(i32, Vec<u8>)> = match opcode {
            INIT => {
                let max_readahead = u32::from_le_bytes(body[8..12].try_into().unwrap());
                let mut out = Vec::new();
                out.extend_from_slice(&7u32.to_le_bytes()); // major
                out.extend_from_slice(&31u32.to_le_bytes()); // minor
                out.extend_from_slice(&max_readahead.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes()); // flags
                out.extend_from_slice(&16u16.to_le_bytes()); // max_background
                out.extend_from_slice(&12u16.to_le_bytes()); // congestion_threshold
                out.extend_from_slice(&(128u32 << 10).to_le_bytes()); // max_write
                out.extend_from_slice(&1u32.to_le_bytes()); // time_gran
                out.resize(64, 0);
                Some((0, out))
            }
            GETATTR => {
                let mut out = Vec::new();
                out.extend_from_slice(&1u64.to_le_bytes()); // attr_valid
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&attr(size));
                Some((0, out))
            }
            OPEN => {
                let mut out = Vec::new();
                out.extend_from_slice(&1u64.to_le_bytes()); // fh
                out.extend_from_slice(&FOPEN_DIRECT_IO.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                Some((0, out))
            }
            READ => {
                // The point of it all: never answered.
                reads.fetch_add(1, Ordering::SeqCst);
                None
            }
            INTERRUPT => {
                // The reader got a fatal signal: fail its read so it can exit.
                let read = u64::from_le_bytes(body[0..8].try_into().unwrap());
                reply(&mut dev, read, -4, &[]); // EINTR
                None
            }
            FORGET | BATCH_FORGET | DESTROY => None,
            FLUSH | RELEASE => Some((0, vec![])),
            LOOKUP => Some((-2, vec![])), // ENOENT
            _ => Some((-38, vec![])),     // ENOSYS
        };
        if let Some((error, payload)) = answer {
            reply(&mut dev, unique, error, &payload);
        }
    }
    dev
}

fn reply(dev: &mut File, unique: u64, error: i32, payload: &[u8]) {
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_le_bytes());
    msg.extend_from_slice(&error.to_le_bytes());
    msg.extend_from_slice(&unique.to_le_bytes());
    msg.extend_from_slice(payload);
    let _ = dev.write(&msg);
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// `struct fuse_attr` of the one regular file (inode 1, mode 0644).
fn attr(size: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut a = Vec::new();
    a.extend_from_slice(&1u64.to_le_bytes()); // ino
    a.extend_from_slice(&size.to_le_bytes());
    a.extend_from_slice(&size.div_ceil(512).to_le_bytes()); // blocks
    for _ in 0..3 {
        a.extend_from_slice(&now.to_le_bytes()); // atime, mtime, ctime
    }
    for _ in 0..3 {
        a.extend_from_slice(&0u32.to_le_bytes()); // nsecs
    }
    a.extend_from_slice(&0o100644u32.to_le_bytes()); // mode
    a.extend_from_slice(&1u32.to_le_bytes()); // nlink
    a.extend_from_slice(&0u32.to_le_bytes()); // uid
    a.extend_from_slice(&0u32.to_le_bytes()); // gid
    a.extend_from_slice(&0u32.to_le_bytes()); // rdev
    a.extend_from_slice(&4096u32.to_le_bytes()); // blksize
    a.extend_from_slice(&0u32.to_le_bytes()); // flags
    a
}
