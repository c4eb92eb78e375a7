//! Lenient leaf decoders for provider JSON. OpenAI-compatible providers disagree on the odd
//! leaf (`null` where OpenAI sends a string, a float token count, a numeric error code); one odd
//! leaf must not make a whole body unreadable, so these types turn an unexpected JSON type into
//! "absent" instead of failing the document. Each leaf is read as the SDK's lenient [`Val`].
//!
//! Objects are read with [`lenient_struct!`] rather than `#[derive(Deserialize)]`: the SDK's
//! one generic map visitor ([`mnemom_plugin_sdk::lenient::Lenient`]) and a `match` on keys, with
//! every field decoded by the shared leaf types below. Derived visitors carry per-field state, a
//! positional (array) form and type-error paths that pull float formatting in; dropping them
//! cut the component by about a third.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use mnemom_plugin_sdk::lenient::Val;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Visitor methods that answer `$value` for every JSON type a visitor does not read itself
/// (arrays and objects are drained).
macro_rules! answer_other_types {
    ($value:expr; $($method:ident),*) => {
        $(answer_other_types!(@one $method, $value);)*
    };
    (@one visit_bool, $value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_u64, $value:expr) => {
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_i64, $value:expr) => {
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_f64, $value:expr) => {
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_str, $value:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_unit, $value:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_none, $value:expr) => {
        fn visit_none<E>(self) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one visit_some, $value:expr) => {
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
    (@one visit_seq, $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
    (@one visit_map, $value:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}
pub(crate) use answer_other_types;

/// A JSON string, borrowed from the input when it has no escapes; any other type is `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(Val::deserialize(d)?.into_cow()))
    }
}

impl Text<'_> {
    /// The string, when present.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The string as an owned `String`, when present.
    pub fn owned(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }

    /// The string as an owned `String`, when present and not empty.
    pub fn non_empty(self) -> Option<String> {
        self.owned().filter(|s| !s.is_empty())
    }
}

/// A label that providers send either as a string or as an integer (error codes); other types
/// are `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Label(pub Option<String>);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match Val::deserialize(d)? {
            Val::Str(s) => Some(s.into_owned()),
            Val::I64(n) => Some(n.to_string()),
            other => other.as_count().map(|n| n.to_string()),
        }))
    }
}

/// `true` only for a JSON `true`; anything else (absent, `null`, `"true"`) is `false`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(matches!(Val::deserialize(d)?, Val::Bool(true))))
    }
}

/// A non-negative whole number (a token count or an index; some compatible servers send counts
/// as `12.0`); other values are `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(Val::deserialize(d)?.as_count()))
    }
}

impl Count {
    /// The value as a block index; absent or out-of-range values are `None`.
    pub fn index(self) -> Option<u32> {
        self.0.and_then(|n| u32::try_from(n).ok())
    }
}

/// A JSON array of `T`; `null` or any non-array value is `None`. The elements themselves are
/// decoded strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Option<Vec<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> List<T> {
    /// The elements; an absent list is empty.
    pub fn items(self) -> Vec<T> {
        self.0.unwrap_or_default()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(Some(items)))
            }

            answer_other_types!(List(None); visit_bool, visit_u64, visit_i64, visit_f64,
                visit_str, visit_unit, visit_none, visit_some, visit_map);
        }

        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// Declares a struct of lenient (public) fields read from a JSON object, each with its JSON key
/// (an SDK [`Lenient`](mnemom_plugin_sdk::lenient::Lenient) type: any other JSON type reads as
/// the default, unknown keys are skipped, a repeated key keeps its last value):
///
/// ```text
/// lenient_struct! {
///     /// A part.
///     pub struct Part<'a> {
///         kind: Text<'a> = "type",
///         text: Text<'a> = "text",
///     }
/// }
/// ```
macro_rules! lenient_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name $(<$lt>)? {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl<'de $(: $lt, $lt)?> ::mnemom_plugin_sdk::lenient::Lenient<'de> for $name $(<$lt>)? {
            fn member<A: ::serde::de::MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $( $key => self.$field = map.next_value()?, )*
                    _ => ::mnemom_plugin_sdk::lenient::skip(map)?,
                }
                Ok(())
            }
        }

        impl<'de $(: $lt, $lt)?> ::serde::Deserialize<'de> for $name $(<$lt>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                ::mnemom_plugin_sdk::lenient::lenient(d)
            }
        }
    };
}
pub(crate) use lenient_struct;

