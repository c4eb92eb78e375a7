//! Gateway-side errors rendered in Google's error envelope
//! (`{"error":{"code","message","status","details"}}`), so that the google-genai SDKs raise
//! their usual `ClientError` / `ServerError` with the status they expect.

use crate::types::{AdapterError, ErrorKind, GatewayError};
use mnemom_plugin_sdk::json;

/// The `@type` of the one detail we attach: the machine-readable reason, as Google's own
/// APIs report it.
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// `ErrorInfo.domain`: the service that produced the error (Google uses its API host names).
const ERROR_DOMAIN: &str = "mnemom.ai";

/// The canonical `google.rpc.Code` name for a gateway error kind.
pub fn status_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Authentication => "UNAUTHENTICATED",
        ErrorKind::Permission => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        // Google has no "too large" code; oversized requests come back as INVALID_ARGUMENT.
        ErrorKind::PayloadTooLarge | ErrorKind::InvalidRequest => "INVALID_ARGUMENT",
        ErrorKind::BadGateway | ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::GatewayTimeout => "DEADLINE_EXCEEDED",
        ErrorKind::Internal => "INTERNAL",
    }
}

/// Renders `error` as a Gemini API error body: `google.rpc.Status` with the members in the
/// order the Gemini API sends them.
pub fn render(error: &GatewayError) -> Vec<u8> {
    let mut status = vec![
        ("code", error.status.to_string()),
        ("message", json::string(&error.message)),
        ("status", json::string(status_name(error.kind))),
    ];
    if !error.error_type.is_empty() {
        let info = json::object(&[
            ("@type", json::string(ERROR_INFO_TYPE)),
            ("reason", json::string(&error.error_type)),
            ("domain", json::string(ERROR_DOMAIN)),
        ]);
        status.push(("details", format!("[{info}]")));
    }
    json::object(&[("error", json::object(&status))]).into_bytes()
}

/// An input the adapter does not understand; the host forwards the original bytes.
pub(crate) fn unsupported(message: impl Into<String>) -> AdapterError {
    AdapterError::Unsupported(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn gateway_error(
        status: u16,
        kind: ErrorKind,
        error_type: &str,
        message: &str,
    ) -> GatewayError {
        GatewayError {
            status,
            kind,
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    #[test]
    fn renders_google_envelope_with_error_info() {
        let body = render(&gateway_error(
            401,
            ErrorKind::Authentication,
            "authentication_error",
            "no API key: send x-goog-api-key or ?key=",
        ));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":{"code":401,"message":"no API key: send x-goog-api-key or ?key=","status":"UNAUTHENTICATED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"authentication_error","domain":"mnemom.ai"}]}}"#
        );
    }

    #[test]
    fn omits_details_without_error_type() {
        let body = render(&gateway_error(
            504,
            ErrorKind::GatewayTimeout,
            "",
            "upstream \"slow\"",
        ));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"error":{"code":504,"message":"upstream \"slow\"","status":"DEADLINE_EXCEEDED"}})
        );
    }

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (ErrorKind::Authentication, "UNAUTHENTICATED"),
            (ErrorKind::Permission, "PERMISSION_DENIED"),
            (ErrorKind::NotFound, "NOT_FOUND"),
            (ErrorKind::PayloadTooLarge, "INVALID_ARGUMENT"),
            (ErrorKind::InvalidRequest, "INVALID_ARGUMENT"),
            (ErrorKind::BadGateway, "UNAVAILABLE"),
            (ErrorKind::GatewayTimeout, "DEADLINE_EXCEEDED"),
            (ErrorKind::Unavailable, "UNAVAILABLE"),
            (ErrorKind::Internal, "INTERNAL"),
        ];
        for (kind, status) in cases {
            let body = render(&gateway_error(500, kind, "x", "m"));
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["status"], status, "{kind:?}");
            assert_eq!(v["error"]["code"], 500);
        }
    }
}
