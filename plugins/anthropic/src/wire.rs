//! Lenient readers for Anthropic wire JSON, shared by the request, response and stream modules.
//!
//! Why lenient: a member of an unexpected type (a `null` where a number was documented, a
//! shape an Anthropic-compatible provider adds) must not fail the whole call; each reader
//! decides what an unexpected value means (usually "unknown: be conservative"). Only JSON
//! syntax errors fail.
//!
//! Why hand-written visitors instead of `#[derive(Deserialize)]`: every derived struct
//! instantiates serde_json's typed paths, whose error messages pull in float formatting; with
//! `deserialize_any` visitors the component is tens of KB smaller (no float formatting at all).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::mnemom::gateway::types::Usage;

/// One JSON value, read without failing on its type. Strings are borrowed from the input when
/// they contain no escapes; arrays are skipped; of an object only its `type` member is kept
/// (which is all the adapter ever needs to know of one: content blocks, `tool_choice`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    /// The member is not in the object (the value every reader starts with).
    #[default]
    Absent,
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// A number with a fraction or exponent.
    F64(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// An array (contents skipped).
    Array,
    /// An object; `kind` is its `type` member when that is a string.
    Object { kind: Option<Cow<'a, str>> },
}

impl<'a> Val<'a> {
    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64`, when this is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Val::U64(n) => Some(n as f64),
            Val::I64(n) => Some(n as f64),
            Val::F64(n) => Some(n),
            _ => None,
        }
    }

    /// The value as a non-negative integer, when it is one.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match *self {
            Val::U64(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the member is absent or `null`, which Anthropic treats alike for optional fields.
    pub(crate) fn is_unset(&self) -> bool {
        matches!(self, Val::Absent | Val::Null)
    }

    /// The `type` of an object value.
    pub(crate) fn kind(&self) -> Option<&str> {
        match self {
            Val::Object { kind } => kind.as_deref(),
            _ => None,
        }
    }

    /// Takes the string out.
    pub(crate) fn into_cow(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Takes the string out, owned.
    pub(crate) fn into_string(self) -> Option<String> {
        self.into_cow().map(Cow::into_owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValVisitor(PhantomData))
    }
}

struct ValVisitor<'a>(PhantomData<Val<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for ValVisitor<'a> {
    type Value = Val<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Val::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Val::I64(v), Val::U64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Val::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Val::F64(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Val::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Val::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Val::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == "type" && kind.is_none() {
                kind = map.next_value::<Val<'a>>()?.into_cow();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Val::Object { kind })
    }
}

/// An object key, borrowed from the input unless it contains escapes.
pub(crate) struct Key<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<Key<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_any(KeyVisitor(PhantomData))
    }
}

/// A type read from JSON without ever failing on the shape: an object member by member
/// ([`Lenient::member`]), an array element by element ([`Lenient::array`]), and any other
/// value as `Self::default()`. Implementors delegate `Deserialize` to [`lenient`].
pub(crate) trait Lenient<'de>: Default {
    /// Reads the value of the member `key` of an object; the default skips it.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let _ = key;
        skip(map)
    }

    /// Reads an array; the default skips it and gives `Self::default()`.
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
}

/// Deserializes a [`Lenient`] type.
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Lenient<'de>,
{
    deserializer.deserialize_any(LenientVisitor(PhantomData))
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Lenient<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut value = T::default();
        while let Some(Key(key)) = map.next_key()? {
            value.member(&key, &mut map)?;
        }
        Ok(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::array(seq)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        lenient(deserializer)
    }
}

/// Implements `Deserialize` for [`Lenient`] types.
macro_rules! deserialize_leniently {
    ($($ty:ident$(<$lt:lifetime>)?),* $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $ty$(<$lt>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::wire::lenient(d)
            }
        }
    )*};
}
pub(crate) use deserialize_leniently;

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

/// Reads the value of the current member as [`Val`] (a helper for [`Lenient::member`]).
pub(crate) fn val<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Val<'de>, A::Error> {
    map.next_value()
}

/// Skips the value of the current member (a helper for [`Lenient::member`]).
pub(crate) fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
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
        push_json_string(self.0, v);
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
            push_json_string(self.0, &key);
            self.0.push(':');
            map.next_value_seed(Writer(&mut *self.0))?;
        }
        self.0.push('}');
        Ok(())
    }
}

/// Appends `s` as a JSON string literal, escaped the way serde_json escapes.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
