//! One HTTP attempt of a delivery: vet the destination, POST the signed body to a vetted
//! address with the original `Host` (and TLS server name), classify the answer.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http_body_util::Full;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::guard::{GuardError, Target};
use super::payload::AIP_VERSION;

/// Longest `last_error` kept.
const MAX_ERROR_LEN: usize = 500;

/// What is sent: the same for every attempt of a delivery.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The registration's callback URL.
    pub url: String,
    /// `X-AIP-Delivery`.
    pub delivery_id: String,
    /// `X-AIP-Event`.
    pub event_type: String,
    /// `X-AIP-Signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Bytes,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: resolution, connection, TLS or protocol failure.
    Transport(String),
    /// No answer within the attempt timeout.
    Timeout(Duration),
    /// The destination is not allowed, or the URL is unusable (no request was sent).
    Refused(String),
}

impl Attempt {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Attempt::Status(s) if (200..300).contains(s))
    }

    /// Whether another attempt may succeed: connection failures, timeouts, 5xx, 408 and 429.
    /// Other statuses (4xx, 3xx: redirects are not followed) and refusals are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Attempt::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            Attempt::Transport(_) | Attempt::Timeout(_) => true,
            Attempt::Refused(_) => false,
        }
    }

    /// Whether a request was sent (or tried): refusals are not attempts.
    pub fn was_sent(&self) -> bool {
        !matches!(self, Attempt::Refused(_))
    }

    /// The HTTP status, when the receiver answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// What to store as `last_error` (`None` on success).
    pub fn error(&self) -> Option<String> {
        let text = match self {
            Attempt::Status(s) if (200..300).contains(s) => return None,
            Attempt::Status(s) => format!("HTTP {s}"),
            Attempt::Transport(e) => e.clone(),
            Attempt::Timeout(t) => format!("timed out after {} ms", t.as_millis()),
            Attempt::Refused(e) => e.clone(),
        };
        Some(truncate(text))
    }

    /// The `result` label of `gateway_webhook_attempts_total` (`None`: not an attempt).
    pub fn metric(&self) -> Option<&'static str> {
        Some(match self {
            _ if self.is_success() => "success",
            Attempt::Status(_) => "http_error",
            Attempt::Transport(_) => "connect_error",
            Attempt::Timeout(_) => "timeout",
            Attempt::Refused(_) => return None,
        })
    }
}

/// Makes one attempt: resolve and vet (refused when any address is not allowed), then POST to
/// the vetted address number `index` (modulo their count, so retries rotate through them).
pub(crate) async fn attempt(
    outgoing: &Outgoing,
    allow_private: bool,
    timeout: Duration,
    index: usize,
) -> Attempt {
    let target = match Target::parse(&outgoing.url) {
        Ok(target) => target,
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    match tokio::time::timeout(
        timeout,
        send(outgoing, &target, allow_private, timeout, index),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Attempt::Timeout(timeout),
    }
}

async fn send(
    outgoing: &Outgoing,
    target: &Target,
    allow_private: bool,
    timeout: Duration,
    index: usize,
) -> Attempt {
    let addrs = match target.resolve(allow_private).await {
        Ok(addrs) => addrs,
        Err(e @ (GuardError::Refused { .. } | GuardError::InvalidUrl(_))) => {
            return Attempt::Refused(e.to_string());
        }
        Err(e @ GuardError::Resolve { .. }) => return Attempt::Transport(e.to_string()),
    };
    let Some(addr) = addrs.get(index % addrs.len()) else {
        return Attempt::Transport(format!("cannot resolve {}: no addresses", target.host));
    };
    let scheme = if target.https { "https" } else { "http" };
    // The vetted address itself: the connector never resolves the name again.
    let uri = format!("{scheme}://{addr}{}", target.path_and_query);
    let request = http::Request::post(uri)
        .header(HOST, &target.host_header)
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("mnemom-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-AIP-Signature", &outgoing.signature)
        .header("X-AIP-Version", AIP_VERSION)
        .header("X-AIP-Event", &outgoing.event_type)
        .header("X-AIP-Delivery", &outgoing.delivery_id)
        .body(Full::new(outgoing.body.clone()));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Attempt::Refused(truncate(format!("cannot build the request: {e}"))),
    };
    let client = match client_for(target, timeout) {
        Ok(client) => client,
        Err(e) => return Attempt::Refused(e),
    };
    match client.request(request).await {
        // The body is not read: the status is the answer.
        Ok(response) => Attempt::Status(response.status().as_u16()),
        Err(e) => Attempt::Transport(truncate(error_chain(&e))),
    }
}

type WebhookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for one destination: HTTP/1.1 only (the `Host` header names the site; HTTP/2 would
/// send the address as `:authority`), TLS verified against the URL's host name, no pooling
/// beyond the attempt.
fn client_for(target: &Target, timeout: Duration) -> Result<WebhookClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let builder = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http();
    let builder = if target.https {
        builder.with_server_name_resolver(server_name(&target.host)?)
    } else {
        builder
    };
    let https = builder.enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_max_idle_per_host(0)
        .build(https))
}

/// The TLS server name (SNI and certificate check) of the URL's host.
fn server_name(host: &str) -> Result<FixedServerNameResolver, String> {
    match host.to_owned().try_into() {
        Ok(name) => Ok(FixedServerNameResolver::new(name)),
        Err(e) => Err(format!("invalid TLS server name `{host}`: {e}")),
    }
}

/// An error with its causes, `: `-separated (hyper's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
