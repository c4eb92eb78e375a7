//! Guest-side helpers shared by mnemom-gateway plugins: plain-Rust utilities that every provider
//! adapter needs, independent of the WIT bindings (which each plugin generates for itself from
//! `wit/`, since two `wit_bindgen::generate!` calls in one component break linking).
//!
//! - [`json`]: JSON text and byte-level edits that keep the caller's bytes;
//! - [`lenient`]: lenient readers for provider JSON;
//! - [`config`]: typed configuration values and descriptor overrides;
//! - [`notes`]: formatting of the gateway's system notes;
//! - [`skim`]: a copy of a document with its long strings cut out, for response summaries;
//! - [`evidence`]: cutting a concern's evidence to the 200 characters the host keeps;
//! - `policy` (feature `policy` or `policy-pure`, for AIP policy authors): the bindings of a
//!   policy world generated inside the SDK, the `export_policy!` macro and report, verdict,
//!   config and logging helpers (see `sdk/README.md` and `docs/policies/`);
//! - `testing` (feature `testing`, for `[dev-dependencies]` only): SSE framing, stream
//!   accumulation and expected-file helpers for golden tests.

pub mod config;
pub mod conscience;
pub mod evidence;
pub mod json;
pub mod lenient;
pub mod notes;
#[cfg(any(feature = "policy", feature = "policy-pure"))]
pub mod policy;
pub mod skim;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verdict;
