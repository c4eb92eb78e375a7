//! The WIT bindings of the policy world this SDK build was compiled for (`aip-policy` with the
//! feature `policy`, `aip-policy-pure` with `policy-pure`), generated from the repository's
//! `wit/` directory. Authors use the re-exports in [`crate::policy`]; this module is public
//! because the export macro names it.
//!
//! The export glue is a macro (`pub_export_macro`), so nothing is exported until a policy crate
//! invokes [`crate::export_policy!`]: a crate that only depends on the SDK exports nothing.

#[cfg(feature = "policy")]
wit_bindgen::generate!({
    world: "aip-policy",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "mnemom_plugin_sdk::policy::bindings",
    additional_derives: [PartialEq, Eq],
});

#[cfg(all(feature = "policy-pure", not(feature = "policy")))]
wit_bindgen::generate!({
    world: "aip-policy-pure",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "mnemom_plugin_sdk::policy::bindings",
    additional_derives: [PartialEq, Eq],
});
