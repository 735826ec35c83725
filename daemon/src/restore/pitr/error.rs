//! Why a point-in-time restore is refused or failed. Each message tells the operator
//! what is missing and what to do; the refusals come before anything is restored.

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    #[error("--until {text:?}: expected \"YYYY-MM-DD HH:MM:SS\" ({cause})")]
    BadTime {
        text: String,
        cause: chrono::ParseError,
    },
    #[error("--until {0:?} does not exist in the local time zone (DST change)")]
    NoSuchLocalTime(String),
    #[error("--until-gtid {0:?}: expected a MariaDB GTID list such as 0-1-1234")]
    BadGtid(String),
    #[error("--until-position: {0:?} is not a binary log name such as mysql-bin.000012")]
    BadPosition(String),
    #[error("--until-gtid is supported for MariaDB; on MySQL use --until or --until-position")]
    GtidOnMysql,
    #[error("{copy} was not taken before {target}; name an older copy or leave it out")]
    CopyAfterTarget { copy: String, target: String },
    #[error(
        "no MySQL copy with recorded binlog coordinates was taken before {0} (see `twindbctl ls --pitr`)"
    )]
    NoBaseCopy(String),
    #[error(
        "{0} records no binlog coordinates (binary logging was off?); it cannot be rolled forward"
    )]
    NoCoordinates(String),
    #[error("{copy} records binlog file {file:?}, which is not a binary log name")]
    BadRecordedBinlog { copy: String, file: String },
    /// The binlogs restarted (`RESET MASTER`, a rebuilt server, a failover) before the
    /// target; `note` says when and what to do.
    #[error("cannot restore to {target}: {note}")]
    AcrossRestart { target: String, note: String },
    #[error(
        "cannot restore to {target}: binary log {missing} is not backed up, so the events from {since} to {until} \
         (local time) cannot be replayed (see `twindbctl ls --pitr` for the times that can be restored)"
    )]
    NotBackedUp {
        target: String,
        missing: String,
        since: String,
        until: String,
    },
    #[error(
        "cannot restore to {target}: the backed-up binary logs end with {last} (closed at {closed} local time); \
         the events after it are not backed up yet: run `twindbctl run hourly --binlogs-only` and retry"
    )]
    NotBackedUpYet {
        target: String,
        last: String,
        closed: String,
    },
    #[error("{file} is not at or after the copy's binlog {start_file}")]
    PositionBeforeCopy { file: String, start_file: String },
    #[error(
        "point-in-time restore needs mysqlbinlog (mariadb-binlog) and the mysql (mariadb) client \
         (Debian: mariadb-client or mysql-client)"
    )]
    NoReplayTools,
    #[error("cannot tell which mysqld to start: set [mysql] mysqld_binary")]
    NoMysqld,
    #[error(transparent)]
    Server(#[from] crate::mysql::ThrowawayError),
    #[error("the temporary server did not stop cleanly after the replay:\n{log}")]
    UncleanStop { log: String },
    #[error("replaying binlog {binlog}: {cause}")]
    Replay {
        binlog: String,
        cause: crate::mysql::ToolError,
    },
    #[error("{target} is not in the backed-up binary logs from {first} to {last}{gap}; nothing was restored")]
    NotReached {
        target: String,
        first: String,
        last: String,
        gap: String,
    },
}
