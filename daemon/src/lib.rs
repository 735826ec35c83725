//! twindb: backups of folders and MySQL to local, SSH, S3, GCS and Azure destinations.
//!
//! The engine (sources, modifiers, destinations, status) and the `twindbd` daemon that
//! runs it (queue, API). See design.md for the architecture.

pub mod api;
pub mod backup;
pub mod binlog;
pub mod clone;
pub mod config;
pub mod copy_path;
pub mod daemon;
pub mod destination;
pub mod engine;
pub mod failpoint;
pub mod http;
pub mod key;
pub mod metrics;
pub mod modifier;
pub mod mysql;
pub mod notify;
pub mod pipeline;
pub mod process;
pub mod queue;
pub mod restore;
pub mod retention;
pub mod scheduler;
pub mod share;
pub mod source;
pub mod ssh;
pub mod state;
pub mod status;
pub mod systemd;
pub mod throttle;
pub mod verify;

pub use daemon::run;
