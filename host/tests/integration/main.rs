//! The host's integration tests: real HTTP to an in-process gateway on 127.0.0.1:0, the real
//! compiled plugin components, and a mock provider serving recorded provider payloads.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod aip;
mod bad_input;
mod cli;
mod e2e;
mod faults;
mod hot_reload;
mod observer;
mod ops;
mod policies;
mod sdk;
mod support;
mod writer;
