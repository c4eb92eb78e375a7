//! License tests: real Ed25519 keys generated at run time, the committed RSA test key
//! (`testdata/rsa-test-key.*`, test-only), and every documented outcome.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use super::*;
use crate::config::MapSource;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const RSA_PRIVATE: &str = include_str!("testdata/rsa-test-key.private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa-test-key.public.pem");
const RSA_PUBLIC_PKCS1: &str = include_str!("testdata/rsa-test-key.public-pkcs1.pem");

/// A fixed "now": 2026-11-18T11:06:40Z.
const NOW: i64 = 1_795_000_000;
const DAY: i64 = 86_400;

struct Ed {
    pair: Ed25519KeyPair,
    pem: String,
}

fn ed_key() -> Result<Ed, Box<dyn std::error::Error>> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
    let raw: [u8; 32] = pair.public_key().as_ref().try_into()?;
    let pem = keys::ed25519_public_pem(&raw);
    Ok(Ed { pair, pem })
}

fn pem_der(pem: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(STANDARD.decode(body)?)
}

fn rsa_key() -> Result<RsaKeyPair, Box<dyn std::error::Error>> {
    Ok(RsaKeyPair::from_pkcs8(&pem_der(RSA_PRIVATE)?).map_err(|e| e.to_string())?)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header), b64(claims))
}

fn sign_ed(key: &Ed, header: Value, claims: &Value) -> String {
    let input = signing_input(&header, claims);
    let signature = key.pair.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn sign_rs(header: Value, claims: &Value) -> Result<String, Box<dyn std::error::Error>> {
    let key = rsa_key()?;
    let input = signing_input(&header, claims);
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .map_err(|e| e.to_string())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

fn sign_hs256(secret: &[u8], header: Value, claims: &Value) -> String {
    let input = signing_input(&header, claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Claims of a license valid for 30 more days.
fn claims() -> Value {
    json!({
        "license_id": "lic_test_0001",
        "account_id": "acc_42",
        "plan_id": "enterprise",
        "iat": NOW - DAY,
        "exp": NOW + 30 * DAY,
        "aud": "mnemom-gateway",
        "feature_flags": {"aip": true, "attestation": false, "beta": "yes"},
        "limits": {"max_agents": 50, "max_requests_per_day": 100000},
        "is_offline": true,
        "max_activations": 3,
        "kid": "lsk-1"
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if let Some(map) = claims.as_object_mut() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_owned(), value);
        }
    }
    claims
}

fn source(token: Option<&str>, pem: Option<&str>) -> MapSource {
    let mut pairs = Vec::new();
    if let Some(t) = token {
        pairs.push((JWT_VARIABLE, t.to_owned()));
    }
    if let Some(p) = pem {
        pairs.push((PUBLIC_KEY_VARIABLE, p.to_owned()));
    }
    MapSource::from_pairs(pairs)
}

fn license(token: &str, pem: &str, now: i64) -> Result<License, ConfigError> {
    License::from_source_at(&source(Some(token), Some(pem)), now)
}

fn token_error(status: &LicenseStatus) -> Option<&TokenError> {
    match status {
        LicenseStatus::Invalid(InvalidReason::Token(e)) => Some(e),
        _ => None,
    }
}

#[test]
fn valid_ed25519_token_is_valid_and_serves() -> TestResult {
    let key = ed_key()?;
    let token = sign_ed(&key, json!({"alg": "EdDSA", "typ": "JWT"}), &claims());
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(
        lic.status_at(NOW),
        LicenseStatus::Valid {
            expires_at: NOW + 30 * DAY
        }
    );
    assert!(lic.gate_at(NOW).is_ok());
    let v = lic.verified().ok_or("not verified")?;
    assert_eq!(v.alg, "EdDSA");
    assert_eq!(v.claims.license_id, "lic_test_0001");
    assert_eq!(v.claims.account_id.as_deref(), Some("acc_42"));
    assert_eq!(v.claims.plan_id.as_deref(), Some("enterprise"));
    assert!(v.claims.is_offline);
    assert_eq!(v.claims.max_activations, Some(3));
    assert_eq!(v.claims.other.get("kid"), Some(&json!("lsk-1")));
    assert_eq!(v.key_source, KeySource::Override);
    let ready = lic.readiness_at(NOW);
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["state"], "valid");
    assert_eq!(ready["proxy"], "serving");
    assert_eq!(ready["license_id"], "lic_test_0001");
    assert_eq!(ready["expires_at"], "2026-12-18T11:06:40Z");
    assert!(ready["latency_ms"].is_number());
    // The fully-specified algorithm name is the same algorithm.
    let token = sign_ed(&key, json!({"alg": "Ed25519"}), &claims());
    assert!(license(&token, &key.pem, NOW)?.gate_at(NOW).is_ok());
    Ok(())
}

#[test]
fn valid_rs256_token_with_spki_or_pkcs1_key() -> TestResult {
    let token = sign_rs(json!({"alg": "RS256", "typ": "JWT"}), &claims())?;
    for pem in [RSA_PUBLIC, RSA_PUBLIC_PKCS1] {
        let lic = license(&token, pem, NOW)?;
        assert_eq!(lic.status_at(NOW).as_str(), "valid", "{pem}");
        assert!(lic.gate_at(NOW).is_ok());
        assert_eq!(lic.verified().map(|v| v.alg.as_str()), Some("RS256"));
    }
    Ok(())
}

#[test]
fn leeway_keeps_a_just_expired_token_valid() -> TestResult {
    let key = ed_key()?;
    let exp = NOW - 30;
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "exp", json!(exp)),
    );
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(lic.status_at(NOW), LicenseStatus::Valid { expires_at: exp });
    Ok(())
}

