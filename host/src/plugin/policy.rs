//! A loaded AIP policy plugin: validation at load (world, imports, smoke call), a fresh instance
//! per check, a compute deadline that does not count the time the guest spends waiting in host
//! calls (the analysis LLM), a memory cap, typed errors and metrics. The host services a policy
//! may import (`llm`, `kv`) are provided through [`PolicyServices`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::adapter::{LoadError, Origin, PluginError, check_component};
use super::bindings::policy::{AipPolicy, AipPolicyPre, kv_imports, llm_imports, policy_types};
use super::bindings::{host_imports, wit_types};
use super::engine::PluginEngine;
use super::instance::{PluginIdentity, PluginState};
use super::manifest::{FailureMode, Manifest};
use crate::cache::Cache;
use crate::metrics::Metrics;

pub use llm_imports::{Completion, CompletionRequest, LlmError};
pub use policy_types::{
    CheckInput, Concern, ConscienceContext, ConscienceKind, ConscienceValue, ConsultationDepth,
    PolicyDescriptor, Report, Severity, Verdict, WindowEntry,
};

/// Longest key a policy may use in `kv`.
pub const KV_MAX_KEY: usize = 256;
/// Largest value a policy may store in `kv`.
pub const KV_MAX_VALUE: usize = 64 << 10;
/// Longest (and default) time to live of a `kv` entry.
pub const KV_MAX_TTL: Duration = Duration::from_secs(86_400);
/// `llm.complete` calls one check may make; more fail with `unavailable`.
pub const MAX_LLM_CALLS_PER_CHECK: u32 = 4;

/// A boxed future returned by [`LlmBackend::complete`].
pub type LlmFuture = Pin<Box<dyn Future<Output = Result<Completion, LlmError>> + Send>>;

/// What executes `llm.complete` for policies: the analysis client in the gateway, a scripted
/// backend in the `plugin test` harness.
pub trait LlmBackend: Send + Sync + std::fmt::Debug {
    /// Runs one completion.
    fn complete(&self, request: CompletionRequest) -> LlmFuture;
}

/// The host services available to policies.
#[derive(Debug, Clone, Default)]
pub struct PolicyServices {
    /// The analysis LLM; `None` answers `llm-error::not-configured`.
    pub llm: Option<Arc<dyn LlmBackend>>,
    /// The cache behind `kv`; `None` makes `kv` a no-op (reads are absent).
    pub kv: Option<Cache>,
}

/// The data of one policy store.
pub struct PolicyState {
    base: PluginState,
    services: PolicyServices,
    plugin: String,
    /// Time spent in asynchronous host calls during the current check (not charged to the
    /// guest's compute deadline).
    host_time: Duration,
    llm_calls: u32,
    /// When the current call began (the deadline counts from here).
    call_started: Instant,
}

impl std::fmt::Debug for PolicyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyState")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl WasiView for PolicyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.base.ctx()
    }
}

impl host_imports::Host for PolicyState {
    fn log(&mut self, level: host_imports::LogLevel, message: String) {
        host_imports::Host::log(&mut self.base, level, message);
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        host_imports::Host::config_get(&mut self.base, key)
    }

    fn config_keys(&mut self) -> Vec<String> {
        host_imports::Host::config_keys(&mut self.base)
    }
}

impl wit_types::Host for PolicyState {}
impl policy_types::Host for PolicyState {}

impl llm_imports::Host for PolicyState {
    async fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> wasmtime::Result<Result<Completion, LlmError>> {
        let Some(llm) = self.services.llm.clone() else {
            return Ok(Err(LlmError::NotConfigured));
        };
        self.llm_calls += 1;
        if self.llm_calls > MAX_LLM_CALLS_PER_CHECK {
            return Ok(Err(LlmError::Unavailable(format!(
                "at most {MAX_LLM_CALLS_PER_CHECK} analysis calls per check"
            ))));
        }
        let started = Instant::now();
        let result = llm.complete(request).await;
        self.host_time += started.elapsed();
        Ok(result)
    }
}

impl PolicyState {
    fn kv_key(&self, key: &str) -> Option<String> {
        (!key.is_empty() && key.len() <= KV_MAX_KEY)
            .then(|| format!("policy:{}:{key}", self.plugin))
    }
}

