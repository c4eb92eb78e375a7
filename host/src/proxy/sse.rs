//! Incremental server-sent-events framing, independent of the provider: bytes go in as they
//! arrive (split anywhere, even inside a CRLF or a UTF-8 character), complete events come out.
//! Follows the WHATWG event-stream rules: lines end in LF, CRLF or CR; `data` lines are joined
//! with LF; one leading space after the colon is dropped; comments and unknown fields are ignored.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Largest event the framer assembles; anything bigger is dropped (and counted) rather than
/// letting one malformed stream grow memory without bound.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// The framer's state between chunks.
#[derive(Debug, Default)]
pub struct Framer {
    line: Vec<u8>,
    last_was_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    pending_bytes: usize,
    oversized: bool,
    discarding_line: bool,
    /// Events dropped because they exceeded [`MAX_EVENT_BYTES`].
    pub dropped: u64,
}

impl Framer {
    /// A new framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk, appending completed events to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        let mut start = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            match byte {
                b'\n' if self.last_was_cr => {
                    // Second half of a CRLF whose CR ended the previous line.
                    self.last_was_cr = false;
                    start = i + 1;
                }
                b'\n' | b'\r' => {
                    self.line.extend_from_slice(&chunk[start..i]);
                    self.end_line(out);
                    self.last_was_cr = byte == b'\r';
                    start = i + 1;
                }
                _ => {
                    self.last_was_cr = false;
                }
            }
        }
        if start < chunk.len() {
            self.line.extend_from_slice(&chunk[start..]);
            if self.line.len() > MAX_EVENT_BYTES {
                self.oversized = true;
                self.discarding_line = true;
                self.line.clear();
            }
        }
    }

    /// Flushes an event left open at the end of the stream (a stream that ends without the
    /// final blank line still delivered that event).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if !self.line.is_empty() || self.discarding_line {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        if std::mem::take(&mut self.discarding_line) {
            // The end of a line that was too long to keep: part of an oversized event.
            self.line.clear();
            return;
        }
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.pending_bytes += line.len();
        if self.pending_bytes > MAX_EVENT_BYTES {
            self.oversized = true;
        }
        if self.oversized {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.find(':') {
            Some(0) => return, // comment
            Some(colon) => {
                let value = &text[colon + 1..];
                (&text[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {} // id, retry and unknown fields do not matter for extraction
        }
        // Keep the line buffer's allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        if self.oversized {
            self.dropped += 1;
        } else if self.has_data {
            out.push(Event {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
        self.pending_bytes = 0;
        self.oversized = false;
    }
}

/// Frames a complete byte string (for tests and non-incremental callers).
pub fn frame_all(bytes: &[u8]) -> Vec<Event> {
    let mut framer = Framer::new();
    let mut out = Vec::new();
    framer.push(bytes, &mut out);
    framer.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../plugins/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn frames_fields_and_line_endings() {
        let events = frame_all(b"event: a\ndata: 1\ndata:2\n\n: comment\r\ndata: x\r\n\r\nevent:b\rdata: y\r\rdata: tail");
        assert_eq!(
            events,
            vec![
                Event {
                    event: Some("a".into()),
                    data: "1\n2".into()
                },
                Event {
                    event: None,
                    data: "x".into()
                },
                Event {
                    event: Some("b".into()),
                    data: "y".into()
                },
                Event {
                    event: None,
                    data: "tail".into()
                },
            ]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(frame_all(b"event: ping\n\n\n\n").is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for path in [
            "anthropic/messages-stream-thinking-signature-text.sse",
            "openai/chat-completions-stream-tool-call-include-usage.sse",
            "gemini/stream-generate-content-thought-parts-text.sse",
            "openai/responses-stream-function-call.sse",
        ] {
            let bytes = fixture(path);
            let whole = frame_all(&bytes);
            assert!(whole.len() > 2, "{path}");
            for split in 0..=bytes.len() {
                let mut framer = Framer::new();
                let mut out = Vec::new();
                framer.push(&bytes[..split], &mut out);
                framer.push(&bytes[split..], &mut out);
                framer.finish(&mut out);
                assert_eq!(out, whole, "{path} split at {split}");
            }
        }
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let bytes = fixture("gemini/stream-generate-content-function-call-thought-signature.sse");
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for b in &bytes {
            framer.push(std::slice::from_ref(b), &mut out);
        }
        framer.finish(&mut out);
        assert_eq!(out, frame_all(&bytes));
    }

    #[test]
    fn oversized_events_are_dropped_not_buffered() {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        framer.push(b"data: ", &mut out);
        let big = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_EVENT_BYTES / big.len() + 2) {
            framer.push(&big, &mut out);
        }
        framer.push(b"\n\ndata: ok\n\n", &mut out);
        assert_eq!(framer.dropped, 1);
        assert_eq!(
            out,
            vec![Event {
                event: None,
                data: "ok".into()
            }]
        );
    }
}
