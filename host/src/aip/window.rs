//! The analysis window and the streaks computed from it. Checkpoints reach the database through
//! the background writer, a few milliseconds after their verdict; the window of the next check
//! is the database's view merged with what this process produced recently, so drift and
//! containment streaks count every verdict whether or not it has been written yet, and work
//! across requests and pods.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::Verdict;

/// Entries in a session's analysis window (the original's `max_size`).
pub const WINDOW_SIZE: usize = 10;
/// Entries older than this leave the window (the original's `max_age_seconds`).
pub const WINDOW_MAX_AGE: Duration = Duration::from_secs(3600);
/// Sessions (and agents) remembered locally; the oldest are forgotten beyond this.
const MAX_REMEMBERED: usize = 20_000;
/// Verdicts remembered locally per agent for containment streaks.
const AGENT_HISTORY: usize = 64;

/// One checkpoint as the window sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowItem {
    /// `ic-…`.
    pub checkpoint_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The reasoning summary.
    pub reasoning_summary: String,
    /// Concern categories.
    pub categories: Vec<String>,
    /// When the verdict was produced.
    pub timestamp: DateTime<Utc>,
}

/// Recently produced checkpoints of this process, by session and by agent.
#[derive(Debug, Default)]
pub struct RecentCheckpoints {
    inner: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    sessions: HashMap<(String, String), VecDeque<WindowItem>>,
    agents: HashMap<String, VecDeque<(String, Verdict, DateTime<Utc>)>>,
    order: VecDeque<(String, String)>,
}

impl RecentCheckpoints {
    /// Remembers a checkpoint just produced.
    pub fn remember(&self, agent_id: &str, session_id: &str, item: WindowItem) {
        let Ok(mut recent) = self.inner.lock() else {
            return;
        };
        let key = (agent_id.to_owned(), session_id.to_owned());
        if !recent.sessions.contains_key(&key) {
            recent.order.push_back(key.clone());
            while recent.order.len() > MAX_REMEMBERED {
                if let Some(old) = recent.order.pop_front() {
                    recent.sessions.remove(&old);
                    if !recent.order.iter().any(|(a, _)| *a == old.0) {
                        recent.agents.remove(&old.0);
                    }
                }
            }
        }
        let agent = recent.agents.entry(agent_id.to_owned()).or_default();
        agent.push_front((item.checkpoint_id.clone(), item.verdict, item.timestamp));
        agent.truncate(AGENT_HISTORY);
        let session = recent.sessions.entry(key).or_default();
        session.push_back(item);
        while session.len() > WINDOW_SIZE {
            session.pop_front();
        }
    }

