//! The twindbd HTTP API, as plain serde types.
//!
//! Every route lives under `/v1`; a breaking change gets a new prefix. This crate
//! knows nothing of tokio or axum so that clients stay thin.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// API version prefix shared by the daemon and the client.
pub const API_PREFIX: &str = "/v1";

/// How often a backup runs. Ordered from the most to the least frequent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunType {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl RunType {
    pub const ALL: [RunType; 5] = [
        RunType::Hourly,
        RunType::Daily,
        RunType::Weekly,
        RunType::Monthly,
        RunType::Yearly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Hourly => "hourly",
            RunType::Daily => "daily",
            RunType::Weekly => "weekly",
            RunType::Monthly => "monthly",
            RunType::Yearly => "yearly",
        }
    }

    /// The nominal period, used for catch-up and timeouts.
    pub fn period_seconds(self) -> u64 {
        match self {
            RunType::Hourly => 3600,
            RunType::Daily => 86_400,
            RunType::Weekly => 7 * 86_400,
            RunType::Monthly => 30 * 86_400,
            RunType::Yearly => 365 * 86_400,
        }
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunType::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown run type {s:?}: expected hourly, daily, weekly, monthly or yearly")
            })
    }
}

/// What a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyKind {
    Files,
    Mysql,
    Binlog,
}

impl CopyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyKind::Files => "files",
            CopyKind::Mysql => "mysql",
            CopyKind::Binlog => "binlog",
        }
    }
}

impl fmt::Display for CopyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CopyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "files" => Ok(CopyKind::Files),
            "mysql" => Ok(CopyKind::Mysql),
            "binlog" => Ok(CopyKind::Binlog),
            _ => Err(format!(
                "unknown copy type {s:?}: expected files, mysql or binlog"
            )),
        }
    }
}

/// What a job does; also the queue lane it runs in (one job per lane at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    BackupFiles,
    BackupMysql,
    BackupBinlog,
    Restore,
    Verify,
    /// `clone mysql`: a replica made from a fresh copy over SSH.
    Clone,
}

impl JobKind {
    /// Every kind, so every lane: the queue starts one worker each, the metrics export
    /// each one's depth.
    pub const ALL: [JobKind; 6] = [
        JobKind::BackupFiles,
        JobKind::BackupMysql,
        JobKind::BackupBinlog,
        JobKind::Restore,
        JobKind::Verify,
        JobKind::Clone,
    ];
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::BackupFiles => "backup files",
            JobKind::BackupMysql => "backup mysql",
            JobKind::BackupBinlog => "backup binlog",
            JobKind::Restore => "restore",
            JobKind::Verify => "verify",
            JobKind::Clone => "clone",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        })
    }
}

/// Live figures of a running job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What the job is doing now, e.g. "backing up /etc".
    pub phase: String,
    /// Bytes read from the source (or from the destination, for a restore).
    pub bytes_in: u64,
    /// Bytes written to the destination (or to disk, for a restore).
    pub bytes_out: u64,
    /// Input rate over the last interval, bytes per second.
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    pub kind: JobKind,
    pub run_type: Option<RunType>,
    /// One line a human can read: "daily files backup", "restore db1/daily/...".
    pub title: String,
    pub state: JobState,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Progress,
    /// The cause chain, one line, when the job failed or was cancelled.
    pub error: Option<String>,
    /// Things the operator should know that did not fail the job (vanished files...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Keys of the copies the job wrote.
    #[serde(default)]
    pub copies: Vec<String>,
    /// What to do next, for restores.
    #[serde(default)]
    pub message: Option<String>,
    /// The outcome of a verify job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
    /// How long each phase of a MySQL restore took, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseTime>,
    /// A restore drill's outcome: one report per copy it restored and checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drill: Vec<VerifyReport>,
    /// What files copies left out on purpose (`[source] exclude`, `exclude_caches`,
    /// `one_file_system`), one entry per copy that left something out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedReport>,
}

/// One phase of a MySQL restore and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// "download and extract" (one stream: the bytes are extracted as they arrive),
    /// "copy from the cache", "prepare", "apply incremental", "store in the cache" or
    /// "binlog replay".
    pub phase: String,
    /// The copy the phase worked on; none for the binlog replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    pub seconds: f64,
}

/// What one files copy left out on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedReport {
    /// The backed-up folder.
    pub dir: String,
    /// Entries matched by an `exclude` pattern (a folder counts once, whatever it held).
    pub entries: u64,
    /// Folders holding a valid CACHEDIR.TAG, stored with their tag only.
    pub cache_dirs: u64,
    /// Folders on another file system, stored empty.
    pub mount_points: u64,
}

