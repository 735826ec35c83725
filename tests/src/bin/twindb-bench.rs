//! Benchmarks that compare twindb with the command-line pipe a DBA would write, on the
//! same data in the same run. Not a test: it prints figures, it asserts nothing.
//!
//! cargo build --release --workspace && target/release/twindb-bench files [--size-gib 2] [--data DIR]
//! target/release/twindb-bench s3 [--size-gib 2] [--data DIR] [--s3-extra 'upload_concurrency = 8;part_size = "8MiB"']
//!   (needs s3s-fs and the AWS CLI; --s3-extra adds `;`-separated lines to twindb's [s3])

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use twindb_tests::servers::{S3Server, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY};
use twindb_tests::{files_config, files_config_to, write_random_file, Daemon};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("files");
    let size_gib: f64 =
        flag(&args, "--size-gib").map_or(2.0, |s| s.parse().expect("--size-gib number"));
    let data = flag(&args, "--data").map(PathBuf::from);
    match what {
        "files" => files(size_gib, data),
        "s3" => s3(
            size_gib,
            data,
            flag(&args, "--s3-extra").unwrap_or_default(),
        ),
        other => {
            eprintln!("unknown benchmark {other:?}; known: files, s3");
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
    warm_cache(&data);
    let config = files_config_to(
        scratch.path(),
        &[&data],
        "none",
        "s3",
        &server.config_section(&s3_extra.replace(';', "\n")),
    );
    let daemon = Daemon::start(&config);
    let t = Instant::now();
    let run = daemon.ctl(&["--json", "run", "daily"]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "twindb backup failed: {run:?}");
    let stored = run.json()[0]["progress"]["bytes_out"].as_u64().unwrap_or(0);
    let rss = peak_rss_kib(daemon.child.id());
    daemon.stop();
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

fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
