//! Wiring: builds the gateway from a validated configuration (engine, plugin registry, upstream
//! client, proxy, metrics, and with a database the background writer and usage recording) and
//! runs its HTTP server until shutdown, draining the writer last.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::cache::{Cache, CacheSettings};
use crate::config::{Config, ConfigError, ConfigSource};
use crate::metrics::Metrics;
use crate::ops::{self, Lifecycle};
use crate::plugin::engine::{CompileError, PluginEngine};
use crate::plugin::registry::{PluginRegistry, RegistryConfig, ReloadReport};
use crate::proxy::body::GatewayBody;
use crate::proxy::error::not_found;
use crate::proxy::exchange::ExchangeObserver;
use crate::proxy::handler::Proxy;
use crate::proxy::pool::UpstreamPools;
use crate::store::{AgentSettings, OpenError, Store, StoreConfig};
use crate::usage::UsageRecorder;
use crate::writer::{JournalError, Writer, WriterSettings};

/// The writer gets at least this long to drain after the connections are done, even when they
/// used up the grace period (journaling what the database does not take is quick).
const MIN_WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value is unusable (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be used (schema behind or broken, connection rejected).
    #[error(transparent)]
    Store(#[from] OpenError),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The plugin engine failed.
    #[error("plugin engine: {0}")]
    Engine(#[from] CompileError),
    /// A plugin directory does not exist.
    #[error("invalid configuration: MNEMOM_PLUGIN_DIRS: `{0}` is not a directory")]
    PluginDir(String),
    /// No adapter could be loaded at all.
    #[error("no provider adapter could be loaded: {0}")]
    NoAdapters(String),
    /// The background writer's journal cannot be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Settings of the AIP pipeline and the services it uses (analysis endpoints, webhooks).
#[derive(Debug, Clone)]
pub struct AipConfig {
    /// The pipeline.
    pub aip: crate::aip::AipSettings,
    /// The analysis LLM and hybrid endpoints.
    pub analysis: crate::analysis::AnalysisSettings,
    /// Webhook delivery.
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl AipConfig {
    /// Reads and validates all three from `source`.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            aip: crate::aip::AipSettings::from_source(source)?,
            analysis: crate::analysis::AnalysisSettings::from_source(source)?,
            webhooks: crate::webhooks::WebhookSettings::from_source(source)?,
        })
    }
}

/// What [`App::build_from`] adds to a gateway built from parts: the database and its writer.
struct Persistence {
    store: Store,
    /// The store was opened while the database was unreachable: the writer checks the schema
    /// before its first write.
    degraded: bool,
    writer: WriterSettings,
    observer: crate::observer::ObserverSettings,
}

/// The assembled gateway.
#[derive(Debug)]
pub struct App {
    /// Configuration.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Metrics,
    /// Plugins.
    pub registry: Arc<PluginRegistry>,
    /// The proxy.
    pub proxy: Arc<Proxy>,
    /// Probe state.
    pub lifecycle: Arc<Lifecycle>,
    /// Result of the initial plugin load.
    pub initial_load: ReloadReport,
    /// The verified license.
    pub license: Arc<crate::license::License>,
    /// The KV cache (Redis or in-process), fail-open.
    pub cache: Cache,
    /// The database (set by [`App::build_from`]; absent for gateways built from parts).
    pub store: std::sync::OnceLock<Store>,
    /// The background writer (with a database).
    pub writer: Option<Writer>,
    /// Agent settings through the cache (with a database).
    pub agents: Option<crate::agents::Agents>,
    /// The observer's job schedules (with a database); its scheduler runs in the observer and
    /// `all` roles.
    pub observer: Option<crate::observer::ObserverSettings>,
    /// The last run of each scheduled job (observer and `all` roles), for readiness.
    pub jobs: Arc<crate::observer::JobBoard>,
    /// Webhook delivery (with a database).
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// The analysis endpoints.
    pub analysis: crate::analysis::Analysis,
}

impl App {
    /// Builds the gateway from one configuration source (the environment in production, a
    /// map in tests): the validated [`Config`], the license, the cache, the database with its
    /// background writer, and usage recording. Completed exchanges go to the usage recorder,
    /// then to `observer`.
    pub async fn build_from(
        source: &dyn ConfigSource,
        observer: Arc<dyn ExchangeObserver>,
    ) -> Result<Arc<Self>, BuildError> {
        let config = Config::from_source(source)?;
        let license = Arc::new(crate::license::License::from_source(source)?);
        let cache_settings = CacheSettings::from_source(source)?;
        let store_config = StoreConfig::from_source(source, &config.data_dir)?;
        let writer_settings = WriterSettings::from_source(source, &config.data_dir)?;
        let observer_settings = crate::observer::ObserverSettings::from_source(source)?;
        let aip_config = AipConfig::from_source(source)?;
        let (store, degraded) = match Store::open_for_serve(&store_config).await {
            Ok(store) => (store, false),
            Err(e) => {
                // Only "unreachable" starts degraded; a schema that is behind, broken, or a
                // rejected connection (password, TLS, missing database) stops the process.
                let (store, cause) = e.into_degraded()?;
                tracing::warn!(database = %store_config.describe(), error = %cause, "database unreachable at start-up; serving degraded");
                (store, true)
            }
        };
        tracing::info!(database = %store_config.describe(), backend = store.backend_name(), "database");
        let persistence = Persistence {
            store,
            degraded,
            writer: writer_settings,
            observer: observer_settings,
        };
        Self::assemble(
            config,
            license,
            cache_settings,
            observer,
            aip_config,
            Some(persistence),
        )
        .await
    }

    /// Builds the gateway from its parts: loads plugins, connects nothing eagerly. No database:
    /// nothing is recorded.
    pub async fn build_with(
        config: Config,
        license: Arc<crate::license::License>,
        cache_settings: CacheSettings,
        observer: Arc<dyn ExchangeObserver>,
    ) -> Result<Arc<Self>, BuildError> {
        let aip_config = AipConfig::from_source(&crate::config::MapSource::default())?;
        Self::assemble(config, license, cache_settings, observer, aip_config, None).await
    }

    async fn assemble(
        config: Config,
        license: Arc<crate::license::License>,
        cache_settings: CacheSettings,
        observer: Arc<dyn ExchangeObserver>,
        aip_config: AipConfig,
        persistence: Option<Persistence>,
    ) -> Result<Arc<Self>, BuildError> {
        for dir in &config.plugin_dirs {
            if !dir.is_dir() {
                return Err(BuildError::PluginDir(dir.display().to_string()));
            }
        }
        let metrics = Metrics::new()?;
        license.register_metrics(metrics.registry())?;
        let cache = Cache::new(&cache_settings, &metrics);
        tracing::info!(cache = %cache.describe(), "cache backend");
        let engine = PluginEngine::new(config.plugin_cache_dir.clone())?;
        let analysis = crate::analysis::Analysis::new(&aip_config.analysis, metrics.registry())?;
        let llm: Option<Arc<dyn crate::plugin::policy::LlmBackend>> =
            if analysis.llm.is_configured() {
                Some(Arc::new(crate::aip::llm::AnalysisLlm(analysis.llm.clone())))
            } else {
                None
            };
        tracing::info!(analysis = ?analysis.mode, "AIP analysis");
        let registry_config = RegistryConfig {
            plugin_dirs: config.plugin_dirs.clone(),
            upstream_overrides: config.upstream_overrides.clone(),
            poll_interval: config.plugin_poll_interval,
            debounce: config.plugin_reload_debounce,
            policy_services: crate::plugin::policy::PolicyServices {
                llm: llm.clone(),
                kv: Some(cache.clone()),
            },
        };
        let (registry, initial_load) =
            PluginRegistry::start(engine, metrics.clone(), registry_config).await;
        if registry.current().adapters().is_empty() {
            let reasons: Vec<String> = initial_load
                .failed
                .iter()
                .map(|(n, r)| format!("{n}: {r}"))
                .collect();
            return Err(BuildError::NoAdapters(reasons.join("; ")));
        }
        let store = std::sync::OnceLock::new();
        let observer_settings = persistence.as_ref().map(|p| p.observer.clone());
        let (writer, agents, observer) = match persistence {
            Some(p) => {
                // Started last: a gateway that fails to build leaves no writer behind.
                let writer = Writer::start(
                    p.store.clone(),
                    p.degraded,
                    p.writer,
                    &metrics,
                    Some(cache.clone()),
                )?;
                tracing::info!(journal = %writer.journal_dir().display(), "background writer started");
                let agents = crate::agents::Agents::new(cache.clone(), p.store.clone());
                let _ = store.set(p.store);
                let observer: Arc<dyn ExchangeObserver> =
                    Arc::new(UsageRecorder::new(writer.clone()).then(observer));
                (Some(writer), Some(agents), observer)
            }
            None => (None, None, observer),
        };
        let config = Arc::new(config);
        let in_flight = crate::proxy::exchange::InFlight::default();
        let webhooks = match (store.get(), &writer) {
            (Some(store), Some(writer)) => Some(crate::webhooks::Webhooks::new(
                aip_config.webhooks.clone(),
                store.clone(),
                writer.clone(),
                &metrics,
            )?),
            _ => None,
        };
        let aip = crate::aip::Aip::new(crate::aip::AipParts {
            settings: aip_config.aip.clone(),
            registry: registry.clone(),
            cache: cache.clone(),
            store: store.get().cloned(),
            writer: writer.clone(),
            agents: agents.clone(),
            metrics: metrics.clone(),
            llm_configured: llm.is_some(),
            hybrid: analysis.hybrid.clone(),
            tasks: in_flight.clone(),
            webhooks: webhooks.clone(),
        })?;
        let proxy = Arc::new(Proxy {
            config: config.clone(),
            metrics: metrics.clone(),
            upstream: UpstreamPools::new(config.connect_timeout, config.worker_threads),
            observer,
            license: license.clone(),
            in_flight,
            aip: Some(Arc::new(aip)),
        });
        Ok(Arc::new(Self {
            config,
            metrics,
            registry,
            proxy,
            lifecycle: Arc::new(Lifecycle::default()),
            initial_load,
            license,
            cache,
            store,
            writer,
            agents,
            observer: observer_settings,
            jobs: Arc::default(),
            webhooks,
            analysis,
        }))
    }

    /// An agent's settings, read through the cache: a hit is the answer; a miss is `None` (use
    /// the defaults) and loads the agent into the cache in the background. Never waits for the
    /// database. `None` too for a gateway without a database.
    pub async fn agent_settings(&self, agent_id: &str) -> Option<AgentSettings> {
        self.agents.as_ref()?.settings(agent_id).await
    }

    /// Routes one request.
    pub async fn route(self: &Arc<Self>, request: Request<Incoming>) -> Response<GatewayBody> {
        if request.method() == Method::OPTIONS {
            return ops::preflight();
        }
        let path = request.uri().path();
        match path {
            "/health/live" => return ops::live(),
            "/health/ready" => {
                let (cache, database) = tokio::join!(self.cache.ping(), self.database_health());
                let writer = self.writer.as_ref().map(Writer::health);
                let jobs = (self.config.role != crate::config::Role::Gateway
                    && self.store.get().is_some())
                .then(|| self.jobs.snapshot());
                return ops::ready(
                    &self.lifecycle,
                    &self.registry,
                    &self.license,
                    &cache,
                    &database,
                    writer.as_ref(),
                    jobs,
                );
            }
            "/health/startup" => return ops::startup(&self.lifecycle),
            "/metrics" => return ops::metrics(&self.metrics),
            _ => {}
        }
        let local = match path {
            "/health" | "/health/" => {
                Some(ops::health(&self.config.version, self.config.aip_enabled))
            }
            "/models.json" => Some(ops::models()),
            _ => None,
        };
        if let Some(response) = local {
            self.count_unknown(&response);
            return response;
        }
        let set = self.registry.current();
        let routed = if self.config.role.serves_proxy() {
            set.route(path)
        } else {
            None
        };
        let Some((adapter, rest)) = routed else {
            let prefixes: Vec<String> = set
                .adapters()
                .iter()
                .map(|a| a.plugin.descriptor().route_prefix.clone())
                .collect();
            let response = not_found(&prefixes);
            self.count_unknown(&response);
            return response;
        };
        let adapter = adapter.clone();
        let rest = rest.to_owned();
        self.proxy.handle(&adapter, &rest, request).await
    }

    /// The database's readiness entry.
    async fn database_health(&self) -> ops::DependencyHealth {
        let Some(store) = self.store.get() else {
            return ops::DependencyHealth {
                status: "disabled",
                latency_ms: 0.0,
                backend: "none",
                error: None,
            };
        };
        let began = std::time::Instant::now();
        // 500 ms: well inside a kubelet probe timeout (1-3 s) even when the database hangs.
        let answer = tokio::time::timeout(std::time::Duration::from_millis(500), store.ping())
            .await
            .map_err(|_| "no answer within 500 ms".to_owned())
            .and_then(|result| result.map_err(|e| e.to_string()));
        match answer {
            Ok(_) => ops::DependencyHealth {
                status: "ok",
                latency_ms: began.elapsed().as_secs_f64() * 1000.0,
                backend: store.backend_name(),
                error: None,
            },
            Err(e) => ops::DependencyHealth {
                status: "degraded",
                latency_ms: began.elapsed().as_secs_f64() * 1000.0,
                backend: store.backend_name(),
                error: Some(e),
            },
        }
    }

    fn count_unknown(&self, response: &Response<GatewayBody>) {
        let status = response.status().as_u16().to_string();
        self.metrics
            .requests_total
            .with_label_values(&["unknown", &status])
            .inc();
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests and streams finish within the grace period, and returns.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Some(std::time::Duration::from_secs(30)))
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let watcher = tokio::spawn(self.registry.clone().watch(wait_for(self.clone())));
        let refresher = self
            .license
            .spawn_refresher(crate::license::REFRESH_INTERVAL);
        let mut scheduler = self.start_scheduler();
        // Connections are served on the request workers; this runtime accepts and runs the
        // background work (writer, reloads, schedules).
        let workers = match self.config.worker_threads {
            0 => None,
            count => match crate::workers::Workers::start(count) {
                Ok(workers) => Some(workers),
                Err(e) => {
                    tracing::error!(error = %e, "request workers could not start; serving on the main runtime");
                    None
                }
            },
        };
        self.lifecycle.mark_started();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // EMFILE and friends: back off briefly instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    self.spawn_connection(&builder, &graceful, workers.as_ref(), stream, remote);
                }
            }
        }
        self.lifecycle.mark_shutting_down();
        if let Some(scheduler) = &mut scheduler {
            scheduler.stop();
        }
        drop(listener);
        let grace_end = tokio::time::Instant::now() + self.config.shutdown_grace;
        tracing::info!(
            grace_seconds = self.config.shutdown_grace.as_secs(),
            "shutting down: draining in-flight requests"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections drained"),
            () = tokio::time::sleep_until(grace_end) => {
                tracing::warn!("grace period over; closing remaining connections");
            }
        }
        watcher.abort();
        refresher.abort();
        if let Some(writer) = &self.writer {
            // Answered requests whose exchange is still being extracted or analysed: their
            // records must reach the writer before it drains.
            while self.proxy.in_flight.count() > 0 && tokio::time::Instant::now() < grace_end {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            if let Some(webhooks) = &self.webhooks {
                // Deliveries in flight finish or are recorded as failed for the redelivery job.
                let _ = webhooks.drain(grace_end).await;
            }
            let deadline = grace_end.max(tokio::time::Instant::now() + MIN_WRITER_DRAIN);
            let report = writer.shutdown(deadline).await;
            tracing::info!(
                journal_records = report.journal_records,
                unflushed = report.unflushed,
                "background writer drained"
            );
        }
        // Last: tasks still on a worker (connections past the grace period) end here.
        drop(workers);
    }

    /// The observer's scheduler, in the observer and `all` roles when there is a database.
    fn start_scheduler(&self) -> Option<crate::observer::Scheduler> {
        if self.config.role == crate::config::Role::Gateway {
            return None;
        }
        let store = self.store.get()?;
        let settings = self.observer.as_ref()?;
        let jobs = match &self.webhooks {
            Some(webhooks) => settings.jobs_with_webhooks(store, webhooks),
            None => settings.jobs(store),
        };
        Some(crate::observer::Scheduler::start_with_board(
            jobs,
            crate::observer::Clock::System,
            crate::observer::Lease::Store(store.clone()),
            &self.metrics,
            self.jobs.clone(),
        ))
    }

    fn spawn_connection(
        self: &Arc<Self>,
        builder: &auto::Builder<TokioExecutor>,
        graceful: &hyper_util::server::graceful::GracefulShutdown,
        workers: Option<&crate::workers::Workers>,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
    ) {
        let app = self.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.route(request).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The socket moves to the worker's reactor: the accepting runtime only hands it over.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "accepted connection could not be handed to a worker");
                return;
            }
        };
        let serve = async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "accepted connection could not be handed to a worker");
                    return;
                }
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        };
        match workers {
            Some(workers) => workers.spawn(serve),
            None => drop(tokio::spawn(serve)),
        }
    }
}

/// Resolves when the app starts shutting down (stops the plugin watcher).
async fn wait_for(app: Arc<App>) {
    while !app.lifecycle.shutting_down() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
