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
            return VerifyConfig::default();
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
        if (!v.check_schemas.is_empty() || v.probe_sql.is_some()) && !mysql {
            let key = if v.probe_sql.is_some() {
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
            check_schemas: v.check_schemas,
            probe_sql: v.probe_sql,
            scratch_dir,
        }
    }
}
