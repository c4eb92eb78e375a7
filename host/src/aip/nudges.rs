//! Conscience nudges: the notice text, whether a violation creates one (the agent's strategy),
//! and their delivery into the agent's next request — claimed atomically before the request is
//! forwarded, marked delivered only once the upstream accepted it, released otherwise.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{AgentSettings, NudgeStrategy};

/// First line of every notice; several nudges delivered together share it.
pub const NOTICE_HEADER: &str = "[INTEGRITY NOTICE — Conscience Protocol]";
/// Pending nudges older than this are not delivered (the observer expires them).
pub const NUDGE_MAX_AGE: Duration = Duration::from_secs(4 * 3600);
/// How long a claim holds a nudge for one request before another request may take it.
pub const CLAIM_FOR: Duration = Duration::from_secs(60);
/// Nudges delivered with one request, oldest first.
pub const MAX_NUDGES_PER_REQUEST: u32 = 5;
/// Concerns summary when a violation names none.
pub const NO_CONCERNS: &str = "Boundary violation detected";

/// The notice for one violation, exactly as the original worded it.
pub fn notice(checkpoint_id: &str, concerns_summary: &str) -> String {
    format!(
        "{NOTICE_HEADER}\nYour previous response (checkpoint {checkpoint_id}) was flagged as a boundary violation.\nConcern: {concerns_summary}\nReview your approach and self-correct. This notice is visible in your transparency timeline."
    )
}

/// `category: description` items joined with `; `, or [`NO_CONCERNS`].
pub fn concerns_summary<'a>(concerns: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<String> = concerns
        .into_iter()
        .map(|(category, description)| format!("{category}: {description}"))
        .collect();
    if items.is_empty() {
        NO_CONCERNS.to_owned()
    } else {
        items.join("; ")
    }
}

/// Several notices as one system note: one header, the bodies separated by blank lines.
pub fn combine(contents: &[String]) -> Option<String> {
    if contents.is_empty() {
        return None;
    }
    let bodies: Vec<&str> = contents
        .iter()
        .map(|c| {
            c.strip_prefix(NOTICE_HEADER)
                .map(|rest| rest.trim_start_matches('\n'))
                .unwrap_or(c)
        })
        .collect();
    Some(format!("{NOTICE_HEADER}\n{}", bodies.join("\n\n")))
}

/// Whether a boundary violation creates a nudge under the agent's strategy; `violations` is the
/// session's boundary violations including this one, `sample` a uniform number in 0..100.
pub fn should_nudge(settings: &AgentSettings, violations: u64, sample: u8) -> bool {
    match settings.nudge_strategy {
        NudgeStrategy::Off => false,
        NudgeStrategy::Sampling => sample < settings.nudge_rate,
        NudgeStrategy::Threshold => violations >= u64::from(settings.nudge_threshold),
        NudgeStrategy::Always => true,
    }
}

/// A uniform number in 0..100 for sampling.
pub fn sample_percent() -> u8 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut byte = [0u8; 2];
    if SystemRandom::new().fill(&mut byte).is_err() {
        return 0;
    }
    (u16::from_le_bytes(byte) % 100) as u8
}

/// The value of the cache flag saying an agent has pending nudges: when the newest was created.
pub fn flag_value(created_at: DateTime<Utc>) -> String {
    created_at.timestamp_millis().to_string()
}

/// Whether a flag is old enough to be cleared when a claim finds nothing: by then the writer has
/// written the nudge that set it (unless the database is down, when claims fail anyway).
pub fn flag_is_stale(value: &str, now: DateTime<Utc>) -> bool {
    value
        .parse::<i64>()
        .map(|ms| now.timestamp_millis() - ms > 60_000)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_text_is_exact() {
        let text = notice(
            "ic-1",
            &concerns_summary([("prompt_injection", "obeys the page")]),
        );
        assert_eq!(
            text,
            "[INTEGRITY NOTICE — Conscience Protocol]\nYour previous response (checkpoint ic-1) was flagged as a boundary violation.\nConcern: prompt_injection: obeys the page\nReview your approach and self-correct. This notice is visible in your transparency timeline."
        );
        assert_eq!(concerns_summary([]), NO_CONCERNS);
    }

    #[test]
    fn several_notices_share_one_header() {
        let combined = combine(&[notice("ic-1", "a: b"), notice("ic-2", "c: d")]).unwrap();
        assert_eq!(combined.matches(NOTICE_HEADER).count(), 1);
        assert!(
            combined.contains("transparency timeline.\n\nYour previous response (checkpoint ic-2)")
        );
        assert!(combine(&[]).is_none());
    }

    #[test]
    fn strategies() {
        let mut s = AgentSettings::default();
        assert!(should_nudge(&s, 1, 99), "always");
        s.nudge_strategy = NudgeStrategy::Off;
        assert!(!should_nudge(&s, 9, 0));
        s.nudge_strategy = NudgeStrategy::Threshold;
        s.nudge_threshold = 3;
        assert!(!should_nudge(&s, 2, 0));
        assert!(should_nudge(&s, 3, 0));
        s.nudge_strategy = NudgeStrategy::Sampling;
        s.nudge_rate = 30;
        assert!(should_nudge(&s, 1, 29));
        assert!(!should_nudge(&s, 1, 30));
    }

    #[test]
    fn flags_go_stale_after_a_minute() {
        let now = Utc::now();
        assert!(!flag_is_stale(&flag_value(now), now));
        assert!(flag_is_stale(
            &flag_value(now - chrono::Duration::seconds(61)),
            now
        ));
        assert!(flag_is_stale("garbage", now));
    }
}
