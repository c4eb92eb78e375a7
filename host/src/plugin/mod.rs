//! The plugin runtime: one engine, compiled components cached by content hash, warm instance
//! pools, deadlines and memory caps, and the plugin set that hot reload swaps atomically.

pub mod adapter;
pub mod bindings;
pub mod engine;
pub mod harness;
pub mod inspect;
pub mod instance;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod source;
pub mod ticker;
