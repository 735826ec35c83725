//! HTTP/1.1 over twindbd's Unix socket (hyper; no Unix connector needed).

use std::io;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use twindb_proto::{ApiError, JobEvent, JobInfo};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "twindbd is not running: nothing listens on {socket}. Start it with `systemctl start twindbd` \
         (or `twindbd --config FILE`), or point --socket / TWINDB_SOCKET at its socket"
    )]
    NotRunning { socket: String },
    #[error(
        "permission denied on {socket}: run as root or as a member of the daemon's socket_group"
    )]
    PermissionDenied { socket: String },
    #[error("{}", .0.message)]
    Api(ApiError, StatusCode),
    #[error("talking to twindbd on {socket}: {source}")]
    Transport { socket: String, source: io::Error },
    #[error("unexpected answer from twindbd: {0}")]
    Protocol(String),
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    fn socket_name(&self) -> String {
        self.socket.display().to_string()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning {
                        socket: self.socket_name(),
                    }
                }
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    socket: self.socket_name(),
                },
                _ => ClientError::Transport {
                    socket: self.socket_name(),
                    source: e,
                },
            })?;
        let transport = |e: hyper::Error| ClientError::Transport {
            socket: self.socket_name(),
            source: io::Error::other(e),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "twindbd");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(transport)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        let err = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            code: "http".into(),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
        });
        Err(ClientError::Api(err, status))
    }

    async fn json<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, ClientError> {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::json(self.send(Method::GET, path, None).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Self::json(self.send(Method::POST, path, Some(body)).await?).await
    }

    /// Follows a job's event stream, calling `on_event` for each; returns its final state.
    pub async fn follow(
        &self,
        id: u64,
        mut on_event: impl FnMut(&JobInfo),
    ) -> Result<JobInfo, ClientError> {
        let resp = self
            .send(Method::GET, &format!("/v1/jobs/{id}/events"), None)
            .await?;
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        let mut last: Option<JobInfo> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport {
                socket: self.socket_name(),
                source: io::Error::other(e),
            })?;
            if let Ok(mut data) = frame.into_data() {
                buf.extend_from_slice(&data.copy_to_bytes(data.remaining()));
            }
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(nl + 1);
                let event: JobEvent = serde_json::from_slice(&line[..nl])
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                on_event(&event.job);
                last = Some(event.job);
            }
        }
        match last {
            Some(info) if info.state.is_final() => Ok(info),
            // The daemon went away mid-job (restart, crash): say what we know.
            _ => self.get(&format!("/v1/jobs/{id}")).await,
        }
    }
}
