//! AIP webhooks: every stored checkpoint is POSTed, signed, to the agent's matching
//! registrations — concurrently, each with its retry schedule and per-attempt timeout, behind an
//! SSRF guard — and the outcome is recorded (one `aip_webhook_deliveries` row through the
//! background writer) and counted on the registration atomically, disabling it after too many
//! consecutive failures. Undelivered deliveries are sent again by the observer's
//! `webhook_redelivery` job ([`Webhooks::redeliver`]). See `docs/webhooks.md`.

mod guard;
mod metrics;
pub mod payload;
mod redeliver;
mod send;
mod settings;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::store::{Store, WebhookDeliveryRecord, WebhookRegistration};
use crate::writer::{WriteRecord, Writer};

pub use guard::{GuardError, Target, refusal};
pub use metrics::{ATTEMPT_RESULTS, DELIVERY_RESULTS, WebhookMetrics};
pub use payload::{
    AIP_VERSION, CheckpointEvent, event_type, matches_event, new_delivery_id, sign,
    verify_signature,
};
pub use settings::WebhookSettings;

use send::{Attempt, Outgoing};

/// How long an agent's registrations are reused before they are read again.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(30);
/// Agents whose registrations are cached; beyond this, stale entries are evicted first.
const CACHE_MAX_AGENTS: usize = 10_000;
/// After the drain deadline, how long interrupted deliveries get to record themselves.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// The webhook deliverer. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: WebhookSettings,
    store: Store,
    writer: Writer,
    metrics: WebhookMetrics,
    cache: Mutex<HashMap<String, Cached>>,
    /// Bumped by every invalidation: a read that started before one is not cached.
    generation: AtomicU64,
    /// One permit per delivery in flight (`MNEMOM_WEBHOOK_MAX_CONCURRENCY`).
    permits: Arc<Semaphore>,
    /// Dispatch tasks not finished.
    in_flight: watch::Sender<usize>,
    /// Draining: nothing new is attempted, retry waits end.
    closing: watch::Sender<bool>,
    /// The drain deadline passed: attempts in progress are abandoned.
    aborting: watch::Sender<bool>,
}

#[derive(Debug)]
struct Cached {
    at: Instant,
    registrations: Arc<[WebhookRegistration]>,
}

/// What [`Webhooks::drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every dispatch finished before the deadline.
    pub completed: bool,
    /// Dispatches still running after the abort grace (their deliveries are not recorded).
    pub abandoned: usize,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A 2xx answer.
    Delivered,
    /// Every attempt failed, or a final status.
    Failed,
    /// The SSRF guard refused the destination.
    Refused,
    /// Not attempted (concurrency limit, shutting down).
    Deferred,
    /// Stopped by shutdown before its retries were done.
    Interrupted,
}

impl Kind {
    fn metric(self) -> &'static str {
        match self {
            Kind::Delivered => "delivered",
            Kind::Failed => "failed",
            Kind::Refused => "refused",
            Kind::Deferred | Kind::Interrupted => "deferred",
        }
    }
}

#[derive(Debug, Clone)]
struct Outcome {
    kind: Kind,
    /// Requests sent (refusals are not).
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
}

impl Outcome {
    fn deferred(reason: String) -> Self {
        Self {
            kind: Kind::Deferred,
            attempts: 0,
            last_status: None,
            last_error: Some(reason),
        }
    }
}

