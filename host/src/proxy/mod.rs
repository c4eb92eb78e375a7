//! The native proxy: routing to adapters, identity, bodies, upstream calls, SSE framing and
//! extraction. Owns every socket, timeout and header; plugins only transform data.

pub mod body;
pub mod error;
pub mod exchange;
pub mod extract;
pub mod handler;
pub mod headers;
pub mod identity;
pub mod pool;
pub mod sse;
pub mod upstream;
