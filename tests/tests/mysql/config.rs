//! `[mysql]` keys checked by `twindbd --check-config`.

use std::fs;
use std::process::Command;

use twindb_tests::{bin, output_of, scratch};

#[test]
fn a_bad_prepare_memory_fails_check_config_naming_the_key() {
    let t = scratch();
    let defaults = t.path().join("my.cnf");
    fs::write(&defaults, "[client]\nuser = root\n").unwrap();
    let config = t.path().join("twindb.toml");
    for (value, want) in [
        (
            "\"lots\"",
            "[mysql] prepare_memory: lots is not a size: use bytes or a string like \"16MiB\"",
        ),
        (
            "\"1M\"",
            "[mysql] prepare_memory: 1048576 bytes is less than the 16MiB",
        ),
    ] {
        fs::write(
            &config,
            format!(
                "[source]\nbackup_mysql = true\n\n[mysql]\nmysql_defaults_file = \"{}\"\n\
                 prepare_memory = {value}\n\n[destination]\nbackup_destination = \"local\"\n\n\
                 [local]\npath = \"{}/backups\"\n",
                defaults.display(),
                t.path().display()
            ),
        )
        .unwrap();
        let out = output_of(
            Command::new(bin("twindbd"))
                .arg("--check-config")
                .arg("--config")
                .arg(&config)
                .output(),
        );
        assert_ne!(out.code, 0, "{out:?}");
        let line = format!("{}:6: {want}", config.display());
        assert!(out.stderr.contains(&line), "{line}\n{out:?}");
    }
}
