//! Test support for adapters' golden tests (feature `testing`; enable it in `[dev-dependencies]`
//! only): SSE framing of recorded transcripts, accumulation of stream deltas the way the host
//! does it, the JSON form of extractions used by the `expected/` files, and their comparison.
//!
//! The types here are plain Rust: each plugin has its own WIT bindings, so it converts its
//! `sse-event`, `stream-delta` and `extraction` records with a few lines of glue.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Frames an SSE transcript into events as the host does (WHATWG rules): lines end in `\n`,
/// `\r\n` or `\r`; a blank line dispatches; one space after the colon is dropped; `data:` lines
/// are joined with `\n`; comments and other fields are ignored; a block without data is not
/// dispatched, and a last block without the final blank line still is.
pub fn frame_sse(transcript: &str) -> Vec<Frame> {
    let normalized = transcript.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    for line in normalized.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(Frame {
                    event: name.take(),
                    data: data.join("\n"),
                });
            }
            name = None;
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if !data.is_empty() {
        events.push(Frame {
            event: name,
            data: data.join("\n"),
        });
    }
    events
}

/// A tool call, whole or put together from fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    /// The provider's call id.
    pub id: Option<String>,
    /// The tool name (`None` while no fragment has named it).
    pub name: Option<String>,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// Token figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Reasoning (thinking) tokens.
    pub reasoning_tokens: Option<u64>,
    /// Input tokens served from a cache.
    pub cached_input_tokens: Option<u64>,
}

/// The spelling of the keys of an expected file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// `tool_calls`, `stop_reason`, `input_tokens`, ...
    Snake,
    /// `tool-calls`, `stop-reason`, `input-tokens`, ... (the WIT spelling).
    Kebab,
}

impl Keys {
    fn key(self, snake: &'static str) -> String {
        match self {
            Keys::Snake => snake.to_owned(),
            Keys::Kebab => snake.replace('_', "-"),
        }
    }
}

/// What an adapter extracts from a response: the plain form of the WIT `extraction`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    /// Thinking blocks, in order.
    pub thinking: Vec<String>,
    /// Text blocks, in order.
    pub text: Vec<String>,
    /// Tool calls, in order.
    pub tool_calls: Vec<Call>,
    /// Token figures, when the response reports any.
    pub usage: Option<Usage>,
    /// The model that answered.
    pub model: Option<String>,
    /// Why the response ended.
    pub stop_reason: Option<String>,
}

impl Extraction {
    /// The JSON form of the `expected/` files: `thinking`, `text`, `tool_calls` (`id`, `name`,
    /// `arguments`), `usage` (four figures or `null`), `model` and `stop_reason`.
    pub fn to_json(&self, keys: Keys) -> Value {
        let mut out = serde_json::Map::new();
        out.insert(keys.key("thinking"), json!(self.thinking));
        out.insert(keys.key("text"), json!(self.text));
        let calls: Vec<Value> = self.tool_calls.iter().map(call_json).collect();
        out.insert(keys.key("tool_calls"), Value::Array(calls));
        out.insert(keys.key("usage"), usage_json(self.usage.as_ref(), keys));
        out.insert(keys.key("model"), json!(self.model));
        out.insert(keys.key("stop_reason"), json!(self.stop_reason));
        Value::Object(out)
    }
}

/// `{"id", "name", "arguments"}`; a call no fragment named has the name `""`.
pub fn call_json(call: &Call) -> Value {
    json!({
        "id": call.id,
        "name": call.name.as_deref().unwrap_or_default(),
        "arguments": call.arguments,
    })
}

/// The four figures, or `null`.
pub fn usage_json(usage: Option<&Usage>, keys: Keys) -> Value {
    let Some(u) = usage else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    out.insert(keys.key("input_tokens"), json!(u.input_tokens));
    out.insert(keys.key("output_tokens"), json!(u.output_tokens));
    out.insert(keys.key("reasoning_tokens"), json!(u.reasoning_tokens));
    out.insert(
        keys.key("cached_input_tokens"),
        json!(u.cached_input_tokens),
    );
    Value::Object(out)
}

