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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{parse, Config, ConfigErrors, DestinationConfig};

    /// A config whose destination is ssh, with `ssh` as the [ssh] section body.
    fn with_ssh(dir: &Path, ssh: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"ssh\"\n\n[ssh]\n{ssh}"
        );
        parse(&dir.join("twindb.toml"), &text)
    }

    fn keys_in(dir: &Path) -> (String, String) {
        let key = dir.join("id");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            // Without ssh-keygen, a key in OpenSSH format written by hand would do; the
            // integration tests need OpenSSH anyway.
            panic!("ssh-keygen is needed for this test (apt-get install openssh-client)");
        }
        let known = dir.join("known_hosts");
        std::fs::write(&known, "").unwrap();
        (key.display().to_string(), known.display().to_string())
    }

    #[test]
    fn a_full_section_validates_with_defaults_and_relative_paths() {
        let t = tempfile::tempdir().unwrap();
        let (_, known) = keys_in(t.path());
        let c = with_ssh(
            t.path(),
            &format!(
                "backup_host = \"backup1.example.com\"\nbackup_dir = \"/var/backup/\"\nssh_key = \"id\"\nknown_hosts = \"{known}\"\n"
            ),
        )
        .unwrap();
        let DestinationConfig::Ssh(s) = &c.destination else {
            panic!("an ssh destination");
        };
        assert_eq!(s.host, "backup1.example.com");
        assert_eq!(s.backup_dir, "/var/backup");
        assert_eq!(s.user, "root");
        assert_eq!(s.port, 22);
        assert_eq!(s.key, t.path().join("id"));
        assert!(!s.accept_new_host_keys);
        assert_eq!(c.keep_local_path, None);
    }

    #[test]
    fn twindb_port_spelling_is_accepted_but_not_both() {
        let t = tempfile::tempdir().unwrap();
        let (key, known) = keys_in(t.path());
        let base = format!(
            "backup_host = \"b\"\nbackup_dir = \"/b\"\nssh_key = \"{key}\"\nknown_hosts = \"{known}\"\n"
        );
        let c = with_ssh(t.path(), &format!("{base}port = 2222\n")).unwrap();
        let DestinationConfig::Ssh(s) = &c.destination else {
            panic!("an ssh destination");
        };
        assert_eq!(s.port, 2222);
        let err = with_ssh(t.path(), &format!("{base}port = 2222\nssh_port = 22\n")).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn every_problem_names_file_line_and_key() {
        let t = tempfile::tempdir().unwrap();
        let text = "backup_dir = \"var/backup\"\nssh_user = \"\"\nssh_port = 0\nssh_key = \"/nonexistent/id\"\nknown_hosts = \"/nonexistent/known_hosts\"\n";
        let err = with_ssh(t.path(), text).unwrap_err();
        let found: Vec<_> = err.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        // [ssh] starts on line 7 of the generated file.
        for want in [
            ("[ssh] backup_host", Some(7)),
            ("[ssh] backup_dir", Some(8)),
            ("[ssh] ssh_user", Some(9)),
            ("[ssh] ssh_port", Some(10)),
            ("[ssh] ssh_key", Some(11)),
            ("[ssh] known_hosts", Some(12)),
        ] {
            assert!(found.contains(&want), "{want:?} in {err}");
        }
        assert!(
            err.to_string().contains("twindb.toml:8: [ssh] backup_dir"),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/id"), "{err}");
    }

    #[test]
    fn a_missing_known_hosts_is_fine_when_new_keys_are_accepted() {
        let t = tempfile::tempdir().unwrap();
        let (key, _) = keys_in(t.path());
        let c = with_ssh(
            t.path(),
            &format!("backup_host = \"b\"\nbackup_dir = \"/b\"\nssh_key = \"{key}\"\nknown_hosts = \"new_known_hosts\"\naccept_new_host_keys = true\n"),
        )
        .unwrap();
        let DestinationConfig::Ssh(s) = &c.destination else {
            panic!("an ssh destination");
        };
        assert!(s.accept_new_host_keys);
        assert_eq!(s.known_hosts, t.path().join("new_known_hosts"));
    }

    #[test]
    fn an_encrypted_key_is_refused_with_a_reason() {
        let t = tempfile::tempdir().unwrap();
        let (_, known) = keys_in(t.path());
        let key = t.path().join("locked");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret passphrase", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let err = with_ssh(
            t.path(),
            &format!("backup_host = \"b\"\nbackup_dir = \"/b\"\nssh_key = \"locked\"\nknown_hosts = \"{known}\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert!(!err.to_string().contains("secret passphrase"), "{err}");
    }

    #[test]
    fn keep_local_path_resolves_and_must_not_overlap_a_local_destination() {
        let t = tempfile::tempdir().unwrap();
        let base = "[source]\nbackup_dirs = [\"/etc\"]\n\n[local]\npath = \"/srv/backup\"\n\n[destination]\nbackup_destination = \"local\"\n";
        let file = t.path().join("twindb.toml");
        let c = parse(&file, &format!("{base}keep_local_path = \"kept\"\n")).unwrap();
        assert_eq!(c.keep_local_path, Some(t.path().join("kept")));
        let err = parse(
            &file,
            &format!("{base}keep_local_path = \"/srv/backup/kept\"\n"),
        )
        .unwrap_err();
        assert_eq!(err.0[0].key, "[destination] keep_local_path", "{err}");
        assert_eq!(err.0[0].line, Some(9), "{err}");
        assert!(err.to_string().contains("overlaps"), "{err}");
    }
}
