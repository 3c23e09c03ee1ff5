//! Compact JWS (RFC 7515) restricted to ES256, through `jsonwebtoken`.
//!
//! Trust cards, identity tokens, delegations and message signatures are all
//! compact JWS. Taking them apart, checking the signature and decoding the
//! claims is `jsonwebtoken`'s work (with its aws-lc backend), so the parsing
//! an attacker reaches first is the widely reviewed library's, not ours.
//! What stays here is what it cannot say for us:
//!
//! - **Which algorithm was refused.** Its `Header` holds `alg` as an enum of
//!   the algorithms it implements, so a header naming `none` or `es256`
//!   fails to parse as a whole. [`header`] then reads the `alg` member alone
//!   to name it in the error; that path only ever refuses.
//! - **Time.** Its `exp`/`nbf` checks read the system clock, ours take `now`
//!   as an argument: [`verify`] turns all of its claim checks off and the
//!   callers check the times themselves.
//! - **Errors without token material.** Its JSON errors quote the input; we
//!   map every error to a fixed reason.
//!
//! The callers look at the header (algorithm, `typ`, `kid`) before any key,
//! then call [`verify`] with the key the `kid` names, parsed once when its
//! card was accepted ([`PublicKey`]).

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::jwk::PublicKey;

/// The only JWS algorithm amesh signs or accepts.
pub(crate) const ES256: Algorithm = Algorithm::ES256;

/// Its name, as it appears in headers and JWKs.
pub(crate) const ES256_NAME: &str = "ES256";

/// Longest token we look at. Identity tokens are ~400 bytes and cards ~700;
/// anything far above that is refused before it costs a base64 decode.
pub(crate) const MAX_JWS_LEN: usize = 8 * 1024;

/// Why a compact JWS was refused before its claims were compared with
/// anything. Each caller turns it into its own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not a compact JWS with a JSON header and claims of the right shape.
    /// The reasons are fixed strings so that no part of a token ever
    /// reaches an error message.
    Malformed(&'static str),
    /// The header's `alg` is not ES256 (clipped to 64 characters).
    AlgorithmNotAllowed(String),
    /// The signature does not verify with the key.
    BadSignature,
}

/// ES256 and nothing else; no claim checks, because the callers check the
/// registered claims against their own expectations and their own clock.
static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let mut validation = Validation::new(ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation
});

/// A JWS header for amesh: ES256, `typ`, and the signing key's `kid`.
pub(crate) fn new_header(typ: &str, kid: &str) -> Header {
    let mut header = Header::new(ES256);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    header
}

