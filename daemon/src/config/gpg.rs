//! `[gpg]` validation, and the check that external programs are installed.

use std::io::Read;
use std::path::PathBuf;

use super::{file, Validator};
use crate::process::find_program;

/// The validated `[gpg]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpgConfig {
    /// Key id, fingerprint or e-mail of the key copies are encrypted to.
    pub recipient: String,
    /// Public keyring file: a keybox (`.kbx`), or `gpg --export` output, binary or armored.
    pub keyring: PathBuf,
    /// Exported secret key, imported into a temporary home to decrypt.
    pub secret_keyring: Option<PathBuf>,
    /// GNUPGHOME for gpg; None = gpg's default ($GNUPGHOME, else ~/.gnupg).
    pub homedir: Option<PathBuf>,
}

impl Validator<'_> {
    /// An external program named by `[section] key` must be in PATH now, not fail mid-run.
    pub(super) fn program_installed(&mut self, section: &str, key: &str, program: &str) {
        if find_program(program).is_none() {
            self.error(
                section,
                key,
                format!(
                    "the program {program:?} is not installed (not found in PATH); install it (Debian: apt-get install {})",
                    debian_package(program)
                ),
            );
        }
    }

    pub(super) fn gpg(&mut self, g: file::GpgSection) -> Option<GpgConfig> {
        let recipient = match g.recipient.map(|r| r.trim().to_string()) {
            Some(r) if !r.is_empty() => r,
            _ => {
                self.error(
                    "gpg",
                    "recipient",
                    "required: the key id, fingerprint or e-mail of the key copies are encrypted to",
                );
                String::new()
            }
        };
        let keyring = match g.keyring.as_deref() {
            Some(k) if !k.is_empty() => {
                let path = self.path(k);
                self.key_file("keyring", &path);
                path
            }
            _ => {
                self.error(
                    "gpg",
                    "keyring",
                    "required: the public keyring file that holds the recipient's key (e.g. /root/.gnupg/pubring.kbx)",
                );
                PathBuf::new()
            }
        };
        let secret_keyring = g.secret_keyring.map(|s| {
            let path = self.path(&s);
            // Imported by gpg, which reads armored and binary exports alike.
            if let Err(e) = std::fs::File::open(&path) {
                self.error(
                    "gpg",
                    "secret_keyring",
                    format!(
                        "{}: {e}; remove the key to decrypt with the secret keys of GNUPGHOME",
                        path.display()
                    ),
                );
            }
            path
        });
        let homedir = g.homedir.map(|h| {
            let path = self.path(&h);
            if !path.is_dir() {
                self.error(
                    "gpg",
                    "homedir",
                    format!("{} is not a folder", path.display()),
                );
            }
            path
        });
        self.program_installed("gpg", "", "gpg");
        Some(GpgConfig {
            recipient,
            keyring,
            secret_keyring,
            homedir,
        })
    }

    /// A keyring file must exist: gpg would create an empty one and find no key.
    fn key_file(&mut self, key: &str, path: &std::path::Path) {
        let mut head = [0u8; 1];
        match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
            Err(e) => self.error("gpg", key, format!("{}: {e}", path.display())),
            Ok(0) => self.error("gpg", key, format!("{} is empty", path.display())),
            Ok(_) => {}
        }
    }
}

fn debian_package(program: &str) -> &str {
    match program {
        "gpg" => "gnupg",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse;

    fn config(gpg: &str) -> String {
        format!(
            "[source]\nbackup_dirs = [\"/etc\"]\n[destination]\nbackup_destination = \"local\"\n[local]\npath = \"/tmp/x\"\n{gpg}"
        )
    }

    #[test]
    fn gpg_needs_recipient_and_an_existing_binary_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        let err = parse(&file, &config("[gpg]\n")).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"[gpg] recipient"), "{err}");
        assert!(keys.contains(&"[gpg] keyring"), "{err}");

        let text = config("[gpg]\nrecipient = \"t@x\"\nkeyring = \"missing.kbx\"\n");
        let err = parse(&file, &text).unwrap_err();
        assert_eq!(err.0[0].key, "[gpg] keyring");
        assert_eq!(err.0[0].line, Some(9));
        assert!(err.to_string().contains("missing.kbx"), "{err}");

        std::fs::write(dir.path().join("empty.kbx"), "").unwrap();
        let text = config("[gpg]\nrecipient = \"t@x\"\nkeyring = \"empty.kbx\"\n");
        let err = parse(&file, &text).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");

        std::fs::write(dir.path().join("k.gpg"), [0x99u8, 1, 2, 3]).unwrap();
        let text = config(
            "[gpg]\nrecipient = \"t@x\"\nkeyring = \"k.gpg\"\nsecret_keyring = \"gone.asc\"\n",
        );
        let err = parse(&file, &text).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].key, "[gpg] secret_keyring");

        let text = config("[gpg]\nrecipient = \"t@x\"\nkeyring = \"k.gpg\"\n");
        let c = parse(&file, &text).unwrap();
        let gpg = c.gpg.unwrap();
        assert_eq!(gpg.keyring, dir.path().join("k.gpg"));
        assert_eq!(gpg.recipient, "t@x");
    }

    #[test]
    fn unknown_gpg_keys_are_rejected() {
        let err = parse(
            Path::new("/etc/twindb/t.toml"),
            &config("[gpg]\nrecipient = \"t@x\"\npassphrase = \"x\"\n"),
        )
        .unwrap_err();
        assert_eq!(err.0[0].key, "[gpg] passphrase", "{err}");
    }

    #[test]
    fn compression_programs_are_real_and_checked() {
        let text = config("[compression]\nprogram = \"bzip2\"\n");
        let c = parse(Path::new("/etc/twindb/t.toml"), &text);
        // bzip2 is on every Debian host; scripts/test.sh installs it otherwise.
        let c = c.unwrap();
        assert_eq!(
            c.compression.spec,
            Some(crate::modifier::ModifierSpec::Bzip2 { level: 9 })
        );
        let text = config("[compression]\nprogram = \"pigz\"\nlevel = 10\n");
        let err = parse(Path::new("/etc/twindb/t.toml"), &text).unwrap_err();
        assert_eq!(err.0[0].key, "[compression] level", "{err}");
    }
}
