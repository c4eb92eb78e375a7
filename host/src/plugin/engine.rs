//! The process-wide wasmtime engine: configuration (async calls, epoch interruption), the epoch
//! ticker that enforces call deadlines, and compilation with a cache keyed by content hash
//! (in memory, and on disk when a cache directory is writable).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::ticker::EpochTicker;
pub use super::ticker::{CallGuard, EPOCH_TICK};

/// Why a component could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The bytes are not a valid component (or are a core module).
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The engine could not be created.
    #[error("engine configuration failed: {0}")]
    Engine(String),
}

/// The engine plus its compiled-artifact cache.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    memory_cache: Arc<Mutex<HashMap<String, Component>>>,
    disk_cache: Option<PathBuf>,
    ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("disk_cache", &self.disk_cache)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Creates the engine and starts its epoch ticker. `disk_cache` is where precompiled
    /// artifacts are kept across restarts; it is created if missing and ignored if unwritable.
    pub fn new(disk_cache: Option<PathBuf>) -> Result<Self, CompileError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Reserve the whole 32-bit range (plus a guard) for each linear memory: compiled code
        // then needs no bounds check on loads and stores (out-of-range accesses fault into the
        // guard and trap). Only address space is reserved, never memory; the memory cap is the
        // manifest's limit, enforced by the store's limiter. 10,000 live instances reserve
        // ~40 TiB of the 128 TiB a 64-bit process has.
        config.memory_reservation(4 << 30);
        config.memory_guard_size(32 << 20);
        config.max_wasm_stack(512 << 10);
        config.async_stack_size(1 << 20);
        let engine = Engine::new(&config).map_err(|e| CompileError::Engine(e.to_string()))?;
        let disk_cache = disk_cache.and_then(|dir| match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "plugin cache directory is not usable; compiling in memory only");
                None
            }
        });
        let ticker = Arc::new(EpochTicker::start(engine.clone()));
        Ok(Self {
            engine,
            memory_cache: Arc::default(),
            disk_cache,
            ticker,
        })
    }

    /// Marks a call into a plugin (instantiation included) as running while the guard lives,
    /// so the deadline ticker runs (it parks when no call has run for a while).
    pub fn call(&self) -> CallGuard {
        self.ticker.call()
    }

    /// Whether the deadline ticker is parked (no plugin call for a while).
    pub fn ticker_parked(&self) -> bool {
        self.ticker.is_parked()
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Number of epoch ticks that make up `timeout` (at least one full tick, rounded up).
    pub fn ticks_for(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        (timeout.as_micros().div_ceil(tick) as u64).max(1) + 1
    }

    /// Compiles `bytes` (whose sha256 hex is `sha256`), reusing a cached artifact when one exists.
    pub fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, CompileError> {
        if let Ok(cache) = self.memory_cache.lock()
            && let Some(component) = cache.get(sha256)
        {
            return Ok(component.clone());
        }
        let component = match self.load_from_disk(sha256) {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
                self.store_to_disk(sha256, &component);
                component
            }
        };
        if let Ok(mut cache) = self.memory_cache.lock() {
            cache.insert(sha256.to_owned(), component.clone());
        }
        Ok(component)
    }

    /// Forgets in-memory artifacts whose hash is not in `keep` (after a reload replaced them).
    pub fn retain(&self, keep: &[String]) {
        if let Ok(mut cache) = self.memory_cache.lock() {
            cache.retain(|hash, _| keep.iter().any(|k| k == hash));
        }
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.disk_cache.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }

    fn load_from_disk(&self, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256)?;
        let bytes = std::fs::read(&path).ok()?;
        // The file name binds the artifact to the component's hash and this engine's settings;
        // its own hash guards against torn or tampered files in the cache directory.
        let (payload, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if Sha256::digest(payload).as_slice() != digest {
            tracing::warn!(path = %path.display(), "discarding corrupt plugin cache entry");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        #[expect(
            unsafe_code,
            reason = "deserializing trusts the artifact; it was written by this engine configuration and its checksum verified above"
        )]
        let component = unsafe { Component::deserialize(&self.engine, payload) };
        component.ok()
    }

    fn store_to_disk(&self, sha256: &str, component: &Component) {
        let Some(path) = self.artifact_path(sha256) else {
            return;
        };
        let Ok(mut bytes) = component.serialize() else {
            return;
        };
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(path = %path.display(), error = %e, "could not write plugin cache entry");
        }
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
