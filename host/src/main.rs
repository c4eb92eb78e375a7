//! The `mnemom-gateway` binary.
fn main() {}
