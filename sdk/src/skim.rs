//! Skimming: a copy of a JSON document with its long strings cut out, for readers that need
//! only the document's structure and its short values.
//!
//! A response summary reads usage, model, stop reason and the kinds of the content blocks, and
//! steps over kilobytes of thinking, signatures and text. Stepping over a string with serde
//! still visits every byte of it (a few instructions per byte in a component); finding its
//! closing quote with `memchr` visits 16 bytes per instruction group where the component is built
//! with the `simd128` target feature (the built-in plugins are), and a word at a time elsewhere.
//! So a summary first [`skim`]s the body, then reads the much shorter copy with its usual
//! serde reader.
//!
//! What a skimmed copy keeps: every byte outside strings, and every string of at most
//! [`KEEP_BYTES`] bytes between its quotes, as written. Every longer string (keys included)
//! becomes [`ELIDED`]. A reader therefore sees the same structure, numbers, literals and short
//! strings, and one rule makes its answer exact: a value it *returns* that reads as [`ELIDED`]
//! (see [`is_elided`]) was cut, so it reads the original document instead. Comparisons of
//! strings against names no longer than [`KEEP_BYTES`] (`"tool_use"`, `"function_call"`) give
//! the same result on both documents, since a cut string was longer than any such name.
//!
//! The copy is built for valid JSON, which the reader then checks as it always does; a string
//! that is cut is not checked (a control character inside it goes unnoticed), and a document
//! with an unterminated string is not skimmed at all.

/// Strings longer than this many bytes between their quotes (as written, escapes included) are
/// cut from a skimmed copy. Longer than any model name, stop reason or type name a reader
/// returns or compares.
pub const KEEP_BYTES: usize = 128;

/// What a cut string reads as in the skimmed copy: a single NUL character (written `"\u0000"`),
/// which no provider sends as a model, a stop reason or a type.
pub const ELIDED: &str = "\u{0}";

/// The JSON text a cut string is replaced by.
const ELIDED_JSON: &[u8] = b"\"\\u0000\"";

/// A copy of `doc` with every string longer than [`KEEP_BYTES`] replaced by [`ELIDED`], or
/// `None` when there is nothing to cut (read `doc` itself) or `doc` has an unterminated string
/// (read `doc`, whose reader reports the error).
pub fn skim(doc: &[u8]) -> Option<Vec<u8>> {
    let mut copy: Option<Vec<u8>> = None;
    // `doc[copied..]` is not in the copy yet.
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'"', doc.get(at..)?) {
        let open = at + offset;
        let close = closing_quote(doc, open + 1)?;
        if close - open - 1 > KEEP_BYTES {
            let out = copy.get_or_insert_with(|| Vec::with_capacity(doc.len().min(4096)));
            out.extend_from_slice(doc.get(copied..open)?);
            out.extend_from_slice(ELIDED_JSON);
            copied = close + 1;
        }
        at = close + 1;
    }
    let mut out = copy?;
    out.extend_from_slice(doc.get(copied..)?);
    Some(out)
}

/// The index of the quote that closes the string whose content starts at `start`: the first
/// `"` not escaped by an odd run of backslashes before it. `None` when the string never ends.
fn closing_quote(doc: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    loop {
        let quote = at + memchr::memchr(b'"', doc.get(at..)?)?;
        let backslashes = doc
            .get(start..quote)?
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        at = quote + 1;
    }
}

/// Whether a value read from a skimmed copy is a cut string (the caller then reads the
/// original document).
pub fn is_elided(value: Option<&str>) -> bool {
    value == Some(ELIDED)
}

