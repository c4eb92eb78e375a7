//! Small key-value state for a policy (world `aip-policy`, feature `policy`): namespaced by the
//! host per policy (two policies never see each other's keys), stored in the gateway's cache
//! (Redis or in-process) and best effort: a failing cache reads as absent and drops writes.
//!
//! [`get`], [`set`], [`delete`] and [`try_set`] call into the host (inside the gateway only);
//! [`check`] is plain Rust.

pub use super::bindings::mnemom::gateway::kv::{delete, get, set};

/// The longest key the host stores, in bytes; longer keys are dropped.
pub const MAX_KEY_BYTES: usize = 256;
/// The largest value the host stores, in bytes (64 KiB); larger values are dropped.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest time to live, in seconds (one day); `0` asks for this maximum.
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// Why [`try_set`] did not store a value (the host would silently drop it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key is empty or longer than [`MAX_KEY_BYTES`].
    #[error("kv key must be 1 to {MAX_KEY_BYTES} bytes, not {0}")]
    Key(usize),
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error("kv value must be at most {MAX_VALUE_BYTES} bytes, not {0}")]
    Value(usize),
}

/// Checks `key` and `value` against the host's limits.
pub fn check(key: &str, value: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Key(key.len()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Value(value.len()));
    }
    Ok(())
}

/// Stores `value` at `key` for `ttl_seconds` (capped at [`MAX_TTL_SECONDS`]; `0` = the
/// maximum) after [`check`]ing the limits, so an oversized write is an error the policy sees
/// instead of a write the host drops.
pub fn try_set(key: &str, value: &str, ttl_seconds: u32) -> Result<(), KvError> {
    check(key, value)?;
    set(key, value, ttl_seconds.min(MAX_TTL_SECONDS));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(check("k", "v"), Ok(()));
        assert_eq!(
            check(&"k".repeat(256), &"v".repeat(MAX_VALUE_BYTES)),
            Ok(())
        );
        assert_eq!(check("", "v"), Err(KvError::Key(0)));
        assert_eq!(check(&"k".repeat(257), "v"), Err(KvError::Key(257)));
        let err = check("k", &"v".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert_eq!(err, KvError::Value(MAX_VALUE_BYTES + 1));
        assert_eq!(
            err.to_string(),
            "kv value must be at most 65536 bytes, not 65537"
        );
    }
}
