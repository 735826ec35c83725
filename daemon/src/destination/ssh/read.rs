//! Reading an object: a remote `cat` streamed, failing unless it ends with status 0.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{DestinationError, Ssh};
use crate::pipeline::{ByteStream, CHUNK};
use crate::ssh::{quote, Exec, Output};

impl Ssh {
    /// Starts `cat` on the object and waits for its first byte (or its end), so that a
    /// missing object fails here rather than in the middle of the stream.
    pub(super) async fn open_read(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let path = self
            .path(key)
            .map_err(|e| self.err("reading", Some(key), e))?;
        let mut ch = self
            .exec(
                "reading",
                Some(key),
                &format!("exec cat -- {}", quote(&path)),
            )
            .await?;
        let mut state = Output::default();
        let first = loop {
            let msg = self
                .unstalled(ch.wait())
                .await
                .map_err(|e| self.err("reading", Some(key), e))?;
            match msg {
                Some(msg) => {
                    if let Some(data) = state.take(msg) {
                        break Some(data);
                    }
                }
                None => break None,
            }
        };
        let Some(first) = first else {
            state
                .result()
                .map_err(|e| self.err("reading", Some(key), e))?;
            return Ok(futures::stream::empty().boxed());
        };
        let reader = Reader {
            ch,
            state,
            pending: BytesMut::from(&first[..]),
            done: false,
            ssh: self.clone(),
            key: key.to_string(),
        };
        Ok(futures::stream::unfold(reader, Reader::next).boxed())
    }
}

/// Streams a remote `cat`, failing the stream unless it ends with exit status 0.
struct Reader {
    ch: Exec,
    state: Output,
    /// SSH packets (32 KiB) are gathered into pipeline-sized chunks: a quarter of the
    /// hand-offs between the download task and the checksum thread.
    pending: BytesMut,
    done: bool,
    ssh: Ssh,
    key: String,
}

impl Reader {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if self.pending.len() >= CHUNK {
                let chunk = self.pending.split().freeze();
                return Some((Ok(chunk), self));
            }
            let msg = match self.ssh.unstalled(self.ch.wait()).await {
                Ok(msg) => msg,
                Err(e) => {
                    self.done = true;
                    let err = self.ssh.err("reading", Some(&self.key), e);
                    return Some((Err(io::Error::new(io::ErrorKind::TimedOut, err)), self));
                }
            };
            match msg {
                Some(msg) => {
                    if let Some(data) = self.state.take(msg) {
                        self.pending.extend_from_slice(&data);
                    }
                }
                None => {
                    self.done = true;
                    return match self.state.result() {
                        Ok(()) if self.pending.is_empty() => None,
                        Ok(()) => {
                            let chunk = self.pending.split().freeze();
                            Some((Ok(chunk), self))
                        }
                        Err(e) => {
                            let kind = e.kind();
                            let err = self.ssh.err("reading", Some(&self.key), e);
                            Some((Err(io::Error::new(kind, err)), self))
                        }
                    };
                }
            }
        }
    }
}
