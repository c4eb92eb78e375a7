//! `mnemom-gateway plugin inspect FILE`: what a component is (world, imports, exports, sha256)
//! and whether this gateway would accept it, with the reason when it would not.

use std::collections::BTreeMap;

use super::adapter::{AdapterPlugin, Origin};
use super::engine::{PluginEngine, sha256_hex};
use super::instance::import_allowed;
use super::manifest::{FailureMode, Limits, Manifest, World};
use super::policy::{PolicyPlugin, PolicyServices};
use crate::metrics::Metrics;

/// The inspection result.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The file inspected.
    pub file: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// The world it implements, when recognised.
    pub world: Option<String>,
    /// Import names, each with whether it is allowed.
    pub imports: Vec<(String, bool)>,
    /// Export names.
    pub exports: Vec<String>,
    /// What `describe` returned, for adapters that passed the smoke call.
    pub descriptor: Option<serde_json::Value>,
    /// Whether the gateway would load it.
    pub accepted: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

/// Inspects `bytes` (from `file`). `config` is passed to the smoke call as the plugin's config.
pub async fn inspect(file: &str, bytes: &[u8], config: BTreeMap<String, String>) -> Inspection {
    let sha256 = sha256_hex(bytes);
    let mut result = Inspection {
        file: file.to_owned(),
        sha256: sha256.clone(),
        size: bytes.len(),
        world: None,
        imports: Vec::new(),
        exports: Vec::new(),
        descriptor: None,
        accepted: false,
        reason: None,
    };
    let engine = match PluginEngine::new(None) {
        Ok(e) => e,
        Err(e) => {
            result.reason = Some(e.to_string());
            return result;
        }
    };
    let component = match engine.compile(bytes, &sha256) {
        Ok(c) => c,
        Err(e) => {
            result.reason = Some(e.to_string());
            return result;
        }
    };
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let imports_io = ty.imports(engine.engine()).any(|(name, _)| {
        name.starts_with("mnemom:gateway/llm@") || name.starts_with("mnemom:gateway/kv@")
    });
    let world = if exports
        .iter()
        .any(|e| e.starts_with("mnemom:gateway/adapter@"))
    {
        World::ProviderAdapter
    } else if exports
        .iter()
        .any(|e| e.starts_with("mnemom:gateway/policy@"))
    {
        if imports_io {
            World::AipPolicy
        } else {
            World::AipPolicyPure
        }
    } else {
        result.exports = exports;
        result.reason = Some("exports no mnemom:gateway world this gateway knows (expected mnemom:gateway/adapter@0.1.x or mnemom:gateway/policy@0.1.x)".into());
        return result;
    };
    result.exports = exports;
    result.world = Some(world.as_str().to_owned());
    result.imports = ty
        .imports(engine.engine())
        .map(|(name, _)| (name.to_owned(), import_allowed(world, name)))
        .collect();
    let Ok(metrics) = Metrics::new() else {
        result.reason = Some("internal: metrics registry".into());
        return result;
    };
    let manifest = Manifest {
        name: "inspected".into(),
        world,
        wasm: "inspected.wasm".into(),
        sha256: Some(sha256.clone()),
        disabled: false,
        upstream: None,
        failure_mode: FailureMode::FailOpen,
        limits: Limits::default(),
        config,
    };
    if world.is_policy() {
        let services = PolicyServices::default();
        match PolicyPlugin::load(
            &engine,
            manifest,
            bytes,
            sha256,
            Origin::Embedded,
            services,
            &metrics,
        )
        .await
        {
            Ok(plugin) => {
                let d = plugin.descriptor();
                result.descriptor = Some(serde_json::json!({
                    "name": d.name,
                    "version": d.version,
                    "description": d.description,
                }));
                result.accepted = true;
            }
            Err(e) => result.reason = Some(e.to_string()),
        }
        return result;
    }
    match AdapterPlugin::load(&engine, manifest, bytes, sha256, Origin::Embedded, &metrics).await {
        Ok(plugin) => {
            let d = plugin.descriptor();
            result.descriptor = Some(serde_json::json!({
                "name": d.name,
                "route_prefix": d.route_prefix,
                "default_upstream": d.default_upstream.to_string(),
                "credential_sources": d.credential_sources.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
            }));
            result.accepted = true;
        }
        Err(e) => result.reason = Some(e.to_string()),
    }
    result
}

impl Inspection {
    /// Human-readable rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("file:     {}\n", self.file));
        out.push_str(&format!("sha256:   {}\n", self.sha256));
        out.push_str(&format!("size:     {} bytes\n", self.size));
        out.push_str(&format!(
            "world:    {}\n",
            self.world.as_deref().unwrap_or("(unknown)")
        ));
        out.push_str("imports:\n");
        for (name, allowed) in &self.imports {
            out.push_str(&format!(
                "  {} {name}\n",
                if *allowed { "ok     " } else { "DENIED " }
            ));
        }
        out.push_str("exports:\n");
        for name in &self.exports {
            out.push_str(&format!("  {name}\n"));
        }
        if let Some(d) = &self.descriptor {
            out.push_str(&format!("describe: {d}\n"));
        }
        match (&self.accepted, &self.reason) {
            (true, _) => out.push_str("verdict:  accepted\n"),
            (false, Some(reason)) => out.push_str(&format!("verdict:  REJECTED: {reason}\n")),
            (false, None) => out.push_str("verdict:  REJECTED\n"),
        }
        out
    }
}
