//! The docs tell the truth about the config: every key the code accepts is in
//! docs/config.md with its default and every key there is accepted; code blocks are
//! closed; every TOML example passes `twindbd --check-config`. The modules below check
//! the documented defaults, metrics and alert rules, and the status file format.

#[path = "docs/defaults.rs"]
mod defaults;
#[path = "docs/metrics.rs"]
mod metrics;
#[path = "docs/status.rs"]
mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README and every Markdown page in docs/.
fn pages() -> Vec<(String, String)> {
    let mut paths = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap().display().to_string();
            (name, read(&p))
        })
        .collect()
}

/// The `code` spans of a piece of Markdown.
fn code_spans(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// A row of docs/config.md's "Sections and keys" tables.
struct KeyRow {
    /// The sections its table's heading names (`[retention]` and `[retention_local]`
    /// share one table, with a default column each).
    sections: Vec<String>,
    keys: Vec<String>,
    /// The cells of the table's default columns, in order.
    defaults: Vec<String>,
    /// The type cell says "required": there is no default to compare.
    required: bool,
}

impl KeyRow {
    /// The default cell of `self.sections[i]`.
    fn default_of(&self, i: usize) -> &str {
        if self.defaults.len() == self.sections.len() {
            &self.defaults[i]
        } else {
            &self.defaults[0]
        }
    }
}

/// Every row of docs/config.md's key tables, and the tables found without a default
/// column. The one reader of those tables, for the key and the default tests.
fn key_rows() -> (Vec<KeyRow>, Vec<String>) {
    let text = read(&repo().join("docs/config.md"));
    let start = text
        .find("\n## Sections and keys")
        .expect("a Sections and keys part");
    let part = &text[start + 1..];
    let end = part[1..].find("\n## ").map_or(part.len(), |i| i + 1);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let mut default_columns: Vec<usize> = Vec::new();
    let mut type_column = None;
    for line in part[..end].lines() {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        if let Some(heading) = line.strip_prefix("### ") {
            sections = code_spans(heading)
                .into_iter()
                .filter_map(|s| s.strip_prefix('[')?.strip_suffix(']'))
                .map(str::to_string)
                .collect();
        } else if line.starts_with("| key") {
            default_columns = (0..cells.len())
                .filter(|i| cells[*i].contains("default"))
                .collect();
            type_column = cells.iter().position(|c| c.trim() == "type");
            if default_columns.is_empty() {
                problems.push(format!(
                    "{sections:?}: a key table without a default column"
                ));
            }
        } else if line.starts_with("| `") && !sections.is_empty() && !default_columns.is_empty() {
            rows.push(KeyRow {
                sections: sections.clone(),
                keys: code_spans(cells[0])
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                defaults: default_columns
                    .iter()
                    .map(|&c| cells.get(c).map_or("", |d| d.trim()).to_string())
                    .collect(),
                required: type_column.is_some_and(|c| cells[c].contains("required")),
            });
        }
    }
    (rows, problems)
}

/// (section, key) of every row in docs/config.md's key tables, checking on the way that
/// each row has a non-empty default.
fn documented_keys() -> (BTreeSet<(String, String)>, Vec<String>) {
    let (rows, mut problems) = key_rows();
    let mut keys = BTreeSet::new();
    for row in &rows {
        for key in &row.keys {
            for section in &row.sections {
                keys.insert((section.clone(), key.clone()));
            }
            if row.defaults.iter().any(|d| d.is_empty()) {
                problems.push(format!("{:?} {key}: no default", row.sections));
            }
        }
    }
    (keys, problems)
}

#[test]
fn every_config_key_is_documented_with_its_default_and_every_documented_key_exists() {
    let code: BTreeSet<(String, String)> = twindb::config::keys()
        .into_iter()
        .flat_map(|(s, keys)| keys.iter().map(move |k| (s.to_string(), k.to_string())))
        .collect();
    let (docs, mut problems) = documented_keys();
    for (s, k) in code.difference(&docs) {
        problems.push(format!(
            "[{s}] {k}: accepted by twindbd, not in docs/config.md"
        ));
    }
    for (s, k) in docs.difference(&code) {
        problems.push(format!("[{s}] {k}: in docs/config.md, rejected by twindbd"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Code blocks of a page: (line of the opening fence, info string, content).
fn code_blocks(text: &str) -> Result<Vec<(usize, String, String)>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        if let Some((start, info, mut body)) = open.take() {
            if fence.starts_with("```") {
                if fence.trim() != "```" {
                    return Err(format!(
                        "line {}: a fence with an info string inside the block opened on line {start}: that block is not closed",
                        n + 1
                    ));
                }
                blocks.push((start, info, body));
            } else {
                body.push_str(line);
                body.push('\n');
                open = Some((start, info, body));
            }
        } else if let Some(info) = fence.strip_prefix("```") {
            open = Some((n + 1, info.trim().to_string(), String::new()));
        }
    }
    match open {
        Some((start, ..)) => Err(format!("the block opened on line {start} is not closed")),
        None => Ok(blocks),
    }
}

#[test]
fn fenced_code_blocks_are_closed() {
    let problems: Vec<String> = pages()
        .into_iter()
        .filter_map(|(name, text)| code_blocks(&text).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Keys whose values are folders on this host.
const FOLDER_KEYS: &[&str] = &[
    "backup_dirs",
    "path",
    "keep_local_path",
    "state_dir",
    "homedir",
];
/// Keys whose values are files on this host (the socket's folder is made).
const FILE_KEYS: &[&str] = &[
    "socket",
    "ssh_key",
    "known_hosts",
    "keyring",
    "secret_keyring",
    "mysql_defaults_file",
    "gc_credentials_file",
    "gc_encryption_key_file",
    "aws_secret_access_key_file",
];

/// Moves every absolute path of `value` below `root` and creates what it names; a
/// relative path is created where it resolves, against the config's folder `etc`.
fn relocate(root: &Path, etc: &Path, key: &str, value: &mut toml::Value) {
    match value {
        toml::Value::Array(items) => items.iter_mut().for_each(|v| relocate(root, etc, key, v)),
        // An absolute exclude pattern points into a backup dir, which moved under root.
        toml::Value::String(s) if key == "exclude" && s.starts_with('/') => {
            *s = format!("{}{s}", root.display());
        }
        toml::Value::String(s) if FOLDER_KEYS.contains(&key) || FILE_KEYS.contains(&key) => {
            let path = match s.strip_prefix('/') {
                Some(rest) => {
                    let path = root.join(rest);
                    *s = path.display().to_string();
                    path
                }
                None => etc.join(&*s),
            };
            if FOLDER_KEYS.contains(&key) {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                if key != "socket" && !path.exists() {
                    write_file(key, &path);
                }
            }
        }
        _ => {}
    }
}

/// A file the config check accepts for `key`.
fn write_file(key: &str, path: &Path) {
    let content = match key {
        "ssh_key" => {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("ssh-keygen (openssh-client) to make a key for the ssh example")
                .success();
            assert!(ok, "ssh-keygen failed");
            return;
        }
        "gc_credentials_file" => {
            r#"{"client_email":"t@x.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#
        }
        "gc_encryption_key_file" => "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "mysql_defaults_file" => "[client]\nuser = root\n",
        "known_hosts" => "",
        _ => "secret\n",
    };
    std::fs::write(path, content).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(path, perms).unwrap();
}

/// A minimal valid config, to which a fragment's sections are added.
const BASE: &str = r#"
[source]
backup_dirs = ["/srv/data"]

[destination]
backup_destination = "local"

[local]
path = "/var/backup/twindb"
"#;

#[test]
fn toml_examples_in_the_docs_pass_check_config() {
    let mut checked = 0;
    let mut problems = Vec::new();
    // The ```toml blocks of the pages, and the whole of docs/*.toml.
    let mut examples: Vec<(String, usize, String)> = Vec::new();
    for (name, text) in pages() {
        let Ok(blocks) = code_blocks(&text) else {
            continue;
        };
        examples.extend(
            blocks
                .into_iter()
                .filter(|b| b.1 == "toml")
                .map(|(line, _, body)| (name.clone(), line, body)),
        );
    }
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = path.strip_prefix(repo()).unwrap().display().to_string();
            examples.push((name, 1, read(&path)));
        }
    }
    for (name, line, body) in examples {
        let example: toml::Table = match body.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{name}:{line}: not TOML: {e}"));
                continue;
            }
        };
        // A fragment is checked inside the minimal config: its sections replace or
        // extend the base's keys.
        let mut config: toml::Table = BASE.parse().unwrap();
        let example_sections: Vec<String> = example.keys().cloned().collect();
        for (section, table) in example {
            match (config.get_mut(&section), table) {
                (Some(toml::Value::Table(base)), toml::Value::Table(t)) => base.extend(t),
                (_, t) => {
                    config.insert(section, t);
                }
            }
        }
        // A fragment of a destination's section without `[destination]` is checked
        // as that destination, so that its section is validated and not ignored.
        if !example_sections.iter().any(|s| s == "destination") {
            if let Some(d) = ["ssh", "s3", "gcs"]
                .into_iter()
                .find(|d| example_sections.iter().any(|s| s == d))
            {
                config["destination"]
                    .as_table_mut()
                    .unwrap()
                    .insert("backup_destination".into(), d.into());
            }
        }
        let destination = config["destination"]["backup_destination"].as_str();
        if destination != Some("local") {
            config.remove("local");
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let etc = root.join("etc/twindb");
        std::fs::create_dir_all(&etc).unwrap();
        for (_, table) in config.iter_mut() {
            let Some(table) = table.as_table_mut() else {
                continue;
            };
            for (key, value) in table.iter_mut() {
                relocate(root, &etc, key, value);
            }
        }
        let file = etc.join("twindb.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_twindbd"))
            .arg("--check-config")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        checked += 1;
        if !out.status.success() {
            problems.push(format!(
                "{name}:{line}: twindbd --check-config: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                toml::to_string(&config).unwrap()
            ));
        }
    }
    assert!(checked >= 9, "only {checked} TOML examples found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// (method, path) of every route of the API router, read from its source: axum cannot
/// list a router's routes. `/v1/jobs/{id}` is written `/v1/jobs/ID`, as in the docs.
fn api_routes() -> BTreeSet<(String, String)> {
    let source = read(&repo().join("daemon/src/api/mod.rs"));
    let start = source.find("pub fn router(").expect("the API router");
    let body = &source[start..start + source[start..].find("\n}\n").unwrap()];
    let mut routes = BTreeSet::new();
    for line in body.lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').unwrap();
        for method in ["get", "post", "put", "delete"] {
            let called = format!("{method}(");
            if handlers
                .match_indices(&called)
                .any(|(i, _)| i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric())
            {
                routes.insert((method.to_uppercase(), path.replace("{id}", "ID")));
            }
        }
    }
    routes
}

#[test]
fn every_api_route_is_in_the_operations_api_table_and_back() {
    let code = api_routes();
    let text = read(&repo().join("docs/operations.md"));
    let start = text.find("\n## The HTTP API").expect("an HTTP API part");
    let part = &text[start + 1..];
    let part = &part[..part[1..].find("\n## ").map_or(part.len(), |i| i + 1)];
    let mut docs = BTreeSet::new();
    for line in part.lines().filter(|l| l.starts_with("| `")) {
        let span = code_spans(line)[0];
        let (method, path) = span.split_once(' ').unwrap();
        let path = path.split('?').next().unwrap();
        docs.insert((method.to_string(), path.to_string()));
    }
    let mut problems = Vec::new();
    for (m, p) in code.difference(&docs) {
        problems.push(format!("{m} {p}: served, not in docs/operations.md"));
    }
    for (m, p) in docs.difference(&code) {
        problems.push(format!("{m} {p}: in docs/operations.md, not served"));
    }
    assert!(code.len() >= 15, "{code:?}");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The files a test path of docs/safety.md can be in: `a::b::tests::name` in
/// daemon/src/a/b.rs (or a/b/mod.rs, or a/b/tests.rs), `file::name` in
/// tests/tests/file.rs or the harness's tests/src/file.rs.
fn test_files(modules: &[&str]) -> Vec<PathBuf> {
    if let Some(i) = modules.iter().position(|m| *m == "tests") {
        let path = modules[..i].join("/");
        vec![
            repo().join(format!("daemon/src/{path}.rs")),
            repo().join(format!("daemon/src/{path}/mod.rs")),
            repo().join(format!("daemon/src/{path}/tests.rs")),
        ]
    } else {
        let path = modules.join("/");
        vec![
            repo().join(format!("tests/tests/{path}.rs")),
            repo().join(format!("tests/src/{path}.rs")),
        ]
    }
}

#[test]
fn every_test_safety_md_names_exists() {
    let text = read(&repo().join("docs/safety.md"));
    let mut checked = 0;
    let mut problems = Vec::new();
    for span in code_spans(&text) {
        let parts: Vec<&str> = span.split("::").collect();
        let is_path = parts.len() >= 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_*".contains(c))
            });
        // `file::name` and `module::tests::name` explain the notation.
        if !is_path || matches!(span, "file::name" | "module::tests::name") {
            continue;
        }
        let (name, modules) = parts.split_last().unwrap();
        let wanted = format!("fn {}", name.trim_end_matches('*'));
        let exact = !name.ends_with('*');
        let found = test_files(modules)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .any(|source| {
                source.match_indices(&wanted).any(|(i, _)| {
                    let next = source[i + wanted.len()..].chars().next();
                    !exact || matches!(next, Some('(' | '<'))
                })
            });
        checked += 1;
        if !found {
            problems.push(format!("{span}: no such test"));
        }
    }
    assert!(checked >= 30, "only {checked} tests named");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Parses `body` as the API reads a request to `route`, and checks that each of its
/// fields is one the API knows (serde would ignore a misspelt one).
fn check_request(route: &str, body: &str) -> Result<(), String> {
    use twindb_proto::{
        CloneRequest, RestoreRequest, RetentionRequest, RunRequest, ShareRequest, VerifyRequest,
    };
    fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
        doc: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let parsed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(parsed).unwrap())
    }
    let doc: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let understood = match route {
        "POST /v1/run" => roundtrip::<RunRequest>(&doc),
        "POST /v1/clone" => roundtrip::<CloneRequest>(&doc),
        "POST /v1/retention" => roundtrip::<RetentionRequest>(&doc),
        "POST /v1/share" => roundtrip::<ShareRequest>(&doc),
        "POST /v1/verify" => roundtrip::<VerifyRequest>(&doc),
        "POST /v1/restore" => roundtrip::<RestoreRequest>(&doc),
        "POST /v1/cache/purge" => roundtrip::<twindb_proto::CachePurgeRequest>(&doc),
        _ => return Err("no request type known for this route".into()),
    }?;
    let fields = doc.as_object().ok_or("not an object")?;
    match fields.keys().find(|k| understood.get(k.as_str()).is_none()) {
        Some(unknown) => Err(format!("the API does not read `{unknown}`")),
        None => Ok(()),
    }
}

#[test]
fn api_request_bodies_in_the_docs_are_what_the_api_reads() {
    let mut checked = 0;
    let mut problems = Vec::new();
    // operations.md's API table: `POST /v1/run` `{"run_type":"daily"}`.
    let operations = read(&repo().join("docs/operations.md"));
    for line in operations.lines().filter(|l| l.starts_with("| `POST ")) {
        let first_cell = line.trim_matches('|').split(" | ").next().unwrap();
        let spans = code_spans(first_cell);
        if let &[route, body] = spans.as_slice() {
            checked += 1;
            if let Err(e) = check_request(route, body) {
                problems.push(format!("operations.md: {route} {body}: {e}"));
            }
        }
    }
    // Restore requests spelled out in the runbooks: `{"kind":...}`.
    for (name, text) in pages() {
        for span in code_spans(&text)
            .into_iter()
            .filter(|s| s.starts_with("{\"kind\""))
        {
            checked += 1;
            if let Err(e) = check_request("POST /v1/restore", span) {
                problems.push(format!("{name}: {span}: {e}"));
            }
        }
    }
    assert!(checked >= 6, "only {checked} request bodies found");
    assert!(problems.is_empty(), "{problems:#?}");
}