    /// This process's recent checkpoints of a session, oldest first.
    pub fn session(&self, agent_id: &str, session_id: &str) -> Vec<WindowItem> {
        self.inner
            .lock()
            .ok()
            .and_then(|r| {
                r.sessions
                    .get(&(agent_id.to_owned(), session_id.to_owned()))
                    .map(|items| items.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// This process's recent verdicts of an agent, newest first.
    pub fn agent(&self, agent_id: &str) -> Vec<(String, Verdict, DateTime<Utc>)> {
        self.inner
            .lock()
            .ok()
            .and_then(|r| r.agents.get(agent_id).map(|v| v.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// Merges the stored window with the local one: union by checkpoint id, oldest first, no entry
/// older than [`WINDOW_MAX_AGE`] before `now`, at most [`WINDOW_SIZE`] (the newest).
pub fn merge_window(
    stored: Vec<WindowItem>,
    local: Vec<WindowItem>,
    now: DateTime<Utc>,
) -> Vec<WindowItem> {
    let mut all = stored;
    for item in local {
        if !all.iter().any(|i| i.checkpoint_id == item.checkpoint_id) {
            all.push(item);
        }
    }
    let oldest = now - chrono::Duration::from_std(WINDOW_MAX_AGE).unwrap_or_default();
    all.retain(|i| i.timestamp >= oldest);
    all.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| a.checkpoint_id.cmp(&b.checkpoint_id))
    });
    let excess = all.len().saturating_sub(WINDOW_SIZE);
    all.drain(..excess);
    all
}

/// Merges stored and local agent verdicts (newest first, by id).
pub fn merge_verdicts(
    stored: Vec<(String, Verdict, DateTime<Utc>)>,
    local: Vec<(String, Verdict, DateTime<Utc>)>,
) -> Vec<(String, Verdict, DateTime<Utc>)> {
    let mut all = stored;
    for item in local {
        if !all.iter().any(|(id, _, _)| *id == item.0) {
            all.push(item);
        }
    }
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
    all
}

/// The streak of consecutive non-clear verdicts ending at the newest entry of `window`
/// (oldest first): its length and the id of its first checkpoint.
pub fn non_clear_streak(window: &[WindowItem]) -> (usize, Option<&WindowItem>) {
    let mut first = None;
    let mut length = 0;
    for item in window.iter().rev() {
        if item.verdict == Verdict::Clear {
            break;
        }
        length += 1;
        first = Some(item);
    }
    (length, first)
}

/// Leading consecutive boundary violations of `verdicts` (newest first).
pub fn violation_streak(verdicts: &[(String, Verdict, DateTime<Utc>)]) -> usize {
    verdicts
        .iter()
        .take_while(|(_, v, _)| *v == Verdict::BoundaryViolation)
        .count()
}

/// What an integrity drift alert says, from the window that includes the current checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// `clear / total` in the window.
    pub integrity_similarity: f64,
    /// `low` (≥ 0.7), `medium` (≥ 0.4) or `high`.
    pub severity: &'static str,
    /// The strict-majority concern category of the streak, mapped to a direction.
    pub direction: &'static str,
    /// Length of the streak.
    pub streak: usize,
    /// Checkpoints of the streak, oldest first.
    pub checkpoint_ids: Vec<String>,
}

/// The drift of a window (oldest first, current checkpoint last) whose non-clear streak is
/// exactly `threshold` long: one alert per streak, raised when the streak reaches the threshold.
pub fn drift_at_threshold(window: &[WindowItem], threshold: usize) -> Option<Drift> {
    let (streak, _) = non_clear_streak(window);
    if streak != threshold || window.is_empty() {
        return None;
    }
    let clear = window
        .iter()
        .filter(|i| i.verdict == Verdict::Clear)
        .count();
    let similarity = clear as f64 / window.len() as f64;
    let severity = if similarity >= 0.7 {
        "low"
    } else if similarity >= 0.4 {
        "medium"
    } else {
        "high"
    };
    let items = &window[window.len() - streak..];
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut total = 0;
    for category in items.iter().flat_map(|i| i.categories.iter()) {
        total += 1;
        match counts.iter_mut().find(|(c, _)| *c == category) {
            Some((_, n)) => *n += 1,
            None => counts.push((category, 1)),
        }
    }
    let majority = counts.iter().find(|(_, n)| *n * 2 > total).map(|(c, _)| *c);
    let direction = match majority {
        Some("prompt_injection") => "injection_pattern",
        Some("value_misalignment") => "value_erosion",
        Some("autonomy_violation") => "autonomy_creep",
        Some("deceptive_reasoning") => "deception_pattern",
        _ => "unknown",
    };
    Some(Drift {
        integrity_similarity: similarity,
        severity,
        direction,
        streak,
        checkpoint_ids: items.iter().map(|i| i.checkpoint_id.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, verdict: Verdict, minutes_ago: i64, categories: &[&str]) -> WindowItem {
        WindowItem {
            checkpoint_id: id.into(),
            verdict,
            reasoning_summary: String::new(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            timestamp: Utc::now() - chrono::Duration::minutes(minutes_ago),
        }
    }

    #[test]
    fn merge_unions_orders_and_bounds() {
        let stored = vec![
            item("a", Verdict::Clear, 90, &[]),
            item("b", Verdict::Clear, 30, &[]),
        ];
        let local = vec![
            item("b", Verdict::Clear, 30, &[]),
            item("c", Verdict::ReviewNeeded, 1, &[]),
        ];
        let merged = merge_window(stored, local, Utc::now());
        let ids: Vec<_> = merged.iter().map(|i| i.checkpoint_id.as_str()).collect();
        assert_eq!(
            ids,
            ["b", "c"],
            "older than an hour dropped, duplicates merged"
        );
        let many: Vec<_> = (0..15)
            .map(|i| item(&format!("x{i:02}"), Verdict::Clear, 30 - i, &[]))
            .collect();
        let merged = merge_window(many, Vec::new(), Utc::now());
        assert_eq!(merged.len(), WINDOW_SIZE);
        assert_eq!(merged[0].checkpoint_id, "x05");
    }

    #[test]
    fn drift_fires_once_per_streak_at_the_threshold() {
        let mut window = vec![item("c0", Verdict::Clear, 10, &[])];
        window.push(item("v1", Verdict::ReviewNeeded, 9, &["prompt_injection"]));
        assert!(drift_at_threshold(&window, 3).is_none());
        window.push(item(
            "v2",
            Verdict::BoundaryViolation,
            8,
            &["prompt_injection"],
        ));
        assert!(drift_at_threshold(&window, 3).is_none());
        window.push(item(
            "v3",
            Verdict::ReviewNeeded,
            7,
            &["value_misalignment"],
        ));
        let drift = drift_at_threshold(&window, 3).unwrap();
        assert_eq!(drift.checkpoint_ids, ["v1", "v2", "v3"]);
        assert_eq!(drift.direction, "injection_pattern");
        assert_eq!(drift.severity, "high", "1 clear of 4");
        window.push(item("v4", Verdict::ReviewNeeded, 6, &[]));
        assert!(
            drift_at_threshold(&window, 3).is_none(),
            "same streak, no second alert"
        );
        window.push(item("c5", Verdict::Clear, 5, &[]));
        assert!(drift_at_threshold(&window, 3).is_none());
    }

    #[test]
    fn violation_streaks_count_leading_violations() {
        let now = Utc::now();
        let v = |id: &str, verdict| (id.to_owned(), verdict, now);
        let verdicts = vec![
            v("3", Verdict::BoundaryViolation),
            v("2", Verdict::BoundaryViolation),
            v("1", Verdict::Clear),
            v("0", Verdict::BoundaryViolation),
        ];
        assert_eq!(violation_streak(&verdicts), 2);
    }

    #[test]
    fn recent_checkpoints_remember_sessions_and_agents() {
        let recent = RecentCheckpoints::default();
        for i in 0..12 {
            recent.remember(
                "smolt-a",
                "s1",
                item(&format!("i{i}"), Verdict::Clear, 12 - i, &[]),
            );
        }
        assert_eq!(recent.session("smolt-a", "s1").len(), WINDOW_SIZE);
        assert_eq!(recent.agent("smolt-a")[0].0, "i11");
        assert!(recent.session("smolt-a", "s2").is_empty());
    }
}
