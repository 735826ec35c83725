//! The config file as written by the user: serde structs that reject unknown keys.
//!
//! Nothing here touches the file system; `super::validate` turns these into typed values.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub daemon: DaemonSection,
    pub source: Option<SourceSection>,
    pub destination: Option<DestinationSection>,
    pub local: Option<LocalSection>,
    pub compression: Option<CompressionSection>,
    pub mysql: Option<MysqlSection>,
    pub intervals: Option<IntervalsSection>,
    pub ssh: Option<super::ssh::SshSection>,
    pub clone: Option<super::clone::CloneSection>,
    pub verify: Option<super::verify::VerifySection>,
    pub binlog: Option<super::binlog::BinlogSection>,
    // Sections of features that later issues build. They are recognised so that a
    // TwinDB user gets "not supported yet" rather than "unknown section".
    pub s3: Option<super::s3::S3Section>,
    pub gcs: Option<super::gcs::GcsSection>,
    pub az: Option<super::az::AzSection>,
    pub gpg: Option<GpgSection>,
    pub retention: Option<RetentionSection>,
    pub retention_local: Option<RetentionSection>,
    pub export: Option<ExportSection>,
    pub notify: Option<NotifySection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    pub socket: Option<String>,
    pub socket_group: Option<String>,
    pub state_dir: Option<String>,
    pub hostname: Option<String>,
    /// A `RUST_LOG`-style filter, e.g. "info" or "twindb=debug".
    pub log: Option<String>,
    /// Enqueue the most frequent run type at start when it is due.
    pub run_at_start: Option<bool>,
    pub metrics_listen: Option<String>,
    pub schedule_hourly: Option<String>,
    pub schedule_daily: Option<String>,
    pub schedule_weekly: Option<String>,
    pub schedule_monthly: Option<String>,
    pub schedule_yearly: Option<String>,
    pub schedule_binlog: Option<String>,
    /// Random delay added to each scheduled run, e.g. "5m".
    pub jitter: Option<String>,
    /// Timeout of every backup job, e.g. "2h"; default half the run type's period.
    pub backup_timeout: Option<String>,
    /// Bytes per second, e.g. "8MiB" or "8MiB/s"; no limit when absent.
    pub max_upload_rate: Option<toml::Value>,
    pub max_read_rate: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    #[serde(default)]
    pub backup_dirs: Vec<String>,
    #[serde(default)]
    pub backup_mysql: bool,
    /// Patterns of what files copies leave out (docs/config.md#excludes).
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub one_file_system: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    pub backup_destination: String,
    pub keep_local_path: Option<String>,
    /// Ranges of a large object read at once from s3, gcs and az.
    pub download_ranges: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub program: Option<String>,
    pub threads: Option<u32>,
    pub level: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalsSection {
    pub run_hourly: Option<bool>,
    pub run_daily: Option<bool>,
    pub run_weekly: Option<bool>,
    pub run_monthly: Option<bool>,
    pub run_yearly: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSection {
    pub mysql_defaults_file: Option<String>,
    pub full_backup: Option<String>,
    pub expire_log_days: Option<u32>,
    pub xtrabackup_binary: Option<String>,
    pub xbstream_binary: Option<String>,
    /// The server binary used by `verify` (default: mariadbd for MariaDB, mysqld otherwise).
    pub mysqld_binary: Option<String>,
    /// my.cnf files recorded with each copy (default: /etc/my.cnf, /etc/mysql/my.cnf).
    pub config_files: Option<Vec<String>>,
    /// Passed to the backup tool as `--throttle=N` (its own I/O limit).
    pub backup_throttle: Option<u32>,
    /// `--use-memory` of `--prepare` on restore, e.g. "2GiB".
    pub prepare_memory: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub hourly_copies: Option<u32>,
    pub daily_copies: Option<u32>,
    pub weekly_copies: Option<u32>,
    pub monthly_copies: Option<u32>,
    pub yearly_copies: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// "datadog" or "statsd".
    pub transport: String,
    pub api_key: Option<String>,
    pub app_key: Option<String>,
    /// DataDog API base URL.
    pub endpoint: Option<String>,
    pub statsd_host: Option<String>,
    pub statsd_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub on_failure: Option<bool>,
    pub on_success: Option<bool>,
    #[serde(default)]
    pub email_to: Vec<String>,
    pub email_from: Option<String>,
    pub smtp_server: Option<String>,
    pub smtp_port: Option<u16>,
    /// "starttls", "tls" or "none".
    pub smtp_tls: Option<String>,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    pub webhook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpgSection {
    pub recipient: Option<String>,
    pub keyring: Option<String>,
    pub secret_keyring: Option<String>,
    pub homedir: Option<String>,
}

/// Every section of the config file with the keys it accepts (aliases included), in the
/// order of [`ConfigFile`]'s fields. Read from the serde structs themselves, so the list
/// cannot drift from what `load` accepts; the docs tests compare it with docs/config.md.
pub fn keys() -> Vec<(&'static str, &'static [&'static str])> {
    use super::{
        az::AzSection, binlog::BinlogSection, clone::CloneSection, gcs::GcsSection, s3::S3Section,
        ssh::SshSection, verify::VerifySection,
    };
    vec![
        ("daemon", fields_of::<DaemonSection>()),
        ("source", fields_of::<SourceSection>()),
        ("destination", fields_of::<DestinationSection>()),
        ("local", fields_of::<LocalSection>()),
        ("compression", fields_of::<CompressionSection>()),
        ("mysql", fields_of::<MysqlSection>()),
        ("intervals", fields_of::<IntervalsSection>()),
        ("ssh", fields_of::<SshSection>()),
        ("clone", fields_of::<CloneSection>()),
        ("verify", fields_of::<VerifySection>()),
        ("binlog", fields_of::<BinlogSection>()),
        ("s3", fields_of::<S3Section>()),
        ("gcs", fields_of::<GcsSection>()),
        ("az", fields_of::<AzSection>()),
        ("gpg", fields_of::<GpgSection>()),
        ("retention", fields_of::<RetentionSection>()),
        ("retention_local", fields_of::<RetentionSection>()),
        ("export", fields_of::<ExportSection>()),
        ("notify", fields_of::<NotifySection>()),
    ]
}

/// The field names a serde-derived struct accepts: the list derive passes to
/// `deserialize_struct`, caught by a deserializer that reads nothing.
fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use serde::forward_to_deserialize_any;

    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_every_section_of_the_config_file() {
        let sections: Vec<&str> = keys().iter().map(|(s, _)| *s).collect();
        assert_eq!(sections, fields_of::<ConfigFile>());
    }

    #[test]
    fn keys_are_what_the_parser_accepts() {
        for (section, keys) in keys() {
            assert!(!keys.is_empty(), "[{section}] has no keys");
            let probe = format!("[{section}]\ntwindb_no_such_key = 1\n");
            let err = toml::from_str::<ConfigFile>(&probe)
                .unwrap_err()
                .to_string();
            for key in keys {
                assert!(
                    err.contains(&format!("`{key}`")),
                    "[{section}] {key}: {err}"
                );
            }
        }
        // Aliases are keys too: TwinDB's `port` in [ssh].
        assert!(fields_of::<super::super::ssh::SshSection>().contains(&"port"));
    }
}
