//! Key files on disk and key ids, checked against independent
//! implementations (sha2 + hand-written canonical JSON, jsonwebtoken's JWK,
//! aws-lc's PKCS#8).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use amesh_trust::{EcPublicJwk, KeyError, PublicKey, SigningKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// RFC 7638 §3 by hand: required members only, lexicographic order, no
/// whitespace, then base64url(SHA-256).
fn independent_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[test]
fn jwk_thumbprint_matches_rfc7638_for_the_rfc7517_p256_key() {
    let jwk = EcPublicJwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4".into(),
        y: "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM".into(),
        kid: None,
        alg: None,
        use_: Some("sig".into()),
    };
    let expected = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";
    assert_eq!(independent_thumbprint(&jwk.x, &jwk.y), expected);
    assert_eq!(PublicKey::from_jwk(&jwk).expect("valid").kid(), expected);
}

#[test]
fn kid_of_generated_keys_matches_independent_thumbprints() {
    for _ in 0..8 {
        let key = SigningKey::generate().expect("key");
        let jwk = key.public_jwk();
        assert_eq!(key.kid(), independent_thumbprint(&jwk.x, &jwk.y));
        let theirs: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(serde_json::to_value(&jwk).expect("json"))
                .expect("jsonwebtoken parses our JWK");
        assert_eq!(
            theirs
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .expect("thumbprint"),
            key.kid()
        );
    }
}

#[test]
fn public_jwk_has_the_fields_a_trust_card_needs() {
    let key = SigningKey::generate().expect("key");
    let json = serde_json::to_value(key.public_jwk()).expect("json");
    let mut fields: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(json["alg"], "ES256");
    assert_eq!(json["use"], "sig");
    assert_eq!(json["kid"], key.kid());
}

#[test]
fn key_file_is_created_with_mode_0600_and_reloads_to_the_same_kid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keys/nested/gateway.pem");
    let created = SigningKey::load_or_create(&path).expect("creates");
    let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let text = fs::read_to_string(&path).expect("reads");
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));

    let reloaded = SigningKey::load_or_create(&path).expect("reloads");
    assert_eq!(reloaded.kid(), created.kid());
    assert_eq!(SigningKey::load(&path).expect("loads").kid(), created.kid());
    assert_eq!(
        fs::read_to_string(&path).expect("reads"),
        text,
        "not rewritten"
    );
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    SigningKey::load_or_create(&path).expect("creates");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = SigningKey::load_or_create(&path).expect_err("world-readable");
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn unreadable_key_file_is_an_error_and_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.pem");
    fs::write(&path, "not a key").expect("writes");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(matches!(
        SigningKey::load_or_create(&path),
        Err(KeyError::Pem(_))
    ));
    assert_eq!(fs::read_to_string(&path).expect("reads"), "not a key");
}

#[test]
fn missing_key_file_is_an_error_for_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        SigningKey::load(dir.path().join("absent.pem")),
        Err(KeyError::Io { action: "read", .. })
    ));
}

#[test]
fn key_written_by_aws_lc_before_keys_moved_to_p256_still_loads() {
    // Key files made before p256 held the keys are aws-lc's PKCS#8 v1.
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("generates");
    let der = pair.to_pkcs8v1().expect("encodes");
    let key = SigningKey::from_pkcs8_der(der.as_ref()).expect("p256 reads aws-lc's PKCS#8");
    let point = pair.public_key().as_ref();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    );
    assert_eq!(key.kid(), independent_thumbprint(&x, &y));
}
