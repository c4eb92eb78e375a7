//! Anthropic wire JSON, read leniently: the types the request, response and stream modules
//! share, built on the SDK's lenient readers ([`mnemom_plugin_sdk::lenient`]: [`Val`],
//! [`Lenient`], [`deserialize_leniently!`]).
//!
//! Why lenient: a member of an unexpected type (a `null` where a number was documented, a
//! shape an Anthropic-compatible provider adds) must not fail the whole call; each reader
//! decides what an unexpected value means (usually "unknown: be conservative"). Only JSON
//! syntax errors fail.

use std::fmt;

use mnemom_plugin_sdk::json::push_string;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub(crate) use mnemom_plugin_sdk::deserialize_leniently;
pub(crate) use mnemom_plugin_sdk::lenient::{Key, Lenient, Val, lenient, skip, val};
// The tests of this module name `Cow` (the strings `Val` borrows).
#[cfg(test)]
use std::borrow::Cow;

use crate::mnemom::gateway::types::Usage;

/// The elements of an array, each read leniently; anything else reads as no elements.
#[derive(Debug)]
pub(crate) struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for List<T> {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Self(items))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// Every member that the response and stream readers use of a content block, a
/// `content_block_start.content_block`, a `content_block_delta.delta`, a `message_delta.delta`,
/// a `message_start.message` or an `error.error`. One type for all of them keeps the component
/// small (each lenient type costs a few KB of wasm).
#[derive(Debug, Default)]
pub(crate) struct Node<'a> {
    pub kind: Val<'a>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub text: Option<String>,
    pub thinking: Option<String>,
    pub partial_json: Option<String>,
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    pub message: Option<String>,
    pub usage: WireUsage,
    pub input: Option<JsonText>,
}

impl<'de> Lenient<'de> for Node<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = val(map)?,
            "id" => self.id = val(map)?.into_string(),
            "name" => self.name = val(map)?.into_string(),
            "text" => self.text = val(map)?.into_string(),
            "thinking" => self.thinking = val(map)?.into_string(),
            "partial_json" => self.partial_json = val(map)?.into_string(),
            "model" => self.model = val(map)?.into_string(),
            "stop_reason" => self.stop_reason = val(map)?.into_string(),
            "message" => self.message = val(map)?.into_string(),
            "usage" => self.usage = map.next_value()?,
            "input" => self.input = Some(map.next_value()?),
            _ => skip(map)?,
        }
        Ok(())
    }
}

deserialize_leniently!(Node<'de>, WireUsage);

/// The JSON text of a value, re-written compactly while it is read: members stay in the
/// provider's order and strings keep their content (a `serde_json::Value` round trip would
/// sort the keys).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct JsonText(pub String);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = String::new();
        Writer(&mut out).deserialize(deserializer)?;
        Ok(JsonText(out))
    }
}

/// Writes the value it visits as compact JSON text.
struct Writer<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_str(&serde_json::Number::from(v).to_string());
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push_str(&serde_json::Number::from(v).to_string());
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.0.push_str(&n.to_string()),
            None => self.0.push_str("null"),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        push_string(self.0, v);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.push_str("null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push('[');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(',');
            }
            if seq.next_element_seed(Writer(&mut *self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push('{');
        let mut first = true;
        while let Some(Key(key)) = map.next_key()? {
            if !first {
                self.0.push(',');
            }
            first = false;
            push_string(self.0, &key);
            self.0.push(':');
            map.next_value_seed(Writer(&mut *self.0))?;
        }
        self.0.push('}');
        Ok(())
    }
}

/// The `usage` object of a message (`message_start`, `message_delta` or a complete response).
#[derive(Debug, Default)]
pub(crate) struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    /// `output_tokens_details.thinking_tokens`, which newer models report.
    pub thinking_tokens: Option<u64>,
}

impl<'de> Lenient<'de> for WireUsage {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "input_tokens" => self.input_tokens = val(map)?.as_u64(),
            "output_tokens" => self.output_tokens = val(map)?.as_u64(),
            "cache_read_input_tokens" => self.cache_read_input_tokens = val(map)?.as_u64(),
            // `{"thinking_tokens": n}`, read with this same type to keep the component small.
            "output_tokens_details" => {
                self.thinking_tokens = map.next_value::<WireUsage>()?.thinking_tokens;
            }
            "thinking_tokens" => self.thinking_tokens = val(map)?.as_u64(),
            _ => skip(map)?,
        }
        Ok(())
    }
}

impl WireUsage {
    /// Converts to the WIT record; `None` when no figure is reported at all.
    pub(crate) fn into_usage(self) -> Option<Usage> {
        let empty = self.input_tokens.is_none()
            && self.output_tokens.is_none()
            && self.thinking_tokens.is_none()
            && self.cache_read_input_tokens.is_none();
        (!empty).then_some(Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            reasoning_tokens: self.thinking_tokens,
            cached_input_tokens: self.cache_read_input_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_value_without_failing() {
        let v: Vec<Val<'_>> = serde_json::from_str(
            r#"[null, true, 1, -2, 1.5, "a", "b\n", [1], {"x":{"type":1},"type":"auto"}]"#,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                Val::Null,
                Val::Bool(true),
                Val::U64(1),
                Val::I64(-2),
                Val::F64(1.5),
                Val::Str("a".into()),
                Val::Str("b\n".into()),
                Val::Array,
                Val::Object {
                    kind: Some("auto".into())
                },
            ]
        );
        assert!(matches!(&v[5], Val::Str(Cow::Borrowed(_))));
    }

    #[test]
    fn object_type_must_be_a_string() {
        let v: Val<'_> = serde_json::from_str(r#"{"type":{"type":"x"}}"#).unwrap();
        assert_eq!(v, Val::Object { kind: None });
    }

    #[derive(Debug, Default)]
    struct Pair {
        a: Option<u64>,
        b: Option<String>,
    }

    impl<'de> Lenient<'de> for Pair {
        fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            match key {
                "a" => self.a = val(map)?.as_u64(),
                "b" => self.b = val(map)?.into_string(),
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    deserialize_leniently!(Pair);

    #[test]
    fn lenient_types_read_any_shape() {
        let v: List<Pair> = serde_json::from_str(
            r#"[{"a":1,"b":"x","c":[{}]}, {"a":"1","b":2}, 3, null, "s", [1], {"b\u0020":1}]"#,
        )
        .unwrap();
        let got: Vec<_> = v.0.iter().map(|p| (p.a, p.b.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Some(1), Some("x")),
                (None, None),
                (None, None),
                (None, None),
                (None, None),
                (None, None),
                (None, None)
            ]
        );
        let v: List<Pair> = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert!(v.0.is_empty());
        assert!(serde_json::from_str::<List<Pair>>("[{").is_err());
    }

    #[test]
    fn json_text_is_compact_and_keeps_order() {
        let v: JsonText = serde_json::from_str(
            "{\n  \"z\": [1, -2, 1.5, 1e3, true, null],\t\"a b\": \"x \\\" y\\\\ \\u0001\\n\", \"d\" : {} , \"e\": []}",
        )
        .unwrap();
        assert_eq!(
            v.0,
            r#"{"z":[1,-2,1.5,1000.0,true,null],"a b":"x \" y\\ \u0001\n","d":{},"e":[]}"#
        );
        // Re-read, it is the same value.
        let again: serde_json::Value = serde_json::from_str(&v.0).unwrap();
        assert_eq!(again["a b"], "x \" y\\ \u{1}\n");
    }
}
