//! Request handling: routing to fixtures, the `x-mock-*` control headers, and building the response.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{ChunkMode, MockBody, frames_for, gzip_frames};
use crate::fixtures::{CONTENT_TYPE_JSON, Fixture};
use crate::{RecordedRequest, State};

/// Anthropic `POST /v1/messages`.
pub const ANTHROPIC_MESSAGES: &str = "anthropic/messages-thinking-signature-text.json";
/// Anthropic `POST /v1/messages` with `"stream": true`.
pub const ANTHROPIC_MESSAGES_STREAM: &str = "anthropic/messages-stream-thinking-signature-text.sse";
/// OpenAI `POST /v1/chat/completions`.
pub const OPENAI_CHAT: &str = "openai/chat-completions-text.json";
/// OpenAI `POST /v1/chat/completions` with `"stream": true`.
pub const OPENAI_CHAT_STREAM: &str = "openai/chat-completions-stream-text-include-usage.sse";
/// OpenAI `POST /v1/responses`.
pub const OPENAI_RESPONSES: &str = "openai/responses-reasoning-summary-message.json";
/// OpenAI `POST /v1/responses` with `"stream": true`.
pub const OPENAI_RESPONSES_STREAM: &str = "openai/responses-stream-reasoning-summary-text.sse";
/// Gemini `POST /v1beta/models/{model}:generateContent`.
pub const GEMINI_GENERATE: &str = "gemini/generate-content-thought-parts-signature-text.json";
/// Gemini `POST /v1beta/models/{model}:streamGenerateContent`.
pub const GEMINI_GENERATE_STREAM: &str = "gemini/stream-generate-content-thought-parts-text.sse";

/// Body of Anthropic `POST /v1/messages/count_tokens`.
pub const ANTHROPIC_COUNT_TOKENS_BODY: &str = r#"{"input_tokens": 12}"#;
/// Body of Gemini `POST /v1beta/models/{model}:countTokens`.
pub const GEMINI_COUNT_TOKENS_BODY: &str = r#"{"totalTokens": 12}"#;
/// Body of `GET /v1/models` (OpenAI shape).
pub const OPENAI_MODELS_BODY: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},{"id":"gpt-4.1-nano","object":"model","created":1744321707,"owned_by":"system"},{"id":"o3-mini","object":"model","created":1737146383,"owned_by":"system"}]}"#;
/// Body of `GET /v1/models` when the request carries `anthropic-version` (Anthropic shape).
pub const ANTHROPIC_MODELS_BODY: &str = r#"{"data":[{"type":"model","id":"claude-sonnet-4-20250514","display_name":"Claude Sonnet 4","created_at":"2025-05-22T00:00:00Z"},{"type":"model","id":"claude-haiku-4-5","display_name":"Claude Haiku 4.5","created_at":"2025-10-01T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-20250514","last_id":"claude-haiku-4-5"}"#;

/// Request header names of the per-request controls.
pub mod control {
    /// Serve this fixture (`<provider>/<file>`) whatever the route.
    pub const FIXTURE: &str = "x-mock-fixture";
    /// Override the response status code.
    pub const STATUS: &str = "x-mock-status";
    /// Delay the response headers by this many milliseconds.
    pub const DELAY_MS: &str = "x-mock-delay-ms";
    /// Body framing: `event`, `bytes:<N>` or `whole`.
    pub const CHUNK: &str = "x-mock-chunk";
    /// Pause between body frames, in milliseconds.
    pub const CHUNK_DELAY_MS: &str = "x-mock-chunk-delay-ms";
    /// `1`: gzip the body if the request's `accept-encoding` allows it; `0`: never.
    pub const GZIP: &str = "x-mock-gzip";
    /// `1`: send headers, then never finish the body; `after:<N>`: send N frames, then hang.
    pub const HANG: &str = "x-mock-hang";
}

/// What a route answers with.
enum Answer<'a> {
    Fixture(&'a str),
    Static {
        provider: &'static str,
        body: &'static str,
    },
    NotFound,
}

/// The controls in force for one request: header values, falling back to the server options.
struct Controls {
    fixture: Option<String>,
    status: Option<StatusCode>,
    delay: Duration,
    chunk: Option<ChunkMode>,
    chunk_delay: Duration,
    gzip: bool,
    hang_after: Option<usize>,
}

