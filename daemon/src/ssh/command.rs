//! Remote commands: what one said and how it ended.

use std::io;

use bytes::Bytes;
use russh::client;
use russh::{ChannelMsg, ChannelWriteHalf};

use super::{connection_kind, Client};
use crate::process::Tail;

/// What a remote command said and how it ended.
#[derive(Debug, Default)]
pub struct Output {
    /// Collected by [`Client::output`]; streaming callers take the data themselves.
    pub stdout: Vec<u8>,
    pub stderr: Tail,
    pub status: Option<u32>,
    pub signal: Option<String>,
    /// The server refused to run the command at all.
    pub refused: bool,
}

impl Output {
    /// Records `msg`; returns its payload when it is stdout data.
    pub fn take(&mut self, msg: ChannelMsg) -> Option<Bytes> {
        match msg {
            ChannelMsg::Data { data } => return Some(data),
            ChannelMsg::ExtendedData { data, .. } => self.stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status } => self.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                self.signal = Some(format!("{signal_name:?}"))
            }
            ChannelMsg::Failure => self.refused = true,
            _ => {}
        }
        None
    }

    /// Ok when the command exited with status 0; otherwise why not, as an io::Error
    /// whose kind reflects the cause.
    pub fn result(&self) -> io::Result<()> {
        if self.status == Some(0) {
            return Ok(());
        }
        if self.refused {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the server refused to run a command (a restricted or sftp-only account?)",
            ));
        }
        let what = match (self.status, &self.signal) {
            (Some(code), _) => format!("the remote command exited with status {code}"),
            (None, Some(sig)) => format!("the remote command was killed by signal {sig}"),
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the connection was lost before the remote command finished",
                ))
            }
        };
        let stderr = self.stderr.text();
        let stderr = stderr.trim();
        let kind = if stderr.contains("No such file or directory") {
            io::ErrorKind::NotFound
        } else if stderr.contains("Permission denied")
            || stderr.contains("Operation not permitted")
            || stderr.contains("Read-only file system")
        {
            io::ErrorKind::PermissionDenied
        } else if stderr.contains("No space left") || stderr.contains("quota exceeded") {
            io::ErrorKind::StorageFull
        } else {
            io::ErrorKind::Other
        };
        Err(if stderr.is_empty() {
            io::Error::new(kind, what)
        } else {
            io::Error::new(kind, format!("{what}: {stderr}"))
        })
    }
}

impl Client {
    /// Runs `command` to its end with `input` on its stdin (then end of input) and
    /// collects its [`Output`]. Fails only when the command could not be started, the
    /// input not sent, or the server stalled; how the command ended is in the output
    /// ([`Output::result`]). Dropping the future (a cancelled job) closes the channel.
    pub async fn output(&self, command: &str, input: &[u8]) -> io::Result<Output> {
        let (mut rd, wr) = self.exec(command).await?.split();
        let mut wr = CloseOnDrop(Some(wr));
        let writer = wr.0.as_ref().expect("not dropped yet");
        if !input.is_empty() {
            self.unstalled(writer.data_bytes(Bytes::copy_from_slice(input)))
                .await?
                .map_err(|e| io::Error::new(connection_kind(&e), format!("sending input: {e}")))?;
        }
        // Commands that read stdin must see its end; for the others it changes nothing.
        let _ = writer.eof().await;
        let mut out = Output::default();
        while let Some(msg) = self.unstalled(rd.wait()).await? {
            if let Some(data) = out.take(msg) {
                out.stdout.extend_from_slice(&data);
            }
        }
        wr.0 = None; // the channel ended: nothing to close
        Ok(out)
    }
}

/// Closes a channel whose caller stopped waiting, so that the remote command gets its
/// hangup now rather than when the connection ends.
struct CloseOnDrop(Option<ChannelWriteHalf<client::Msg>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let (Some(wr), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = wr.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_are_classified() {
        let mut r = Output {
            status: Some(1),
            ..Default::default()
        };
        r.stderr.push(b"cat: /b/k: No such file or directory\n");
        let e = r.result().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("status 1: cat: /b/k"), "{e}");
        r.stderr = Tail::default();
        r.stderr.push(b"cat: write error: No space left on device");
        assert_eq!(r.result().unwrap_err().kind(), io::ErrorKind::StorageFull);
        r.status = None;
        assert_eq!(
            r.result().unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
        r.signal = Some("KILL".into());
        assert!(r
            .result()
            .unwrap_err()
            .to_string()
            .contains("killed by signal KILL"));
        r.refused = true;
        assert_eq!(
            r.result().unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        r.status = Some(0);
        assert!(r.result().is_ok());
    }

    #[test]
    fn messages_are_recorded_and_data_handed_back() {
        let mut r = Output::default();
        let data = r.take(ChannelMsg::Data {
            data: Bytes::from_static(b"out"),
        });
        assert_eq!(data.as_deref(), Some(&b"out"[..]));
        assert!(r
            .take(ChannelMsg::ExtendedData {
                data: Bytes::from_static(b"err\n"),
                ext: 1
            })
            .is_none());
        r.take(ChannelMsg::ExitStatus { exit_status: 3 });
        assert_eq!((r.status, r.stderr.text().as_str()), (Some(3), "err"));
    }
}
