//! `twindb-bench files --to ssh`: a files backup to the harness's OpenSSH server beside
//! `tar | zstd -3 -T0 | ssh host 'cat > file'` with the same key and the OpenSSH
//! client's default cipher order (chacha20-poly1305 first, as russh's).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use twindb_tests::files_config_to;
use twindb_tests::sshd::Sshd;

use super::{builds, print, ssh_command, wait_quiet};
use crate::{dir_size, generate, warm_cache};

pub fn files_to_ssh(size_gib: f64, data: Option<PathBuf>, before: Option<PathBuf>) {
    let mut sshd = Sshd::start();
    sshd.log_commands();
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-data"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let input = dir_size(&data);
    let rel = data.strip_prefix("/").unwrap().display().to_string();
    let remote = sshd.root.join("baseline.tar.zst");

    let config = zstd3(files_config_to(
        scratch.path(),
        &[&data],
        "zstd",
        "ssh",
        &sshd.config_section(),
    ));
    let mut base = Vec::new();
    let mut builds = builds(before);
    let (mut base_size, mut stored) = (0, 0);
    // Alternated, so a burst of load elsewhere hits every side.
    for round in 1..=3 {
        warm_cache(&data);
        let t = Instant::now();
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; tar -c -C / {rel} | zstd -q -3 -T0 | {} 'cat > {}'",
                ssh_command(&sshd),
                remote.display()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "baseline pipe failed");
        base.push(t.elapsed().as_secs_f64());
        base_size = fs::metadata(&remote).unwrap().len();
        fs::remove_file(&remote).unwrap();
        let mut line = format!("  round {round}: pipe {:.2} s", base[round - 1]);
        for b in &mut builds {
            warm_cache(&data);
            let mut before = 0;
            let secs = b.time_after(
                &config,
                || {
                    wait_quiet(&sshd);
                    before = sshd.commands();
                },
                |d| {
                    let run = d.ctl(&["--json", "run", "daily"]);
                    assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
                    stored = run.json()[0]["progress"]["bytes_out"].as_u64().unwrap_or(0);
                },
            );
            line += &format!(
                ", {} {secs:.2} s ({} remote commands)",
                b.label,
                sshd.commands() - before
            );
            // Each run leaves a copy; keep the disk from filling with them.
            let _ = fs::remove_dir_all(sshd.root.join("testhost"));
            let _ = fs::remove_dir_all(scratch.path().join("state"));
        }
        eprintln!("{line}");
    }
    println!(
        "files backup of {:.2} GiB to OpenSSH on 127.0.0.1, zstd level 3 (median of 3; pipe output {:.0} MiB, twindb {:.0} MiB)",
        input as f64 / (1u64 << 30) as f64,
        base_size as f64 / (1 << 20) as f64,
        stored as f64 / (1 << 20) as f64
    );
    print("tar | zstd -3 -T0 | ssh cat", base, &builds, input, 0.95);
}

/// The config `files_config_to` wrote, with zstd at level 3 spelled out.
pub fn zstd3(config: PathBuf) -> PathBuf {
    let text = fs::read_to_string(&config).unwrap();
    let text = text.replacen("program = \"zstd\"\n", "program = \"zstd\"\nlevel = 3\n", 1);
    fs::write(&config, text).unwrap();
    config
}
