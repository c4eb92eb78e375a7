//! A loaded provider-adapter plugin: validation at load (world, imports, smoke call), a warm
//! instance pool, and typed calls with deadline, memory cap, metrics and typed errors.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Component, types::ComponentItem};
use wasmtime::{Store, Trap};

use super::bindings::summary::summary_exports;
use super::bindings::{ProviderAdapter, ProviderAdapterPre, wit_types};
use super::engine::PluginEngine;
use super::instance::{PluginIdentity, PluginState, import_allowed, linker};
use super::manifest::{FailureMode, Manifest, World};
use crate::metrics::Metrics;

pub use summary_exports::ResponseSummary;
pub use wit_types::{
    AdapterError, CredentialSource, ErrorKind, Extraction, GatewayError, RequestInfo, RequestPlan,
    SseEvent, StreamDelta,
};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built into the binary.
    Embedded,
    /// Loaded from a manifest file in a plugin directory.
    Directory(std::path::PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Embedded => f.write_str("embedded"),
            Origin::Directory(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a plugin was refused at load time.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes do not compile as a component.
    #[error(transparent)]
    Compile(#[from] super::engine::CompileError),
    /// The component does not export what its world requires.
    #[error("component does not implement world `{world}`: missing export `{export}`")]
    WrongWorld {
        /// The manifest's world.
        world: &'static str,
        /// The missing export.
        export: &'static str,
    },
    /// The component imports something the gateway does not allow.
    #[error("component imports `{0}`, which plugins may not use")]
    ForbiddenImport(String),
    /// Instantiation or the type check of the exports failed.
    #[error("component cannot be instantiated: {0}")]
    Instantiate(String),
    /// The smoke call (`describe`) failed.
    #[error("smoke call failed: {0}")]
    SmokeCall(#[source] PluginError),
    /// The descriptor is unusable.
    #[error("invalid descriptor: {0}")]
    Descriptor(String),
}

/// Why a plugin call failed. Never a panic: every trap becomes one of these.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its {deadline_ms} ms deadline")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The call tried to grow memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory cap of {cap_mb} MiB")]
    Memory {
        /// Plugin name.
        plugin: String,
        /// The cap.
        cap_mb: usize,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The trap.
        message: String,
    },
    /// A fresh instance could not be created.
    #[error("plugin `{plugin}` could not be instantiated: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The plugin declined the input (e.g. a body that is not JSON).
    #[error("plugin `{plugin}` does not handle this input: {message}")]
    Unsupported {
        /// Plugin name.
        plugin: String,
        /// The plugin's reason.
        message: String,
    },
    /// The plugin reported an internal error.
    #[error("plugin `{plugin}` failed: {message}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// The plugin's reason.
        message: String,
    },
}

impl PluginError {
    /// The `result` label of `gateway_plugin_calls_total` for this error.
    pub fn metric_result(&self) -> &'static str {
        match self {
            PluginError::Timeout { .. } => "timeout",
            PluginError::Memory { .. } => "memory",
            PluginError::Trap { .. } | PluginError::Instantiate { .. } => "trap",
            PluginError::Unsupported { .. } | PluginError::Failed { .. } => "error",
        }
    }

    /// Whether the plugin simply declined the input (not a fault of the plugin).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, PluginError::Unsupported { .. })
    }
}

/// What an adapter says about itself, validated.
#[derive(Debug, Clone)]
pub struct AdapterDescriptor {
    /// Provider name (metrics label).
    pub name: String,
    /// Route prefix, e.g. `/anthropic`.
    pub route_prefix: String,
    /// Default upstream base URL.
    pub default_upstream: http::Uri,
    /// Where the caller's key is carried.
    pub credential_sources: Vec<CredentialSource>,
}

/// A warm instance with its store.
struct Warm {
    store: Store<PluginState>,
    bindings: AdapterBindings,
    uses: u32,
}

/// The exports of one adapter instance: the required `adapter` interface and, when the
/// component has it, `adapter-summary`.
struct AdapterBindings {
    core: ProviderAdapter,
    summary: Option<summary_exports::Guest>,
}

impl AdapterBindings {
    fn mnemom_gateway_adapter(&self) -> &super::bindings::adapter_exports::Guest {
        self.core.mnemom_gateway_adapter()
    }
}

