//! Short commands through long-lived remote shells: [`Client::run`].
//!
//! sshd runs every exec channel's command through the account's login shell, which
//! reads its rc files first (bash's `~/.bashrc` for commands sshd starts); on hosts
//! whose rc files do real work (`pyenv init`: 0.15 to 0.33 s here) a backup job's 30
//! small status and commit commands spent seconds starting shells (docs/benchmarks.md).
//! So short commands go to a plain `sh` started once per channel and kept with the
//! connection: one login shell per connection instead of one per command.
//!
//! Each request is shell text on the shell's stdin: the input (if any) is written to a
//! file from a base64 here-document, the command runs in a subshell with its stdin,
//! stdout and stderr redirected to files, and the shell answers with one header line,
//! `twindb-answer-N STATUS OUT-BYTES ERR-BYTES`, then the two files' bytes. So the
//! command's output can be anything (binary, NUL bytes, no final newline), and an
//! `exit`, `cd` or `exec` in it ends only its subshell. The files live in a folder of
//! the shell's own (`mktemp -d`), removed when the shell ends.
//!
//! A shell is used by one request at a time. One whose request failed, or whose caller
//! stopped waiting (a cancelled job), is closed, never reused: its state is unknown.

use std::io;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};

use russh::client;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use super::{lost, Client, Output};
use crate::process::Tail;

/// Shells kept per connection: sshd allows 10 channels per connection by default
/// (`MaxSessions`), and uploads and reads need their own.
pub(super) const SHELLS: usize = 4;

/// Sets up a new shell: its folder for the request files, removed when it ends.
const SETUP: &str = "t=$(mktemp -d) || exit 1; o=$t/o; e=$t/e; i=$t/i; \
                     trap 'rm -rf -- \"$t\"' EXIT; trap 'exit 1' HUP TERM PIPE\n";

/// Numbers every request of this process, so that an answer is never taken for
/// another's.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Ends the base64 here-document of a request's input; base64 never holds a '_'.
const END_OF_INPUT: &str = "twindb_end_of_input";

/// A remote `sh` reading requests on its stdin.
pub(super) struct Shell {
    rd: ChannelReadHalf,
    /// `None` once closed.
    wr: Option<ChannelWriteHalf<client::Msg>>,
    /// Stdout of the shell not yet taken by an answer.
    buf: BytesMut,
    /// What the shell itself said on stderr (a request it could not parse).
    stderr: Tail,
}

impl Shell {
    /// Sets up the `sh` running on `ch` ([`Client::exec`] of `exec sh`).
    pub(super) async fn start(ch: super::Exec) -> Result<Shell, russh::Error> {
        let (rd, wr) = ch.split();
        wr.data_bytes(Bytes::from_static(SETUP.as_bytes())).await?;
        Ok(Shell {
            rd,
            wr: Some(wr),
            buf: BytesMut::new(),
            stderr: Tail::default(),
        })
    }

    /// Runs `command` with `input` on its stdin and returns how it ended. Fails when
    /// the shell or its connection is gone, or the server stalled (see
    /// [`Client::unstalled`]); how the command itself ended is in the output.
    pub(super) async fn request(
        &mut self,
        client: &Client,
        command: &str,
        input: &[u8],
    ) -> io::Result<Output> {
        let marker = format!(
            "twindb-answer-{} ",
            REQUESTS.fetch_add(1, Ordering::Relaxed)
        );
        let text = request_text(command, input, &marker);
        let wr = self.wr.as_ref().ok_or_else(|| ended("closed"))?;
        client
            .unstalled(wr.data_bytes(Bytes::from(text)))
            .await?
            .map_err(|e| lost("while sending a command", &e))?;
        loop {
            if let Some(out) = take_answer(&mut self.buf, &marker)? {
                return Ok(out);
            }
            match client.unstalled(self.rd.wait()).await? {
                Some(ChannelMsg::Data { data }) => self.buf.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, .. }) => self.stderr.push(&data),
                Some(ChannelMsg::Failure) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "the server refused to run a command (a restricted or sftp-only account?)",
                    ))
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    return Err(ended(&format!("with status {exit_status}{}", self.said())))
                }
                Some(_) => {}
                None => return Err(ended(&format!("(channel closed){}", self.said()))),
            }
        }
    }

    /// The shell's own stderr, for an error saying why it ended.
    fn said(&self) -> String {
        let text = self.stderr.text();
        match text.trim() {
            "" => String::new(),
            t => format!(": {t}"),
        }
    }
}

impl Drop for Shell {
    /// Closes the channel, so that the remote shell ends now (and removes its folder)
    /// rather than when the connection does.
    fn drop(&mut self) {
        if let (Some(wr), Ok(rt)) = (self.wr.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = wr.close().await;
            });
        }
    }
}

