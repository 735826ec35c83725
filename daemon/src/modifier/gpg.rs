//! GPG encryption with the `gpg` program in a streaming pipe (docs/encryption.md says
//! why the program and not a Rust OpenPGP library).
//!
//! Backup encrypts to the recipient's public key, so a database host needs no secret
//! key: `gpg --no-default-keyring --keyring K --trust-model always --recipient FPR
//! --cipher-algo AES256 --compress-algo none --encrypt`. The compressor runs before gpg,
//! so gpg's own compression would only cost time.
//!
//! Restore decrypts with the secret key. GnuPG 2.1 and later ignore `--secret-keyring`
//! (secret keys live in the home's private-keys-v1.d), so when `[gpg] secret_keyring`
//! is set, the file (an exported secret key, armored or binary) is imported into a
//! private temporary home for this one restore, which is removed afterwards, agent
//! included. Without it, gpg decrypts with the secret keys of `[gpg] homedir`, or of
//! gpg's default home.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::program::{run, Direction};
use super::{Modifier, ModifierSpec};
use crate::config::GpgConfig;

/// Why encryption cannot start. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    #[error("[gpg] keyring {}: {message}", keyring.display())]
    Keyring { keyring: PathBuf, message: String },
    #[error("[gpg] recipient {recipient:?} (keyring {}): {message}", keyring.display())]
    Recipient {
        recipient: String,
        keyring: PathBuf,
        message: String,
    },
}

/// Options every gpg call gets: no tty, no network, no prompt.
fn gpg(homedir: Option<&Path>) -> Command {
    let mut cmd = Command::new("gpg");
    if let Some(h) = homedir {
        cmd.arg("--homedir").arg(h);
    }
    cmd.args(["--batch", "--no-tty", "--yes"]);
    cmd
}

/// Checks that the recipient has a usable encryption key in the keyring and returns
/// the spec to record, with the key's fingerprint. Runs `gpg --list-keys` (blocking).
pub fn resolve(config: &GpgConfig) -> Result<ModifierSpec, GpgError> {
    let keyring_error = |message: String| GpgError::Keyring {
        keyring: config.keyring.clone(),
        message,
    };
    let recipient_error = |message: String| GpgError::Recipient {
        recipient: config.recipient.clone(),
        keyring: config.keyring.clone(),
        message,
    };
    let keyring = Keyring::open(config).map_err(|e| keyring_error(e.to_string()))?;
    let out = gpg(config.homedir.as_deref())
        .arg("--no-default-keyring")
        .arg("--keyring")
        .arg(&keyring.path)
        .args([
            "--trust-model",
            "always",
            "--with-colons",
            "--fixed-list-mode",
        ])
        .args(["--list-keys", "--", &config.recipient])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| keyring_error(format!("cannot run gpg: {e}")))?;
    let listing = String::from_utf8_lossy(&out.stdout);
    match usable_key(&listing) {
        Ok(fingerprint) => Ok(ModifierSpec::Gpg {
            recipient: Some(config.recipient.clone()),
            fingerprint: Some(fingerprint),
        }),
        Err(Some(why)) => Err(recipient_error(why.into())),
        Err(None) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said = stderr.lines().last().unwrap_or("").trim();
            Err(recipient_error(if said.is_empty() {
                "no public key".into()
            } else {
                format!("no public key ({said})")
            }))
        }
    }
}

/// The fingerprint of the first listed key that can encrypt. `Err(None)` when no key
/// was listed, `Err(Some(why))` when the keys listed cannot be used.
fn usable_key(colons: &str) -> Result<String, Option<&'static str>> {
    let mut listed = false;
    let mut candidate = false;
    for line in colons.lines() {
        let f: Vec<&str> = line.split(':').collect();
        match f.first().copied() {
            Some("pub") => {
                listed = true;
                let validity = f.get(1).copied().unwrap_or("");
                // Upper-case E: the key as a whole has a usable encryption (sub)key.
                let can_encrypt = f.get(11).is_some_and(|c| c.contains('E'));
                candidate = can_encrypt && !["e", "r", "i", "d"].contains(&validity);
            }
            Some("fpr") if candidate => {
                if let Some(fpr) = f.get(9).filter(|s| !s.is_empty()) {
                    return Ok(fpr.to_string());
                }
            }
            Some("sub") => candidate = false,
            _ => {}
        }
    }
    Err(listed.then_some("the key cannot encrypt (expired, revoked, or no encryption subkey)"))
}

