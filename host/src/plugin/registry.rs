//! The active plugin set and its hot reload. A `PluginSet` is immutable; a reload builds a new
//! one and swaps it in atomically, so requests in flight keep the set they started with. A
//! plugin that fails to load never replaces the last good version of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Uri;

use super::adapter::{AdapterPlugin, Origin};
use super::engine::PluginEngine;
use super::manifest::World;
use super::policy::{PolicyPlugin, PolicyServices};
use super::source::{Candidate, embedded_candidates, scan_directory};
use crate::metrics::Metrics;

/// An adapter with the upstream it forwards to.
#[derive(Debug, Clone)]
pub struct RoutedAdapter {
    /// The plugin.
    pub plugin: Arc<AdapterPlugin>,
    /// Upstream base URL (override, manifest, or the adapter's default).
    pub upstream: Uri,
    fingerprint: String,
}

/// A loaded AIP policy.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The plugin.
    pub plugin: Arc<PolicyPlugin>,
    fingerprint: String,
}

/// Any loaded plugin (what a reload compares and carries over).
#[derive(Debug, Clone)]
enum Loaded {
    Adapter(RoutedAdapter),
    Policy(LoadedPolicy),
}

impl Loaded {
    fn name(&self) -> &str {
        match self {
            Loaded::Adapter(a) => a.plugin.name(),
            Loaded::Policy(p) => p.plugin.name(),
        }
    }

    fn fingerprint(&self) -> &str {
        match self {
            Loaded::Adapter(a) => &a.fingerprint,
            Loaded::Policy(p) => &p.fingerprint,
        }
    }

    fn sha256(&self) -> &str {
        match self {
            Loaded::Adapter(a) => a.plugin.sha256(),
            Loaded::Policy(p) => p.plugin.sha256(),
        }
    }

    fn origin(&self) -> &Origin {
        match self {
            Loaded::Adapter(a) => a.plugin.origin(),
            Loaded::Policy(p) => p.plugin.origin(),
        }
    }
}

/// An immutable set of loaded plugins.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Adapters, longest route prefix first.
    adapters: Vec<RoutedAdapter>,
    /// AIP policies, by name order.
    policies: Vec<LoadedPolicy>,
    /// Increments with every swap.
    pub generation: u64,
}

impl PluginSet {
    /// The adapter serving `path`, and the path with the prefix removed (`/` when empty).
    pub fn route<'p>(&self, path: &'p str) -> Option<(&RoutedAdapter, &'p str)> {
        self.adapters.iter().find_map(|adapter| {
            let prefix = adapter.plugin.descriptor().route_prefix.as_str();
            let rest = path.strip_prefix(prefix)?;
            if rest.is_empty() {
                Some((adapter, "/"))
            } else if rest.starts_with('/') {
                Some((adapter, rest))
            } else {
                None
            }
        })
    }

    /// The adapter with this plugin name.
    pub fn adapter(&self, name: &str) -> Option<&RoutedAdapter> {
        self.adapters.iter().find(|a| a.plugin.name() == name)
    }

    /// Every adapter.
    pub fn adapters(&self) -> &[RoutedAdapter] {
        &self.adapters
    }

    /// The policy with this plugin name.
    pub fn policy(&self, name: &str) -> Option<&LoadedPolicy> {
        self.policies.iter().find(|p| p.plugin.name() == name)
    }

    /// Every policy.
    pub fn policies(&self) -> &[LoadedPolicy] {
        &self.policies
    }

    fn find(&self, name: &str) -> Option<Loaded> {
        self.adapter(name)
            .cloned()
            .map(Loaded::Adapter)
            .or_else(|| self.policy(name).cloned().map(Loaded::Policy))
    }

    fn all(&self) -> impl Iterator<Item = Loaded> + '_ {
        self.adapters
            .iter()
            .cloned()
            .map(Loaded::Adapter)
            .chain(self.policies.iter().cloned().map(Loaded::Policy))
    }
}

