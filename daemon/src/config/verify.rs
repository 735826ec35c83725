//! `[verify]`: restore drills on a schedule. Each drill restores the latest copies,
//! checks them, and reports the measured recovery time (docs/operations.md#restore-drills).

use std::path::PathBuf;

use serde::Deserialize;

use super::{CronSpec, Validator};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// Cron expression; no drills without it.
    pub schedule: Option<String>,
    /// Restore the latest MySQL copy (its chain). Default: `[source] backup_mysql`.
    pub mysql: Option<bool>,
    /// Restore the latest files copy of each `backup_dirs` folder. Default: when
    /// there are folders.
    pub files: Option<bool>,
    /// Roll the restored MySQL copy forward with the backed-up binlogs to their end.
    pub roll_forward: Option<bool>,
    /// `CHECK TABLE` every table of these schemas on the restored server.
    #[serde(default)]
    pub check_schemas: Vec<String>,
    /// A query the restored server must answer with at least one row.
    pub probe_sql: Option<String>,
    /// Where drills restore; default `[daemon] state_dir`.
    pub scratch_dir: Option<String>,
}

/// The validated `[verify]` section.
#[derive(Debug, Clone, Default)]
pub struct VerifyConfig {
    /// None: no scheduled drills (`twindbctl verify` still works).
    pub schedule: Option<CronSpec>,
    pub mysql: bool,
    pub files: bool,
    /// Replay the backed-up binlogs after the MySQL copy, to their last event.
    pub roll_forward: bool,
    pub check_schemas: Vec<String>,
    pub probe_sql: Option<String>,
    /// None: `[daemon] state_dir`.
    pub scratch_dir: Option<PathBuf>,
}

impl Validator<'_> {
    pub(super) fn verify(
        &mut self,
        v: Option<VerifySection>,
        backup_mysql: bool,
        has_dirs: bool,
    ) -> VerifyConfig {
        let Some(v) = v else {
            // `twindbctl verify drill` without a [verify] section drills what is backed up.
            return VerifyConfig {
                mysql: backup_mysql,
                files: has_dirs,
                ..VerifyConfig::default()
            };
        };
        let schedule = v
            .schedule
            .as_deref()
            .and_then(|s| match CronSpec::parse(s) {
                Ok(spec) => Some(spec),
                Err(message) => {
                    self.error("verify", "schedule", message);
                    None
                }
            });
        let mysql = v.mysql.unwrap_or(backup_mysql);
        if mysql && !backup_mysql {
            self.error(
                "verify",
                "mysql",
                "a MySQL drill needs MySQL backups ([source] backup_mysql = true)",
            );
        }
        let files = v.files.unwrap_or(has_dirs);
        if files && !has_dirs {
            self.error(
                "verify",
                "files",
                "a files drill needs folders to back up ([source] backup_dirs)",
            );
        }
        for s in &v.check_schemas {
            if s.is_empty() || s.contains('`') || s.contains('\0') {
                self.error(
                    "verify",
                    "check_schemas",
                    format!("{s:?} is not a schema name"),
                );
            }
        }
        if (!v.check_schemas.is_empty() || v.probe_sql.is_some() || v.roll_forward == Some(true))
            && !mysql
        {
            let key = if v.roll_forward == Some(true) {
                "roll_forward"
            } else if v.probe_sql.is_some() {
                "probe_sql"
            } else {
                "check_schemas"
            };
            self.error(
                "verify",
                key,
                "checks of the restored server need a MySQL drill ([verify] mysql = true)",
            );
        }
        if v.probe_sql.as_deref().is_some_and(|q| q.trim().is_empty()) {
            self.error("verify", "probe_sql", "the probe query is empty");
        }
        if schedule.is_some() && !mysql && !files {
            self.error(
                "verify",
                "schedule",
                "a drill with nothing to restore: set [verify] mysql or files",
            );
        }
        let scratch_dir = v.scratch_dir.as_deref().map(|s| self.path(s));
        VerifyConfig {
            schedule,
            mysql,
            files,
            roll_forward: v.roll_forward.unwrap_or(false),
            check_schemas: v.check_schemas,
            probe_sql: v.probe_sql,
            scratch_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    fn parse(extra: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = \"/var/backup\"\n\n{extra}"
        );
        crate::config::parse(std::path::Path::new("/etc/twindb/twindb.toml"), &text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_drill_schedule_parses_and_defaults_follow_what_is_backed_up() {
        let c = parse("[verify]\nschedule = \"0 30 4 * * SUN\"\n").unwrap();
        assert_eq!(c.verify.schedule.unwrap().written, "0 30 4 * * SUN");
        assert!(c.verify.files && !c.verify.mysql);
        let c = parse("").unwrap();
        assert!(c.verify.schedule.is_none() && c.verify.files);
    }

    #[test]
    fn bad_drill_settings_name_the_key_and_line() {
        let err = parse("[verify]\nschedule = \"every sunday\"\n").unwrap_err();
        assert!(err.contains("twindb.toml:11: [verify] schedule:"), "{err}");
        let err = parse("[verify]\nmysql = true\n").unwrap_err();
        assert!(err.contains("[verify] mysql: a MySQL drill needs"), "{err}");
        let err = parse("[verify]\nprobe_sql = \"SELECT 1\"\n").unwrap_err();
        assert!(
            err.contains("[verify] probe_sql: checks of the restored server"),
            "{err}"
        );
        let err = parse("[verify]\nfiles = false\nschedule = \"@daily\"\n").unwrap_err();
        assert!(err.contains("a drill with nothing to restore"), "{err}");
        let err = parse("[verify]\nroll_forward = true\n").unwrap_err();
        assert!(
            err.contains("[verify] roll_forward: checks of the restored server"),
            "{err}"
        );
        let err = parse("[verify]\nretries = 3\n").unwrap_err();
        assert!(err.contains("retries"), "{err}");
    }
}
