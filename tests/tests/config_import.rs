//! `twindbctl config import` on TwinDB's own configs, checked by the real
//! `twindbd --check-config`.
//!
//! The import keeps paths as they are written (a config is migrated on the host it runs
//! on). `--check-config` looks at the files a config names (backup_dirs, the ssh key,
//! the gpg keyring...), so these tests first move the configs' local paths below a
//! scratch folder and create those files there, then import and check.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use twindb_tests::gpg::have_programs;
use twindb_tests::*;

const SAMPLE: &str = include_str!("../fixtures/twindb-backup-sample.cfg");
const FIXTURES: &str = include_str!("../fixtures/twindb-3.3/twindb-backup.cfg");

/// Keys whose values are paths on this host.
const LOCAL_PATH_KEYS: &[&str] = &[
    "backup_dirs",
    "keep_local_path",
    "ssh_key",
    "mysql_defaults_file",
    "keyring",
    "secret_keyring",
];

/// `text` with every absolute local path moved below `root`.
fn rebase(text: &str, root: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let rebased = line.split_once('=').and_then(|(k, v)| {
            LOCAL_PATH_KEYS.contains(&k.trim()).then(|| {
                let paths: Vec<String> = v
                    .split_whitespace()
                    .map(|p| format!("{}{p}", root.display()))
                    .collect();
                format!("{k}={}", paths.join(" "))
            })
        });
        out.push_str(rebased.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn import(args: &[&str]) -> CtlOutput {
    output_of(
        Command::new(bin("twindbctl"))
            .args(["config", "import"])
            .args(args)
            // Proof that no daemon is involved.
            .env("TWINDB_SOCKET", "/nonexistent/twindbd.sock")
            .output(),
    )
}

fn check_config(config: &Path) -> CtlOutput {
    output_of(
        Command::new(bin("twindbd"))
            .arg("--check-config")
            .arg("--config")
            .arg(config)
            .output(),
    )
}

/// Imports `cfg`, writes the TOML beside it and checks it; returns the import's output.
fn import_and_check(cfg: &Path) -> (CtlOutput, toml::Table) {
    let out = import(&[cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "import failed: {}", out.stderr);
    let toml_path = cfg.with_file_name("twindb.toml");
    fs::write(&toml_path, &out.stdout).unwrap();
    fs::set_permissions(&toml_path, fs::Permissions::from_mode(0o600)).unwrap();
    let check = check_config(&toml_path);
    assert_eq!(
        check.code, 0,
        "--check-config refused the import:\n{}\n{}\n--- the import:\n{}",
        check.stdout, check.stderr, out.stdout
    );
    assert!(check.stdout.contains(": ok"), "{}", check.stdout);
    let table = out.stdout.parse::<toml::Table>().unwrap();
    (out, table)
}

fn get<'a>(t: &'a toml::Table, section: &str, key: &str) -> Option<&'a toml::Value> {
    t.get(section)?.as_table()?.get(key)
}

#[test]
fn twindb_sample_config_imports_to_a_config_that_validates() {
    if !have_programs("config_import sample", &["gpg", "ssh-keygen"]) {
        return;
    }
    let dir = scratch();
    let root = dir.path();
    for d in ["etc", "root", "home", "root/.ssh", "root/.gnupg"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    sshd::keygen(&root.join("root/.ssh/id_rsa"));
    // --check-config wants a non-empty keyring; the recipient is checked at backup time.
    fs::write(root.join("root/.gnupg/pubring.gpg"), b"public keys\n").unwrap();
    // secring.gpg is left missing, as on most GnuPG 2 hosts.
    let cfg = root.join("twindb-backup.cfg");
    fs::write(&cfg, rebase(SAMPLE, root)).unwrap();

    let (out, t) = import_and_check(&cfg);

    let r = root.display();
    assert_eq!(
        get(&t, "source", "backup_dirs"),
        Some(&toml::Value::from(vec![
            format!("{r}/etc"),
            format!("{r}/root"),
            format!("{r}/home")
        ]))
    );
    assert_eq!(
        get(&t, "ssh", "ssh_port").and_then(|v| v.as_integer()),
        Some(22)
    );
    assert_eq!(
        get(&t, "compression", "program").and_then(|v| v.as_str()),
        Some("pigz")
    );
    assert_eq!(
        get(&t, "compression", "level").and_then(|v| v.as_integer()),
        Some(9)
    );
    assert_eq!(
        get(&t, "retention_local", "daily_copies").and_then(|v| v.as_integer()),
        Some(1)
    );
    assert_eq!(
        get(&t, "s3", "aws_secret_access_key").and_then(|v| v.as_str()),
        Some("YYYYY")
    );
    assert!(get(&t, "gpg", "secret_keyring").is_none());
    // Keys are named on stderr, secrets are not printed there.
    assert!(
        out.stderr.contains("[gpg] secret_keyring"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[s3] aws_secret_access_key"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    assert!(!out.stderr.contains("YYYYY"), "{}", out.stderr);
}

#[test]
fn fixtures_config_imports_to_a_config_that_validates() {
    if !have_programs("config_import fixtures", &["ssh-keygen"]) {
        return;
    }
    let dir = scratch();
    let root = dir.path();
    fs::create_dir_all(root.join("files")).unwrap();
    sshd::keygen(&root.join("id_ed25519"));
    fs::write(root.join("my.cnf"), "[client]\nuser=root\nhost=127.0.0.1\n").unwrap();
    let r = root.display().to_string();
    let text = FIXTURES
        .replace("<files-dir>", &format!("{r}/files"))
        .replace("<local-root>", &format!("{r}/local"))
        .replace("<ssh-private-key (ed25519)>", &format!("{r}/id_ed25519"))
        .replace("<remote-root>", "/srv/twindb-remote")
        .replace("<mysql-defaults-file>", &format!("{r}/my.cnf"));
    assert!(!text.contains("=<"), "a placeholder is left: {text}");
    let cfg = root.join("twindb-backup.cfg");
    fs::write(&cfg, text).unwrap();

    let (out, t) = import_and_check(&cfg);

    assert_eq!(
        get(&t, "source", "backup_mysql").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(
        get(&t, "ssh", "ssh_port").and_then(|v| v.as_integer()),
        Some(22518)
    );
    assert_eq!(
        get(&t, "ssh", "backup_dir").and_then(|v| v.as_str()),
        Some("/srv/twindb-remote")
    );
    assert_eq!(
        get(&t, "compression", "program").and_then(|v| v.as_str()),
        Some("gzip")
    );
    assert_eq!(
        get(&t, "compression", "level").and_then(|v| v.as_integer()),
        Some(6)
    );
    for k in ["hourly", "daily", "weekly", "monthly", "yearly"] {
        assert_eq!(
            get(&t, "retention_local", &format!("{k}_copies")).and_then(|v| v.as_integer()),
            Some(100)
        );
        assert_eq!(
            get(&t, "intervals", &format!("run_{k}")).and_then(|v| v.as_bool()),
            Some(true)
        );
    }
    // Nothing dropped, no secrets.
    assert!(!out.stderr.contains("not carried over"), "{}", out.stderr);
    assert!(!out.stderr.contains("secrets"), "{}", out.stderr);
}

#[test]
fn output_file_is_private_and_errors_name_the_line() {
    let dir = scratch();
    let cfg = dir.path().join("twindb-backup.cfg");
    fs::write(&cfg, "[s3]\nbucket=b\naws_secret_access_key=k\n").unwrap();
    let toml_path = dir.path().join("out.toml");
    let out = import(&[
        cfg.to_str().unwrap(),
        "--output",
        toml_path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let mode = fs::metadata(&toml_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(fs::read_to_string(&toml_path)
        .unwrap()
        .contains("aws_secret_access_key = \"k\""));

    fs::write(&cfg, "[source]\nbackup_dirs=/etc\nnot a key line\n").unwrap();
    let out = import(&[cfg.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    let out = import(&[dir.path().join("missing.cfg").to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}
