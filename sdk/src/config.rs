//! Reading a plugin's configuration (the `config` table of its manifest, which the host hands
//! over as strings through `config-get`): typed values with a reason when one does not parse,
//! and the descriptor overrides (`name`, `route-prefix`, `default-upstream`) that let one
//! component serve several deployments.
//!
//! Everything here takes the lookup as a plain function (`host::config_get` in a component, a
//! map in tests), so it runs natively.

use std::fmt;
use std::str::FromStr;

/// Why a configured value was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What the value should have been, e.g. `expected true or false`.
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

fn invalid(reason: impl Into<String>) -> Invalid {
    Invalid {
        reason: reason.into(),
    }
}

/// The spellings a boolean setting accepts (compared after trimming, ignoring ASCII case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoolWords {
    /// Spellings of `true`.
    pub yes: &'static [&'static str],
    /// Spellings of `false`.
    pub no: &'static [&'static str],
}

/// `true` and `false` only.
pub const TRUE_FALSE: BoolWords = BoolWords {
    yes: &["true"],
    no: &["false"],
};

/// `true`/`false` and `1`/`0`.
pub const TRUE_FALSE_1_0: BoolWords = BoolWords {
    yes: &["true", "1"],
    no: &["false", "0"],
};

/// `true`/`false`, `1`/`0`, `yes`/`no` and `on`/`off`.
pub const ANY_BOOL_WORD: BoolWords = BoolWords {
    yes: &["true", "1", "yes", "on"],
    no: &["false", "0", "no", "off"],
};

/// Parses a boolean setting spelled as one of `words`.
///
/// Errors: `expected true or false`.
pub fn parse_bool(raw: &str, words: BoolWords) -> Result<bool, Invalid> {
    let value = raw.trim().to_ascii_lowercase();
    if words.yes.contains(&value.as_str()) {
        Ok(true)
    } else if words.no.contains(&value.as_str()) {
        Ok(false)
    } else {
        Err(invalid("expected true or false"))
    }
}

/// Parses an integer setting (surrounding whitespace allowed) that must be at least `min`.
///
/// Errors: `expected an integer >= <min>`.
pub fn parse_int<T>(raw: &str, min: T) -> Result<T, Invalid>
where
    T: FromStr + PartialOrd + fmt::Display,
{
    match raw.trim().parse::<T>() {
        Ok(value) if value >= min => Ok(value),
        _ => Err(invalid(format!("expected an integer >= {min}"))),
    }
}

/// Looks `key` up, and when it is not set also its twin spelled with `-` and `_` swapped
/// (`route-prefix` / `route_prefix`), since operators write both. Blank values count as absent.
/// Returns the spelling found with its (untrimmed) value.
pub fn lookup(get: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<(String, String)> {
    let twin: String = key
        .chars()
        .map(|c| match c {
            '-' => '_',
            '_' => '-',
            other => other,
        })
        .collect();
    [key.to_owned(), twin]
        .into_iter()
        .find_map(|k| get(&k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
}

/// Whether `name` is a valid plugin (provider) name by the host's rule: 1-64 characters of
/// lower-case ASCII letters, digits and `-`, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `prefix` is a route prefix the host accepts: `/` and one path segment of ASCII
/// letters, digits, `-`, `_` and `.`, not one of the gateway's own routes.
pub fn is_valid_route_prefix(prefix: &str) -> bool {
    prefix
        .strip_prefix('/')
        .is_some_and(|segment| is_route_segment(segment) && !is_reserved_segment(segment))
}

fn is_route_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_reserved_segment(segment: &str) -> bool {
    matches!(segment, "health" | "metrics" | "models.json")
}

/// What [`provider_name`] accepts, for messages.
pub const PROVIDER_NAME_RULE: &str = "a lower-case letter, then letters, digits and -";
/// What [`route_prefix`] accepts, for messages.
pub const ROUTE_PREFIX_RULE: &str = "one path segment such as /groq";

/// Normalises a configured provider name: trimmed and lower-cased, it must pass
/// [`is_valid_name`] (so `" Groq "` becomes `groq`). `None` when it cannot be normalised.
pub fn provider_name(raw: &str) -> Option<String> {
    let name = raw.trim().to_ascii_lowercase();
    is_valid_name(&name).then_some(name)
}

/// Normalises a configured route prefix: trimmed, with any leading and trailing `/` dropped, it
/// must be one path segment of at most 64 characters that [`is_valid_route_prefix`] accepts
/// (so `groq/` becomes `/groq`). `None` when it cannot be normalised.
pub fn route_prefix(raw: &str) -> Option<String> {
    let segment = raw.trim().trim_start_matches('/').trim_end_matches('/');
    let ok = segment.len() <= 64 && is_route_segment(segment) && !is_reserved_segment(segment);
    ok.then(|| format!("/{segment}"))
}

/// Normalises a configured upstream: trimmed, without trailing `/`, it must be an `http://` or
/// `https://` URL with a host and without query, fragment, whitespace or control characters.
/// `None` when it cannot be normalised.
pub fn upstream(raw: &str) -> Option<String> {
    let url = raw.trim().trim_end_matches('/');
    let lower = url.to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    let clean = !url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'?' | b'#'));
    let ok = host.is_some_and(|host| !host.is_empty()) && clean;
    ok.then(|| url.to_owned())
}

/// The configuration key of the descriptor's provider name.
pub const NAME: &str = "name";
/// The configuration key of the descriptor's route prefix.
pub const ROUTE_PREFIX: &str = "route-prefix";
/// The configuration key of the descriptor's default upstream.
pub const DEFAULT_UPSTREAM: &str = "default-upstream";

/// The descriptor members an operator may override in the manifest's `config` table: the
/// provider name (metrics labels, logs), the route prefix the gateway serves the adapter on,
/// and the upstream it forwards to unless a request names another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// `name`.
    pub name: String,
    /// `route-prefix`.
    pub route_prefix: String,
    /// `default-upstream`.
    pub default_upstream: String,
}

