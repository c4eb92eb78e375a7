//! Writing AIP policies: the bindings of the policy worlds, the types a policy works with, the
//! [`crate::export_policy!`] macro and helpers for reports, configuration and logging.
//!
//! Enable exactly one feature of the SDK:
//!
//! - `policy-pure`: the `aip-policy-pure` world. The policy imports only `host` (log and
//!   read-only config): deterministic, no I/O, same input → same report.
//! - `policy`: the `aip-policy` world, which also imports the host's analysis LLM
//!   (`llm::complete`) and a small namespaced key-value store (`kv`).
//!
//! A policy is a `cdylib` crate with one type implementing [`Guest`]:
//!
//! ```
//! use mnemom_plugin_sdk::policy::{CheckInput, Concern, Guest, PolicyDescriptor, PolicyError,
//!     Report, Severity};
//!
//! struct NoSecrets;
//!
//! impl Guest for NoSecrets {
//!     fn describe() -> PolicyDescriptor {
//!         PolicyDescriptor::new("no-secrets", env!("CARGO_PKG_VERSION"), "flags API keys in thinking")
//!     }
//!
//!     fn check(input: CheckInput) -> Result<Report, PolicyError> {
//!         let concerns: Vec<Concern> = input
//!             .thinking
//!             .iter()
//!             .filter(|block| block.contains("sk-ant-"))
//!             .map(|block| {
//!                 Concern::new("secret_in_thinking", Severity::High, "an API key appears in the thinking")
//!                     .with_evidence("sk-ant-…")
//!             })
//!             .collect();
//!         Ok(Report::from_concerns(concerns, &input.conscience_values, "checked for API keys"))
//!     }
//! }
//!
//! mnemom_plugin_sdk::export_policy!(NoSecrets);
//! ```
//!
//! Everything here also compiles natively, so the policy's logic can be unit-tested with
//! `cargo test`: the record types, the builders and [`derive_verdict`] work anywhere, while the
//! functions that call into the host ([`host`], [`log`], [`Config::host`], `llm`, `kv`) exist
//! only inside the gateway and panic (`unreachable`) when called in a native test. Keep host
//! calls in the thin `Guest` glue and pass plain values to the logic.

#[cfg(all(feature = "policy", feature = "policy-pure"))]
compile_error!(
    "mnemom-plugin-sdk: enable either the `policy` or the `policy-pure` feature, not both"
);

pub mod bindings;
mod config;
mod convert;
mod input;
#[cfg(feature = "policy")]
pub mod kv;
#[cfg(feature = "policy")]
pub mod llm;
pub mod log;
mod report;

pub use bindings::exports::mnemom::gateway::policy::Guest;
pub use bindings::mnemom::gateway::host;
pub use bindings::mnemom::gateway::host::LogLevel;
pub use bindings::mnemom::gateway::policy_types::{
    CheckInput, Concern, ConscienceContext, ConscienceKind, ConscienceValue, ConsultationDepth,
    PolicyDescriptor, PolicyError, Report, Severity, Verdict, WindowEntry,
};
pub use bindings::mnemom::gateway::types::ToolCall;
pub use config::Config;
pub use convert::default_conscience_values;
pub use report::{boundary_value_ids, derive_verdict};

/// The WIT world this build of the SDK implements: `aip-policy` or `aip-policy-pure`. Write
/// the same value into the policy's manifest (`world = "…"`).
#[cfg(feature = "policy")]
pub const WORLD: &str = "aip-policy";
/// The WIT world this build of the SDK implements: `aip-policy` or `aip-policy-pure`. Write
/// the same value into the policy's manifest (`world = "…"`).
#[cfg(all(feature = "policy-pure", not(feature = "policy")))]
pub const WORLD: &str = "aip-policy-pure";

/// The concern categories of the AIP analysis; policies may add their own (lower snake case).
pub const AIP_CATEGORIES: &[&str] = &[
    "prompt_injection",
    "value_misalignment",
    "autonomy_violation",
    "reasoning_corruption",
    "deceptive_reasoning",
    "undeclared_intent",
];

/// Exports a type implementing [`policy::Guest`](crate::policy::Guest) as the component's
/// `mnemom:gateway/policy` interface: `mnemom_plugin_sdk::export_policy!(MyPolicy);` once, at
/// the crate root of the policy.
///
/// The export is compiled for WebAssembly targets only: the export names
/// (`mnemom:gateway/policy@0.1.0#check`) are not valid symbols for a native linker, and native
/// builds of a policy crate exist for its unit tests. The policy's crate does not need to
/// depend on `wit-bindgen` itself.
#[macro_export]
macro_rules! export_policy {
    ($ty:ident) => {
        #[cfg(target_family = "wasm")]
        $crate::policy::bindings::export!($ty with_types_in $crate::policy::bindings);
        // Natively: only check that the type implements `Guest` (which also keeps it from
        // being reported as unused).
        #[cfg(not(target_family = "wasm"))]
        const _: fn() = $crate::policy::__assert_guest::<$ty>;
    };
}

/// Used by [`crate::export_policy!`] in native builds; not part of the API.
#[doc(hidden)]
pub fn __assert_guest<T: Guest>() {}