#[cfg(test)]
mod tests {
    use super::*;

    lenient_struct! {
        pub struct Probe<'a> {
            t: Text<'a> = "t",
            l: Label = "l",
            f: Flag = "f",
            c: Count = "c",
            v: List<u8> = "v",
        }
    }

    fn probe(json: &str) -> Probe<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn strings_borrow_when_unescaped_and_tolerate_other_types() {
        assert!(matches!(
            probe(r#"{"t":"abc"}"#).t.0,
            Some(Cow::Borrowed("abc"))
        ));
        assert_eq!(probe(r#"{"t":"a\nb"}"#).t.as_str(), Some("a\nb"));
        for odd in ["null", "1", "-1", "1.5", "true", "[1,{}]", r#"{"x":[1]}"#] {
            assert_eq!(probe(&format!(r#"{{"t":{odd}}}"#)).t, Text(None), "{odd}");
        }
        assert_eq!(probe("{}").t, Text(None));
        assert_eq!(probe(r#"{"t":""}"#).t.non_empty(), None);
    }

    #[test]
    fn labels_accept_integers() {
        assert_eq!(probe(r#"{"l":"x"}"#).l.0.as_deref(), Some("x"));
        assert_eq!(probe(r#"{"l":429}"#).l.0.as_deref(), Some("429"));
        assert_eq!(probe(r#"{"l":-1}"#).l.0.as_deref(), Some("-1"));
        assert_eq!(probe(r#"{"l":1.5}"#).l.0, None);
        assert_eq!(probe(r#"{"l":null}"#).l.0, None);
    }

    #[test]
    fn flags_are_true_only_for_true() {
        assert!(probe(r#"{"f":true}"#).f.0);
        for odd in ["false", "null", "\"true\"", "1", "{}"] {
            assert!(!probe(&format!(r#"{{"f":{odd}}}"#)).f.0, "{odd}");
        }
    }

    #[test]
    fn counts_accept_whole_floats_only() {
        assert_eq!(probe(r#"{"c":12}"#).c.0, Some(12));
        assert_eq!(probe(r#"{"c":12.0}"#).c.0, Some(12));
        assert_eq!(probe(r#"{"c":12.5}"#).c.0, None);
        assert_eq!(probe(r#"{"c":-3}"#).c.0, None);
        assert_eq!(probe(r#"{"c":1e30}"#).c.0, None);
        assert_eq!(probe(r#"{"c":"12"}"#).c.0, None);
        assert_eq!(probe(r#"{"c":4294967296}"#).c.index(), None);
        assert_eq!(probe(r#"{"c":7}"#).c.index(), Some(7));
    }

    #[test]
    fn lists_ignore_non_arrays() {
        assert_eq!(probe(r#"{"v":[1,2]}"#).v.items(), vec![1, 2]);
        assert_eq!(probe(r#"{"v":null}"#).v.0, None);
        assert_eq!(probe(r#"{"v":{"a":[1]}}"#).v.0, None);
        assert_eq!(probe(r#"{"v":"x"}"#).v.0, None);
        assert!(serde_json::from_str::<Probe<'_>>(r#"{"v":["x"]}"#).is_err());
    }

    #[test]
    fn objects_skip_unknown_keys_and_tolerate_other_types() {
        let p = probe(r#"{"x":{"deep":[1,{"y":null}]},"t":"a","t":"b","c":3}"#);
        assert_eq!(p.t.as_str(), Some("b"));
        assert_eq!(p.c.0, Some(3));
        let nested: List<Probe<'_>> = serde_json::from_str(r#"[{"f":true},"odd",null,7]"#).unwrap();
        let items = nested.items();
        assert_eq!(items.len(), 4);
        assert!(items[0].f.0);
        assert!(!items[1].f.0 && items[1].t.0.is_none());
    }
}