impl Controls {
    fn parse(headers: &HeaderMap, state: &State) -> Result<Self, String> {
        let options = &state.options;
        let text = |name: &str| -> Result<Option<&str>, String> {
            headers
                .get(name)
                .map(|value| {
                    value
                        .to_str()
                        .map(str::trim)
                        .map_err(|_| format!("{name}: not visible ASCII"))
                })
                .transpose()
        };
        let millis = |name: &str| -> Result<Option<Duration>, String> {
            text(name)?
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| format!("{name}: invalid {v:?}"))
                })
                .transpose()
        };
        let flag = |name: &str| -> Result<Option<bool>, String> {
            text(name)?
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(format!("{name}: invalid {v:?}")),
                })
                .transpose()
        };
        let status = text(control::STATUS)?
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| format!("{}: invalid {v:?}", control::STATUS))
            })
            .transpose()?;
        let chunk = text(control::CHUNK)?
            .map(|v| ChunkMode::from_str(v).map_err(|err| format!("{}: {err}", control::CHUNK)))
            .transpose()?;
        let hang_after = match text(control::HANG)? {
            None => options.hang_after,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(0),
                "0" | "false" | "no" | "off" => None,
                other => Some(
                    other
                        .strip_prefix("after:")
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .ok_or_else(|| format!("{}: invalid {v:?}", control::HANG))?,
                ),
            },
        };
        Ok(Self {
            fixture: text(control::FIXTURE)?.map(str::to_owned),
            status,
            delay: millis(control::DELAY_MS)?.unwrap_or(options.latency),
            chunk: chunk.or(options.chunk),
            chunk_delay: millis(control::CHUNK_DELAY_MS)?.unwrap_or(options.chunk_delay),
            gzip: flag(control::GZIP)?.unwrap_or(options.gzip),
            hang_after,
        })
    }
}

/// Handles one request; never fails (errors become JSON error responses).
pub(crate) async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<MockBody> {
    let (parts, incoming) = request.into_parts();
    let body = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return mock_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read request body: {err}"),
            );
        }
    };
    if parts.uri.path() == REQUESTS_PATH {
        return recorded_requests(&state, &parts.method);
    }
    let serial = state.request_serial.fetch_add(1, Ordering::Relaxed) + 1;
    if state.options.record_requests {
        let recorded = RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }

    let controls = match Controls::parse(&parts.headers, &state) {
        Ok(controls) => controls,
        Err(message) => return mock_error(StatusCode::BAD_REQUEST, &message),
    };
    if !controls.delay.is_zero() {
        tokio::time::sleep(controls.delay).await;
    }

    let answer = match controls.fixture.as_deref() {
        Some(name) => Answer::Fixture(name),
        None => route(&parts.method, parts.uri.path(), &parts.headers, &body),
    };
    let (provider, content_type, body, events) = match answer {
        Answer::NotFound => {
            let message = format!(
                "mock-provider: no route for {} {}",
                parts.method,
                parts.uri.path()
            );
            let mut response = mock_error(StatusCode::NOT_FOUND, &message);
            if let Some(status) = controls.status {
                *response.status_mut() = status;
            }
            return response;
        }
        Answer::Static { provider, body } => (
            provider,
            CONTENT_TYPE_JSON,
            Bytes::from_static(body.as_bytes()),
            Arc::from([]),
        ),
        Answer::Fixture(name) => match load(&state, name).await {
            Ok(fixture) => fixture_parts(&fixture),
            Err(response) => return response,
        },
    };
    let is_sse = !events.is_empty() || content_type == crate::fixtures::CONTENT_TYPE_SSE;
    let mode = controls.chunk.unwrap_or(if is_sse {
        ChunkMode::Event
    } else {
        ChunkMode::Whole
    });
    let mut frames = frames_for(&body, &events, mode);

    let mut builder = Response::builder()
        .status(controls.status.unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, content_type);
    if is_sse && (provider == "anthropic" || provider == "openai") {
        builder = builder.header(header::CACHE_CONTROL, "no-cache");
    }
    let request_id = format!("req_mock_{serial:012}");
    match provider {
        "anthropic" => builder = builder.header("request-id", request_id),
        "openai" => builder = builder.header("x-request-id", request_id),
        _ => {}
    }
    if controls.gzip && accepts_gzip(&parts.headers) {
        frames = match gzip_frames(&frames) {
            Ok(frames) => frames,
            Err(err) => {
                return mock_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("gzip failed: {err}"),
                );
            }
        };
        builder = builder
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::VARY, "accept-encoding");
    }

    let mut response_body = MockBody::new(frames).with_frame_delay(controls.chunk_delay);
    if !is_sse {
        response_body = response_body.with_known_length();
    }
    if let Some(hang_after) = controls.hang_after {
        response_body = response_body.with_hang_after(hang_after);
    }
    builder.body(response_body).unwrap_or_else(|err| {
        mock_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot build response: {err}"),
        )
    })
}

fn fixture_parts(fixture: &Fixture) -> (&'static str, &'static str, Bytes, Arc<[Bytes]>) {
    let provider = match fixture.provider.as_str() {
        "anthropic" => "anthropic",
        "openai" => "openai",
        "gemini" => "gemini",
        _ => "",
    };
    let events = if fixture.is_sse() {
        Arc::clone(&fixture.events)
    } else {
        Arc::from([])
    };
    (
        provider,
        fixture.content_type,
        fixture.bytes.clone(),
        events,
    )
}

async fn load(state: &State, name: &str) -> Result<Arc<Fixture>, Response<MockBody>> {
    state.fixtures.get(name).await.map_err(|err| match err {
        crate::fixtures::FixtureError::InvalidName(_) => {
            mock_error(StatusCode::BAD_REQUEST, &err.to_string())
        }
        crate::fixtures::FixtureError::Unreadable(..) => {
            mock_error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
        }
    })
}

