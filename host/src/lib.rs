//! mnemom-gateway: a self-hosted LLM gateway. The host owns the hot path (sockets, routing,
//! streaming, metrics); provider adapters and AIP policies are WebAssembly components.

pub mod agents;
pub mod aip;
pub mod analysis;
pub mod app;
pub mod cache;
pub mod config;
pub mod license;
pub mod logging;
pub mod metrics;
pub mod observer;
pub mod ops;
pub mod plugin;
pub mod proxy;
pub mod store;
pub mod usage;
pub mod webhooks;
pub mod workers;
pub mod writer;
