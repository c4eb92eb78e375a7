//! JSON text building and compaction without `serde_json::Value`: the adapter only ever adds
//! small members to the caller's bytes, and building that text directly keeps `Value`
//! serialization (and its float formatting) out of the component.

/// A member to add: its key and its value as JSON text.
pub type Member = (&'static str, String);

/// Inserts `members` in order at the front of the JSON object `object`, keeping its bytes.
/// (The SDK's `json::prepend_member` does the same from a `serde_json::Value`.)
pub fn prepend_members(object: &[u8], members: &[Member]) -> Option<Vec<u8>> {
    let text = members_text(members);
    prepend_text(object, b'{', b'}', &text)
}

/// Inserts `element` (JSON text) as the first element of the JSON array `array`.
pub fn prepend_element(array: &[u8], element: &str) -> Option<Vec<u8>> {
    prepend_text(array, b'[', b']', element)
}

fn prepend_text(container: &[u8], open: u8, close: u8, text: &str) -> Option<Vec<u8>> {
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

/// `"k1":v1,"k2":v2`.
fn members_text(members: &[Member]) -> String {
    let mut text = String::new();
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&string_text(key));
        text.push(':');
        text.push_str(value);
    }
    text
}

/// `{"k1":v1,"k2":v2}`, members in the given order.
pub fn object_text(members: &[Member]) -> String {
    format!("{{{}}}", members_text(members))
}

/// `s` as a JSON string literal.
pub fn string_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let code = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[code >> 4]));
                out.push(char::from(HEX[code & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Removes the insignificant whitespace of valid JSON text, keeping key order and number
/// spelling exactly as the provider sent them (re-serializing through `Value` would sort keys).
pub fn compact_json(json: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let text = string_text(s);
            assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s, "{text}");
        }
        assert_eq!(string_text("a\u{1}"), r#""a\u0001""#);
    }

    #[test]
    fn compacts_json_outside_strings_only() {
        assert_eq!(
            compact_json("{\n  \"b\": [1, 2.50],\n  \"a\": \"x y \\\" z\"\n}"),
            r#"{"b":[1,2.50],"a":"x y \" z"}"#
        );
        assert_eq!(compact_json(r#""\\" "#), r#""\\""#);
    }

    #[test]
    fn prepends_into_objects_and_arrays() {
        let members = [("a", "1".to_owned()), ("b", "[true]".to_owned())];
        assert_eq!(
            prepend_members(b" {\"x\": 0}", &members).unwrap(),
            br#" {"a":1,"b":[true],"x": 0}"#
        );
        assert_eq!(
            prepend_members(b"{ }", &members[..1]).unwrap(),
            br#"{"a":1 }"#
        );
        assert_eq!(prepend_members(b"[]", &members), None);
        assert_eq!(prepend_element(b"[1]", "0").unwrap(), b"[0,1]");
        assert_eq!(prepend_element(b"[\n]", "0").unwrap(), b"[0\n]");
        assert_eq!(prepend_element(b"{}", "0"), None);
        assert_eq!(object_text(&members), r#"{"a":1,"b":[true]}"#);
    }
}