/// What the manager needs from the configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Plugin directories, later ones overriding earlier ones.
    pub plugin_dirs: Vec<PathBuf>,
    /// Upstream overrides by plugin name.
    pub upstream_overrides: BTreeMap<String, Uri>,
    /// Safety-net rescan interval.
    pub poll_interval: Duration,
    /// Quiet time after a change event before reloading.
    pub debounce: Duration,
    /// Host services given to AIP policies (`llm`, `kv`).
    pub policy_services: PolicyServices,
}

/// Outcome of one reload pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Plugins loaded or replaced.
    pub loaded: Vec<String>,
    /// Plugins removed.
    pub removed: Vec<String>,
    /// Plugins that failed (the previous version, if any, keeps serving), with the reason.
    pub failed: Vec<(String, String)>,
}

impl ReloadReport {
    /// Whether the set changed.
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.removed.is_empty()
    }
}

/// Owns the active set, loads candidates, and swaps sets.
#[derive(Debug)]
pub struct PluginRegistry {
    engine: PluginEngine,
    metrics: Metrics,
    config: RegistryConfig,
    current: ArcSwap<PluginSet>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Failures already reported, as (plugin, reason), so a broken plugin is logged and counted
    /// once rather than at every poll. Cleared for a plugin when it loads.
    reported: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl PluginRegistry {
    /// Creates a registry and performs the initial load (embedded defaults plus directories).
    pub async fn start(
        engine: PluginEngine,
        metrics: Metrics,
        config: RegistryConfig,
    ) -> (Arc<Self>, ReloadReport) {
        let registry = Arc::new(Self {
            engine,
            metrics,
            config,
            current: ArcSwap::from_pointee(PluginSet::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            reported: std::sync::Mutex::default(),
        });
        let report = registry.reload().await;
        (registry, report)
    }

    /// The active set. Cheap; hold the returned `Arc` for the duration of a request.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// The engine every plugin of this registry runs on.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The directories being watched.
    pub fn directories(&self) -> &[PathBuf] {
        &self.config.plugin_dirs
    }

    /// Rescans every source and swaps in a new set if anything changed.
    pub async fn reload(&self) -> ReloadReport {
        let _guard = self.reload_lock.lock().await;
        self.metrics.plugin_scans_total.inc();
        let previous = self.current();
        let mut report = ReloadReport::default();

        // Later sources override earlier ones by plugin name.
        let mut candidates: BTreeMap<String, (usize, Candidate)> = BTreeMap::new();
        let mut order = 0usize;
        for candidate in embedded_candidates() {
            candidates.insert(candidate.manifest.name.clone(), (order, candidate));
            order += 1;
        }
        let mut broken: BTreeMap<String, String> = BTreeMap::new();
        for dir in &self.config.plugin_dirs {
            match scan_directory(dir) {
                Ok(entries) => {
                    for (name, entry) in entries {
                        order += 1;
                        match entry {
                            Ok(candidate) => {
                                broken.remove(&name);
                                candidates.insert(name, (order, candidate));
                            }
                            Err(e) => {
                                broken.insert(name, e.to_string());
                            }
                        }
                    }
                }
                Err(e) => {
                    // A missing or unreadable directory is reported but changes nothing: the
                    // plugins it provided keep serving until it is readable again.
                    tracing::warn!(dir = %dir.display(), error = %e, "plugin directory unreadable");
                    for plugin in previous.all() {
                        if let Origin::Directory(path) = plugin.origin()
                            && path.starts_with(dir)
                        {
                            candidates.remove(plugin.name());
                            broken.insert(plugin.name().to_owned(), e.to_string());
                        }
                    }
                }
            }
        }

        // A name whose newest definition is broken keeps its previous version.
        let mut next: Vec<Loaded> = Vec::new();
        for (name, reason) in &broken {
            let previous_version = previous.find(name);
            if previous_version.is_some() || !candidates.contains_key(name) {
                if let Some(old) = previous_version {
                    next.push(old);
                }
                candidates.remove(name);
            }
            // Report a broken plugin once per distinct failure, not at every poll.
            self.fail(&mut report, name, reason.clone());
        }

        let mut ordered: Vec<(usize, Candidate)> = candidates.into_values().collect();
        ordered.sort_by_key(|(order, _)| *order);
        for (_, candidate) in ordered {
            let name = candidate.manifest.name.clone();
            if candidate.manifest.disabled {
                continue;
            }
            if let Some(old) = previous.find(&name)
                && old.fingerprint() == candidate.fingerprint
            {
                next.push(old);
                continue;
            }
            match self.load(candidate).await {
                Ok(loaded) => {
                    let conflict = match &loaded {
                        Loaded::Adapter(routed) => next
                            .iter()
                            .find_map(|other| match other {
                                Loaded::Adapter(a)
                                    if a.plugin.descriptor().route_prefix
                                        == routed.plugin.descriptor().route_prefix =>
                                {
                                    Some(a.plugin.name().to_owned())
                                }
                                _ => None,
                            })
                            .map(|owner| {
                                format!(
                                    "route prefix `{}` is already served by plugin `{owner}`; name the plugin `{owner}` to replace it",
                                    routed.plugin.descriptor().route_prefix
                                )
                            }),
                        Loaded::Policy(_) => None,
                    };
                    if let Some(reason) = conflict {
                        if let Some(old) = previous.find(&name) {
                            next.push(old);
                        }
                        self.fail(&mut report, &name, reason);
                        continue;
                    }
                    self.metrics
                        .plugin_reloads_total
                        .with_label_values(&[&name, "success"])
                        .inc();
                    if let Ok(mut seen) = self.reported.lock() {
                        seen.retain(|(plugin, _)| plugin != &name);
                    }
                    match &loaded {
                        Loaded::Adapter(routed) => tracing::info!(
                            plugin = %name,
                            sha256 = %routed.plugin.sha256(),
                            origin = %routed.plugin.origin(),
                            prefix = %routed.plugin.descriptor().route_prefix,
                            upstream = %routed.upstream,
                            "plugin loaded"
                        ),
                        Loaded::Policy(policy) => tracing::info!(
                            plugin = %name,
                            sha256 = %policy.plugin.sha256(),
                            origin = %policy.plugin.origin(),
                            world = %policy.plugin.manifest().world.as_str(),
                            version = %policy.plugin.descriptor().version,
                            "policy loaded"
                        ),
                    }
                    report.loaded.push(name);
                    next.push(loaded);
                }
                Err(reason) => {
                    if let Some(old) = previous.find(&name) {
                        next.push(old);
                    }
                    self.fail(&mut report, &name, reason);
                }
            }
        }
        for old in previous.all() {
            if !next.iter().any(|a| a.name() == old.name()) {
                tracing::info!(plugin = %old.name(), "plugin removed");
                report.removed.push(old.name().to_owned());
            }
        }
        if report.changed() || previous.generation == 0 {
            let keep: Vec<String> = next.iter().map(|a| a.sha256().to_owned()).collect();
            self.metrics.plugins_loaded.set(next.len() as i64);
            let mut adapters = Vec::new();
            let mut policies = Vec::new();
            for loaded in next {
                match loaded {
                    Loaded::Adapter(a) => adapters.push(a),
                    Loaded::Policy(p) => policies.push(p),
                }
            }
            adapters.sort_by(|a, b| {
                b.plugin
                    .descriptor()
                    .route_prefix
                    .len()
                    .cmp(&a.plugin.descriptor().route_prefix.len())
            });
            policies.sort_by(|a, b| a.plugin.name().cmp(b.plugin.name()));
            self.current.store(Arc::new(PluginSet {
                adapters,
                policies,
                generation: previous.generation + 1,
            }));
            self.engine.retain(&keep);
        }
        report
    }

    fn fail(&self, report: &mut ReloadReport, name: &str, reason: String) {
        let first_time = self
            .reported
            .lock()
            .map(|mut seen| seen.insert((name.to_owned(), reason.clone())))
            .unwrap_or(true);
        if first_time {
            self.metrics
                .plugin_reloads_total
                .with_label_values(&[name, "error"])
                .inc();
            tracing::error!(plugin = %name, error = %reason, "plugin rejected; the previous version (if any) keeps serving");
        }
        report.failed.push((name.to_owned(), reason));
    }

    async fn load(&self, candidate: Candidate) -> Result<Loaded, String> {
        let origin = match &candidate.manifest_path {
            None => Origin::Embedded,
            Some(path) => Origin::Directory(path.clone()),
        };
        if candidate.manifest.world.is_policy() {
            let plugin = PolicyPlugin::load(
                &self.engine,
                candidate.manifest.clone(),
                &candidate.wasm,
                candidate.sha256.clone(),
                origin,
                self.config.policy_services.clone(),
                &self.metrics,
            )
            .await
            .map_err(|e| e.to_string())?;
            return Ok(Loaded::Policy(LoadedPolicy {
                plugin: Arc::new(plugin),
                fingerprint: candidate.fingerprint,
            }));
        }
        debug_assert_eq!(candidate.manifest.world, World::ProviderAdapter);
        let manifest_upstream = match &candidate.manifest.upstream {
            None => None,
            Some(value) => Some(
                crate::config::parse_base_url("upstream", value)
                    .map_err(|e| format!("manifest {e}"))?,
            ),
        };
        let plugin = AdapterPlugin::load(
            &self.engine,
            candidate.manifest.clone(),
            &candidate.wasm,
            candidate.sha256.clone(),
            origin,
            &self.metrics,
        )
        .await
        .map_err(|e| e.to_string())?;
        let upstream = self
            .config
            .upstream_overrides
            .get(plugin.name())
            .or_else(|| {
                self.config
                    .upstream_overrides
                    .get(&plugin.descriptor().name)
            })
            .cloned()
            .or(manifest_upstream)
            .unwrap_or_else(|| plugin.descriptor().default_upstream.clone());
        Ok(Loaded::Adapter(RoutedAdapter {
            plugin: Arc::new(plugin),
            upstream,
            fingerprint: candidate.fingerprint,
        }))
    }

    /// Watches the plugin directories (change events, debounced) and polls them as a safety
    /// net, reloading on change, until `shutdown` resolves.
    pub async fn watch(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<()>(64);
        let _watcher = self.start_watcher(events_tx);
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = poll.tick() => {}
                event = events_rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    // Debounce: the kubelet writes a new timestamped directory, then swaps
                    // `..data`; wait until events stop before reading.
                    while let Ok(Some(())) = tokio::time::timeout(self.config.debounce, events_rx.recv()).await {}
                }
            }
            let report = self.reload().await;
            if report.changed() {
                tracing::info!(loaded = ?report.loaded, removed = ?report.removed, "plugin set reloaded");
            }
        }
    }

    fn start_watcher(
        &self,
        events: tokio::sync::mpsc::Sender<()>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        if self.config.plugin_dirs.is_empty() {
            return None;
        }
        let handler = move |result: notify::Result<notify::Event>| {
            // Only changes matter: the reload itself opens and reads every file, and reacting
            // to those access events would rescan forever.
            let relevant =
                result.is_ok_and(|event| !matches!(event.kind, notify::EventKind::Access(_)));
            if relevant {
                // A full channel already holds a pending reload; dropping the event is fine.
                let _ = events.try_send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on polling");
                return None;
            }
        };
        for dir in &self.config.plugin_dirs {
            // Watch the directory, never the files: the kubelet replaces them by renaming `..data`.
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch plugin directory; relying on polling");
            }
        }
        Some(watcher)
    }
}
