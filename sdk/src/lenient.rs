//! Lenient readers for provider JSON: a member of an unexpected type (a `null` where a number
//! was documented, a shape a compatible provider adds) must not fail the whole call, so these
//! readers turn an unexpected type into "absent" and fail only on JSON syntax errors.
//!
//! - [`Val`]: any JSON value, read without failing on its type (strings borrowed from the input
//!   when they hold no escapes; of an object only its `type` member is kept);
//! - [`Lenient`] and [`lenient`]: a type read from an object member by member (unknown members
//!   skipped), from any other JSON type as its default; [`deserialize_leniently!`] implements
//!   `Deserialize` for such types;
//! - [`Key`], [`val`], [`skip`]: helpers for [`Lenient::member`].
//!
//! Why hand-written visitors instead of `#[derive(Deserialize)]`: every derived struct
//! instantiates serde_json's typed paths, whose error messages pull in float formatting; with
//! `deserialize_any` visitors a component is tens of KB smaller.
//!
//! [`deserialize_leniently!`]: crate::deserialize_leniently

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One JSON value, read without failing on its type. Strings are borrowed from the input when
/// they contain no escapes; arrays are skipped; of an object only its `type` member is kept
/// (which is all an adapter usually needs to know of one: content blocks, `tool_choice`).
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Val<'a> {
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
    Object {
        /// The object's `type` member, when it is a string.
        kind: Option<Cow<'a, str>>,
    },
}

