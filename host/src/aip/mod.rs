//! The AIP integrity pipeline: skip rules, inputs (card, conscience values, window, task
//! context), the policy chain, the checkpoint (stored with the hash of the thinking, never its
//! text), and what a verdict leads to — nudges, auto-containment, drift alerts and webhooks —
//! plus nudge delivery on the request side.

pub mod chain;
pub mod inputs;
pub mod llm;
pub mod nudges;
pub mod outcome;
pub mod settings;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{HistogramOpts, HistogramVec};

use crate::agents::{Agents, CachedAgent};
use crate::cache::{Cache, keys};
use crate::metrics::Metrics;
use crate::plugin::policy::{CheckInput, PolicyPlugin, WindowEntry};
use crate::plugin::registry::PluginRegistry;
use crate::proxy::exchange::InFlight;
use crate::proxy::extract::Extracted;
use crate::proxy::identity::AgentIdentity;
use crate::store::{
    AgentSettings, CheckpointRecord, CheckpointSource, ContainmentRecord, ContainmentStatus,
    DriftAlertRecord, EnforcementMode, NudgeRecord, Store, Verdict,
};
use crate::writer::{WriteRecord, Writer};

pub use outcome::{CheckpointSummary, Outcome, VerdictLabel};
pub use settings::AipSettings;

use window::{RecentCheckpoints, WindowItem};

/// One response to check.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// Who called.
    pub identity: AgentIdentity,
    /// The agent's settings when the request arrived.
    pub settings: AgentSettings,
    /// Provider (adapter name).
    pub provider: String,
    /// The model that answered (or was asked for).
    pub model: String,
    /// What the adapter extracted.
    pub extracted: Extracted,
    /// The last user message, only when the operator allows it in the task context.
    pub user_text: Option<String>,
    /// Whether the response was streamed.
    pub streaming: bool,
    /// The card and stored window, read while the upstream was answering ([`Aip::prefetch`]).
    pub prefetch: Option<Arc<Prefetch>>,
}

/// The database inputs of a check (the agent's card and the session's stored window), read in
/// the background from the moment the request arrives, so the reads overlap the upstream's
/// answer instead of adding to the verdict's latency. Dropped unused, the read is cancelled.
#[derive(Debug)]
pub struct Prefetch(std::sync::Mutex<Option<tokio::task::JoinHandle<Inputs>>>);

/// The card and the stored window.
type Inputs = (Option<crate::store::ActiveCard>, Vec<WindowItem>);

impl Prefetch {
    fn take(&self) -> Option<tokio::task::JoinHandle<Inputs>> {
        self.0.lock().ok().and_then(|mut h| h.take())
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(handle) = self.take() {
            handle.abort();
        }
    }
}

/// Pending nudges claimed for one request.
#[derive(Debug, Clone)]
pub struct NudgeClaim {
    /// The claim token.
    pub token: String,
    /// How many nudges.
    pub count: usize,
    /// The system note to inject (one header, the notices separated by blank lines).
    pub note: String,
}

