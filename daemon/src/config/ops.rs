//! The operations part of the config: schedules, retention, metrics export and
//! notifications. Types here are validated values; the checks are `Validator` methods.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use twindb_proto::RunType;

use super::{file, Validator};

/// A validated cron expression, in UTC, with a seconds field.
#[derive(Debug, Clone)]
pub struct CronSpec {
    /// As the user wrote it (or the default), for messages.
    pub written: String,
    /// What is handed to the scheduler: 6 or 7 fields, or a nickname like "@daily".
    pub expr: String,
    pub cron: croner::Cron,
}

impl CronSpec {
    /// Parses `written` as tokio-cron-scheduler does (seconds required, day of month and
    /// day of week both must match). A classic 5-field expression gets "0 " in front,
    /// because the scheduler would otherwise reject it, or fire it only once
    /// (tokio-cron-scheduler#95).
    pub fn parse(written: &str) -> Result<CronSpec, String> {
        let trimmed = written.trim();
        let expr = if !trimmed.starts_with('@') && trimmed.split_whitespace().count() == 5 {
            format!("0 {trimmed}")
        } else {
            trimmed.to_string()
        };
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&expr)
            .map_err(|e| format!("{written:?} is not a valid cron expression: {e}"))?;
        // A pattern that can never fire (31 February) is a mistake worth reporting now.
        let now = chrono::Utc::now();
        if cron.find_next_occurrence(&now, false).is_err() {
            return Err(format!("{written:?} never fires"));
        }
        Ok(CronSpec {
            written: written.to_string(),
            expr,
            cron,
        })
    }
}

/// When each run type fires, and binlog copies if configured.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// One entry per run type, enabled or not, most frequent first.
    pub run_types: Vec<(RunType, CronSpec)>,
    pub binlog: Option<CronSpec>,
    /// Each scheduled run waits a random time in `0..jitter` before it is queued.
    pub jitter: Duration,
    /// `[daemon] backup_timeout`: replaces every backup's default timeout (half its
    /// run type's period; 30 min for binlog copies).
    pub backup_timeout: Option<Duration>,
}

impl ScheduleConfig {
    pub fn spec(&self, run_type: RunType) -> &CronSpec {
        &self
            .run_types
            .iter()
            .find(|(r, _)| *r == run_type)
            .expect("every run type has a schedule")
            .1
    }
}

/// The times cron's @hourly ... @yearly use, with the seconds field.
pub fn default_schedule(run_type: RunType) -> &'static str {
    match run_type {
        RunType::Hourly => "0 0 * * * *",
        RunType::Daily => "0 0 0 * * *",
        RunType::Weekly => "0 0 0 * * SUN",
        RunType::Monthly => "0 0 0 1 * *",
        RunType::Yearly => "0 0 0 1 1 *",
    }
}

/// How many copies of each run type to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl RetentionPolicy {
    /// `[retention]` defaults: TwinDB's sample values.
    pub const REMOTE: RetentionPolicy = RetentionPolicy {
        hourly: 24,
        daily: 7,
        weekly: 4,
        monthly: 12,
        yearly: 3,
    };
    /// `[retention_local]` defaults: local copies are for a quick restore of the latest
    /// state, not history, and share the disk with the data they copy.
    pub const LOCAL: RetentionPolicy = RetentionPolicy {
        hourly: 1,
        daily: 1,
        weekly: 0,
        monthly: 0,
        yearly: 0,
    };

    pub fn copies(&self, run_type: RunType) -> u32 {
        match run_type {
            RunType::Hourly => self.hourly,
            RunType::Daily => self.daily,
            RunType::Weekly => self.weekly,
            RunType::Monthly => self.monthly,
            RunType::Yearly => self.yearly,
        }
    }
}

/// A value that must never show in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone)]
pub enum ExportConfig {
    /// DataDog's HTTP API (`POST {endpoint}/api/v1/series`).
    Datadog {
        api_key: Secret,
        app_key: Option<Secret>,
        endpoint: String,
    },
    /// Plain StatsD over UDP.
    Statsd { host: String, port: u16 },
}

pub const DATADOG_ENDPOINT: &str = "https://api.datadoghq.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: only for a relay on this host.
    None,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub on_failure: bool,
    pub on_success: bool,
    pub email: Option<EmailConfig>,
    pub webhook: Option<String>,
}

