//! Every way the gateway itself fails a request, and the single place those failures become
//! HTTP responses: the status, and a body in the provider's own error shape (rendered by the
//! route's adapter), so official SDKs raise their usual exception types.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{GatewayBody, full};
use super::headers::add_cors;
use crate::plugin::adapter::{ErrorKind, GatewayError, PluginError};
use crate::plugin::registry::RoutedAdapter;

/// A request the gateway refuses or cannot complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No key where the adapter expects one.
    #[error("Missing {expected}")]
    MissingKey {
        /// Where a key was expected.
        expected: String,
    },
    /// A key was present but unusable.
    #[error("{0}")]
    InvalidKey(String),
    /// The body exceeds the configured limit.
    #[error("request body exceeds the gateway's limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The client's body could not be read.
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    /// The upstream URL could not be built from the request path.
    #[error("request path cannot be forwarded: {0}")]
    BadPath(String),
    /// The upstream could not be reached.
    #[error("upstream {provider} is unreachable: {message}")]
    UpstreamConnect {
        /// Provider name.
        provider: String,
        /// Cause.
        message: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream {provider} did not answer within {seconds} s")]
    UpstreamTimeout {
        /// Provider name.
        provider: String,
        /// The timeout.
        seconds: u64,
    },
    /// A fail-closed plugin failed.
    #[error("the gateway's {plugin} adapter failed; the request was not forwarded")]
    PluginFailClosed {
        /// Plugin name.
        plugin: String,
        /// What happened.
        #[source]
        source: PluginError,
    },
    /// The license is invalid (forged, expired beyond grace, ...).
    #[error("License invalid or expired")]
    License(#[from] crate::license::LicenseRefusal),
    /// The agent is paused or killed (by a person or by auto-containment).
    #[error("Agent contained: {}", containment_reason(*.0))]
    Contained(crate::store::ContainmentStatus),
    /// The upstream's response body failed while the gateway held it for the AIP verdict.
    #[error("upstream {provider} response failed: {message}")]
    UpstreamBody {
        /// Provider name.
        provider: String,
        /// Cause.
        message: String,
    },
}

/// The original's `reason` for a contained agent: `agent_paused` or `agent_killed`.
pub fn containment_reason(status: crate::store::ContainmentStatus) -> &'static str {
    match status {
        crate::store::ContainmentStatus::Killed => "agent_killed",
        _ => "agent_paused",
    }
}

impl ProxyError {
    /// Status, kind and machine-readable type.
    pub fn classify(&self) -> (StatusCode, ErrorKind, &'static str) {
        match self {
            ProxyError::MissingKey { .. } | ProxyError::InvalidKey(_) => (
                StatusCode::UNAUTHORIZED,
                ErrorKind::Authentication,
                "authentication_error",
            ),
            ProxyError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::PayloadTooLarge,
                "request_too_large",
            ),
            ProxyError::BodyRead(_) | ProxyError::BadPath(_) => (
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidRequest,
                "invalid_request_error",
            ),
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamBody { .. } => {
                (StatusCode::BAD_GATEWAY, ErrorKind::BadGateway, "api_error")
            }
            ProxyError::UpstreamTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::GatewayTimeout,
                "timeout_error",
            ),
            ProxyError::PluginFailClosed { .. } => (
                StatusCode::BAD_GATEWAY,
                ErrorKind::BadGateway,
                "gateway_error",
            ),
            ProxyError::License(_) => (
                StatusCode::FORBIDDEN,
                ErrorKind::Permission,
                "license_error",
            ),
            ProxyError::Contained(_) => (
                StatusCode::FORBIDDEN,
                ErrorKind::Permission,
                "containment_error",
            ),
        }
    }

    /// Renders the error through the route's adapter; falls back to a generic JSON body if the
    /// adapter itself fails.
    pub async fn into_response(self, adapter: &RoutedAdapter) -> Response<GatewayBody> {
        let (status, kind, error_type) = self.classify();
        let error = GatewayError {
            status: status.as_u16(),
            kind,
            error_type: error_type.to_owned(),
            message: self.to_string(),
        };
        let body = match adapter.plugin.map_error(&error).await {
            Ok(body) if serde_json::from_slice::<serde_json::Value>(&body).is_ok() => {
                Bytes::from(body)
            }
            Ok(_) | Err(_) => generic_body(error_type, &error.message),
        };
        json_response(status, body)
    }
}

/// `{"error":{"type":...,"message":...}}`: the shape used when no adapter can render an error.
pub fn generic_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"error": {"type": error_type, "message": message}}).to_string())
}

/// The original's 404 for paths no adapter serves.
pub fn not_found(prefixes: &[String]) -> Response<GatewayBody> {
    let message = format!(
        "This gateway handles /health, /metrics, /models.json and {} endpoints",
        prefixes
            .iter()
            .map(|p| format!("{p}/*"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let body = serde_json::json!({"error": "Not found", "type": "not_found", "message": message});
    json_response(StatusCode::NOT_FOUND, Bytes::from(body.to_string()))
}

/// A JSON response with CORS headers.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_cors(response.headers_mut());
    response
}
