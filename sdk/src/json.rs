//! JSON text and byte-level edits that keep the caller's bytes, without `serde_json::Value`.
//!
//! Adapters only ever *add* to a request body (a member, an array element, text in front of a
//! string), so they locate the spots to edit by byte range and splice JSON text in there: key
//! order, number spelling, whitespace and escapes of everything else reach the provider byte for
//! byte. Building that text directly also keeps `Value` serialization (and its float
//! formatting) out of the components.
//!
//! - text: [`string`] / [`push_string`] (escaping exactly as serde_json does), [`unescape`],
//!   [`object`], [`compact`], [`starts_object`];
//! - whole-buffer insertions: [`prepend_raw_members`], [`prepend_raw_element`] (and the
//!   `Value`-based [`prepend_member`] / [`prepend_members`]);
//! - scanning: [`root`], [`members`], [`find`], [`member_span`], [`is_null`], [`first_byte`];
//! - splicing: [`Edit`] and [`apply`].
//!
//! The scanning functions expect a document that serde has already validated; they walk its
//! structure only, and answer `None` (never panic) on malformed input.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Text

/// Appends `text` as a JSON string literal (quotes included), escaped the way serde_json
/// escapes: `"`, `\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`, and
/// everything else (non-ASCII included) as is.
pub fn push_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push('"');
    // Runs that need no escape are copied whole. Every byte that does is ASCII, so the
    // indices around it are character boundaries.
    let mut run = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        let mut control = [b'\\', b'u', b'0', b'0', 0, 0];
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => {
                control[4] = HEX[usize::from(byte >> 4)];
                control[5] = HEX[usize::from(byte & 0xf)];
                std::str::from_utf8(&control).unwrap_or_default()
            }
            _ => continue,
        };
        out.push_str(text.get(run..at).unwrap_or_default());
        out.push_str(escape);
        run = at + 1;
    }
    out.push_str(text.get(run..).unwrap_or_default());
    out.push('"');
}

/// `text` as a JSON string literal (see [`push_string`]).
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_string(&mut out, text);
    out
}

/// Decodes a JSON string literal (quotes included; surrounding whitespace allowed), borrowing
/// when it holds no escapes. Returns `None` for anything that is not one valid string literal.
///
/// Decoded by serde_json (through [`Val`](crate::lenient::Val)), whose string parser every
/// adapter carries anyway: a decoder of our own would only add to the component.
pub fn unescape(literal: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<crate::lenient::Val<'_>>(literal)
        .ok()?
        .into_cow()
}

/// Appends `"k1":v1,"k2":v2` (values are JSON text).
fn push_members(out: &mut String, members: &[(&str, String)]) {
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, key);
        out.push(':');
        out.push_str(value);
    }
}

/// `{"k1":v1,"k2":v2}`: an object of `members` (values are JSON text), in the given order.
pub fn object(members: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    push_members(&mut out, members);
    out.push('}');
    out
}

/// Removes the insignificant whitespace of valid JSON text, keeping key order, number spelling
/// and string escapes exactly as they were (re-serializing through `Value` would sort keys).
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Whether `bytes` starts (after whitespace) like a JSON object. Worth checking before serde
/// reads a struct: serde also reads structs from arrays, positionally.
pub fn starts_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

// ---------------------------------------------------------------------------------------------
// Whole-buffer insertions

