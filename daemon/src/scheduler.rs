//! The scheduler: fires each enabled run type at its cron schedule and enqueues it.
//! It never runs work itself.
//!
//! - Schedules are cron expressions in UTC (default: the times of cron's @hourly ...
//!   @yearly), fired by tokio-cron-scheduler. UTC has no DST, so a daylight-saving
//!   change neither repeats nor skips a run.
//! - Clock changes: a fire is ignored when the run type's last run started less than
//!   its guard window ago (half its period, or half the schedule's own interval when
//!   that is shorter), or later than now (the clock was set back). A clock set back
//!   by an hour therefore does not run hourly twice; one set forward fires each run
//!   type once, not once per skipped period.
//! - Catch-up at start (anacron-like): each enabled run type whose last successful
//!   run is older than its period is enqueued once. A run type that never ran waits
//!   for its schedule, except the most frequent enabled one, so a fresh install makes
//!   its first copy at start.
//! - `[daemon] jitter` delays each fire by a random time below it.
//! - `[daemon] schedule_binlog`, when set, enqueues binlog copies on its own schedule.
//!
//! The decisions are pure functions of the time ([`next_fire`], [`should_fire`],
//! [`catch_up`]), tested with a simulated clock; the rest is glue.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use croner::Cron;
use tokio_cron_scheduler::{Job, JobScheduler};
use twindb_proto::RunType;
use uuid::Uuid;

use crate::config::{Config, CronSpec};
use crate::queue::Queue;
use crate::state::RunRecord;

/// The first time strictly after `after` that `cron` matches, in whole seconds (croner
/// keeps `after`'s fraction of a second when the pattern names seconds).
pub fn next_fire(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::Timelike;
    let t = cron.find_next_occurrence(&after, false).ok()?;
    Some(t.with_nanosecond(0).unwrap_or(t))
}

/// The shortest gap between the next few fires of `cron` after `from`.
pub fn min_interval(cron: &Cron, from: DateTime<Utc>) -> Option<Duration> {
    let mut at = next_fire(cron, from)?;
    let mut min: Option<Duration> = None;
    for _ in 0..8 {
        let Some(next) = next_fire(cron, at) else {
            break;
        };
        let gap = next - at;
        min = Some(min.map_or(gap, |m| m.min(gap)));
        at = next;
    }
    min
}

/// A fire of a run type (or binlogs, `None`) is ignored when the last run started
/// less than this before it: half the period, or half the schedule's interval when
/// that is shorter (a test schedule of every 3 s must still fire every 3 s).
pub fn guard_window(run_type: Option<RunType>, cron: &Cron, now: DateTime<Utc>) -> Duration {
    let half_interval = min_interval(cron, now).map(|d| d / 2);
    let half_period = run_type.map(|rt| Duration::seconds(rt.period_seconds() as i64 / 2));
    match (half_interval, half_period) {
        (Some(i), Some(p)) => i.min(p),
        (Some(i), None) => i,
        (None, Some(p)) => p,
        (None, None) => Duration::zero(),
    }
}

/// Whether a fire at `now` should enqueue, given when the last run started.
/// A last start in the future means the clock was set back since; it counts as
/// recent, unless it is more than `period` ahead, which means the clock was wrong then.
pub fn should_fire(
    now: DateTime<Utc>,
    last_start: Option<DateTime<Utc>>,
    window: Duration,
    period: Duration,
) -> bool {
    match last_start {
        None => true,
        Some(t) => {
            let ago = now - t;
            ago >= window || ago < -period
        }
    }
}

/// Run types to enqueue at start, most frequent first. `enabled` is most frequent
/// first; `records` gives each run type's last attempt and last success; `window`
/// the guard window of each run type (a run that started that recently is not
/// repeated, so a crash loop does not start a backup per restart).
pub fn catch_up(
    now: DateTime<Utc>,
    enabled: &[RunType],
    records: impl Fn(RunType) -> RunRecord,
    window: impl Fn(RunType) -> Duration,
) -> Vec<RunType> {
    enabled
        .iter()
        .enumerate()
        .filter(|(i, &rt)| {
            let rec = records(rt);
            let period = Duration::seconds(rt.period_seconds() as i64);
            let overdue = rec.last_success.is_none_or(|t| now - t >= period);
            // A run type that was never tried waits for its schedule; only the most
            // frequent one starts a fresh install.
            let tried = rec.last_run.is_some() || *i == 0;
            overdue && tried && should_fire(now, rec.last_run, window(rt), period)
        })
        .map(|(_, &rt)| rt)
        .collect()
}

