//! Notices about finished backups (`[notify]`): by email over SMTP and/or as a JSON
//! POST to a webhook. Failures always (unless `on_failure = false`), successes when
//! `on_success = true`. Restores are not notified: someone is watching them.
//!
//! A notice that cannot be sent is logged at ERROR and counted in
//! `twindb_notification_failures_total`; it never changes the job's outcome.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use twindb_proto::{JobInfo, JobKind, JobState};

use crate::config::{EmailConfig, NotifyConfig, SmtpTls};
use crate::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What a notice says.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `{backup,verify,clone}_{failed,succeeded}`.
    pub event: &'static str,
    pub subject: String,
    pub text: String,
}

/// The notice for `job`, if `config` wants one.
pub fn notice_for(config: &NotifyConfig, host: &str, job: &JobInfo) -> Option<Notice> {
    if job.kind == JobKind::Restore {
        return None;
    }
    let failed = match job.state {
        JobState::Failed if config.on_failure => true,
        JobState::Succeeded if config.on_success => false,
        // Cancelled jobs were cancelled by someone, or by a shutdown: no news.
        _ => return None,
    };
    // A failed restore drill is not a failed backup: a receiver can route them apart.
    let event = match (job.kind, failed) {
        (JobKind::Verify, true) => "verify_failed",
        (JobKind::Verify, false) => "verify_succeeded",
        (JobKind::Clone, true) => "clone_failed",
        (JobKind::Clone, false) => "clone_succeeded",
        (_, true) => "backup_failed",
        (_, false) => "backup_succeeded",
    };
    let outcome = if failed { "FAILED" } else { "succeeded" };
    let subject = format!("twindb on {host}: {} {outcome}", job.title);
    let mut text = format!(
        "twindb on {host}: job {} ({}) {outcome}.\n",
        job.id, job.title
    );
    if let Some(e) = &job.error {
        text.push_str(&format!("\nError: {e}\n"));
    }
    if let (Some(a), Some(b)) = (job.started_at, job.finished_at) {
        text.push_str(&format!(
            "\nStarted:  {a}\nFinished: {b} ({:.1} s)\n",
            (b - a).num_milliseconds() as f64 / 1000.0
        ));
    }
    text.push_str(&format!(
        "Read {} bytes, stored {} bytes.\n",
        job.progress.bytes_in, job.progress.bytes_out
    ));
    for c in &job.copies {
        text.push_str(&format!("Copy: {c}\n"));
    }
    for w in &job.warnings {
        text.push_str(&format!("Warning: {w}\n"));
    }
    for r in &job.drill {
        match (&r.error, r.rto_seconds) {
            (Some(e), _) => text.push_str(&format!("Drill: {} FAILED: {e}\n", r.copy)),
            (None, Some(rto)) => {
                text.push_str(&format!("Drill: {} recovered in {rto:.1} s\n", r.copy))
            }
            (None, None) => {}
        }
    }
    text.push_str(&format!(
        "\nDetails: twindbctl job {}; twindbctl status\n",
        job.id
    ));
    Some(Notice {
        event,
        subject,
        text,
    })
}

/// Sends the notice for `job` through every configured channel.
pub async fn notify(config: &NotifyConfig, host: &str, job: &JobInfo, metrics: &Metrics) {
    let Some(notice) = notice_for(config, host, job) else {
        return;
    };
    send(config, host, &notice, Some(job), metrics).await;
}

/// A problem outside any job (a gap in the binlog stream), sent as a failure is:
/// unless `on_failure = false`. `event` names it in the webhook's JSON.
pub async fn notify_problem(
    config: &NotifyConfig,
    host: &str,
    event: &'static str,
    text: &str,
    metrics: &Metrics,
) {
    if !config.on_failure {
        return;
    }
    let notice = Notice {
        event,
        subject: format!("twindb on {host}: {}", event.replace('_', " ")),
        text: format!(
            "twindb on {host}: {text}

Details: twindbctl status
"
        ),
    };
    send(config, host, &notice, None, metrics).await;
}