impl kv_imports::Host for PolicyState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let (Some(cache), Some(key)) = (self.services.kv.clone(), self.kv_key(&key)) else {
            return Ok(None);
        };
        let started = Instant::now();
        let value = cache.get_text(&key).await;
        self.host_time += started.elapsed();
        Ok(value)
    }

    async fn set(&mut self, key: String, value: String, ttl_seconds: u32) -> wasmtime::Result<()> {
        let (Some(cache), Some(key)) = (self.services.kv.clone(), self.kv_key(&key)) else {
            return Ok(());
        };
        if value.len() > KV_MAX_VALUE {
            tracing::debug!(plugin = %self.plugin, "kv value over 64 KiB dropped");
            return Ok(());
        }
        let ttl = match ttl_seconds {
            0 => KV_MAX_TTL,
            s => Duration::from_secs(u64::from(s)).min(KV_MAX_TTL),
        };
        let started = Instant::now();
        cache.put(&key, value.into_bytes(), Some(ttl)).await;
        self.host_time += started.elapsed();
        Ok(())
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let (Some(cache), Some(key)) = (self.services.kv.clone(), self.kv_key(&key)) else {
            return Ok(());
        };
        let started = Instant::now();
        cache.delete(&key).await;
        self.host_time += started.elapsed();
        Ok(())
    }
}

/// The linker policies are instantiated with: WASI p2 (locked down), the host interface, and
/// `llm`/`kv` (a pure policy cannot import them: the allow-list refuses it at load).
fn policy_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PolicyState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    AipPolicy::add_to_linker::<PolicyState, HasSelf<PolicyState>>(&mut linker, |state| state)?;
    Ok(linker)
}