#[test]
fn expired_within_grace_serves_with_a_warning() -> TestResult {
    let key = ed_key()?;
    let exp = NOW - 3 * DAY;
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "exp", json!(exp)),
    );
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(
        lic.status_at(NOW),
        LicenseStatus::Grace {
            expired_at: exp,
            grace_ends: exp + GRACE_SECS
        }
    );
    assert!(lic.gate_at(NOW).is_ok());
    let ready = lic.readiness_at(NOW);
    assert_eq!(ready["status"], "warning");
    assert_eq!(ready["warning"], GRACE_WARNING);
    assert_eq!(ready["proxy"], "serving");
    assert!(ready["grace_ends"].is_string());
    // Features of a license in grace still apply.
    assert!(!lic.allows("attestation"));
    Ok(())
}

#[test]
fn expired_beyond_grace_is_invalid_and_refused() -> TestResult {
    let key = ed_key()?;
    let exp = NOW - 8 * DAY;
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "exp", json!(exp)),
    );
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(
        lic.status_at(NOW),
        LicenseStatus::Invalid(InvalidReason::Expired {
            expired_at: exp,
            grace_ended: exp + GRACE_SECS
        })
    );
    let refusal = lic.gate_at(NOW).err().ok_or("not refused")?;
    assert_eq!(refusal.to_string(), "License invalid or expired");
    assert!(
        refusal.reason().contains("grace period ended"),
        "{}",
        refusal.reason()
    );
    let ready = lic.readiness_at(NOW);
    assert_eq!(ready["status"], "error");
    assert_eq!(ready["error"], "expired");
    assert_eq!(ready["proxy"], "refusing");
    assert_eq!(ready["license_id"], "lic_test_0001");
    Ok(())
}

