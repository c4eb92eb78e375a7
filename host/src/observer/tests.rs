//! Scheduler tests: cron parsing, configuration, and runs on a paused tokio clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

#[test]
fn cron_expressions_parse_and_find_the_next_minute() {
    let every: Schedule = "* * * * *".parse().unwrap();
    assert_eq!(
        every.next_after(utc(2026, 1, 1, 0, 0, 30)),
        Some(utc(2026, 1, 1, 0, 1, 0))
    );
    assert_eq!(
        every.next_after(utc(2026, 1, 1, 0, 1, 0)),
        Some(utc(2026, 1, 1, 0, 2, 0))
    );
    let five: Schedule = "*/5 * * * *".parse().unwrap();
    assert_eq!(
        five.next_after(utc(2026, 1, 1, 0, 7, 0)),
        Some(utc(2026, 1, 1, 0, 10, 0))
    );
    let daily: Schedule = "0 3 * * *".parse().unwrap();
    assert_eq!(
        daily.next_after(utc(2026, 1, 1, 3, 0, 0)),
        Some(utc(2026, 1, 2, 3, 0, 0))
    );
    let list: Schedule = "15,45 8-9 * * 1-5".parse().unwrap();
    // 2026-01-03 is a Saturday: next is Monday 08:15.
    assert_eq!(
        list.next_after(utc(2026, 1, 3, 12, 0, 0)),
        Some(utc(2026, 1, 5, 8, 15, 0))
    );
    let sunday: Schedule = "0 0 * * 7".parse().unwrap();
    assert_eq!(
        sunday.next_after(utc(2026, 1, 1, 0, 0, 0)),
        Some(utc(2026, 1, 4, 0, 0, 0))
    );
    assert_eq!(
        "@hourly"
            .parse::<Schedule>()
            .unwrap()
            .next_after(utc(2026, 1, 1, 0, 0, 1)),
        Some(utc(2026, 1, 1, 1, 0, 0))
    );
    let never: Schedule = "0 0 30 2 *".parse().unwrap();
    assert_eq!(never.next_after(utc(2026, 1, 1, 0, 0, 0)), None);
    for bad in [
        "",
        "* * * *",
        "60 * * * *",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
    ] {
        assert!(bad.parse::<Schedule>().is_err(), "{bad}");
    }
}

struct Env(HashMap<String, String>);

impl crate::config::ConfigSource for Env {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.clone().into_iter().collect()
    }
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env(pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect())
}

#[test]
fn settings_have_defaults_and_overrides() {
    let defaults = ObserverSettings::from_source(&env(&[])).unwrap();
    assert_eq!(defaults.retention_days, 90);
    let names: Vec<_> = defaults
        .schedules
        .iter()
        .map(|(n, s)| (*n, s.as_ref().map(ToString::to_string)))
        .collect();
    assert_eq!(
        names,
        [
            ("nudge_expiry", Some("* * * * *".to_owned())),
            ("usage_rollup", Some("*/5 * * * *".to_owned())),
            ("integrity_summary", Some("*/5 * * * *".to_owned())),
            ("retention", Some("0 3 * * *".to_owned())),
            ("webhook_redelivery", Some("* * * * *".to_owned())),
        ]
    );
    let custom = ObserverSettings::from_source(&env(&[
        ("MNEMOM_JOB_USAGE_ROLLUP_SCHEDULE", "*/15 * * * *"),
        ("MNEMOM_JOB_RETENTION_SCHEDULE", "off"),
        ("MNEMOM_RETENTION_DAYS", "30"),
    ]))
    .unwrap();
    assert_eq!(custom.retention_days, 30);
    assert_eq!(
        custom.schedules[1].1.as_ref().map(ToString::to_string),
        Some("*/15 * * * *".to_owned())
    );
    assert!(custom.schedules[3].1.is_none());
    let bad = ObserverSettings::from_source(&env(&[("MNEMOM_JOB_NUDGE_EXPIRY_SCHEDULE", "soon")]))
        .unwrap_err();
    assert_eq!(bad.variable, "MNEMOM_JOB_NUDGE_EXPIRY_SCHEDULE");
    let bad = ObserverSettings::from_source(&env(&[("MNEMOM_RETENTION_DAYS", "0")])).unwrap_err();
    assert_eq!(bad.variable, "MNEMOM_RETENTION_DAYS");
}

/// A job that counts its runs, and fails or panics on request.
struct Fake {
    name: &'static str,
    runs: AtomicU64,
    fail: bool,
    panic: bool,
}

impl Fake {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            runs: AtomicU64::new(0),
            fail: false,
            panic: false,
        })
    }
}

impl Job for Fake {
    fn name(&self) -> &'static str {
        self.name
    }
    fn run(&self, _now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if self.panic {
                panic!("fake job panicked");
            }
            if self.fail {
                return Err(JobError::Other("fake failure".to_owned()));
            }
            Ok(1)
        })
    }
}

fn runs(metrics: &Metrics, job: &str, result: &str) -> u64 {
    metrics
        .cron_runs_total
        .with_label_values(&[job, result])
        .get()
}

