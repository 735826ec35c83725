//! `[source] exclude`, `exclude_caches` and `one_file_system`: parsed once here, so that
//! a bad pattern stops the daemon at start with the key and line, not mid-backup.

use std::path::PathBuf;

use super::{file, Validator};
use crate::source::{Excludes, Pattern};

impl Validator<'_> {
    pub(super) fn excludes(&mut self, s: &file::SourceSection, dirs: &[PathBuf]) -> Excludes {
        let mut patterns = Vec::new();
        for text in &s.exclude {
            let p = match Pattern::parse(text) {
                Ok(p) => p,
                Err(e) => {
                    self.error("source", "exclude", e);
                    continue;
                }
            };
            if p.is_absolute() {
                // An absolute pattern outside every backup dir is a typo or a stale
                // line: it would silently exclude nothing.
                let prefix = p.literal_prefix();
                if p.is_literal() && dirs.contains(&prefix) {
                    self.error(
                        "source",
                        "exclude",
                        format!(
                            "{text:?} is a backup_dirs entry: remove it from backup_dirs instead"
                        ),
                    );
                } else if !dirs
                    .iter()
                    .any(|d| prefix.starts_with(d) || d.starts_with(&prefix))
                {
                    self.error(
                        "source",
                        "exclude",
                        format!(
                            "{text:?} is an absolute pattern outside every backup_dirs entry, so it excludes nothing"
                        ),
                    );
                }
            }
            patterns.push(p);
        }
        Excludes {
            patterns,
            caches: s.exclude_caches,
            one_file_system: s.one_file_system,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    fn check(source_extra: &str) -> Result<crate::config::Config, String> {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        fs::create_dir(&data).unwrap();
        let path = t.path().join("twindb.toml");
        fs::write(
            &path,
            format!(
                "[source]\nbackup_dirs = [{data:?}]\n{source_extra}\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = {:?}\n",
                t.path().join("b")
            ),
        )
        .unwrap();
        crate::config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn patterns_load_into_typed_excludes() {
        let c = check(
            "exclude = [\"*.tmp\", \"cache/\"]\nexclude_caches = true\none_file_system = true",
        )
        .unwrap();
        let x = &c.source.excludes;
        assert_eq!(x.patterns.len(), 2);
        assert_eq!(x.patterns[1].as_str(), "cache/");
        assert!(x.caches && x.one_file_system);
        let c = check("").unwrap();
        assert!(c.source.excludes.patterns.is_empty());
        assert!(!c.source.excludes.caches && !c.source.excludes.one_file_system);
    }

    #[test]
    fn a_bad_pattern_names_the_key_and_line() {
        let e = check("\nexclude = [\"ok\", \"a**b\"]").unwrap_err();
        assert!(e.contains(":4: [source] exclude: \"a**b\""), "{e}");
        assert!(e.contains("whole path part"), "{e}");
    }

    #[test]
    fn a_destination_inside_a_backup_dir_is_allowed_when_excluded() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        fs::create_dir(&data).unwrap();
        let write = |exclude: &str| {
            let path = t.path().join("twindb.toml");
            fs::write(
                &path,
                format!(
                    "[source]\nbackup_dirs = [{data:?}]\n{exclude}\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = {:?}\n",
                    data.join("backups/remote")
                ),
            )
            .unwrap();
            crate::config::load(&path).map_err(|e| e.to_string())
        };
        let e = write("").unwrap_err();
        assert!(e.contains("where copies are stored"), "{e}");
        write("exclude = [\"backups/\"]").unwrap();
        write(&format!(
            "exclude = [{:?}]",
            data.join("backups/remote").display().to_string()
        ))
        .unwrap();
        let e = write("exclude = [\"backups\"]\n").map(|_| ());
        assert!(e.is_ok(), "a name pattern excludes the folder too: {e:?}");
        let e = write("exclude = [\"remote/x\"]").unwrap_err();
        assert!(e.contains("where copies are stored"), "{e}");
    }

    #[test]
    fn an_absolute_pattern_must_lie_inside_a_backup_dir() {
        let e = check("exclude = [\"/elsewhere/*.log\"]").unwrap_err();
        assert!(e.contains("[source] exclude"), "{e}");
        assert!(e.contains("outside every backup_dirs entry"), "{e}");
        let e = check("exclude = [\"/**/x\", \"/srv/elsewhere\"]").unwrap_err();
        assert!(
            e.contains("\"/srv/elsewhere\" is an absolute pattern outside"),
            "{e}"
        );
        assert!(!e.contains("/**/x"), "{e}");
    }
}
