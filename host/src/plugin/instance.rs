//! What every plugin instance carries in its store: a locked-down WASI context (no files, no
//! network, no environment), a memory limiter, and the host imports (`log`, read-only config).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{ProviderAdapter, host_imports, wit_types};
use super::manifest::World;

/// Longest plugin log message kept; longer ones are truncated.
const MAX_LOG_MESSAGE: usize = 2048;

/// Who a store belongs to: the plugin's name and its read-only config.
#[derive(Debug)]
pub struct PluginIdentity {
    /// Plugin name (log attribution).
    pub name: String,
    /// The manifest's `config` table.
    pub config: BTreeMap<String, String>,
}

/// Caps linear-memory growth and remembers the peak, so a greedy instance can be recycled.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    peak: usize,
    denied: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            peak: 0,
            denied: false,
        }
    }

    /// Largest memory size seen, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Whether a growth request was refused since the last reset.
    pub fn denied(&self) -> bool {
        self.denied
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; anything near this is a runaway plugin.
        Ok(desired <= 100_000)
    }
}

/// The data of one plugin store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limiter (read by the pool to decide on recycling).
    pub limiter: MemoryLimiter,
    identity: Arc<PluginIdentity>,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.identity.name)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    /// A fresh state: empty WASI context (stdio discarded, no preopens, no network, no env).
    pub fn new(identity: Arc<PluginIdentity>, memory_cap: usize) -> Self {
        let wasi = WasiCtx::builder()
            .allow_blocking_current_thread(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_cap),
            identity,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_imports::Host for PluginState {
    fn log(&mut self, level: host_imports::LogLevel, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = self.identity.name.as_str();
        match level {
            host_imports::LogLevel::Trace | host_imports::LogLevel::Debug => {
                tracing::debug!(plugin, "{message}")
            }
            host_imports::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host_imports::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host_imports::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.identity.config.get(&key).cloned()
    }

    fn config_keys(&mut self) -> Vec<String> {
        self.identity.config.keys().cloned().collect()
    }
}

impl wit_types::Host for PluginState {}

/// Builds the linker every plugin is instantiated with: WASI p2 (locked down by the context
/// above) and the gateway's host interface.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    ProviderAdapter::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| {
        state
    })?;
    Ok(linker)
}

/// Import prefixes a plugin may use. Anything else (sockets, HTTP, unknown interfaces) is
/// refused at load time. Filesystem interfaces are allowed because Rust's standard library
/// links them, but the context has no preopened directories, so there is nothing to open.
pub const ALLOWED_IMPORTS: &[&str] = &[
    "mnemom:gateway/host@0.1.",
    "mnemom:gateway/types@0.1.",
    "wasi:cli/environment@0.2.",
    "wasi:cli/exit@0.2.",
    "wasi:cli/stdin@0.2.",
    "wasi:cli/stdout@0.2.",
    "wasi:cli/stderr@0.2.",
    "wasi:cli/terminal-input@0.2.",
    "wasi:cli/terminal-output@0.2.",
    "wasi:cli/terminal-stdin@0.2.",
    "wasi:cli/terminal-stdout@0.2.",
    "wasi:cli/terminal-stderr@0.2.",
    "wasi:io/error@0.2.",
    "wasi:io/poll@0.2.",
    "wasi:io/streams@0.2.",
    "wasi:clocks/monotonic-clock@0.2.",
    "wasi:clocks/wall-clock@0.2.",
    "wasi:random/random@0.2.",
    "wasi:random/insecure@0.2.",
    "wasi:random/insecure-seed@0.2.",
    "wasi:filesystem/types@0.2.",
    "wasi:filesystem/preopens@0.2.",
];

/// Imports only AIP policies may use (both policy worlds).
pub const POLICY_IMPORTS: &[&str] = &["mnemom:gateway/policy-types@0.1."];

/// Imports only the `aip-policy` world may use: the analysis LLM and the namespaced KV store.
pub const POLICY_IO_IMPORTS: &[&str] = &["mnemom:gateway/llm@0.1.", "mnemom:gateway/kv@0.1."];

/// Whether a component of `world` may import `name`.
pub fn import_allowed(world: World, name: &str) -> bool {
    let allowed = |list: &[&str]| list.iter().any(|prefix| name.starts_with(prefix));
    allowed(ALLOWED_IMPORTS)
        || (world.is_policy() && allowed(POLICY_IMPORTS))
        || (world == World::AipPolicy && allowed(POLICY_IO_IMPORTS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let adapter = World::ProviderAdapter;
        assert!(import_allowed(adapter, "mnemom:gateway/host@0.1.0"));
        assert!(import_allowed(adapter, "wasi:io/streams@0.2.6"));
        assert!(!import_allowed(adapter, "wasi:sockets/tcp@0.2.0"));
        assert!(!import_allowed(adapter, "wasi:http/outgoing-handler@0.2.0"));
        assert!(!import_allowed(adapter, "mnemom:gateway/host@0.2.0"));
        assert!(!import_allowed(adapter, "mnemom:gateway/llm@0.1.0"));
        assert!(import_allowed(
            World::AipPolicyPure,
            "mnemom:gateway/policy-types@0.1.0"
        ));
        assert!(!import_allowed(
            World::AipPolicyPure,
            "mnemom:gateway/llm@0.1.0"
        ));
        assert!(!import_allowed(
            World::AipPolicyPure,
            "mnemom:gateway/kv@0.1.0"
        ));
        assert!(import_allowed(World::AipPolicy, "mnemom:gateway/llm@0.1.0"));
        assert!(import_allowed(World::AipPolicy, "mnemom:gateway/kv@0.1.0"));
    }
}
