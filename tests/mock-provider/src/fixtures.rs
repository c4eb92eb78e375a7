//! Loading fixture files from disk, caching them in memory, and splitting SSE bodies into events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;

/// One fixture file, read once and kept in memory.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// The provider directory the file lives in (`anthropic`, `openai`, `gemini`, ...).
    pub(crate) provider: String,
    /// The file's exact bytes.
    pub(crate) bytes: Bytes,
    /// For `.sse` files: the bytes split into events (see [`split_sse_events`]); empty otherwise.
    pub(crate) events: Arc<[Bytes]>,
    /// `Content-Type` derived from the file extension.
    pub(crate) content_type: &'static str,
}

impl Fixture {
    /// Whether this fixture is a server-sent-events stream.
    pub(crate) fn is_sse(&self) -> bool {
        self.content_type == CONTENT_TYPE_SSE
    }
}

pub(crate) const CONTENT_TYPE_JSON: &str = "application/json";
pub(crate) const CONTENT_TYPE_SSE: &str = "text/event-stream";

/// Why a fixture could not be served.
#[derive(Debug)]
pub(crate) enum FixtureError {
    /// The name is not of the form `<provider>/<file>` or tries to leave the fixtures directory.
    InvalidName(String),
    /// The file could not be read.
    Unreadable(PathBuf, std::io::Error),
}

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidName(name) => {
                write!(
                    f,
                    "invalid fixture name {name:?}: expected <provider>/<file>"
                )
            }
            Self::Unreadable(path, err) => {
                write!(f, "cannot read fixture {}: {err}", path.display())
            }
        }
    }
}

/// Fixture files keyed by name (`<provider>/<file>`), loaded lazily from `dir`.
#[derive(Debug)]
pub(crate) struct FixtureCache {
    dir: PathBuf,
    loaded: RwLock<HashMap<String, Arc<Fixture>>>,
}

impl FixtureCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            loaded: RwLock::new(HashMap::new()),
        }
    }

    /// Returns the fixture `name`, reading it from disk on first use.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<Fixture>, FixtureError> {
        if let Some(fixture) = self
            .loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(Arc::clone(fixture));
        }
        let (provider, _file) = validate_name(name)?;
        let path = self.dir.join(name);
        let data = tokio::fs::read(&path)
            .await
            .map_err(|err| FixtureError::Unreadable(path.clone(), err))?;
        let bytes = Bytes::from(data);
        let content_type = content_type_for(&path);
        let events: Arc<[Bytes]> = if content_type == CONTENT_TYPE_SSE {
            split_sse_events(&bytes).into()
        } else {
            Arc::from([])
        };
        let fixture = Arc::new(Fixture {
            provider: provider.to_owned(),
            bytes,
            events,
            content_type,
        });
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::clone(&fixture));
        Ok(fixture)
    }
}

/// Checks that `name` is `<provider>/<file>` with plain path components, and splits it.
fn validate_name(name: &str) -> Result<(&str, &str), FixtureError> {
    let invalid = || FixtureError::InvalidName(name.to_owned());
    let (provider, file) = name.split_once('/').ok_or_else(invalid)?;
    let plain = |part: &str| {
        !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0'])
    };
    if plain(provider) && plain(file) {
        Ok((provider, file))
    } else {
        Err(invalid())
    }
}

fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("json") => CONTENT_TYPE_JSON,
        Some("sse") => CONTENT_TYPE_SSE,
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Splits an SSE body into events without changing a byte: each piece ends right after the blank line
/// (`\n\n` or `\r\n\r\n`) that terminates an event, and bytes after the last blank line (if any) form a
/// final piece. Concatenating the pieces gives back `body` exactly.
///
/// ```
/// use bytes::Bytes;
/// let body = Bytes::from_static(b"data: a\n\ndata: b\r\n\r\n");
/// let events = mnemom_mock_provider::split_sse_events(&body);
/// assert_eq!(events, [Bytes::from_static(b"data: a\n\n"), Bytes::from_static(b"data: b\r\n\r\n")]);
/// ```
pub fn split_sse_events(body: &Bytes) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut event_start = 0;
    let mut line_start = 0;
    for (i, &byte) in body.iter().enumerate() {
        if byte != b'\n' {
            continue;
        }
        let line = &body[line_start..i];
        let blank = line.is_empty() || line == b"\r";
        line_start = i + 1;
        if blank && line_start > event_start {
            events.push(body.slice(event_start..line_start));
            event_start = line_start;
        }
    }
    if event_start < body.len() {
        events.push(body.slice(event_start..));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lf_and_crlf_and_keeps_bytes() {
        let body = Bytes::from_static(b"event: a\ndata: {}  \n\ndata: b\r\n\r\ndata: tail");
        let events = split_sse_events(&body);
        assert_eq!(events.len(), 3);
        assert_eq!(&events[0][..], b"event: a\ndata: {}  \n\n");
        assert_eq!(&events[1][..], b"data: b\r\n\r\n");
        assert_eq!(&events[2][..], b"data: tail");
        assert_eq!(events.concat(), body.to_vec());
    }

    #[test]
    fn empty_body_has_no_events() {
        assert!(split_sse_events(&Bytes::new()).is_empty());
    }

    #[test]
    fn every_recorded_sse_fixture_splits_losslessly() {
        let dir = Path::new(crate::DEFAULT_FIXTURES_DIR);
        let mut checked = 0;
        for provider in ["anthropic", "openai", "gemini"] {
            for entry in std::fs::read_dir(dir.join(provider)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().and_then(|e| e.to_str()) != Some("sse") {
                    continue;
                }
                let body = Bytes::from(std::fs::read(&path).unwrap());
                let events = split_sse_events(&body);
                assert!(!events.is_empty(), "{}", path.display());
                assert_eq!(events.concat(), body.to_vec(), "{}", path.display());
                for event in &events {
                    assert!(
                        event.ends_with(b"\n\n") || event.ends_with(b"\r\n\r\n"),
                        "{}: {event:?}",
                        path.display()
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 10);
    }

    #[test]
    fn rejects_names_leaving_the_directory() {
        for name in [
            "../x.json",
            "anthropic/../../etc",
            "/etc/passwd",
            "anthropic",
            "a/b/c",
            "a\\b/c",
            "./x",
        ] {
            assert!(validate_name(name).is_err(), "{name}");
        }
        assert!(validate_name("openai/chat-completions-text.json").is_ok());
    }
}
