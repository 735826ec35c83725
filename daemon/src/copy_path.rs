//! The `COPY` argument of restore, verify and share: a key as `ls` prints it, or what
//! TwinDB's `ls` printed and runbooks hold (`s3://bucket/KEY`, `gs://bucket/KEY`,
//! `user@host:/backup_dir/KEY`, a path under the local destination or keep_local_path,
//! an Azure blob name `remote_path/KEY`),
//! or the tail of a key. Resolved here, once, to the key of one listed copy, as TwinDB
//! did: by suffix match against the listed copies. docs/restore.md#naming-a-copy.

use std::path::Path;

use crate::config::DestinationConfig;
use crate::engine::Engine;
use crate::status::{CopyMeta, StatusError};

#[derive(Debug, thiserror::Error)]
pub enum CopyPathError {
    #[error("{given}: {problem}")]
    OtherDestination { given: String, problem: String },
    #[error("no copy matches {0:?} (see `twindbctl ls`)")]
    NoMatch(String),
    #[error("{given:?} matches {} copies; name one of them: {}", .candidates.len(), .candidates.join(", "))]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error(transparent)]
    Status(#[from] StatusError),
}

/// Where the argument pointed, once its scheme, bucket or host and root are removed.
#[derive(Debug, PartialEq)]
enum Wanted {
    /// A key, or the tail of one.
    Key(String),
    /// A path relative to keep_local_path: the local copy's key.
    Local(String),
}

/// The key of the one listed copy that `given` names.
pub async fn resolve(engine: &Engine, given: &str) -> Result<String, CopyPathError> {
    let wanted = strip(
        given,
        &engine.config.destination,
        engine.config.keep_local_path.as_deref(),
    )?;
    let tail = match &wanted {
        Wanted::Key(k) | Wanted::Local(k) => k.as_str(),
    };
    // The copy's host is the first part of a whole key; a tail has none, and means a
    // copy of this host.
    let mut copies = engine.status.load().await?.copies;
    let first = tail.split('/').next().unwrap_or_default();
    if first != engine.host() && crate::config::is_valid_host(first) && tail.contains('/') {
        if let Ok(other) = engine.status_of(first).await {
            copies.extend(other.copies);
        }
    }
    pick(given, &wanted, &copies)
}

fn pick(given: &str, wanted: &Wanted, copies: &[CopyMeta]) -> Result<String, CopyPathError> {
    let (tail, local) = match wanted {
        Wanted::Key(k) => (k.as_str(), false),
        Wanted::Local(k) => (k.as_str(), true),
    };
    let key_of = |c: &CopyMeta| -> String {
        match (&c.local, local) {
            (Some(l), true) => l.key.clone(),
            _ => c.key.clone(),
        }
    };
    // A whole key wins over longer keys that end with it.
    if let Some(c) = copies.iter().find(|c| key_of(c) == tail) {
        return Ok(c.key.clone());
    }
    let suffix = format!("/{tail}");
    let mut candidates: Vec<String> = copies
        .iter()
        .filter(|c| key_of(c).ends_with(&suffix))
        .map(|c| c.key.clone())
        .collect();
    candidates.sort();
    candidates.dedup();
    match candidates.len() {
        0 => Err(CopyPathError::NoMatch(given.to_string())),
        1 => Ok(candidates.remove(0)),
        _ => Err(CopyPathError::Ambiguous {
            given: given.to_string(),
            candidates,
        }),
    }
}

/// Removes what locates the destination from `given`, refusing a URL or path that
/// points at another bucket, host or folder than the configured ones.
fn strip(
    given: &str,
    dest: &DestinationConfig,
    keep_local: Option<&Path>,
) -> Result<Wanted, CopyPathError> {
    let other = |problem: String| CopyPathError::OtherDestination {
        given: given.to_string(),
        problem,
    };
    let given_trimmed = given.trim();
    for (scheme, kind) in [("s3://", "s3"), ("gs://", "gcs")] {
        let what = if kind == "s3" { "an s3://" } else { "a gs://" };
        let Some(rest) = given_trimmed.strip_prefix(scheme) else {
            continue;
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let configured = match (dest, kind) {
            (DestinationConfig::S3(s), "s3") => &s.bucket,
            (DestinationConfig::Gcs(g), "gcs") => &g.bucket,
            _ => {
                return Err(other(format!(
                    "{what} URL, but the destination is {}",
                    dest_name(dest)
                )))
            }
        };
        if bucket != configured {
            return Err(other(format!(
                "the bucket {bucket:?} is not the configured bucket {configured:?}"
            )));
        }
        return key_part(given, key).map(Wanted::Key);
    }
    if let DestinationConfig::Az(a) = dest {
        // TwinDB's ls printed Azure copies as their blob names, `remote_path/KEY`.
        let name = given_trimmed.trim_start_matches('/');
        let prefix = format!("{}/", a.remote_path);
        if let Some(key) = name
            .strip_prefix(&prefix)
            .filter(|_| !a.remote_path.is_empty())
        {
            return key_part(given, key).map(Wanted::Key);
        }
    }
    if let Some((user_host, path)) = ssh_form(given_trimmed) {
        let host = user_host.rsplit('@').next().unwrap_or(user_host);
        let DestinationConfig::Ssh(s) = dest else {
            return Err(other(format!(
                "an ssh path, but the destination is {}",
                dest_name(dest)
            )));
        };
        if host != s.host {
            return Err(other(format!(
                "the host {host:?} is not the configured backup_host {:?}",
                s.host
            )));
        }
        return match under(Path::new(path), Path::new(&s.backup_dir)) {
            Some(key) => key_part(given, &key).map(Wanted::Key),
            None => Err(other(format!(
                "{path} is not under the configured backup_dir {}",
                s.backup_dir
            ))),
        };
    }
    if given_trimmed.starts_with('/') {
        let path = Path::new(given_trimmed);
        if let DestinationConfig::Local { path: root } = dest {
            if let Some(key) = under(path, root) {
                return key_part(given, &key).map(Wanted::Key);
            }
        }
        if let Some(root) = keep_local {
            if let Some(key) = under(path, root) {
                return key_part(given, &key).map(Wanted::Local);
            }
        }
        let roots: Vec<String> = match dest {
            DestinationConfig::Local { path } => vec![path.display().to_string()],
            _ => vec![],
        }
        .into_iter()
        .chain(keep_local.map(|p| p.display().to_string()))
        .collect();
        return Err(other(if roots.is_empty() {
            "a local path, but there is no local destination nor keep_local_path".into()
        } else {
            format!("a local path outside {}", roots.join(" and "))
        }));
    }
    key_part(given, given_trimmed).map(Wanted::Key)
}

/// `[user@]host:/path` (scp's syntax), not a URL.
fn ssh_form(s: &str) -> Option<(&str, &str)> {
    if s.contains("://") {
        return None;
    }
    let (host, path) = s.split_once(':')?;
    (!host.is_empty() && !host.contains('/') && path.starts_with('/')).then_some((host, path))
}

/// `path` relative to `root`, as a key (no `.` or `..` parts).
fn under(path: &Path, root: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    Some(rel.to_string_lossy().into_owned())
}

fn key_part(given: &str, key: &str) -> Result<String, CopyPathError> {
    let key = key.trim_matches('/');
    if key.is_empty()
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(CopyPathError::NoMatch(given.to_string()));
    }
    Ok(key.to_string())
}

fn dest_name(dest: &DestinationConfig) -> &'static str {
    match dest {
        DestinationConfig::Local { .. } => "local",
        DestinationConfig::Ssh(_) => "ssh",
        DestinationConfig::S3(_) => "s3",
        DestinationConfig::Gcs(_) => "gcs",
        DestinationConfig::Az(_) => "az",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(key: &str, local: Option<&str>) -> CopyMeta {
        let mut c: CopyMeta = serde_json::from_value(serde_json::json!({
            "key": key, "kind": "files", "host": "db1", "source": "/etc",
            "started": "2026-11-25T00:00:03Z", "finished": "2026-11-25T00:00:04Z",
            "size": 1, "source_size": 1, "sha256": "00", "modifiers": []
        }))
        .unwrap();
        c.local = local.map(|k| crate::status::LocalCopy {
            key: k.into(),
            size: 1,
            sha256: "00".into(),
            modifiers: vec![],
        });
        c
    }

    fn local() -> DestinationConfig {
        DestinationConfig::Local {
            path: "/var/backup".into(),
        }
    }

    #[test]
    fn paths_lose_their_root() {
        let keep = Some(Path::new("/srv/keep"));
        let key = |k: &str| Ok::<_, String>(Wanted::Key(k.into()));
        let s = |g: &str| strip(g, &local(), keep).map_err(|e| e.to_string());
        assert_eq!(s("db1/daily/files/x.tar"), key("db1/daily/files/x.tar"));
        assert_eq!(
            s("/var/backup/db1/daily/files/x.tar"),
            key("db1/daily/files/x.tar")
        );
        assert_eq!(
            s("/srv/keep/db1/daily/files/x.tar"),
            Ok(Wanted::Local("db1/daily/files/x.tar".into()))
        );
        let e = s("/elsewhere/db1/x.tar").unwrap_err();
        assert!(e.contains("outside /var/backup and /srv/keep"), "{e}");
        let e = s("s3://b/db1/x.tar").unwrap_err();
        assert!(
            e.contains("an s3:// URL, but the destination is local"),
            "{e}"
        );
        let e = s("backup@host:/var/backup/db1/x.tar").unwrap_err();
        assert!(
            e.contains("an ssh path, but the destination is local"),
            "{e}"
        );
        assert!(s("/var/backup/db1/../x").is_err());
    }

    #[test]
    fn azure_blob_names_lose_their_remote_path() {
        let text =
            "[source]\nbackup_dirs = [\"/tmp\"]\n[destination]\nbackup_destination = \"az\"\n\
                    [az]\nconnection_string = \"AccountName=a;AccountKey=a2V5\"\n\
                    container_name = \"abc\"\nremote_path = \"/twindb-backups\"\n";
        let c = crate::config::parse(Path::new("/t.toml"), text).unwrap();
        let s = |g: &str| strip(g, &c.destination, None).map_err(|e| e.to_string());
        let key = |k: &str| Ok::<_, String>(Wanted::Key(k.into()));
        assert_eq!(
            s("twindb-backups/db1/daily/files/x.tar"),
            key("db1/daily/files/x.tar")
        );
        assert_eq!(
            s("/twindb-backups/db1/daily/files/x.tar"),
            key("db1/daily/files/x.tar")
        );
        assert_eq!(s("db1/daily/files/x.tar"), key("db1/daily/files/x.tar"));
    }

    #[test]
    fn ssh_form_is_scp_syntax() {
        assert_eq!(ssh_form("u@h:/a/b"), Some(("u@h", "/a/b")));
        assert_eq!(ssh_form("h:/a"), Some(("h", "/a")));
        assert_eq!(ssh_form("s3://b/k"), None);
        assert_eq!(ssh_form("db1/daily/files/x:y"), None);
        assert_eq!(ssh_form("h:relative"), None);
    }

    #[test]
    fn suffixes_match_one_copy_or_say_which() {
        let copies = [
            copy("db1/daily/files/_etc-2026-11-25_00_00_03.tar.gz", None),
            copy("db1/hourly/files/_etc-2026-11-25_00_00_03.tar.gz", None),
            copy(
                "db1/daily/files/_home-2026-11-25_00_00_03.tar.gz.gpg",
                Some("db1/daily/files/_home-2026-11-25_00_00_03.tar.gz"),
            ),
        ];
        let k = |s: &str| Wanted::Key(s.into());
        assert_eq!(
            pick(
                "x",
                &k("daily/files/_etc-2026-11-25_00_00_03.tar.gz"),
                &copies
            )
            .unwrap(),
            "db1/daily/files/_etc-2026-11-25_00_00_03.tar.gz"
        );
        let e = pick("x", &k("_etc-2026-11-25_00_00_03.tar.gz"), &copies).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("matches 2 copies"), "{text}");
        assert!(
            text.contains("db1/daily/files/_etc") && text.contains("db1/hourly"),
            "{text}"
        );
        assert!(matches!(
            pick("x", &k("files/_etc"), &copies),
            Err(CopyPathError::NoMatch(_))
        ));
        // A keep_local path names the local copy, whose key has no .gpg.
        assert_eq!(
            pick(
                "x",
                &Wanted::Local("db1/daily/files/_home-2026-11-25_00_00_03.tar.gz".into()),
                &copies
            )
            .unwrap(),
            "db1/daily/files/_home-2026-11-25_00_00_03.tar.gz.gpg"
        );
    }
}
