//! Pinned license verification keys: the embedded Mnemom key set, the `MNEMOM_LICENSE_PUBLIC_KEY`
//! override, and the PEM/DER parsing of Ed25519 (SPKI) and RSA (SPKI or PKCS#1) public keys.
//!
//! A key's type pins the one algorithm it verifies: Ed25519 keys verify `EdDSA` (or its
//! fully-specified name `Ed25519`), RSA keys verify `RS256`. Nothing else is ever accepted, and
//! keys named by the token itself (`jwk`, `jku`, `x5c`, `x5u`) are never used.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, UnparsedPublicKey};

use crate::config::{ConfigError, ConfigSource};

/// The variable that replaces the embedded key set.
pub const PUBLIC_KEY_VARIABLE: &str = "MNEMOM_LICENSE_PUBLIC_KEY";

/// The embedded Mnemom license signing keys, as `(kid, PEM)`. Only public keys live here.
pub const EMBEDDED_KEYS: &[(&str, &str)] = &[(
    "mnemom-license-2026-11",
    include_str!("keys/mnemom-license-2026-11.pem"),
)];

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (ring's verification limit).
pub const MAX_RSA_BITS: usize = 8192;

/// DER of the Ed25519 algorithm OID 1.3.101.112.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// DER of the rsaEncryption OID 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER of the EC public key OID 1.2.840.10045.2.1 (recognised only to explain the refusal).
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Why a public key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `-----BEGIN …-----` block at all.
    #[error("no PEM block found (expected -----BEGIN PUBLIC KEY-----)")]
    NoPem,
    /// A block was opened and never closed, or its body is not base64.
    #[error("malformed PEM: {0}")]
    BadPem(String),
    /// A private key was given where a public key belongs.
    #[error("this is a private key ({0}); give the public key only (openssl pkey -in KEY -pubout)")]
    PrivateKey(String),
    /// A PEM block of another kind.
    #[error("unsupported PEM block `{0}` (expected PUBLIC KEY or RSA PUBLIC KEY)")]
    UnsupportedPem(String),
    /// The DER structure is not a public key.
    #[error("malformed key: {0}")]
    BadDer(&'static str),
    /// A key of a type the gateway does not verify with.
    #[error("unsupported key type: {0} (only Ed25519 and RSA keys are accepted)")]
    UnsupportedKeyType(&'static str),
    /// An RSA modulus outside the accepted range.
    #[error("RSA key of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})")]
    RsaSize {
        /// The modulus size.
        bits: usize,
    },
}

/// The kind of a public key, which pins the algorithm it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519: verifies `EdDSA` / `Ed25519` only.
    Ed25519,
    /// RSA: verifies `RS256` only.
    Rsa,
}

impl KeyType {
    /// The canonical JOSE algorithm this key verifies.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "EdDSA",
            KeyType::Rsa => "RS256",
        }
    }

    /// Whether a token's `alg` is the one this key type is pinned to.
    pub fn accepts(self, alg: &str) -> bool {
        match self {
            KeyType::Ed25519 => alg == "EdDSA" || alg == "Ed25519",
            KeyType::Rsa => alg == "RS256",
        }
    }

    /// A short human name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "Ed25519",
            KeyType::Rsa => "RSA",
        }
    }
}