#[test]
fn nbf_in_the_future_is_invalid_until_it_arrives() -> TestResult {
    let key = ed_key()?;
    let nbf = NOW + 3600;
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "nbf", json!(nbf)),
    );
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(
        lic.status_at(NOW),
        LicenseStatus::Invalid(InvalidReason::NotYetValid { valid_from: nbf })
    );
    assert!(lic.gate_at(NOW).is_err());
    assert_eq!(lic.readiness_at(NOW)["error"], "not_yet_valid");
    // Within the 60 s leeway it is valid, without parsing the token again.
    assert!(lic.gate_at(nbf - 30).is_ok());
    assert_eq!(lic.status_at(nbf - 30).as_str(), "valid");
    // An `iat` in the future counts the same way.
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "iat", json!(NOW + 600)),
    );
    assert_eq!(
        license(&token, &key.pem, NOW)?.status_at(NOW),
        LicenseStatus::Invalid(InvalidReason::NotYetValid {
            valid_from: NOW + 600
        })
    );
    Ok(())
}

#[test]
fn forged_signatures_are_refused() -> TestResult {
    let pinned = ed_key()?;
    let attacker = ed_key()?;
    // Signed by another key.
    let forged = sign_ed(&attacker, json!({"alg": "EdDSA"}), &claims());
    let lic = license(&forged, &pinned.pem, NOW)?;
    assert_eq!(
        token_error(&lic.status_at(NOW)),
        Some(&TokenError::BadSignature)
    );
    assert!(lic.gate_at(NOW).is_err());
    assert!(lic.verified().is_none());
    // A genuine token whose claims were edited.
    let genuine = sign_ed(&pinned, json!({"alg": "EdDSA"}), &claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    let edited = with(claims(), "exp", json!(NOW + 3650 * DAY));
    let tampered = format!("{}.{}.{}", parts[0], b64(&edited), parts[2]);
    let lic = license(&tampered, &pinned.pem, NOW)?;
    assert_eq!(
        token_error(&lic.status_at(NOW)),
        Some(&TokenError::BadSignature)
    );
    // RS256 with one signature bit flipped, or with the signature cut short.
    let rs = sign_rs(json!({"alg": "RS256"}), &claims())?;
    let (input, signature) = rs.rsplit_once('.').ok_or("no signature")?;
    let mut signature = URL_SAFE_NO_PAD.decode(signature)?;
    signature[10] ^= 1;
    let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let short = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature[..200]));
    for forged in [flipped, short] {
        let lic = license(&forged, RSA_PUBLIC, NOW)?;
        assert_eq!(
            token_error(&lic.status_at(NOW)),
            Some(&TokenError::BadSignature)
        );
    }
    // Under the embedded key set, a token signed by anyone else.
    let lic = License::from_source_at(&source(Some(&forged_ed(&attacker)), None), NOW)?;
    assert_eq!(
        token_error(&lic.status_at(NOW)),
        Some(&TokenError::BadSignature)
    );
    Ok(())
}

fn forged_ed(attacker: &Ed) -> String {
    sign_ed(attacker, json!({"alg": "EdDSA"}), &claims())
}

#[test]
fn alg_none_is_refused() -> TestResult {
    let key = ed_key()?;
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!("{}.", signing_input(&json!({"alg": alg}), &claims()));
        let lic = license(&unsigned, &key.pem, NOW)?;
        assert_eq!(token_error(&lic.status_at(NOW)), Some(&TokenError::AlgNone));
        assert!(lic.gate_at(NOW).is_err());
        assert_eq!(lic.readiness_at(NOW)["error"], "alg_none");
    }
    Ok(())
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() -> TestResult {
    let key = ed_key()?;
    for (pem, secret) in [
        (RSA_PUBLIC, RSA_PUBLIC.as_bytes().to_vec()),
        (RSA_PUBLIC, pem_der(RSA_PUBLIC)?),
        (RSA_PUBLIC_PKCS1, RSA_PUBLIC_PKCS1.as_bytes().to_vec()),
        (key.pem.as_str(), key.pem.as_bytes().to_vec()),
    ] {
        for alg in ["HS256", "HS384", "HS512", "hs256"] {
            let token = sign_hs256(&secret, json!({"alg": alg, "typ": "JWT"}), &claims());
            let lic = license(&token, pem, NOW)?;
            assert_eq!(
                token_error(&lic.status_at(NOW)),
                Some(&TokenError::Symmetric(alg.to_owned()))
            );
            assert!(lic.gate_at(NOW).is_err());
        }
    }
    // The same MAC labelled RS256 does not verify as RSA either.
    let token = sign_hs256(RSA_PUBLIC.as_bytes(), json!({"alg": "RS256"}), &claims());
    let lic = license(&token, RSA_PUBLIC, NOW)?;
    assert_eq!(
        token_error(&lic.status_at(NOW)),
        Some(&TokenError::BadSignature)
    );
    Ok(())
}