/// A streamed response put back together from its deltas, the way the host accumulates them:
/// thinking and text concatenated per block index, tool-call fragments concatenated per index
/// (a later id or name replaces an earlier one), whole tool calls after them, usage merged field
/// by field (later figures win), the last model and stop reason, and every error.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    /// Thinking per block index.
    pub thinking: BTreeMap<u32, String>,
    /// Text per block index.
    pub text: BTreeMap<u32, String>,
    /// Tool calls put together from fragments, per index.
    pub calls: BTreeMap<u32, Call>,
    /// Tool calls that arrived whole, in order.
    pub whole_calls: Vec<Call>,
    /// The merged usage, once any was reported.
    pub usage: Option<Usage>,
    /// The last model reported.
    pub model: Option<String>,
    /// The last stop reason reported.
    pub stop_reason: Option<String>,
    /// Every in-stream error, in order.
    pub errors: Vec<String>,
}

impl Accumulator {
    /// Adds a thinking fragment of block `index`.
    pub fn thinking(&mut self, index: u32, text: &str) {
        self.thinking.entry(index).or_default().push_str(text);
    }

    /// Adds a text fragment of block `index`.
    pub fn text(&mut self, index: u32, text: &str) {
        self.text.entry(index).or_default().push_str(text);
    }

    /// Adds a tool-call fragment of call `index`.
    pub fn fragment(
        &mut self,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: &str,
    ) {
        let call = self.calls.entry(index).or_default();
        if id.is_some() {
            call.id = id;
        }
        if name.is_some() {
            call.name = name;
        }
        call.arguments.push_str(arguments);
    }

    /// Adds a tool call that arrived whole.
    pub fn whole_call(&mut self, call: Call) {
        self.whole_calls.push(call);
    }

    /// Merges reported usage: each figure given replaces the one before.
    pub fn usage(&mut self, usage: Usage) {
        let old = self.usage.unwrap_or_default();
        self.usage = Some(Usage {
            input_tokens: usage.input_tokens.or(old.input_tokens),
            output_tokens: usage.output_tokens.or(old.output_tokens),
            reasoning_tokens: usage.reasoning_tokens.or(old.reasoning_tokens),
            cached_input_tokens: usage.cached_input_tokens.or(old.cached_input_tokens),
        });
    }

    /// Records the model, stop reason and error of one delta (each when given).
    pub fn outcome(
        &mut self,
        model: Option<String>,
        stop_reason: Option<String>,
        error: Option<String>,
    ) {
        if model.is_some() {
            self.model = model;
        }
        if stop_reason.is_some() {
            self.stop_reason = stop_reason;
        }
        self.errors.extend(error);
    }

    /// The tool call accumulated from fragments at `index`, as `(id, name, arguments)`.
    pub fn call(&self, index: u32) -> Option<(Option<&str>, Option<&str>, &str)> {
        self.calls
            .get(&index)
            .map(|c| (c.id.as_deref(), c.name.as_deref(), c.arguments.as_str()))
    }

    /// The last in-stream error.
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(String::as_str)
    }

    /// The accumulated stream in the shape of an extraction: blocks in index order, calls from
    /// fragments (in index order) before whole calls.
    pub fn extraction(&self) -> Extraction {
        Extraction {
            thinking: self.thinking.values().cloned().collect(),
            text: self.text.values().cloned().collect(),
            tool_calls: self
                .calls
                .values()
                .chain(&self.whole_calls)
                .cloned()
                .collect(),
            usage: self.usage,
            model: self.model.clone(),
            stop_reason: self.stop_reason.clone(),
        }
    }
}

