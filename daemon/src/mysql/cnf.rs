//! The server's my.cnf files, following `!include` and `!includedir` as mysqld does,
//! so a restore can put them back under `DIR/_config/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One config file: absolute path and content (base64, as TwinDB stored it: a my.cnf
/// is not guaranteed to be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    pub path: String,
    pub content_base64: String,
}

impl ConfigFile {
    pub fn content(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.content_base64)
            .unwrap_or_default()
    }
}

/// Reads `roots` and everything they include. Missing roots are skipped; a loop of
/// includes is read once.
pub fn read_config_files(roots: &[PathBuf]) -> Vec<ConfigFile> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for root in roots {
        read_one(root, &mut seen, &mut out);
    }
    out
}

fn read_one(path: &Path, seen: &mut BTreeSet<PathBuf>, out: &mut Vec<ConfigFile>) {
    if !seen.insert(path.to_path_buf()) {
        return;
    }
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    out.push(ConfigFile {
        path: path.display().to_string(),
        content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
    });
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let line = line.trim();
        if let Some(dir) = line.strip_prefix("!includedir") {
            let dir = Path::new(dir.trim());
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "cnf"))
                .collect();
            files.sort();
            for f in files {
                read_one(&f, seen, out);
            }
        } else if let Some(file) = line.strip_prefix("!include") {
            read_one(Path::new(file.trim()), seen, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_include_and_includedir_once() {
        let t = tempfile::tempdir().unwrap();
        let conf_d = t.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        let main = t.path().join("my.cnf");
        std::fs::write(
            &main,
            format!(
                "[mysqld]\n!includedir {}\n!include {}\n",
                conf_d.display(),
                main.display()
            ),
        )
        .unwrap();
        std::fs::write(conf_d.join("b.cnf"), "[mysqld]\nserver_id=2\n").unwrap();
        std::fs::write(conf_d.join("a.cnf"), "[mysqld]\nlog-bin=x\n").unwrap();
        std::fs::write(conf_d.join("ignored.txt"), "no").unwrap();
        let files = read_config_files(&[main.clone(), t.path().join("missing.cnf")]);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.path.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["my.cnf", "a.cnf", "b.cnf"]);
        assert_eq!(files[2].content(), b"[mysqld]\nserver_id=2\n");
    }
}