#[test]
fn garbage_is_invalid() -> TestResult {
    let key = ed_key()?;
    let big = "a".repeat(token::MAX_TOKEN_BYTES + 1);
    let cases = [
        "garbage",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.!!!.!!!",
        "eyJhbGciOiJFZERTQSJ9.e30",
        "bm90IGpzb24.e30.AAAA",
        "WzFd.e30.AAAA",
        big.as_str(),
    ];
    for garbage in cases {
        let lic = license(garbage, &key.pem, NOW)?;
        let status = lic.status_at(NOW);
        assert!(
            matches!(
                token_error(&status),
                Some(TokenError::Malformed(_) | TokenError::TooLarge { .. })
            ),
            "{garbage}: {status:?}"
        );
        assert!(lic.gate_at(NOW).is_err());
        assert_eq!(lic.readiness_at(NOW)["error"], "malformed");
    }
    // An unknown or asymmetric-but-unsupported algorithm.
    let token = format!(
        "{}.AAAA",
        signing_input(&json!({"alg": "ES256"}), &claims())
    );
    assert_eq!(
        token_error(&license(&token, &key.pem, NOW)?.status_at(NOW)),
        Some(&TokenError::UnsupportedAlg("ES256".into()))
    );
    let token = format!("{}.AAAA", signing_input(&json!({"typ": "JWT"}), &claims()));
    assert!(matches!(
        token_error(&license(&token, &key.pem, NOW)?.status_at(NOW)),
        Some(TokenError::Malformed(_))
    ));
    Ok(())
}

#[test]
fn kid_selects_the_key_and_an_unknown_kid_is_refused() -> TestResult {
    let a = ed_key()?;
    let b = ed_key()?;
    let key_of =
        |k: &Ed| -> Result<PublicKey, KeyError> { Ok(PublicKey::parse_pem(&k.pem)?.remove(0)) };
    let set = KeySet::new(vec![
        key_of(&a)?.with_kid("k-a"),
        key_of(&b)?.with_kid("k-b"),
    ]);
    let ok = |token: &str| License::new(Some(token), &set, NOW).status_at(NOW);
    assert_eq!(
        ok(&sign_ed(
            &a,
            json!({"alg": "EdDSA", "kid": "k-a"}),
            &claims()
        ))
        .as_str(),
        "valid"
    );
    assert_eq!(
        ok(&sign_ed(
            &b,
            json!({"alg": "EdDSA", "kid": "k-b"}),
            &claims()
        ))
        .as_str(),
        "valid"
    );
    // No kid: every key of the right type is tried.
    assert_eq!(
        ok(&sign_ed(&b, json!({"alg": "EdDSA"}), &claims())).as_str(),
        "valid"
    );
    // A kid the set does not have.
    let status = ok(&sign_ed(
        &a,
        json!({"alg": "EdDSA", "kid": "k-zzz"}),
        &claims(),
    ));
    assert_eq!(
        token_error(&status),
        Some(&TokenError::UnknownKid("k-zzz".into()))
    );
    // A kid naming the other key: that key alone is tried.
    let status = ok(&sign_ed(
        &a,
        json!({"alg": "EdDSA", "kid": "k-b"}),
        &claims(),
    ));
    assert_eq!(token_error(&status), Some(&TokenError::BadSignature));
    // The embedded set names its keys too.
    let embedded = KeySet::embedded()?;
    let status = License::new(
        Some(&sign_ed(
            &a,
            json!({"alg": "EdDSA", "kid": "lsk-test"}),
            &claims(),
        )),
        &embedded,
        NOW,
    )
    .status_at(NOW);
    assert_eq!(
        token_error(&status),
        Some(&TokenError::UnknownKid("lsk-test".into()))
    );
    let status = License::new(
        Some(&sign_ed(
            &a,
            json!({"alg": "EdDSA", "kid": "mnemom-license-2026-11"}),
            &claims(),
        )),
        &embedded,
        NOW,
    )
    .status_at(NOW);
    assert_eq!(token_error(&status), Some(&TokenError::BadSignature));
    // Override keys carry no kid: a token's kid does not select among them.
    let lic = license(
        &sign_ed(&a, json!({"alg": "EdDSA", "kid": "anything"}), &claims()),
        &a.pem,
        NOW,
    )?;
    assert_eq!(lic.status_at(NOW).as_str(), "valid");
    Ok(())
}

