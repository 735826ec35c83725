//! Host-key policy: the server's key must be in `known_hosts`.
//!
//! A known key is accepted. An unknown key is refused, unless `accept_new_host_keys`:
//! then it is recorded in `known_hosts` and accepted, with a warning in the log. A
//! changed key is always refused, and so is a host certificate. Every refusal says why
//! and shows the SHA256 fingerprint the server offered, so that the operator can check
//! it with the server's administrator.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKeyOrCertificate};

/// Checks the server's host key against `known_hosts`, remembering why it refused (russh
/// only learns "no"; the connect error shows the verdict instead).
pub struct HostKeyCheck {
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
    pub accept_new: bool,
    pub verdict: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        *self.verdict.lock().expect("verdict lock") = Some(why);
        Ok(false)
    }

    fn host_port(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            return self.refuse(format!(
                "{} presented a host certificate; twindb checks plain host keys against known_hosts only",
                self.host_port()
            ));
        };
        let fingerprint = format!(
            "{} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        );
        let file = self.known_hosts.display();
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => {
                        tracing::warn!(host = %self.host_port(), key = %fingerprint, known_hosts = %file,
                            "accepted and recorded a new host key (accept_new_host_keys = true)");
                        Ok(true)
                    }
                    Err(e) => self.refuse(format!(
                        "cannot record the host key {fingerprint} of {} in {file}: {e}",
                        self.host_port()
                    )),
                }
            }
            Ok(false) => self.refuse(format!(
                "the host key of {} ({fingerprint}) is not in {file}; check the fingerprint with the server's administrator, then add the key (ssh-keyscan -p {} {} >> {file}), or set accept_new_host_keys = true",
                self.host_port(),
                self.port,
                self.host,
            )),
            Err(russh::keys::Error::KeyChanged { line }) => self.refuse(format!(
                "HOST KEY CHANGED: {} offers {fingerprint}, which differs from the key on line {line} of {file}; someone may be intercepting the connection. If the server was reinstalled, replace that line after checking the new fingerprint",
                self.host_port()
            )),
            Err(e) => self.refuse(format!("cannot check the host key against {file}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::Handler;
    use russh::keys::PublicKey;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDj0B7yGMEo8Gd0+ISx2SumPg77iJCUL+uxml1S+aWc4";
    const FINGERPRINT: &str = "SHA256:xxiOIrZYbSTH0tjtggVTPqt+LxmZBNokaaXDW4K7bRc";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPXLwvbIGT1tkxMawetPJvzOqnUdMhb7Qiqc4H2B1Mwe";

    fn offered(key: &str) -> PublicKeyOrCertificate {
        PublicKeyOrCertificate::PublicKey {
            key: PublicKey::from_openssh(key).unwrap(),
            hash_alg: None,
        }
    }

    /// Checks `key` of 127.0.0.1:2222; the verdict when refused.
    async fn check(known_hosts: &std::path::Path, accept_new: bool, key: &str) -> Option<String> {
        let verdict = Arc::new(Mutex::new(None));
        let mut check = HostKeyCheck {
            host: "127.0.0.1".into(),
            port: 2222,
            known_hosts: known_hosts.to_path_buf(),
            accept_new,
            verdict: verdict.clone(),
        };
        let accepted = check.check_server_key(&offered(key)).await.unwrap();
        let why = verdict.lock().unwrap().take();
        assert_eq!(accepted, why.is_none(), "{why:?}");
        why
    }

    #[tokio::test]
    async fn unknown_keys_are_refused_unless_accepted_and_changed_keys_always() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("known_hosts");
        std::fs::write(&file, "").unwrap();

        let why = check(&file, false, KEY)
            .await
            .expect("an unknown key is refused");
        assert!(why.contains("[127.0.0.1]:2222"), "{why}");
        assert!(why.contains(FINGERPRINT), "{why}");
        assert!(why.contains("is not in"), "{why}");
        assert!(why.contains("ssh-keyscan -p 2222 127.0.0.1"), "{why}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");

        // Accepted on request, recorded, then known without the option.
        assert_eq!(check(&file, true, KEY).await, None);
        assert!(std::fs::read_to_string(&file).unwrap().contains(&KEY[12..]));
        assert_eq!(check(&file, false, KEY).await, None);

        // Another key for the same host: refused even with accept_new_host_keys.
        for accept_new in [false, true] {
            let why = check(&file, accept_new, OTHER).await.expect("refused");
            assert!(why.starts_with("HOST KEY CHANGED"), "{why}");
            assert!(why.contains("differs from the key on line"), "{why}");
        }
    }
}