/// Reads `doc` with `read` on its skimmed copy when one is made, falling back to `doc` itself
/// when the copy's answer fails `exact` (it returned a cut string) or the copy does not read
/// (so errors, and their positions, are always the original document's).
pub fn read_skimmed<T, E>(
    doc: &[u8],
    read: impl Fn(&[u8]) -> Result<T, E>,
    exact: impl Fn(&T) -> bool,
) -> Result<T, E> {
    if let Some(copy) = skim(doc)
        && let Ok(answer) = read(&copy)
        && exact(&answer)
    {
        return Ok(answer);
    }
    read(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(n: usize) -> String {
        "x".repeat(n)
    }

    #[test]
    fn short_documents_are_not_copied() {
        assert_eq!(skim(br#"{"model":"m","usage":{"a":1}}"#), None);
        assert_eq!(skim(b""), None);
        assert_eq!(skim(b"[1,2,3]"), None);
        let edge = format!(r#"{{"text":"{}"}}"#, long(KEEP_BYTES));
        assert_eq!(skim(edge.as_bytes()), None);
    }

    #[test]
    fn long_strings_become_the_marker_and_everything_else_stays() {
        let doc = format!(
            r#"{{"model":"claude","content":[{{"type":"thinking","thinking":"{}","signature":"{}"}},{{"type":"text","text":"{}"}}],"usage":{{"input_tokens":12}}}}"#,
            long(KEEP_BYTES + 1),
            long(800),
            long(3000)
        );
        let copy = skim(doc.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(&copy).unwrap(),
            r#"{"model":"claude","content":[{"type":"thinking","thinking":"\u0000","signature":"\u0000"},{"type":"text","text":"\u0000"}],"usage":{"input_tokens":12}}"#
        );
        let value: serde_json::Value = serde_json::from_slice(&copy).unwrap();
        assert_eq!(value["content"][0]["thinking"].as_str(), Some(ELIDED));
        assert!(is_elided(value["content"][1]["text"].as_str()));
        assert!(!is_elided(value["model"].as_str()));
    }

    #[test]
    fn escaped_quotes_and_backslash_runs_end_strings_where_json_does() {
        let tail = long(KEEP_BYTES);
        // An escaped quote inside, then a string that ends in an escaped backslash.
        let doc = format!(
            r#"{{"a":"{tail}\"{tail}","b":"{tail}\\","c":"short \" \\\" x","d":"{tail}\\\\\"q"}}"#
        );
        let copy = skim(doc.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(&copy).unwrap(),
            r#"{"a":"\u0000","b":"\u0000","c":"short \" \\\" x","d":"\u0000"}"#
        );
        // The copy reads as the original with the long values cut.
        let original: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let skimmed: serde_json::Value = serde_json::from_slice(&copy).unwrap();
        assert_eq!(original["c"], skimmed["c"]);
        assert_eq!(skimmed["d"].as_str(), Some(ELIDED));
    }

    #[test]
    fn long_keys_are_cut_too() {
        let doc = format!(r#"{{"{}":1,"k":2}}"#, long(200));
        let copy = skim(doc.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&copy).unwrap(), r#"{"\u0000":1,"k":2}"#);
    }

    #[test]
    fn unterminated_strings_are_left_to_the_reader() {
        let doc = format!(r#"{{"a":"{}"#, long(300));
        assert_eq!(skim(doc.as_bytes()), None);
        let doc = format!(r#"{{"a":"{}\"#, long(300));
        assert_eq!(skim(doc.as_bytes()), None);
        assert_eq!(skim(b"\""), None);
    }

    #[test]
    fn multibyte_text_is_cut_whole() {
        let doc = format!(r#"["{}","é"]"#, "é".repeat(100));
        let copy = skim(doc.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&copy).unwrap(), r#"["\u0000","é"]"#);
    }

    #[test]
    fn read_skimmed_falls_back_when_a_returned_value_was_cut_or_the_copy_fails() {
        let model = |doc: &[u8]| -> Result<Option<String>, String> {
            let v: serde_json::Value = serde_json::from_slice(doc).map_err(|e| e.to_string())?;
            Ok(v["model"].as_str().map(str::to_owned))
        };
        let exact = |m: &Option<String>| !is_elided(m.as_deref());
        let long_model = long(300);
        let doc = format!(r#"{{"model":"{long_model}","text":"{}"}}"#, long(500));
        assert_eq!(
            read_skimmed(doc.as_bytes(), model, exact).unwrap(),
            Some(long_model)
        );
        let doc = format!(r#"{{"model":"m","text":"{}"}}"#, long(500));
        assert_eq!(
            read_skimmed(doc.as_bytes(), model, exact).unwrap(),
            Some("m".to_owned())
        );
        // Invalid after a long string: the error is the original document's.
        let doc = format!(r#"{{"text":"{}",}}"#, long(500));
        let skimmed_error = model(&skim(doc.as_bytes()).unwrap()).unwrap_err();
        let error = read_skimmed(doc.as_bytes(), model, exact).unwrap_err();
        assert_ne!(error, skimmed_error);
        assert_eq!(error, model(doc.as_bytes()).unwrap_err());
    }
}
