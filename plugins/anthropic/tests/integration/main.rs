//! Golden tests of the Anthropic adapter against the fixture tree `plugins/fixtures/anthropic/`:
//! recorded responses and streams (`*.json`, `*.sse`) with their expected extraction
//! (`expected/<stem>.json`), request cases (`requests/cases.json`), and error bodies. The same
//! files serve the host's end-to-end tests and benchmarks; `expected/README.md` and
//! `requests/README.md` describe their formats.

// `cfg(test)` on the modules makes clippy treat their helpers as test code (unwrap allowed).
#[cfg(test)]
mod errors;
#[cfg(test)]
mod requests;
#[cfg(test)]
mod responses;
#[cfg(test)]
mod streams;
#[cfg(test)]
mod support;