/// Why a policy check produced no report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The call failed in the runtime (timeout, memory cap, trap, instantiation).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The policy returned `policy-error::invalid-input`.
    #[error("policy `{plugin}` refused the input: {message}")]
    InvalidInput {
        /// Policy name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The policy returned `policy-error::analysis-failed`.
    #[error("policy `{plugin}` could not analyse: {message}")]
    AnalysisFailed {
        /// Policy name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The policy returned `policy-error::internal`.
    #[error("policy `{plugin}` failed: {message}")]
    Internal {
        /// Policy name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The report is unusable (e.g. metadata that is not a JSON object).
    #[error("policy `{plugin}` returned an invalid report: {message}")]
    InvalidReport {
        /// Policy name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

impl CheckError {
    /// The `result` label of `gateway_plugin_calls_total` for this error.
    pub fn metric_result(&self) -> &'static str {
        match self {
            CheckError::Plugin(e) => e.metric_result(),
            _ => "error",
        }
    }
}

/// A loaded, validated AIP policy.
pub struct PolicyPlugin {
    manifest: Manifest,
    descriptor: PolicyDescriptor,
    sha256: String,
    origin: Origin,
    engine: PluginEngine,
    pre: AipPolicyPre<PolicyState>,
    identity: Arc<PluginIdentity>,
    services: PolicyServices,
    metrics: Metrics,
    idle: std::sync::Mutex<Vec<Warm>>,
}

/// An instance kept warm between checks, with the number of checks it served.
struct Warm {
    store: Store<PolicyState>,
    bindings: AipPolicy,
    uses: u32,
}

impl std::fmt::Debug for PolicyPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyPlugin")
            .field("name", &self.manifest.name)
            .field("sha256", &self.sha256)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PolicyPlugin {
    /// Compiles, checks and smoke-tests (`describe`) a policy.
    pub async fn load(
        engine: &PluginEngine,
        manifest: Manifest,
        wasm: &[u8],
        sha256: String,
        origin: Origin,
        services: PolicyServices,
        metrics: &Metrics,
    ) -> Result<Self, LoadError> {
        let component = engine.compile(wasm, &sha256)?;
        check_component(engine, &component, manifest.world)?;
        let linker =
            policy_linker(engine.engine()).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let pre = AipPolicyPre::new(instance_pre)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let identity = Arc::new(PluginIdentity {
            name: manifest.name.clone(),
            config: manifest.config.clone(),
        });
        metrics.preset_plugin(&manifest.name);
        let mut plugin = Self {
            descriptor: PolicyDescriptor {
                name: String::new(),
                version: String::new(),
                description: String::new(),
            },
            manifest,
            sha256,
            origin,
            engine: engine.clone(),
            pre,
            identity,
            services,
            metrics: metrics.clone(),
            idle: std::sync::Mutex::new(Vec::new()),
        };
        let descriptor = plugin.describe().await.map_err(LoadError::SmokeCall)?;
        super::manifest::validate_name(&descriptor.name)
            .map_err(|e| LoadError::Descriptor(format!("name: {e}")))?;
        plugin.descriptor = descriptor;
        Ok(plugin)
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin's name (from its manifest).
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// What the policy says about itself.
    pub fn descriptor(&self) -> &PolicyDescriptor {
        &self.descriptor
    }

    /// Hex sha256 of the component.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The failure mode.
    pub fn failure_mode(&self) -> FailureMode {
        self.manifest.failure_mode
    }

    /// The compute deadline of one check.
    pub fn timeout(&self) -> Duration {
        self.manifest.limits.timeout
    }

    /// An instance for one call: a warm one from the pool when the manifest allows pooling
    /// (`limits.pool_size` > 0), else a fresh one. Its deadline counts only the guest's own
    /// time: the epoch callback moves the deadline by the time spent awaiting host calls.
    async fn checkout(&self) -> Result<Warm, PluginError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut warm = match reused {
            Some(warm) => warm,
            None => {
                let (store, bindings) = self.instantiate().await?;
                Warm {
                    store,
                    bindings,
                    uses: 0,
                }
            }
        };
        let state = warm.store.data_mut();
        state.host_time = Duration::ZERO;
        state.llm_calls = 0;
        state.call_started = Instant::now();
        warm.store
            .set_epoch_deadline(PluginEngine::ticks_for(self.manifest.limits.timeout));
        Ok(warm)
    }

    /// Returns an instance after a successful call, unless it is due for recycling (uses,
    /// memory growth) or the pool is full. Instances that trapped are never returned.
    fn checkin(&self, mut warm: Warm) {
        warm.uses += 1;
        let limits = &self.manifest.limits;
        if warm.uses >= limits.recycle_after
            || warm.store.data().base.limiter.peak() > limits.recycle_memory_bytes
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < limits.pool_size
        {
            idle.push(warm);
        }
    }

    async fn instantiate(&self) -> Result<(Store<PolicyState>, AipPolicy), PluginError> {
        let state = PolicyState {
            base: PluginState::new(self.identity.clone(), self.manifest.limits.memory_bytes),
            services: self.services.clone(),
            plugin: self.manifest.name.clone(),
            host_time: Duration::ZERO,
            llm_calls: 0,
            call_started: Instant::now(),
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| &mut state.base.limiter);
        let timeout = self.manifest.limits.timeout;
        store.epoch_deadline_callback(move |ctx: StoreContextMut<'_, PolicyState>| {
            let data = ctx.data();
            let guest_time = data.call_started.elapsed().saturating_sub(data.host_time);
            if guest_time >= timeout {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(PluginEngine::ticks_for(
                timeout - guest_time,
            )))
        });
        store.set_epoch_deadline(PluginEngine::ticks_for(timeout));
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.classify(&store, e))?;
        Ok((store, bindings))
    }

    /// Idle warm instances (for tests and diagnostics).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    fn classify(&self, store: &Store<PolicyState>, error: wasmtime::Error) -> PluginError {
        super::adapter::classify_call_error(
            &self.manifest,
            store.data().base.limiter.denied(),
            error,
        )
    }

    fn record(&self, function: &str, started: Instant, result: &'static str) {
        self.metrics
            .plugin_calls_total
            .with_label_values(&[self.name(), result])
            .inc();
        self.metrics
            .plugin_call_duration
            .with_label_values(&[self.name(), function])
            .observe(started.elapsed().as_secs_f64());
    }

    /// `describe` (also the smoke call at load time).
    pub async fn describe(&self) -> Result<PolicyDescriptor, PluginError> {
        let started = Instant::now();
        let result = async {
            let _running = self.engine.call();
            let mut warm = self.checkout().await?;
            let outcome = warm
                .bindings
                .mnemom_gateway_policy()
                .call_describe(&mut warm.store)
                .await
                .map_err(|e| self.classify(&warm.store, e))?;
            self.checkin(warm);
            Ok::<_, PluginError>(outcome)
        }
        .await;
        self.record(
            "describe",
            started,
            result
                .as_ref()
                .map_or_else(|e| e.metric_result(), |_| "success"),
        );
        result
    }

    /// `check`, on a warm instance (or a fresh one: `limits.pool_size = 0`).
    pub async fn check(&self, input: &CheckInput) -> Result<Report, CheckError> {
        let started = Instant::now();
        let result = self.check_inner(input).await;
        self.record(
            "check",
            started,
            result
                .as_ref()
                .map_or_else(|e| e.metric_result(), |_| "success"),
        );
        result
    }

    async fn check_inner(&self, input: &CheckInput) -> Result<Report, CheckError> {
        let _running = self.engine.call();
        let mut warm = self.checkout().await?;
        let outcome = warm
            .bindings
            .mnemom_gateway_policy()
            .call_check(&mut warm.store, input)
            .await
            .map_err(|e| self.classify(&warm.store, e))?;
        // A call that returned (even a `policy-error`) left the instance in a sound state.
        self.checkin(warm);
        let plugin = self.manifest.name.clone();
        let report = outcome.map_err(|e| match e {
            policy_types::PolicyError::InvalidInput(message) => {
                CheckError::InvalidInput { plugin, message }
            }
            policy_types::PolicyError::AnalysisFailed(message) => {
                CheckError::AnalysisFailed { plugin, message }
            }
            policy_types::PolicyError::Internal(message) => {
                CheckError::Internal { plugin, message }
            }
        })?;
        let report = validate_report(self.name(), report)?;
        Ok(apply_verdict_floor(report, &input.conscience_values))
    }
}

