//! A circuit breaker with half-open probing (REFERENCE.md §11 item 24: the original had none).
//!
//! Closed: calls go through; `failures` consecutive failures open it. Open: calls fail fast for
//! `open_for`. Then half-open: exactly one caller gets a *probe* permit while every other caller
//! still fails fast; the probe's success (or a neutral answer, which proves the endpoint is up)
//! closes the breaker, its failure opens it for another period, and a probe that is dropped
//! unfinished (its caller was cancelled) hands the probe to the next caller.
//!
//! Only the probe moves the breaker out of open/half-open: a slow call that started while the
//! breaker was still closed and ends after it opened changes nothing. Time is passed in by the
//! caller, so the state machine is tested without sleeping.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use super::settings::BreakerSettings;

/// What a finished call tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered usefully.
    Success,
    /// The endpoint is unhealthy: timeout, connection error, 408, 429, 5xx (529 included), or an
    /// unreadable 2xx answer.
    Failure,
    /// The endpoint is up but refused this request (another 4xx: our request, key or model is
    /// at fault). Does not count towards opening; a probe with this outcome closes the breaker.
    Neutral,
}

/// The breaker's state, as exported by the `*_breaker_state` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through (gauge 0).
    Closed,
    /// Calls fail fast (gauge 1).
    Open,
    /// One probe is allowed (gauge 2).
    HalfOpen,
}