/// Maps a request to its default answer.
fn route(method: &Method, path: &str, headers: &HeaderMap, body: &Bytes) -> Answer<'static> {
    match (method, path) {
        (&Method::POST, "/v1/messages") => Answer::Fixture(if wants_stream(body) {
            ANTHROPIC_MESSAGES_STREAM
        } else {
            ANTHROPIC_MESSAGES
        }),
        (&Method::POST, "/v1/messages/count_tokens") => Answer::Static {
            provider: "anthropic",
            body: ANTHROPIC_COUNT_TOKENS_BODY,
        },
        (&Method::POST, "/v1/chat/completions") => Answer::Fixture(if wants_stream(body) {
            OPENAI_CHAT_STREAM
        } else {
            OPENAI_CHAT
        }),
        (&Method::POST, "/v1/responses") => Answer::Fixture(if wants_stream(body) {
            OPENAI_RESPONSES_STREAM
        } else {
            OPENAI_RESPONSES
        }),
        (&Method::GET, "/v1/models") => {
            if headers.contains_key("anthropic-version") {
                Answer::Static {
                    provider: "anthropic",
                    body: ANTHROPIC_MODELS_BODY,
                }
            } else {
                Answer::Static {
                    provider: "openai",
                    body: OPENAI_MODELS_BODY,
                }
            }
        }
        (&Method::POST, _) => match gemini_method(path) {
            Some("generateContent") => Answer::Fixture(GEMINI_GENERATE),
            Some("streamGenerateContent") => Answer::Fixture(GEMINI_GENERATE_STREAM),
            Some("countTokens") => Answer::Static {
                provider: "gemini",
                body: GEMINI_COUNT_TOKENS_BODY,
            },
            _ => Answer::NotFound,
        },
        _ => Answer::NotFound,
    }
}

/// For `/{v1,v1beta,v1alpha}/models/{model}:{method}`, returns `method`.
fn gemini_method(path: &str) -> Option<&str> {
    let rest = ["/v1beta/models/", "/v1/models/", "/v1alpha/models/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty() && !model.contains('/')).then_some(method)
}

/// Whether a JSON request body has `"stream": true`.
fn wants_stream(body: &Bytes) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// Whether `accept-encoding` lists `gzip` (or `x-gzip`, or `*`) with a non-zero quality. A request without
/// the header gets no gzip.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value.split(',').any(|item| {
                let mut params = item.split(';');
                let coding = params
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                let zero_quality = params.any(|param| {
                    param
                        .trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && !zero_quality
            })
        })
}

/// Introspection path: `GET` lists the recorded requests as JSON, `DELETE` forgets them. Requests to it
/// are not recorded themselves.
pub const REQUESTS_PATH: &str = "/__mock/requests";

fn recorded_requests(state: &State, method: &Method) -> Response<MockBody> {
    let mut requests = state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let body = match *method {
        Method::GET => {
            let list: Vec<serde_json::Value> = requests
                .iter()
                .map(|request| {
                    let headers: serde_json::Map<String, serde_json::Value> = request
                        .headers
                        .keys()
                        .map(|name| {
                            let values = request
                                .headers
                                .get_all(name)
                                .iter()
                                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                                .collect::<Vec<_>>()
                                .join(", ");
                            (name.as_str().to_owned(), serde_json::Value::String(values))
                        })
                        .collect();
                    serde_json::json!({
                        "method": request.method.as_str(),
                        "path": request.path,
                        "query": request.query,
                        "headers": headers,
                        "body": String::from_utf8_lossy(&request.body),
                    })
                })
                .collect();
            serde_json::json!({ "recording": state.options.record_requests, "requests": list })
        }
        Method::DELETE => {
            requests.clear();
            serde_json::json!({ "cleared": true })
        }
        _ => return mock_error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
    };
    drop(requests);
    let mut response = Response::new(MockBody::full(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON),
    );
    response
}

/// A JSON error produced by the mock itself (not a fixture).
fn mock_error(status: StatusCode, message: &str) -> Response<MockBody> {
    let body =
        serde_json::json!({ "error": { "type": "mock_provider_error", "message": message } })
            .to_string();
    let mut response = Response::new(MockBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_paths() {
        assert_eq!(
            gemini_method("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some("generateContent")
        );
        assert_eq!(
            gemini_method("/v1/models/gemini-2.5-pro:streamGenerateContent"),
            Some("streamGenerateContent")
        );
        assert_eq!(gemini_method("/v1beta/models/:generateContent"), None);
        assert_eq!(gemini_method("/v1beta/models/a/b:generateContent"), None);
        assert_eq!(gemini_method("/v2/models/x:generateContent"), None);
    }

    #[test]
    fn accept_encoding() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip"));
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("identity"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn stream_flag() {
        assert!(wants_stream(&Bytes::from_static(
            br#"{"model":"x","stream":true}"#
        )));
        assert!(!wants_stream(&Bytes::from_static(
            br#"{"model":"x","stream":false}"#
        )));
        assert!(!wants_stream(&Bytes::from_static(br#"{"model":"x"}"#)));
        assert!(!wants_stream(&Bytes::from_static(b"not json")));
    }
}
