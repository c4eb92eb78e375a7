//! The host's integration tests: real HTTP to an in-process gateway on 127.0.0.1:0, the real
//! compiled plugin components, and a mock provider serving recorded provider payloads.

mod bad_input;
mod cli;
mod e2e;
mod faults;
mod hot_reload;
mod ops;
mod sdk;
mod support;