/// A loaded, validated provider adapter.
pub struct AdapterPlugin {
    manifest: Manifest,
    descriptor: AdapterDescriptor,
    sha256: String,
    origin: Origin,
    engine: PluginEngine,
    pre: ProviderAdapterPre<PluginState>,
    /// Where `adapter-summary` is in this component, when it exports it.
    summary: Option<summary_exports::GuestIndices>,
    identity: Arc<PluginIdentity>,
    idle: Mutex<Vec<Warm>>,
    metrics: Metrics,
    /// The series every request touches, resolved once.
    hot_metrics: HotMetrics,
    /// The proxy's series of this adapter's provider (resolved once its descriptor is known).
    provider_series: Option<Arc<crate::metrics::ProviderSeries>>,
}

impl std::fmt::Debug for AdapterPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterPlugin")
            .field("name", &self.manifest.name)
            .field("sha256", &self.sha256)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The exports `provider-adapter` requires, by their full names.
const ADAPTER_FUNCTIONS: &[&str] = &[
    "describe",
    "transform-request",
    "parse-response",
    "parse-event",
    "map-error",
];

/// The exports an AIP policy requires.
const POLICY_FUNCTIONS: &[&str] = &["describe", "check"];

/// Whether a compiled component exports the optional `adapter-summary` interface (any 0.1.x).
pub fn exports_summary(engine: &PluginEngine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine.engine())
        .any(|(name, _)| name.starts_with("mnemom:gateway/adapter-summary@0.1."))
}

/// Checks a compiled component against `world` and the world's import allow-list.
pub fn check_component(
    engine: &PluginEngine,
    component: &Component,
    world: World,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine.engine()) {
        if !import_allowed(world, name) {
            return Err(LoadError::ForbiddenImport(name.to_owned()));
        }
    }
    let (interface, full_name, functions) = match world {
        World::ProviderAdapter => (
            "mnemom:gateway/adapter@0.1.",
            "mnemom:gateway/adapter@0.1.0",
            ADAPTER_FUNCTIONS,
        ),
        World::AipPolicy | World::AipPolicyPure => (
            "mnemom:gateway/policy@0.1.",
            "mnemom:gateway/policy@0.1.0",
            POLICY_FUNCTIONS,
        ),
    };
    let export = ty
        .exports(engine.engine())
        .find(|(name, _)| name.starts_with(interface))
        .map(|(_, item)| item.ty);
    let Some(ComponentItem::ComponentInstance(instance)) = export else {
        return Err(LoadError::WrongWorld {
            world: world.as_str(),
            export: full_name,
        });
    };
    for function in functions {
        if !instance
            .exports(engine.engine())
            .any(|(name, _)| name == *function)
        {
            return Err(LoadError::WrongWorld {
                world: world.as_str(),
                export: function,
            });
        }
    }
    Ok(())
}

