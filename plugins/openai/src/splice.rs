//! Byte-level edits inside a JSON document: locating the members of an object by byte range
//! and splicing replacements or insertions at those ranges, so that everything the caller sent
//! outside the edited spots (key order, number formatting, whitespace, escapes) reaches the
//! provider byte for byte. Serde has already validated the document; this module only walks its
//! structure and never panics on malformed input (it answers `None`).

use std::borrow::Cow;
use std::ops::Range;

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
        let key = decode_key(doc.get(i..key_end)?)?;
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

/// The value range of `key` among `members`, when present.
pub fn find(members: &[Member<'_>], key: &str) -> Option<Range<usize>> {
    members
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value.clone())
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
    // A handful of edits at most: an insertion sort keeps the component small.
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

/// `text` as a JSON string literal (quotes included), escaped the way serde_json escapes it:
/// `"`, `\\` and control characters; everything else, non-ASCII included, as is.
pub fn json_string(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let byte = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[byte >> 4]));
                out.push(char::from(HEX[byte & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

fn decode_key(raw: &[u8]) -> Option<Cow<'_, str>> {
    if raw.contains(&b'\\') {
        serde_json::from_slice::<crate::de::Text<'_>>(raw)
            .ok()
            .and_then(|t| t.owned())
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(raw.get(1..raw.len().checked_sub(1)?)?)
            .ok()
            .map(Cow::Borrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(json_string(s), serde_json::to_string(s).unwrap(), "{s:?}");
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
}