async fn send(
    config: &NotifyConfig,
    host: &str,
    notice: &Notice,
    job: Option<&JobInfo>,
    metrics: &Metrics,
) {
    let id = job.map(|j| j.id);
    if let Some(email) = &config.email {
        match send_email(email, host, notice).await {
            Ok(()) => tracing::info!(job = ?id, to = ?email.to, "notice sent by email"),
            Err(e) => {
                metrics.notification_failed("email");
                tracing::error!(job = ?id, server = %email.server, error = %e, "could not send the email notice");
            }
        }
    }
    if let Some(url) = &config.webhook {
        let mut body = json!({
            "event": notice.event,
            "host": host,
            "subject": notice.subject,
            "text": notice.text,
        });
        if let Some(job) = job {
            body["job"] = json!(job);
        }
        let body = serde_json::to_vec(&body).expect("json");
        match crate::http::post_json(url, &[], body, TIMEOUT).await {
            Ok(()) => tracing::info!(job = ?id, "notice sent to the webhook"),
            Err(e) => {
                metrics.notification_failed("webhook");
                tracing::error!(job = ?id, error = %format!("{:#}", anyhow::Error::from(e)), "could not send the webhook notice");
            }
        }
    }
}

async fn send_email(config: &EmailConfig, host: &str, notice: &Notice) -> anyhow::Result<()> {
    let mut message = Message::builder()
        .from(config.from.parse()?)
        .subject(&notice.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &config.to {
        message = message.to(to.parse()?);
    }
    let message = message.body(notice.text.clone())?;
    let builder = match config.tls {
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.server)?,
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.server)?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.server),
    };
    let mut builder = builder
        .port(config.port)
        .hello_name(ClientId::Domain(host.to_string()))
        .timeout(Some(TIMEOUT));
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
    }
    builder.build().send(message).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use twindb_proto::{Progress, RunType};

    fn job(kind: JobKind, state: JobState) -> JobInfo {
        JobInfo {
            id: 7,
            kind,
            run_type: Some(RunType::Hourly),
            title: "hourly backup files".into(),
            state,
            queued_at: Utc::now(),
            started_at: Some(Utc::now()),
            finished_at: Some(Utc::now()),
            progress: Progress::default(),
            error: Some("local:/x: writing db1/hourly/files/a.tar: Permission denied".into()),
            warnings: vec![],
            copies: vec![],
            message: None,
            verify: None,
            phases: Vec::new(),
            drill: vec![],
            excluded: vec![],
        }
    }

    #[test]
    fn failures_are_notified_successes_only_on_request_cancels_never() {
        let mut c = NotifyConfig {
            on_failure: true,
            on_success: false,
            email: None,
            webhook: Some("http://127.0.0.1:1/x".into()),
        };
        let n = notice_for(&c, "db1", &job(JobKind::BackupFiles, JobState::Failed)).unwrap();
        assert_eq!(n.event, "backup_failed");
        assert_eq!(n.subject, "twindb on db1: hourly backup files FAILED");
        assert!(n.text.contains("Permission denied"), "{}", n.text);
        assert!(n.text.contains("twindbctl job 7"), "{}", n.text);
        assert!(notice_for(&c, "db1", &job(JobKind::BackupFiles, JobState::Succeeded)).is_none());
        assert!(notice_for(&c, "db1", &job(JobKind::BackupFiles, JobState::Cancelled)).is_none());
        assert!(notice_for(&c, "db1", &job(JobKind::Restore, JobState::Failed)).is_none());
        c.on_success = true;
        c.on_failure = false;
        assert!(notice_for(&c, "db1", &job(JobKind::BackupFiles, JobState::Succeeded)).is_some());
        assert!(notice_for(&c, "db1", &job(JobKind::BackupFiles, JobState::Failed)).is_none());
    }
}
