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
    // An existing file readable by all is narrowed before the secrets go in.
    fs::write(&toml_path, "old").unwrap();
    fs::set_permissions(&toml_path, fs::Permissions::from_mode(0o644)).unwrap();
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

/// Every section and the odd cases, for each cloud destination and export transport:
/// whatever the import writes must be keys and types twindbd accepts.
#[test]
fn every_section_and_odd_case_gives_a_config_that_validates() {
    let dir = scratch();
    let r = dir.path().display().to_string();
    fs::create_dir_all(dir.path().join("data dir")).unwrap();
    fs::write(dir.path().join("my.cnf"), "[client]\nuser=root\n").unwrap();
    fs::write(
        dir.path().join("gcs.json"),
        r#"{"client_email": "a@b.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\n", "token_uri": "https://oauth2.googleapis.com/token"}"#,
    )
    .unwrap();
    let common = format!(
        "[source]\nBACKUP_DIRS = \"{r}/data dir\"\nbackup_mysql: On\ntar_options = --exclude-caches --exclude-vcs-ignores\n\n\
         [mysql]\nmysql_defaults_file = '{r}/my.cnf'\nfull_backup = weekly\nexpire_log_days = 3\nhostname = db1\n\n\
         [compression]\nprogram = \"bzip2\"\n\n\
         [retention_local]\ndaily_copies = 2\n\n\
         [intervals]\nrun_hourly = no\nrun_daily = yes\n\n\
         [Retention]\nhourly_copies = 1\n"
    );
    let s3 = format!(
        "{common}\n[destination]\nbackup_destination = s3\nkeep_local_path = {r}/local\n\n\
         [s3]\nAWS_ACCESS_KEY_ID = AKIA\nAWS_SECRET_ACCESS_KEY = \"se%%cret\"\nBUCKET = b\n\n\
         [export]\ntransport = datadog\napi_key = API\napp_key = APP\nstatsd_host = h\n"
    );
    let gcs = format!(
        "{common}\n[destination]\nbackup_destination = gcs\n\n\
         [gcs]\nGCS_CREDENTIALS_FILE = {r}/gcs.json\nGC_ENCRYPTION_KEY = abc\nBUCKET = b\n\n\
         [export]\ntransport = statsd\nstatsd_host = 127.0.0.1\nstatsd_port = 8125\napi_key = API\n"
    );
    let az = format!(
        "{common}\n[destination]\nbackup_destination = az\n\n\
         [az]\nconnection_string = \"DefaultEndpointsProtocol=https;AccountName=acct;\
         AccountKey=a2V5;EndpointSuffix=core.windows.net\"\ncontainer_name = backups\n\
         remote_path = /\nchunk_size = 4194304\n"
    );
    for (name, text) in [("s3.cfg", s3), ("gcs.cfg", gcs), ("az.cfg", az)] {
        let sub = dir.path().join(name.trim_end_matches(".cfg"));
        fs::create_dir_all(&sub).unwrap();
        let cfg = sub.join(name);
        fs::write(&cfg, text).unwrap();
        let (out, t) = import_and_check(&cfg);
        assert_eq!(
            get(&t, "source", "backup_dirs"),
            Some(&toml::Value::from(vec![format!("{r}/data dir")])),
            "{name}"
        );
        // What twindb can do is carried over and passes the check; the rest is dropped.
        assert_eq!(
            get(&t, "source", "exclude_caches").and_then(|v| v.as_bool()),
            Some(true),
            "{name}"
        );
        let az_dropped = if name == "az.cfg" {
            "[az] chunk_size"
        } else {
            "[Retention] hourly_copies"
        };
        for dropped in [
            "[source] tar_options",
            "[mysql] hostname",
            "[Retention] hourly_copies",
            az_dropped,
        ] {
            assert!(
                out.stderr.contains(dropped),
                "{name}: {dropped}: {}",
                out.stderr
            );
        }
        assert!(
            !out.stderr.contains("API")
                && !out.stderr.contains("se%cret")
                && !out.stderr.contains("AccountKey"),
            "{}",
            out.stderr
        );
        // One [intervals] key missing: TwinDB ran every type, and so will twindb.
        assert_eq!(
            get(&t, "intervals", "run_hourly").and_then(|v| v.as_bool()),
            Some(true)
        );
    }
}