/// The gpg modifier. `config` is today's `[gpg]`; the recipient and fingerprint come
/// from the copy's record when decoding.
pub struct Gpg {
    /// The job's cancel: stops gpg.
    pub cancel: crate::pipeline::Cancel,
    pub recipient: Option<String>,
    pub fingerprint: Option<String>,
    pub config: Option<GpgConfig>,
}

impl Gpg {
    /// "recipient R, key FPR", for messages.
    fn key_words(&self) -> String {
        let r = self.recipient.as_deref().unwrap_or("unknown recipient");
        match &self.fingerprint {
            Some(f) => format!("recipient {r:?}, key {f}"),
            None => format!("recipient {r:?}"),
        }
    }
}

impl Modifier for Gpg {
    fn spec(&self) -> ModifierSpec {
        ModifierSpec::Gpg {
            recipient: self.recipient.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    fn encode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| io::Error::other("gpg: encryption needs a [gpg] section"))?;
        // The fingerprint found at the start of the job, so the key recorded is the key used.
        let to = self.fingerprint.as_deref().unwrap_or(&config.recipient);
        let what = format!(
            "gpg --encrypt ({}, keyring {})",
            self.key_words(),
            config.keyring.display()
        );
        let keyring =
            Keyring::open(config).map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        let mut cmd = gpg(config.homedir.as_deref());
        cmd.arg("--no-default-keyring")
            .arg("--keyring")
            .arg(&keyring.path)
            .args(["--trust-model", "always", "--auto-key-locate", "local"])
            .args(["--recipient", to])
            .args([
                "--cipher-algo",
                "AES256",
                "--compress-algo",
                "none",
                "--encrypt",
            ]);
        run(cmd, &what, Direction::Encode, &self.cancel, input, output)
    }

    fn decode(
        &self,
        input: &mut (dyn Read + Send),
        output: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        let secret = self.config.as_ref().and_then(|c| c.secret_keyring.as_ref());
        let homedir = self.config.as_ref().and_then(|c| c.homedir.as_ref());
        let (temp, whence) = match (secret, homedir) {
            (Some(file), _) => (
                Some(TempHome::import(file)?),
                format!("secret key from [gpg] secret_keyring {}", file.display()),
            ),
            (None, Some(h)) => (None, format!("secret keys of [gpg] homedir {}", h.display())),
            (None, None) => (
                None,
                "secret keys of gpg's default home ($GNUPGHOME or ~/.gnupg); set [gpg] secret_keyring to use a key file".into(),
            ),
        };
        let home = temp
            .as_ref()
            .map(|t| t.dir.path())
            .or(homedir.map(PathBuf::as_path));
        let mut cmd = gpg(home);
        cmd.args([
            "--pinentry-mode",
            "loopback",
            "--no-auto-key-retrieve",
            "--decrypt",
        ]);
        let what = format!(
            "gpg --decrypt (copy encrypted to {}; {whence})",
            self.key_words()
        );
        run(cmd, &what, Direction::Decode, &self.cancel, input, output)
    }
}

