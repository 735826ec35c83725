//! The metrics the docs promise are the ones twindbd exports: every metric registered
//! in `twindb::metrics::Metrics` is in docs/operations.md's table with its labels, and
//! every `twindb_*` name in the docs, the Grafana dashboard and the alert rules is
//! exported. The alert rules pass `promtool check rules` and their unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use chrono::{TimeZone, Utc};
use twindb::metrics::{points_for, Metrics};
use twindb_proto::{CopyKind, JobInfo, JobKind, JobState, Progress, RunType};

use super::{code_spans, pages, read, repo};

/// Name → label names of every metric twindbd registers, labelled or not, whether or
/// not a job has given it a value yet.
fn exported() -> BTreeMap<String, Vec<String>> {
    Metrics::new().descriptions().iter().cloned().collect()
}

/// The rows of the table in docs/operations.md's "## Metrics": name → labels.
fn documented() -> BTreeMap<String, Vec<String>> {
    let text = read(&repo().join("docs/operations.md"));
    let start = text.find("\n## Metrics\n").expect("a Metrics part");
    let part = &text[start + 1..];
    let part = &part[..part[1..].find("\n## ").map_or(part.len(), |i| i + 1)];
    let mut rows = BTreeMap::new();
    for line in part.lines().filter(|l| l.starts_with("| `twindb_")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = code_spans(cells[0])[0].to_string();
        let labels = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        rows.insert(name, labels);
    }
    rows
}

#[test]
fn every_exported_metric_is_in_the_operations_table_with_its_labels() {
    let code = exported();
    let docs = documented();
    let mut problems = Vec::new();
    for (name, labels) in &code {
        match docs.get(name) {
            None => problems.push(format!("{name}: exported, not in docs/operations.md")),
            Some(doc) if doc != labels => problems.push(format!(
                "{name}: labels {labels:?}, docs/operations.md says {doc:?}"
            )),
            Some(_) => {}
        }
    }
    for name in docs.keys().filter(|n| !code.contains_key(*n)) {
        problems.push(format!(
            "{name}: in docs/operations.md, not exported by twindbd"
        ));
    }
    assert!(code.len() >= 20, "only {} metrics registered", code.len());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The `twindb_*` words of a text. One ending in `_` is a prefix (`twindb_last_*`).
fn metric_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("twindb_") {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // A word that merely contains "twindb_" (`my_twindb_x`) is not a metric, nor is
        // the package's file name (`twindb_0.1.0-1_amd64.deb`).
        let starts_word = !rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && word["twindb_".len()..].starts_with(|c: char| c.is_ascii_lowercase());
        rest = &rest[i + word.len()..];
        if starts_word {
            words.push(word);
        }
    }
    words
}

