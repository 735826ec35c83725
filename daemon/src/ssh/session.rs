//! The connection of a [`Client`]: opened on demand, shared, closed when idle.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::Channel;

use super::host_key::HostKeyCheck;
use super::shell::{Lease, Shell, SHELLS};
use super::{connection_kind, lost, Output};

/// TCP connect, key exchange and authentication together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A silent server is declared gone after 3 unanswered keepalives, 15 s apart.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The usual [`Limits::idle_close`]. Commands of one job follow each other closely, jobs
/// are far apart: this keeps one connection per job without holding a session open on
/// the server between runs.
pub const IDLE_CLOSE: Duration = Duration::from_secs(60);

/// A command running on its own channel.
pub type Exec = Channel<client::Msg>;

/// Who to connect to, as whom, and how to trust the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key on this host (OpenSSH ed25519/RSA, or PEM RSA), without passphrase.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// Trust and record a host key `known_hosts` does not know yet (never a changed one).
    pub accept_new_host_keys: bool,
}

/// How long a connection may be idle or stuck.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection nobody asked for this long is closed; the next command reconnects.
    pub idle_close: Duration,
    /// A server that accepts or sends nothing for this long while a command runs is
    /// declared stuck (a hung disk behind it: keepalives still get answers). `None`
    /// for commands that may rightly be silent for hours (clone's prepare).
    pub stall: Option<Duration>,
}

/// An SSH client of one [`Target`]. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    /// Names the client in the log (the destination's name, or the host).
    name: String,
    limits: Limits,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Shells in use or idle, at most [`SHELLS`].
    shells: Arc<tokio::sync::Semaphore>,
}

struct Session {
    handle: Arc<Handle<HostKeyCheck>>,
    last_used: Instant,
    /// Idle shells of this connection ([`Client::run`]), closed with it.
    shells: Vec<Shell>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Client {
    pub fn new(target: Target, name: String, limits: Limits) -> Client {
        Client {
            inner: Arc::new(Inner {
                target,
                name,
                limits,
                session: tokio::sync::Mutex::new(None),
                shells: Arc::new(tokio::sync::Semaphore::new(SHELLS)),
            }),
        }
    }

    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Starts `command` on a new channel of the connection (opened if need be).
    pub async fn exec(&self, command: &str) -> io::Result<Exec> {
        let h = self.handle().await?;
        let opened = async {
            let ch = h.channel_open_session().await?;
            ch.exec(true, command).await?;
            Ok::<_, russh::Error>(ch)
        };
        match opened.await {
            Ok(ch) => Ok(ch),
            Err(e) => {
                self.forget(&h).await;
                Err(lost("starting a remote command", &e))
            }
        }
    }

    /// Runs a short `command` with `input` on its stdin in one of the connection's
    /// long-lived shells ([`super::shell`]): the account's login shell starts once per
    /// shell, not once per command. Same answer as [`Client::output`]; the command's
    /// output is held in memory on both ends, so it is for status files, listings and
    /// commits, not for copies. Dropping the future (a cancelled job) closes the shell.
    pub async fn run(&self, command: &str, input: &[u8]) -> io::Result<Output> {
        let mut lease = self.lease().await?;
        let out = lease.shell.request(self, command, input).await?;
        let mut session = self.inner.session.lock().await;
        if let Some(s) = session.as_mut() {
            if Arc::ptr_eq(&s.handle, &lease.handle) {
                s.shells.push(lease.shell);
            }
        }
        Ok(out)
    }

    /// An idle shell of the connection, or a new one.
    async fn lease(&self) -> io::Result<Lease> {
        let permit = self
            .inner
            .shells
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let handle = self.handle().await?;
        let idle = {
            let mut session = self.inner.session.lock().await;
            session
                .as_mut()
                .filter(|s| Arc::ptr_eq(&s.handle, &handle))
                .and_then(|s| s.shells.pop())
        };
        let shell = match idle {
            Some(shell) => shell,
            None => {
                let ch = self.exec("exec sh").await?;
                Shell::start(ch)
                    .await
                    .map_err(|e| lost("starting a remote shell", &e))?
            }
        };
        Ok(Lease {
            shell,
            handle,
            _permit: permit,
        })
    }

    /// `fut`, unless the server makes no progress for the stall limit: then the
    /// connection is dropped (the next command reconnects) and the wait fails.
    pub async fn unstalled<T>(&self, fut: impl Future<Output = T>) -> io::Result<T> {
        let Some(limit) = self.inner.limits.stall else {
            return Ok(fut.await);
        };
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => Ok(v),
            Err(_) => {
                *self.inner.session.lock().await = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the server made no progress for {} s", limit.as_secs()),
                ))
            }
        }
    }

    /// The open connection, or a new one.
    async fn handle(&self) -> io::Result<Arc<Handle<HostKeyCheck>>> {
        let mut session = self.inner.session.lock().await;
        if let Some(s) = session.as_mut() {
            if !s.handle.is_closed() {
                s.last_used = Instant::now();
                return Ok(s.handle.clone());
            }
        }
        *session = None;
        let handle = Arc::new(self.connect().await?);
        *session = Some(Session {
            handle: handle.clone(),
            last_used: Instant::now(),
            shells: Vec::new(),
        });
        tokio::spawn(close_when_idle(
            Arc::downgrade(&self.inner),
            Arc::downgrade(&handle),
        ));
        Ok(handle)
    }

    /// Drops the cached connection if it is `h`, so the next command reconnects.
    async fn forget(&self, h: &Arc<Handle<HostKeyCheck>>) {
        let mut session = self.inner.session.lock().await;
        if session.as_ref().is_some_and(|s| Arc::ptr_eq(&s.handle, h)) {
            *session = None;
        }
    }

    async fn connect(&self) -> io::Result<Handle<HostKeyCheck>> {
        let t = &self.inner.target;
        let secret = russh::keys::load_secret_key(&t.key, None).map_err(|e| {
            let (kind, why) = match e {
                russh::keys::Error::KeyIsEncrypted => (
                    io::ErrorKind::PermissionDenied,
                    "it is protected by a passphrase".to_string(),
                ),
                russh::keys::Error::IO(io) => (io.kind(), io.to_string()),
                other => (io::ErrorKind::InvalidInput, other.to_string()),
            };
            io::Error::new(
                kind,
                format!("cannot use ssh_key {}: {why}", t.key.display()),
            )
        })?;
        let verdict = Arc::new(StdMutex::new(None));
        let handler = HostKeyCheck {
            host: t.host.clone(),
            port: t.port,
            known_hosts: t.known_hosts.clone(),
            accept_new: t.accept_new_host_keys,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: 3,
            nodelay: true,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(ciphers()),
                ..russh::Preferred::DEFAULT
            },
            ..Default::default()
        });
        let user = t.user.clone();
        let address = (t.host.clone(), t.port);
        let connecting = async move {
            let mut handle = client::connect(config, address, handler).await?;
            let hash = if secret.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await?.flatten()
            } else {
                None
            };
            let auth = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(secret), hash))
                .await?;
            Ok::<_, russh::Error>((handle, auth.success()))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no SSH session with {}:{} within {} s",
                    t.host,
                    t.port,
                    CONNECT_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(e)) => {
                if let Some(refused) = verdict.lock().expect("verdict lock").take() {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, refused));
                }
                Err(io::Error::new(
                    connection_kind(&e),
                    format!("connecting to {}:{}: {e}", t.host, t.port),
                ))
            }
            Ok(Ok((_, false))) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the server refused key authentication of user {} with ssh_key {} (is its public key in the user's authorized_keys?)",
                    t.user,
                    t.key.display()
                ),
            )),
            Ok(Ok((handle, true))) => {
                tracing::debug!(destination = %self.inner.name, "ssh session established");
                Ok(handle)
            }
        }
    }
}

