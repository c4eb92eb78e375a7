//! Where plugins come from: the defaults embedded in the binary, and plugin directories laid out
//! like a Kubernetes ConfigMap volume (flat files; `..data` and other dot-entries are the
//! kubelet's bookkeeping and are skipped).

use std::path::{Path, PathBuf};

use super::engine::sha256_hex;
use super::manifest::{MANIFEST_SUFFIX, Manifest, ManifestError};

/// A plugin built into the binary.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPlugin {
    /// Manifest text (without sha256: the embedded bytes are trusted).
    pub manifest: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

/// The default plugins: the three provider adapters and the default AIP policy.
pub const EMBEDDED: &[EmbeddedPlugin] = &[
    EmbeddedPlugin {
        manifest: include_str!("../../../plugins/anthropic/plugin.toml"),
        wasm: include_bytes!(env!("MNEMOM_PLUGIN_WASM_ANTHROPIC")),
    },
    EmbeddedPlugin {
        manifest: include_str!("../../../plugins/openai/plugin.toml"),
        wasm: include_bytes!(env!("MNEMOM_PLUGIN_WASM_OPENAI")),
    },
    EmbeddedPlugin {
        manifest: include_str!("../../../plugins/gemini/plugin.toml"),
        wasm: include_bytes!(env!("MNEMOM_PLUGIN_WASM_GEMINI")),
    },
    EmbeddedPlugin {
        manifest: include_str!("../../../plugins/aip-conscience/plugin.toml"),
        wasm: include_bytes!(env!("MNEMOM_PLUGIN_WASM_AIP_CONSCIENCE")),
    },
];

/// A plugin ready to be loaded: manifest, bytes, and where they came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Parsed manifest.
    pub manifest: Manifest,
    /// Component bytes (empty for a `disabled` manifest).
    pub wasm: Vec<u8>,
    /// Hex sha256 of `wasm`.
    pub sha256: String,
    /// `None` for embedded plugins, the manifest path otherwise.
    pub manifest_path: Option<PathBuf>,
    /// Changes whenever the manifest text or the component changes.
    pub fingerprint: String,
}

/// Why a plugin directory entry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is invalid.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file.
        path: String,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// The component's hash differs from the manifest's `sha256`.
    #[error("{path}: sha256 mismatch: manifest says {expected}, file is {actual}")]
    HashMismatch {
        /// The component file.
        path: String,
        /// From the manifest.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// Directory plugins must pin their component's hash.
    #[error(
        "{path}: `sha256` is required for plugins loaded from a directory (see `mnemom-gateway plugin inspect`)"
    )]
    MissingHash {
        /// The manifest file.
        path: String,
    },
}

/// One entry of a directory scan: the plugin name (or the manifest's file stem when the manifest
/// could not be parsed) and the candidate or the reason it is unusable.
pub type ScanEntry = (String, Result<Candidate, SourceError>);

/// The embedded defaults as candidates.
pub fn embedded_candidates() -> Vec<Candidate> {
    EMBEDDED
        .iter()
        .filter_map(|plugin| {
            // The embedded manifests are parsed by a unit test, so this never drops one.
            let manifest = Manifest::parse(plugin.manifest).ok()?;
            let sha256 = sha256_hex(plugin.wasm);
            Some(Candidate {
                fingerprint: format!(
                    "embedded:{sha256}:{}",
                    sha256_hex(plugin.manifest.as_bytes())
                ),
                manifest,
                wasm: plugin.wasm.to_vec(),
                sha256,
                manifest_path: None,
            })
        })
        .collect()
}

/// Reads every `*.plugin.toml` manifest in `dir` (not recursive) with its component.
pub fn scan_directory(dir: &Path) -> Result<Vec<ScanEntry>, SourceError> {
    let io = |path: &Path, source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(MANIFEST_SUFFIX))
        })
        .collect();
    manifests.sort();
    Ok(manifests
        .into_iter()
        .map(|path| read_candidate(&path))
        .collect())
}

