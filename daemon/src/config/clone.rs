//! The `[clone]` section: how `twindbctl clone mysql` reaches both hosts and what it
//! does on the destination. Every key is optional; SSH settings fall back to `[ssh]`'s
//! (`ssh_user`, `ssh_key`, `ssh_port`, `known_hosts`, `accept_new_host_keys`), the
//! MySQL client options to `[mysql] mysql_defaults_file`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ssh::{
    SshSection, DEFAULT_KNOWN_HOSTS, DEFAULT_SSH_KEY, DEFAULT_SSH_PORT, DEFAULT_SSH_USER,
};
use super::Validator;

/// `[clone]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneSection {
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<String>,
    pub known_hosts: Option<String>,
    pub accept_new_host_keys: Option<bool>,
    pub mysql_defaults_file: Option<String>,
    pub datadir: Option<String>,
    pub datadir_owner: Option<String>,
    pub config_file: Option<String>,
    #[serde(default)]
    pub copy_config_files: Vec<String>,
    pub start_command: Option<String>,
}

/// The validated `[clone]` section (defaults when the section is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneConfig {
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_key: PathBuf,
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    /// On this host; its content is given to the MySQL tools on both hosts.
    pub mysql_defaults_file: PathBuf,
    /// On the destination: where the copy goes. Must be absent or empty.
    pub datadir: String,
    /// `chown -R` of the datadir before mysqld starts.
    pub datadir_owner: String,
    /// On the destination: written with `[mysqld] server_id = N`.
    pub config_file: String,
    /// Files copied from the source to the same path on the destination.
    pub copy_config_files: Vec<String>,
    /// Run with `sh -c` on the destination; None: `systemctl start` of the mariadb,
    /// mysql or mysqld unit, whichever exists.
    pub start_command: Option<String>,
}

pub const DEFAULT_DATADIR: &str = "/var/lib/mysql";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/mysql/conf.d/twindb-clone.cnf";
pub const DEFAULT_OWNER: &str = "mysql:mysql";

fn remote_path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.contains(['\0', '\n']) && p != "/"
}

impl Validator<'_> {
    pub(super) fn clone_config(
        &mut self,
        c: Option<CloneSection>,
        ssh: Option<&SshSection>,
        mysql_defaults: Option<PathBuf>,
    ) -> CloneConfig {
        let c = c.unwrap_or_default();
        let pick = |own: &Option<String>, from_ssh: Option<&Option<String>>, default: &str| {
            own.clone()
                .or_else(|| from_ssh.cloned().flatten())
                .unwrap_or_else(|| default.to_string())
        };
        let ssh_user = pick(&c.ssh_user, ssh.map(|s| &s.ssh_user), DEFAULT_SSH_USER);
        if ssh_user.is_empty()
            || ssh_user.starts_with('-')
            || ssh_user
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            self.error(
                "clone",
                "ssh_user",
                format!("{ssh_user:?} is not a user name"),
            );
        }
        let ssh_port = c
            .ssh_port
            .or_else(|| ssh.and_then(|s| s.ssh_port))
            .unwrap_or(DEFAULT_SSH_PORT);
        if ssh_port == 0 {
            self.error("clone", "ssh_port", "must be between 1 and 65535");
        }
        let ssh_key = self.path(&pick(&c.ssh_key, ssh.map(|s| &s.ssh_key), DEFAULT_SSH_KEY));
        let known_hosts = self.path(&pick(
            &c.known_hosts,
            ssh.map(|s| &s.known_hosts),
            DEFAULT_KNOWN_HOSTS,
        ));
        let accept_new_host_keys = c
            .accept_new_host_keys
            .or_else(|| ssh.and_then(|s| s.accept_new_host_keys))
            .unwrap_or(false);
        let mysql_defaults_file = c
            .mysql_defaults_file
            .as_deref()
            .map(|p| self.path(p))
            .or(mysql_defaults)
            .unwrap_or_else(|| PathBuf::from("/root/.my.cnf"));
        let datadir = c.datadir.unwrap_or_else(|| DEFAULT_DATADIR.into());
        if !remote_path_ok(&datadir) {
            self.error(
                "clone",
                "datadir",
                format!("{datadir:?} must be an absolute path on the destination, not /"),
            );
        }
        let datadir_owner = c.datadir_owner.unwrap_or_else(|| DEFAULT_OWNER.into());
        if datadir_owner.is_empty()
            || datadir_owner.starts_with('-')
            || !datadir_owner
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
        {
            self.error(
                "clone",
                "datadir_owner",
                format!("{datadir_owner:?} is not USER or USER:GROUP"),
            );
        }
        let config_file = c.config_file.unwrap_or_else(|| DEFAULT_CONFIG_FILE.into());
        if !remote_path_ok(&config_file) {
            self.error(
                "clone",
                "config_file",
                format!("{config_file:?} must be an absolute path on the destination"),
            );
        }
        for f in &c.copy_config_files {
            if !remote_path_ok(f) {
                self.error(
                    "clone",
                    "copy_config_files",
                    format!("{f:?} must be an absolute path"),
                );
            }
        }
        if c.start_command
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            self.error(
                "clone",
                "start_command",
                "must not be empty (remove the key to use the systemd unit)",
            );
        }
        CloneConfig {
            ssh_user,
            ssh_port,
            ssh_key,
            known_hosts,
            accept_new_host_keys,
            mysql_defaults_file,
            datadir,
            datadir_owner,
            config_file,
            copy_config_files: c.copy_config_files,
            start_command: c.start_command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    const BASE: &str = "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = \"/srv/b\"\n\n";

    #[test]
    fn defaults_come_from_ssh_and_mysql_sections() {
        let t = tempfile::tempdir().unwrap();
        let text = format!(
            "{BASE}[ssh]\nssh_user = \"backup\"\nssh_port = 2222\n\n[clone]\ndatadir = \"/srv/mysql\"\nstart_command = \"systemctl start mariadb@replica\"\n"
        );
        let c = parse(&t.path().join("twindb.toml"), &text).unwrap();
        let clone = c.clone;
        assert_eq!(clone.ssh_user, "backup");
        assert_eq!(clone.ssh_port, 2222);
        assert_eq!(clone.datadir, "/srv/mysql");
        assert_eq!(clone.config_file, super::DEFAULT_CONFIG_FILE);
        assert_eq!(clone.datadir_owner, "mysql:mysql");
    }

    #[test]
    fn bad_values_name_their_key() {
        let t = tempfile::tempdir().unwrap();
        let text = format!(
            "{BASE}[clone]\ndatadir = \"var/lib/mysql\"\ndatadir_owner = \"mysql; rm\"\nstart_command = \"\"\nsurprise = 1\n"
        );
        let err = parse(&t.path().join("twindb.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let text = format!(
            "{BASE}[clone]\ndatadir = \"var/lib/mysql\"\ndatadir_owner = \"mysql; rm\"\nstart_command = \"\"\n"
        );
        let err = parse(&t.path().join("twindb.toml"), &text).unwrap_err();
        for key in [
            "[clone] datadir",
            "[clone] datadir_owner",
            "[clone] start_command",
        ] {
            assert!(err.to_string().contains(key), "{key} in {err}");
        }
    }
}