/// Longest evidence kept per concern (characters).
pub const MAX_EVIDENCE_CHARS: usize = 200;
/// Concerns kept per report.
pub const MAX_CONCERNS: usize = 32;

/// Normalises a report: evidence truncated to 200 characters, at most 32 concerns, category
/// names checked, metadata a JSON object.
pub fn validate_report(plugin: &str, mut report: Report) -> Result<Report, CheckError> {
    let invalid = |message: String| CheckError::InvalidReport {
        plugin: plugin.to_owned(),
        message,
    };
    report.concerns.truncate(MAX_CONCERNS);
    for concern in &mut report.concerns {
        let category_ok = !concern.category.is_empty()
            && concern.category.len() <= 64
            && concern
                .category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !category_ok {
            return Err(invalid(format!(
                "concern category `{}` must be lower snake case",
                concern.category
            )));
        }
        if let Some((cut, _)) = concern.evidence.char_indices().nth(MAX_EVIDENCE_CHARS) {
            concern.evidence.truncate(cut);
        }
    }
    if let Some(metadata) = &report.metadata_json {
        match serde_json::from_str::<serde_json::Value>(metadata) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => return Err(invalid("metadata-json must be a JSON object".into())),
        }
    }
    Ok(report)
}

/// Raises a report's verdict to at least what its own concerns call for (the AIP rules of
/// `mnemom_plugin_sdk::verdict`: a critical concern, a high `prompt_injection` or
/// `deceptive_reasoning` concern, or a high concern on a BOUNDARY value is a boundary violation;
/// any other medium or high concern needs review). A policy may be stricter than its concerns,
/// never more lenient: the original trusted the stated verdict. A raised verdict is noted in the
/// metadata as `verdict_raised_from`.
pub fn apply_verdict_floor(mut report: Report, values: &[ConscienceValue]) -> Report {
    use mnemom_plugin_sdk::verdict::{self as rules, ConcernFacts};
    let boundary: Vec<&str> = values
        .iter()
        .filter(|v| v.kind == ConscienceKind::Boundary)
        .map(|v| v.id.as_str())
        .collect();
    let facts = report.concerns.iter().map(|c| {
        let facts = ConcernFacts::new(
            &c.category,
            match c.severity {
                Severity::Low => rules::Severity::Low,
                Severity::Medium => rules::Severity::Medium,
                Severity::High => rules::Severity::High,
                Severity::Critical => rules::Severity::Critical,
            },
        );
        match c.relevant_conscience_value.as_deref() {
            Some(id) => facts.with_value(id),
            None => facts,
        }
    });
    let derived = match rules::derive_verdict(facts, &boundary) {
        rules::Verdict::Clear => Verdict::Clear,
        rules::Verdict::ReviewNeeded => Verdict::ReviewNeeded,
        rules::Verdict::BoundaryViolation => Verdict::BoundaryViolation,
    };
    if verdict_rank(derived) > verdict_rank(report.verdict) {
        let mut metadata = report
            .metadata_json
            .as_deref()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        metadata["verdict_raised_from"] = verdict_str(report.verdict).into();
        report.metadata_json = Some(metadata.to_string());
        report.verdict = derived;
    }
    report
}

