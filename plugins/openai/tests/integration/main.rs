//! Golden tests of the OpenAI adapter over the shared fixture tree `plugins/fixtures/openai/`:
//! recorded responses and SSE transcripts against hand-checked extractions (`expected/`),
//! request bodies against their expected rewrites (`requests/`), the error envelope against real
//! OpenAI errors, and a check that every fixture there is covered by one of these tests.

// `cfg(test)` on the modules makes clippy treat their helpers as test code (unwrap allowed).
#[cfg(test)]
mod coverage;
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