impl AdapterPlugin {
    /// Compiles, checks and smoke-tests a provider adapter.
    pub async fn load(
        engine: &PluginEngine,
        manifest: Manifest,
        wasm: &[u8],
        sha256: String,
        origin: Origin,
        metrics: &Metrics,
    ) -> Result<Self, LoadError> {
        let component = engine.compile(wasm, &sha256)?;
        check_component(engine, &component, manifest.world)?;
        let linker =
            linker(engine.engine()).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let summary = if exports_summary(engine, &component) {
            Some(
                summary_exports::GuestIndices::new(&instance_pre)
                    .map_err(|e| LoadError::Instantiate(format!("adapter-summary: {e:#}")))?,
            )
        } else {
            None
        };
        let pre = ProviderAdapterPre::new(instance_pre)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let identity = Arc::new(PluginIdentity {
            name: manifest.name.clone(),
            config: manifest.config.clone(),
        });
        metrics.preset_plugin(&manifest.name);
        let hot_metrics = HotMetrics::new(metrics, &manifest.name);
        let mut plugin = Self {
            descriptor: AdapterDescriptor {
                name: String::new(),
                route_prefix: String::new(),
                default_upstream: http::Uri::from_static("http://invalid"),
                credential_sources: Vec::new(),
            },
            manifest,
            sha256,
            origin,
            engine: engine.clone(),
            pre,
            summary,
            identity,
            idle: Mutex::new(Vec::new()),
            hot_metrics,
            provider_series: None,
            metrics: metrics.clone(),
        };
        let raw = plugin.describe().await.map_err(LoadError::SmokeCall)?;
        plugin.descriptor = validate_descriptor(raw)?;
        plugin.provider_series = Some(Arc::new(metrics.provider_series(&plugin.descriptor.name)));
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

    /// The proxy's per-request metric series of this adapter's provider (resolved at load; only
    /// the load-time smoke call runs before that, and it is resolved on demand then).
    pub fn provider_series(&self) -> Arc<crate::metrics::ProviderSeries> {
        match &self.provider_series {
            Some(series) => series.clone(),
            None => Arc::new(self.metrics.provider_series(&self.descriptor.name)),
        }
    }

    /// The validated descriptor.
    pub fn descriptor(&self) -> &AdapterDescriptor {
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

    /// Number of idle warm instances (for tests and diagnostics).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    async fn checkout(&self) -> Result<Warm, PluginError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(warm) = reused {
            return Ok(warm);
        }
        let mut store = Store::new(
            self.engine.engine(),
            PluginState::new(self.identity.clone(), self.manifest.limits.memory_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(PluginEngine::ticks_for(self.manifest.limits.timeout));
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.classify(&store, e))?;
        let core =
            ProviderAdapter::new(&mut store, &instance).map_err(|e| self.classify(&store, e))?;
        let summary = match &self.summary {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|e| self.classify(&store, e))?,
            ),
            None => None,
        };
        let bindings = AdapterBindings { core, summary };
        Ok(Warm {
            store,
            bindings,
            uses: 0,
        })
    }

    /// Returns an instance to the pool unless it should be recycled.
    fn checkin(&self, mut warm: Warm) {
        warm.uses += 1;
        let limits = &self.manifest.limits;
        if warm.uses >= limits.recycle_after
            || warm.store.data().limiter.peak() > limits.recycle_memory_bytes
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < limits.pool_size
        {
            idle.push(warm);
        }
    }

    fn classify(&self, store: &Store<PluginState>, error: wasmtime::Error) -> PluginError {
        classify_call_error(&self.manifest, store.data().limiter.denied(), error)
    }

    fn record(&self, function: &str, started: Instant, result: &Result<(), PluginError>) {
        let elapsed = started.elapsed().as_secs_f64();
        let hot = &self.hot_metrics;
        match result {
            Ok(()) => hot.successes.inc(),
            Err(e) => self
                .metrics
                .plugin_calls_total
                .with_label_values(&[self.name(), e.metric_result()])
                .inc(),
        }
        match function {
            "transform-request" => hot.transform_request.observe(elapsed),
            "parse-response" => hot.parse_response.observe(elapsed),
            "summarize-response" => hot.summarize_response.observe(elapsed),
            "parse-event" => hot.parse_event.observe(elapsed),
            _ => self
                .metrics
                .plugin_call_duration
                .with_label_values(&[self.name(), function])
                .observe(elapsed),
        }
    }

    fn adapter_error(&self, error: AdapterError) -> PluginError {
        let plugin = self.manifest.name.clone();
        match error {
            AdapterError::Unsupported(message) => PluginError::Unsupported { plugin, message },
            AdapterError::Internal(message) => PluginError::Failed { plugin, message },
        }
    }

    /// Runs one call on a warm instance: deadline armed, outcome classified, instance recycled
    /// on any trap. `call` receives the bindings and the store.
    async fn run<R>(
        &self,
        function: &'static str,
        call: impl AsyncFnOnce(&AdapterBindings, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        let _running = self.engine.call();
        let mut warm = match self.checkout().await {
            Ok(warm) => warm,
            Err(e) => {
                let failure = Err(e);
                self.record(
                    function,
                    started,
                    &failure.as_ref().map(|_| ()).map_err(Clone::clone),
                );
                return failure;
            }
        };
        warm.store
            .set_epoch_deadline(PluginEngine::ticks_for(self.manifest.limits.timeout));
        let Warm {
            ref mut store,
            ref bindings,
            ..
        } = warm;
        let outcome = call(bindings, store).await;
        let result = match outcome {
            Ok(value) => {
                self.checkin(warm);
                Ok(value)
            }
            // A trapped instance is never reused: its memory may be in any state.
            Err(e) => Err(self.classify(&warm.store, e)),
        };
        self.record(
            function,
            started,
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        result
    }

    /// `describe` (also the smoke call at load time).
    pub async fn describe(&self) -> Result<wit_types::Descriptor, PluginError> {
        self.run("describe", async |b, s| {
            b.mnemom_gateway_adapter().call_describe(s).await
        })
        .await
    }

    /// `transform-request`.
    pub async fn transform_request(
        &self,
        request: &RequestInfo,
        body: &[u8],
    ) -> Result<RequestPlan, PluginError> {
        let result = self
            .run("transform-request", async |b, s| {
                b.mnemom_gateway_adapter()
                    .call_transform_request(s, request, body)
                    .await
            })
            .await?;
        result.map_err(|e| self.adapter_error(e))
    }

    /// `parse-response`.
    pub async fn parse_response(&self, body: &[u8]) -> Result<Extraction, PluginError> {
        let result = self
            .run("parse-response", async |b, s| {
                b.mnemom_gateway_adapter()
                    .call_parse_response(s, body)
                    .await
            })
            .await?;
        result.map_err(|e| self.adapter_error(e))
    }

    /// Whether the component exports `adapter-summary` (`summarize-response`).
    pub fn summarizes(&self) -> bool {
        self.summary.is_some()
    }

    /// `summarize-response`, or `parse-response` reduced to the same summary when the
    /// component does not export it.
    pub async fn summarize_response(&self, body: &[u8]) -> Result<ResponseSummary, PluginError> {
        if !self.summarizes() {
            let extraction = self.parse_response(body).await?;
            return Ok(ResponseSummary {
                usage: extraction.usage,
                model: extraction.model,
                stop_reason: extraction.stop_reason,
                tool_calls: u32::try_from(extraction.tool_calls.len()).unwrap_or(u32::MAX),
            });
        }
        let result = self
            .run("summarize-response", async |b, s| match &b.summary {
                Some(summary) => summary.call_summarize_response(s, body).await,
                None => Err(wasmtime::Error::msg("adapter-summary is not exported")),
            })
            .await?;
        result.map_err(|e| self.adapter_error(e))
    }

    /// `parse-event`.
    pub async fn parse_event(&self, event: &SseEvent) -> Result<StreamDelta, PluginError> {
        let result = self
            .run("parse-event", async |b, s| {
                b.mnemom_gateway_adapter().call_parse_event(s, event).await
            })
            .await?;
        result.map_err(|e| self.adapter_error(e))
    }

    /// `map-error`.
    pub async fn map_error(&self, error: &GatewayError) -> Result<Vec<u8>, PluginError> {
        self.run("map-error", async |b, s| {
            b.mnemom_gateway_adapter().call_map_error(s, error).await
        })
        .await
    }
}

/// Types a failed call: past the memory cap (`memory_denied`), past the deadline (an epoch
/// interrupt), or any other trap. Shared by adapters and policies.
pub fn classify_call_error(
    manifest: &Manifest,
    memory_denied: bool,
    error: wasmtime::Error,
) -> PluginError {
    let plugin = manifest.name.clone();
    if memory_denied {
        return PluginError::Memory {
            plugin,
            cap_mb: manifest.limits.memory_bytes >> 20,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout {
            plugin,
            deadline_ms: manifest.limits.timeout.as_millis() as u64,
        },
        _ => PluginError::Trap {
            plugin,
            message: format!("{error:#}"),
        },
    }
}

/// Validates a descriptor returned by `describe`.
pub fn validate_descriptor(raw: wit_types::Descriptor) -> Result<AdapterDescriptor, LoadError> {
    super::manifest::validate_name(&raw.name)
        .map_err(|e| LoadError::Descriptor(format!("name: {e}")))?;
    let prefix = raw.route_prefix;
    let valid_prefix = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix[1..].contains('/')
        && prefix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_prefix {
        return Err(LoadError::Descriptor(format!(
            "route prefix `{prefix}` must be `/` followed by one path segment"
        )));
    }
    if matches!(prefix.as_str(), "/health" | "/metrics" | "/models.json") {
        return Err(LoadError::Descriptor(format!(
            "route prefix `{prefix}` is reserved by the gateway"
        )));
    }
    let upstream = crate::config::parse_base_url("default-upstream", &raw.default_upstream)
        .map_err(|e| LoadError::Descriptor(e.reason))?;
    if raw.credential_sources.is_empty() {
        return Err(LoadError::Descriptor("no credential sources".into()));
    }
    Ok(AdapterDescriptor {
        name: raw.name,
        route_prefix: prefix,
        default_upstream: upstream,
        credential_sources: raw.credential_sources,
    })
}

/// An adapter's per-request metric series, resolved at load instead of looked up by label on
/// every call.
#[derive(Debug)]
struct HotMetrics {
    successes: prometheus::IntCounter,
    transform_request: prometheus::Histogram,
    parse_response: prometheus::Histogram,
    summarize_response: prometheus::Histogram,
    parse_event: prometheus::Histogram,
}

impl HotMetrics {
    fn new(metrics: &Metrics, plugin: &str) -> Self {
        let duration = |function: &str| {
            metrics
                .plugin_call_duration
                .with_label_values(&[plugin, function])
        };
        Self {
            successes: metrics
                .plugin_calls_total
                .with_label_values(&[plugin, "success"]),
            transform_request: duration("transform-request"),
            parse_response: duration("parse-response"),
            summarize_response: duration("summarize-response"),
            parse_event: duration("parse-event"),
        }
    }
}
