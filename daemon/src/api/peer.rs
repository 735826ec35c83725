//! Who is on the other end of the socket, and may they talk to twindbd?
//!
//! The socket's mode (0660, group `socket_group`) is the first gate; this check is the
//! second, so that a socket made world-writable by mistake still refuses strangers.

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

use crate::config::Config;

#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            // Unknown peers get no rights.
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Allowed {
    daemon_uid: u32,
    group: Option<(String, u32)>,
}

impl Allowed {
    pub fn from_config(config: &Config) -> Self {
        Allowed {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            group: config.daemon.socket_group.clone(),
        }
    }

    pub fn permits(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.daemon_uid {
            return true;
        }
        let Some((_, gid)) = &self.group else {
            return false;
        };
        peer.gid == *gid
            || peer
                .pid
                .is_some_and(|pid| supplementary_groups(pid).contains(gid))
    }
}

/// The peer process's supplementary groups, from /proc (SO_PEERCRED gives only the primary).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

pub async fn check(
    State(allowed): State<Allowed>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    if allowed.permits(&peer) {
        return next.run(req).await;
    }
    tracing::warn!(uid = peer.uid, pid = ?peer.pid, "refused a client that is neither root nor in socket_group");
    let who = match &allowed.group {
        Some((name, _)) => format!("root or members of group {name:?}"),
        None => "root (set [daemon] socket_group to allow a group)".to_string(),
    };
    super::error(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("uid {} may not use twindbd: only {who}", peer.uid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_self_and_group_members_only() {
        let a = Allowed {
            daemon_uid: 0,
            group: Some(("backup".into(), 34)),
        };
        let p = |uid, gid| Peer {
            uid,
            gid,
            pid: None,
        };
        assert!(a.permits(&p(0, 0)));
        assert!(a.permits(&p(1000, 34)));
        assert!(!a.permits(&p(1000, 1000)));
        let no_group = Allowed {
            daemon_uid: 0,
            group: None,
        };
        assert!(!no_group.permits(&p(1000, 34)));
    }
}
