//! The one place the host runs `bindgen!` over `wit/`: typed bindings for the plugin worlds,
//! re-exported as a small surface for the rest of the host.

wasmtime::component::bindgen!({
    world: "provider-adapter",
    path: "../wit",
    exports: { default: async },
});

pub use exports::mnemom::gateway::adapter as adapter_exports;
pub use mnemom::gateway::host as host_imports;
pub use mnemom::gateway::types as wit_types;

/// The WIT package every plugin must be built against.
pub const WIT_PACKAGE: &str = "mnemom:gateway@0.1.0";

/// The export a provider adapter must provide.
pub const ADAPTER_EXPORT: &str = "mnemom:gateway/adapter@0.1.0";