/// An adapter's built-in descriptor values, and the ways it lets operators override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults<'a> {
    /// The built-in provider name.
    pub name: &'a str,
    /// The built-in route prefix.
    pub route_prefix: &'a str,
    /// The built-in upstream.
    pub default_upstream: &'a str,
}

impl<'a> Defaults<'a> {
    /// An adapter's built-in name, route prefix and upstream.
    pub const fn new(name: &'a str, route_prefix: &'a str, default_upstream: &'a str) -> Self {
        Self {
            name,
            route_prefix,
            default_upstream,
        }
    }

    /// Each configured value replaces its default exactly as configured. Nothing is checked here:
    /// the host validates descriptors at load time and reports a bad one against the operator's
    /// own value.
    pub fn as_configured(&self, get: impl Fn(&str) -> Option<String>) -> Overrides {
        let value = |key: &str, default: &str| get(key).unwrap_or_else(|| default.to_owned());
        Overrides {
            name: value(NAME, self.name),
            route_prefix: value(ROUTE_PREFIX, self.route_prefix),
            default_upstream: value(DEFAULT_UPSTREAM, self.default_upstream),
        }
    }

    /// Each configured value, trimmed, replaces its default unless it is blank. Nothing else is
    /// checked here (the host validates descriptors at load time).
    pub fn trimmed(&self, get: impl Fn(&str) -> Option<String>) -> Overrides {
        let value = |key: &str, default: &str| {
            get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Overrides {
            name: value(NAME, self.name),
            route_prefix: value(ROUTE_PREFIX, self.route_prefix),
            default_upstream: value(DEFAULT_UPSTREAM, self.default_upstream),
        }
    }

    /// Configured values (under either spelling, see [`lookup`]; blank ones are unset) are
    /// normalised by [`provider_name`], [`route_prefix`] and [`upstream`], so that the host never
    /// has to reject the deployment; a value that cannot be normalised keeps the default and is
    /// reported through `warn`. Without a `route-prefix`, a renamed deployment serves `/<name>`
    /// (two deployments of one component must not both claim the default prefix), and a renamed
    /// deployment without `default-upstream` is warned that it still goes to the default.
    pub fn validated(
        &self,
        get: &dyn Fn(&str) -> Option<String>,
        warn: &mut dyn FnMut(String),
    ) -> Overrides {
        let name = match lookup(get, NAME) {
            Some((key, raw)) => provider_name(&raw).unwrap_or_else(|| {
                warn(format!(
                    "config {key}: \"{raw}\" is not a provider name ({PROVIDER_NAME_RULE}); using {}",
                    self.name
                ));
                self.name.to_owned()
            }),
            None => self.name.to_owned(),
        };
        let derived_prefix = if name == self.name {
            self.route_prefix.to_owned()
        } else {
            format!("/{name}")
        };
        let route_prefix = match lookup(get, ROUTE_PREFIX) {
            Some((key, raw)) => route_prefix(&raw).unwrap_or_else(|| {
                warn(format!(
                    "config {key}: \"{raw}\" is not a route prefix ({ROUTE_PREFIX_RULE}); using {derived_prefix}"
                ));
                derived_prefix.clone()
            }),
            None => derived_prefix,
        };
        let default_upstream = match lookup(get, DEFAULT_UPSTREAM) {
            Some((key, raw)) => upstream(&raw).unwrap_or_else(|| {
                warn(format!(
                    "config {key}: \"{raw}\" is not an http(s) base URL; using {}",
                    self.default_upstream
                ));
                self.default_upstream.to_owned()
            }),
            None => {
                if name != self.name {
                    warn(format!(
                        "config name is \"{name}\" but default-upstream is not set: requests go to {} unless the operator overrides the upstream",
                        self.default_upstream
                    ));
                }
                self.default_upstream.to_owned()
            }
        };
        Overrides {
            name,
            route_prefix,
            default_upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config as lookup_in;

    #[test]
    fn booleans_in_each_set_of_words() {
        assert_eq!(parse_bool(" TRUE ", TRUE_FALSE), Ok(true));
        assert_eq!(parse_bool("False", TRUE_FALSE), Ok(false));
        assert!(parse_bool("1", TRUE_FALSE).is_err());
        assert_eq!(parse_bool("1", TRUE_FALSE_1_0), Ok(true));
        assert_eq!(parse_bool("0", TRUE_FALSE_1_0), Ok(false));
        assert!(parse_bool("yes", TRUE_FALSE_1_0).is_err());
        for (raw, want) in [("yes", true), ("On", true), ("no", false), ("OFF", false)] {
            assert_eq!(parse_bool(raw, ANY_BOOL_WORD), Ok(want), "{raw}");
        }
        let err = parse_bool("maybe", ANY_BOOL_WORD).unwrap_err();
        assert_eq!(err.to_string(), "expected true or false");
        assert!(parse_bool("", ANY_BOOL_WORD).is_err());
    }

    #[test]
    fn integers_with_a_minimum() {
        assert_eq!(parse_int::<u64>(" 4096 ", 0), Ok(4096));
        assert_eq!(parse_int::<i32>("-1", -1), Ok(-1));
        assert_eq!(parse_int::<i32>("+5", -1), Ok(5));
        assert_eq!(
            parse_int::<i32>("-2", -1).unwrap_err().reason,
            "expected an integer >= -1"
        );
        assert!(parse_int::<u64>("-1", 0).is_err());
        assert!(parse_int::<u64>("1.5", 0).is_err());
        assert!(parse_int::<u64>("", 0).is_err());
        assert!(parse_int::<i32>("99999999999", 0).is_err());
    }

    #[test]
    fn lookup_finds_either_spelling_and_skips_blanks() {
        let get = lookup_in(&[("route_prefix", "/a"), ("name", "  "), ("x-y", "1")]);
        assert_eq!(
            lookup(&get, "route-prefix"),
            Some(("route_prefix".into(), "/a".into()))
        );
        assert_eq!(lookup(&get, "x_y"), Some(("x-y".into(), "1".into())));
        assert_eq!(lookup(&get, "name"), None);
        assert_eq!(lookup(&get, "absent"), None);
        let both = lookup_in(&[("a-b", "dash"), ("a_b", "underscore")]);
        assert_eq!(lookup(&both, "a_b").unwrap().1, "underscore");
    }

    #[test]
    fn names_follow_the_host_rule() {
        for good in ["openai", "a", "groq-2", "x1-"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "1password", "-x", "a_b", "Groq", "a b", &"a".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert_eq!(provider_name(" Together ").as_deref(), Some("together"));
        assert_eq!(provider_name("my provider!"), None);
    }

    #[test]
    fn route_prefixes_follow_the_host_rule() {
        for good in ["/openai", "/a.b", "/A_b-1"] {
            assert!(is_valid_route_prefix(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "openai",
            "/a/b",
            "/a b",
            "/a~b",
            "/health",
            "/metrics",
            "/models.json",
        ] {
            assert!(!is_valid_route_prefix(bad), "{bad}");
        }
        assert_eq!(route_prefix(" together/ ").as_deref(), Some("/together"));
        assert_eq!(route_prefix("//groq//").as_deref(), Some("/groq"));
        for bad in ["/", "/a/b", "/health", "metrics/", "/a~b", &"a".repeat(65)] {
            assert_eq!(route_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn upstreams_are_http_base_urls() {
        assert_eq!(
            upstream(" https://api.groq.com/openai/ ").as_deref(),
            Some("https://api.groq.com/openai")
        );
        assert_eq!(
            upstream("HTTP://127.0.0.1:9").as_deref(),
            Some("HTTP://127.0.0.1:9")
        );
        for bad in [
            "https://x.y/?q=1",
            "https://x.y/#f",
            "https://x y",
            "api.openai.com",
            "ftp://example.com",
            "https://",
            "https:///path",
        ] {
            assert_eq!(upstream(bad), None, "{bad}");
        }
    }

    const DEFAULTS: Defaults<'static> =
        Defaults::new("openai", "/openai", "https://api.openai.com");

    fn overrides(name: &str, route_prefix: &str, default_upstream: &str) -> Overrides {
        Overrides {
            name: name.into(),
            route_prefix: route_prefix.into(),
            default_upstream: default_upstream.into(),
        }
    }

    fn defaults() -> Overrides {
        overrides("openai", "/openai", "https://api.openai.com")
    }

    #[test]
    fn as_configured_takes_values_verbatim() {
        assert_eq!(DEFAULTS.as_configured(lookup_in(&[])), defaults());
        let got = DEFAULTS.as_configured(lookup_in(&[
            ("name", " Odd "),
            ("route-prefix", ""),
            ("route_prefix", "/ignored"),
        ]));
        assert_eq!(got, overrides(" Odd ", "", "https://api.openai.com"));
    }

    #[test]
    fn trimmed_skips_blank_values() {
        let got = DEFAULTS.trimmed(lookup_in(&[
            ("name", " google "),
            ("route-prefix", "  "),
            ("default-upstream", "http://127.0.0.1:9999"),
        ]));
        assert_eq!(got, overrides("google", "/openai", "http://127.0.0.1:9999"));
    }

    fn validated(pairs: &[(&str, &str)]) -> (Overrides, Vec<String>) {
        let mut warnings = Vec::new();
        let got = DEFAULTS.validated(&lookup_in(pairs), &mut |w| warnings.push(w));
        (got, warnings)
    }

    #[test]
    fn validated_normalises_derives_and_warns() {
        assert_eq!(validated(&[]), (defaults(), vec![]));
        let (got, w) = validated(&[
            ("name", " Together "),
            ("route_prefix", "together/"),
            ("default_upstream", "https://api.together.xyz/"),
        ]);
        assert_eq!(
            got,
            overrides("together", "/together", "https://api.together.xyz")
        );
        assert!(w.is_empty());

        let (got, w) = validated(&[("name", "deepseek")]);
        assert_eq!(got.route_prefix, "/deepseek");
        assert_eq!(got.default_upstream, "https://api.openai.com");
        assert_eq!(
            w,
            [
                "config name is \"deepseek\" but default-upstream is not set: requests go to https://api.openai.com unless the operator overrides the upstream"
            ]
        );

        let (got, w) = validated(&[
            ("name", "my provider!"),
            ("route-prefix", "/a/b"),
            ("default-upstream", "ftp://example.com"),
        ]);
        assert_eq!(got, defaults());
        assert_eq!(
            w,
            [
                "config name: \"my provider!\" is not a provider name (a lower-case letter, then letters, digits and -); using openai",
                "config route-prefix: \"/a/b\" is not a route prefix (one path segment such as /groq); using /openai",
                "config default-upstream: \"ftp://example.com\" is not an http(s) base URL; using https://api.openai.com",
            ]
        );
        // Named like the default, a deployment keeps the default prefix and needs no upstream.
        let (got, w) = validated(&[("name", "OpenAI")]);
        assert_eq!((got, w), (defaults(), vec![]));
    }
}
