//! External programs as pipeline stages: pigz, bzip2 and lbzip2 here, gpg in `gpg.rs`.
//!
//! [`run`] spawns the program with its stdin fed from the previous pipe by one thread
//! and its stdout forwarded into the next pipe by the calling thread, while a third
//! thread keeps the tail of its stderr for the error message. The exit status is
//! checked in both directions: a program that fails, or that stops reading its input
//! early while encoding, fails the stage, so the copy is never committed. When any
//! side fails (cancel, a downstream stage stopped, an upstream stage failed) the
//! program's process group is stopped and its leader always reaped: no zombie, no hang
//! (see [`crate::process`]; the job's cancel stops it even while it hangs).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, ExitStatus, Stdio};

use super::{drain_all, Modifier, ModifierSpec};
use crate::pipeline::Cancel;
use crate::process::{Group, Tail};

/// Read size on both sides of the child's pipes; larger than a pipe's 64 KiB so that
/// each syscall moves as much as the kernel holds.
const BUF: usize = 256 * 1024;
/// Capacity asked for the pipes to and from the program.
const PIPE_SIZE: i32 = 1 << 20;

/// What the stage does with input the program did not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The program must read everything: stopping early means data would be lost.
    Encode,
    /// Whatever the program leaves unread is drained, so that the checksum stage
    /// upstream still sees (and verifies) every stored byte.
    Decode,
}

/// An external program that failed. Its Display is the whole story: what ran, how it
/// ended and what it said.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {how}{said}")]
pub struct ProgramError {
    /// e.g. "pigz -6 -p 2 -c", or gpg with the recipient and keyring.
    pub what: String,
    pub how: String,
    said: String,
}

impl ProgramError {
    fn new(what: &str, how: String, stderr: &Tail) -> ProgramError {
        let text = stderr.text();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let said = if lines.is_empty() {
            String::new()
        } else {
            format!(" (stderr: {})", lines.join("; "))
        };
        ProgramError {
            what: what.to_string(),
            how,
            said,
        }
    }
}

fn program_error(what: &str, how: String, stderr: &Tail) -> io::Error {
    io::Error::other(ProgramError::new(what, how, stderr))
}

/// Runs `cmd` as a filter from `input` to `output`. `what` names it in errors. Setting
/// `cancel` stops it.
pub fn run(
    mut cmd: Command,
    what: &str,
    direction: Direction,
    cancel: &Cancel,
    input: &mut (dyn Read + Send),
    output: &mut (dyn Write + Send),
) -> io::Result<()> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut group = Group::spawn(&mut cmd, cancel).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                e.kind(),
                format!("{what}: the program {program:?} is not installed (not found in PATH)"),
            )
        } else {
            io::Error::new(e.kind(), format!("{what}: cannot start {program:?}: {e}"))
        }
    })?;
    let mut stdin = group.child.stdin.take().expect("stdin is piped");
    let mut stdout = group.child.stdout.take().expect("stdout is piped");
    // Pipes of 1 MiB instead of 64 KiB: fewer wake-ups of the program and of our
    // threads. Best effort: the kernel may cap it (/proc/sys/fs/pipe-max-size).
    for fd in [stdin.as_fd(), stdout.as_fd()] {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    }
    let mut stderr = group.child.stderr.take().expect("stderr is piped");
    let stopper = group.stopper();
    let kill = || stopper.stop();

    let (fed, forwarded, tail, status) = std::thread::scope(|s| {
        let tail = s.spawn(move || {
            let mut tail = Tail::default();
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => tail.push(&buf[..n]),
                }
            }
            tail
        });
        let feeder = s.spawn(|| {
            let r = feed(input, &mut stdin, direction);
            if matches!(&r, Err(e) if e.kind() != io::ErrorKind::BrokenPipe) {
                // Upstream failed or was cancelled: the program must not finish
                // as if its input had ended cleanly, so it dies before stdin closes.
                kill();
            }
            // Closing stdin is the program's end of input.
            drop(stdin);
            r
        });
        let forwarded = forward(&mut stdout, output);
        if forwarded.is_err() {
            // Downstream stopped: nothing will read the program's output any more.
            kill();
        }
        drop(stdout);
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")));
        let status = group.wait();
        let tail = tail.join().unwrap_or_default();
        (fed, forwarded, tail, status)
    });

    let status = status.map_err(|e| io::Error::other(format!("{what}: waiting: {e}")))?;
    // Our own failures first: a program we killed did not fail on its own.
    forwarded?;
    if let Err(e) = &fed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return fed;
        }
    }
    if !status.success() {
        return Err(program_error(what, describe(status), &tail));
    }
    if let Err(e) = fed {
        // Exit 0 but input left unread: only possible when encoding (decode drains).
        return Err(program_error(
            what,
            format!("stopped reading its input before the end ({e})"),
            &tail,
        ));
    }
    Ok(())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

/// Copies `input` into the program. A broken pipe while decoding means the program
/// is done: drain the rest so upstream still sees every byte, and let the exit status
/// decide.
fn feed(
    input: &mut (dyn Read + Send),
    stdin: &mut impl Write,
    direction: Direction,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = stdin.write_all(&buf[..n]) {
            if e.kind() == io::ErrorKind::BrokenPipe && direction == Direction::Decode {
                drain_all(input)?;
                return Ok(());
            }
            return Err(e);
        }
    }
}

