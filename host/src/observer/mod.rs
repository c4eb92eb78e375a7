//! The observer role's scheduler: jobs on cron schedules (UTC), each in its own task so one
//! failing or slow job never delays or skips another, runs of one job never overlapping, and
//! each scheduled run executed once across every replica sharing the database (the run is
//! claimed in `observer_runs` first; a replica that loses the claim counts `skipped`).
//!
//! Time comes from a [`Clock`]: the system clock in production, or tokio's clock (which tests
//! pause and advance). See `docs/observer.md`.

pub mod cron;
pub mod jobs;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{ConfigError, ConfigSource};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

pub use cron::{CronError, Schedule};

/// Default schedules, by job.
pub const DEFAULT_SCHEDULES: &[(&str, &str)] = &[
    (jobs::NUDGE_EXPIRY, "* * * * *"),
    (jobs::USAGE_ROLLUP, "*/5 * * * *"),
    (jobs::INTEGRITY_SUMMARY, "*/5 * * * *"),
    (jobs::RETENTION, "0 3 * * *"),
    (jobs::WEBHOOK_REDELIVERY, "* * * * *"),
];

/// Default age after which records are deleted by the retention job.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// Why a job run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A database statement failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job panicked or was cancelled.
    #[error("the job stopped abnormally: {0}")]
    Aborted(String),
    /// Anything else a job reports.
    #[error("{0}")]
    Other(String),
}

/// A future returned by [`Job::run`].
pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, JobError>> + Send + 'a>>;

/// A scheduled job. `run` must be idempotent and bounded; it returns how many rows it touched.
pub trait Job: Send + Sync + 'static {
    /// The job's name (the `job` label of the metrics).
    fn name(&self) -> &'static str;
    /// One run, at `now`.
    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_>;
}

