//! Benchmarks that compare twindb with the command-line pipe a DBA would write, on the
//! same data in the same run. Not a test: it prints figures, it asserts nothing.
//!
//! cargo build --release --workspace && target/release/twindb-bench files [--size-gib 2] [--data DIR]
//! target/release/twindb-bench s3 [--size-gib 2] [--data DIR] [--s3-extra 'upload_concurrency = 8;part_size = "8MiB"']
//!   (needs s3s-fs and the AWS CLI; --s3-extra adds `;`-separated lines to twindb's [s3])
//! target/release/twindb-bench az [--size-gib 2] [--data DIR] [--az-extra 'upload_concurrency = 8']
//!   (needs azurite and `pip install azure-storage-blob`; --az-extra adds `;`-separated
//!   lines to twindb's [az])
//! target/release/twindb-bench chains [--size-gib 1] [--data DIR] [--only zstd,zstd+gpg]
//! target/release/twindb-bench binlog [--rate-mib 20] [--seconds 30] [--max-lag 10s] [--rounds 2]
//! target/release/twindb-bench files --to ssh [--size-gib 1]   (backup to a local OpenSSH)
//! target/release/twindb-bench restore --from local|ssh|s3|gcs|az [--size-gib 1] [--data DIR]
//!   (s3 needs s3s-fs and the AWS CLI, gcs gcp-storage-emulator and curl, az azurite
//!   and `pip install azure-storage-blob`)
//! target/release/twindb-bench restore --mysql [--size-gib 1]
//!   (files --to ssh and restore take --before PATH: an earlier twindbd, timed in the
//!   same rounds)

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use twindb_tests::servers::{S3Server, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY};
use twindb_tests::{files_config, files_config_to, write_random_file, Daemon};

