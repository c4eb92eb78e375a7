//! Typed reads of a policy's configuration (the `[config]` table of its manifest, handed over as
//! strings through `host.config-get`): every read names a default, and a value that does not
//! parse keeps the default and is reported once through a warning callback (the host log in a
//! component, anything in a test).

use std::fmt;
use std::str::FromStr;

use super::Severity;
use crate::config as parse;

type Lookup = Box<dyn Fn(&str) -> Option<String>>;
type Warn = Box<dyn Fn(&str)>;

/// A policy's configuration with typed accessors.
///
/// Keys are looked up as written and, when absent, with `-` and `_` swapped
/// (`scan-thinking` / `scan_thinking`); blank values count as absent. Values are trimmed.
pub struct Config {
    get: Lookup,
    warn: Warn,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").finish_non_exhaustive()
    }
}

impl Config {
    /// The configuration the host gives this plugin, with warnings written to the host log at
    /// `warn`. Only usable inside the gateway (in a native test, use [`Config::new`] or
    /// [`Config::from_pairs`]).
    pub fn host() -> Config {
        Config::new(super::host::config_get, |message| {
            super::log::warn(message);
        })
    }

    /// A configuration read through `get` (e.g. a map in tests) that reports unusable values
    /// through `warn`.
    pub fn new(
        get: impl Fn(&str) -> Option<String> + 'static,
        warn: impl Fn(&str) + 'static,
    ) -> Config {
        Config {
            get: Box::new(get),
            warn: Box::new(warn),
        }
    }

    /// A fixed configuration for tests; warnings are discarded.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Config {
        let map: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::new(move |key| map.get(key).cloned(), |_| {})
    }

    /// The trimmed value of `key` (or its `-`/`_` twin), `None` when absent or blank.
    pub fn raw(&self, key: &str) -> Option<String> {
        parse::lookup(&self.get, key).map(|(_, value)| value.trim().to_owned())
    }

    /// The value of `key`, or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case), or `default`.
    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.parsed(key, default, |raw| {
            parse::parse_bool(raw, parse::ANY_BOOL_WORD).map_err(|e| e.reason)
        })
    }

    /// An integer of at least `min`, or `default`.
    pub fn int<T>(&self, key: &str, default: T, min: T) -> T
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.parsed(key, default, |raw| {
            parse::parse_int(raw, min).map_err(|e| e.reason)
        })
    }

    /// A comma-separated list: items trimmed, empty items dropped; empty when absent.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A severity (`low`, `medium`, `high`, `critical`, any case), or `default`.
    pub fn severity(&self, key: &str, default: Severity) -> Severity {
        self.parsed(key, default, |raw| {
            Severity::parse(raw).ok_or_else(|| "expected low, medium, high or critical".to_owned())
        })
    }

    /// The value of `key` parsed by `parse`, or `default` when absent; when `parse` fails the
    /// default is kept and `config <key>="<value>" is not usable (<reason>); using <default>` is
    /// reported through the warning callback.
    pub fn parsed<T: fmt::Display>(
        &self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(raw) => match parse(&raw) {
                Ok(value) => value,
                Err(reason) => {
                    (self.warn)(&format!(
                        "config {key}=\"{raw}\" is not usable ({reason}); using {default}"
                    ));
                    default
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    fn config(pairs: &[(&str, &str)]) -> (Config, Rc<RefCell<Vec<String>>>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let warnings = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&warnings);
        let config = Config::new(
            move |key| map.get(key).cloned(),
            move |w| sink.borrow_mut().push(w.to_owned()),
        );
        (config, warnings)
    }

    #[test]
    fn typed_values_with_defaults() {
        let (c, warnings) = config(&[
            ("scan_thinking", " Off "),
            ("max-findings", "7"),
            ("allow", " git status , , terraform plan "),
            ("floor", "CRITICAL"),
            ("blank", "   "),
        ]);
        assert!(!c.bool("scan_thinking", true));
        assert!(c.bool("scan_tool_calls", true));
        assert_eq!(c.int("max_findings", 10u32, 1), 7);
        assert_eq!(c.list("allow"), ["git status", "terraform plan"]);
        assert!(c.list("absent").is_empty());
        assert_eq!(c.severity("floor", Severity::High), Severity::Critical);
        assert_eq!(c.string("blank", "dflt"), "dflt");
        assert_eq!(c.raw("blank"), None);
        assert_eq!(c.string("allow", "x"), "git status , , terraform plan");
        assert!(warnings.borrow().is_empty());
    }

    #[test]
    fn unusable_values_keep_the_default_and_warn() {
        let (c, warnings) = config(&[("on", "maybe"), ("n", "0"), ("s", "severe")]);
        assert!(c.bool("on", true));
        assert_eq!(c.int("n", 5u32, 1), 5);
        assert_eq!(c.severity("s", Severity::High), Severity::High);
        let warnings = warnings.borrow();
        assert_eq!(
            warnings.as_slice(),
            [
                "config on=\"maybe\" is not usable (expected true or false); using true",
                "config n=\"0\" is not usable (expected an integer >= 1); using 5",
                "config s=\"severe\" is not usable (expected low, medium, high or critical); using high",
            ]
        );
    }

    #[test]
    fn from_pairs_is_a_fixed_map() {
        let c = Config::from_pairs(&[("allow", "a,b")]);
        assert_eq!(c.list("allow"), ["a", "b"]);
        assert!(c.bool("x", true));
        assert!(format!("{c:?}").starts_with("Config"));
    }
}
