//! `twindbctl cache purge`: the restore cache's entries, removed by twindbd (which owns
//! them, and knows which restores use the folder).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use indicatif::HumanBytes;
use twindb_proto::{CacheEntry, CachePurgeRequest, CachePurgeResponse};

use crate::client::{Client, ClientError};
use crate::render;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Remove the prepared full copies kept in a restore cache (`restore mysql --cache`);
    /// refused while a restore uses it.
    Purge {
        /// The cache folder, as given to `restore mysql --cache`.
        #[arg(long)]
        cache: PathBuf,
        /// Only entries stored longer ago than this: e.g. 12h, 7d, 30m, or seconds.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<u64>,
    },
}

pub async fn run(client: &Client, what: CacheCommand, json: bool) -> Result<ExitCode, ClientError> {
    let CacheCommand::Purge { cache, older_than } = what;
    let req = CachePurgeRequest {
        // The daemon does not share our working directory.
        cache: std::path::absolute(&cache)
            .unwrap_or(cache)
            .display()
            .to_string(),
        older_than_seconds: older_than,
    };
    let resp: CachePurgeResponse = client.post("/v1/cache/purge", &req).await?;
    if json {
        render::print_json(&resp);
    } else {
        for e in &resp.removed {
            println!("removed {}", line(e));
        }
        for e in &resp.kept {
            println!("kept    {}", line(e));
        }
        let freed: u64 = resp.removed.iter().map(|e| e.bytes).sum();
        println!(
            "{}: removed {} entries ({}), kept {}",
            resp.cache,
            resp.removed.len(),
            HumanBytes(freed),
            resp.kept.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "NAME (1.2 GiB, stored 3h ago)".
fn line(e: &CacheEntry) -> String {
    let s = e.age_seconds;
    let age = match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    format!("{} ({}, stored {age} ago)", e.name, HumanBytes(e.bytes))
}

/// "90", "90s", "30m", "12h", "7d" -> seconds.
fn parse_age(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 12h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_take_units() {
        assert_eq!(parse_age("90"), Ok(90));
        assert_eq!(parse_age("7d"), Ok(7 * 86_400));
        assert_eq!(parse_age("12h"), Ok(12 * 3600));
        assert!(parse_age("7w").is_err());
        assert!(parse_age("soon").is_err());
    }
}
