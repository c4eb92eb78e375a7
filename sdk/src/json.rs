//! JSON body edits that keep the caller's bytes: adding a top-level member to an object by
//! splicing it in after the opening brace, so that everything the caller sent (key order,
//! number formatting, whitespace) reaches the provider unchanged.

use serde_json::Value;

/// Inserts `"key": value` as the first member of the JSON object in `body`.
///
/// The caller must already have checked that `body` is a JSON object without `key` (a duplicate
/// key would be ambiguous for the provider). Returns `None` when `body` does not start (after
/// whitespace) with `{`.
pub fn prepend_member(body: &[u8], key: &str, value: &Value) -> Option<Vec<u8>> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[open] != b'{' {
        return None;
    }
    let rest = &body[open + 1..];
    let rest_is_empty_object = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let key_json = Value::String(key.to_owned()).to_string();
    let value_json = value.to_string();
    let mut out = Vec::with_capacity(body.len() + key_json.len() + value_json.len() + 2);
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(key_json.as_bytes());
    out.push(b':');
    out.extend_from_slice(value_json.as_bytes());
    if !rest_is_empty_object {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
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
}
