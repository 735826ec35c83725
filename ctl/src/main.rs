//! `twindbctl`: talks to twindbd over its Unix socket. It never touches sources,
//! destinations or credentials itself.
//!
//! Exit codes: 0 success; 1 the job or the request failed (or, for `check`, a
//! destination is unhealthy); 2 usage error; 69 twindbd is not running or refused us
//! (EX_UNAVAILABLE).

mod cache;
mod client;
mod config_import;
mod man;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use twindb_proto::{
    CheckResponse, CopyKind, EnqueuedJob, JobInfo, JobState, JobsResponse, LsResponse,
    PitrResponse, PitrTarget, RestoreRequest, RetentionRequest, RetentionResponse, RunRequest,
    RunResponse, RunType, ShareRequest, ShareResponse, StatusResponse, VerifyReport, VerifyRequest,
    MAX_SHARE_SECONDS,
};

use crate::client::{Client, ClientError};

const DEFAULT_SOCKET: &str = "/run/twindb/twindbd.sock";

#[derive(Parser)]
#[command(
    name = "twindbctl",
    version,
    about = "Control twindbd: run, list, restore backups"
)]
struct Cli {
    /// twindbd's API socket.
    #[arg(long, global = true, env = "TWINDB_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Back up now: enqueue the run type and follow its progress.
    Run {
        run_type: RunType,
        /// Enqueue and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Copy binary logs only.
        #[arg(long)]
        binlogs_only: bool,
    },
    /// List the copies on the destination.
    Ls {
        #[arg(long = "type")]
        kind: Option<CopyKind>,
        #[arg(long)]
        run_type: Option<RunType>,
        /// Another host's copies on the same destination (e.g. to restore a lost host's
        /// copies on its replacement); default: this host's.
        #[arg(long)]
        host: Option<String>,
        /// Show when a point-in-time restore is possible instead.
        #[arg(long, conflicts_with_all = ["kind", "run_type", "host"])]
        pitr: bool,
    },
    /// Daemon, queue, and the last run of each run type.
    Status,
    /// Restore a copy.
    Restore {
        #[command(subcommand)]
        what: RestoreCommand,
    },
    /// Restore a MySQL copy into a scratch folder, start a throwaway server on it, check
    /// it; or run a restore drill now.
    Verify {
        #[command(subcommand)]
        what: VerifyCommand,
    },
    /// Recent jobs.
    Jobs,
    /// One job; --follow waits for it to end.
    Job {
        id: u64,
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a queued or running job.
    Cancel { id: u64 },
    /// Check that the destination (and keep_local_path) is reachable and writable.
    Check,
    /// Make this twindbd the writer of its host's copies after the daemon that wrote
    /// them is gone for good (this host replaces it). Refused writes name that daemon.
    Takeover,
    /// Print a time-limited download link for a copy (S3, GCS and Azure destinations).
    Share {
        /// A key as `twindbctl ls` prints it, a tail of one, or TwinDB's URL or path.
        copy: String,
        /// How long the link works: e.g. 30m, 12h, 7d (at most 7d).
        #[arg(long, default_value = "1d", value_parser = parse_expiry)]
        expires: u64,
    },
    /// Make an empty host a replica of a running server, from a fresh copy over SSH.
    Clone {
        #[command(subcommand)]
        what: CloneCommand,
    },
    /// Apply retention now ([retention]); --dry-run only prints what it would delete.
    Retention {
        #[arg(long)]
        dry_run: bool,
    },
    /// The restore cache of `restore mysql --cache`.
    Cache {
        #[command(subcommand)]
        what: cache::CacheCommand,
    },
    /// Work on config files (locally: no daemon needed).
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Print the shell completion script for SHELL (locally: no daemon needed), e.g.
    /// `twindbctl completions bash > ~/.local/share/bash-completion/completions/twindbctl`.
    /// The Debian package installs them for bash, zsh and fish.
    Completions { shell: clap_complete::Shell },
    /// Print a man page in roff; the package build runs it (see packaging/build-deb.sh).
    #[command(hide = true)]
    Man { page: ManPage },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ManPage {
    /// twindbctl(1), from these clap definitions.
    Twindbctl,
    /// twindb.toml(5), from docs/config.md.
    #[value(name = "twindb.toml")]
    Config,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Translate TwinDB Backup's INI config into a twindb TOML config, printed on stdout.
    Import {
        /// TwinDB's config, e.g. /etc/twindb/twindb-backup.cfg.
        file: PathBuf,
        /// Write the TOML here, with mode 0600, instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum VerifyCommand {
    /// COPY is a key as `ls` prints it (or a tail of one, or TwinDB's URL or path), or
    /// `latest` (the default).
    Mysql {
        copy: Option<String>,
        /// Restore here (absent or empty) and keep the result; default: a scratch folder.
        #[arg(long)]
        dst: Option<PathBuf>,
    },
    /// A restore drill now, as `[verify]` says: the latest MySQL copy and the latest
    /// files copy of each folder, restored and checked, each with its recovery time.
    Drill,
}

#[derive(Subcommand)]
enum CloneCommand {
    /// HOST[:PORT] are SSH hosts ([clone]/[ssh] settings) and their MySQL ports (3306).
    Mysql {
        /// The running server: HOST[:PORT].
        #[arg(long)]
        source: String,
        /// The host to make a replica: HOST[:PORT]; its datadir must be empty.
        #[arg(long)]
        destination: String,
        /// An account on the source with REPLICATION SLAVE.
        #[arg(long)]
        replication_user: String,
        /// Also read from TWINDB_REPLICATION_PASSWORD, which keeps it out of `ps`.
        #[arg(long, env = "TWINDB_REPLICATION_PASSWORD", hide_env_values = true)]
        replication_password: String,
        /// Compress the stream with zstd on the source (zstd needed on both hosts).
        #[arg(long)]
        compress: bool,
    },
}

#[derive(Subcommand)]
enum RestoreCommand {
    /// Restore a files copy into DIR (absent or empty).
    File {
        /// A key as `twindbctl ls` prints it, a tail of one, or TwinDB's URL or path.
        copy: String,
        #[arg(long)]
        dst: PathBuf,
    },
    /// Restore a MySQL copy into DIR (absent or empty); with --until*, roll it forward
    /// to a point in time with the backed-up binary logs (COPY may then be left out).
    Mysql {
        #[arg(required_unless_present_any = ["until", "until_gtid", "until_position"])]
        copy: Option<String>,
        #[arg(long)]
        dst: PathBuf,
        #[arg(long)]
        cache: Option<PathBuf>,
        /// "YYYY-MM-DD HH:MM:SS" in the time zone of the host twindbd runs on; events at
        /// or after it are not replayed (mysqlbinlog --stop-datetime). `latest`: every
        /// backed-up event, streamed segments included.
        #[arg(long, group = "pitr")]
        until: Option<String>,
        /// MariaDB GTID list: replay up to and including it.
        #[arg(long, group = "pitr")]
        until_gtid: Option<String>,
        /// FILE:POS: replay the events before this binlog position.
        #[arg(long, group = "pitr", value_parser = parse_position)]
        until_position: Option<PitrTarget>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config {
        what: ConfigCommand::Import { file, output },
    } = &cli.command
    {
        return config_import::run(file, output.as_deref());
    }
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "twindbctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man { page } => {
            let roff = match page {
                ManPage::Twindbctl => man::twindbctl(Cli::command()),
                ManPage::Config => man::config(),
            };
            return match std::io::Write::write_all(&mut std::io::stdout(), &roff) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("twindbctl: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twindbctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twindbctl: {e}");
            match e {
                ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. } => {
                    ExitCode::from(69)
                }
                ClientError::Api(_, status) if status == hyper::StatusCode::FORBIDDEN => {
                    ExitCode::from(69)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn execute(cli: Cli) -> Result<ExitCode, ClientError> {
    let client = Client::new(&cli.socket);
    let json = cli.json;
    match cli.command {
        Command::Run {
            run_type,
            no_wait,
            binlogs_only,
        } => {
            let resp: RunResponse = client
                .post(
                    "/v1/run",
                    &RunRequest {
                        run_type,
                        binlogs_only,
                    },
                )
                .await?;
            if no_wait {
                if json {
                    render::print_json(&resp);
                } else {
                    for e in &resp.jobs {
                        render::enqueued(e);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            follow_all(&client, resp.jobs, json).await
        }
        Command::Ls { pitr: true, .. } => {
            let resp: PitrResponse = client.get("/v1/pitr").await?;
            if json {
                render::print_json(&resp);
            } else {
                render::pitr(&resp);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            kind,
            run_type,
            host,
            ..
        } => {
            let mut query = Vec::new();
            if let Some(h) = host {
                query.push(format!("host={h}"));
            }
            if let Some(k) = kind {
                query.push(format!("type={k}"));
            }
            if let Some(r) = run_type {
                query.push(format!("run_type={r}"));
            }
            let path = if query.is_empty() {
                "/v1/ls".to_string()
            } else {
                format!("/v1/ls?{}", query.join("&"))
            };
            let resp: LsResponse = client.get(&path).await?;
            if json {
                render::print_json(&resp);
            } else {
                render::copies(&resp.copies);
                render::problems(&resp.problems);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let resp: StatusResponse = client.get("/v1/status").await?;
            if json {
                render::print_json(&resp);
            } else {
                render::status(&resp);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { what } => {
            let (kind, copy, dst, cache, until) = match what {
                RestoreCommand::File { copy, dst } => (CopyKind::Files, copy, dst, None, None),
                RestoreCommand::Mysql {
                    copy,
                    dst,
                    cache,
                    until,
                    until_gtid,
                    until_position,
                } => {
                    let until = until
                        .map(PitrTarget::Time)
                        .or(until_gtid.map(PitrTarget::Gtid))
                        .or(until_position);
                    (CopyKind::Mysql, copy.unwrap_or_default(), dst, cache, until)
                }
            };
            // The daemon does not share our working directory.
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p).display().to_string();
            let req = RestoreRequest {
                kind,
                copy,
                dst: absolute(dst),
                cache: cache.map(absolute),
                until,
            };
            let enq: EnqueuedJob = client.post("/v1/restore", &req).await?;
            follow_all(&client, vec![enq], json).await
        }
        Command::Verify {
            what: VerifyCommand::Mysql { copy, dst },
        } => {
            let req = VerifyRequest {
                copy,
                dst: dst.map(|p| std::path::absolute(&p).unwrap_or(p).display().to_string()),
                drill: false,
            };
            let enq: EnqueuedJob = client.post("/v1/verify", &req).await?;
            let bar = render::Display::new(true).follower();
            let info = client.follow(enq.job.id, |i| bar.update(i)).await?;
            let report = info.verify.clone().unwrap_or_else(|| VerifyReport {
                copy: req.copy.unwrap_or_else(|| "latest".into()),
                restore_seconds: 0.0,
                success: false,
                error: info.error.clone(),
                kind: twindb_proto::CopyKind::Mysql,
                rto_seconds: None,
                checks: vec![],
            });
            // The report is the output, in JSON as TwinDB printed it, with or without --json.
            let _ = json;
            render::print_json(&report);
            Ok(if report.success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Verify {
            what: VerifyCommand::Drill,
        } => {
            let req = VerifyRequest {
                copy: None,
                dst: None,
                drill: true,
            };
            let enq: EnqueuedJob = client.post("/v1/verify", &req).await?;
            let bar = render::Display::new(json).follower();
            let info = client.follow(enq.job.id, |i| bar.update(i)).await?;
            if json {
                render::print_json(&info.drill);
            } else {
                render::drill(&info);
            }
            Ok(if info.state == twindb_proto::JobState::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Jobs => {
            let resp: JobsResponse = client.get("/v1/jobs").await?;
            if json {
                render::print_json(&resp);
            } else {
                render::jobs(&resp.jobs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Job { id, follow } => {
            let info: JobInfo = if follow {
                let bar = render::Display::new(json).follower();
                let info = client.follow(id, |i| bar.update(i)).await?;
                bar.finish(&info);
                info
            } else {
                client.get(&format!("/v1/jobs/{id}")).await?
            };
            if json {
                render::print_json(&info);
            } else if !follow {
                render::job(&info);
            }
            Ok(exit_for(&[info]))
        }
        Command::Retention { dry_run } => {
            let resp: RetentionResponse = client
                .post("/v1/retention", &RetentionRequest { dry_run })
                .await?;
            if json {
                render::print_json(&resp);
            } else {
                render::retention(&resp);
            }
            Ok(if resp.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Cache { what } => cache::run(&client, what, json).await,
        Command::Takeover => {
            let resp: twindb_proto::TakeoverResponse =
                client.post("/v1/takeover", &serde_json::json!({})).await?;
            if json {
                render::print_json(&resp);
            } else {
                println!(
                    "this twindbd now writes the copies of host {} (before: {})",
                    resp.host,
                    resp.previous.as_deref().unwrap_or("no writer recorded")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let resp: CheckResponse = client.get("/v1/check").await?;
            if json {
                render::print_json(&resp);
            } else {
                render::checks(&resp);
            }
            Ok(if resp.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Share { copy, expires } => {
            let resp: ShareResponse = client
                .post(
                    "/v1/share",
                    &ShareRequest {
                        copy,
                        expires_seconds: expires,
                    },
                )
                .await?;
            if json {
                render::print_json(&resp);
            } else {
                // The URL alone on stdout, so that `$(twindbctl share ...)` works.
                println!("{}", resp.url);
                eprintln!(
                    "anyone with this link can download {} until {} (local time)",
                    resp.copy,
                    resp.expires_at
                        .with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("local commands run without the daemon")
        }
        Command::Clone {
            what:
                CloneCommand::Mysql {
                    source,
                    destination,
                    replication_user,
                    replication_password,
                    compress,
                },
        } => {
            let req = twindb_proto::CloneRequest {
                source,
                destination,
                replication_user,
                replication_password,
                compress,
            };
            let enq: EnqueuedJob = client.post("/v1/clone", &req).await?;
            follow_all(&client, vec![enq], json).await
        }
        Command::Cancel { id } => {
            let info: JobInfo = client.post(&format!("/v1/jobs/{id}/cancel"), &()).await?;
            if json {
                render::print_json(&info);
            } else {
                println!(
                    "job {id} ({}): cancel requested, now {}",
                    info.title, info.state
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Follows every job to its end; exit 0 only if all succeeded.
async fn follow_all(
    client: &Client,
    jobs: Vec<EnqueuedJob>,
    json: bool,
) -> Result<ExitCode, ClientError> {
    if jobs.is_empty() {
        eprintln!("twindbctl: nothing to run: no source is configured for this run");
        return Ok(ExitCode::FAILURE);
    }
    let display = render::Display::new(json);
    let follows = jobs.iter().map(|e| {
        if !json {
            render::enqueued(e);
        }
        let bar = display.follower();
        async move {
            let info = client.follow(e.job.id, |i| bar.update(i)).await?;
            bar.finish(&info);
            Ok::<_, ClientError>(info)
        }
    });
    let results = futures::future::join_all(follows).await;
    let mut infos = Vec::new();
    for r in results {
        infos.push(r?);
    }
    if json {
        render::print_json(&infos);
    }
    Ok(exit_for(&infos))
}

/// Non-zero when any job failed or was cancelled.
fn exit_for(infos: &[JobInfo]) -> ExitCode {
    if infos
        .iter()
        .all(|i| !matches!(i.state, JobState::Failed | JobState::Cancelled))
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `FILE:POS` of `--until-position`.
fn parse_position(s: &str) -> Result<PitrTarget, String> {
    let (file, pos) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected FILE:POS, e.g. mysql-bin.000012:4711"))?;
    let position = pos
        .parse()
        .map_err(|_| format!("{s:?}: {pos:?} is not a position"))?;
    if file.is_empty() {
        return Err(format!("{s:?}: the binlog file name is missing"));
    }
    Ok(PitrTarget::Position {
        file: file.to_string(),
        position,
    })
}

/// "90s", "30m", "12h", "7d" or plain seconds -> seconds, 1 s to 7 days.
fn parse_expiry(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 12h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    if (1..=MAX_SHARE_SECONDS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{s:?}: a share link lasts 1s to 7d"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn share_expiry_takes_units_and_stays_within_seven_days() {
        assert_eq!(parse_expiry("90"), Ok(90));
        assert_eq!(parse_expiry("30m"), Ok(1800));
        assert_eq!(parse_expiry("12h"), Ok(43_200));
        assert_eq!(parse_expiry("7d"), Ok(604_800));
        for bad in ["0", "8d", "1w", "d", "-1h", ""] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod doc_tests;