/// The shell text of one request.
fn request_text(command: &str, input: &[u8], marker: &str) -> String {
    let mut text = String::with_capacity(command.len() + input.len() * 4 / 3 + 256);
    let stdin = if input.is_empty() {
        "/dev/null"
    } else {
        text.push_str(&format!("base64 -d > \"$i\" <<'{END_OF_INPUT}'\n"));
        let encoded = base64::engine::general_purpose::STANDARD.encode(input);
        for line in encoded.as_bytes().chunks(76) {
            text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            text.push('\n');
        }
        text.push_str(END_OF_INPUT);
        text.push('\n');
        "\"$i\""
    };
    // The newline before `)` ends a command that ends with a comment.
    text.push_str(&format!(
        "( {command}\n) < {stdin} > \"$o\" 2> \"$e\"; s=$?; \
         printf '%s%s %s %s\\n' '{marker}' \"$s\" \"$(wc -c < \"$o\")\" \"$(wc -c < \"$e\")\"; \
         cat -- \"$o\" \"$e\"\n"
    ));
    text
}

/// The answer headed by `marker` taken from `buf`, once all of it arrived. What comes
/// before the header is not ours (output of the login shell's rc files): dropped.
fn take_answer(buf: &mut BytesMut, marker: &str) -> io::Result<Option<Output>> {
    let Some(at) = find(buf, marker.as_bytes()) else {
        return Ok(None);
    };
    let Some(eol) = buf[at..].iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&buf[at + marker.len()..at + eol]).to_string();
    let numbers: Vec<u64> = header
        .split_whitespace()
        .map(|n| n.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad_header(&header))?;
    let [status, out_len, err_len] = numbers[..] else {
        return Err(bad_header(&header));
    };
    let body = at + eol + 1;
    let (out_len, err_len) = (out_len as usize, err_len as usize);
    if buf.len() < body + out_len + err_len {
        return Ok(None);
    }
    let mut answer = buf.split_to(body + out_len + err_len);
    let _ = answer.split_to(body);
    let stdout = answer.split_to(out_len).to_vec();
    let mut stderr = Tail::default();
    stderr.push(&answer);
    Ok(Some(Output {
        stdout,
        stderr,
        status: Some(u32::try_from(status).unwrap_or(u32::MAX)),
        signal: None,
        refused: false,
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn ended(how: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("the remote shell ended {how}"),
    )
}

fn bad_header(header: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the remote shell answered {header:?}; expected a status and two sizes"),
    )
}

/// A shell taken from the connection's pool for one request; [`Client::run`] gives it
/// back when the request ended cleanly.
pub(super) struct Lease {
    pub(super) shell: Shell,
    pub(super) handle: Arc<client::Handle<super::host_key::HostKeyCheck>>,
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request text, run by a local `sh` set up as a remote one is, answers with
    /// the header and the exact bytes, for binary output, input and failures.
    #[test]
    fn requests_run_under_sh_and_answer_exact_bytes() {
        let mut script = SETUP.to_string();
        script.push_str(&request_text("printf 'a\\0b'", b"", "M1 "));
        script.push_str(&request_text("cat; exit 3", b"in\0put\n\xff", "M2 "));
        script.push_str(&request_text("echo oops >&2; exec false", b"", "M3 "));
        script.push_str(&request_text("cd / # a comment", b"", "M4 "));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let stdout = out.stdout;
        let expected: &[u8] = b"M1 0 3 0\na\0bM2 3 8 0\nin\0put\n\xffM3 1 0 5\noops\nM4 0 0 0\n";
        assert_eq!(
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn answers_are_taken_whole_and_in_order() {
        let mut buf = BytesMut::from(&b"rc output\nM1 0 3 4\nabcerr\n!M2 7 0 0\n"[..]);
        let out = take_answer(&mut buf, "M1 ").unwrap().unwrap();
        assert_eq!(
            (
                out.stdout.as_slice(),
                out.stderr.text().as_str(),
                out.status
            ),
            (&b"abc"[..], "err", Some(0))
        );
        // The '!' is not an answer's: dropped with the header of the next.
        let out = take_answer(&mut buf, "M2 ").unwrap().unwrap();
        assert_eq!((out.stdout.len(), out.status), (0, Some(7)));
        assert!(buf.is_empty());
        // Not all there yet.
        let mut partial = BytesMut::from(&b"M3 0 10 0\nabc"[..]);
        assert!(take_answer(&mut partial, "M3 ").unwrap().is_none());
        let mut partial = BytesMut::from(&b"M3 0 1"[..]);
        assert!(take_answer(&mut partial, "M3 ").unwrap().is_none());
        let mut bad = BytesMut::from(&b"M4 x\n"[..]);
        assert!(take_answer(&mut bad, "M4 ").is_err());
    }
}