/// "90", "90s", "5m", "1h" -> a duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl Validator<'_> {
    pub(super) fn schedule(&mut self, d: &file::DaemonSection) -> ScheduleConfig {
        let written = [
            (RunType::Hourly, "schedule_hourly", &d.schedule_hourly),
            (RunType::Daily, "schedule_daily", &d.schedule_daily),
            (RunType::Weekly, "schedule_weekly", &d.schedule_weekly),
            (RunType::Monthly, "schedule_monthly", &d.schedule_monthly),
            (RunType::Yearly, "schedule_yearly", &d.schedule_yearly),
        ];
        let mut run_types = Vec::new();
        for (rt, key, value) in written {
            let default = default_schedule(rt);
            let spec = match value.as_deref().map(CronSpec::parse) {
                Some(Ok(spec)) => spec,
                Some(Err(message)) => {
                    self.error("daemon", key, message);
                    CronSpec::parse(default).expect("default schedules parse")
                }
                None => CronSpec::parse(default).expect("default schedules parse"),
            };
            run_types.push((rt, spec));
        }
        let binlog = d
            .schedule_binlog
            .as_deref()
            .and_then(|s| match CronSpec::parse(s) {
                Ok(spec) => Some(spec),
                Err(message) => {
                    self.error("daemon", "schedule_binlog", message);
                    None
                }
            });
        let jitter = match d.jitter.as_deref().map(|s| (s, parse_duration(s))) {
            None => Duration::ZERO,
            Some((_, Some(j))) if j <= Duration::from_secs(3600) => j,
            Some((s, Some(_))) => {
                self.error(
                    "daemon",
                    "jitter",
                    format!("{s:?} is more than the 1h allowed"),
                );
                Duration::ZERO
            }
            Some((s, None)) => {
                self.error(
                    "daemon",
                    "jitter",
                    format!("{s:?} is not a duration (e.g. \"90s\", \"5m\", \"1h\")"),
                );
                Duration::ZERO
            }
        };
        let backup_timeout = match d.backup_timeout.as_deref().map(|s| (s, parse_duration(s))) {
            None => None,
            Some((_, Some(t))) if !t.is_zero() => Some(t),
            Some((s, _)) => {
                self.error(
                    "daemon",
                    "backup_timeout",
                    format!("{s:?} is not a duration above zero (e.g. \"90s\", \"45m\", \"2h\")"),
                );
                None
            }
        };
        ScheduleConfig {
            run_types,
            binlog,
            jitter,
            backup_timeout,
        }
    }

    pub(super) fn metrics_listen(&mut self, value: Option<&str>) -> Option<SocketAddr> {
        let value = value?;
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    "daemon",
                    "metrics_listen",
                    format!("{value:?} is not an address:port (e.g. \"127.0.0.1:9469\")"),
                );
                None
            }
        }
    }

    pub(super) fn retention(
        &mut self,
        section: &str,
        r: Option<file::RetentionSection>,
        defaults: RetentionPolicy,
    ) -> RetentionPolicy {
        let r = r.unwrap_or_default();
        let mut keep = |key: &str, value: Option<u32>, default: u32| match value {
            Some(n) if n > 100_000 => {
                self.error(section, key, format!("{n} is out of range 0..=100000"));
                default
            }
            Some(n) => n,
            None => default,
        };
        RetentionPolicy {
            hourly: keep("hourly_copies", r.hourly_copies, defaults.hourly),
            daily: keep("daily_copies", r.daily_copies, defaults.daily),
            weekly: keep("weekly_copies", r.weekly_copies, defaults.weekly),
            monthly: keep("monthly_copies", r.monthly_copies, defaults.monthly),
            yearly: keep("yearly_copies", r.yearly_copies, defaults.yearly),
        }
    }

    pub(super) fn export(&mut self, e: Option<file::ExportSection>) -> Option<ExportConfig> {
        let e = e?;
        match e.transport.as_str() {
            "datadog" => {
                for (key, present) in [
                    ("statsd_host", e.statsd_host.is_some()),
                    ("statsd_port", e.statsd_port.is_some()),
                ] {
                    if present {
                        self.error("export", key, "is for transport = \"statsd\"");
                    }
                }
                let endpoint = e
                    .endpoint
                    .unwrap_or_else(|| DATADOG_ENDPOINT.to_string())
                    .trim_end_matches('/')
                    .to_string();
                self.http_url("export", "endpoint", &endpoint);
                let api_key = match e.api_key {
                    Some(k) if !k.is_empty() => k,
                    _ => {
                        self.error("export", "api_key", "transport = \"datadog\" needs api_key");
                        String::new()
                    }
                };
                self.inline_secrets.push("[export] api_key".into());
                Some(ExportConfig::Datadog {
                    api_key: Secret(api_key),
                    app_key: e.app_key.map(Secret),
                    endpoint,
                })
            }
            "statsd" => {
                for (key, present) in [
                    ("api_key", e.api_key.is_some()),
                    ("app_key", e.app_key.is_some()),
                    ("endpoint", e.endpoint.is_some()),
                ] {
                    if present {
                        self.error("export", key, "is for transport = \"datadog\"");
                    }
                }
                Some(ExportConfig::Statsd {
                    host: e.statsd_host.unwrap_or_else(|| "127.0.0.1".into()),
                    port: e.statsd_port.unwrap_or(8125),
                })
            }
            other => {
                self.error(
                    "export",
                    "transport",
                    format!("unknown transport {other:?}: expected datadog or statsd"),
                );
                None
            }
        }
    }

    fn http_url(&mut self, section: &str, key: &str, url: &str) {
        let ok = url
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if ok.is_none() {
            self.error(
                section,
                key,
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
    }

    pub(super) fn notify(
        &mut self,
        n: Option<file::NotifySection>,
        hostname: &str,
    ) -> Option<NotifyConfig> {
        let n = n?;
        let mailbox_ok = |s: &str| s.parse::<lettre::message::Mailbox>().is_ok();
        let email = if n.email_to.is_empty() {
            for (key, present) in [
                ("email_from", n.email_from.is_some()),
                ("smtp_server", n.smtp_server.is_some()),
                ("smtp_port", n.smtp_port.is_some()),
                ("smtp_tls", n.smtp_tls.is_some()),
                ("smtp_user", n.smtp_user.is_some()),
                ("smtp_password", n.smtp_password.is_some()),
            ] {
                if present {
                    self.error("notify", key, "is only used with email_to");
                }
            }
            None
        } else {
            for to in &n.email_to {
                if !mailbox_ok(to) {
                    self.error(
                        "notify",
                        "email_to",
                        format!("{to:?} is not an email address"),
                    );
                }
            }
            let from = n.email_from.unwrap_or_else(|| format!("twindb@{hostname}"));
            if !mailbox_ok(&from) {
                self.error(
                    "notify",
                    "email_from",
                    format!("{from:?} is not an email address"),
                );
            }
            let tls = match n.smtp_tls.as_deref().unwrap_or("starttls") {
                "starttls" => SmtpTls::Starttls,
                "tls" => SmtpTls::Tls,
                "none" => SmtpTls::None,
                other => {
                    self.error(
                        "notify",
                        "smtp_tls",
                        format!("unknown value {other:?}: expected starttls, tls or none"),
                    );
                    SmtpTls::Starttls
                }
            };
            let server = n.smtp_server.unwrap_or_default();
            if server.is_empty() {
                self.error("notify", "smtp_server", "email_to needs smtp_server");
            }
            if n.smtp_user.is_some() != n.smtp_password.is_some() {
                self.error(
                    "notify",
                    "smtp_user",
                    "smtp_user and smtp_password go together",
                );
            }
            let port = n.smtp_port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            });
            if n.smtp_password.is_some() {
                self.inline_secrets.push("[notify] smtp_password".into());
            }
            Some(EmailConfig {
                to: n.email_to,
                from,
                server,
                port,
                tls,
                user: n.smtp_user,
                password: n.smtp_password.map(Secret),
            })
        };
        if let Some(url) = &n.webhook_url {
            self.http_url("notify", "webhook_url", url);
        }
        if email.is_none() && n.webhook_url.is_none() {
            self.error(
                "notify",
                "",
                "say where to send notices: email_to and/or webhook_url",
            );
        }
        Some(NotifyConfig {
            on_failure: n.on_failure.unwrap_or(true),
            on_success: n.on_success.unwrap_or(false),
            email,
            webhook: n.webhook_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5 m"), Some(Duration::from_secs(300)));
        for bad in ["", "m", "5d", "-5m", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cron_expressions_accept_5_6_7_fields_and_nicknames() {
        assert_eq!(
            CronSpec::parse("*/5 * * * *").unwrap().expr,
            "0 */5 * * * *"
        );
        assert_eq!(
            CronSpec::parse("*/3 * * * * *").unwrap().expr,
            "*/3 * * * * *"
        );
        assert!(CronSpec::parse("0 0 0 * * * 2099").is_ok());
        assert!(CronSpec::parse("@daily").is_ok());
        for rt in RunType::ALL {
            assert!(CronSpec::parse(default_schedule(rt)).is_ok());
        }
        let err = CronSpec::parse("every hour").unwrap_err();
        assert!(err.contains("not a valid cron expression"), "{err}");
        assert!(CronSpec::parse("0 0 0 31 2 *").is_err());
    }
}
