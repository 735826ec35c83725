//! Running xtrabackup/mariabackup, xbstream/mbstream and mysqld: exit status always
//! checked, stderr kept (its tail goes into the error, every line into the debug log).
//! Each runs as a [`Group`]: the job's cancel stops it and everything it started.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::pipeline::Cancel;
use crate::process::{Group, Tail};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot start {program}: {cause}")]
    Spawn { program: String, cause: io::Error },
    #[error("{program} failed ({status}); its last messages:\n{tail}")]
    Failed {
        program: String,
        status: ExitStatus,
        tail: String,
    },
}

impl From<ToolError> for io::Error {
    fn from(e: ToolError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// A started tool whose stderr is being collected.
pub struct Tool {
    pub program: String,
    group: Group,
    tail: Arc<Mutex<Tail>>,
    reader: Option<JoinHandle<()>>,
}

impl Tool {
    /// Starts `cmd` with stderr captured; stdin/stdout as the caller set them. Setting
    /// `cancel` stops it.
    pub fn spawn(mut cmd: Command, cancel: &Cancel) -> Result<Tool, ToolError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stderr(Stdio::piped());
        tracing::debug!(command = ?cmd, "starting");
        let mut group = Group::spawn(&mut cmd, cancel).map_err(|cause| ToolError::Spawn {
            program: program.clone(),
            cause,
        })?;
        let stderr = group.child.stderr.take().expect("stderr is piped");
        let tail = Arc::new(Mutex::new(Tail::default()));
        let reader = {
            let tail = tail.clone();
            let name = program.clone();
            std::thread::spawn(move || collect(stderr, &name, &tail))
        };
        Ok(Tool {
            program,
            group,
            tail,
            reader: Some(reader),
        })
    }

    /// The tool's stdin, when the caller piped it.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.group.child.stdin.take().expect("stdin is piped")
    }

    /// The tool's stdout, when the caller piped it.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.group.child.stdout.take().expect("stdout is piped")
    }

    /// Waits for the tool; a non-zero exit is an error carrying the stderr tail.
    pub fn wait(self) -> Result<(), ToolError> {
        self.wait_with_tail().map(|_| ())
    }

    /// Like [`Tool::wait`], and on success returns the stderr tail: some tools
    /// (mysqlbinlog reading stdin) report errors there and still exit 0.
    pub fn wait_with_tail(mut self) -> Result<String, ToolError> {
        let status = self.group.wait().map_err(|cause| ToolError::Spawn {
            program: self.program.clone(),
            cause,
        })?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if status.success() {
            Ok(self.tail())
        } else {
            Err(ToolError::Failed {
                program: self.program.clone(),
                status,
                tail: self.tail(),
            })
        }
    }

    pub fn tail(&self) -> String {
        self.tail.lock().expect("tail lock").text()
    }

    /// Stops the tool and all it started (cancel or a failed pipeline) and reaps it.
    pub fn kill(mut self) {
        let _ = self.group.stop();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Reads stderr to its end (also when it is not UTF-8: a reader that stopped early
/// would leave the tool blocked on a full pipe), every line into the debug log.
fn collect(stderr: impl Read, program: &str, tail: &Mutex<Tail>) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match stderr.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                tracing::debug!(program, "{}", String::from_utf8_lossy(&line).trim_end());
                tail.lock().expect("tail lock").push(&line);
            }
        }
    }
}

/// Runs `cmd` to completion with no input; errors carry the stderr tail. Setting
/// `cancel` stops it.
pub fn run_tool(mut cmd: Command, cancel: &Cancel) -> Result<(), ToolError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    Tool::spawn(cmd, cancel)?.wait()
}

/// `--use-memory` of `--prepare` without `[mysql] prepare_memory`: a quarter of the
/// host's memory, at least 128 MiB and at most 4 GiB (the tools' own default, 100 MB,
/// makes the prepare of a large copy crawl; more than a few GiB rarely helps and would
/// squeeze a server restored beside a running one).
pub fn default_prepare_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
        .unwrap_or(4 << 30);
    (total / 4).clamp(128 << 20, 4 << 30)
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Threads of `xbstream`/`mbstream -x --parallel`: each writes files of its own.
pub fn extract_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_memory_is_a_quarter_of_the_host_within_bounds() {
        let text = "MemTotal:       16318412 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total(text), Some(16318412 * 1024));
        assert_eq!(mem_total("nothing"), None);
        let d = default_prepare_memory();
        assert!((128 << 20..=4 << 30).contains(&d), "{d}");
    }
}