#[test]
fn algorithm_is_pinned_by_the_key_type() -> TestResult {
    let ed = ed_key()?;
    // An EdDSA token against an RSA-only key set.
    let token = sign_ed(&ed, json!({"alg": "EdDSA"}), &claims());
    let status = license(&token, RSA_PUBLIC, NOW)?.status_at(NOW);
    assert!(
        matches!(
            token_error(&status),
            Some(TokenError::AlgKeyMismatch { .. })
        ),
        "{status:?}"
    );
    // An RS256 token whose kid names an Ed25519 key.
    let set = KeySet::new(vec![
        PublicKey::parse_pem(&ed.pem)?.remove(0).with_kid("ed"),
    ]);
    let token = sign_rs(json!({"alg": "RS256", "kid": "ed"}), &claims())?;
    let status = License::new(Some(&token), &set, NOW).status_at(NOW);
    assert!(
        matches!(
            token_error(&status),
            Some(TokenError::AlgKeyMismatch { .. })
        ),
        "{status:?}"
    );
    // Extensions marked critical are not understood, so refused.
    let token = sign_ed(
        &ed,
        json!({"alg": "EdDSA", "crit": ["b64"], "b64": false}),
        &claims(),
    );
    let status = license(&token, &ed.pem, NOW)?.status_at(NOW);
    assert!(
        matches!(token_error(&status), Some(TokenError::Critical(_))),
        "{status:?}"
    );
    Ok(())
}

#[test]
fn claims_are_checked() -> TestResult {
    let key = ed_key()?;
    let status_of = |claims: Value| -> Result<LicenseStatus, ConfigError> {
        Ok(license(
            &sign_ed(&key, json!({"alg": "EdDSA"}), &claims),
            &key.pem,
            NOW,
        )?
        .status_at(NOW))
    };
    for (name, value) in [
        ("license_id", Value::Null),
        ("license_id", json!("  ")),
        ("license_id", json!(42)),
        ("exp", Value::Null),
        ("exp", json!("tomorrow")),
        ("nbf", json!("soon")),
        ("feature_flags", json!(["aip"])),
        ("limits", json!(5)),
        ("is_offline", json!("yes")),
        ("account_id", json!(7)),
    ] {
        let status = status_of(with(claims(), name, value.clone()))?;
        assert!(
            matches!(token_error(&status), Some(TokenError::Claims(_))),
            "{name}={value}: {status:?}"
        );
    }
    let status = status_of(with(claims(), "aud", json!("another-product")))?;
    assert!(matches!(
        token_error(&status),
        Some(TokenError::Audience(_))
    ));
    let status = status_of(with(claims(), "aud", json!(["x", "mnemom-gateway"])))?;
    assert_eq!(status.as_str(), "valid");
    let status = status_of(with(claims(), "aud", Value::Null))?;
    assert_eq!(status.as_str(), "valid");
    // Fractional NumericDates are accepted.
    let status = status_of(with(claims(), "exp", json!((NOW + DAY) as f64 + 0.5)))?;
    assert_eq!(
        status,
        LicenseStatus::Valid {
            expires_at: NOW + DAY
        }
    );
    let status = status_of(with(claims(), "license_id", Value::Null))?;
    assert_eq!(
        status.to_owned(),
        LicenseStatus::Invalid(InvalidReason::Token(TokenError::Claims(
            "`license_id` is missing".into()
        )))
    );
    Ok(())
}