/// Decodes the header of `token`, nothing verified yet, and refuses any
/// algorithm but ES256.
pub(crate) fn header(token: &str) -> Result<Header, Rejected> {
    if token.len() > MAX_JWS_LEN {
        return Err(Rejected::Malformed("longer than 8192 bytes"));
    }
    // jsonwebtoken splits from the right, so `a.b.c.d` would reach it as a
    // header `a.b`; counting first gives the precise reason.
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(Rejected::Malformed("not three dot-separated segments"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| unparsable_header(token, &e))?;
    if header.alg != ES256 {
        return Err(Rejected::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    Ok(header)
}

/// Why jsonwebtoken could not read a header. A header it cannot represent
/// may still be a well-formed header naming an algorithm it does not know;
/// that one is reported as the algorithm it is.
fn unparsable_header(token: &str, error: &JwtError) -> Rejected {
    use serde_json::error::Category;

    /// The one member read when the whole header did not parse.
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }

    let category = match error.kind() {
        ErrorKind::Json(e) => e.classify(),
        ErrorKind::Base64(_) => return Rejected::Malformed("header is not base64url"),
        ErrorKind::Utf8(_) => return Rejected::Malformed("header is not UTF-8"),
        _ => return Rejected::Malformed("not a compact JWS"),
    };
    let segment = token.split('.').next().unwrap_or_default();
    let alg = URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|json| serde_json::from_slice::<AlgOnly>(&json).ok())
        .map(|h| h.alg);
    match alg {
        Some(alg) if alg != ES256_NAME => Rejected::AlgorithmNotAllowed(clip(&alg)),
        _ if category == Category::Data => {
            Rejected::Malformed("header lacks a field or has one of the wrong type")
        }
        _ => Rejected::Malformed("header is not a JSON object"),
    }
}

/// Verifies the ES256 signature of `token` with `key` and decodes its
/// claims into `T`. The header has been looked at already ([`header`]); the
/// claims are checked by the caller.
pub(crate) fn verify<T: DeserializeOwned>(token: &str, key: &PublicKey) -> Result<T, Rejected> {
    jsonwebtoken::decode::<T>(token, key.decoding_key(), &VALIDATION)
        .map(|data| data.claims)
        .map_err(|e| rejected(&e))
}

/// The claims of `token` without verifying anything.
///
/// Only for a trust card, which is signed by the key it carries: the key
/// has to be read from the claims before the signature can be checked, and
/// [`verify`] then checks it.
pub(crate) fn unverified_claims<T: DeserializeOwned>(token: &str) -> Result<T, Rejected> {
    jsonwebtoken::dangerous::insecure_decode_claims::<T>(token).map_err(|e| rejected(&e))
}

/// A jsonwebtoken error as a fixed reason. The header parsed before (in
/// [`header`]), so a JSON error here is about the claims.
fn rejected(error: &JwtError) -> Rejected {
    use serde_json::error::Category;
    match error.kind() {
        ErrorKind::InvalidSignature => Rejected::BadSignature,
        ErrorKind::Json(e) if e.classify() == Category::Data => {
            Rejected::Malformed("claims lack a field or have one of the wrong type")
        }
        ErrorKind::Json(_) => Rejected::Malformed("claims are not a JSON object"),
        ErrorKind::Base64(_) => Rejected::Malformed("signature or claims are not base64url"),
        ErrorKind::Utf8(_) => Rejected::Malformed("claims are not UTF-8"),
        // What `Header::from_encoded` refuses: a `crit` other than RFC
        // 7797's `b64`, or `b64: false` (an unencoded payload).
        ErrorKind::InvalidToken => {
            Rejected::Malformed("header has a `crit` or `b64` parameter that is not supported")
        }
        _ => Rejected::Malformed("refused by the JWS library"),
    }
}

/// Base64url without padding, as JWS wants it.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url into exactly `N` bytes.
pub(crate) fn b64_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // The decoder needs room for the rounded-up length; the exact length
    // check makes anything but N bytes fail.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

/// A value from a token or card, shortened for an error.
///
/// Header fields like `alg` and `kid` are attacker-chosen: errors keep them
/// so an operator can see what arrived, but never more than 64 characters.
/// Error messages print them with `{:?}`, which escapes control characters.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

/// The JSON of one segment of a token, for tests that look inside.
#[cfg(test)]
pub(crate) fn segment_json(token: &str, index: usize) -> serde_json::Value {
    let segment = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;
    use serde_json::{Value, json};

    fn unsigned(header: &str, payload: &str) -> String {
        format!("{}.{}.", b64(header), b64(payload))
    }

    /// A token with any header, genuinely signed by `key`.
    fn signed(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = key.sign_raw(input.as_bytes()).expect("signs");
        format!("{input}.{signature}")
    }

    #[test]
    fn jsonwebtoken_has_one_crypto_provider_from_its_features() {
        // With both of its backends enabled (some other crate turning on
        // `rust_crypto`) it would have no default and panic on first use.
        assert!(jsonwebtoken::crypto::CryptoProvider::try_get_default().is_some());
    }

    #[test]
    fn header_is_read_and_es256_accepted() {
        let t = unsigned(r#"{"alg":"ES256","kid":"k","typ":"JWT"}"#, "{}");
        let h = header(&t).expect("parses");
        assert_eq!(h.kid.as_deref(), Some("k"));
        assert_eq!(h.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn two_or_four_segments_are_malformed() {
        let bad = Err(Rejected::Malformed("not three dot-separated segments"));
        assert_eq!(header("a.b"), bad);
        assert_eq!(header("a.b.c.d"), bad);
        assert_eq!(header(""), bad);
    }

    #[test]
    fn algorithms_jsonwebtoken_knows_and_does_not_know_are_named() {
        for (alg, found) in [
            ("HS256", "HS256"),
            ("EdDSA", "EdDSA"),
            ("none", "none"),
            ("es256", "es256"),
        ] {
            let t = unsigned(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(
                header(&t),
                Err(Rejected::AlgorithmNotAllowed(found.into())),
                "{alg}"
            );
        }
    }

    #[test]
    fn duplicate_alg_in_header_is_malformed() {
        for h in [
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","alg":"ES256"}"#,
        ] {
            assert!(
                matches!(header(&unsigned(h, "{}")), Err(Rejected::Malformed(_))),
                "{h}"
            );
        }
    }

    #[test]
    fn header_without_alg_or_not_json_is_malformed() {
        assert_eq!(
            header(&unsigned(r#"{"kid":"k"}"#, "{}")),
            Err(Rejected::Malformed(
                "header lacks a field or has one of the wrong type"
            ))
        );
        assert_eq!(
            header(&unsigned("not json", "{}")),
            Err(Rejected::Malformed("header is not a JSON object"))
        );
        assert_eq!(
            header("!!.e30.x"),
            Err(Rejected::Malformed("header is not base64url"))
        );
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let t = "a".repeat(MAX_JWS_LEN + 1);
        assert_eq!(
            header(&t),
            Err(Rejected::Malformed("longer than 8192 bytes"))
        );
    }

    #[test]
    fn signed_token_verifies_and_yields_its_claims() {
        let key = SigningKey::generate().expect("key");
        let t = signed(&key, &json!({"alg": "ES256"}), &json!({"sub": "alice"}));
        let claims: Value = verify(&t, key.public_key()).expect("verifies");
        assert_eq!(claims["sub"], "alice");
        let other = SigningKey::generate().expect("key");
        assert_eq!(
            verify::<Value>(&t, other.public_key()),
            Err(Rejected::BadSignature)
        );
    }

    #[test]
    fn crit_header_is_refused_even_when_signed() {
        let key = SigningKey::generate().expect("key");
        let t = signed(
            &key,
            &json!({"alg": "ES256", "crit": ["exp"], "exp": 1}),
            &json!({}),
        );
        assert!(header(&t).is_ok());
        assert_eq!(
            verify::<Value>(&t, key.public_key()),
            Err(Rejected::Malformed(
                "header has a `crit` or `b64` parameter that is not supported"
            ))
        );
    }

    #[test]
    fn signature_of_another_length_does_not_verify() {
        let key = SigningKey::generate().expect("key");
        let t = signed(&key, &json!({"alg": "ES256"}), &json!({}));
        let (input, _) = t.rsplit_once('.').expect("dots");
        for len in [63, 65, 72] {
            let forged = format!("{input}.{}", b64(vec![7u8; len]));
            assert_eq!(
                verify::<Value>(&forged, key.public_key()),
                Err(Rejected::BadSignature),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn claims_of_the_wrong_shape_are_malformed_without_quoting_them() {
        #[derive(Debug, Deserialize)]
        struct Claims {
            #[allow(dead_code)]
            sub: String,
        }
        let key = SigningKey::generate().expect("key");
        let t = signed(&key, &json!({"alg": "ES256"}), &json!({"sub": 42}));
        let err = verify::<Claims>(&t, key.public_key()).expect_err("sub is a number");
        assert_eq!(
            err,
            Rejected::Malformed("claims lack a field or have one of the wrong type")
        );
    }

    #[test]
    fn b64_fixed_wants_the_exact_length() {
        assert_eq!(b64_fixed::<32>(&b64([1u8; 32])), Some([1u8; 32]));
        assert_eq!(b64_fixed::<32>(&b64([1u8; 31])), None);
        assert_eq!(b64_fixed::<32>(&b64([1u8; 33])), None);
        // Padding is not base64url-without-padding.
        assert_eq!(b64_fixed::<32>(&format!("{}=", b64([1u8; 32]))), None);
    }

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones() {
        assert_eq!(clip("none"), "none");
        let long = "x".repeat(100);
        assert_eq!(clip(&long).chars().count(), 65);
    }
}