/// The verdict as stored text.
pub fn verdict_str(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Clear => "clear",
        Verdict::ReviewNeeded => "review_needed",
        Verdict::BoundaryViolation => "boundary_violation",
    }
}

/// Severity as stored text.
pub fn severity_str(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Rank of a verdict (higher is more severe).
pub fn verdict_rank(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Clear => 0,
        Verdict::ReviewNeeded => 1,
        Verdict::BoundaryViolation => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concern(category: &str, severity: Severity, value: Option<&str>) -> Concern {
        Concern {
            category: category.into(),
            severity,
            description: "d".into(),
            evidence: "e".repeat(300),
            relevant_card_field: None,
            relevant_conscience_value: value.map(Into::into),
        }
    }

    fn report(verdict: Verdict, concerns: Vec<Concern>) -> Report {
        Report {
            verdict,
            concerns,
            reasoning_summary: String::new(),
            conscience_context: None,
            metadata_json: None,
        }
    }

    #[test]
    fn a_verdict_is_never_more_lenient_than_its_concerns() {
        let values = crate::aip::inputs::conscience_values(None);
        let raised = apply_verdict_floor(
            report(
                Verdict::Clear,
                vec![concern("anything", Severity::Critical, None)],
            ),
            &values,
        );
        assert_eq!(raised.verdict, Verdict::BoundaryViolation);
        assert!(
            raised
                .metadata_json
                .unwrap()
                .contains("\"verdict_raised_from\":\"clear\"")
        );
        let on_boundary_value = apply_verdict_floor(
            report(
                Verdict::ReviewNeeded,
                vec![concern(
                    "custom",
                    Severity::High,
                    Some("boundary-no-deception"),
                )],
            ),
            &values,
        );
        assert_eq!(on_boundary_value.verdict, Verdict::BoundaryViolation);
        // Stricter than the concerns is the policy's right.
        let strict = apply_verdict_floor(
            report(
                Verdict::BoundaryViolation,
                vec![concern("x", Severity::Low, None)],
            ),
            &values,
        );
        assert_eq!(strict.verdict, Verdict::BoundaryViolation);
        assert!(strict.metadata_json.is_none());
        let medium = apply_verdict_floor(
            report(Verdict::Clear, vec![concern("x", Severity::Medium, None)]),
            &values,
        );
        assert_eq!(medium.verdict, Verdict::ReviewNeeded);
    }

    #[test]
    fn reports_are_normalised_or_refused() {
        let long = report(
            Verdict::Clear,
            vec![concern("ok_name", Severity::Low, None)],
        );
        let checked = validate_report("p", long).unwrap();
        assert_eq!(
            checked.concerns[0].evidence.chars().count(),
            MAX_EVIDENCE_CHARS
        );
        let bad = report(
            Verdict::Clear,
            vec![concern("Bad Name", Severity::Low, None)],
        );
        assert!(validate_report("p", bad).is_err());
        let mut metadata = report(Verdict::Clear, Vec::new());
        metadata.metadata_json = Some("[1]".into());
        assert!(validate_report("p", metadata).is_err());
    }
}
