//! One bounded JSON POST: a deadline over the whole exchange (connection, headers and body) and a
//! cap on the answer's size. Shared by the analysis LLM and hybrid clients.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::proxy::upstream::UpstreamClient;

/// Largest answer body read (1 MiB); larger answers are errors.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why an exchange produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// The request could not be built (a bad URL).
    #[error("invalid request: {0}")]
    Request(String),
    /// Connecting or sending failed.
    #[error("request failed: {0}")]
    Send(String),
    /// Reading the answer failed.
    #[error("reading the answer failed: {0}")]
    Body(String),
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("answer larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body (at most [`MAX_RESPONSE_BYTES`]).
    pub body: Bytes,
}

/// POSTs `body` as JSON to `uri` with `headers`, within `timeout`.
pub async fn post_json(
    client: &UpstreamClient,
    uri: &Uri,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, TransportError> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TransportError::Request(e.to_string()))?;
    *request.headers_mut() = headers;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    request.headers_mut().insert(
        header::USER_AGENT,
        http::HeaderValue::from_static(concat!("mnemom-gateway/", env!("CARGO_PKG_VERSION"))),
    );
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| TransportError::Send(chain(&e)))?;
        let status = response.status();
        let too_large = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64);
        if too_large {
            return Err(TransportError::TooLarge);
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    TransportError::TooLarge
                } else {
                    TransportError::Body(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TransportError::Timeout)?
}

/// An error and its sources, `: `-separated (hyper's own message alone says little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Whether an error status means the endpoint is unhealthy (408, 429, 5xx) rather than that it
/// refused this particular request.
pub fn is_unhealthy(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The message of an error answer: Anthropic's `error.message`, a string `error` or `message`
/// field, else the status's reason; at most 300 characters.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let message = json.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    });
    let message = message.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("unknown status")
            .to_owned()
    });
    truncate(&message, 300)
}

/// `text` cut to at most `max` characters (with `…` when cut).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let status = StatusCode::from_u16(529).unwrap();
        assert_eq!(error_message(status, anthropic), "Overloaded");
        assert_eq!(
            error_message(StatusCode::UNAUTHORIZED, br#"{"error":"Missing API key"}"#),
            "Missing API key"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "Bad Gateway"
        );
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert!(is_unhealthy(status));
        assert!(is_unhealthy(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_unhealthy(StatusCode::REQUEST_TIMEOUT));
        assert!(!is_unhealthy(StatusCode::BAD_REQUEST));
        assert!(!is_unhealthy(StatusCode::UNAUTHORIZED));
    }
}
