//! The `[ssh]` section: where the ssh destination connects and stores copies.
//!
//! Key names are TwinDB's. TwinDB's documentation says `ssh_port` while its code read
//! `port`; both spellings are accepted (giving both is an error).

use std::path::PathBuf;

use serde::Deserialize;

use super::Validator;

pub const DEFAULT_SSH_USER: &str = "root";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_SSH_KEY: &str = "/root/.ssh/id_rsa";
pub const DEFAULT_KNOWN_HOSTS: &str = "/root/.ssh/known_hosts";

/// `[ssh]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    pub backup_host: Option<String>,
    pub backup_dir: Option<String>,
    pub ssh_user: Option<String>,
    #[serde(alias = "port")]
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<String>,
    pub known_hosts: Option<String>,
    pub accept_new_host_keys: Option<bool>,
}

/// The validated `[ssh]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key on this host (OpenSSH ed25519/RSA, or PEM RSA), without passphrase.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// Trust and record a host key that `known_hosts` does not know yet. A *changed*
    /// key is refused regardless.
    pub accept_new_host_keys: bool,
    /// Absolute folder on the server; keys are stored below it.
    pub backup_dir: String,
}

impl Validator<'_> {
    /// Validates `[ssh]` for use as the destination.
    pub(super) fn ssh(&mut self, s: Option<SshSection>) -> SshConfig {
        let Some(s) = s else {
            self.error(
                "ssh",
                "",
                "backup_destination = \"ssh\" needs an [ssh] section with backup_host and backup_dir",
            );
            return SshConfig {
                host: String::new(),
                port: DEFAULT_SSH_PORT,
                user: DEFAULT_SSH_USER.into(),
                key: DEFAULT_SSH_KEY.into(),
                known_hosts: DEFAULT_KNOWN_HOSTS.into(),
                accept_new_host_keys: false,
                backup_dir: String::new(),
            };
        };
        let host = s.backup_host.unwrap_or_default();
        if host.is_empty() {
            self.error(
                "ssh",
                "backup_host",
                "required: the SSH server to store copies on",
            );
        } else if host.starts_with('-')
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "@/'\"".contains(c))
        {
            self.error(
                "ssh",
                "backup_host",
                format!("{host:?} is not a host name or IP address"),
            );
        }

        let backup_dir = s.backup_dir.unwrap_or_default();
        let normalized = super::normalize(std::path::Path::new(&backup_dir));
        if backup_dir.is_empty() {
            self.error(
                "ssh",
                "backup_dir",
                "required: the folder on the server that holds the copies",
            );
        } else if !backup_dir.starts_with('/') {
            self.error(
                "ssh",
                "backup_dir",
                format!("{backup_dir:?} must be an absolute path on the server"),
            );
        } else if normalized == std::path::Path::new("/") {
            self.error("ssh", "backup_dir", "must not be the server's root folder");
        } else if backup_dir.contains(['\0', '\n']) {
            self.error(
                "ssh",
                "backup_dir",
                "must not contain NUL or newline characters",
            );
        }

        let user = s.ssh_user.unwrap_or_else(|| DEFAULT_SSH_USER.into());
        if user.is_empty()
            || user.starts_with('-')
            || user.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.error("ssh", "ssh_user", format!("{user:?} is not a user name"));
        }

        let port = s.ssh_port.unwrap_or(DEFAULT_SSH_PORT);
        if port == 0 {
            self.error("ssh", "ssh_port", "must be between 1 and 65535");
        }

        let key = self.path(s.ssh_key.as_deref().unwrap_or(DEFAULT_SSH_KEY));
        match russh::keys::load_secret_key(&key, None) {
            Ok(_) => {}
            Err(russh::keys::Error::KeyIsEncrypted) => self.error(
                "ssh",
                "ssh_key",
                format!(
                    "{} is protected by a passphrase; twindbd needs a key without one",
                    key.display()
                ),
            ),
            Err(russh::keys::Error::IO(e)) => {
                self.error("ssh", "ssh_key", format!("{}: {e}", key.display()))
            }
            Err(e) => self.error(
                "ssh",
                "ssh_key",
                format!(
                    "{} is not a usable private key (OpenSSH ed25519 or RSA, or PEM RSA): {e}",
                    key.display()
                ),
            ),
        }

        let known_hosts = self.path(s.known_hosts.as_deref().unwrap_or(DEFAULT_KNOWN_HOSTS));
        let accept_new_host_keys = s.accept_new_host_keys.unwrap_or(false);
        if !accept_new_host_keys && !known_hosts.is_file() {
            self.error(
                "ssh",
                "known_hosts",
                format!(
                    "{} does not exist: add the server's host key to it (after checking its fingerprint), or set accept_new_host_keys = true to record it on first connection",
                    known_hosts.display()
                ),
            );
        }

        SshConfig {
            host,
            port,
            user,
            key,
            known_hosts,
            accept_new_host_keys,
            backup_dir: normalized.to_string_lossy().into_owned(),
        }
    }
}
