//! The one place the host runs `bindgen!` over `wit/`: typed bindings for the plugin worlds,
//! re-exported as a small surface for the rest of the host.

wasmtime::component::bindgen!({
    world: "provider-adapter",
    path: "../wit",
    exports: { default: async },
});

/// Bindings of the AIP policy worlds. `aip-policy` imports everything `aip-policy-pure` does
/// plus `llm` and `kv`, so one set of bindings serves both: the pure world simply never links the
/// extra imports (the host adds them to every policy linker; a pure component does not use them).
pub mod policy {
    wasmtime::component::bindgen!({
        world: "aip-policy",
        path: "../wit",
        imports: {
            "mnemom:gateway/llm.complete": async | trappable,
            "mnemom:gateway/kv.get": async | trappable,
            "mnemom:gateway/kv.set": async | trappable,
            "mnemom:gateway/kv.delete": async | trappable,
        },
        exports: { default: async },
        with: {
            "mnemom:gateway/host": super::mnemom::gateway::host,
            "mnemom:gateway/types": super::mnemom::gateway::types,
        },
    });

    pub use exports::mnemom::gateway::policy as policy_exports;
    pub use mnemom::gateway::kv as kv_imports;
    pub use mnemom::gateway::llm as llm_imports;
    pub use mnemom::gateway::policy_types;
}

/// Bindings of the optional `adapter-summary` export (world `provider-adapter-with-summary`).
/// Only its interface is used from here: the host instantiates every adapter through the
/// required `provider-adapter` bindings above and looks this export up when a component has it.
pub mod summary {
    wasmtime::component::bindgen!({
        world: "provider-adapter-with-summary",
        path: "../wit",
        exports: { default: async },
        with: {
            "mnemom:gateway/host": super::mnemom::gateway::host,
            "mnemom:gateway/types": super::mnemom::gateway::types,
        },
    });

    pub use exports::mnemom::gateway::adapter_summary as summary_exports;
}

pub use exports::mnemom::gateway::adapter as adapter_exports;
pub use mnemom::gateway::host as host_imports;
pub use mnemom::gateway::types as wit_types;

/// The WIT package every plugin must be built against.
pub const WIT_PACKAGE: &str = "mnemom:gateway@0.1.0";

/// The export a provider adapter must provide.
pub const ADAPTER_EXPORT: &str = "mnemom:gateway/adapter@0.1.0";

/// The export a provider adapter may provide in addition (`summarize-response`).
pub const ADAPTER_SUMMARY_EXPORT: &str = "mnemom:gateway/adapter-summary@0.1.0";

/// The export an AIP policy must provide.
pub const POLICY_EXPORT: &str = "mnemom:gateway/policy@0.1.0";
