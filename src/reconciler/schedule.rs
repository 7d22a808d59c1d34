//! Cron schedules of KafkaBackup and KafkaBackupValidation, as pure functions of fixed clocks.
//!
//! Expressions have 6 or 7 fields, seconds first, evaluated in UTC (the `cron` crate). The anchor of
//! a schedule is `status.lastScheduleTime` (the last tick a run was started for), or the creation
//! time before the first run. [`decide`] answers, at `now`:
//!
//! - the tick to fire now, if any: the latest tick after the anchor, if it is at most
//!   [`STARTING_DEADLINE`] old and did not pass while the previous run was still running;
//! - how many ticks after the anchor are not fired (the operator was down, or a run was still
//!   running): reported, never replayed;
//! - the next tick after `now`.
//!
//! Because the reconciler persists the fired tick as `lastScheduleTime` before it starts the run,
//! and a tick is only fired when it is later than the anchor, a tick fires at most once, across
//! restarts and leader changes.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

/// How late a tick may still be fired (the operator restarted or the leader changed around it).
pub const STARTING_DEADLINE: Duration = Duration::minutes(5);

/// Ticks counted at most when finding missed ones (beyond that: "more than").
pub const MAX_COUNTED: u64 = 10_000;

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// Not a cron expression the operator understands.
    #[error(
        "spec.schedule: {expression:?} is not a cron expression with 6 or 7 fields, seconds first (sec min hour day-of-month month day-of-week [year]): {reason}"
    )]
    Invalid {
        /// The expression.
        expression: String,
        /// Why.
        reason: String,
    },
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule(cron::Schedule);

impl Schedule {
    /// Parses a 6- or 7-field expression.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let invalid = |reason: String| ScheduleError::Invalid {
            expression: expression.to_owned(),
            reason,
        };
        if !(6..=7).contains(&fields) {
            return Err(invalid(format!("it has {fields} fields")));
        }
        cron::Schedule::from_str(expression)
            .map(Schedule)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.after(&t).next()
    }
}