fn forward(stdout: &mut impl Read, output: &mut (dyn Write + Send)) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => return output.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
    }
}

/// The compression programs twindb can run, with TwinDB's command lines
/// (reference/twindb-2x-behaviour.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Pigz,
    Bzip2,
    Lbzip2,
}

impl Compressor {
    pub fn program(self) -> &'static str {
        match self {
            Compressor::Pigz => "pigz",
            Compressor::Bzip2 => "bzip2",
            Compressor::Lbzip2 => "lbzip2",
        }
    }

    fn args(self, direction: Direction, level: u32, threads: u32) -> Vec<String> {
        let threads = threads.max(1).to_string();
        let mut args = match (self, direction) {
            (Compressor::Pigz, Direction::Encode) => {
                vec![format!("-{level}"), "-p".into(), threads]
            }
            (Compressor::Pigz, Direction::Decode) => vec!["-d".into(), "-p".into(), threads],
            (Compressor::Bzip2, Direction::Encode) => vec![format!("-{level}")],
            (Compressor::Bzip2, Direction::Decode) => vec!["-d".into()],
            (Compressor::Lbzip2, Direction::Encode) => {
                vec![format!("-{level}"), "-n".into(), threads]
            }
            (Compressor::Lbzip2, Direction::Decode) => vec!["-d".into(), "-n".into(), threads],
        };
        args.push("-c".into());
        args
    }
}

/// A compression program as a modifier.
pub struct Program {
    pub compressor: Compressor,
    pub level: u32,
    pub threads: u32,
    /// The job's cancel: stops the program.
    pub cancel: Cancel,
}

impl Program {
    fn run(
        &self,
        direction: Direction,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let args = self.compressor.args(direction, self.level, self.threads);
        let what = format!("{} {}", self.compressor.program(), args.join(" "));
        let mut cmd = Command::new(self.compressor.program());
        cmd.args(&args);
        run(cmd, &what, direction, &self.cancel, input, output)
    }
}

impl Modifier for Program {
    fn spec(&self) -> ModifierSpec {
        let level = self.level;
        match self.compressor {
            Compressor::Pigz => ModifierSpec::Pigz { level },
            Compressor::Bzip2 => ModifierSpec::Bzip2 { level },
            Compressor::Lbzip2 => ModifierSpec::Lbzip2 { level },
        }
    }

    fn encode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        self.run(Direction::Encode, input, output)
    }

    fn decode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        self.run(Direction::Decode, input, output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn a_filter_passes_bytes_through() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut out = Vec::new();
        run(
            sh("cat"),
            "cat",
            Direction::Encode,
            &Cancel::default(),
            &mut &data[..],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_failing_program_names_itself_its_status_and_its_stderr() {
        let mut out = Vec::new();
        let err = run(
            sh("cat >/dev/null; echo 'bad things' >&2; exit 3"),
            "thing -x",
            Direction::Decode,
            &Cancel::default(),
            &mut &b"abc"[..],
            &mut out,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(msg, "thing -x: exited with status 3 (stderr: bad things)");
    }

    #[test]
    fn encode_fails_when_the_program_stops_reading_early() {
        let data = vec![7u8; 4 << 20];
        let mut out = Vec::new();
        let err = run(
            sh("head -c 10"),
            "head",
            Direction::Encode,
            &Cancel::default(),
            &mut &data[..],
            &mut out,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("stopped reading its input"),
            "{err}"
        );
    }

    #[test]
    fn decode_drains_what_the_program_left() {
        struct Counting<'a>(&'a [u8], usize);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n;
                Ok(n)
            }
        }
        let data = vec![7u8; 4 << 20];
        let mut input = Counting(&data, 0);
        let mut out = Vec::new();
        run(
            sh("head -c 10"),
            "head",
            Direction::Decode,
            &Cancel::default(),
            &mut input,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 10);
        assert_eq!(input.1, data.len());
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run(
            Command::new("twindb-no-such-program"),
            "nothing",
            Direction::Encode,
            &Cancel::default(),
            &mut &b""[..],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
    }

    #[test]
    fn a_failing_output_kills_the_child_and_reaps_it() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("downstream stopped"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // `yes` would run forever if it were not killed. The shell tells its pid, which
        // `exec` hands on to `yes`.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = std::time::Instant::now();
        let err = run(
            sh(&format!("echo $$ > '{}'; exec yes", pid_file.display())),
            "yes",
            Direction::Encode,
            &Cancel::default(),
            &mut &b""[..],
            &mut Broken,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "downstream stopped");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Gone and reaped: a killed child not waited for stays a zombie, which still
        // answers signal 0.
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH),
            "the child {pid} is still there, running or as a zombie"
        );
    }

    #[test]
    fn a_failing_input_kills_the_child() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("upstream failed"))
            }
        }
        // Without the kill, `sleep` would hold stdout open for a minute.
        let started = std::time::Instant::now();
        let err = run(
            sh("exec sleep 60"),
            "sleep",
            Direction::Encode,
            &Cancel::default(),
            &mut Failing,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "upstream failed");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