#[tokio::test(start_paused = true)]
async fn each_job_runs_on_its_schedule_with_a_paused_clock() {
    let metrics = Metrics::new().unwrap();
    let minutely = Fake::new("nudge_expiry");
    let five = Fake::new("usage_rollup");
    let daily = Fake::new("retention");
    let clock = Clock::tokio_at(utc(2026, 1, 1, 0, 0, 30));
    let jobs: Vec<(Arc<dyn Job>, Schedule)> = vec![
        (minutely.clone(), "* * * * *".parse().unwrap()),
        (five.clone(), "*/5 * * * *".parse().unwrap()),
        (daily.clone(), "0 3 * * *".parse().unwrap()),
    ];
    let mut scheduler = Scheduler::start(jobs, clock, Lease::Local, &metrics);
    // 00:00:30 → 00:10:40: minutes 1..=10, and 00:05 and 00:10.
    tokio::time::sleep(Duration::from_secs(610)).await;
    assert_eq!(minutely.runs.load(Ordering::SeqCst), 10);
    assert_eq!(five.runs.load(Ordering::SeqCst), 2);
    assert_eq!(daily.runs.load(Ordering::SeqCst), 0);
    assert_eq!(runs(&metrics, "nudge_expiry", "success"), 10);
    assert_eq!(runs(&metrics, "usage_rollup", "success"), 2);
    assert_eq!(
        metrics
            .background_tasks_total
            .with_label_values(&["cron_nudge_expiry"])
            .get(),
        10,
        "every executed run is counted as background work"
    );
    let last = metrics
        .cron_last_success
        .with_label_values(&["usage_rollup"])
        .get();
    assert_eq!(last, utc(2026, 1, 1, 0, 10, 0).timestamp());
    // Until 03:00:30: the daily job has run once.
    tokio::time::sleep(Duration::from_secs(3 * 3600 - 600)).await;
    assert_eq!(daily.runs.load(Ordering::SeqCst), 1);
    assert_eq!(runs(&metrics, "retention", "success"), 1);
    scheduler.stop();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(daily.runs.load(Ordering::SeqCst), 1);
    assert_eq!(minutely.runs.load(Ordering::SeqCst), 180);
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_counts_error_and_the_others_still_run() {
    let metrics = Metrics::new().unwrap();
    let failing = Arc::new(Fake {
        name: "nudge_expiry",
        runs: AtomicU64::new(0),
        fail: true,
        panic: false,
    });
    let panicking = Arc::new(Fake {
        name: "retention",
        runs: AtomicU64::new(0),
        fail: false,
        panic: true,
    });
    let healthy = Fake::new("usage_rollup");
    let every: Schedule = "* * * * *".parse().unwrap();
    let jobs: Vec<(Arc<dyn Job>, Schedule)> = vec![
        (failing.clone(), every.clone()),
        (panicking.clone(), every.clone()),
        (healthy.clone(), every),
    ];
    let board = Arc::new(JobBoard::default());
    let _scheduler = Scheduler::start_with_board(
        jobs,
        Clock::tokio_at(utc(2026, 1, 1, 0, 0, 0)),
        Lease::Local,
        &metrics,
        board.clone(),
    );
    tokio::time::sleep(Duration::from_secs(5 * 60 + 30)).await;
    let snapshot = board.snapshot();
    assert_eq!(snapshot["nudge_expiry"]["result"], "error");
    assert_eq!(snapshot["nudge_expiry"]["error"], "fake failure");
    assert!(snapshot["nudge_expiry"].get("last_success_at").is_none());
    assert_eq!(snapshot["retention"]["result"], "error");
    assert_eq!(snapshot["usage_rollup"]["result"], "success");
    assert_eq!(
        snapshot["usage_rollup"]["scheduled_at"],
        "2026-01-01T00:05:00Z"
    );
    assert_eq!(runs(&metrics, "nudge_expiry", "error"), 5);
    assert_eq!(runs(&metrics, "nudge_expiry", "success"), 0);
    assert_eq!(runs(&metrics, "retention", "error"), 5);
    assert_eq!(panicking.runs.load(Ordering::SeqCst), 5);
    assert_eq!(runs(&metrics, "usage_rollup", "success"), 5);
    assert_eq!(healthy.runs.load(Ordering::SeqCst), 5);
    assert_eq!(
        metrics
            .cron_last_success
            .with_label_values(&["nudge_expiry"])
            .get(),
        0
    );
}

/// A job slower than its schedule never overlaps itself: the ticks it overruns are skipped.
#[tokio::test(start_paused = true)]
async fn runs_of_one_job_never_overlap() {
    struct Slow {
        running: AtomicU64,
        max: AtomicU64,
        runs: AtomicU64,
    }
    impl Job for Slow {
        fn name(&self) -> &'static str {
            "usage_rollup"
        }
        fn run(&self, _now: DateTime<Utc>) -> JobFuture<'_> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(150)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                self.runs.fetch_add(1, Ordering::SeqCst);
                Ok(0)
            })
        }
    }
    let metrics = Metrics::new().unwrap();
    let slow = Arc::new(Slow {
        running: AtomicU64::new(0),
        max: AtomicU64::new(0),
        runs: AtomicU64::new(0),
    });
    let _scheduler = Scheduler::start(
        vec![(slow.clone(), "* * * * *".parse().unwrap())],
        Clock::tokio_at(utc(2026, 1, 1, 0, 0, 0)),
        Lease::Local,
        &metrics,
    );
    // Runs start at 00:01, 00:04, 00:07 (each lasts 2.5 minutes).
    tokio::time::sleep(Duration::from_secs(9 * 60 + 50)).await;
    assert_eq!(slow.max.load(Ordering::SeqCst), 1);
    assert_eq!(slow.runs.load(Ordering::SeqCst), 3);
}