/// A folder only the daemon's user can enter (gpg warns about, and others could read,
/// anything more open).
fn private_temp_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// The keyring file as gpg's `--keyring` needs it. gpg reads keyboxes and binary
/// exports but not armored (text) exports, which are dearmored into a temporary copy.
struct Keyring {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Keyring {
    fn open(config: &GpgConfig) -> io::Result<Keyring> {
        let configured = &config.keyring;
        // Checked first: gpg would create a missing keyring and find no key in it.
        let mut head = [0u8; 32];
        let n = std::fs::File::open(configured)?.read(&mut head)?;
        if !head[..n].starts_with(b"-----BEGIN PGP") {
            return Ok(Keyring {
                path: configured.clone(),
                _temp: None,
            });
        }
        let temp = tempfile::Builder::new()
            .prefix("twindb-keyring-")
            .tempdir()?;
        let path = temp.path().join("keyring.gpg");
        let out = gpg(config.homedir.as_deref())
            .arg("--output")
            .arg(&path)
            .arg("--dearmor")
            .arg(configured)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "cannot dearmor it: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Keyring {
            path,
            _temp: Some(temp),
        })
    }
}

/// A private GNUPGHOME holding one imported secret key, for one restore. Dropping it
/// stops the gpg-agent that gpg started for it and deletes the folder.
struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    fn import(file: &Path) -> io::Result<TempHome> {
        let fail = |why: String| {
            io::Error::other(format!(
                "gpg: cannot import [gpg] secret_keyring {}: {why}",
                file.display()
            ))
        };
        // A short path: gpg-agent's socket lives in it when /run/user is absent.
        let dir = private_temp_dir("twindb-gpg-")
            .map_err(|e| fail(format!("creating a temporary GNUPGHOME: {e}")))?;
        let home = TempHome { dir };
        let out = gpg(Some(home.dir.path()))
            .args([
                "--pinentry-mode",
                "loopback",
                "--status-fd",
                "1",
                "--import",
            ])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("cannot run gpg: {e}")))?;
        // The status lines are not translated: `IMPORT_OK <flags> <fpr>`, flag 16 =
        // a secret key.
        let status = String::from_utf8_lossy(&out.stdout);
        let secret = status.lines().any(|l| {
            l.strip_prefix("[GNUPG:] IMPORT_OK ")
                .and_then(|rest| rest.split(' ').next()?.parse::<u32>().ok())
                .is_some_and(|flags| flags & 16 != 0)
        });
        if !secret {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said: Vec<&str> = stderr.lines().map(str::trim).collect();
            return Err(fail(format!(
                "no secret key in it (gpg: {})",
                said.join("; ")
            )));
        }
        Ok(home)
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "gpg-agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_key_takes_the_first_key_that_can_encrypt() {
        let listing = "tru::1:1795604783:0:3:1:5\n\
            pub:e:3072:1:AAAA:1:::-:::scSC::::::23::0:\n\
            fpr:::::::::EXPIRED00000000000000000000000000000000:\n\
            pub:-:3072:1:03A75F6B82BEF328:1795604765:::-:::ecEC::::::23::0:\n\
            fpr:::::::::87A0ACA0010A8BD13B7271C103A75F6B82BEF328:\n\
            sub:-:3072:1:BBBB:1:::::e::::::23:\n\
            fpr:::::::::SUBKEY0000000000000000000000000000000000:\n";
        assert_eq!(
            usable_key(listing),
            Ok("87A0ACA0010A8BD13B7271C103A75F6B82BEF328".to_string())
        );
        assert_eq!(usable_key("tru::1:1:0:3:1:5\n"), Err(None));
        assert!(
            usable_key("pub:r:3072:1:AAAA:1:::-:::sc::::::23::0:\nfpr:::::::::X:\n")
                .unwrap_err()
                .is_some()
        );
    }

    #[test]
    fn a_missing_keyring_is_named_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("nope.kbx");
        let err = resolve(&GpgConfig {
            recipient: "t@x".into(),
            keyring: keyring.clone(),
            secret_keyring: None,
            homedir: Some(dir.path().into()),
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("[gpg] keyring "), "{msg}");
        assert!(msg.contains(keyring.to_str().unwrap()), "{msg}");
        assert!(!keyring.exists());
    }
}
