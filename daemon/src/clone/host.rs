//! One host of a clone, over SSH: its commands, its MySQL client and what is masked in
//! its messages.

use std::io;

use super::CloneError;
use crate::config::CloneConfig;
use crate::engine::JobCtx;
use crate::pipeline::Cancel;
use crate::ssh::{quote as sh, Client, Limits, Output, Target, IDLE_CLOSE};

/// One host, over SSH.
pub(super) struct Host {
    pub(super) name: String,
    pub(super) mysql_port: u16,
    pub(super) ssh: Client,
    /// The temp file holding the MySQL client options, once written.
    pub(super) defaults: Option<String>,
    /// Masked out of every message from this host.
    pub(super) secret: Option<String>,
    /// The job's: a command that hangs (a start command that keeps its output open)
    /// must not hold the job forever.
    cancel: Cancel,
}

impl Host {
    pub(super) fn new(cfg: &CloneConfig, name: &str, mysql_port: u16, cancel: Cancel) -> Host {
        let target = Target {
            host: name.to_string(),
            port: cfg.ssh_port,
            user: cfg.ssh_user.clone(),
            key: cfg.ssh_key.clone(),
            known_hosts: cfg.known_hosts.clone(),
            accept_new_host_keys: cfg.accept_new_host_keys,
        };
        let label = format!("ssh://{}@{name}:{}/", cfg.ssh_user, cfg.ssh_port);
        // No stall limit: a prepare or a start command may rightly be silent for long;
        // the job's cancel and timeout end a step that hangs.
        let limits = Limits {
            idle_close: IDLE_CLOSE,
            stall: None,
        };
        let ssh = Client::new(target, label, limits);
        Host {
            name: name.to_string(),
            mysql_port,
            ssh,
            defaults: None,
            secret: None,
            cancel,
        }
    }

    pub(super) fn fail(&self, what: &str, detail: String) -> CloneError {
        let detail = match &self.secret {
            Some(s) if !s.is_empty() => detail.replace(s.as_str(), "***"),
            _ => detail,
        };
        CloneError::Step {
            host: self.name.clone(),
            what: what.to_string(),
            detail,
        }
    }

    /// An SSH failure (connecting, starting the command), worded as it always was: the
    /// host's `ssh://` URL, then the cause.
    pub(super) fn ssh_failed(&self, what: &str, e: io::Error) -> CloneError {
        let t = self.ssh.target();
        self.fail(
            what,
            format!("ssh://{}@{}:{}/: clone: {e}", t.user, t.host, t.port),
        )
    }

    /// Runs `command` with `input` on its stdin; what it said when it exits 0.
    pub(super) async fn run(
        &self,
        what: &str,
        command: &str,
        input: &[u8],
    ) -> Result<Output, CloneError> {
        let out = tokio::select! {
            out = self.ssh.output(command, input) => out,
            // Dropping the command closes its channel.
            () = self.cancel.cancelled() => return Err(CloneError::Cancelled),
        };
        let out = out.map_err(|e| self.ssh_failed(what, e))?;
        let stderr = out.stderr.text();
        match (&out.signal, out.status) {
            (Some(sig), _) => Err(self.fail(what, format!("killed by signal {sig}\n{stderr}"))),
            (None, Some(0)) => Ok(out),
            (None, Some(n)) => Err(self.fail(what, format!("exit status {n}\n{stderr}"))),
            (None, None) => Err(self.fail(
                what,
                format!("the connection closed before the command ended\n{stderr}"),
            )),
        }
    }

    /// Writes the MySQL client options to a mode-600 temp file on the host.
    pub(super) async fn put_defaults(&mut self, content: &[u8]) -> Result<(), CloneError> {
        let out = self
            .run(
                "writing the MySQL client options to a temp file",
                "umask 077 && t=$(mktemp /tmp/twindb-clone.XXXXXXXX) && cat > \"$t\" && echo \"$t\"",
                content,
            )
            .await?;
        self.defaults = Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        Ok(())
    }

    /// Removes the client options file; a failure is a warning (it holds a password).
    pub(super) async fn remove_defaults(&mut self, ctx: &JobCtx) {
        if let Some(t) = self.defaults.take() {
            let what = format!("removing the temp file {t}");
            if let Err(e) = self.run(&what, &format!("rm -f {}", sh(&t)), b"").await {
                ctx.warn(format!("{e}; remove it by hand"));
            }
        }
    }

    /// The shell words that run the mysql client against this host's server over TCP.
    fn client(&self, extra: &str) -> String {
        format!(
            "C=$(command -v mariadb || command -v mysql) || {{ echo 'no mysql client (mariadb or mysql) in PATH' >&2; exit 127; }}; \
             \"$C\" --defaults-file={} --host=127.0.0.1 --port={} {extra}",
            sh(self.defaults.as_deref().unwrap_or("/dev/null")),
            self.mysql_port
        )
    }

    /// Runs SQL given on stdin; returns the client's batch output.
    pub(super) async fn sql(
        &self,
        what: &str,
        sql: &str,
        extra: &str,
    ) -> Result<String, CloneError> {
        let out = self.run(what, &self.client(extra), sql.as_bytes()).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
