//! Gateway errors rendered in OpenAI's error shape,
//! `{"error":{"message","type","param","code"}}`, so that OpenAI SDKs raise their usual
//! exception for the status (they choose the class by HTTP status and read `type`/`code`).

use crate::{ErrorKind, GatewayError};
use mnemom_plugin_sdk::json::string as json_string;

/// OpenAI's `type` and `code` for a gateway error kind, as its API reports the same condition
/// (e.g. a missing key is `invalid_request_error` with code `invalid_api_key`).
pub fn openai_type_and_code(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Permission => ("permission_error", None),
        ErrorKind::NotFound => ("invalid_request_error", Some("not_found")),
        ErrorKind::PayloadTooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::BadGateway => ("api_error", None),
        ErrorKind::GatewayTimeout => ("timeout_error", None),
        ErrorKind::Unavailable | ErrorKind::Internal => ("server_error", None),
    }
}

/// Said when the host sends no message: a client must never see an empty error.
fn default_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Authentication => "no API key was provided",
        ErrorKind::Permission => "this request is not permitted",
        ErrorKind::NotFound => "no route for this path",
        ErrorKind::PayloadTooLarge => "the request body is too large",
        ErrorKind::InvalidRequest => "the request is invalid",
        ErrorKind::BadGateway => "the upstream provider could not be reached",
        ErrorKind::GatewayTimeout => "the upstream provider did not answer in time",
        ErrorKind::Unavailable => "the gateway is temporarily unavailable",
        ErrorKind::Internal => "internal gateway error",
    }
}

/// Renders a gateway-side error as an OpenAI error body (the `map-error` export). The type is
/// the host's `error-type` when it gives one (`license_error`, ...), else the kind's OpenAI type;
/// the code always follows the kind.
pub fn render(error: &GatewayError) -> Vec<u8> {
    let (kind_type, code) = openai_type_and_code(error.kind);
    let kind = match error.error_type.trim() {
        "" => kind_type,
        given => given,
    };
    let message = match error.message.trim() {
        "" => default_message(error.kind),
        _ => error.message.as_str(),
    };
    let code = code.map_or_else(|| "null".to_owned(), json_string);
    // Field order as OpenAI sends it.
    format!(
        "{{\"error\":{{\"message\":{},\"type\":{},\"param\":null,\"code\":{code}}}}}",
        json_string(message),
        json_string(kind),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn render_json(kind: ErrorKind, error_type: &str, message: &str) -> Value {
        let bytes = render(&GatewayError {
            status: 500,
            kind,
            error_type: error_type.into(),
            message: message.into(),
        });
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn types_and_codes_by_kind() {
        let cases = [
            (
                ErrorKind::Authentication,
                "invalid_request_error",
                json!("invalid_api_key"),
            ),
            (ErrorKind::Permission, "permission_error", Value::Null),
            (
                ErrorKind::NotFound,
                "invalid_request_error",
                json!("not_found"),
            ),
            (
                ErrorKind::PayloadTooLarge,
                "invalid_request_error",
                json!("request_too_large"),
            ),
            (
                ErrorKind::InvalidRequest,
                "invalid_request_error",
                Value::Null,
            ),
            (ErrorKind::BadGateway, "api_error", Value::Null),
            (ErrorKind::GatewayTimeout, "timeout_error", Value::Null),
            (ErrorKind::Unavailable, "server_error", Value::Null),
            (ErrorKind::Internal, "server_error", Value::Null),
        ];
        for (kind, ty, code) in cases {
            assert_eq!(
                render_json(kind, "", "m"),
                json!({"error": {"message": "m", "type": ty, "param": null, "code": code}}),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn host_error_type_wins_and_code_follows_the_kind() {
        assert_eq!(
            render_json(ErrorKind::Permission, "license_error", "license expired"),
            json!({"error": {"message": "license expired", "type": "license_error", "param": null, "code": null}})
        );
        assert_eq!(
            render_json(
                ErrorKind::Authentication,
                "authentication_error",
                "missing key"
            ),
            json!({"error": {"message": "missing key", "type": "authentication_error", "param": null, "code": "invalid_api_key"}})
        );
    }

    #[test]
    fn exact_bytes_and_escaping() {
        let bytes = render(&GatewayError {
            status: 413,
            kind: ErrorKind::PayloadTooLarge,
            error_type: String::new(),
            message: "body > 10 MiB \"limit\"".into(),
        });
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"error":{"message":"body > 10 MiB \"limit\"","type":"invalid_request_error","param":null,"code":"request_too_large"}}"#
        );
    }

    #[test]
    fn empty_messages_are_filled_in() {
        let v = render_json(ErrorKind::GatewayTimeout, " ", "");
        assert_eq!(
            v["error"]["message"],
            "the upstream provider did not answer in time"
        );
        assert_eq!(v["error"]["type"], "timeout_error");
    }
}
