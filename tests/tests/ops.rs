//! Operations, through the real twindbd: the scheduler, retention, /metrics, the
//! DataDog and StatsD exporters, failure notices by webhook and SMTP, SIGHUP reload,
//! and sd_notify.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use twindb_tests::sinks::*;
use twindb_tests::*;

fn jobs(d: &Daemon) -> Vec<serde_json::Value> {
    d.ctl(&["--json", "jobs"]).success().json()["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

fn succeeded(d: &Daemon, run_type: &str) -> Vec<serde_json::Value> {
    jobs(d)
        .into_iter()
        .filter(|j| j["run_type"] == run_type && j["state"] == "succeeded")
        .collect()
}

#[test]
fn a_cron_schedule_runs_backups_and_metrics_and_datadog_show_them() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let dd = HttpSink::start();
    let port = free_port();
    let config = files_config(
        t.path(),
        &[&src],
        "zstd",
        &format!(
            r#"
[retention]
hourly_copies = 2

[export]
transport = "datadog"
api_key = "test-api-key"
endpoint = "{}"
"#,
            dd.url("")
        ),
    );
    // Every 3 seconds, on the hourly run type; nothing else fires during the test.
    let text = fs::read_to_string(&config).unwrap().replace(
        &format!("schedule_hourly = \"{NEVER}\"\n"),
        &format!("schedule_hourly = \"*/3 * * * * *\"\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    fs::write(&config, text).unwrap();
    let started = chrono::Utc::now().timestamp();
    let d = Daemon::start(&config);

    // The status says when the next hourly run is: within 3 s.
    let status = d.ctl(&["--json", "status"]).success().json();
    let hourly = status["run_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_type"] == "hourly")
        .unwrap()
        .clone();
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(hourly["next_run"].clone()).expect("next_run is set");
    let wait = next - chrono::Utc::now();
    assert!(wait <= chrono::Duration::seconds(3), "{next}");
    assert!(
        d.ctl(&["status"]).success().stdout.contains("NEXT RUN"),
        "the table shows the next run"
    );

    // Three scheduled runs, nobody asked for them.
    let done = wait_for(
        Duration::from_secs(40),
        "three scheduled hourly backups",
        || {
            let s = succeeded(&d, "hourly");
            (s.len() >= 3).then_some(s)
        },
    );
    assert!(
        d.log_text().contains("scheduled run queued"),
        "{}",
        d.log_text()
    );
    // Retention ran after each: two hourly copies stay.
    let keys = wait_for(
        Duration::from_secs(30),
        "retention to leave 2 copies",
        || {
            let k = ls_keys(&d);
            (k.len() == 2).then_some(k)
        },
    );
    assert!(keys.iter().all(|k| k.starts_with("testhost/hourly/files/")));
    let dst = t.path().join("restored");
    d.ctl(&[
        "restore",
        "file",
        keys.last().unwrap(),
        "--dst",
        dst.to_str().unwrap(),
    ])
    .success();
    assert_same_tree(&src, &dst);

    // /metrics over TCP parses as Prometheus text and shows the job's figures.
    let (code, content_type, body) = http_get(&format!("127.0.0.1:{port}"), "/metrics");
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let samples = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let fh = [("kind", "files"), ("run_type", "hourly")];
    let last_success = sample(&samples, "twindb_last_success_timestamp_seconds", &fh).unwrap();
    assert!(last_success >= started as f64, "{body}");
    let last = done.last().unwrap();
    // Every run of the same tree stores the same bytes, so any of them can be compared.
    assert_eq!(
        sample(&samples, "twindb_last_written_bytes", &fh),
        Some(last["progress"]["bytes_out"].as_f64().unwrap()),
        "{body}"
    );
    assert_eq!(
        sample(&samples, "twindb_last_read_bytes", &fh),
        Some(last["progress"]["bytes_in"].as_f64().unwrap()),
        "{body}"
    );
    assert!(sample(&samples, "twindb_last_duration_seconds", &fh).unwrap() > 0.0);
    assert_eq!(sample(&samples, "twindb_last_run_success", &fh), Some(1.0));
    let ok = [
        ("kind", "files"),
        ("run_type", "hourly"),
        ("outcome", "succeeded"),
    ];
    assert!(sample(&samples, "twindb_backups_total", &ok).unwrap() >= 3.0);
    assert!(sample(&samples, "twindb_written_bytes_total", &fh).unwrap() > 0.0);
    let remote = [
        ("kind", "files"),
        ("run_type", "hourly"),
        ("location", "remote"),
    ];
    assert_eq!(
        sample(&samples, "twindb_copies", &remote),
        Some(2.0),
        "{body}"
    );
    assert!(
        sample(
            &samples,
            "twindb_retention_deleted_copies_total",
            &[("kind", "files"), ("location", "remote")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&samples, "twindb_queue_depth", &[("lane", "backup_files")]).is_some());
    assert!(sample(&samples, "twindb_running_jobs", &[("lane", "backup_files")]).is_some());
    assert!(sample(
        &samples,
        "twindb_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    )
    .is_some());

    // The same text on the API socket. Scheduled runs keep changing the figures, so
    // the socket's answer is compared at a moment when two TCP answers around it agree.
    let tcp = format!("127.0.0.1:{port}");
    let (over_tcp, on_socket) = wait_for(
        Duration::from_secs(30),
        "two equal TCP answers around a socket one",
        || {
            let (_, _, before) = http_get(&tcp, "/metrics");
            let (code, content_type, on_socket) = unix_get(&d.socket, "/metrics");
            let (_, _, after) = http_get(&tcp, "/metrics");
            assert_eq!(code, 200);
            assert!(content_type.starts_with("text/plain; version=0.0.4"));
            (before == after).then_some((before, on_socket))
        },
    );
    let only = |a: &str, b: &str| -> Vec<String> {
        let b: Vec<&str> = b.lines().collect();
        a.lines()
            .filter(|l| !b.contains(l))
            .map(str::to_string)
            .collect()
    };
    assert!(
        on_socket == over_tcp,
        "the socket and TCP serve other metrics:\nonly over TCP: {:#?}\nonly on the socket: {:#?}",
        only(&over_tcp, &on_socket),
        only(&on_socket, &over_tcp)
    );

    // DataDog got each backup's duration with the API key.
    let posts = wait_for(Duration::from_secs(30), "DataDog series", || {
        let r = dd.requests();
        (!r.is_empty()).then_some(r)
    });
    let p = &posts[0];
    assert_eq!(
        (p.method.as_str(), p.path.as_str()),
        ("POST", "/api/v1/series")
    );
    assert_eq!(p.headers["dd-api-key"], "test-api-key");
    let series = &p.json()["series"][0];
    assert_eq!(series["metric"], "twindb.files.backup_time");
    assert_eq!(series["host"], "testhost");
    assert!(series["points"][0][1].as_f64().unwrap() > 0.0);
    let tags: Vec<&str> = series["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&"run_type:hourly"), "{tags:?}");
}

#[test]
fn a_failed_backup_sends_a_notice_to_a_webhook_and_by_smtp() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let hook = HttpSink::start();
    let smtp = SmtpSink::start();
    let statsd = UdpSink::start();
    let config = files_config(
        t.path(),
        &[&src],
        "zstd",
        &format!(
            r#"
[notify]
webhook_url = "{}"
email_to = ["dba@example.com"]
email_from = "twindb@testhost.example.com"
smtp_server = "127.0.0.1"
smtp_port = {}
smtp_tls = "none"

[export]
transport = "statsd"
statsd_host = "127.0.0.1"
statsd_port = {}
"#,
            hook.url("/hooks/twindb"),
            smtp.addr.port(),
            statsd.addr.port()
        ),
    );
    let d = Daemon::start(&config);

    // A good run: StatsD gets its duration, nobody gets a notice (on_success is off).
    d.ctl(&["run", "daily"]).success();
    let lines = wait_for(Duration::from_secs(30), "a StatsD line", || {
        let l = statsd.lines();
        (!l.is_empty()).then_some(l)
    });
    let line = &lines[0];
    assert!(
        line.starts_with("twindb.files.backup_time:") && line.ends_with("|ms"),
        "{line}"
    );

    // The destination becomes unusable: its folder is replaced by a file.
    let backups = t.path().join("backups");
    fs::rename(&backups, t.path().join("backups.moved")).unwrap();
    fs::write(&backups, "not a folder").unwrap();
    let out = d.ctl(&["--json", "run", "daily"]);
    assert_eq!(out.code, 1, "{out:?}");
    let failed = &out.json()[0];
    assert_eq!(failed["state"], "failed");
    let id = failed["id"].as_u64().unwrap();

    let req = wait_for(Duration::from_secs(30), "the webhook notice", || {
        hook.requests().into_iter().next()
    });
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/twindb");
    assert_eq!(req.headers["content-type"], "application/json");
    let body = req.json();
    assert_eq!(body["event"], "backup_failed");
    assert_eq!(body["host"], "testhost");
    assert_eq!(body["job"]["id"].as_u64(), Some(id));
    assert_eq!(body["job"]["state"], "failed");
    assert!(body["text"].as_str().unwrap().contains("FAILED"), "{body}");

    let mail = wait_for(Duration::from_secs(30), "the email notice", || {
        smtp.mails().into_iter().next()
    });
    assert_eq!(mail.from, "<twindb@testhost.example.com>");
    assert_eq!(mail.to, vec!["<dba@example.com>"]);
    assert!(
        mail.data
            .contains("Subject: twindb on testhost: daily backup files FAILED"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains(&format!("twindbctl job {id}")),
        "{}",
        mail.data
    );

    // Exactly one notice each: the success before sent none. Nothing is observable
    // for a notice not sent, so this waits a bounded while for a stray one.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(smtp.mails().len(), 1);

    // The failure shows in the metrics on the socket and in `status`.
    let (_, _, text) = unix_get(&d.socket, "/metrics");
    let samples = parse_prometheus(&text).unwrap();
    let fd = [("kind", "files"), ("run_type", "daily")];
    assert_eq!(sample(&samples, "twindb_failures_total", &fd), Some(1.0));
    assert_eq!(sample(&samples, "twindb_last_run_success", &fd), Some(0.0));
    assert!(sample(&samples, "twindb_last_success_timestamp_seconds", &fd).is_some());
    let status = d.ctl(&["status"]).success().stdout;
    assert!(status.contains("last error"), "{status}");
}

#[test]
fn a_notice_that_cannot_be_sent_does_not_fail_the_job() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    // Nothing listens on this port.
    let port = free_port();
    let config = files_config(
        t.path(),
        &[&src],
        "zstd",
        &format!("\n[notify]\non_success = true\nwebhook_url = \"http://127.0.0.1:{port}/x\"\n"),
    );
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    wait_for(Duration::from_secs(30), "the logged notice failure", || {
        d.log_text()
            .contains("could not send the webhook notice")
            .then_some(())
    });
    let (_, _, text) = unix_get(&d.socket, "/metrics");
    let samples = parse_prometheus(&text).unwrap();
    assert_eq!(
        sample(
            &samples,
            "twindb_notification_failures_total",
            &[("channel", "webhook")]
        ),
        Some(1.0)
    );
    assert_eq!(succeeded(&d, "daily").len(), 1);
}

#[test]
fn sighup_rejects_a_bad_config_and_applies_a_good_one() {
    let t = scratch();
    let one = t.path().join("one");
    let two = t.path().join("two");
    make_tree(&one);
    make_tree(&two);
    let config = files_config(t.path(), &[&one], "zstd", "");
    let good = fs::read_to_string(&config).unwrap();
    let mut d = Daemon::start(&config);

    // A bad config: the old one keeps running.
    fs::write(
        &config,
        good.replace("program = \"zstd\"", "program = \"zstd\"\nlevle = 3"),
    )
    .unwrap();
    d.hup();
    wait_for(Duration::from_secs(30), "the rejected reload", || {
        d.log_text()
            .contains("config reload rejected")
            .then_some(())
    });
    assert!(
        d.log_text().contains("levle"),
        "the errors are logged: {}",
        d.log_text()
    );
    assert!(d.alive());
    d.ctl(&["run", "daily"]).success();
    assert_eq!(ls_keys(&d).len(), 1, "still one folder");

    // A good one: two folders, weekly runs off, gzip, and a socket change that needs
    // a restart (kept, with a warning).
    let two_q = format!("{:?}", two.display().to_string());
    let one_q = format!("{:?}", one.display().to_string());
    let next = good
        .replace(&one_q, &format!("{one_q}, {two_q}"))
        .replace(
            "program = \"zstd\"",
            "program = \"gzip\"\n\n[intervals]\nrun_weekly = false",
        )
        .replace("twindbd.sock", "other.sock");
    fs::write(&config, next).unwrap();
    d.hup();
    wait_for(Duration::from_secs(30), "the reload", || {
        d.log_text().contains("config reloaded").then_some(())
    });
    assert!(d.log_text().contains("[daemon] socket"), "{}", d.log_text());
    assert!(d.alive());
    d.ctl(&["run", "daily"]).success();
    let keys = ls_keys(&d);
    let new: Vec<&String> = keys.iter().filter(|k| k.ends_with(".tar.gz")).collect();
    assert_eq!(new.len(), 2, "{keys:?}");
    for (i, key) in new.iter().enumerate() {
        let dst = t.path().join(format!("r{i}"));
        d.ctl(&["restore", "file", key, "--dst", dst.to_str().unwrap()])
            .success();
        let src = if key.contains("_one-") { &one } else { &two };
        assert_same_tree(src, &dst);
    }
    let out = d.ctl(&["run", "weekly"]);
    assert_eq!(out.code, 1, "weekly is disabled now: {out:?}");
    let status = d.ctl(&["--json", "status"]).success().json();
    let weekly = status["run_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_type"] == "weekly")
        .unwrap()
        .clone();
    assert_eq!(weekly["enabled"], false);
    assert!(weekly["next_run"].is_null());
}

#[test]
fn retention_dry_run_prints_the_plan_and_retention_applies_it() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(
        t.path(),
        &[&src],
        "zstd",
        "\n[retention]\ndaily_copies = 5\n",
    );
    let d = Daemon::start(&config);
    for _ in 0..3 {
        d.ctl(&["run", "daily"]).success();
        // Keys have a one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let before = ls_keys(&d);
    assert_eq!(before.len(), 3);
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("daily_copies = 5", "daily_copies = 1");
    fs::write(&config, text).unwrap();
    d.hup();
    wait_for(Duration::from_secs(30), "the reload", || {
        d.log_text().contains("config reloaded").then_some(())
    });

    let out = d.ctl(&["retention", "--dry-run"]).success();
    assert!(
        out.stdout.contains("would delete 2 copies, 1 kept"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!(
            "would delete {} (not among the newest 1 daily copies of",
            before[0]
        )),
        "{out:?}"
    );
    assert_eq!(ls_keys(&d), before, "a dry run deletes nothing");
    let plan = d
        .ctl(&["--json", "retention", "--dry-run"])
        .success()
        .json();
    assert_eq!(plan["deletions"].as_array().unwrap().len(), 2);

    let out = d.ctl(&["retention"]).success();
    assert!(out.stdout.contains("deleted 2 copies, 1 kept"), "{out:?}");
    let after = ls_keys(&d);
    assert_eq!(after, vec![before[2].clone()]);
    assert!(!t.path().join("backups").join(&before[0]).exists());
    let dst = t.path().join("restored");
    d.ctl(&["restore", "file", &after[0], "--dst", dst.to_str().unwrap()])
        .success();
    assert_same_tree(&src, &dst);
}

#[test]
fn sd_notify_ready_status_watchdog_and_stopping() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let notify_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = files_config(t.path(), &[&src], "zstd", "");
    let d = Daemon::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    let mut seen = Vec::new();
    let recv_until = |what: &str, seen: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        loop {
            if seen.iter().any(|m| m.contains(what)) {
                return;
            }
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}; got {seen:?}"));
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    recv_until("READY=1", &mut seen);
    recv_until("WATCHDOG=1", &mut seen);
    d.ctl(&["run", "daily"]).success();
    recv_until("STATUS=running job", &mut seen);
    d.hup();
    let code = d.stop();
    assert_eq!(code, 0);
    recv_until("STOPPING=1", &mut seen);
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=idle"), "{ready}");
}

#[test]
fn the_log_filter_applies_and_a_reload_changes_it() {
    let t = scratch();
    let src = t.path().join("src");
    make_tree(&src);
    let config = files_config(t.path(), &[&src], "zstd", "");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("log = \"info,twindb=debug\"", "log = \"warn\""),
    )
    .unwrap();
    let d = Daemon::start(&config);
    d.ctl(&["run", "daily"]).success();
    assert!(
        !d.log_text().contains("job succeeded"),
        "INFO lines are filtered out: {}",
        d.log_text()
    );
    fs::write(
        &config,
        text.replace("log = \"info,twindb=debug\"", "log = \"info\""),
    )
    .unwrap();
    d.hup();
    wait_for(Duration::from_secs(30), "the reload", || {
        d.log_text().contains("config reloaded").then_some(())
    });
    d.ctl(&["run", "daily"]).success();
    wait_for(Duration::from_secs(30), "an INFO line", || {
        d.log_text().contains("job succeeded").then_some(())
    });
    assert!(
        !d.log_text().contains("DEBUG"),
        "no debug lines at info: {}",
        d.log_text()
    );
}