/// What `twindbctl verify` prints: did the copy restore and start as a server?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub copy: String,
    pub restore_seconds: f64,
    pub success: bool,
    pub error: Option<String>,
    /// `"mysql"` or `"files"`. Reports written before drills existed are MySQL's.
    #[serde(default = "mysql_kind")]
    pub kind: CopyKind,
    /// The recovery time measured: seconds from the start of the restore until the
    /// restored server accepted queries (MySQL), or until every file was restored
    /// (files). Absent when the copy did not restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// What was checked beyond the restore, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

fn mysql_kind() -> CopyKind {
    CopyKind::Mysql
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// A key as `ls` prints it, or "latest" / absent for the newest MySQL copy.
    #[serde(default)]
    pub copy: Option<String>,
    /// Absolute path, absent or empty; a scratch folder in state_dir when absent.
    #[serde(default)]
    pub dst: Option<String>,
    /// A restore drill: what `[verify]` says (the latest MySQL copy and the latest
    /// files copy of each folder, with its checks) instead of one copy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
}

/// One line of `GET /v1/jobs/{id}/events` (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub at: DateTime<Utc>,
    pub job: JobInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub run_type: RunType,
    #[serde(default)]
    pub binlogs_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnqueuedJob {
    pub job: JobInfo,
    /// True when an identical job was already queued and this request joined it.
    pub coalesced: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResponse {
    pub jobs: Vec<EnqueuedJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub kind: CopyKind,
    /// A key as `ls` prints it, a tail of one, or TwinDB's URL or path (the daemon
    /// resolves it to the key: docs/restore.md#naming-a-copy).
    pub copy: String,
    /// Absolute path; must be absent or empty.
    pub dst: String,
    #[serde(default)]
    pub cache: Option<String>,
    /// Point-in-time restore (MySQL): roll the restored copy forward to here with the
    /// backed-up binary logs. `copy` may then be empty: the newest copy before the
    /// target is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<PitrTarget>,
}

/// `POST /v1/cache/purge`: removes restore-cache entries (`restore mysql --cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachePurgeRequest {
    /// The cache folder, an absolute path, as given to `restore mysql --cache`.
    pub cache: String,
    /// Only entries stored longer ago than this; all of them when absent.
    #[serde(default)]
    pub older_than_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachePurgeResponse {
    pub cache: String,
    pub removed: Vec<CacheEntry>,
    /// Entries younger than `older_than_seconds`.
    pub kept: Vec<CacheEntry>,
}

/// One prepared full copy in a restore cache (or what an interrupted restore left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The folder's name in the cache.
    pub name: String,
    pub bytes: u64,
    /// Since it was stored.
    pub age_seconds: u64,
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PitrTarget {
    /// "YYYY-MM-DD HH:MM:SS" in the time zone of the host twindbd runs on, as
    /// `mysqlbinlog --stop-datetime` reads it: events at or after it are not replayed.
    Time(String),
    /// A MariaDB GTID list: replay up to and including these transactions.
    Gtid(String),
    /// A binlog file and position: events at or after it are not replayed.
    Position { file: String, position: u64 },
}

impl fmt::Display for PitrTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PitrTarget::Time(t) => write!(f, "{t}"),
            PitrTarget::Gtid(g) => write!(f, "GTID {g}"),
            PitrTarget::Position { file, position } => write!(f, "{file}:{position}"),
        }
    }
}

/// `POST /v1/clone`: make `destination` a replica of `source` from a fresh copy.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneRequest {
    /// `HOST[:PORT]`: reached over SSH at HOST; PORT (3306) is its MySQL port.
    pub source: String,
    pub destination: String,
    pub replication_user: String,
    pub replication_password: String,
    /// zstd on the source, unzstd on the destination: less data crosses twindbd.
    #[serde(default)]
    pub compress: bool,
}

/// Never prints the password (job lists and logs show requests with `{:?}`).
impl fmt::Debug for CloneRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneRequest")
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("replication_user", &self.replication_user)
            .field("replication_password", &"***")
            .field("compress", &self.compress)
            .finish()
    }
}

/// `GET /v1/pitr`: when a point-in-time restore is possible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrResponse {
    /// Disjoint, oldest first. Empty when no MySQL copy has its binary logs backed up.
    pub windows: Vec<PitrWindow>,
}