/// The ciphers offered, best first. With AES instructions in the CPU, AES-GCM (ring's
/// AES-NI + carry-less multiply code, on both ends) moves several times the bytes per
/// CPU second of chacha20-poly1305, russh's and OpenSSH's first choice, which is faster
/// only without them. Copies are large streams: the cipher is a measurable part of a
/// backup's or restore's CPU (docs/benchmarks.md).
fn ciphers() -> &'static [russh::cipher::Name] {
    use russh::cipher::{
        AES_128_CTR, AES_128_GCM, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305,
    };
    const AES_FIRST: &[russh::cipher::Name] = &[
        AES_128_GCM,
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    const CHACHA_FIRST: &[russh::cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_128_GCM,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    if aes_in_hardware() {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}

#[cfg(target_arch = "x86_64")]
fn aes_in_hardware() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn aes_in_hardware() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn aes_in_hardware() -> bool {
    false
}

/// Drops the cached connection `handle` once nobody used it for `idle_close`. Channels
/// still open on it (a long upload) keep it alive until they end: russh closes a
/// session when its handle and all its channels are gone.
async fn close_when_idle(inner: Weak<Inner>, handle: Weak<Handle<HostKeyCheck>>) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let pause = {
            let mut session = inner.session.lock().await;
            let Some(s) = session.as_ref() else { return };
            if !handle.upgrade().is_some_and(|h| Arc::ptr_eq(&h, &s.handle)) {
                return; // replaced by a newer connection
            }
            let idle = s.last_used.elapsed();
            let limit = inner.limits.idle_close;
            if idle >= limit {
                tracing::debug!(destination = %inner.name, "closing the idle ssh session");
                *session = None;
                return;
            }
            limit - idle
        };
        drop(inner);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cipher OpenSSH enables by default is offered, whatever the CPU, so a server
    /// that allows only one of them still works; AES-GCM leads only with AES in hardware.
    #[test]
    fn ciphers_cover_openssh_defaults_and_lead_with_aes_gcm_on_aes_hardware() {
        use russh::cipher::{AES_128_GCM, CHACHA20_POLY1305};
        let offered = ciphers();
        for name in [
            "chacha20-poly1305@openssh.com",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-ctr",
            "aes192-ctr",
            "aes256-ctr",
        ] {
            assert!(
                offered.iter().any(|c| c.as_ref() == name),
                "{name} not offered"
            );
        }
        let first = if aes_in_hardware() {
            AES_128_GCM
        } else {
            CHACHA20_POLY1305
        };
        assert_eq!(offered[0], first);
    }
}