/// Everything the pipeline needs.
#[derive(Debug)]
pub struct Aip {
    settings: AipSettings,
    registry: Arc<PluginRegistry>,
    cache: Cache,
    store: Option<Store>,
    writer: Option<Writer>,
    agents: Option<Agents>,
    metrics: Metrics,
    check_duration: HistogramVec,
    recent: RecentCheckpoints,
    llm_configured: bool,
    tasks: InFlight,
    webhooks: Option<crate::webhooks::Webhooks>,
    hybrid: Option<crate::analysis::HybridClient>,
    missing_reported: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The parts [`Aip::new`] is built from.
#[derive(Debug)]
pub struct AipParts {
    /// Settings.
    pub settings: AipSettings,
    /// Plugins (the policies are read from the current set at every check).
    pub registry: Arc<PluginRegistry>,
    /// The cache (cards, nudge flags, agent settings).
    pub cache: Cache,
    /// The database, when there is one.
    pub store: Option<Store>,
    /// The background writer, when there is a database.
    pub writer: Option<Writer>,
    /// Agent settings through the cache.
    pub agents: Option<Agents>,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether `llm.complete` has an endpoint.
    pub llm_configured: bool,
    /// Background work the shutdown waits for.
    pub tasks: InFlight,
    /// Webhook delivery.
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// The hosted analysis service (hybrid mode), when configured instead of a local LLM.
    pub hybrid: Option<crate::analysis::HybridClient>,
}

impl Aip {
    /// Builds the pipeline and registers its metrics.
    pub fn new(parts: AipParts) -> Result<Self, prometheus::Error> {
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_aip_check_duration_seconds",
                "Duration of AIP checks (inputs, policy chain and verdict), by verdict.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 15.0,
            ]),
            &["verdict"],
        )?;
        parts
            .metrics
            .registry()
            .register(Box::new(check_duration.clone()))?;
        Ok(Self {
            settings: parts.settings,
            registry: parts.registry,
            cache: parts.cache,
            store: parts.store,
            writer: parts.writer,
            agents: parts.agents,
            metrics: parts.metrics,
            check_duration,
            recent: RecentCheckpoints::default(),
            llm_configured: parts.llm_configured,
            tasks: parts.tasks,
            webhooks: parts.webhooks,
            hybrid: parts.hybrid,
            missing_reported: Default::default(),
        })
    }

    /// Whether a check can run at all (a runnable policy or the hybrid service); when not,
    /// checks answer `skipped` without reading anything.
    pub fn will_check(&self) -> bool {
        (self.hybrid.is_some() && !self.llm_configured) || !self.chain().is_empty()
    }

    /// Starts reading the database inputs of a check of this agent's session.
    pub fn prefetch(self: &Arc<Self>, identity: &AgentIdentity) -> Arc<Prefetch> {
        let this = self.clone();
        let agent_id = identity.agent_id.clone();
        let session_id = identity.session_id.clone();
        let handle = crate::workers::spawn_background(async move {
            this.read_inputs(&agent_id, &session_id).await
        });
        Arc::new(Prefetch(std::sync::Mutex::new(Some(handle))))
    }

    async fn read_inputs(&self, agent_id: &str, session_id: &str) -> Inputs {
        tokio::join!(
            inputs::active_card(
                &self.cache,
                self.store.as_ref(),
                agent_id,
                self.settings.db_timeout
            ),
            self.stored_window(agent_id, session_id),
        )
    }

    /// The settings.
    pub fn settings(&self) -> &AipSettings {
        &self.settings
    }

    /// Counts one `X-AIP-Verdict` value.
    pub fn count(&self, label: VerdictLabel) {
        self.metrics
            .aip_checks_total
            .with_label_values(&[label.as_str()])
            .inc();
    }

    /// The agent's settings: from the cache, else loaded from the database for at most `wait`
    /// (a paused agent must not slip through on a cold cache), else the defaults.
    pub async fn agent_settings(&self, agent_id: &str, wait: Duration) -> AgentSettings {
        match &self.agents {
            Some(agents) => agents
                .settings_or_load(agent_id, wait)
                .await
                .unwrap_or_default(),
            None => AgentSettings::default(),
        }
    }

    /// The policies to run, in configured order. A configured policy that is not loaded is
    /// reported once and left out.
    fn chain(&self) -> Vec<Arc<PolicyPlugin>> {
        let set = self.registry.current();
        let mut chain = Vec::new();
        for name in &self.settings.policies {
            match set.policy(name) {
                Some(p) if chain::runnable(&p.plugin, self.llm_configured) => {
                    chain.push(p.plugin.clone())
                }
                Some(_) => {}
                None => {
                    let first = self
                        .missing_reported
                        .lock()
                        .map(|mut seen| seen.insert(name.clone()))
                        .unwrap_or(false);
                    if first {
                        tracing::warn!(policy = %name, "MNEMOM_AIP_POLICIES names a policy that is not loaded; it is skipped");
                    }
                }
            }
        }
        chain
    }

    /// Checks one response: skip rules, inputs, the chain, the checkpoint, and (in the
    /// background) its consequences. The caller bounds the time for non-streaming responses.
    pub async fn check(self: &Arc<Self>, request: CheckRequest) -> Outcome {
        let started = Instant::now();
        let outcome = self.check_inner(request).await;
        self.check_duration
            .with_label_values(&[outcome.label.as_str()])
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn check_inner(self: &Arc<Self>, request: CheckRequest) -> Outcome {
        if request.extracted.thinking.is_empty() {
            return Outcome::synthetic_clear("no-thinking");
        }
        let thinking = request.extracted.thinking_text();
        let tokens = thinking.chars().count().div_ceil(4);
        if tokens < self.settings.min_evidence_tokens {
            return Outcome::synthetic_clear("insufficient-evidence");
        }
        let chain = self.chain();
        let hybrid = self.hybrid.as_ref().filter(|_| !self.llm_configured);
        if chain.is_empty() && hybrid.is_none() {
            return Outcome::because(VerdictLabel::Skipped, "no-analysis-configured");
        }
        let identity = &request.identity;
        let now = Utc::now();
        let prefetched = match request.prefetch.as_ref().and_then(|p| p.take()) {
            Some(handle) => handle.await.ok(),
            None => None,
        };
        let (card, stored) = match prefetched {
            Some(inputs) => inputs,
            None => {
                self.read_inputs(&identity.agent_id, &identity.session_id)
                    .await
            }
        };
        let window = window::merge_window(
            stored,
            self.recent
                .session(&identity.agent_id, &identity.session_id),
            now,
        );
        let input = CheckInput {
            agent_id: identity.agent_id.clone(),
            session_id: identity.session_id.clone(),
            provider: request.provider.clone(),
            model: request.model.clone(),
            thinking: request.extracted.thinking.clone(),
            response_text: request.extracted.text.clone(),
            tool_calls: request
                .extracted
                .tool_calls
                .iter()
                .map(|c| crate::plugin::bindings::wit_types::ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
            card_json: card.as_ref().map(|c| c.card_json.to_string()),
            card_id: card.as_ref().map(|c| c.id.clone()),
            conscience_values: inputs::conscience_values(card.as_ref()),
            window: window.iter().map(window_entry).collect(),
            task_context: inputs::task_context(card.as_ref(), request.user_text.as_deref()),
        };
        let hybrid_run = async {
            match hybrid {
                Some(client) => Some(self.run_hybrid(client, &request, &input, &thinking).await),
                None => None,
            }
        };
        let (mut runs, hybrid_result) = tokio::join!(
            chain::run(&chain, &input, self.settings.budget, &self.metrics),
            hybrid_run
        );
        drop(input);
        let mut hybrid_checkpoint = None;
        if let Some((run, checkpoint)) = hybrid_result {
            hybrid_checkpoint = Some(checkpoint);
            runs.insert(0, run);
        }
        let used_hybrid = hybrid_checkpoint.is_some();
        let hybrid_answered = matches!(hybrid_checkpoint, Some(Some(_)));
        let (hybrid_id, attestation) = hybrid_checkpoint.flatten().unzip();
        let Some(combined) = chain::combine(&runs) else {
            return Outcome {
                hybrid: used_hybrid,
                ..Outcome::because(VerdictLabel::Error, "policy-failed")
            };
        };
        let verdict = store_verdict(combined.verdict);
        let checkpoint_id = hybrid_id.unwrap_or_else(|| format!("ic-{}", uuid_v4()));
        let timestamp = Utc::now();
        let mut metadata = combined.analysis_metadata;
        if let serde_json::Value::Object(map) = &mut metadata {
            map.insert(
                "analysis_duration_ms".into(),
                (runs
                    .iter()
                    .map(|r| r.duration)
                    .max()
                    .unwrap_or_default()
                    .as_millis() as u64)
                    .into(),
            );
            map.insert("thinking_tokens_original".into(), (tokens as u64).into());
            map.insert("streaming".into(), request.streaming.into());
        }
        let concerns = serde_json::Value::Array(combined.concerns);
        let record = CheckpointRecord {
            checkpoint_id: checkpoint_id.clone(),
            agent_id: identity.agent_id.clone(),
            card_id: card.as_ref().map(|c| c.id.clone()),
            session_id: identity.session_id.clone(),
            timestamp,
            thinking_block_hash: crate::store::thinking_hash(&thinking),
            provider: request.provider.clone(),
            model: request.model.clone(),
            verdict,
            concerns: concerns.clone(),
            reasoning_summary: combined.reasoning_summary.clone(),
            conscience_context: combined.conscience_context,
            window_position: Some(serde_json::json!({
                "index": window.len(),
                "window_size": window.len() + 1,
            })),
            analysis_metadata: Some(metadata),
            linked_trace_id: None,
            source: if hybrid_answered {
                CheckpointSource::Hybrid
            } else {
                CheckpointSource::Gateway
            },
            attestation: None,
        };
        let current = WindowItem {
            checkpoint_id: checkpoint_id.clone(),
            verdict,
            reasoning_summary: record.reasoning_summary.clone(),
            categories: categories(&concerns),
            timestamp,
        };
        self.recent
            .remember(&identity.agent_id, &identity.session_id, current.clone());
        let mut window_with_current = window;
        window_with_current.push(current);
        let summary = CheckpointSummary {
            checkpoint_id,
            verdict,
            concerns,
            reasoning_summary: record.reasoning_summary.clone(),
            any_critical: combined.any_critical,
        };
        // The checkpoint is queued before the response leaves, so a later nudge or delivery
        // record (which reference it) always follows it through the writer.
        if let Some(writer) = &self.writer {
            writer.enqueue(WriteRecord::checkpoint(
                identity.agent_hash.clone(),
                record.clone(),
            ));
        }
        let guard = self.tasks.enter();
        let this = self.clone();
        let settings = request.settings.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            this.consequences(identity, settings, record, window_with_current)
                .await;
            this.metrics
                .background_tasks_total
                .with_label_values(&["aip_consequences"])
                .inc();
            drop(guard);
        });
        Outcome {
            checkpoint: Some(summary),
            hybrid: used_hybrid,
            attestation: attestation.flatten(),
            ..Outcome::label(VerdictLabel::Checked(verdict))
        }
    }

    /// Hybrid mode: the hosted analyse service in place of the local analysis LLM. Its answer
    /// joins the chain like a policy's report (fail-open), and its checkpoint id is kept.
    /// Returns the run and, when it answered, `(checkpoint_id, attestation)`.
    async fn run_hybrid(
        &self,
        client: &crate::analysis::HybridClient,
        request: &CheckRequest,
        input: &CheckInput,
        thinking: &str,
    ) -> (chain::PolicyRun, Option<(String, Option<(String, String)>)>) {
        use crate::analysis::{
            HybridConscienceValue, HybridRequest, ThinkingMetadata, WindowContextEntry,
        };
        let started = Instant::now();
        let card = input
            .card_json
            .as_deref()
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .map(|c| inputs::aip_card(&c, input.card_id.as_deref()))
            .unwrap_or(serde_json::Value::Null);
        let hybrid_request = HybridRequest {
            thinking_block: thinking.to_owned(),
            thinking_metadata: ThinkingMetadata {
                provider: request.provider.clone(),
                model: request.model.clone(),
            },
            agent_id: request.identity.agent_id.clone(),
            session_id: request.identity.session_id.clone(),
            card,
            conscience_values: input
                .conscience_values
                .iter()
                .map(|v| HybridConscienceValue {
                    kind: inputs::kind_name(v.kind).to_owned(),
                    content: v.content.clone(),
                    id: Some(v.id.clone()),
                })
                .collect(),
            task_context: input.task_context.clone().unwrap_or_default(),
            window_context: input
                .window
                .iter()
                .map(|w| WindowContextEntry {
                    checkpoint_id: w.checkpoint_id.clone(),
                    verdict: store_verdict(w.verdict),
                    reasoning_summary: w.reasoning_summary.clone(),
                })
                .collect(),
        };
        let answer =
            tokio::time::timeout(self.settings.budget, client.analyze(hybrid_request)).await;
        let (outcome, checkpoint) = match answer {
            Ok(Ok(response)) => {
                let report = inputs::hybrid_report(&response);
                let attestation = response
                    .attestation
                    .map(|a| (a.certificate_id, a.chain_hash));
                (
                    Ok(report),
                    Some((response.checkpoint.checkpoint_id, attestation)),
                )
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "hybrid analysis failed (fail-open)");
                (Err(e.to_string()), None)
            }
            Err(_) => (
                Err("hybrid analysis exceeded the time budget".to_owned()),
                None,
            ),
        };
        (
            chain::PolicyRun {
                name: "hybrid".to_owned(),
                version: "mnemom-analyze".to_owned(),
                duration: started.elapsed(),
                outcome,
                failure_mode: crate::plugin::manifest::FailureMode::FailOpen,
            },
            checkpoint,
        )
    }

    /// The stored window of a session (bounded by the database timeout; empty on failure).
    async fn stored_window(&self, agent_id: &str, session_id: &str) -> Vec<WindowItem> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        match tokio::time::timeout(
            self.settings.db_timeout,
            store.recent_checkpoints(agent_id, session_id, window::WINDOW_SIZE as u32),
        )
        .await
        {
            Ok(Ok(rows)) => rows
                .into_iter()
                .map(|r| WindowItem {
                    categories: categories(&r.concerns),
                    checkpoint_id: r.checkpoint_id,
                    verdict: r.verdict,
                    reasoning_summary: r.reasoning_summary,
                    timestamp: r.timestamp,
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "analysis window unavailable; using local checkpoints");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// What a checkpoint leads to: a nudge, auto-containment, a drift alert, webhooks.
    async fn consequences(
        &self,
        identity: AgentIdentity,
        settings: AgentSettings,
        record: CheckpointRecord,
        window: Vec<WindowItem>,
    ) {
        let enforcing = matches!(
            settings.enforcement_mode,
            EnforcementMode::Nudge | EnforcementMode::Enforce
        );
        if record.verdict == Verdict::BoundaryViolation && enforcing {
            self.maybe_nudge(&identity, &settings, &record, &window)
                .await;
            self.maybe_contain(&identity, &settings, &record).await;
        }
        if let Some(drift) = window::drift_at_threshold(&window, self.settings.drift_threshold) {
            self.raise_drift(&identity, &record, drift);
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.dispatch(crate::webhooks::CheckpointEvent {
                agent_id: identity.agent_id.clone(),
                agent_hash: identity.agent_hash.clone(),
                checkpoint_id: record.checkpoint_id.clone(),
                verdict: record.verdict,
                concerns: record.concerns.clone(),
                reasoning_summary: record.reasoning_summary.clone(),
                timestamp: record.timestamp,
            });
        }
    }

    async fn maybe_nudge(
        &self,
        identity: &AgentIdentity,
        settings: &AgentSettings,
        record: &CheckpointRecord,
        window: &[WindowItem],
    ) {
        let mut violations = window
            .iter()
            .filter(|i| i.verdict == Verdict::BoundaryViolation)
            .count() as u64;
        if settings.nudge_strategy == crate::store::NudgeStrategy::Threshold
            && let Some(store) = &self.store
            && let Ok(Ok(stored)) = tokio::time::timeout(
                self.settings.db_timeout,
                store.count_session_violations(&identity.agent_id, &identity.session_id),
            )
            .await
        {
            // The stored count may not include this checkpoint yet.
            violations = violations.max(stored + 1);
        }
        if !nudges::should_nudge(settings, violations, nudges::sample_percent()) {
            return;
        }
        let Some(writer) = &self.writer else {
            return;
        };
        let concerns: Vec<(String, String)> = record
            .concerns
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|c| {
                        (
                            c["category"].as_str().unwrap_or("").to_owned(),
                            c["description"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let summary =
            nudges::concerns_summary(concerns.iter().map(|(c, d)| (c.as_str(), d.as_str())));
        let created_at = Utc::now();
        let nudge = NudgeRecord {
            id: format!("nudge-{}", random_hex(8)),
            agent_id: identity.agent_id.clone(),
            checkpoint_id: record.checkpoint_id.clone(),
            session_id: identity.session_id.clone(),
            nudge_content: nudges::notice(&record.checkpoint_id, &summary),
            concerns_summary: summary,
            created_at,
        };
        writer.enqueue(WriteRecord::nudge(identity.agent_hash.clone(), nudge));
        self.cache
            .put(
                nudge_flag_key(&identity.agent_id),
                nudges::flag_value(created_at),
                Some(nudges::NUDGE_MAX_AGE),
            )
            .await;
        tracing::info!(agent = %identity.agent_id, checkpoint = %record.checkpoint_id, "nudge created");
    }

    async fn maybe_contain(
        &self,
        identity: &AgentIdentity,
        settings: &AgentSettings,
        record: &CheckpointRecord,
    ) {
        let Some(threshold) = settings.auto_containment_threshold.filter(|t| *t > 0) else {
            return;
        };
        if settings.containment_status != ContainmentStatus::Active {
            return;
        }
        let stored = match &self.store {
            Some(store) => tokio::time::timeout(
                self.settings.db_timeout,
                store.recent_agent_verdicts(&identity.agent_id, threshold + 5),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
            None => Vec::new(),
        };
        let verdicts = window::merge_verdicts(stored, self.recent.agent(&identity.agent_id));
        let streak = window::violation_streak(&verdicts);
        if streak < threshold as usize {
            return;
        }
        let reason = format!("Auto-contained: {streak} consecutive boundary violations");
        let at = Utc::now();
        if let Some(writer) = &self.writer {
            writer.enqueue(WriteRecord::containment(
                identity.agent_hash.clone(),
                ContainmentRecord {
                    log_id: format!("ctl-{}", random_hex(8)),
                    agent_id: identity.agent_id.clone(),
                    action: "auto_pause".into(),
                    actor: "system".into(),
                    reason: reason.clone(),
                    previous_status: ContainmentStatus::Active,
                    new_status: ContainmentStatus::Paused,
                    metadata: serde_json::json!({ "checkpoint_id": record.checkpoint_id }),
                    at,
                },
            ));
        }
        // The next request must see the pause at once: write the new settings into the cache
        // (the original only deleted the key, so a cold cache let the agent through).
        let mut paused = settings.clone();
        paused.containment_status = ContainmentStatus::Paused;
        match &self.agents {
            Some(agents) => agents.replace(&identity.agent_id, &paused).await,
            None => {
                let key = keys::quota_agent(&identity.agent_id);
                self.cache
                    .put_json(
                        &key,
                        &CachedAgent {
                            agent_settings: paused,
                        },
                        Some(key.ttl),
                    )
                    .await;
            }
        }
        tracing::warn!(agent = %identity.agent_id, streak, "agent auto-contained (paused)");
    }

    fn raise_drift(
        &self,
        identity: &AgentIdentity,
        record: &CheckpointRecord,
        drift: window::Drift,
    ) {
        let Some(writer) = &self.writer else {
            return;
        };
        let first = drift
            .checkpoint_ids
            .first()
            .cloned()
            .unwrap_or_else(|| record.checkpoint_id.clone());
        let alert = DriftAlertRecord {
            id: format!("ida-{}", uuid_v4()),
            agent_id: identity.agent_id.clone(),
            card_id: record.card_id.clone(),
            session_id: identity.session_id.clone(),
            alert_type: drift.direction.to_owned(),
            severity: drift.severity.to_owned(),
            description: format!(
                "{} consecutive non-clear integrity verdicts in session {} (integrity similarity {:.2})",
                drift.streak, identity.session_id, drift.integrity_similarity
            ),
            drift_data: serde_json::json!({
                "integrity_similarity": drift.integrity_similarity,
                "streak_length": drift.streak,
                "checkpoint_ids": drift.checkpoint_ids,
                "source": "gateway",
            }),
            dedup_key: format!("{}:{}:{first}", identity.agent_id, identity.session_id),
            created_at: Utc::now(),
        };
        tracing::info!(agent = %identity.agent_id, session = %identity.session_id, direction = drift.direction, "integrity drift alert");
        writer.enqueue(WriteRecord::drift_alert(identity.agent_hash.clone(), alert));
    }

    /// Claims the agent's pending nudges for one request. Fast when there are none: a cache
    /// flag says whether to ask the database at all; the claim itself is bounded in time.
    pub async fn claim_nudges(&self, agent_id: &str) -> Option<NudgeClaim> {
        let store = self.store.as_ref()?;
        let flag_key = nudge_flag_key(agent_id);
        let flag = self.cache.get_text(&flag_key).await?;
        let token = format!("claim-{}", random_hex(12));
        let now = Utc::now();
        let claimed = match tokio::time::timeout(
            self.settings.nudge_claim_timeout,
            store.claim_pending_nudges(
                agent_id,
                &token,
                now,
                nudges::NUDGE_MAX_AGE,
                nudges::CLAIM_FOR,
                nudges::MAX_NUDGES_PER_REQUEST,
            ),
        )
        .await
        {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => {
                tracing::debug!(agent = %agent_id, error = %e, "nudge claim failed; the request goes without");
                return None;
            }
            Err(_) => {
                // The claim may still commit: release whatever it took once it does.
                let store = store.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let _ = store.release_nudges(&token).await;
                });
                return None;
            }
        };
        if claimed.is_empty() {
            if nudges::flag_is_stale(&flag, now) {
                self.cache.delete(&flag_key).await;
            }
            return None;
        }
        let contents: Vec<String> = claimed.iter().map(|n| n.nudge_content.clone()).collect();
        Some(NudgeClaim {
            token,
            count: claimed.len(),
            note: nudges::combine(&contents)?,
        })
    }

    /// Settles a claim once the upstream answered: delivered when it accepted the request
    /// (2xx), released for a later request otherwise. In the background; never fails the request.
    pub fn settle_nudges(&self, claim: NudgeClaim, accepted: bool, session_id: &str) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let session_id = session_id.to_owned();
        let guard = self.tasks.enter();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let result = if accepted {
                store
                    .confirm_nudges(&claim.token, &session_id, Utc::now())
                    .await
            } else {
                store.release_nudges(&claim.token).await
            };
            if let Err(e) = result {
                // An unsettled claim lapses after CLAIM_FOR and the nudge is offered again.
                tracing::warn!(error = %e, accepted, "settling delivered nudges failed; the claim will lapse");
            }
            metrics
                .background_tasks_total
                .with_label_values(&["nudge_delivery"])
                .inc();
            drop(guard);
        });
    }
}