/// Inserts `text` as the first entry of the container (opened by `open`, closed by `close`)
/// that `container` holds after optional whitespace; `None` when it does not start with `open`.
fn prepend_into(container: &[u8], open: u8, close: u8, text: &str) -> Option<Vec<u8>> {
    let at = container.iter().position(|b| !b.is_ascii_whitespace())?;
    if container[at] != open {
        return None;
    }
    let rest = &container[at + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&close);
    let mut out = Vec::with_capacity(container.len() + text.len() + 1);
    out.extend_from_slice(&container[..=at]);
    out.extend_from_slice(text.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Inserts `members` (values as JSON text) in order at the front of the JSON object `object`,
/// keeping its bytes. Returns `None` when `object` does not start (after whitespace) with `{`.
///
/// The caller must already have checked that the object has none of the keys (a duplicate key
/// would be ambiguous for the provider).
pub fn prepend_raw_members(object: &[u8], members: &[(&str, String)]) -> Option<Vec<u8>> {
    let mut text = String::new();
    push_members(&mut text, members);
    prepend_into(object, b'{', b'}', &text)
}

/// Inserts `element` (JSON text) as the first element of the JSON array `array`, keeping its
/// bytes. Returns `None` when `array` does not start (after whitespace) with `[`.
pub fn prepend_raw_element(array: &[u8], element: &str) -> Option<Vec<u8>> {
    prepend_into(array, b'[', b']', element)
}

/// Inserts `"key": value` as the first member of the JSON object in `body` (see
/// [`prepend_raw_members`]; the JSON text comes from `Value`'s own serializer).
pub fn prepend_member(body: &[u8], key: &str, value: &Value) -> Option<Vec<u8>> {
    let mut text = Value::String(key.to_owned()).to_string();
    text.push(':');
    text.push_str(&value.to_string());
    prepend_into(body, b'{', b'}', &text)
}

/// Inserts several members in order (see [`prepend_member`]).
pub fn prepend_members(body: &[u8], members: &[(&str, Value)]) -> Option<Vec<u8>> {
    let mut current: Option<Vec<u8>> = None;
    for (key, value) in members.iter().rev() {
        let source = current.as_deref().unwrap_or(body);
        current = Some(prepend_member(source, key, value)?);
    }
    current
}

// ---------------------------------------------------------------------------------------------
// Scanning

/// One member of a JSON object: its decoded key and the byte range of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key, decoded (escapes resolved).
    pub key: Cow<'a, str>,
    /// Byte range of the raw value inside the scanned document.
    pub value: Range<usize>,
}

/// The members of the object in `doc[span]`, in document order, with ranges relative to `doc`.
/// Returns `None` when the span does not hold (after whitespace) a well-formed JSON object.
pub fn members(doc: &[u8], span: Range<usize>) -> Option<Vec<Member<'_>>> {
    let end = span.end.min(doc.len());
    let mut i = skip_ws(doc, span.start, end);
    if doc.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(doc, i + 1, end);
    let mut out = Vec::new();
    if doc.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if doc.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(doc, i, end)?;
        let key = unescape(doc.get(i..key_end)?)?;
        i = skip_ws(doc, key_end, end);
        if doc.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(doc, i + 1, end);
        let value_end = skip_value(doc, value_start, end)?;
        out.push(Member {
            key,
            value: value_start..value_end,
        });
        i = skip_ws(doc, value_end, end);
        match doc.get(i) {
            Some(b',') => i = skip_ws(doc, i + 1, end),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The value range of the first member called `key` among `members`, when present.
pub fn find(members: &[Member<'_>], key: &str) -> Option<Range<usize>> {
    members
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value.clone())
}

/// The byte range of the value of the top-level member `key` of the JSON object `body`. When the
/// key repeats, the last one wins, as it does when serde reads the body.
pub fn member_span(body: &[u8], key: &str) -> Option<Range<usize>> {
    members(body, 0..body.len())?
        .into_iter()
        .rev()
        .find(|m| m.key == key)
        .map(|m| m.value)
}

/// The byte range of the whole top-level value of `doc` (leading and trailing whitespace
/// excluded), or `None` when `doc` is not a single well-formed value.
pub fn root(doc: &[u8]) -> Option<Range<usize>> {
    let start = skip_ws(doc, 0, doc.len());
    let end = skip_value(doc, start, doc.len())?;
    (skip_ws(doc, end, doc.len()) == doc.len()).then_some(start..end)
}

/// Whether `doc[range]` is the literal `null`.
pub fn is_null(doc: &[u8], range: &Range<usize>) -> bool {
    doc.get(range.clone()) == Some(b"null".as_slice())
}

/// The first byte of the value at `range` (`{`, `[`, `"`, a digit, ...).
pub fn first_byte(doc: &[u8], range: &Range<usize>) -> Option<u8> {
    doc.get(range.start).copied()
}

fn skip_ws(doc: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && doc.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `doc[start]` is `"`; returns the index just past the closing quote.
fn skip_string(doc: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < end {
        match doc.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Returns the index just past the value starting at `doc[start]`.
fn skip_value(doc: &[u8], start: usize, end: usize) -> Option<usize> {
    match doc.get(start)? {
        b'"' => skip_string(doc, start, end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < end {
                match doc.get(i)? {
                    b'"' => {
                        i = skip_string(doc, i, end)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < end
                && doc
                    .get(i)
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Splicing

/// One splice: replace `range` with `bytes` (an empty range inserts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Bytes of the original document to replace.
    pub range: Range<usize>,
    /// Replacement bytes.
    pub bytes: Vec<u8>,
}

impl Edit {
    /// Replaces the value at `range` with `json`.
    pub fn replace(range: Range<usize>, json: String) -> Self {
        Self {
            range,
            bytes: json.into_bytes(),
        }
    }

    /// Inserts `item` (an array element, or a `"key":value` member) as the first entry of the
    /// array or object whose value occupies `container`. Returns `None` when `container` does not
    /// start with `[` or `{`.
    pub fn prepend_entry(doc: &[u8], container: &Range<usize>, item: String) -> Option<Self> {
        let open = container.start;
        let close = match doc.get(open)? {
            b'[' => b']',
            b'{' => b'}',
            _ => return None,
        };
        let next = skip_ws(doc, open + 1, container.end);
        let mut bytes = item.into_bytes();
        if doc.get(next) != Some(&close) {
            bytes.push(b',');
        }
        Some(Self {
            range: open + 1..open + 1,
            bytes,
        })
    }
}

/// Applies non-overlapping `edits` to `doc`. Returns `None` when two edits overlap or one lies
/// outside the document.
pub fn apply(doc: &[u8], mut edits: Vec<Edit>) -> Option<Vec<u8>> {
    // A handful of edits at most: an insertion sort keeps the standard library's sort out of the
    // components.
    for i in 1..edits.len() {
        let mut j = i;
        while j > 0 && edits[j - 1].range.start > edits[j].range.start {
            edits.swap(j - 1, j);
            j -= 1;
        }
    }
    let extra: usize = edits.iter().map(|e| e.bytes.len()).sum();
    let mut out = Vec::with_capacity(doc.len() + extra);
    let mut at = 0;
    for edit in edits {
        if edit.range.start < at || edit.range.end < edit.range.start {
            return None;
        }
        out.extend_from_slice(doc.get(at..edit.range.start)?);
        out.extend_from_slice(&edit.bytes);
        at = edit.range.end;
    }
    out.extend_from_slice(doc.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splices_into_object_keeping_bytes() {
        let body = br#" {"model":"m",  "n": 1.50}"#;
        let out = prepend_member(body, "thinking", &json!({"type":"enabled"})).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#" {"thinking":{"type":"enabled"},"model":"m",  "n": 1.50}"#
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["n"], json!(1.5));
    }

    #[test]
    fn splices_into_empty_object() {
        let out = prepend_member(b"{ }", "a", &json!(1)).unwrap();
        assert_eq!(out, br#"{"a":1 }"#);
        serde_json::from_slice::<Value>(&out).unwrap();
    }

    #[test]
    fn refuses_non_objects() {
        assert!(prepend_member(b"[1]", "a", &json!(1)).is_none());
        assert!(prepend_member(b"", "a", &json!(1)).is_none());
    }

    #[test]
    fn prepends_several_in_order() {
        let out = prepend_members(b"{\"x\":0}", &[("a", json!(1)), ("b", json!(2))]).unwrap();
        assert_eq!(out, br#"{"a":1,"b":2,"x":0}"#);
    }

    // Moved with `mnemom-adapter-gemini`'s `json` module (names adapted: `string_text` is
    // `string`, `compact_json` is `compact`, `prepend_members` / `prepend_element` are the
    // `prepend_raw_*` functions, `object_text` is `object`).

    #[test]
    fn string_literals_round_trip() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f}\u{7f}",
            "café ✓ 🦀",
        ] {
            let text = string(s);
            assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s, "{text}");
        }
        assert_eq!(string("a\u{1}"), r#""a\u0001""#);
        // Byte for byte what serde_json writes, for every ASCII character alone and between
        // runs of multi-byte text.
        for c in (0u8..0x80).map(char::from) {
            for s in [c.to_string(), format!("é{c}✓{c}{c}🦀")] {
                assert_eq!(string(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
            }
        }
    }

    #[test]
    fn compacts_json_outside_strings_only() {
        assert_eq!(
            compact("{\n  \"b\": [1, 2.50],\n  \"a\": \"x y \\\" z\"\n}"),
            r#"{"b":[1,2.50],"a":"x y \" z"}"#
        );
        assert_eq!(compact(r#""\\" "#), r#""\\""#);
    }

    #[test]
    fn prepends_into_objects_and_arrays() {
        let members = [("a", "1".to_owned()), ("b", "[true]".to_owned())];
        assert_eq!(
            prepend_raw_members(b" {\"x\": 0}", &members).unwrap(),
            br#" {"a":1,"b":[true],"x": 0}"#
        );
        assert_eq!(
            prepend_raw_members(b"{ }", &members[..1]).unwrap(),
            br#"{"a":1 }"#
        );
        assert_eq!(prepend_raw_members(b"[]", &members), None);
        assert_eq!(prepend_raw_element(b"[1]", "0").unwrap(), b"[0,1]");
        assert_eq!(prepend_raw_element(b"[\n]", "0").unwrap(), b"[0\n]");
        assert_eq!(prepend_raw_element(b"{}", "0"), None);
        assert_eq!(object(&members), r#"{"a":1,"b":[true]}"#);
    }

    // Moved with `mnemom-adapter-openai`'s `splice` module (`json_string` is `string`).

    fn keys_and_values(doc: &[u8]) -> Vec<(String, &str)> {
        let span = root(doc).unwrap();
        members(doc, span)
            .unwrap()
            .into_iter()
            .map(|m| {
                let value = std::str::from_utf8(&doc[m.value]).unwrap();
                (m.key.into_owned(), value)
            })
            .collect()
    }

    #[test]
    fn json_strings_match_serde_json() {
        let samples = [
            "",
            "plain",
            "quote \" and \\ backslash",
            "lines\nand\ttabs\r\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f} control",
            "caf\u{e9} \u{1F600} / </script>",
        ];
        for s in samples {
            assert_eq!(string(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn lists_members_with_raw_value_ranges() {
        let doc =
            br#" { "a" : 1.50 , "b":{"x":[1,"]}"]},"c\u0022":"q\"}" ,"d":null,"e":[ ],"f":-2e3}  "#;
        assert_eq!(
            keys_and_values(doc),
            vec![
                ("a".into(), "1.50"),
                ("b".into(), r#"{"x":[1,"]}"]}"#),
                ("c\"".into(), r#""q\"}""#),
                ("d".into(), "null"),
                ("e".into(), "[ ]"),
                ("f".into(), "-2e3"),
            ]
        );
    }

    #[test]
    fn nested_objects_are_scanned_in_place() {
        let doc = br#"{"model":"o3","reasoning":{ "effort" : "low" }}"#;
        let top = members(doc, root(doc).unwrap()).unwrap();
        let reasoning = find(&top, "reasoning").unwrap();
        let inner = members(doc, reasoning).unwrap();
        assert_eq!(inner.len(), 1);
        assert_eq!(&doc[inner[0].value.clone()], br#""low""#);
    }

    #[test]
    fn empty_object_and_non_objects() {
        assert_eq!(members(b" {\n} ", 0..5), Some(vec![]));
        assert_eq!(members(b"[1]", 0..3), None);
        assert_eq!(members(b"\"{}\"", 0..4), None);
        assert_eq!(members(b"", 0..0), None);
    }

    #[test]
    fn malformed_documents_answer_none() {
        for bad in [
            &b"{"[..],
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":[1,2}",
            b"{\"a\":1]}",
            b"{a:1}",
        ] {
            let got = root(bad).and_then(|r| members(bad, r));
            assert_eq!(got, None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(root(b"{} {}"), None);
        assert_eq!(root(b"  "), None);
    }

    #[test]
    fn prepends_entries_with_or_without_a_comma() {
        let doc = br#"{"m":[ ],"n":[1],"o":{}}"#;
        let top = members(doc, root(doc).unwrap()).unwrap();
        let edits = vec![
            Edit::prepend_entry(doc, &find(&top, "m").unwrap(), "0".into()).unwrap(),
            Edit::prepend_entry(doc, &find(&top, "n").unwrap(), "0".into()).unwrap(),
            Edit::prepend_entry(doc, &find(&top, "o").unwrap(), r#""k":true"#.into()).unwrap(),
        ];
        assert_eq!(
            apply(doc, edits).unwrap(),
            br#"{"m":[0 ],"n":[0,1],"o":{"k":true}}"#
        );
        assert_eq!(Edit::prepend_entry(doc, &(1..4), "0".into()), None);
    }

    #[test]
    fn replaces_values_and_rejects_overlaps() {
        let doc = br#"{"a":null,"b":"x"}"#;
        let top = members(doc, root(doc).unwrap()).unwrap();
        let a = find(&top, "a").unwrap();
        assert!(is_null(doc, &a));
        assert_eq!(first_byte(doc, &find(&top, "b").unwrap()), Some(b'"'));
        let out = apply(doc, vec![Edit::replace(a.clone(), "\"y\"".into())]).unwrap();
        assert_eq!(out, br#"{"a":"y","b":"x"}"#);
        let overlapping = vec![
            Edit::replace(a.clone(), "1".into()),
            Edit::replace(a.start + 1..a.end, "2".into()),
        ];
        assert_eq!(apply(doc, overlapping), None);
        assert_eq!(apply(doc, vec![Edit::replace(90..91, "1".into())]), None);
    }

    // New tests of the SDK's own.

    const SAMPLES: &[&str] = &[
        "",
        "plain",
        "quote \" and \\ backslash / slash",
        "lines\nand\ttabs\r\u{8}\u{c}",
        "\u{0}\u{1}\u{1f}\u{7f} control",
        "caf\u{e9} \u{1F600} ✓ </script>",
    ];

    #[test]
    fn push_string_appends_a_literal() {
        let mut out = String::from("x");
        push_string(&mut out, "\"\u{8}");
        assert_eq!(out, r#"x"\"\b""#);
    }

    #[test]
    fn strings_round_trip_through_unescape() {
        for s in SAMPLES {
            assert_eq!(unescape(string(s).as_bytes()).as_deref(), Some(*s), "{s:?}");
        }
        assert!(matches!(unescape(br#""abc""#), Some(Cow::Borrowed("abc"))));
        assert!(matches!(unescape(br#""a\nb""#), Some(Cow::Owned(_))));
    }

    #[test]
    fn unescape_decodes_every_escape_like_serde_json() {
        for literal in [
            r#""\"\\\/\b\f\n\r\t""#,
            r#""\u00e9\u00E9 \u0041""#,
            r#""\ud83d\ude00 smile""#,
            r#""\u2028""#,
        ] {
            let want: String = serde_json::from_str(literal).unwrap();
            assert_eq!(unescape(literal.as_bytes()).as_deref(), Some(want.as_str()));
        }
    }

    #[test]
    fn unescape_refuses_what_serde_json_refuses() {
        for bad in [
            &b""[..],
            b"\"",
            b"abc",
            b"\"abc",
            b"\"a\"b\"",
            b"\"a\\\"b\"c\"",
            b"\"tab\there\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"\"\\ud83d\"",
            b"\"\\ud83dx\"",
            b"\"\\ud83d\\u0041\"",
            b"\"\\ude00\"",
            b"\"\\\"",
            b"\"\xff\"",
        ] {
            assert_eq!(unescape(bad), None, "{}", String::from_utf8_lossy(bad));
            assert!(serde_json::from_slice::<String>(bad).is_err());
        }
    }

    #[test]
    fn object_text_and_object_check() {
        assert_eq!(object(&[("b\"", "[true]".to_owned())]), r#"{"b\"":[true]}"#);
        assert_eq!(object(&[]), "{}");
        assert!(starts_object(b" \n{}"));
        assert!(!starts_object(b"[{}]"));
        assert!(!starts_object(b"  "));
        assert_eq!(prepend_raw_element(b"", "0"), None);
        assert_eq!(prepend_raw_element(b" [ ] ", "0").unwrap(), b" [0 ] ");
    }

    #[test]
    fn keys_with_escapes_are_decoded() {
        assert_eq!(
            root(b"{\"\\x\":1}").and_then(|r| members(b"{\"\\x\":1}", r)),
            None
        );
        let doc = br#"{"\u0061":1,"b\/c":2}"#;
        let keys: Vec<String> = members(doc, root(doc).unwrap())
            .unwrap()
            .into_iter()
            .map(|m| m.key.into_owned())
            .collect();
        assert_eq!(keys, ["a", "b/c"]);
    }

    #[test]
    fn member_spans_take_the_last_duplicate() {
        let body = br#" { "a" : {"system": "x}"} , "b\"" :[1,"]",{"c":2}],"system" : [ ] , "n":-1.5e3,"t":true}"#;
        let text = std::str::from_utf8(body).unwrap();
        let span = |key: &str| member_span(body, key).map(|r| &text[r]);
        assert_eq!(span("a"), Some(r#"{"system": "x}"}"#));
        assert_eq!(span("b\""), Some(r#"[1,"]",{"c":2}]"#));
        assert_eq!(span("system"), Some("[ ]"));
        assert_eq!(span("n"), Some("-1.5e3"));
        assert_eq!(span("c"), None);
        assert_eq!(member_span(b"{}", "a"), None);
        assert_eq!(member_span(b"[1]", "a"), None);
        assert_eq!(member_span(br#"{"a":1,"a":2}"#, "a"), Some(11..12));
        let top = members(br#"{"a":1,"a":2}"#, 0..13).unwrap();
        assert_eq!(find(&top, "a"), Some(5..6));
    }

    #[test]
    fn edits_apply_in_document_order() {
        let doc = br#"{"a":null,"b":"x"}"#;
        let top = members(doc, root(doc).unwrap()).unwrap();
        let (a, b) = (find(&top, "a").unwrap(), find(&top, "b").unwrap());
        let out = apply(
            doc,
            vec![Edit::replace(b, "2".into()), Edit::replace(a, "1".into())],
        )
        .unwrap();
        assert_eq!(out, br#"{"a":1,"b":2}"#);
        let insert = Edit {
            range: 1..1,
            bytes: b"\"z\":0,".to_vec(),
        };
        assert_eq!(
            apply(doc, vec![insert]).unwrap(),
            br#"{"z":0,"a":null,"b":"x"}"#
        );
    }
}