/// One pinned public key.
#[derive(Clone)]
pub struct PublicKey {
    kid: Option<String>,
    kind: KeyType,
    /// Ed25519: the 32 raw bytes; RSA: the PKCS#1 `RSAPublicKey` DER.
    material: Vec<u8>,
    bits: usize,
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("bits", &self.bits)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PublicKey {
    /// An Ed25519 key from its 32 raw bytes.
    pub fn from_ed25519_raw(raw: [u8; 32]) -> Self {
        let spki = ed25519_spki(&raw);
        Self {
            kid: None,
            kind: KeyType::Ed25519,
            material: raw.to_vec(),
            bits: 256,
            fingerprint: sha256_hex(&spki),
        }
    }

    /// Parses every public key in `pem` (one or more blocks). The keys carry no kid.
    pub fn parse_pem(pem: &str) -> Result<Vec<Self>, KeyError> {
        let blocks = pem_blocks(pem)?;
        if blocks.is_empty() {
            return Err(KeyError::NoPem);
        }
        blocks
            .into_iter()
            .map(|(label, der)| match label.as_str() {
                "PUBLIC KEY" => Self::from_spki_der(&der),
                "RSA PUBLIC KEY" => Self::from_rsa_pkcs1_der(&der),
                l if l.contains("PRIVATE KEY") => Err(KeyError::PrivateKey(l.to_owned())),
                l => Err(KeyError::UnsupportedPem(l.to_owned())),
            })
            .collect()
    }

    /// A key from a DER `SubjectPublicKeyInfo` (Ed25519 or RSA).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut outer = Der::new(der);
        let spki = outer.read(TAG_SEQUENCE)?;
        outer.finish()?;
        let mut spki = Der::new(spki);
        let algorithm = spki.read(TAG_SEQUENCE)?;
        let bit_string = spki.read(TAG_BIT_STRING)?;
        spki.finish()?;
        let mut algorithm = Der::new(algorithm);
        let oid = algorithm.read(TAG_OID)?;
        let key = match bit_string.split_first() {
            Some((0, key)) => key,
            _ => return Err(KeyError::BadDer("public key bit string has unused bits")),
        };
        if oid == OID_ED25519 {
            algorithm.finish()?;
            let raw: [u8; 32] = key
                .try_into()
                .map_err(|_| KeyError::BadDer("Ed25519 public key is not 32 bytes"))?;
            Ok(Self::from_ed25519_raw(raw))
        } else if oid == OID_RSA {
            if !algorithm.is_empty() {
                algorithm.read(TAG_NULL)?;
                algorithm.finish()?;
            }
            Self::from_rsa_pkcs1_der(key)
        } else if oid == OID_EC {
            Err(KeyError::UnsupportedKeyType("EC (ES256 is not accepted)"))
        } else {
            Err(KeyError::UnsupportedKeyType("unknown algorithm"))
        }
    }

    /// An RSA key from a DER PKCS#1 `RSAPublicKey`.
    pub fn from_rsa_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut outer = Der::new(der);
        let body = outer.read(TAG_SEQUENCE)?;
        outer.finish()?;
        let mut body = Der::new(body);
        let modulus = body.read(TAG_INTEGER)?;
        let exponent = body.read(TAG_INTEGER)?;
        body.finish()?;
        let modulus = strip_leading_zeros(modulus);
        let exponent = strip_leading_zeros(exponent);
        let bits = match modulus.first() {
            Some(&first) => modulus.len() * 8 - first.leading_zeros() as usize,
            None => 0,
        };
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::RsaSize { bits });
        }
        match exponent.last() {
            Some(last) if last & 1 == 1 && (exponent.len() > 1 || *last >= 3) => {}
            _ => {
                return Err(KeyError::BadDer(
                    "RSA public exponent must be odd and at least 3",
                ));
            }
        }
        let spki = rsa_spki(der);
        Ok(Self {
            kid: None,
            kind: KeyType::Rsa,
            material: der.to_vec(),
            bits,
            fingerprint: sha256_hex(&spki),
        })
    }

    /// The same key, named `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if the key set names it.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key type (and so its algorithm).
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// Key size in bits (256 for Ed25519).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Lower-case hex SHA-256 of the key's DER `SubjectPublicKeyInfo`, as
    /// `openssl pkey -pubin -outform DER | sha256sum` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` over `message` verifies with this key under `alg`. `alg` must be the
    /// algorithm the key type is pinned to; any other value never verifies.
    pub fn verify(&self, alg: &str, message: &[u8], signature_bytes: &[u8]) -> bool {
        if !self.kind.accepts(alg) {
            return false;
        }
        let algorithm: &dyn signature::VerificationAlgorithm = match self.kind {
            KeyType::Ed25519 => &signature::ED25519,
            KeyType::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(algorithm, &self.material)
            .verify(message, signature_bytes)
            .is_ok()
    }
}

/// Where a key set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The keys compiled into the binary.
    Embedded,
    /// `MNEMOM_LICENSE_PUBLIC_KEY`.
    Override,
    /// Built by code (tests, embedding).
    Custom,
}

impl KeySource {
    /// A human description.
    pub fn describe(self) -> &'static str {
        match self {
            KeySource::Embedded => "embedded Mnemom key set",
            KeySource::Override => "MNEMOM_LICENSE_PUBLIC_KEY",
            KeySource::Custom => "custom key set",
        }
    }
}

/// The set of keys a license may be signed with.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    source: KeySource,
}

