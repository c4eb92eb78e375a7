//! `map-error`: renders a gateway-side error as Anthropic's error body, so that the official
//! SDKs raise their usual exception types (`AuthenticationError`, `RateLimitError`, …).

use serde::Serialize;

use crate::mnemom::gateway::types::{ErrorKind, GatewayError};

/// `{"type":"error","error":{"type":T,"message":M}}`, where `T` is the gateway's own error type
/// when it gave one, and otherwise Anthropic's type for the error's kind.
pub fn render(error: &GatewayError) -> Vec<u8> {
    let kind = if error.error_type.is_empty() {
        anthropic_type(error.kind)
    } else {
        &error.error_type
    };
    let envelope = Envelope {
        kind: "error",
        error: Body {
            kind,
            message: &error.message,
        },
    };
    // Serialising two strings cannot fail; the fallback only keeps the function total.
    serde_json::to_vec(&envelope).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.to_vec()
    })
}

/// Anthropic's error type for each kind (see its "Errors" documentation).
pub fn anthropic_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::BadGateway => "api_error",
        ErrorKind::GatewayTimeout => "timeout_error",
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::Internal => "api_error",
    }
}

/// Field order is Anthropic's wire order: `type` first.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ErrorKind, error_type: &str, message: &str) -> GatewayError {
        GatewayError {
            status: 0,
            kind,
            error_type: error_type.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn explicit_type_wins() {
        let body = render(&error(
            ErrorKind::Permission,
            "license_error",
            "license \"expired\"",
        ));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"error","error":{"type":"license_error","message":"license \"expired\""}}"#
        );
    }

    #[test]
    fn type_by_kind() {
        let cases = [
            (ErrorKind::Authentication, "authentication_error"),
            (ErrorKind::Permission, "permission_error"),
            (ErrorKind::NotFound, "not_found_error"),
            (ErrorKind::PayloadTooLarge, "request_too_large"),
            (ErrorKind::InvalidRequest, "invalid_request_error"),
            (ErrorKind::BadGateway, "api_error"),
            (ErrorKind::GatewayTimeout, "timeout_error"),
            (ErrorKind::Unavailable, "overloaded_error"),
            (ErrorKind::Internal, "api_error"),
        ];
        for (kind, expected) in cases {
            let body: serde_json::Value =
                serde_json::from_slice(&render(&error(kind, "", "m"))).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"type": "error", "error": {"type": expected, "message": "m"}})
            );
        }
    }
}
