//! Running xtrabackup/mariabackup, xbstream/mbstream and mysqld: exit status always
//! checked, stderr kept (its tail goes into the error, every line into the debug log).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Lines of stderr kept for the error message.
const TAIL: usize = 30;

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
    pub child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Tool {
    /// Starts `cmd` with stderr captured; stdin/stdout as the caller set them.
    pub fn spawn(mut cmd: Command) -> Result<Tool, ToolError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stderr(Stdio::piped());
        tracing::debug!(command = ?cmd, "starting");
        let mut child = cmd.spawn().map_err(|cause| ToolError::Spawn {
            program: program.clone(),
            cause,
        })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = {
            let tail = tail.clone();
            let name = program.clone();
            std::thread::spawn(move || collect(stderr, &name, &tail))
        };
        Ok(Tool {
            program,
            child,
            tail,
            reader: Some(reader),
        })
    }

    /// Waits for the tool; a non-zero exit is an error carrying the stderr tail.
    pub fn wait(self) -> Result<(), ToolError> {
        self.wait_with_tail().map(|_| ())
    }

    /// Like [`Tool::wait`], and on success returns the stderr tail: some tools
    /// (mysqlbinlog reading stdin) report errors there and still exit 0.
    pub fn wait_with_tail(mut self) -> Result<String, ToolError> {
        let status = self.child.wait().map_err(|cause| ToolError::Spawn {
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
        self.tail
            .lock()
            .expect("tail lock")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the tool (cancel or a failed pipeline) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn collect(stderr: impl Read, program: &str, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        tracing::debug!(program, "{line}");
        let mut t = tail.lock().expect("tail lock");
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Runs `cmd` to completion with no input; errors carry the stderr tail.
pub fn run_tool(mut cmd: Command) -> Result<(), ToolError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    Tool::spawn(cmd)?.wait()
}