/// Any time from `from` to `to` can be restored to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The oldest MySQL copy the window starts from.
    pub first_copy: String,
    /// The binary logs that cover it, first and last.
    pub first_binlog: String,
    pub last_binlog: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LsQuery {
    #[serde(default, rename = "type")]
    pub kind: Option<CopyKind>,
    #[serde(default)]
    pub run_type: Option<RunType>,
    /// Another host's copies on the same destination (default: this host's).
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyInfo {
    pub key: String,
    pub kind: CopyKind,
    pub run_type: Option<RunType>,
    /// "full" or "incremental" for MySQL copies.
    pub backup_type: Option<String>,
    pub host: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Stored bytes.
    pub size: u64,
    /// Modifier names in the order they were applied, e.g. ["zstd"].
    pub modifiers: Vec<String>,
    /// Where the copy lives: "remote" or "local".
    pub location: String,
    /// `"twindb-backup"` for a copy TwinDB Backup 2.x/3.x wrote; absent for twindb's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LsResponse {
    pub copies: Vec<CopyInfo>,
    /// Problems met reading TwinDB Backup's status files (e.g. a corrupt md5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTypeStatus {
    pub run_type: RunType,
    pub enabled: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub last_state: Option<JobState>,
    pub last_duration_seconds: Option<f64>,
    pub last_size: Option<u64>,
    pub last_error: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub version: String,
    pub host: String,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    pub destination: String,
    pub running: Vec<JobInfo>,
    pub queued: Vec<JobInfo>,
    pub run_types: Vec<RunTypeStatus>,
    /// The last restore drill that finished, if any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<JobInfo>,
    /// When the next drill fires (`[verify] schedule`), if drills are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill: Option<DateTime<Utc>>,
    /// The binlog streamer, when `[binlog] enabled = true`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_stream: Option<BinlogStreamStatus>,
}

/// What the binlog streamer does now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinlogStreamStatus {
    /// "running" (connected, reading) or "retrying" (waiting to reconnect after an error).
    pub state: String,
    /// The server's binlog file being read, and the offset stored or being stored.
    pub file: Option<String>,
    pub position: u64,
    /// Age of the oldest event read and not stored yet; 0 when caught up.
    pub lag_seconds: f64,
    /// The error that ended the last session, and when; absent once reading again.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsResponse {
    pub jobs: Vec<JobInfo>,
}

/// `POST /v1/share`: a time-limited download link for one copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareRequest {
    /// A key as `ls` prints it.
    pub copy: String,
    /// How long the link works, 1 s to 7 days.
    pub expires_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareResponse {
    pub copy: String,
    /// Anyone holding it can download the copy (as stored: compressed, encrypted)
    /// until `expires_at`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Longest life of a share link: what S3 and GCS allow for a signed URL.
pub const MAX_SHARE_SECONDS: u64 = 7 * 86_400;

/// `POST /v1/retention`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionRequest {
    /// Only plan: delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A copy that retention deletes (or would delete, in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedDeletion {
    pub key: String,
    pub kind: CopyKind,
    pub run_type: Option<RunType>,
    /// "remote" or "local".
    pub location: String,
    /// Why, e.g. "not among the newest 7 daily copies of /etc".
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionResponse {
    pub dry_run: bool,
    /// Planned (dry run) or done deletions, in the order they are applied.
    pub deletions: Vec<PlannedDeletion>,
    /// Copies that stay.
    pub kept: usize,
    /// Deletions that failed; those copies stay.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// `GET /v1/check`: the health check of every place copies go.
/// `POST /v1/takeover`: this daemon became the writer of its host's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeoverResponse {
    pub host: String,
    /// The daemon that wrote the status before, as "machine (pid N, at T)"; absent
    /// when none was recorded.
    pub previous: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// True when every check passed.
    pub healthy: bool,
    pub checks: Vec<DestinationCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationCheck {
    /// "destination" or "keep_local".
    pub role: String,
    /// The destination as twindbd names it, e.g. `ssh://root@backup1:22/var/backup`.
    pub name: String,
    pub ok: bool,
    /// Why not, with the whole cause chain.
    pub error: Option<String>,
    pub seconds: f64,
}

/// Body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable: "bad_request", "not_found", "forbidden", "conflict",
    /// "disabled" (run type off in [intervals]), "destination" (storage unreachable),
    /// "unavailable" (shutting down).
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_type_round_trips_through_str_and_json() {
        for r in RunType::ALL {
            assert_eq!(r.as_str().parse::<RunType>().unwrap(), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert!("minutely".parse::<RunType>().is_err());
    }

    #[test]
    fn run_types_are_ordered_by_frequency() {
        assert!(RunType::Hourly < RunType::Daily && RunType::Monthly < RunType::Yearly);
    }
}
