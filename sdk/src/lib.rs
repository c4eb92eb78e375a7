//! Guest-side helpers shared by mnemom-gateway plugins: small, allocation-light utilities that
//! every provider adapter needs (JSON body edits that keep the caller's bytes, nudge text
//! formatting). The WIT bindings themselves are generated in each plugin crate from `wit/`.

pub mod json;
pub mod notes;