impl KeySet {
    /// A key set from keys built by code.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self {
            keys,
            source: KeySource::Custom,
        }
    }

    /// The keys compiled into the binary.
    pub fn embedded() -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(EMBEDDED_KEYS.len());
        for (kid, pem) in EMBEDDED_KEYS {
            for key in PublicKey::parse_pem(pem)? {
                keys.push(key.with_kid(*kid));
            }
        }
        Ok(Self {
            keys,
            source: KeySource::Embedded,
        })
    }

    /// Keys from PEM text (one or more blocks, no kid). Literal `\n` sequences, as an
    /// environment variable set on one line carries them, count as line breaks.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let text = pem.replace("\\n", "\n");
        Ok(Self {
            keys: PublicKey::parse_pem(&text)?,
            source: KeySource::Override,
        })
    }

    /// `MNEMOM_LICENSE_PUBLIC_KEY` when set, the embedded set otherwise.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let result = match source.get(PUBLIC_KEY_VARIABLE) {
            Some(pem) => Self::from_pem(&pem),
            None => Self::embedded(),
        };
        result.map_err(|e| ConfigError {
            variable: PUBLIC_KEY_VARIABLE.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Where the keys came from.
    pub fn source(&self) -> KeySource {
        self.source
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `(label, DER)` of every PEM block in `text`.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        match open.take() {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    open = Some((label.to_owned(), String::new()));
                }
            }
            Some((label, mut body)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(KeyError::BadPem(format!(
                            "BEGIN {label} closed by END {end}"
                        )));
                    }
                    let der = STANDARD.decode(body.as_bytes()).map_err(|e| {
                        KeyError::BadPem(format!("{label}: body is not base64: {e}"))
                    })?;
                    blocks.push((label, der));
                } else {
                    if line.starts_with("-----") {
                        return Err(KeyError::BadPem(format!("{label} is not closed")));
                    }
                    // RFC 1421 headers (`Proc-Type: …`) are not part of a public key.
                    if line.contains(':') {
                        return Err(KeyError::BadPem(format!(
                            "{label} has an encapsulated header (encrypted or legacy PEM)"
                        )));
                    }
                    body.push_str(line);
                    open = Some((label, body));
                }
            }
        }
    }
    if let Some((label, _)) = open {
        return Err(KeyError::BadPem(format!("{label} is not closed")));
    }
    Ok(blocks)
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// A minimal reader of definite-length DER, enough for public keys.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn finish(&self) -> Result<(), KeyError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(KeyError::BadDer("trailing data"))
        }
    }

    /// Reads one element with `tag` and returns its contents.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let (&found, rest) = self
            .rest
            .split_first()
            .ok_or(KeyError::BadDer("truncated"))?;
        if found != tag {
            return Err(KeyError::BadDer("unexpected element"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(KeyError::BadDer("truncated"))?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(KeyError::BadDer("bad length"));
            }
            let mut length = 0usize;
            for &b in &rest[..count] {
                length = (length << 8) | usize::from(b);
            }
            rest = &rest[count..];
            length
        };
        if rest.len() < length {
            return Err(KeyError::BadDer("truncated"));
        }
        let (contents, after) = rest.split_at(length);
        self.rest = after;
        Ok(contents)
    }
}

fn der_length(length: usize, out: &mut Vec<u8>) {
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_element(tag: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_length(contents.len(), out);
    out.extend_from_slice(contents);
}

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bit_string = Vec::with_capacity(key.len() + 1);
    bit_string.push(0);
    bit_string.extend_from_slice(key);
    let mut body = Vec::with_capacity(algorithm.len() + bit_string.len() + 8);
    der_element(TAG_SEQUENCE, algorithm, &mut body);
    der_element(TAG_BIT_STRING, &bit_string, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_element(TAG_SEQUENCE, &body, &mut out);
    out
}

fn ed25519_spki(raw: &[u8]) -> Vec<u8> {
    let mut algorithm = Vec::new();
    der_element(TAG_OID, OID_ED25519, &mut algorithm);
    spki(&algorithm, raw)
}

fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut algorithm = Vec::new();
    der_element(TAG_OID, OID_RSA, &mut algorithm);
    der_element(TAG_NULL, &[], &mut algorithm);
    spki(&algorithm, pkcs1)
}

