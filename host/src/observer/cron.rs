//! Five-field cron expressions (`minute hour day-of-month month day-of-week`, UTC): `*`, numbers,
//! ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and `@hourly`/`@daily`. When both the
//! day of month and the day of week are restricted, either may match (as in Vixie cron).

use std::fmt;

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc};

/// How far ahead [`Schedule::next_after`] looks before concluding the expression never matches.
const HORIZON_MINUTES: i64 = 366 * 24 * 60 + 1;

/// Why an expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression `{expression}`: {reason}")]
pub struct CronError {
    /// The expression.
    pub expression: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed cron expression.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({})", self.source)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Schedule {
    type Err = CronError;

    fn from_str(expression: &str) -> Result<Self, CronError> {
        let error = |reason: String| CronError {
            expression: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        let expanded = match trimmed {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(error(format!("expected 5 fields, found {}", fields.len())));
        };
        let weekdays = parse_field(weekday, 0, 7, "day of week").map_err(error)?;
        // 7 is Sunday too.
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        Ok(Self {
            source: trimmed.to_owned(),
            minutes: parse_field(minute, 0, 59, "minute").map_err(error)?,
            hours: parse_field(hour, 0, 23, "hour").map_err(error)?,
            days: parse_field(day, 1, 31, "day of month").map_err(error)?,
            months: parse_field(month, 1, 12, "month").map_err(error)?,
            weekdays,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }
}

/// One field as a bit set of the values it allows.
fn parse_field(field: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step `{step}`"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let number = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| format!("{name}: `{s}` is not in {min}-{max}"))
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("{name}: empty range `{range}`"));
            }
            (a, b)
        } else {
            let a = number(range)?;
            (a, if step > 1 { max } else { a })
        };
        let mut value = from;
        while value <= to {
            bits |= 1 << value;
            value += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// Whether the minute starting at `at` matches.
    pub fn matches(&self, at: DateTime<Utc>) -> bool {
        let bit = |set: u64, value: u32| set & (1 << value) != 0;
        let day = bit(self.days, at.day());
        let weekday = bit(self.weekdays, at.weekday().num_days_from_sunday());
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            _ => day && weekday,
        };
        bit(self.minutes, at.minute())
            && bit(self.hours, at.hour())
            && bit(self.months, at.month())
            && day_ok
    }

    /// The first matching minute strictly after `after`, or `None` if there is none within a
    /// year (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let minute = Duration::minutes(1);
        let mut at = after.duration_trunc(minute).ok()? + minute;
        for _ in 0..HORIZON_MINUTES {
            if self.matches(at) {
                return Some(at);
            }
            at += minute;
        }
        None
    }
}