fn read_candidate(manifest_path: &Path) -> ScanEntry {
    let stem = manifest_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(MANIFEST_SUFFIX))
        .unwrap_or("unknown")
        .to_owned();
    let display = manifest_path.display().to_string();
    let text = match std::fs::read_to_string(manifest_path) {
        Ok(text) => text,
        Err(source) => {
            return (
                stem,
                Err(SourceError::Io {
                    path: display,
                    source,
                }),
            );
        }
    };
    let manifest = match Manifest::parse(&text) {
        Ok(m) => m,
        Err(source) => {
            return (
                stem,
                Err(SourceError::Manifest {
                    path: display,
                    source,
                }),
            );
        }
    };
    let name = manifest.name.clone();
    if manifest.disabled {
        let fingerprint = format!("disabled:{}", sha256_hex(text.as_bytes()));
        let candidate = Candidate {
            manifest,
            wasm: Vec::new(),
            sha256: String::new(),
            manifest_path: Some(manifest_path.to_owned()),
            fingerprint,
        };
        return (name, Ok(candidate));
    }
    let Some(expected) = manifest.sha256.clone() else {
        return (name, Err(SourceError::MissingHash { path: display }));
    };
    let wasm_path = manifest_path.with_file_name(&manifest.wasm);
    let wasm = match std::fs::read(&wasm_path) {
        Ok(bytes) => bytes,
        Err(source) => {
            return (
                name,
                Err(SourceError::Io {
                    path: wasm_path.display().to_string(),
                    source,
                }),
            );
        }
    };
    let sha256 = sha256_hex(&wasm);
    if sha256 != expected {
        let path = wasm_path.display().to_string();
        return (
            name,
            Err(SourceError::HashMismatch {
                path,
                expected,
                actual: sha256,
            }),
        );
    }
    let candidate = Candidate {
        fingerprint: format!(
            "{}:{sha256}:{}",
            manifest_path.display(),
            sha256_hex(text.as_bytes())
        ),
        manifest,
        wasm,
        sha256,
        manifest_path: Some(manifest_path.to_owned()),
    };
    (name, Ok(candidate))
}

/// Writes the embedded defaults (component + manifest with its sha256) into `dir`.
/// Returns the files written.
pub fn export_embedded(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |path: &Path, source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    for candidate in embedded_candidates() {
        let mut manifest = candidate.manifest.clone();
        manifest.sha256 = Some(candidate.sha256.clone());
        let wasm_path = dir.join(&manifest.wasm);
        std::fs::write(&wasm_path, &candidate.wasm).map_err(|e| io(&wasm_path, e))?;
        let manifest_path = dir.join(format!("{}{MANIFEST_SUFFIX}", manifest.name));
        let text = format!(
            "# Exported from mnemom-gateway {}. Edit `[config]`/`[limits]` freely; keep `sha256` in step\n# with the component (`mnemom-gateway plugin inspect FILE` prints it).\n{}",
            env!("CARGO_PKG_VERSION"),
            manifest.to_toml()
        );
        std::fs::write(&manifest_path, text).map_err(|e| io(&manifest_path, e))?;
        written.push(wasm_path);
        written.push(manifest_path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifests_parse() {
        assert_eq!(embedded_candidates().len(), EMBEDDED.len());
        for c in embedded_candidates() {
            assert!(!c.wasm.is_empty());
        }
    }

    #[test]
    fn export_then_scan_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let written = export_embedded(dir.path()).unwrap();
        assert_eq!(written.len(), 2 * EMBEDDED.len());
        let scanned = scan_directory(dir.path()).unwrap();
        assert_eq!(scanned.len(), EMBEDDED.len());
        for (name, candidate) in scanned {
            let candidate = candidate.unwrap();
            assert_eq!(candidate.manifest.name, name);
            assert_eq!(
                candidate.manifest.sha256.as_deref(),
                Some(candidate.sha256.as_str())
            );
        }
    }

    #[test]
    fn hash_mismatch_and_missing_hash_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.wasm"), b"not wasm").unwrap();
        std::fs::write(
            dir.path().join("x.plugin.toml"),
            format!(
                "name = \"x\"\nworld = \"provider-adapter\"\nsha256 = \"{}\"\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("y.plugin.toml"),
            "name = \"y\"\nworld = \"provider-adapter\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.plugin.toml"), "garbage").unwrap();
        let scanned = scan_directory(dir.path()).unwrap();
        assert_eq!(scanned.len(), 2);
        assert!(matches!(
            scanned[0].1,
            Err(SourceError::HashMismatch { .. })
        ));
        assert!(matches!(scanned[1].1, Err(SourceError::MissingHash { .. })));
    }
}
