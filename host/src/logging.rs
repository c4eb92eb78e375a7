//! JSON log lines (one object per line) at `LOG_LEVEL`: errors to stderr, the rest to stdout.
//! Callers never log API keys or thinking text; plugin messages are attributed and truncated.

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::config::LogLevel;

/// Installs the global JSON logger. Safe to call more than once (later calls are ignored).
pub fn init(level: LogLevel, role: &str) {
    let max = match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    let writer = std::io::stderr
        .with_max_level(Level::ERROR)
        .or_else(std::io::stdout.with_max_level(max));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(max)
        .with_writer(writer)
        .try_init();
    tracing::debug!(role, "logging initialised");
}
