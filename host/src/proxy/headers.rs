//! Which headers cross the gateway. Hop-by-hop headers, the caller's cookies, `host` and the
//! gateway's own `x-mnemom-*` headers never reach the provider; hop-by-hop headers of the
//! provider's response never reach the client.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers to send upstream: the caller's, less hop-by-hop headers (and those its
/// `Connection` lists), `host`, cookies, `content-length` (set for the body actually sent) and
/// the gateway's own `x-mnemom-*`. Filtered in place: usually only `host` and `content-length`
/// go, and nothing is copied. (Fields of different names may change order, which carries no
/// meaning in HTTP.)
pub fn upstream_request_headers(mut headers: HeaderMap) -> HeaderMap {
    let listed = connection_listed(&headers);
    remove_where(&mut headers, |n| {
        HOP_BY_HOP.contains(&n)
            || listed.iter().any(|l| l == n)
            || n == "host"
            || n == "cookie"
            || n == "content-length"
            || n.starts_with("x-mnemom-")
    });
    headers
}

/// The headers to send to the client (before the gateway adds its own): the provider's, less
/// hop-by-hop headers and those its `Connection` lists. Filtered in place, as above.
pub fn client_response_headers(mut headers: HeaderMap) -> HeaderMap {
    let listed = connection_listed(&headers);
    remove_where(&mut headers, |n| {
        HOP_BY_HOP.contains(&n) || listed.iter().any(|l| l == n)
    });
    headers
}

/// Removes every field whose name matches (all its values).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Headers the browser may read on cross-origin responses.
pub const EXPOSE_HEADERS: &str = "x-smoltbot-agent, x-smoltbot-session, X-AIP-Verdict, X-AIP-Checkpoint-Id, X-AIP-Action, X-AIP-Proceed, X-AIP-Synthetic, X-AIP-Certificate-Id, X-AIP-Chain-Hash, X-Mnemom-Usage-Warning, X-Mnemom-Usage-Percent";
/// Request headers a browser may send.
pub const ALLOW_HEADERS: &str = "Content-Type, x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, authorization, x-goog-api-key, x-goog-api-client, x-mnemom-api-key, openai-organization, openai-project, openai-beta, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout";

/// Adds the CORS headers every gateway response carries.
pub fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

/// Adds the preflight answer's headers.
pub fn add_preflight(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}

/// `x-smoltbot-agent`.
pub static AGENT: HeaderName = HeaderName::from_static("x-smoltbot-agent");
/// `x-smoltbot-session`.
pub static SESSION: HeaderName = HeaderName::from_static("x-smoltbot-session");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_internal_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "gw"),
            ("cookie", "a=b"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("x-mnemom-api-key", "secret"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("x-api-key", "k"),
            ("accept-encoding", "gzip"),
            ("anthropic-version", "2023-06-01"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = upstream_request_headers(h.clone());
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec!["accept-encoding", "anthropic-version", "x-api-key"]
        );
        assert_eq!(out.len(), 3);

        // A response: hop-by-hop and `Connection`-listed fields go, the rest (every value of
        // repeated fields included) stays.
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        let out = client_response_headers(h);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "accept-encoding",
                "anthropic-version",
                "content-length",
                "cookie",
                "host",
                "set-cookie",
                "x-api-key",
                "x-mnemom-api-key"
            ]
        );
        assert_eq!(out.get_all("set-cookie").iter().count(), 2);
    }
}