/// How a tick is named in messages and Events: RFC 3339 in UTC, to the second, as in
/// `status.lastScheduleTime`.
pub fn tick_label(tick: DateTime<Utc>) -> String {
    tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a schedule asks for at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// The tick to start a run for now.
    pub fire: Option<DateTime<Utc>>,
    /// Ticks after the anchor that are not fired.
    pub missed: u64,
    /// `missed` stopped counting at [`MAX_COUNTED`].
    pub missed_capped: bool,
    /// The first tick after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// The decision at `now` for a schedule anchored at `last_schedule` (else `created`), whose last
/// run finished at `last_finished`. `running`: a run is in progress (nothing fires). Pure.
pub fn decide(
    schedule: &Schedule,
    last_schedule: Option<DateTime<Utc>>,
    last_finished: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    running: bool,
) -> ScheduleDecision {
    let next = schedule.next_after(now);
    let anchor = last_schedule.unwrap_or(created);
    let mut due = 0u64;
    let mut latest = None;
    let mut capped = false;
    for tick in schedule.0.after(&anchor) {
        if tick > now {
            break;
        }
        due += 1;
        latest = Some(tick);
        if due >= MAX_COUNTED {
            capped = true;
            // Only a tick inside the starting deadline can still fire: find the latest one there.
            let window_start = (now - STARTING_DEADLINE).max(anchor);
            latest = schedule.0.after(&window_start).take_while(|t| *t <= now).last();
            break;
        }
    }
    if running {
        return ScheduleDecision {
            fire: None,
            missed: 0,
            missed_capped: false,
            next,
        };
    }
    let fire = latest.filter(|tick| {
        now - *tick <= STARTING_DEADLINE
            // A tick that passed while the previous run was still running is skipped.
            && last_finished.is_none_or(|finished| *tick >= finished)
    });
    ScheduleDecision {
        fire,
        missed: due - u64::from(fire.is_some() && due > 0),
        missed_capped: capped,
        next,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, h, m, s).unwrap()
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 0 * * * *").unwrap()
    }

    #[test]
    fn parse_needs_six_or_seven_fields() {
        assert!(Schedule::parse("0 0 * * * *").is_ok());
        assert!(Schedule::parse("0 0 2 * * * *").is_ok());
        let e = Schedule::parse("0 * * * *").unwrap_err().to_string();
        assert!(e.contains("5 fields"), "{e}");
        assert!(Schedule::parse("0 0 25 * * *").is_err());
    }

    #[test]
    fn nothing_fires_before_the_first_tick() {
        let d = decide(&hourly(), None, None, at(10, 20, 0), at(10, 59, 59), false);
        assert_eq!(
            d,
            ScheduleDecision {
                fire: None,
                missed: 0,
                missed_capped: false,
                next: Some(at(11, 0, 0))
            }
        );
    }

    #[test]
    fn a_tick_fires_once() {
        // Created 10:20; at 11:00:03 the 11:00 tick fires.
        let d = decide(&hourly(), None, None, at(10, 20, 0), at(11, 0, 3), false);
        assert_eq!(d.fire, Some(at(11, 0, 0)));
        assert_eq!(d.missed, 0);
        assert_eq!(d.next, Some(at(12, 0, 0)));
        // lastScheduleTime 11:00 was persisted before the run: a second look (another replica,
        // a restart, the run already finished) fires nothing until 12:00.
        for finished in [None, Some(at(11, 0, 30))] {
            let again = decide(
                &hourly(),
                Some(at(11, 0, 0)),
                finished,
                at(10, 20, 0),
                at(11, 0, 40),
                false,
            );
            assert_eq!(again.fire, None);
            assert_eq!(again.missed, 0);
        }
        let noon = decide(
            &hourly(),
            Some(at(11, 0, 0)),
            Some(at(11, 0, 30)),
            at(10, 20, 0),
            at(12, 0, 1),
            false,
        );
        assert_eq!(noon.fire, Some(at(12, 0, 0)));
    }

    #[test]
    fn missed_ticks_are_counted_not_replayed() {
        // Last run for 08:00; the operator was down until 11:02: 09:00 and 10:00 are missed, 11:00
        // (2 minutes late) fires, once.
        let d = decide(
            &hourly(),
            Some(at(8, 0, 0)),
            Some(at(8, 10, 0)),
            at(1, 0, 0),
            at(11, 2, 0),
            false,
        );
        assert_eq!(d.fire, Some(at(11, 0, 0)));
        assert_eq!(d.missed, 2);
        // Down until 11:30: 11:00 is too late as well; nothing fires, three are missed.
        let d = decide(
            &hourly(),
            Some(at(8, 0, 0)),
            Some(at(8, 10, 0)),
            at(1, 0, 0),
            at(11, 30, 0),
            false,
        );
        assert_eq!(d.fire, None);
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(at(12, 0, 0)));
    }

    #[test]
    fn a_tick_during_a_run_is_skipped() {
        // Every 10 s; the run for 10:00:00 took until 10:00:25: the ticks 10:00:10 and :20 passed
        // while it ran. At 10:00:26 nothing fires; 10:00:30 fires.
        let every10 = Schedule::parse("*/10 * * * * *").unwrap();
        let d = decide(
            &every10,
            Some(at(10, 0, 0)),
            Some(at(10, 0, 25)),
            at(9, 0, 0),
            at(10, 0, 26),
            false,
        );
        assert_eq!(d.fire, None);
        assert_eq!(d.missed, 2);
        let d = decide(
            &every10,
            Some(at(10, 0, 0)),
            Some(at(10, 0, 25)),
            at(9, 0, 0),
            at(10, 0, 30),
            false,
        );
        assert_eq!(d.fire, Some(at(10, 0, 30)));
        assert_eq!(d.missed, 2);
        // While running, nothing fires.
        let d = decide(
            &every10,
            Some(at(10, 0, 0)),
            None,
            at(9, 0, 0),
            at(10, 0, 10),
            true,
        );
        assert_eq!(d.fire, None);
    }

    #[test]
    fn a_long_outage_is_counted_up_to_a_cap() {
        let every_second = Schedule::parse("* * * * * *").unwrap();
        let d = decide(
            &every_second,
            Some(at(0, 0, 0)),
            None,
            at(0, 0, 0),
            at(23, 0, 0),
            false,
        );
        assert!(d.missed_capped);
        assert_eq!(d.fire, Some(at(23, 0, 0)));
        assert_eq!(d.missed, MAX_COUNTED - 1);
    }
}