impl BreakerState {
    /// The gauge value.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl State {
    fn public(self) -> BreakerState {
        match self {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A call refused because the breaker is open (or half-open with its probe in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time until the breaker lets a probe through (zero while a probe is in flight).
    pub retry_in: Duration,
}

/// The breaker. Share it behind an `Arc` (the clients do).
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    settings: BreakerSettings,
    state: Mutex<State>,
    gauge: Option<IntGauge>,
}

impl Breaker {
    /// A closed breaker; `name` appears in its log lines; `gauge` follows its state.
    pub fn new(name: &'static str, settings: BreakerSettings, gauge: Option<IntGauge>) -> Self {
        if let Some(g) = &gauge {
            g.set(BreakerState::Closed.gauge_value());
        }
        Self {
            name,
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
            gauge,
        }
    }

    /// The current state (an open breaker whose period has run out still reads `Open` until a
    /// caller asks for a permit).
    pub fn state(&self) -> BreakerState {
        self.lock().public()
    }

    /// Asks to make a call at `now`.
    pub fn acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Permit::new(self, false)),
            State::Open { until } if now < until => Err(Rejected {
                retry_in: until - now,
            }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.set(&mut state, State::HalfOpen { probing: true });
                Ok(Permit::new(self, true))
            }
            State::HalfOpen { probing: true } => Err(Rejected {
                retry_in: Duration::ZERO,
            }),
        }
    }

    fn record(&self, probe: bool, outcome: Outcome, now: Instant) {
        let mut state = self.lock();
        let reopen = State::Open {
            until: now + self.settings.open_for,
        };
        match (*state, probe, outcome) {
            (State::HalfOpen { .. }, true, Outcome::Success | Outcome::Neutral) => {
                self.set(&mut state, State::Closed { failures: 0 });
                tracing::info!(breaker = self.name, "analysis circuit breaker closed");
            }
            (State::HalfOpen { .. }, true, Outcome::Failure) => {
                self.set(&mut state, reopen);
                tracing::warn!(
                    breaker = self.name,
                    open_for_ms = self.open_ms(),
                    "analysis circuit breaker probe failed; open again"
                );
            }
            (State::Closed { .. }, false, Outcome::Success) => {
                *state = State::Closed { failures: 0 };
            }
            (State::Closed { failures }, false, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failures {
                    self.set(&mut state, reopen);
                    tracing::warn!(
                        breaker = self.name,
                        failures,
                        open_for_ms = self.open_ms(),
                        "analysis circuit breaker opened"
                    );
                } else {
                    *state = State::Closed { failures };
                }
            }
            // Neutral answers in the closed state, and late answers of calls that started
            // before the breaker opened, change nothing.
            _ => {}
        }
    }

    fn abandon_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing: true } = *state {
            self.set(&mut state, State::HalfOpen { probing: false });
        }
    }

    fn set(&self, slot: &mut State, next: State) {
        *slot = next;
        if let Some(g) = &self.gauge {
            g.set(next.public().gauge_value());
        }
    }

    fn open_ms(&self) -> u64 {
        u64::try_from(self.settings.open_for.as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Permission to make one call. Report how it went with [`Permit::record`]; a probe permit
/// dropped without a report passes the probe on to the next caller.
#[derive(Debug)]
#[must_use = "report the call's outcome with `record`"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            recorded: false,
        }
    }

    /// Whether this is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome at `now`.
    pub fn record(mut self, outcome: Outcome, now: Instant) {
        self.recorded = true;
        self.breaker.record(self.probe, outcome, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, open_secs: u64) -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures,
                open_for: Duration::from_secs(open_secs),
            },
            Some(IntGauge::new("test_breaker_state", "test").unwrap()),
        )
    }

    fn fail(b: &Breaker, now: Instant) {
        b.acquire(now).unwrap().record(Outcome::Failure, now);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 60);
        let t0 = Instant::now();
        fail(&b, t0);
        fail(&b, t0);
        // A success resets the count.
        b.acquire(t0).unwrap().record(Outcome::Success, t0);
        fail(&b, t0);
        fail(&b, t0);
        // Neutral answers neither count nor reset.
        b.acquire(t0).unwrap().record(Outcome::Neutral, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.gauge.as_ref().unwrap().get(), 1);
        let rejected = b.acquire(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(rejected.retry_in, Duration::from_secs(50));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let b = breaker(1, 60);
        let t0 = Instant::now();
        fail(&b, t0);
        let later = t0 + Duration::from_secs(60);
        let probe = b.acquire(later).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.gauge.as_ref().unwrap().get(), 2);
        for _ in 0..5 {
            assert_eq!(b.acquire(later).unwrap_err().retry_in, Duration::ZERO);
        }
        probe.record(Outcome::Success, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.gauge.as_ref().unwrap().get(), 0);
        assert!(!b.acquire(later).unwrap().is_probe());
    }

    #[test]
    fn failed_probe_reopens_for_a_full_period() {
        let b = breaker(2, 30);
        let t0 = Instant::now();
        fail(&b, t0);
        fail(&b, t0);
        let t1 = t0 + Duration::from_secs(31);
        b.acquire(t1).unwrap().record(Outcome::Failure, t1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.acquire(t1 + Duration::from_secs(29))
                .unwrap_err()
                .retry_in,
            Duration::from_secs(1)
        );
        let t2 = t1 + Duration::from_secs(30);
        let probe = b.acquire(t2).unwrap();
        assert!(probe.is_probe());
        // A neutral answer proves the endpoint is up.
        probe.record(Outcome::Neutral, t2);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn dropped_probe_passes_the_probe_on() {
        let b = breaker(1, 1);
        let t0 = Instant::now();
        fail(&b, t0);
        let t1 = t0 + Duration::from_secs(1);
        drop(b.acquire(t1).unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.acquire(t1).unwrap();
        assert!(probe.is_probe());
        assert!(b.acquire(t1).is_err());
        probe.record(Outcome::Success, t1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_answers_of_old_calls_change_nothing() {
        let b = breaker(1, 60);
        let t0 = Instant::now();
        let slow = b.acquire(t0).unwrap();
        fail(&b, t0);
        assert_eq!(b.state(), BreakerState::Open);
        slow.record(Outcome::Success, t0);
        assert_eq!(b.state(), BreakerState::Open);
        let t1 = t0 + Duration::from_secs(60);
        let slow = b.acquire(t0).unwrap_err();
        assert_eq!(slow.retry_in, Duration::from_secs(60));
        let probe = b.acquire(t1).unwrap();
        let old = {
            // An old normal permit finishing with a failure during the probe is ignored too.
            b.record(false, Outcome::Failure, t1);
            b.state()
        };
        assert_eq!(old, BreakerState::HalfOpen);
        probe.record(Outcome::Success, t1);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
