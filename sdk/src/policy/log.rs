//! Logging from a policy through the gateway's JSON logger (`host.log`), attributed to the
//! policy by the host, which also truncates long messages. Never log thinking text, response
//! text or anything secret: log what the policy decided and why, in a few words.
//!
//! These functions call into the host: inside the gateway only (they panic in a native test).

use super::LogLevel;
use super::host;

/// Logs `message` at `trace` (dropped unless the gateway runs with `LOG_LEVEL=debug`).
pub fn trace(message: &str) {
    host::log(LogLevel::Trace, message);
}

/// Logs `message` at `debug` (dropped unless the gateway runs with `LOG_LEVEL=debug`).
pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message);
}

/// Logs `message` at `info`.
pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Logs `message` at `warn`: something unexpected the policy recovered from (e.g. a config
/// value it could not use).
pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

/// Logs `message` at `error`: the check is about to fail.
pub fn error(message: &str) {
    host::log(LogLevel::Error, message);
}