/// Where time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// Tokio's clock, anchored at a wall time: follows `tokio::time::pause`/`advance`.
    Tokio {
        /// The wall time at `origin`.
        origin_wall: DateTime<Utc>,
        /// The tokio instant of `origin_wall`.
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// Tokio's clock, reading `wall` now.
    pub fn tokio_at(wall: DateTime<Utc>) -> Self {
        Clock::Tokio {
            origin_wall: wall,
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio {
                origin_wall,
                origin,
            } => {
                let elapsed =
                    chrono::Duration::from_std(origin.elapsed()).unwrap_or(chrono::Duration::MAX);
                origin_wall
                    .checked_add_signed(elapsed)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }

    /// Sleeps until `at` (tokio's timer in both cases).
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let wait = (at - self.now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
}

/// How a run is made exclusive across replicas.
#[derive(Debug, Clone)]
pub enum Lease {
    /// Claim the run in the database's `observer_runs` (PostgreSQL or SQLite): exactly one
    /// replica wins each `(job, scheduled minute)`.
    Store(Store),
    /// No coordination (a single process without a database; tests).
    Local,
}

impl Lease {
    async fn claim(&self, job: &str, scheduled_at: i64, owner: &str) -> Result<bool, StoreError> {
        match self {
            Lease::Store(store) => store.claim_run(job, scheduled_at, owner).await,
            Lease::Local => Ok(true),
        }
    }
}

/// The observer's configuration: each job's schedule (`None`: disabled) and the retention age.
#[derive(Debug, Clone)]
pub struct ObserverSettings {
    /// `(job, schedule)`, in [`DEFAULT_SCHEDULES`] order.
    pub schedules: Vec<(&'static str, Option<Schedule>)>,
    /// `MNEMOM_RETENTION_DAYS`.
    pub retention_days: u32,
}

impl Default for ObserverSettings {
    fn default() -> Self {
        Self {
            schedules: DEFAULT_SCHEDULES
                .iter()
                .map(|(job, expression)| (*job, expression.parse().ok()))
                .collect(),
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

impl ObserverSettings {
    /// Reads `MNEMOM_JOB_<NAME>_SCHEDULE` (a cron expression, or `off`) and
    /// `MNEMOM_RETENTION_DAYS` (a positive number of days).
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        for (job, schedule) in &mut settings.schedules {
            let variable = format!("MNEMOM_JOB_{}_SCHEDULE", job.to_uppercase());
            let Some(value) = source.get(&variable) else {
                continue;
            };
            *schedule = if value.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(value.parse().map_err(|e: CronError| ConfigError {
                    variable: variable.clone(),
                    reason: e.to_string(),
                })?)
            };
        }
        if let Some(value) = source.get("MNEMOM_RETENTION_DAYS") {
            settings.retention_days =
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| ConfigError {
                        variable: "MNEMOM_RETENTION_DAYS".to_owned(),
                        reason: format!("`{value}` is not a positive number of days"),
                    })?;
        }
        Ok(settings)
    }

    /// The scheduled jobs over `store`, with their schedules (without `webhook_redelivery`:
    /// see [`ObserverSettings::jobs_with_webhooks`]).
    pub fn jobs(&self, store: &Store) -> Vec<(Arc<dyn Job>, Schedule)> {
        self.schedules
            .iter()
            .filter_map(|(name, schedule)| {
                let job = jobs::for_store(name, store, self.retention_days)?;
                Some((job, schedule.clone()?))
            })
            .collect()
    }

    /// Every scheduled job, `webhook_redelivery` (over `webhooks`) included.
    pub fn jobs_with_webhooks(
        &self,
        store: &Store,
        webhooks: &crate::webhooks::Webhooks,
    ) -> Vec<(Arc<dyn Job>, Schedule)> {
        let mut jobs = self.jobs(store);
        if let Some(schedule) = self.schedule(jobs::WEBHOOK_REDELIVERY) {
            jobs.push((
                Arc::new(jobs::WebhookRedelivery {
                    webhooks: webhooks.clone(),
                }),
                schedule,
            ));
        }
        jobs
    }

    /// The schedule of `job` (`None`: unknown or `off`).
    pub fn schedule(&self, job: &str) -> Option<Schedule> {
        self.schedules
            .iter()
            .find(|(name, _)| *name == job)
            .and_then(|(_, schedule)| schedule.clone())
    }
}

/// The last run of each job, as this process saw it (for readiness).
#[derive(Debug, Default)]
pub struct JobBoard {
    runs: std::sync::Mutex<std::collections::BTreeMap<&'static str, LastRun>>,
}

/// One job's last run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    /// The scheduled minute.
    pub scheduled_at: DateTime<Utc>,
    /// When it was settled.
    pub finished_at: DateTime<Utc>,
    /// `success`, `error` or `skipped`.
    pub result: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it last succeeded here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
}

impl JobBoard {
    fn record(&self, job: &'static str, mut run: LastRun) {
        if let Ok(mut runs) = self.runs.lock() {
            if run.result != "success" {
                run.last_success_at = runs.get(job).and_then(|r| r.last_success_at);
            }
            runs.insert(job, run);
        }
    }

    /// Each job's last run, as JSON (`{}` before any run).
    pub fn snapshot(&self) -> serde_json::Value {
        self.runs
            .lock()
            .ok()
            .and_then(|runs| serde_json::to_value(&*runs).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }
}

/// Runs jobs on their schedules until stopped (or dropped).
#[derive(Debug)]
pub struct Scheduler {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Runner {
    job: Arc<dyn Job>,
    schedule: Schedule,
    clock: Clock,
    lease: Lease,
    metrics: Metrics,
    owner: Arc<str>,
    board: Arc<JobBoard>,
}

impl Scheduler {
    /// Starts one task per job.
    pub fn start(
        jobs: Vec<(Arc<dyn Job>, Schedule)>,
        clock: Clock,
        lease: Lease,
        metrics: &Metrics,
    ) -> Self {
        Self::start_with_board(jobs, clock, lease, metrics, Arc::default())
    }

    /// Starts one task per job, recording each run on `board`.
    pub fn start_with_board(
        jobs: Vec<(Arc<dyn Job>, Schedule)>,
        clock: Clock,
        lease: Lease,
        metrics: &Metrics,
        board: Arc<JobBoard>,
    ) -> Self {
        let owner: Arc<str> = Arc::from(owner_name());
        let tasks = jobs
            .into_iter()
            .map(|(job, schedule)| {
                tracing::info!(job = job.name(), schedule = %schedule, "scheduled job");
                let runner = Runner {
                    job,
                    schedule,
                    clock,
                    lease: lease.clone(),
                    metrics: metrics.clone(),
                    owner: owner.clone(),
                    board: board.clone(),
                };
                tokio::spawn(runner.run_forever())
            })
            .collect();
        Self { tasks }
    }

    /// Stops every job (a run in progress is abandoned; its claim stays, and the next
    /// scheduled run is claimed afresh).
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Runner {
    async fn run_forever(self) {
        let mut last = self.clock.now();
        loop {
            let Some(next) = self.schedule.next_after(last.max(self.clock.now())) else {
                tracing::warn!(job = self.job.name(), schedule = %self.schedule, "the schedule never matches; job stopped");
                return;
            };
            self.clock.sleep_until(next).await;
            last = next;
            self.run_once(next).await;
        }
    }

    async fn run_once(&self, scheduled: DateTime<Utc>) {
        let (outcome, error) = run_scheduled_inner(
            &self.job,
            scheduled,
            self.clock,
            &self.lease,
            &self.metrics,
            &self.owner,
        )
        .await;
        let finished_at = self.clock.now();
        self.board.record(
            self.job.name(),
            LastRun {
                scheduled_at: scheduled,
                finished_at,
                result: outcome.as_str(),
                error,
                last_success_at: (outcome == RunOutcome::Success).then_some(finished_at),
            },
        );
    }
}

/// What became of one scheduled run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Claimed here and done.
    Success,
    /// Claimed here (or not claimable) and failed.
    Error,
    /// Claimed by another replica.
    Skipped,
}

impl RunOutcome {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Error => "error",
            RunOutcome::Skipped => "skipped",
        }
    }
}

/// One scheduled run of `job` (what the scheduler does at each matching minute): claim the
/// run, run the job in its own task (a panic is an error, not the end of the scheduler), count
/// the result in `gateway_cron_runs_total` and, on success, set the job's last-success gauge.
pub async fn run_scheduled(
    job: &Arc<dyn Job>,
    scheduled: DateTime<Utc>,
    clock: Clock,
    lease: &Lease,
    metrics: &Metrics,
    owner: &str,
) -> RunOutcome {
    run_scheduled_inner(job, scheduled, clock, lease, metrics, owner)
        .await
        .0
}

async fn run_scheduled_inner(
    job: &Arc<dyn Job>,
    scheduled: DateTime<Utc>,
    clock: Clock,
    lease: &Lease,
    metrics: &Metrics,
    owner: &str,
) -> (RunOutcome, Option<String>) {
    let name = job.name();
    let outcome = match lease.claim(name, scheduled.timestamp(), owner).await {
        Ok(true) => {
            let job = job.clone();
            let now = clock.now();
            let result = tokio::spawn(async move { job.run(now).await })
                .await
                .unwrap_or_else(|e| Err(JobError::Aborted(e.to_string())));
            match result {
                Ok(rows) => {
                    tracing::info!(job = name, %scheduled, rows, "scheduled job done");
                    metrics
                        .cron_last_success
                        .with_label_values(&[name])
                        .set(clock.now().timestamp());
                    (RunOutcome::Success, None)
                }
                Err(e) => {
                    tracing::warn!(job = name, %scheduled, error = %e, "scheduled job failed");
                    (RunOutcome::Error, Some(e.to_string()))
                }
            }
        }
        Ok(false) => {
            tracing::debug!(job = name, %scheduled, "run claimed by another replica");
            (RunOutcome::Skipped, None)
        }
        Err(e) => {
            tracing::warn!(job = name, %scheduled, error = %e, "cannot claim the scheduled run");
            (RunOutcome::Error, Some(format!("claim: {e}")))
        }
    };
    metrics
        .cron_runs_total
        .with_label_values(&[name, outcome.0.as_str()])
        .inc();
    if outcome.0 != RunOutcome::Skipped {
        // A run this replica executed is background work of the process, like the writer's.
        metrics
            .background_tasks_total
            .with_label_values(&[&format!("cron_{name}")])
            .inc();
    }
    outcome
}

/// Who claims runs: host name and process id.
fn owner_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "observer".to_owned());
    format!("{host}/{}", std::process::id())
}