/// What a request case expects of `transform-request` (the `expect` member of a
/// `requests/cases.json` entry).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    /// The adapter refuses the request: `unsupported` or `internal`.
    Error {
        /// The error kind.
        error: String,
    },
    /// The adapter returns a plan.
    Plan {
        /// File holding the exact transformed body, or `null` when it is sent unchanged.
        body: Option<String>,
        /// Whether the response will be streamed.
        streaming: bool,
        /// The model the request names.
        model: Option<String>,
        /// Whether thinking (reasoning) settings were injected.
        thinking_injected: bool,
        /// How many system notes were placed.
        notes_applied: u32,
    },
}

/// A configuration lookup over `pairs` (what `config-get` answers for a manifest's `config`
/// table), for tests of settings and descriptors.
pub fn config(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| map.get(key).cloned()
}

/// Panics with both documents pretty-printed when they differ.
pub fn assert_json_eq(what: &str, got: &Value, want: &Value) {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    assert!(
        got == want,
        "{what}: extraction differs from the expected file\n--- got ---\n{}\n--- want ---\n{}",
        pretty(got),
        pretty(want)
    );
}

/// The bytes of a fixture file; panics naming the file when it cannot be read.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture file read as JSON; panics naming the file when it cannot be read or parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names of the regular files directly in `dir`; panics naming the directory when it
/// cannot be listed.
pub fn file_names(dir: &Path) -> BTreeSet<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// The regular files directly in `dir` whose extension is `ext`, sorted.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    file_names(dir)
        .into_iter()
        .map(|name| dir.join(name))
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_handles_line_ends_comments_and_multiline_data() {
        let frames = frame_sse(
            ": keep-alive\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\nid: 7\r\n\r\ndata: {\"x\":1}\rdata\r\revent: late\ndata:  two spaces",
        );
        assert_eq!(
            frames,
            [
                Frame {
                    event: Some("a".into()),
                    data: "1\n2".into()
                },
                Frame {
                    event: None,
                    data: "{\"x\":1}\n".into()
                },
                Frame {
                    event: Some("late".into()),
                    data: " two spaces".into()
                },
            ]
        );
        assert!(frame_sse("").is_empty());
        assert!(frame_sse("event: only\n\n: comment\n\n").is_empty());
    }

    #[test]
    fn crlf_and_lf_transcripts_frame_alike() {
        let lf = "event: message_start\ndata: {\"a\": 1}\n\nevent: ping\ndata: {}\n\n";
        assert_eq!(frame_sse(lf), frame_sse(&lf.replace('\n', "\r\n")));
        assert_eq!(frame_sse(lf).len(), 2);
    }

    #[test]
    fn accumulates_like_the_host() {
        let mut acc = Accumulator::default();
        acc.thinking(0, "a");
        acc.text(1, "x");
        acc.thinking(0, "b");
        acc.text(0, "w");
        acc.fragment(2, Some("id1".into()), Some("f".into()), "{\"a\"");
        acc.fragment(2, None, None, ":1}");
        acc.fragment(3, None, None, "{}");
        acc.fragment(3, Some("late".into()), None, "");
        acc.whole_call(Call {
            id: None,
            name: Some("g".into()),
            arguments: "{}".into(),
        });
        acc.usage(Usage {
            input_tokens: Some(5),
            output_tokens: Some(1),
            ..Usage::default()
        });
        acc.usage(Usage {
            output_tokens: Some(9),
            reasoning_tokens: Some(2),
            ..Usage::default()
        });
        acc.outcome(Some("m1".into()), None, Some("e1".into()));
        acc.outcome(None, Some("stop".into()), None);
        acc.outcome(Some("m2".into()), None, Some("e2".into()));

        assert_eq!(acc.call(2), Some((Some("id1"), Some("f"), "{\"a\":1}")));
        assert_eq!(acc.call(3), Some((Some("late"), None, "{}")));
        assert_eq!(acc.call(4), None);
        assert_eq!(acc.last_error(), Some("e2"));
        assert_eq!(acc.errors, ["e1", "e2"]);
        let e = acc.extraction();
        assert_eq!(e.thinking, ["ab"]);
        assert_eq!(e.text, ["w", "x"]);
        assert_eq!(
            e.tool_calls.iter().map(call_json).collect::<Vec<_>>(),
            [
                json!({"id": "id1", "name": "f", "arguments": "{\"a\":1}"}),
                json!({"id": "late", "name": "", "arguments": "{}"}),
                json!({"id": null, "name": "g", "arguments": "{}"}),
            ]
        );
        assert_eq!(
            e.usage,
            Some(Usage {
                input_tokens: Some(5),
                output_tokens: Some(9),
                reasoning_tokens: Some(2),
                cached_input_tokens: None,
            })
        );
        assert_eq!(
            (e.model.as_deref(), e.stop_reason.as_deref()),
            (Some("m2"), Some("stop"))
        );
    }

    #[test]
    fn extraction_json_in_both_spellings() {
        let e = Extraction {
            thinking: vec!["t".into()],
            text: vec![],
            tool_calls: vec![Call::default()],
            usage: Some(Usage {
                input_tokens: Some(1),
                ..Usage::default()
            }),
            model: None,
            stop_reason: Some("end".into()),
        };
        assert_eq!(
            e.to_json(Keys::Snake),
            json!({
                "thinking": ["t"], "text": [],
                "tool_calls": [{"id": null, "name": "", "arguments": ""}],
                "usage": {"input_tokens": 1, "output_tokens": null, "reasoning_tokens": null, "cached_input_tokens": null},
                "model": null, "stop_reason": "end",
            })
        );
        assert_eq!(
            e.to_json(Keys::Kebab),
            json!({
                "thinking": ["t"], "text": [],
                "tool-calls": [{"id": null, "name": "", "arguments": ""}],
                "usage": {"input-tokens": 1, "output-tokens": null, "reasoning-tokens": null, "cached-input-tokens": null},
                "model": null, "stop-reason": "end",
            })
        );
        assert_eq!(usage_json(None, Keys::Snake), Value::Null);
    }

    #[test]
    fn expectations_of_request_cases() {
        let cases: Vec<Expect> = serde_json::from_str(
            r#"[{"error": "unsupported"},
                {"body": null, "streaming": true, "model": "m", "thinking_injected": false, "notes_applied": 2}]"#,
        )
        .unwrap();
        assert_eq!(
            cases,
            [
                Expect::Error {
                    error: "unsupported".into()
                },
                Expect::Plan {
                    body: None,
                    streaming: true,
                    model: Some("m".into()),
                    thinking_injected: false,
                    notes_applied: 2
                }
            ]
        );
    }

    #[test]
    fn config_lookups() {
        let get = config(&[("a", "1"), ("b", " ")]);
        assert_eq!(get("a").as_deref(), Some("1"));
        assert_eq!(get("b").as_deref(), Some(" "));
        assert_eq!(get("c"), None);
    }

    #[test]
    fn json_comparison() {
        assert_json_eq("same", &json!({"a": [1]}), &json!({"a": [1]}));
        let differs = std::panic::catch_unwind(|| {
            assert_json_eq("case", &json!({"a": 1}), &json!({"a": 2}));
        });
        assert!(differs.is_err());
    }

    #[test]
    fn fixture_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let names = file_names(&dir);
        assert!(names.contains("testing.rs") && names.contains("lib.rs"));
        let rs = files_with_extension(&dir, "rs");
        assert_eq!(
            rs.len(),
            names.iter().filter(|n| n.ends_with(".rs")).count()
        );
        assert!(rs.windows(2).all(|w| w[0] < w[1]));
        assert!(files_with_extension(&dir, "md").is_empty());
        assert!(!read(&dir.join("lib.rs")).is_empty());
        let manifest = dir.join("../Cargo.toml");
        assert!(std::panic::catch_unwind(|| read_json(&manifest)).is_err());
    }
}