/// When each enabled run type fires next (no jitter).
pub fn next_runs(config: &Config, now: DateTime<Utc>) -> Vec<(RunType, DateTime<Utc>)> {
    config
        .enabled_run_types
        .iter()
        .filter_map(|&rt| next_fire(&config.schedule.spec(rt).cron, now).map(|t| (rt, t)))
        .collect()
}

/// What a fire is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    Run(RunType),
    Binlog,
    /// A restore drill (`[verify] schedule`).
    Drill,
}

/// The tokio-cron-scheduler jobs of the current config.
pub struct Scheduler {
    sched: tokio::sync::Mutex<JobScheduler>,
    jobs: Mutex<Vec<Uuid>>,
    queue: Arc<Queue>,
}

impl Scheduler {
    /// Starts firing the schedules of the queue's current config.
    pub async fn start(queue: Arc<Queue>) -> anyhow::Result<Arc<Scheduler>> {
        let sched = JobScheduler::new().await?;
        sched.start().await?;
        let s = Arc::new(Scheduler {
            sched: tokio::sync::Mutex::new(sched),
            jobs: Mutex::new(Vec::new()),
            queue,
        });
        s.apply(&s.queue.engine().config).await?;
        Ok(s)
    }

    /// Replaces the schedules with those of `config`.
    pub async fn apply(self: &Arc<Self>, config: &Config) -> anyhow::Result<()> {
        let sched = self.sched.lock().await;
        let old: Vec<Uuid> = std::mem::take(&mut *self.jobs.lock().expect("jobs lock"));
        for id in old {
            sched.remove(&id).await?;
        }
        let mut fires: Vec<(Fire, &CronSpec)> = config
            .enabled_run_types
            .iter()
            .map(|&rt| (Fire::Run(rt), config.schedule.spec(rt)))
            .collect();
        if let Some(spec) = &config.schedule.binlog {
            fires.push((Fire::Binlog, spec));
        }
        if let Some(spec) = &config.verify.schedule {
            fires.push((Fire::Drill, spec));
        }
        let mut ids = Vec::new();
        for (fire, spec) in fires {
            let queue = self.queue.clone();
            let job = Job::new_async(spec.expr.as_str(), move |_, _| {
                let queue = queue.clone();
                Box::pin(async move { on_fire(&queue, fire).await })
            })?;
            ids.push(sched.add(job).await?);
            tracing::info!(fire = ?fire, schedule = %spec.written, "scheduled (UTC)");
        }
        *self.jobs.lock().expect("jobs lock") = ids;
        Ok(())
    }

    pub async fn shutdown(&self) {
        let mut sched = self.sched.lock().await;
        if let Err(e) = sched.shutdown().await {
            tracing::warn!(error = %e, "stopping the scheduler");
        }
    }
}

/// A cron fire: wait the jitter, then enqueue unless the guard says it already ran.
async fn on_fire(queue: &Queue, fire: Fire) {
    let jitter = queue.engine().config.schedule.jitter;
    if !jitter.is_zero() {
        tokio::time::sleep(random_below(jitter)).await;
    }
    // The config may have been reloaded while we waited.
    let engine = queue.engine();
    let config = &engine.config;
    let now = Utc::now();
    let (spec, run_type, last) = match fire {
        Fire::Run(rt) => {
            if !config.enabled_run_types.contains(&rt) {
                return;
            }
            (config.schedule.spec(rt), Some(rt), queue.last_run_start(rt))
        }
        Fire::Binlog => match &config.schedule.binlog {
            Some(spec) => (spec, None, queue.last_binlog_start()),
            None => return,
        },
        // A drill already queued or running is not queued twice (enqueue_drill); a
        // clock set back may repeat one, which costs time, not data.
        Fire::Drill => match &config.verify.schedule {
            Some(spec) => (spec, None, None),
            None => return,
        },
    };
    let window = guard_window(run_type, &spec.cron, now);
    let period = run_type.map_or(window * 2, |rt| {
        Duration::seconds(rt.period_seconds() as i64)
    });
    if !should_fire(now, last, window, period) {
        tracing::info!(fire = ?fire, last_start = ?last, "scheduled run skipped: the last one started less than {} s ago (clock change?)", window.num_seconds());
        return;
    }
    let result = match fire {
        Fire::Run(rt) => queue.enqueue_run(rt).map(|v| v.len()),
        Fire::Binlog => queue.enqueue_binlog().map(|_| 1),
        Fire::Drill => queue.enqueue_drill().map(|_| 1),
    };
    match result {
        Ok(n) => tracing::info!(fire = ?fire, jobs = n, "scheduled run queued"),
        Err(e) => tracing::warn!(fire = ?fire, error = %e, "scheduled run not queued"),
    }
}

