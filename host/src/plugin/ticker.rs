//! The epoch ticker that enforces plugin call deadlines: it advances the engine's epoch every
//! [`EPOCH_TICK`] while calls run, and parks once no call has run for [`IDLE_TICKS`] ticks, so an
//! idle gateway does not wake 500 times a second. Every entry into a plugin (instantiation
//! included) holds a [`CallGuard`]; the first guard after a parked spell wakes the ticker.
//!
//! Parking and waking cannot miss each other: the ticker announces `parked` before it checks for
//! calls in flight, and a call counts itself before it checks `parked` (both sequentially
//! consistent), so either the ticker sees the call and keeps ticking, or the call sees the
//! announcement and unparks it (an unpark that comes before the park makes the park return at
//! once). Deadlines are epochs counted from the call's start, so a parked spell never shortens
//! one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// Granularity of call deadlines: the ticker advances the engine's epoch this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Ticks without any call before the ticker parks (100 ms).
pub const IDLE_TICKS: u32 = 50;

/// What the ticker and the calls share.
#[derive(Debug, Default)]
struct Shared {
    /// Calls in flight.
    active: AtomicUsize,
    /// Calls started so far (a short call may begin and end between two ticks).
    started: AtomicU64,
    /// Ticks since the ticker started (read by tests; shown by `Debug`).
    ticks: AtomicU64,
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Advances the engine's epoch on a dedicated thread until dropped.
#[derive(Debug)]
pub struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<Thread>,
}

impl EpochTicker {
    /// Starts the ticker thread (`wasm-epoch`).
    pub fn start(engine: Engine) -> Self {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || run(&engine, &state));
        let thread = match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(e) => {
                // Without the ticker deadlines cannot fire; calls would still finish or trap
                // on memory, but a looping plugin would hang. Make it loud.
                tracing::error!(error = %e, "could not start the plugin deadline ticker");
                None
            }
        };
        Self { shared, thread }
    }

    /// Marks a call into a plugin as running until the guard is dropped; wakes the ticker if
    /// it is parked.
    pub fn call(&self) -> CallGuard {
        let shared = &self.shared;
        shared.started.fetch_add(1, Ordering::Relaxed);
        shared.active.fetch_add(1, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst)
            && let Some(thread) = &self.thread
        {
            thread.unpark();
        }
        CallGuard {
            shared: shared.clone(),
        }
    }

    /// Whether the ticker is parked (no call for [`IDLE_TICKS`] ticks).
    pub fn is_parked(&self) -> bool {
        self.shared.parked.load(Ordering::SeqCst)
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

/// Held while a plugin call (or instantiation) runs.
#[derive(Debug)]
#[must_use = "the call counts as running only while the guard lives"]
pub struct CallGuard {
    shared: Arc<Shared>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The ticker thread.
fn run(engine: &Engine, shared: &Shared) {
    let mut idle_ticks = 0u32;
    let mut last_started = shared.started.load(Ordering::Relaxed);
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        shared.ticks.fetch_add(1, Ordering::Relaxed);
        let started = shared.started.load(Ordering::Relaxed);
        if started == last_started && shared.active.load(Ordering::SeqCst) == 0 {
            idle_ticks += 1;
        } else {
            idle_ticks = 0;
            last_started = started;
        }
        if idle_ticks < IDLE_TICKS {
            continue;
        }
        shared.parked.store(true, Ordering::SeqCst);
        // Parks only when no call started after the announcement; a spurious wake-up just
        // comes round again.
        while shared.active.load(Ordering::SeqCst) == 0
            && shared.started.load(Ordering::Relaxed) == last_started
            && !shared.stop.load(Ordering::SeqCst)
        {
            std::thread::park();
        }
        shared.parked.store(false, Ordering::SeqCst);
        idle_ticks = 0;
        last_started = shared.started.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn parks_when_idle_and_ticks_again_for_a_call() {
        let ticker = EpochTicker::start(Engine::default());
        wait_until("the idle ticker parks", || ticker.is_parked());
        let parked_at = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticker.ticks(), parked_at, "a parked ticker does not tick");

        // A call wakes it, and it keeps ticking while the call runs, however long.
        let guard = ticker.call();
        wait_until("the ticker ticks again", || ticker.ticks() > parked_at);
        let running = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * (IDLE_TICKS + 20));
        assert!(!ticker.is_parked(), "never parks during a call");
        assert!(ticker.ticks() > running);
        drop(guard);
        wait_until("it parks again after the call", || ticker.is_parked());
    }
}