/// PEM (`PUBLIC KEY`) of a DER `SubjectPublicKeyInfo` built from raw Ed25519 bytes; used by
/// tests and tooling that hold a raw key.
pub fn ed25519_public_pem(raw: &[u8; 32]) -> String {
    let encoded = STANDARD.encode(ed25519_spki(raw));
    format!("-----BEGIN PUBLIC KEY-----\n{encoded}\n-----END PUBLIC KEY-----\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_SPKI: &str = include_str!("testdata/rsa-test-key.public.pem");
    const RSA_PKCS1: &str = include_str!("testdata/rsa-test-key.public-pkcs1.pem");
    const RSA_PRIVATE: &str = include_str!("testdata/rsa-test-key.private.pem");
    const RSA_1024: &str = include_str!("testdata/rsa-1024-test-key.public.pem");

    #[test]
    fn embedded_key_set_parses_with_its_kid() -> Result<(), KeyError> {
        let set = KeySet::embedded()?;
        assert_eq!(set.source(), KeySource::Embedded);
        assert_eq!(set.keys().len(), EMBEDDED_KEYS.len());
        let key = &set.keys()[0];
        assert_eq!(key.kid(), Some("mnemom-license-2026-11"));
        assert_eq!(key.kind(), KeyType::Ed25519);
        // `openssl pkey -pubin -in keys/mnemom-license-2026-11.pem -outform DER | sha256sum`
        assert_eq!(
            key.fingerprint(),
            "613127bbf7bfc36fb5bca921300c5e0d1834ca860015ec263a56732740ecb8b4"
        );
        Ok(())
    }

    #[test]
    fn rsa_spki_and_pkcs1_are_the_same_key() -> Result<(), KeyError> {
        let spki = PublicKey::parse_pem(RSA_SPKI)?;
        let pkcs1 = PublicKey::parse_pem(RSA_PKCS1)?;
        assert_eq!(spki.len(), 1);
        assert_eq!(spki[0].kind(), KeyType::Rsa);
        assert_eq!(spki[0].bits(), 2048);
        assert_eq!(spki[0].fingerprint(), pkcs1[0].fingerprint());
        Ok(())
    }

    #[test]
    fn ed25519_pem_round_trips() -> Result<(), KeyError> {
        let raw = [7u8; 32];
        let keys = PublicKey::parse_pem(&ed25519_public_pem(&raw))?;
        assert_eq!(
            keys[0].fingerprint(),
            PublicKey::from_ed25519_raw(raw).fingerprint()
        );
        Ok(())
    }

    #[test]
    fn several_blocks_and_escaped_newlines() -> Result<(), KeyError> {
        let both = format!("{RSA_SPKI}\n{}", ed25519_public_pem(&[9u8; 32]));
        let set = KeySet::from_pem(&both.replace('\n', "\\n"))?;
        assert_eq!(set.source(), KeySource::Override);
        let kinds: Vec<KeyType> = set.keys().iter().map(PublicKey::kind).collect();
        assert_eq!(kinds, vec![KeyType::Rsa, KeyType::Ed25519]);
        assert!(set.keys().iter().all(|k| k.kid().is_none()));
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_a_usable_public_key() {
        assert_eq!(PublicKey::parse_pem("hello").err(), Some(KeyError::NoPem));
        assert!(matches!(
            PublicKey::parse_pem(RSA_PRIVATE),
            Err(KeyError::PrivateKey(_))
        ));
        assert_eq!(
            PublicKey::parse_pem(RSA_1024).err(),
            Some(KeyError::RsaSize { bits: 1024 })
        );
        assert!(matches!(
            PublicKey::parse_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            Err(KeyError::UnsupportedPem(_))
        ));
        assert!(matches!(
            PublicKey::parse_pem("-----BEGIN PUBLIC KEY-----\nMCow"),
            Err(KeyError::BadPem(_))
        ));
        assert!(matches!(
            PublicKey::parse_pem("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----"),
            Err(KeyError::BadPem(_))
        ));
        let ec = include_str!("testdata/ec-p256-test-key.public.pem");
        assert!(matches!(
            PublicKey::parse_pem(ec),
            Err(KeyError::UnsupportedKeyType(_))
        ));
        // Truncated DER.
        assert!(matches!(
            PublicKey::from_spki_der(&[0x30, 0x05, 0x30]),
            Err(KeyError::BadDer(_))
        ));
    }

    #[test]
    fn a_key_verifies_only_its_pinned_algorithm() -> Result<(), KeyError> {
        let key = PublicKey::parse_pem(RSA_SPKI)?.remove(0);
        assert!(!key.verify("HS256", b"x", b"y"));
        assert!(!key.verify("EdDSA", b"x", b"y"));
        assert!(KeyType::Ed25519.accepts("Ed25519"));
        assert!(!KeyType::Ed25519.accepts("eddsa"));
        Ok(())
    }
}