#[test]
fn feature_flags_and_limits_are_honoured() -> TestResult {
    let key = ed_key()?;
    let token = sign_ed(&key, json!({"alg": "EdDSA"}), &claims());
    let lic = license(&token, &key.pem, NOW)?;
    assert_eq!(lic.feature("aip"), Some(true));
    assert_eq!(lic.feature("attestation"), Some(false));
    assert_eq!(lic.feature("beta"), None);
    assert_eq!(lic.feature("unknown"), None);
    assert!(lic.allows("aip"));
    assert!(!lic.allows("attestation"));
    assert!(lic.allows("unknown"));
    assert_eq!(lic.limit("max_agents"), Some(&json!(50)));
    let v = lic.verified().ok_or("not verified")?;
    assert_eq!(v.claims.ignored_flags, vec!["beta".to_owned()]);
    // The same claims in a license that is no longer usable grant nothing.
    let expired = with(claims(), "exp", json!(NOW - 30 * DAY));
    let lic = license(
        &sign_ed(&key, json!({"alg": "EdDSA"}), &expired),
        &key.pem,
        NOW,
    )?;
    assert_eq!(lic.feature("aip"), None);
    assert!(!lic.allows("aip"));
    assert_eq!(lic.limit("max_agents"), None);
    // Unlicensed: the license restricts nothing.
    let lic = License::from_source_at(&source(None, None), NOW)?;
    assert_eq!(lic.feature("aip"), None);
    assert!(lic.allows("aip"));
    // Flags turned off in a valid license are off.
    let off = with(claims(), "feature_flags", json!({"aip": false}));
    let lic = license(&sign_ed(&key, json!({"alg": "EdDSA"}), &off), &key.pem, NOW)?;
    assert!(!lic.allows("aip"));
    Ok(())
}

#[test]
fn missing_token_runs_unlicensed() -> TestResult {
    for src in [source(None, None), source(Some("   "), None)] {
        let lic = License::from_source_at(&src, NOW)?;
        assert_eq!(lic.status_at(NOW), LicenseStatus::Missing);
        assert!(lic.gate_at(NOW).is_ok());
        assert_eq!(lic.key_source(), KeySource::Embedded);
        let ready = lic.readiness_at(NOW);
        assert_eq!(ready["status"], "unlicensed");
        assert_eq!(ready["proxy"], "serving");
    }
    assert!(License::unlicensed().gate().is_ok());
    Ok(())
}

#[test]
fn time_moves_a_running_license_from_valid_to_grace_to_invalid() -> TestResult {
    let key = ed_key()?;
    let exp = NOW + DAY;
    let token = sign_ed(
        &key,
        json!({"alg": "EdDSA"}),
        &with(claims(), "exp", json!(exp)),
    );
    let lic = license(&token, &key.pem, NOW)?;
    let registry = Registry::new();
    lic.register_metrics(&registry)?;
    let gauge = |state: &str| -> Option<f64> {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "gateway_license_state")?
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == state))
            .map(|m| m.get_gauge().get_value())
    };
    let expiry = || -> Option<f64> {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "gateway_license_expiry_timestamp_seconds")
            .map(|f| f.get_metric()[0].get_gauge().get_value())
    };
    assert_eq!(gauge("valid"), Some(1.0));
    assert_eq!(gauge("grace"), Some(0.0));
    assert_eq!(gauge("unlicensed"), Some(0.0));
    assert_eq!(expiry(), Some(exp as f64));

    assert!(lic.gate_at(exp + LEEWAY_SECS).is_ok());
    assert_eq!(lic.status_at(exp + LEEWAY_SECS).as_str(), "valid");
    // The gate notices the transition itself.
    assert!(lic.gate_at(exp + LEEWAY_SECS + 1).is_ok());
    assert_eq!(gauge("valid"), Some(0.0));
    assert_eq!(gauge("grace"), Some(1.0));
    assert_eq!(lic.readiness_at(exp + DAY)["warning"], GRACE_WARNING);
    assert!(lic.gate_at(exp + GRACE_SECS - 1).is_ok());
    assert!(lic.gate_at(exp + GRACE_SECS).is_err());
    assert_eq!(gauge("grace"), Some(0.0));
    assert_eq!(gauge("invalid"), Some(1.0));
    assert_eq!(expiry(), Some(exp as f64));
    // Registering twice is refused rather than silently duplicated.
    assert!(lic.register_metrics(&Registry::new()).is_err());
    Ok(())
}