#[test]
fn every_metric_named_in_the_docs_dashboard_and_alerts_is_exported() {
    let code = exported();
    // A histogram or summary `x` is scraped as x_bucket, x_sum and x_count.
    let exists = |word: &str| {
        if let Some(prefix) = word.strip_suffix('_') {
            return code.keys().any(|n| n.starts_with(&format!("{prefix}_")));
        }
        code.contains_key(word)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| word.strip_suffix(s).is_some_and(|b| code.contains_key(b)))
    };
    let mut texts = pages();
    for file in [
        "docs/grafana-dashboard.json",
        "docs/prometheus-alerts.yml",
        "docs/prometheus-alerts.test.yml",
    ] {
        texts.push((file.to_string(), read(&repo().join(file))));
    }
    let mut problems = BTreeSet::new();
    let mut per_file = BTreeMap::new();
    for (file, text) in &texts {
        let words = metric_words(text);
        per_file.insert(file.clone(), words.len());
        for word in words.into_iter().filter(|w| !exists(w)) {
            problems.insert(format!("{file}: {word} is not exported by twindbd"));
        }
    }
    for file in ["docs/grafana-dashboard.json", "docs/prometheus-alerts.yml"] {
        assert!(per_file[file] > 5, "{file}: no metric found: {per_file:?}");
    }
    let dashboard = read(&repo().join("docs/grafana-dashboard.json"));
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&dashboard) {
        problems.insert(format!("docs/grafana-dashboard.json is not JSON: {e}"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn job(kind: JobKind) -> JobInfo {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
    JobInfo {
        id: 1,
        kind,
        run_type: Some(RunType::Daily),
        title: String::new(),
        state: JobState::Succeeded,
        queued_at: t,
        started_at: Some(t),
        finished_at: Some(t + chrono::Duration::seconds(12)),
        progress: Progress {
            phase: String::new(),
            bytes_in: 0,
            bytes_out: 0,
            rate: 0.0,
        },
        error: None,
        warnings: vec![],
        copies: vec![],
        message: None,
        verify: None,
        phases: Vec::new(),
        drill: vec![],
        excluded: vec![],
    }
}

/// `[export]`'s DataDog/StatsD names (`twindb.files.backup_time`): each one a job
/// exports is in docs/operations.md, and each one named in the docs is exported.
#[test]
fn datadog_and_statsd_names_in_the_docs_are_the_exported_ones() {
    let mut code = BTreeSet::new();
    for (kind, copy) in [
        (JobKind::BackupFiles, CopyKind::Files),
        (JobKind::BackupMysql, CopyKind::Mysql),
        (JobKind::BackupBinlog, CopyKind::Binlog),
        (JobKind::Restore, CopyKind::Files),
        (JobKind::Restore, CopyKind::Mysql),
        (JobKind::Verify, CopyKind::Mysql),
        (JobKind::Clone, CopyKind::Mysql),
    ] {
        code.extend(points_for(&job(kind), copy).into_iter().map(|p| p.name));
    }
    let operations = read(&repo().join("docs/operations.md"));
    let mut problems = Vec::new();
    for name in &code {
        if !operations.contains(&format!("`{name}`")) {
            problems.push(format!("{name}: exported, not in docs/operations.md"));
        }
    }
    for (file, text) in pages() {
        for span in code_spans(&text) {
            let name = span.split(':').next().unwrap();
            let is_point = name.starts_with("twindb.")
                && name.ends_with("_time")
                && !name.contains(char::is_whitespace);
            if is_point && !code.contains(name) {
                problems.push(format!("{file}: {name} is not exported"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Runs promtool, or says why not: a missing promtool fails the test under `CI=true`
/// (scripts/test.sh installs Debian's `prometheus` package, which ships it).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(repo().join("docs"))
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "promtool is missing (apt-get install prometheus)");
            eprintln!("SKIPPED: promtool is missing (apt-get install prometheus)");
            None
        }
        Err(e) => panic!("promtool: {e}"),
    }
}

/// The names of the alerts in the rules, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_is_tested_firing_and_silent() {
    let rules = read(&repo().join("docs/prometheus-alerts.yml"));
    let tests = read(&repo().join("docs/prometheus-alerts.test.yml"));
    // Each `alert_rule_test` case: its alert and whether it expects none.
    let mut cases: Vec<(String, bool)> = Vec::new();
    for case in tests.split("- eval_time:").skip(1) {
        let name = case
            .lines()
            .find_map(|l| l.trim().strip_prefix("alertname:"))
            .expect("an alertname in each case")
            .trim()
            .to_string();
        let silent = case
            .lines()
            .find_map(|l| l.trim().strip_prefix("exp_alerts:"))
            .expect("exp_alerts in each case")
            .trim()
            == "[]";
        cases.push((name, silent));
    }
    let names = alert_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    let mut problems = Vec::new();
    for name in &names {
        for (silent, what) in [(false, "firing"), (true, "silent")] {
            if !cases.contains(&(name.clone(), silent)) {
                problems.push(format!(
                    "{name}: no {what} case in docs/prometheus-alerts.test.yml"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    for args in [
        ["check", "rules", "prometheus-alerts.yml"],
        ["test", "rules", "prometheus-alerts.test.yml"],
    ] {
        let Some(out) = promtool(&args) else {
            return;
        };
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