impl<'a> Val<'a> {
    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64`, when this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Val::U64(n) => Some(n as f64),
            Val::I64(n) => Some(n as f64),
            Val::F64(n) => Some(n),
            _ => None,
        }
    }

    /// The value as a non-negative integer, when it is one (`12.0` is not).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Val::U64(n) => Some(n),
            _ => None,
        }
    }

    /// The value as a count: a non-negative integer, or a whole non-negative number written with
    /// a fraction or exponent (some compatible servers send token counts as `12.0`) below 2^64.
    pub fn as_count(&self) -> Option<u64> {
        // 2^64 as f64: anything at or above it does not fit a u64.
        const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;
        match *self {
            Val::U64(n) => Some(n),
            // Exact: the value is whole, non-negative and below 2^64.
            Val::F64(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < U64_LIMIT => {
                Some(v as u64)
            }
            _ => None,
        }
    }

    /// Whether the member is absent or `null`, which providers usually treat alike.
    pub fn is_unset(&self) -> bool {
        matches!(self, Val::Absent | Val::Null)
    }

    /// The `type` of an object value.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Val::Object { kind } => kind.as_deref(),
            _ => None,
        }
    }

    /// Takes the string out.
    pub fn into_cow(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Takes the string out, owned.
    pub fn into_string(self) -> Option<String> {
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
#[derive(Debug)]
pub struct Key<'a>(pub Cow<'a, str>);

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
/// value as `Self::default()`. Implementors delegate `Deserialize` to [`lenient`], usually
/// through [`deserialize_leniently!`](crate::deserialize_leniently). A repeated key is read
/// each time it occurs (for plain fields: the last one wins).
pub trait Lenient<'de>: Default {
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
pub fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
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

/// Implements `serde::Deserialize` for [`Lenient`](crate::lenient::Lenient) types (a type with a
/// lifetime is named with `'de`: `deserialize_leniently!(Event<'de>, Usage)`).
#[macro_export]
macro_rules! deserialize_leniently {
    ($($ty:ident$(<$lt:lifetime>)?),* $(,)?) => {$(
        impl<'de> $crate::lenient::serde::Deserialize<'de> for $ty$(<$lt>)? {
            fn deserialize<D: $crate::lenient::serde::Deserializer<'de>>(
                d: D,
            ) -> ::core::result::Result<Self, D::Error> {
                $crate::lenient::lenient(d)
            }
        }
    )*};
}

/// The serde crate the macros of this module expand to, so that callers need not name it.
pub use serde;

/// Reads the value of the current member as [`Val`] (a helper for [`Lenient::member`]).
pub fn val<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Val<'de>, A::Error> {
    map.next_value()
}

/// Skips the value of the current member (a helper for [`Lenient::member`]).
pub fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Val<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_json_type_has_a_val() {
        assert_eq!(read("null"), Val::Null);
        assert_eq!(read("false"), Val::Bool(false));
        assert_eq!(read("18446744073709551615"), Val::U64(u64::MAX));
        assert_eq!(read("-9"), Val::I64(-9));
        assert_eq!(read("2.5e0"), Val::F64(2.5));
        assert_eq!(read("[[{}]]"), Val::Array);
        assert_eq!(read(r#"{"type":"text","type":"x"}"#).kind(), Some("text"));
        assert_eq!(read(r#"{"kind":"text"}"#), Val::Object { kind: None });
        // Strings borrow unless they hold escapes, and so do keys.
        assert!(matches!(
            read(r#""plain""#),
            Val::Str(Cow::Borrowed("plain"))
        ));
        assert!(matches!(read(r#""\u0041""#), Val::Str(Cow::Owned(s)) if s == "A"));
        assert!(matches!(read(r#"{"typ\u0065":"x"}"#).kind(), Some("x")));
        assert_eq!(Val::default(), Val::Absent);
        // Only syntax fails.
        assert!(serde_json::from_str::<Val<'_>>(r#"{"a":}"#).is_err());
    }

    #[test]
    fn accessors() {
        assert_eq!(read("\"s\"").as_str(), Some("s"));
        assert_eq!(read("1").as_str(), None);
        assert_eq!(read("-2").as_f64(), Some(-2.0));
        assert_eq!(read("2").as_f64(), Some(2.0));
        assert_eq!(read("\"2\"").as_f64(), None);
        assert_eq!(read("7").as_u64(), Some(7));
        assert_eq!(read("7.0").as_u64(), None);
        assert!(read("null").is_unset() && Val::Absent.is_unset());
        assert!(!read("false").is_unset());
        assert_eq!(read(r#""auto""#).kind(), None);
        assert_eq!(read("\"x\"").into_string().as_deref(), Some("x"));
        assert_eq!(read("[\"x\"]").into_cow(), None);
    }

    #[test]
    fn counts_accept_whole_numbers_only() {
        let count = |json: &str| read(json).as_count();
        assert_eq!(count("12"), Some(12));
        assert_eq!(count("12.0"), Some(12));
        assert_eq!(count("1.2e1"), Some(12));
        assert_eq!(count("12.5"), None);
        assert_eq!(count("-3"), None);
        assert_eq!(count("-0.0"), Some(0));
        assert_eq!(count("1e30"), None);
        assert_eq!(count("18446744073709551615"), Some(u64::MAX));
        assert_eq!(count("\"12\""), None);
    }

    /// Reads `id` as a count and remembers every key it saw.
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        id: Option<u64>,
        keys: Vec<String>,
        elements: Option<usize>,
    }

    impl<'de> Lenient<'de> for Seen {
        fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            self.keys.push(key.to_owned());
            if key == "id" {
                self.id = val(map)?.as_count();
                Ok(())
            } else {
                skip(map)
            }
        }

        fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(Seen {
                elements: Some(n),
                ..Seen::default()
            })
        }
    }

    /// Relies on the default `member` and `array`.
    #[derive(Debug, Default, PartialEq)]
    struct Nothing;

    impl Lenient<'_> for Nothing {}

    crate::deserialize_leniently!(Seen, Nothing);

    #[test]
    fn lenient_types_never_fail_on_shape() {
        let seen: Seen =
            serde_json::from_str(r#"{"x":{"id":1},"id":3.0,"k\"":[],"id":"4"}"#).unwrap();
        assert_eq!(seen.keys, ["x", "id", "k\"", "id"]);
        assert_eq!(seen.id, None, "a repeated key is read again");
        let arrays: Vec<Seen> =
            serde_json::from_str(r#"[[1,[2],{}], 7, "s", null, true]"#).unwrap();
        assert_eq!(arrays[0].elements, Some(3));
        assert!(arrays[1..].iter().all(|s| *s == Seen::default()));
        assert_eq!(
            serde_json::from_str::<Nothing>(r#"{"a":[1]}"#).unwrap(),
            Nothing
        );
        assert_eq!(serde_json::from_str::<Nothing>("[1,2]").unwrap(), Nothing);
        assert!(serde_json::from_str::<Seen>(r#"{"id":1"#).is_err());
        assert!(serde_json::from_str::<Nothing>("[1,").is_err());
    }

    #[test]
    fn keys_borrow_unless_escaped() {
        fn keys(json: &str) -> Vec<Key<'_>> {
            serde_json::from_str(json).unwrap()
        }
        assert!(matches!(&keys(r#"["a"]"#)[0], Key(Cow::Borrowed("a"))));
        assert!(matches!(&keys(r#"["\n"]"#)[0], Key(Cow::Owned(k)) if k == "\n"));
    }
}
