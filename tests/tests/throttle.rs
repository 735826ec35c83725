//! Bandwidth limits: `[daemon] max_upload_rate` holds a backup's upload to its rate,
//! and a reload changes `max_read_rate` under a running job.

use std::fs;
use std::time::{Duration, Instant};

use twindb_tests::sinks::{free_port, wait_for};
use twindb_tests::{assert_same_tree, fetch_url, files_config, scratch, write_random_file, Daemon};

const MIB: u64 = 1 << 20;

fn seconds(job: &serde_json::Value) -> f64 {
    let at = |f: &str| {
        job[f]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    (at("finished_at") - at("started_at")).num_milliseconds() as f64 / 1000.0
}

#[test]
fn an_upload_limit_holds_the_copy_to_its_rate() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Random bytes: nothing to compress, so 64 MiB are uploaded.
    write_random_file(&src.join("data.bin"), 64 * MIB, 11);
    let port = free_port();
    let config = files_config(t.path(), &[&src], "none", "");
    let text = fs::read_to_string(&config).unwrap().replace(
        "run_at_start = false\n",
        &format!(
            "run_at_start = false\nmax_upload_rate = \"8MiB/s\"\nmetrics_listen = \"127.0.0.1:{port}\"\n"
        ),
    );
    fs::write(&config, text).unwrap();
    let d = Daemon::start(&config);
    let out = d.ctl(&["--json", "run", "daily"]).success().json();
    let job = &out[0];
    let took = seconds(job);
    let sent = job["progress"]["bytes_out"].as_u64().unwrap();
    assert!(sent > 64 * MIB, "{job}");
    let rate = sent as f64 / took / MIB as f64;
    println!("{sent} bytes in {took:.2} s: {rate:.2} MiB/s (limit 8)");
    assert!(took >= 7.0, "{took} s");
    assert!(
        (6.8..=9.2).contains(&rate),
        "{rate} MiB/s is not within 15% of 8"
    );
    let warnings = job["warnings"].to_string();
    assert!(warnings.contains("throttled: waited"), "{warnings}");
    let (_, body) = fetch_url(&format!("http://127.0.0.1:{port}/metrics"));
    let metrics = String::from_utf8(body).unwrap();
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("twindb_throttled_seconds_total{direction=\"upload\"} "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(waited > 5.0, "{waited}");

    // The copy is whole.
    let key = job["copies"][0].as_str().unwrap();
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_reload_changes_the_read_limit_of_a_running_job() {
    let t = scratch();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("data.bin"), 64 * MIB, 12);
    let config = files_config(t.path(), &[&src], "none", "");
    let limited = fs::read_to_string(&config).unwrap().replace(
        "run_at_start = false\n",
        "run_at_start = false\nmax_read_rate = \"2MiB\"\n",
    );
    fs::write(&config, &limited).unwrap();
    let d = Daemon::start(&config);
    let started = Instant::now();
    let out = d
        .ctl(&["--json", "run", "daily", "--no-wait"])
        .success()
        .json();
    let id = out["jobs"][0]["job"]["id"].as_u64().unwrap();
    // At 2 MiB/s the 64 MiB would take 32 s. Once it is surely running under the
    // limit, lift the limit.
    wait_for(Duration::from_secs(30), "4 MiB read", || {
        let read = d.job(id)["progress"]["bytes_in"].as_u64().unwrap_or(0);
        (read >= 4 * MIB).then_some(())
    });
    let slow = d.job(id)["progress"]["bytes_in"].as_u64().unwrap();
    assert!(
        slow < 32 * MIB,
        "{slow} bytes read already: the limit did not hold"
    );
    fs::write(
        &config,
        limited.replace("max_read_rate = \"2MiB\"", "max_read_rate = \"1GiB\""),
    )
    .unwrap();
    d.hup();
    let job = d.wait_final(id);
    let total = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        total < Duration::from_secs(24),
        "the reloaded limit did not apply to the running job: {total:?}\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("config reloaded"));
    let key = job["copies"][0].as_str().unwrap();
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
    assert_eq!(d.stop(), 0);
}