/// Cache key of the "this agent has pending nudges" flag.
pub fn nudge_flag_key(agent_id: &str) -> String {
    format!("aip:nudges:{agent_id}")
}

fn window_entry(item: &WindowItem) -> WindowEntry {
    WindowEntry {
        checkpoint_id: item.checkpoint_id.clone(),
        verdict: match item.verdict {
            Verdict::Clear => crate::plugin::policy::Verdict::Clear,
            Verdict::ReviewNeeded => crate::plugin::policy::Verdict::ReviewNeeded,
            Verdict::BoundaryViolation => crate::plugin::policy::Verdict::BoundaryViolation,
        },
        reasoning_summary: item.reasoning_summary.clone(),
        concern_categories: item.categories.clone(),
        timestamp_ms: u64::try_from(item.timestamp.timestamp_millis()).unwrap_or(0),
    }
}

fn store_verdict(verdict: crate::plugin::policy::Verdict) -> Verdict {
    match verdict {
        crate::plugin::policy::Verdict::Clear => Verdict::Clear,
        crate::plugin::policy::Verdict::ReviewNeeded => Verdict::ReviewNeeded,
        crate::plugin::policy::Verdict::BoundaryViolation => Verdict::BoundaryViolation,
    }
}

fn categories(concerns: &serde_json::Value) -> Vec<String> {
    concerns
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c.get("category").and_then(|v| v.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = vec![0u8; n];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // Never expected; fall back to the clock so ids stay unique enough to be useful.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        return format!("{nanos:0width$x}", width = n * 2);
    }
    hex::encode(bytes)
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> String {
    let h = random_hex(16);
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_shaped_and_distinct() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