/// Two replicas on one fresh PostgreSQL database, both firing every scheduled minute at once:
/// each run executes exactly once; the loser counts `skipped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_run_each_scheduled_run_exactly_once() {
    let db = crate::store::tests::TestDb::postgres().await;
    db.store.migrate().await.unwrap();
    let job = Fake::new("nudge_expiry");
    let dyn_job: Arc<dyn Job> = job.clone();
    let (a, b) = (Metrics::new().unwrap(), Metrics::new().unwrap());
    let lease = Lease::Store(db.store.clone());
    let clock = Clock::System;
    for minute in 0..25 {
        let scheduled = utc(2026, 1, 1, 0, minute, 0);
        let (x, y) = tokio::join!(
            run_scheduled(&dyn_job, scheduled, clock, &lease, &a, "replica-a"),
            run_scheduled(&dyn_job, scheduled, clock, &lease, &b, "replica-b"),
        );
        let mut outcomes = [x, y];
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(outcomes, [RunOutcome::Skipped, RunOutcome::Success]);
    }
    assert_eq!(job.runs.load(Ordering::SeqCst), 25);
    let success = runs(&a, "nudge_expiry", "success") + runs(&b, "nudge_expiry", "success");
    let skipped = runs(&a, "nudge_expiry", "skipped") + runs(&b, "nudge_expiry", "skipped");
    assert_eq!((success, skipped), (25, 25));
    assert_eq!(
        crate::store::tests::scalar_i64(&db.store, "SELECT count(*) FROM observer_runs").await,
        25
    );
    db.finish().await;
}

/// The real jobs on SQLite, driven by the scheduler through one claimed run each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_jobs_run_through_the_scheduler_on_sqlite() {
    let db = crate::store::tests::TestDb::sqlite();
    db.store.migrate().await.unwrap();
    let metrics = Metrics::new().unwrap();
    let settings = ObserverSettings::default();
    let lease = Lease::Store(db.store.clone());
    // Recent: retention prunes claims older than the retention age.
    let at = Utc::now() - chrono::Duration::minutes(1);
    for (job, _) in settings.jobs(&db.store) {
        let outcome = run_scheduled(&job, at, Clock::System, &lease, &metrics, "me").await;
        assert_eq!(outcome, RunOutcome::Success, "{}", job.name());
        let again = run_scheduled(&job, at, Clock::System, &lease, &metrics, "me").await;
        assert_eq!(again, RunOutcome::Skipped, "{}", job.name());
    }
    db.finish().await;
}

/// A replica killed mid-run keeps that minute's claim; the other replica runs the next minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_is_taken_over_on_the_next_tick() {
    struct Hang;
    impl Job for Hang {
        fn name(&self) -> &'static str {
            "usage_rollup"
        }
        fn run(&self, _now: DateTime<Utc>) -> JobFuture<'_> {
            Box::pin(std::future::pending())
        }
    }
    let db = crate::store::tests::TestDb::postgres().await;
    db.store.migrate().await.unwrap();
    let lease = Lease::Store(db.store.clone());
    let (a, b) = (Metrics::new().unwrap(), Metrics::new().unwrap());
    let first = utc(2026, 1, 1, 0, 5, 0);
    let hang: Arc<dyn Job> = Arc::new(Hang);
    let dying = {
        let (lease, a) = (lease.clone(), a.clone());
        tokio::spawn(async move {
            run_scheduled(&hang, first, Clock::System, &lease, &a, "replica-a").await
        })
    };
    let claimed = "SELECT count(*) FROM observer_runs WHERE claimed_by = 'replica-a'";
    while crate::store::tests::scalar_i64(&db.store, claimed).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dying.abort();
    assert!(dying.await.unwrap_err().is_cancelled());
    let survivor = Fake::new("usage_rollup");
    let job: Arc<dyn Job> = survivor.clone();
    let again = run_scheduled(&job, first, Clock::System, &lease, &b, "replica-b").await;
    assert_eq!(
        again,
        RunOutcome::Skipped,
        "the dead replica's minute is not rerun"
    );
    let next = utc(2026, 1, 1, 0, 10, 0);
    let taken = run_scheduled(&job, next, Clock::System, &lease, &b, "replica-b").await;
    assert_eq!(taken, RunOutcome::Success);
    assert_eq!(survivor.runs.load(Ordering::SeqCst), 1);
    db.finish().await;
}
