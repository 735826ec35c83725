//! `twindb-bench az`: a tar stream uploaded to Azurite through twindbd's az destination,
//! beside `tar | python3` with Microsoft's `azure-storage-blob` (`upload_blob` with the
//! same block size and concurrency), in the same run, on the same data.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use twindb_tests::servers::{destination_from, AzServer, AZURITE_INSTALL, BUCKET};

use crate::{dir_size, generate, mib_s, warm_cache};

/// The baseline: the stream on stdin uploaded as 16 MiB blocks, 4 at once (twindb's
/// defaults), by the official Python SDK.
const UPLOAD: &str = r#"
import os, sys
from azure.storage.blob import BlobClient
blob = BlobClient.from_connection_string(
    os.environ["AZ_CONN"], os.environ["AZ_CONTAINER"], "baseline.tar",
    max_block_size=16 * 1024 * 1024, max_single_put_size=16 * 1024 * 1024)
blob.upload_blob(sys.stdin.buffer, max_concurrency=4, overwrite=True)
print(blob.get_blob_properties().size)
"#;

pub fn az(size_gib: f64, data: Option<PathBuf>, az_extra: String) {
    let server =
        AzServer::start().unwrap_or_else(|| panic!("azurite is missing: {AZURITE_INSTALL}"));
    let scratch = tempfile::Builder::new()
        .prefix("twbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = data.unwrap_or_else(|| PathBuf::from("/var/tmp/twindb-bench-data"));
    generate(&data, (size_gib * (1u64 << 30) as f64) as u64);
    let input = dir_size(&data);
    let rel = data.strip_prefix("/").unwrap().display().to_string();
    let section = server.config_section("");
    let conn = section
        .lines()
        .find_map(|l| l.strip_prefix("connection_string = "))
        .expect("a connection string")
        .trim_matches('"')
        .to_string();

    // Baseline: azure-storage-blob from PyPI (pip install azure-storage-blob).
    warm_cache(&data);
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; tar -c -C / {rel} | python3 -c '{UPLOAD}'"
        ))
        .env("AZ_CONN", &conn)
        .env("AZ_CONTAINER", BUCKET)
        .output()
        .expect("run python3");
    let base_secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "tar | upload_blob failed (pip install azure-storage-blob): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base_size: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let sdk_version = Command::new("python3")
        .args(["-c", "import azure.storage.blob as b; print(b.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dest = destination_from("az", &section);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dest.delete("baseline.tar"))
        .expect("delete the baseline blob");

    // twindb: a real twindbd, started by twindbctl run.
    let section = server.config_section(&az_extra.replace(';', "\n"));
    let (secs, stored, rss) = crate::timed_upload(scratch.path(), &data, "az", &section);

    let base = mib_s(input, base_secs);
    let ours = mib_s(input, secs);
    println!(
        "az upload of a {:.2} GiB tree (tar stream, no compression) to Azurite on 127.0.0.1",
        input as f64 / (1u64 << 30) as f64
    );
    println!(
        "  tar | upload_blob : {base_secs:7.2} s  {base:7.1} MiB/s  stored {:.0} MiB  \
         (azure-storage-blob {sdk_version}, 16 MiB blocks, 4 at once)",
        base_size as f64 / (1 << 20) as f64
    );
    println!(
        "  twindb            : {secs:7.2} s  {ours:7.1} MiB/s  stored {:.0} MiB  ({})",
        stored as f64 / (1 << 20) as f64,
        if az_extra.is_empty() {
            "defaults: 16 MiB blocks, 4 in flight"
        } else {
            &az_extra
        }
    );
    println!(
        "  ratio twindb/azure-storage-blob throughput: {:.2}x (target >= 1.00x)",
        ours / base
    );
    println!("  twindbd peak RSS: {:.1} MiB", rss as f64 / 1024.0);
}
