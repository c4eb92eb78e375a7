//! Agent identity from the caller's own provider key: the key is hashed (SHA-256) and never
//! stored or logged; the hash names the agent, and an hour bucket names the session.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::plugin::adapter::CredentialSource;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// First 16 hex characters of sha256(key).
    pub agent_hash: String,
    /// `smolt-` + first 8 hex characters.
    pub agent_id: String,
    /// `<agent_hash>-<hours since the epoch>`.
    pub session_id: String,
}

impl AgentIdentity {
    /// Derives the identity of `key` at `now`.
    pub fn from_key(key: &str, now: SystemTime) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        // Per request: hex digits written in place, no formatting machinery.
        let mut hex_digits = [0u8; 16];
        let agent_hash = match hex::encode_to_slice(&digest[..8], &mut hex_digits) {
            Ok(()) => std::str::from_utf8(&hex_digits).unwrap_or_default(),
            Err(_) => "",
        };
        let hour = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 3_600)
            .unwrap_or(0);
        let mut agent_id = String::with_capacity(14);
        agent_id.push_str("smolt-");
        agent_id.push_str(&agent_hash[..8]);
        let mut session_id = String::with_capacity(24);
        session_id.push_str(agent_hash);
        session_id.push('-');
        push_decimal(&mut session_id, hour);
        Self {
            agent_hash: agent_hash.to_owned(),
            agent_id,
            session_id,
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Why no usable key was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// None of the sources carried a key.
    #[error("missing {expected}")]
    Missing {
        /// Human description of where a key was expected.
        expected: String,
    },
    /// A source carried a value that is not a usable key.
    #[error("the {source_name} value is not a valid API key")]
    Invalid {
        /// Which source.
        source_name: String,
    },
}

/// Describes the sources for error messages, e.g. "x-api-key or Authorization: Bearer <key> header".
pub fn describe_sources(sources: &[CredentialSource]) -> String {
    let parts: Vec<String> = sources
        .iter()
        .map(|s| match s {
            CredentialSource::Header(name) => format!("{name} header"),
            CredentialSource::Bearer => "Authorization: Bearer <key> header".to_owned(),
            CredentialSource::Query(name) => format!("?{name}= query parameter"),
        })
        .collect();
    parts.join(" or ")
}

/// Finds the caller's key in the first source that carries one.
pub fn extract_key(
    sources: &[CredentialSource],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<String, KeyError> {
    for source in sources {
        match source {
            CredentialSource::Header(name) => {
                if let Some(value) = headers.get(name.as_str()) {
                    let key = value.to_str().map(str::trim).unwrap_or("");
                    if key.is_empty() || key.contains(char::is_whitespace) {
                        return Err(KeyError::Invalid {
                            source_name: format!("{name} header"),
                        });
                    }
                    return Ok(key.to_owned());
                }
            }
            CredentialSource::Bearer => {
                if let Some(value) = headers.get(http::header::AUTHORIZATION) {
                    let Ok(text) = value.to_str() else {
                        return Err(KeyError::Invalid {
                            source_name: "Authorization header".into(),
                        });
                    };
                    let text = text.trim();
                    let scheme_ok = text.len() > 7 && text[..7].eq_ignore_ascii_case("bearer ");
                    let key = if scheme_ok { text[7..].trim() } else { "" };
                    if key.is_empty() || key.contains(char::is_whitespace) {
                        return Err(KeyError::Invalid {
                            source_name: "Authorization header".into(),
                        });
                    }
                    return Ok(key.to_owned());
                }
            }
            CredentialSource::Query(name) => {
                let Some(query) = query else { continue };
                let found =
                    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name.as_str());
                if let Some((_, value)) = found {
                    let key = value.trim();
                    if key.is_empty() {
                        return Err(KeyError::Invalid {
                            source_name: format!("?{name}= query parameter"),
                        });
                    }
                    return Ok(key.to_owned());
                }
            }
        }
    }
    Err(KeyError::Missing {
        expected: describe_sources(sources),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn identity_matches_the_original_scheme() {
        // sha256("test-key") = 62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef
        let id = AgentIdentity::from_key(
            "test-key",
            UNIX_EPOCH + std::time::Duration::from_secs(7200 + 5),
        );
        assert_eq!(id.agent_hash, "62af8704764faf8e");
        assert_eq!(id.agent_id, "smolt-62af8704");
        assert_eq!(id.session_id, "62af8704764faf8e-2");
        let epoch = AgentIdentity::from_key("test-key", UNIX_EPOCH);
        assert_eq!(epoch.session_id, "62af8704764faf8e-0");
        let mut s = String::new();
        push_decimal(&mut s, u64::MAX);
        assert_eq!(s, u64::MAX.to_string());
    }

    #[test]
    fn keys_from_each_source() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k1"));
        headers.insert("authorization", HeaderValue::from_static("bearer  k2 "));
        let anthropic = [
            CredentialSource::Header("x-api-key".into()),
            CredentialSource::Bearer,
        ];
        assert_eq!(extract_key(&anthropic, &headers, None).unwrap(), "k1");
        assert_eq!(
            extract_key(&[CredentialSource::Bearer], &headers, None).unwrap(),
            "k2"
        );
        let gemini = [
            CredentialSource::Header("x-goog-api-key".into()),
            CredentialSource::Query("key".into()),
        ];
        assert_eq!(
            extract_key(&gemini, &HeaderMap::new(), Some("alt=sse&key=k%203")).unwrap(),
            "k 3"
        );
        let missing = extract_key(&gemini, &HeaderMap::new(), Some("alt=sse")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "missing x-goog-api-key header or ?key= query parameter"
        );
    }

    #[test]
    fn malformed_keys_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            extract_key(&[CredentialSource::Bearer], &headers, None),
            Err(KeyError::Invalid { .. })
        ));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-api-key",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        let sources = [CredentialSource::Header("x-api-key".into())];
        assert!(matches!(
            extract_key(&sources, &headers, None),
            Err(KeyError::Invalid { .. })
        ));
    }
}