/// Enqueues what is due at start; see [`catch_up`].
pub fn run_catch_up(queue: &Queue, state: &crate::state::StateStore) {
    let engine = queue.engine();
    let config = &engine.config;
    let now = Utc::now();
    let due = catch_up(
        now,
        &config.enabled_run_types,
        |rt| state.run_record(rt),
        |rt| guard_window(Some(rt), &config.schedule.spec(rt).cron, now),
    );
    for rt in due {
        tracing::info!(run_type = %rt, "run type is due at start (catch-up)");
        if let Err(e) = queue.enqueue_run(rt) {
            tracing::error!(error = %e, "could not enqueue the catch-up run");
        }
    }
}

/// A random duration in `0..max`, from the OS-seeded hasher (no RNG crate needed for
/// spreading start times).
fn random_below(max: StdDuration) -> StdDuration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let millis = max.as_millis().max(1) as u64;
    StdDuration::from_millis(h.finish() % millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};
    use std::collections::BTreeMap;

    use crate::config::default_schedule;

    fn cron(rt: RunType) -> Cron {
        CronSpec::parse(default_schedule(rt)).unwrap().cron
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// Fires every schedule of `enabled` between `from` and `to` on a simulated clock,
    /// through the guard, and counts the runs that would be enqueued. `clock` maps the
    /// true time to what the host's clock says (to simulate clock changes).
    fn simulate(
        enabled: &[RunType],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        clock: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
        last: &mut BTreeMap<RunType, DateTime<Utc>>,
    ) -> BTreeMap<RunType, usize> {
        let mut counts = BTreeMap::new();
        for &rt in enabled {
            counts.insert(rt, 0);
        }
        // Events in true time; the scheduler sees the host clock, like tokio-cron-scheduler.
        let mut events: Vec<(DateTime<Utc>, RunType)> = Vec::new();
        for &rt in enabled {
            let c = cron(rt);
            // Walk the host clock: each fire is when the host clock reaches a match.
            let mut t = from;
            while t < to {
                let host = clock(t);
                match next_fire(&c, host) {
                    Some(next) => {
                        // Advance true time by the same amount the host clock needs.
                        let step = next - host;
                        t += step;
                        if t < to {
                            events.push((t, rt));
                        }
                    }
                    None => break,
                }
            }
        }
        events.sort();
        for (t, rt) in events {
            let now = clock(t);
            let c = cron(rt);
            let period = Duration::seconds(rt.period_seconds() as i64);
            if should_fire(
                now,
                last.get(&rt).copied(),
                guard_window(Some(rt), &c, now),
                period,
            ) {
                *counts.get_mut(&rt).unwrap() += 1;
                last.insert(rt, now);
            }
        }
        counts
    }

    #[test]
    fn defaults_fire_at_crons_nickname_times() {
        let t = at(2026, 11, 25, 10, 17); // a Wednesday
        assert_eq!(
            next_fire(&cron(RunType::Hourly), t),
            Some(at(2026, 11, 25, 11, 0))
        );
        assert_eq!(
            next_fire(&cron(RunType::Daily), t),
            Some(at(2026, 11, 26, 0, 0))
        );
        let weekly = next_fire(&cron(RunType::Weekly), t).unwrap();
        assert_eq!(weekly, at(2026, 11, 29, 0, 0));
        assert_eq!(weekly.weekday(), chrono::Weekday::Sun);
        assert_eq!(
            next_fire(&cron(RunType::Monthly), t),
            Some(at(2026, 12, 1, 0, 0))
        );
        assert_eq!(
            next_fire(&cron(RunType::Yearly), t),
            Some(at(2027, 1, 1, 0, 0))
        );
        // Strictly after: a fire at exactly 11:00 is followed by 12:00.
        assert_eq!(
            next_fire(&cron(RunType::Hourly), at(2026, 11, 25, 11, 0)),
            Some(at(2026, 11, 25, 12, 0))
        );
    }

    #[test]
    fn a_simulated_day_fires_each_run_type_the_right_number_of_times() {
        // Sunday 1 February 2026: hourly, daily, weekly and monthly all fire at 00:00.
        let from = at(2026, 1, 31, 23, 59);
        let to = at(2026, 2, 1, 23, 59);
        let mut last = BTreeMap::new();
        let counts = simulate(&RunType::ALL, from, to, |t| t, &mut last);
        assert_eq!(counts[&RunType::Hourly], 24);
        assert_eq!(counts[&RunType::Daily], 1);
        assert_eq!(counts[&RunType::Weekly], 1);
        assert_eq!(counts[&RunType::Monthly], 1);
        assert_eq!(counts[&RunType::Yearly], 0);
    }

    #[test]
    fn a_simulated_year_fires_each_run_type_the_right_number_of_times() {
        let from = at(2025, 12, 31, 23, 59);
        let to = at(2026, 12, 31, 23, 59);
        let mut last = BTreeMap::new();
        let counts = simulate(&RunType::ALL, from, to, |t| t, &mut last);
        assert_eq!(counts[&RunType::Hourly], 365 * 24);
        assert_eq!(counts[&RunType::Daily], 365);
        assert_eq!(counts[&RunType::Weekly], 52); // 2026 has 52 Sundays
        assert_eq!(counts[&RunType::Monthly], 12);
        assert_eq!(counts[&RunType::Yearly], 1);
    }

    #[test]
    fn disabled_run_types_never_run() {
        let from = at(2025, 12, 31, 23, 59);
        let to = at(2026, 3, 1, 0, 30);
        let enabled = [RunType::Daily, RunType::Monthly];
        let mut last = BTreeMap::new();
        let counts = simulate(&enabled, from, to, |t| t, &mut last);
        assert_eq!(counts.get(&RunType::Hourly), None);
        assert_eq!(counts.get(&RunType::Weekly), None);
        assert_eq!(counts.get(&RunType::Yearly), None);
        assert_eq!(counts[&RunType::Daily], 31 + 28 + 1);
        assert_eq!(counts[&RunType::Monthly], 3);
        // Catch-up ignores them too, however old.
        let due = catch_up(to, &enabled, |_| RunRecord::default(), |_| Duration::zero());
        assert_eq!(due, vec![RunType::Daily]);
    }

    #[test]
    fn the_clock_set_back_an_hour_does_not_run_hourly_twice() {
        // At 10:30 true time the host clock jumps back to 09:30 and stays an hour behind.
        let jump = at(2026, 11, 25, 10, 30);
        let clock = |t: DateTime<Utc>| {
            if t >= jump {
                t - Duration::hours(1)
            } else {
                t
            }
        };
        let from = at(2026, 11, 25, 7, 59);
        let to = at(2026, 11, 25, 13, 59);
        let mut last = BTreeMap::new();
        let counts = simulate(&[RunType::Hourly], from, to, clock, &mut last);
        // Without the guard: 08, 09, 10, then 10 again (host) at 11:00 true, 11, 12 = 6 runs.
        // The repeated host-10:00 is skipped: its last run (host 10:00) is "now".
        assert_eq!(counts[&RunType::Hourly], 5);
    }

    #[test]
    fn the_clock_set_forward_runs_each_type_once_not_per_missed_period() {
        // The host clock jumps 3 days ahead at 10:30.
        let jump = at(2026, 11, 25, 10, 30);
        let clock = |t: DateTime<Utc>| {
            if t >= jump {
                t + Duration::days(3)
            } else {
                t
            }
        };
        let from = at(2026, 11, 25, 9, 59);
        let to = at(2026, 11, 25, 11, 1);
        let mut last = BTreeMap::new();
        let counts = simulate(
            &[RunType::Hourly, RunType::Daily],
            from,
            to,
            clock,
            &mut last,
        );
        // 10:00, then (host 28th 11:00) once; daily fires 0 times in true time 10:30..11:01
        // because the next daily is host midnight.
        assert_eq!(counts[&RunType::Hourly], 2);
        assert_eq!(counts[&RunType::Daily], 0);
    }

    #[test]
    fn dst_does_not_matter_in_utc() {
        // Europe switches on 29 March 2026 at 01:00 UTC; UTC schedules don't notice.
        let from = at(2026, 3, 28, 23, 59);
        let to = at(2026, 3, 29, 23, 59);
        let mut last = BTreeMap::new();
        let counts = simulate(
            &[RunType::Hourly, RunType::Daily],
            from,
            to,
            |t| t,
            &mut last,
        );
        assert_eq!(counts[&RunType::Hourly], 24);
        assert_eq!(counts[&RunType::Daily], 1);
    }

    fn rec(last_run: Option<DateTime<Utc>>, last_success: Option<DateTime<Utc>>) -> RunRecord {
        RunRecord {
            last_run,
            last_success,
            ..RunRecord::default()
        }
    }

    #[test]
    fn catch_up_after_a_3_day_outage_enqueues_each_due_run_type_once() {
        let down = at(2026, 11, 22, 10, 5);
        let now = down + Duration::days(3);
        let mut records = BTreeMap::new();
        records.insert(RunType::Hourly, rec(Some(down), Some(down)));
        records.insert(
            RunType::Daily,
            rec(
                Some(down - Duration::hours(10)),
                Some(down - Duration::hours(10)),
            ),
        );
        // Weekly ran 5 days ago: not overdue. Monthly ran 40 days ago: overdue.
        records.insert(
            RunType::Weekly,
            rec(Some(now - Duration::days(5)), Some(now - Duration::days(5))),
        );
        records.insert(
            RunType::Monthly,
            rec(
                Some(now - Duration::days(40)),
                Some(now - Duration::days(40)),
            ),
        );
        // Yearly never ran: it waits for 1 January.
        let window = |rt: RunType| guard_window(Some(rt), &cron(rt), now);
        let due = catch_up(
            now,
            &RunType::ALL,
            |rt| records.get(&rt).cloned().unwrap_or_default(),
            window,
        );
        assert_eq!(due, vec![RunType::Hourly, RunType::Daily, RunType::Monthly]);
        // Each once: the returned list has no duplicates whatever the outage length.
        let much_later = now + Duration::days(300);
        let due = catch_up(
            much_later,
            &RunType::ALL,
            |rt| records.get(&rt).cloned().unwrap_or_default(),
            window,
        );
        assert_eq!(
            due,
            vec![
                RunType::Hourly,
                RunType::Daily,
                RunType::Weekly,
                RunType::Monthly
            ]
        );
    }

    #[test]
    fn catch_up_on_a_fresh_host_runs_only_the_most_frequent_enabled_type() {
        let now = at(2026, 11, 25, 10, 5);
        let none = |_| RunRecord::default();
        let w = |_| Duration::minutes(30);
        assert_eq!(catch_up(now, &RunType::ALL, none, w), vec![RunType::Hourly]);
        assert_eq!(
            catch_up(now, &[RunType::Weekly, RunType::Yearly], none, w),
            vec![RunType::Weekly]
        );
        assert!(catch_up(now, &[], none, w).is_empty());
    }

    #[test]
    fn catch_up_retries_a_failed_run_but_not_one_that_just_started() {
        let now = at(2026, 11, 25, 10, 5);
        let failed_long_ago = rec(
            Some(now - Duration::hours(20)),
            Some(now - Duration::days(2)),
        );
        let just_failed = rec(
            Some(now - Duration::minutes(1)),
            Some(now - Duration::days(2)),
        );
        let w = |rt: RunType| Duration::seconds(rt.period_seconds() as i64 / 2);
        assert_eq!(
            catch_up(now, &[RunType::Daily], |_| failed_long_ago.clone(), w),
            vec![RunType::Daily]
        );
        assert!(catch_up(now, &[RunType::Daily], |_| just_failed.clone(), w).is_empty());
    }

    #[test]
    fn guard_window_follows_short_custom_schedules() {
        let every3 = CronSpec::parse("*/3 * * * * *").unwrap().cron;
        let now = at(2026, 11, 25, 10, 5);
        assert_eq!(
            guard_window(Some(RunType::Hourly), &every3, now),
            Duration::milliseconds(1500)
        );
        assert_eq!(
            guard_window(Some(RunType::Hourly), &cron(RunType::Hourly), now),
            Duration::minutes(30)
        );
        assert_eq!(
            guard_window(Some(RunType::Daily), &cron(RunType::Daily), now),
            Duration::hours(12)
        );
        let binlog = CronSpec::parse("0 */5 * * * *").unwrap().cron;
        assert_eq!(guard_window(None, &binlog, now), Duration::seconds(150));
    }

    #[test]
    fn should_fire_cases() {
        let now = at(2026, 11, 25, 10, 0);
        let w = Duration::minutes(30);
        let p = Duration::hours(1);
        assert!(should_fire(now, None, w, p));
        assert!(should_fire(now, Some(now - Duration::minutes(30)), w, p));
        assert!(!should_fire(now, Some(now - Duration::minutes(29)), w, p));
        // The clock was set back: the last start is "in the future".
        assert!(!should_fire(now, Some(now + Duration::minutes(50)), w, p));
        // ...by more than a period: the clock was wrong back then; run.
        assert!(should_fire(now, Some(now + Duration::hours(2)), w, p));
    }

    #[test]
    fn random_below_stays_below() {
        for _ in 0..100 {
            assert!(random_below(StdDuration::from_secs(2)) < StdDuration::from_secs(2));
        }
    }
}
