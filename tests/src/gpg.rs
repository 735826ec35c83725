//! GPG key pairs for tests, generated in a temporary GNUPGHOME, and the check that the
//! external programs a test needs are installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::in_ci;

/// Whether every program is installed. When one is missing, a test must fail under
/// CI and may skip (saying so) otherwise.
pub fn have_programs(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| twindb::process::find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: {missing:?} not installed (scripts/test.sh installs them)"
    );
    eprintln!("{test}: skipped, {missing:?} not installed (scripts/test.sh installs them)");
    false
}

/// A generated key pair without passphrase. `home` holds the secret key; the exports
/// sit beside it.
pub struct GpgKey {
    dir: tempfile::TempDir,
    pub email: String,
    pub fingerprint: String,
}

impl GpgKey {
    /// `gpg --quick-gen-key '<name> <email>' rsa3072 encr never` in a fresh home.
    pub fn generate(email: &str) -> GpgKey {
        let dir = tempfile::Builder::new()
            .prefix("twgpg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let mut key = GpgKey {
            dir,
            email: email.to_string(),
            fingerprint: String::new(),
        };
        fs::create_dir(key.home()).unwrap();
        fs::set_permissions(
            key.home(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        key.gpg(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("Test <{email}>"),
            "rsa3072",
            "encr",
            "never",
        ]);
        let listing = key.gpg(&["--with-colons", "--list-keys", email]);
        let fingerprint = String::from_utf8_lossy(&listing)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()).map(str::to_string))
            .expect("fingerprint of the new key");
        let public = key.gpg(&["--export", email]);
        fs::write(key.public_keyring(), public).unwrap();
        let secret = key.gpg(&[
            "--pinentry-mode",
            "loopback",
            "--armor",
            "--export-secret-keys",
            email,
        ]);
        fs::write(key.secret_key_file(), secret).unwrap();
        key.fingerprint = fingerprint;
        key
    }

    /// The GNUPGHOME that holds the secret key.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `gpg --export` of the public key (binary), for `[gpg] keyring`.
    pub fn public_keyring(&self) -> PathBuf {
        self.dir.path().join("public.gpg")
    }

    /// `gpg --armor --export-secret-keys`, for `[gpg] secret_keyring`.
    pub fn secret_key_file(&self) -> PathBuf {
        self.dir.path().join("secret.asc")
    }

    /// Runs gpg on this key's home; panics on failure; returns stdout.
    pub fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home())
            .args(["--batch", "--no-tty", "--yes"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A `[gpg]` section: encrypt with the public keyring in an otherwise empty home
    /// (as on a database host), decrypt with the exported secret key.
    pub fn config_section(&self, empty_home: &Path) -> String {
        fs::create_dir_all(empty_home).unwrap();
        fs::set_permissions(
            empty_home,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        format!(
            "\n[gpg]\nrecipient = \"{}\"\nkeyring = \"{}\"\nsecret_keyring = \"{}\"\nhomedir = \"{}\"\n",
            self.email,
            self.public_keyring().display(),
            self.secret_key_file().display(),
            empty_home.display()
        )
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        stop_agent(&self.home());
    }
}

/// Stops the gpg-agent gpg started for `home`.
pub fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