#[test]
fn metrics_of_an_unlicensed_gateway() -> TestResult {
    let lic = License::from_source_at(&source(None, None), NOW)?;
    let registry = Registry::new();
    lic.register_metrics(&registry)?;
    let families = registry.gather();
    let state = families
        .iter()
        .find(|f| f.name() == "gateway_license_state")
        .ok_or("no state family")?;
    assert_eq!(state.get_metric().len(), 4);
    for m in state.get_metric() {
        let label = m.get_label()[0].value();
        assert_eq!(
            m.get_gauge().get_value(),
            f64::from(u8::from(label == "unlicensed")),
            "{label}"
        );
    }
    Ok(())
}

#[test]
fn an_unusable_public_key_is_a_configuration_error() {
    for pem in [
        "not a key",
        include_str!("testdata/rsa-test-key.private.pem"),
        include_str!("testdata/rsa-1024-test-key.public.pem"),
    ] {
        let err = License::from_source_at(&source(Some("x.y.z"), Some(pem)), NOW).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.starts_with("invalid configuration: MNEMOM_LICENSE_PUBLIC_KEY: "),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_refresher_runs_and_stops() -> TestResult {
    let lic = Arc::new(License::from_source_at(&source(None, None), NOW)?);
    let task = lic.spawn_refresher(Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(20)).await;
    task.abort();
    assert_eq!(lic.status(), LicenseStatus::Missing);
    Ok(())
}

#[test]
fn refusal_matches_the_original_body() {
    assert_eq!(
        LicenseRefusal::original_body(),
        json!({"error": "License invalid or expired", "type": "license_error"})
    );
    assert_eq!(LicenseRefusal::STATUS, 403);
}

#[test]
fn inspect_reports_what_a_token_grants() -> TestResult {
    let key = ed_key()?;
    let src = source(None, Some(&key.pem));
    let token = sign_ed(&key, json!({"alg": "EdDSA", "kid": "k1"}), &claims());
    let out = inspect_command_with(Some(&token), &src, false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_VALID, "{}", out.text);
    for needle in [
        "VALID: expires 2026-12-18T11:06:40Z",
        "EdDSA",
        "k1",
        "lic_test_0001",
        "enterprise",
        "aip",
        "attestation",
        "max_agents",
        "ignored (not a boolean)",
        "sha256",
        "MNEMOM_LICENSE_PUBLIC_KEY",
    ] {
        assert!(out.text.contains(needle), "missing {needle}:\n{}", out.text);
    }
    // JSON, from standard input.
    let out = inspect_command_with(Some("-"), &src, true, &mut token.as_bytes(), NOW);
    assert_eq!(out.exit_code, EXIT_VALID);
    let report: Value = serde_json::from_str(&out.text)?;
    assert_eq!(report["status"], "valid");
    assert_eq!(report["features"]["aip"], true);
    assert_eq!(report["limits"]["max_agents"], 50);
    assert_eq!(report["claims"]["license_id"], "lic_test_0001");
    assert_eq!(report["header"]["kid"], "k1");
    // Grace: still exit 0.
    let expired = with(claims(), "exp", json!(NOW - DAY));
    let grace = sign_ed(&key, json!({"alg": "EdDSA"}), &expired);
    let out = inspect_command_with(Some(&grace), &src, false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_VALID);
    assert!(out.text.contains("GRACE"), "{}", out.text);
    Ok(())
}

#[test]
fn inspect_explains_an_invalid_token() -> TestResult {
    let key = ed_key()?;
    let attacker = ed_key()?;
    let token = sign_ed(&attacker, json!({"alg": "EdDSA"}), &claims());
    // The token comes from MNEMOM_LICENSE_JWT when no argument is given.
    let src = source(Some(&token), Some(&key.pem));
    let out = inspect_command_with(None, &src, false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_INVALID);
    assert!(out.text.contains("INVALID (bad_signature)"), "{}", out.text);
    assert!(out.text.contains("UNVERIFIED"), "{}", out.text);
    assert!(out.text.contains("403 license_error"), "{}", out.text);
    let out = inspect_command_with(None, &src, true, &mut std::io::empty(), NOW);
    let report: Value = serde_json::from_str(&out.text)?;
    assert_eq!(report["status"], "invalid");
    assert_eq!(report["reason_code"], "bad_signature");
    assert_eq!(report["unverified_claims"]["license_id"], "lic_test_0001");
    // HS256 and garbage.
    let hs = sign_hs256(key.pem.as_bytes(), json!({"alg": "HS256"}), &claims());
    let out = inspect_command_with(Some(&hs), &src, false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_INVALID);
    assert!(out.text.contains("symmetric"), "{}", out.text);
    let out = inspect_command_with(Some("garbage"), &src, false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_INVALID);
    // Nothing to inspect, and an unusable key.
    let out = inspect_command_with(None, &source(None, None), false, &mut std::io::empty(), NOW);
    assert_eq!(out.exit_code, EXIT_NO_TOKEN);
    let out = inspect_command_with(
        Some("-"),
        &source(None, None),
        false,
        &mut "\n".as_bytes(),
        NOW,
    );
    assert_eq!(out.exit_code, EXIT_NO_TOKEN);
    let out = inspect_command_with(
        Some(&token),
        &source(None, Some("junk")),
        false,
        &mut std::io::empty(),
        NOW,
    );
    assert_eq!(out.exit_code, EXIT_CONFIG);
    assert!(out.text.contains("MNEMOM_LICENSE_PUBLIC_KEY"));
    Ok(())
}

/// A token really signed by the embedded key's private half (which is not in the repository):
/// valid from 2026-01-01 to 2026-01-02, so expired beyond grace and granting nothing.
const EMBEDDED_SIGNED_EXPIRED: &str = include_str!("testdata/embedded-key-expired.jwt");

#[test]
fn the_embedded_key_verifies_a_real_token() -> TestResult {
    let exp = 1_767_312_000;
    let lic = License::from_source_at(&source(Some(EMBEDDED_SIGNED_EXPIRED), None), exp - 3600)?;
    let v = lic.verified().ok_or("embedded key did not verify")?;
    assert_eq!(v.kid.as_deref(), Some("mnemom-license-2026-11"));
    assert_eq!(v.key_source, KeySource::Embedded);
    assert_eq!(v.claims.license_id, "lic_embedded_key_selftest");
    assert_eq!(lic.status_at(exp - 3600).as_str(), "valid");
    assert_eq!(lic.status_at(exp + DAY).as_str(), "grace");
    assert_eq!(
        lic.status_at(NOW),
        LicenseStatus::Invalid(InvalidReason::Expired {
            expired_at: exp,
            grace_ended: exp + GRACE_SECS
        })
    );
    // With an override key, the embedded key no longer counts.
    let key = ed_key()?;
    let lic = license(EMBEDDED_SIGNED_EXPIRED, &key.pem, exp - 3600)?;
    assert_eq!(
        token_error(&lic.status_at(exp - 3600)),
        Some(&TokenError::BadSignature)
    );
    Ok(())
}