/// Decrements the in-flight count when a dispatch task ends (or is dropped).
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Webhooks {
    /// Builds the deliverer and registers its metrics in `metrics`' registry (once per
    /// registry: build one and share it, e.g. with the observer's redelivery job).
    pub fn new(
        settings: WebhookSettings,
        store: Store,
        writer: Writer,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, prometheus::Error> {
        let metrics = WebhookMetrics::register(metrics)?;
        let permits = Arc::new(Semaphore::new(settings.max_concurrency));
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                store,
                writer,
                metrics,
                cache: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                permits,
                in_flight: watch::Sender::new(0),
                closing: watch::Sender::new(false),
                aborting: watch::Sender::new(false),
            }),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &WebhookSettings {
        &self.inner.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> &WebhookMetrics {
        &self.inner.metrics
    }

    /// Announces a stored checkpoint to the agent's matching registrations. Never blocks: the
    /// work runs in a task (call it inside a Tokio runtime, after the checkpoint was handed to
    /// the writer, so its delivery records follow it).
    pub fn dispatch(&self, event: CheckpointEvent) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(checkpoint_id = %event.checkpoint_id, "webhook dispatch outside a Tokio runtime; not delivered");
            return;
        };
        self.inner.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(self.inner.clone());
        let this = self.clone();
        runtime.spawn(async move {
            let _guard = guard;
            this.run_dispatch(event).await;
        });
    }

    /// Waits until no dispatch is in flight (their records handed to the writer, their outcomes
    /// counted). Does not stop anything.
    pub async fn idle(&self) {
        let mut in_flight = self.inner.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// Forgets the cached registrations of an agent (after they changed).
    pub fn invalidate(&self, agent_id: &str) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.lock_cache().remove(agent_id);
    }

    /// Stops delivering and waits, until `deadline`, for dispatches in progress: deliveries
    /// waiting to retry stop waiting, deliveries not yet started are not attempted, and both
    /// are recorded as undelivered for the redelivery job. At the deadline, attempts still in
    /// progress are abandoned and recorded the same way. Call it before the writer's shutdown,
    /// so those records reach the writer. Idempotent.
    pub async fn drain(&self, deadline: Instant) -> DrainReport {
        self.inner.closing.send_replace(true);
        let mut in_flight = self.inner.in_flight.subscribe();
        let completed = tokio::time::timeout_at(deadline, in_flight.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !completed {
            self.inner.aborting.send_replace(true);
            let _ = tokio::time::timeout(ABORT_GRACE, in_flight.wait_for(|n| *n == 0)).await;
        }
        let abandoned = *in_flight.borrow();
        if abandoned > 0 {
            tracing::warn!(
                dispatches = abandoned,
                "webhook dispatches still running after the drain deadline"
            );
        }
        DrainReport {
            completed,
            abandoned,
        }
    }

    async fn run_dispatch(&self, event: CheckpointEvent) {
        self.inner
            .metrics
            .gateway
            .background_tasks_total
            .with_label_values(&["webhook"])
            .inc();
        let registrations = match self.registrations(&event.agent_id).await {
            Ok(registrations) => registrations,
            Err(e) => {
                tracing::warn!(agent_id = %event.agent_id, checkpoint_id = %event.checkpoint_id, error = %e, "cannot read webhook registrations; checkpoint not delivered");
                return;
            }
        };
        let event_type = event.event_type();
        let matching: Vec<&WebhookRegistration> = registrations
            .iter()
            .filter(|r| matches_event(&r.event_types, &event_type))
            .collect();
        if matching.is_empty() {
            return;
        }
        let body = Bytes::from(event.payload());
        let deliveries = matching
            .into_iter()
            .map(|registration| self.deliver(registration, &event, &event_type, body.clone()));
        futures_util::future::join_all(deliveries).await;
    }

    /// The agent's enabled registrations, from the cache when fresh.
    async fn registrations(
        &self,
        agent_id: &str,
    ) -> Result<Arc<[WebhookRegistration]>, crate::store::StoreError> {
        if let Some(cached) = self.lock_cache().get(agent_id)
            && cached.at.elapsed() < REGISTRATION_TTL
        {
            return Ok(cached.registrations.clone());
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let registrations: Arc<[WebhookRegistration]> = self
            .inner
            .store
            .webhook_registrations(agent_id)
            .await?
            .into();
        let mut cache = self.lock_cache();
        if self.inner.generation.load(Ordering::SeqCst) == generation {
            if cache.len() >= CACHE_MAX_AGENTS {
                cache.retain(|_, c| c.at.elapsed() < REGISTRATION_TTL);
                if cache.len() >= CACHE_MAX_AGENTS {
                    cache.clear();
                }
            }
            cache.insert(
                agent_id.to_owned(),
                Cached {
                    at: Instant::now(),
                    registrations: registrations.clone(),
                },
            );
        }
        Ok(registrations)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One registration, one checkpoint: attempt (with retries), record, count.
    async fn deliver(
        &self,
        registration: &WebhookRegistration,
        event: &CheckpointEvent,
        event_type: &str,
        body: Bytes,
    ) {
        let created_at = Utc::now();
        let started = Instant::now();
        let outgoing = Outgoing {
            url: registration.callback_url.clone(),
            delivery_id: new_delivery_id(),
            event_type: event_type.to_owned(),
            signature: sign(&registration.secret, &body),
            body,
        };
        let outcome = if *self.inner.closing.borrow() {
            Outcome::deferred("not attempted: shutting down; left to the redelivery job".to_owned())
        } else {
            match self.inner.permits.clone().try_acquire_owned() {
                Ok(_permit) => self.attempt_with_retries(&outgoing).await,
                Err(_) => Outcome::deferred(format!(
                    "not attempted: {} deliveries already in flight \
                     (MNEMOM_WEBHOOK_MAX_CONCURRENCY); left to the redelivery job",
                    self.inner.settings.max_concurrency
                )),
            }
        };
        let record = WebhookDeliveryRecord {
            id: outgoing.delivery_id.clone(),
            registration_id: registration.id.clone(),
            checkpoint_id: event.checkpoint_id.clone(),
            event_type: outgoing.event_type.clone(),
            delivered: outcome.kind == Kind::Delivered,
            // The schema counts at least one attempt per record: a delivery that was refused or
            // not attempted uses one unit of the redelivery budget.
            attempts: i32::try_from(outcome.attempts.max(1)).unwrap_or(i32::MAX),
            last_status: outcome.last_status.map(i32::from),
            last_error: outcome.last_error.clone(),
            created_at,
        };
        self.inner.writer.enqueue(WriteRecord::webhook_delivery(
            event.agent_hash.clone(),
            record,
        ));
        self.finish(
            registration,
            &event.agent_id,
            &outgoing.delivery_id,
            &outcome,
            started,
        )
        .await;
    }

    /// Attempts until success, a final answer, the end of the schedule, or shutdown.
    async fn attempt_with_retries(&self, outgoing: &Outgoing) -> Outcome {
        let settings = &self.inner.settings;
        let mut closing = self.inner.closing.subscribe();
        let mut aborting = self.inner.aborting.subscribe();
        let mut attempts = 0u32;
        let mut last: Option<Attempt> = None;
        loop {
            let index = usize::try_from(attempts).unwrap_or_default();
            let attempt = tokio::select! {
                attempt = send::attempt(
                    outgoing,
                    settings.allow_private,
                    settings.attempt_timeout,
                    index,
                ) => attempt,
                _ = aborting.wait_for(|a| *a) => {
                    // The request may have reached the receiver: it counts, and the redelivery
                    // (same X-AIP-Delivery id) lets the receiver deduplicate.
                    return interrupted(attempts + 1, last.as_ref(), "the drain deadline passed");
                }
            };
            if let Some(result) = attempt.metric() {
                self.inner.metrics.attempt(result);
            }
            if attempt.was_sent() {
                attempts += 1;
            }
            let kind = if attempt.is_success() {
                Some(Kind::Delivered)
            } else if !attempt.was_sent() {
                Some(Kind::Refused)
            } else if !attempt.is_retryable() {
                Some(Kind::Failed)
            } else {
                None
            };
            let delay = settings
                .retry_delays
                .get(
                    usize::try_from(attempts)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1),
                )
                .copied();
            match (kind, delay) {
                (Some(kind), _) => return finished(kind, attempts, &attempt),
                (None, None) => return finished(Kind::Failed, attempts, &attempt),
                (None, Some(delay)) => {
                    last = Some(attempt);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = closing.wait_for(|c| *c) => {
                            return interrupted(attempts, last.as_ref(), "shutting down");
                        }
                    }
                }
            }
        }
    }

    /// Metrics, logs and the registration's failure count for a settled delivery.
    async fn finish(
        &self,
        registration: &WebhookRegistration,
        agent_id: &str,
        delivery_id: &str,
        outcome: &Outcome,
        started: Instant,
    ) {
        let metrics = &self.inner.metrics;
        metrics.delivery(outcome.kind.metric());
        if matches!(outcome.kind, Kind::Delivered | Kind::Failed) {
            metrics
                .delivery_duration
                .with_label_values(&[outcome.kind.metric()])
                .observe(started.elapsed().as_secs_f64());
        }
        match outcome.kind {
            Kind::Delivered => {
                tracing::debug!(registration_id = %registration.id, delivery_id, attempts = outcome.attempts, "webhook delivered");
            }
            Kind::Failed | Kind::Refused => {
                tracing::warn!(registration_id = %registration.id, delivery_id, attempts = outcome.attempts, error = outcome.last_error.as_deref().unwrap_or(""), "webhook delivery failed");
            }
            Kind::Deferred | Kind::Interrupted => {
                tracing::info!(registration_id = %registration.id, delivery_id, reason = outcome.last_error.as_deref().unwrap_or(""), "webhook delivery left to the redelivery job");
            }
        }
        let delivered = match outcome.kind {
            Kind::Delivered => true,
            Kind::Failed | Kind::Refused => false,
            // Not the receiver's doing: not counted.
            Kind::Deferred | Kind::Interrupted => return,
        };
        self.count_outcome(registration, agent_id, delivered).await;
    }

    /// Counts an outcome on the registration (atomic in the database); a registration this
    /// disables leaves the cache at once.
    async fn count_outcome(
        &self,
        registration: &WebhookRegistration,
        agent_id: &str,
        delivered: bool,
    ) {
        let settings = &self.inner.settings;
        let state = self
            .inner
            .store
            .record_webhook_outcome(
                &registration.id,
                delivered,
                settings.disable_after,
                Utc::now(),
            )
            .await;
        match state {
            Ok(Some(state)) => {
                if state.just_disabled {
                    self.inner.metrics.delivery("disabled");
                    tracing::warn!(registration_id = %registration.id, agent_id, failures = state.failure_count, "webhook registration disabled after consecutive failed deliveries");
                }
                if !state.enabled {
                    self.invalidate(agent_id);
                }
            }
            Ok(None) => self.invalidate(agent_id),
            Err(e) => {
                tracing::warn!(registration_id = %registration.id, error = %e, "cannot count the webhook outcome on its registration");
            }
        }
    }
}

fn finished(kind: Kind, attempts: u32, last: &Attempt) -> Outcome {
    Outcome {
        kind,
        attempts,
        last_status: last.status(),
        last_error: last.error(),
    }
}

fn interrupted(attempts: u32, last: Option<&Attempt>, why: &str) -> Outcome {
    let previous = last
        .and_then(Attempt::error)
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    Outcome {
        kind: Kind::Interrupted,
        attempts,
        last_status: last.and_then(Attempt::status),
        last_error: Some(format!(
            "interrupted after {attempts} attempt(s): {why}; left to the redelivery job{previous}"
        )),
    }
}
