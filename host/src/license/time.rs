//! Time helpers for licenses: Unix seconds now, and RFC 3339 rendering that never panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latest second humantime renders (9999-12-31T23:59:59Z).
const MAX_RENDERABLE: i64 = 253_402_300_799;

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `t` (Unix seconds) as RFC 3339 UTC, e.g. `2026-11-26T07:00:00Z`; values outside years
/// 1970–9999 as `@<seconds>`.
pub fn format_unix(t: i64) -> String {
    match u64::try_from(t) {
        Ok(secs) if t <= MAX_RENDERABLE => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        _ => format!("@{t}"),
    }
}

/// A rough human duration (`3d 4h`, `12m`, `45s`) of `seconds` (absolute value).
pub fn format_span(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_and_out_of_range() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(format_unix(-5), "@-5");
        assert_eq!(format_unix(i64::MAX), format!("@{}", i64::MAX));
        assert_eq!(format_span(90_000), "1d 1h");
        assert_eq!(format_span(-59), "59s");
    }
}