// Outside src/bin so cargo does not take its files for binaries of their own.
#[path = "../bench/mod.rs"]
mod bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("files");
    let size_gib: f64 =
        flag(&args, "--size-gib").map_or(2.0, |s| s.parse().expect("--size-gib number"));
    let data = flag(&args, "--data").map(PathBuf::from);
    // Another twindbd binary to run beside this build's (same rounds, same data).
    let before = flag(&args, "--before").map(PathBuf::from);
    match what {
        "files" if flag(&args, "--to").as_deref() == Some("ssh") => bench::ssh::files_to_ssh(
            flag(&args, "--size-gib").map_or(1.0, |s| s.parse().expect("--size-gib number")),
            data,
            before,
        ),
        "files" => files(size_gib, data),
        "mysql" => mysql(size_gib),
        "restore" => {
            let size_gib =
                flag(&args, "--size-gib").map_or(1.0, |s| s.parse().expect("--size-gib number"));
            if args.iter().any(|a| a == "--mysql") {
                bench::restore::mysql(size_gib, before)
            } else {
                let from = flag(&args, "--from").unwrap_or_else(|| "local".into());
                bench::restore::files(size_gib, data, &from, before)
            }
        }
        "s3" => s3(
            size_gib,
            data,
            flag(&args, "--s3-extra").unwrap_or_default(),
        ),
        "az" => bench::az::az(
            size_gib,
            data,
            flag(&args, "--az-extra").unwrap_or_default(),
        ),
        "chains" => chains(
            flag(&args, "--size-gib").map_or(1.0, |s| s.parse().expect("--size-gib number")),
            data,
            flag(&args, "--only"),
        ),
        "binlog" => bench::binlog::run(bench::binlog::Args {
            rate_mib: flag(&args, "--rate-mib")
                .map_or(20.0, |s| s.parse().expect("--rate-mib number")),
            seconds: flag(&args, "--seconds")
                .map_or(30.0, |s| s.parse().expect("--seconds number")),
            max_lag: flag(&args, "--max-lag").unwrap_or_else(|| "10s".into()),
            rounds: flag(&args, "--rounds").map_or(2, |s| s.parse().expect("--rounds number")),
        }),
        other => {
            eprintln!(
                "unknown benchmark {other:?}; known: files, mysql, s3, az, chains, restore, binlog"
            );
            std::process::exit(2);
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Half compressible text (CSV-like rows), half random, in 64 MiB files.
fn generate(dir: &Path, total: u64) {
    let marker = dir.join(".complete");
    if fs::read_to_string(&marker).ok().as_deref() == Some(&total.to_string()) {
        return;
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("text")).unwrap();
    fs::create_dir_all(dir.join("random")).unwrap();
    let file_size = 64u64 << 20;
    let files = (total / 2).div_ceil(file_size);
    eprintln!(
        "generating {} GiB of test data in {}",
        total >> 30,
        dir.display()
    );
    for i in 0..files {
        write_random_file(
            &dir.join(format!("random/r{i:03}.bin")),
            file_size,
            1000 + i,
        );
        let mut f = std::io::BufWriter::new(
            fs::File::create(dir.join(format!("text/t{i:03}.csv"))).unwrap(),
        );
        let mut written = 0u64;
        let mut row = i * 1_000_000;
        while written < file_size {
            let line = format!(
                "{row},customer-{},2026-11-{:02} {:02}:{:02}:{:02},{}.{:02},\"order note {} for shipment {}\"\n",
                row % 50_000,
                row % 28 + 1,
                row % 24,
                row % 60,
                (row * 7) % 60,
                row % 10_000,
                row % 100,
                row % 977,
                row % 31_337
            );
            f.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
            row += 1;
        }
    }
    fs::write(&marker, total.to_string()).unwrap();
}

fn warm_cache(dir: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {0}/text/* {0}/random/* > /dev/null",
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for sub in ["text", "random"] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            total += e.unwrap().metadata().unwrap().len();
        }
    }
    total
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn files(size_gib: f64, data: Option<PathBuf>) {
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-data"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let input = dir_size(&data);
    warm_cache(&data);

    // Baseline: what a DBA would type.
    let out = scratch.path().join("baseline.tar.zst");
    let t = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; tar -c -C / {} | zstd -q -3 -T0 > {}",
            data.strip_prefix("/").unwrap().display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "baseline pipe failed");
    let base_secs = t.elapsed().as_secs_f64();
    let base_size = fs::metadata(&out).unwrap().len();
    fs::remove_file(&out).unwrap();

    // twindb: a real twindbd, started by twindbctl run.
    warm_cache(&data);
    let config = files_config(scratch.path(), &[&data], "zstd", "level = 3");
    let daemon = Daemon::start(&config);
    let t = Instant::now();
    let run = daemon.ctl(&["--json", "run", "daily"]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
    let job = &run.json()[0];
    let stored = job["progress"]["bytes_out"].as_u64().unwrap_or(0);
    let rss = peak_rss_kib(daemon.child.id());
    daemon.stop();

    let base = mib_s(input, base_secs);
    let ours = mib_s(input, secs);
    println!(
        "files backup of {:.2} GiB (half text, half random), zstd level 3",
        input as f64 / (1u64 << 30) as f64
    );
    println!(
        "  tar | zstd -3 -T0 : {base_secs:7.2} s  {base:7.1} MiB/s  output {:.0} MiB",
        base_size as f64 / (1 << 20) as f64
    );
    println!(
        "  twindb            : {secs:7.2} s  {ours:7.1} MiB/s  output {:.0} MiB",
        stored as f64 / (1 << 20) as f64
    );
    println!(
        "  ratio twindb/baseline throughput: {:.2}x (target >= 0.90x)",
        ours / base
    );
    println!(
        "  twindbd peak RSS: {:.1} MiB (target < 256 MiB)",
        rss as f64 / 1024.0
    );
}

/// Upload of the same tree to the same local s3s-fs: the AWS CLI streaming
/// `tar | aws s3 cp -` (a stream of unknown length, like twindb's), then twindbd running a
/// files backup with compression none to its s3 destination (default part size and
/// concurrency).
fn s3(size_gib: f64, data: Option<PathBuf>, s3_extra: String) {
    let mut server = S3Server::start().expect(
        "s3s-fs is missing: cargo install s3s-fs --version 0.14.1 --features binary --locked",
    );
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-data"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let input = dir_size(&data);
    let rel = data.strip_prefix("/").unwrap().display().to_string();

    // Baseline: the AWS CLI, from PyPI (awscli). Over http botocore hashes every part
    // for its signature unless told not to; twindb does not (as botocore over https).
    let aws_config = scratch.path().join("aws-config");
    fs::write(
        &aws_config,
        "[default]\ns3 =\n    payload_signing_enabled = false\n",
    )
    .unwrap();
    warm_cache(&data);
    let t = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; tar -c -C / {rel} | aws s3 cp - s3://{BUCKET}/baseline.tar \
             --endpoint-url {} --only-show-errors",
            server.endpoint()
        ))
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", &aws_config)
        // Like twindb, no per-part checksums (twindb checks its own sha256).
        .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        .status()
        .expect("run the AWS CLI (pip install awscli)");
    assert!(status.success(), "tar | aws s3 cp failed");
    let base_secs = t.elapsed().as_secs_f64();
    let baseline = server.root().join(BUCKET).join("baseline.tar");
    let base_size = fs::metadata(&baseline).expect("baseline object").len();
    fs::remove_file(&baseline).unwrap();
    let aws_version = Command::new("aws")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    // twindb: a real twindbd, started by twindbctl run.
    let section = server.config_section(&s3_extra.replace(';', "\n"));
    let (secs, stored, rss) = timed_upload(scratch.path(), &data, "s3", &section);
    server.stop();

    let base = mib_s(input, base_secs);
    let ours = mib_s(input, secs);
    println!(
        "s3 upload of a {:.2} GiB tree (tar stream, no compression) to s3s-fs 0.14.1 on 127.0.0.1",
        input as f64 / (1u64 << 30) as f64
    );
    println!(
        "  tar | aws s3 cp - : {base_secs:7.2} s  {base:7.1} MiB/s  stored {:.0} MiB  ({aws_version})",
        base_size as f64 / (1 << 20) as f64
    );
    println!(
        "  twindb            : {secs:7.2} s  {ours:7.1} MiB/s  stored {:.0} MiB  ({})",
        stored as f64 / (1 << 20) as f64,
        if s3_extra.is_empty() {
            "defaults: 16 MiB parts, 4 in flight"
        } else {
            &s3_extra
        }
    );
    println!(
        "  ratio twindb/aws-cli throughput: {:.2}x (target >= 1.00x)",
        ours / base
    );
    println!("  twindbd peak RSS: {:.1} MiB", rss as f64 / 1024.0);
}

/// One uncompressed files backup of `data` through a real twindbd to `destination`
/// (its section `section`): seconds of `twindbctl run daily`, bytes stored, and
/// twindbd's peak RSS in KiB.
fn timed_upload(scratch: &Path, data: &Path, destination: &str, section: &str) -> (f64, u64, u64) {
    warm_cache(data);
    let config = files_config_to(scratch, &[data], "none", destination, section);
    let daemon = Daemon::start(&config);
    let t = Instant::now();
    let run = daemon.ctl(&["--json", "run", "daily"]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
    let stored = run.json()[0]["progress"]["bytes_out"].as_u64().unwrap_or(0);
    let rss = peak_rss_kib(daemon.child.id());
    daemon.stop();
    (secs, stored, rss)
}

/// User + system CPU seconds of a process and of the children it waited for.
fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // fields 14..=17: utime stime cutime cstime
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks as f64 / 100.0
}

/// Parses bash's `times` format, e.g. `1m2.345s`.
fn bash_secs(v: &str) -> Option<f64> {
    let (m, s) = v.strip_suffix('s')?.split_once('m')?;
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A size line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`) in KiB; 0 when gone.
fn status_kib(pid: u32, line: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(line))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Reads the benchmark files one after another, as one stream (text and random
/// alternating, as a tar of the folder would).
struct Files {
    paths: std::vec::IntoIter<PathBuf>,
    cur: Option<fs::File>,
}

impl std::io::Read for Files {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(f) = &mut self.cur {
                let n = f.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            match self.paths.next() {
                Some(p) => self.cur = Some(fs::File::open(p)?),
                None => return Ok(0),
            }
        }
    }
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut text: Vec<PathBuf> = fs::read_dir(dir.join("text"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut random: Vec<PathBuf> = fs::read_dir(dir.join("random"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    text.sort();
    random.sort();
    text.into_iter()
        .zip(random)
        .flat_map(|(t, r)| [t, r])
        .collect()
}

/// Counts what a chain writes, and throws it away.
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Each modifier chain on the same data through twindb's pipeline (one thread per
/// stage, bounded pipes, the real programs), beside the shell pipe a DBA would type.
fn chains(size_gib: f64, data: Option<PathBuf>, only: Option<String>) {
    use twindb::config::GpgConfig;
    use twindb::modifier::{resolve_gpg, ModifierEnv, ModifierSpec};
    use twindb_tests::chain::{run, Way};

    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-chains"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let files = data_files(&data);
    let input = dir_size(&data);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);

    let key = twindb_tests::gpg::GpgKey::generate("bench@twindb.test");
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/tmp")
        .unwrap();
    let home = scratch.path().join("gnupg");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg_config = GpgConfig {
        recipient: key.email.clone(),
        keyring: key.public_keyring(),
        secret_keyring: None,
        homedir: Some(home.clone()),
    };
    let env = ModifierEnv {
        threads,
        gpg: Some(gpg_config.clone()),
        ..Default::default()
    };
    let gpg = resolve_gpg(&gpg_config).expect("the bench key");
    let gpg_cmd = format!(
        "gpg --batch --homedir {} --no-default-keyring --keyring {} --trust-model always --recipient {} --cipher-algo AES256 --compress-algo none --encrypt",
        home.display(),
        key.public_keyring().display(),
        key.fingerprint
    );
    let t = threads;
    let cases: Vec<(&str, Vec<ModifierSpec>, String)> = vec![
        ("none", vec![], "cat".into()),
        (
            "zstd",
            vec![ModifierSpec::Zstd { level: 3 }],
            "zstd -q -3 -T0 -c".into(),
        ),
        (
            "zstd+gpg",
            vec![ModifierSpec::Zstd { level: 3 }, gpg.clone()],
            format!("zstd -q -3 -T0 -c | {gpg_cmd}"),
        ),
        ("gpg", vec![gpg.clone()], gpg_cmd.clone()),
        (
            "gzip",
            vec![ModifierSpec::Gzip { level: 6 }],
            "gzip -6 -c".into(),
        ),
        (
            "pigz",
            vec![ModifierSpec::Pigz { level: 6 }],
            format!("pigz -6 -p {t} -c"),
        ),
        (
            "pigz+gpg",
            vec![ModifierSpec::Pigz { level: 6 }, gpg.clone()],
            format!("pigz -6 -p {t} -c | {gpg_cmd}"),
        ),
        (
            "bzip2",
            vec![ModifierSpec::Bzip2 { level: 9 }],
            "bzip2 -9 -c".into(),
        ),
        (
            "lbzip2",
            vec![ModifierSpec::Lbzip2 { level: 9 }],
            format!("lbzip2 -9 -n {t} -c"),
        ),
    ];
    let only: Option<Vec<String>> = only.map(|o| o.split(',').map(str::to_string).collect());

    println!(
        "modifier chains on {:.2} GiB (half CSV-like text, half random), {threads} threads, output discarded",
        input as f64 / (1u64 << 30) as f64
    );
    println!(
        "  {:<10} {:>14} {:>14} {:>7} {:>10}   command-line pipe",
        "chain", "twindb MiB/s", "pipe MiB/s", "ratio", "out MiB"
    );
    for (name, chain, pipe) in cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        // The shell pipe, reading the same files in the same order.
        warm_cache(&data);
        let cat: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let script = if pipe == "cat" {
            format!("cat {} > /dev/null", cat.join(" "))
        } else {
            format!(
                "set -o pipefail; cat {} | {pipe} > /dev/null",
                cat.join(" ")
            )
        };
        let started = Instant::now();
        let status = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: the pipe failed");
        let pipe_secs = started.elapsed().as_secs_f64();

        warm_cache(&data);
        let reader = Files {
            paths: files.clone().into_iter(),
            cur: None,
        };
        let started = Instant::now();
        let out = run(&chain, &env, Way::Encode, reader, Counting(0))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let secs = started.elapsed().as_secs_f64();

        let ours = mib_s(input, secs);
        let base = mib_s(input, pipe_secs);
        println!(
            "  {name:<10} {ours:>14.1} {base:>14.1} {:>6.2}x {:>10.0}   {}",
            ours / base,
            out.0 as f64 / (1 << 20) as f64,
            pipe.replace(&gpg_cmd, "gpg --encrypt ...")
        );
    }
    twindb_tests::gpg::stop_agent(&home);
}

/// A MariaDB with about `size_gib` of InnoDB data (half compressible text, half random),
/// backed up by `mariabackup --stream | zstd -3 -T0` and by twindbd with zstd level 3.
fn mysql(size_gib: f64) {
    use twindb_tests::mariadb::MariaDb;
    let db = MariaDb::start();
    load(&db, size_gib);
    let datadir_bytes = dir_bytes(&db.datadir);
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let baseline = || {
        let out = scratch.path().join("baseline.xbs.zst");
        let t = Instant::now();
        // `times` prints the CPU the pipeline used (second line: children user, system).
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; mariabackup --defaults-file={} --backup --stream=xbstream --target-dir={} 2>/dev/null | zstd -q -3 -T0 > {} && times",
                db.defaults_file.display(),
                scratch.path().join("tmp").display(),
                out.display()
            ))
            .output()
            .unwrap();
        assert!(output.status.success(), "baseline pipe failed");
        let secs = t.elapsed().as_secs_f64();
        let cpu = String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .map(|l| l.split_whitespace().filter_map(bash_secs).sum())
            .unwrap_or(0.0);
        let size = fs::metadata(&out).unwrap().len();
        fs::remove_file(&out).unwrap();
        let _ = fs::remove_dir_all(scratch.path().join("tmp"));
        (secs, size, cpu)
    };

    let root = scratch.path().join("twindb");
    fs::create_dir_all(&root).unwrap();
    let config = root.join("twindb.toml");
    fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{r}/twindbd.sock\"\nstate_dir = \"{r}/state\"\nrun_at_start = false\n\n\
             [source]\nbackup_mysql = true\n\n[mysql]\nmysql_defaults_file = \"{d}\"\n\n\
             [destination]\nbackup_destination = \"local\"\n\n[local]\npath = \"{r}/backups\"\n\n\
             [compression]\nprogram = \"zstd\"\nlevel = 3\n",
            r = root.display(),
            d = db.defaults_file.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config);
    // Each `run daily` takes a new full copy (full_backup = daily).
    let twindb = || {
        let cpu_before = cpu_secs(daemon.child.id());
        let t = Instant::now();
        let run = daemon.ctl(&["--json", "run", "daily"]);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
        let jobs = run.json();
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "backup_mysql")
            .unwrap()
            .clone();
        // The MySQL job's own duration: the run also holds a (small) binlog copy job.
        let job_secs = job_seconds(&job).unwrap_or(secs);
        let read = job["progress"]["bytes_in"].as_u64().unwrap_or(0);
        let stored = job["progress"]["bytes_out"].as_u64().unwrap_or(0);
        (
            job_secs,
            read,
            stored,
            cpu_secs(daemon.child.id()) - cpu_before,
        )
    };

    // Alternate the two, twice, so a burst of load elsewhere on the machine hits both;
    // the best of each is compared.
    let (mut base_secs, mut base_size) = (f64::MAX, 0);
    let (mut secs, mut read, mut stored) = (f64::MAX, 0, 0);
    for round in 1..=2 {
        let (b, size, b_cpu) = baseline();
        let (t, r, st, t_cpu) = twindb();
        println!(
            "  round {round}: mariabackup | zstd {b:.2} s ({b_cpu:.1} CPU s), \
             twindb mysql job {t:.2} s ({t_cpu:.1} CPU s, twindbd and mariabackup)"
        );
        if b < base_secs {
            (base_secs, base_size) = (b, size);
        }
        if t < secs {
            (secs, read, stored) = (t, r, st);
        }
    }
    let rss = peak_rss_kib(daemon.child.id());
    daemon.stop();
    let gib = datadir_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "MariaDB backup, datadir {gib:.2} GiB, stream {:.0} MiB, zstd level 3 (best of 2 rounds)",
        read as f64 / (1 << 20) as f64
    );
    println!("  mariabackup | zstd -3 -T0 : {base_secs:7.2} s  {:7.1} MiB/s of datadir  output {:.0} MiB", mib_s(datadir_bytes, base_secs), base_size as f64 / (1 << 20) as f64);
    println!(
        "  twindb mysql job          : {secs:7.2} s  {:7.1} MiB/s of datadir  output {:.0} MiB",
        mib_s(datadir_bytes, secs),
        stored as f64 / (1 << 20) as f64
    );
    println!(
        "  ratio twindb/baseline throughput: {:.2}x (target >= 0.95x)",
        base_secs / secs
    );
    println!("  twindbd peak RSS: {:.1} MiB", rss as f64 / 1024.0);
}

/// Loads about `size_gib` of InnoDB data into `bench.t`, then drops the binlogs.
fn load(db: &twindb_tests::mariadb::MariaDb, size_gib: f64) {
    let rows_per_batch = 100_000u64;
    // ~1 KiB a row: 512 B of text, 512 B of random bytes.
    let batches = ((size_gib * (1u64 << 30) as f64) / 1024.0 / rows_per_batch as f64).ceil() as u64;
    eprintln!("loading about {size_gib} GiB into MariaDB ({batches} batches)");
    db.sql("CREATE DATABASE bench; CREATE TABLE bench.t(id BIGINT PRIMARY KEY, txt VARCHAR(600), bin VARBINARY(600)) ENGINE=InnoDB");
    for b in 0..batches {
        let from = b * rows_per_batch + 1;
        let to = from + rows_per_batch - 1;
        db.sql(&format!(
            "USE bench; INSERT INTO t SELECT seq, REPEAT(CONCAT('order ', seq % 977, ' customer ', seq % 50000, ';'), 16), \
             RANDOM_BYTES(512) FROM seq_{from}_to_{to}"
        ));
    }
    // The load wrote about as much binlog as data; twindb's run would copy those binlogs in a
    // parallel job, which mariabackup alone does not. Binlog copies are not what this measures.
    db.sql("RESET MASTER");
}

/// Seconds between a job's `started_at` and `finished_at` as twindbd recorded them.
fn job_seconds(job: &serde_json::Value) -> Option<f64> {
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(job[k].as_str()?)
            .ok()
            .map(|t| t.timestamp_micros())
    };
    Some((at("finished_at")? - at("started_at")?) as f64 / 1e6)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}
