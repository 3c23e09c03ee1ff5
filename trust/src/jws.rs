//! Compact JWS (RFC 7515) restricted to ES256, on keys parsed once.
//!
//! Trust cards and identity tokens are both compact JWS. We do the framing
//! here instead of through `jsonwebtoken` because its aws-lc backend
//! re-parses the PKCS#8 private key (with a full key check, i.e. a scalar
//! multiplication) on every signature and the public key on every
//! verification, its `Header` type cannot even represent `alg: none` (so the
//! precise "algorithm not allowed" error needs our own header parse anyway),
//! and its time checks read the system clock where we take `now` as an
//! argument. What remains after those three — base64url and one ECDSA call —
//! is this file; the ECDSA itself is aws-lc's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The only JWS algorithm amesh signs or accepts.
pub(crate) const ES256: &str = "ES256";

/// Longest token we look at. Identity tokens are ~400 bytes and cards ~700;
/// anything far above that is refused before it costs a base64 decode.
pub(crate) const MAX_JWS_LEN: usize = 8 * 1024;

/// Length of a fixed-size (r || s) P-256 ECDSA signature.
pub(crate) const ES256_SIGNATURE_LEN: usize = 64;

/// Why a compact JWS could not even be taken apart. The reasons are fixed
/// strings so that no part of a token ever reaches an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// A compact JWS split into its three segments, nothing decoded yet except
/// the header. Borrowed from the token string.
pub(crate) struct Compact<'a> {
    pub(crate) header: Header,
    /// `base64url(header) '.' base64url(payload)`: the bytes that are signed.
    pub(crate) signing_input: &'a str,
    pub(crate) payload_b64: &'a str,
    pub(crate) signature_b64: &'a str,
}

/// The header fields we read. Unknown fields are ignored, duplicates are an
/// error (serde refuses `{"alg":"ES256","alg":"none"}`).
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    /// RFC 7515 §4.1.11: extensions the recipient must understand. We
    /// understand none, so any `crit` makes the token unacceptable.
    #[serde(default)]
    pub(crate) crit: Option<serde::de::IgnoredAny>,
}

/// Splits `token` into header, payload and signature and decodes the header.
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, Malformed> {
    if token.len() > MAX_JWS_LEN {
        return Err(Malformed("longer than 8192 bytes"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("not three dot-separated segments"));
    };
    let header: Header = decode_json(header_b64, Segment::Header)?;
    if header.crit.is_some() {
        return Err(Malformed(
            "header has a `crit` parameter, none is supported",
        ));
    }
    Ok(Compact {
        header,
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        payload_b64,
        signature_b64,
    })
}

/// Which JSON segment of a JWS is being decoded, for the error message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Segment {
    Header,
    Claims,
}

/// Base64url-decodes a segment and parses it as JSON into `T`.
///
/// serde's own messages are not passed on because they quote the offending
/// value, and no part of a token may reach an error message.
pub(crate) fn decode_json<T: DeserializeOwned>(
    segment_b64: &str,
    segment: Segment,
) -> Result<T, Malformed> {
    use serde_json::error::Category;
    let bytes = URL_SAFE_NO_PAD
        .decode(segment_b64)
        .map_err(|_| match segment {
            Segment::Header => Malformed("header is not base64url"),
            Segment::Claims => Malformed("claims are not base64url"),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| match (segment, e.classify()) {
        (Segment::Header, Category::Data) => {
            Malformed("header lacks a field or has one of the wrong type")
        }
        (Segment::Header, _) => Malformed("header is not a JSON object"),
        (Segment::Claims, Category::Data) => {
            Malformed("claims lack a field or have one of the wrong type")
        }
        (Segment::Claims, _) => Malformed("claims are not a JSON object"),
    })
}

/// Decodes an ES256 signature segment into its fixed 64 bytes.
pub(crate) fn decode_signature(
    signature_b64: &str,
) -> Result<[u8; ES256_SIGNATURE_LEN], Malformed> {
    // 64 bytes are exactly 86 base64url characters without padding.
    if signature_b64.len() != 86 {
        return Err(Malformed("signature is not 64 bytes"));
    }
    let mut out = [0u8; ES256_SIGNATURE_LEN];
    match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut out) {
        Ok(ES256_SIGNATURE_LEN) => Ok(out),
        _ => Err(Malformed("signature is not base64url of 64 bytes")),
    }
}

/// Base64url without padding, as JWS wants it.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends base64url(`bytes`) to `out`.
pub(crate) fn b64_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), sig)
    }

    #[test]
    fn splits_three_segments_and_keeps_signing_input() {
        let t = token(r#"{"alg":"ES256","kid":"k"}"#, "{}", "sig");
        let c = parse(&t).expect("parses");
        assert_eq!(c.header.alg, "ES256");
        assert_eq!(c.header.kid.as_deref(), Some("k"));
        assert_eq!(c.signature_b64, "sig");
        assert_eq!(format!("{}.{}", c.signing_input, c.signature_b64), t);
    }

    #[test]
    fn two_or_four_segments_are_malformed() {
        assert!(parse("a.b").is_err());
        assert!(parse("a.b.c.d").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn duplicate_alg_in_header_is_malformed() {
        let t = token(r#"{"alg":"ES256","alg":"none"}"#, "{}", "");
        assert!(parse(&t).is_err());
    }

    #[test]
    fn crit_header_is_refused() {
        let t = token(r#"{"alg":"ES256","crit":["exp"]}"#, "{}", "");
        assert_eq!(
            parse(&t).err(),
            Some(Malformed(
                "header has a `crit` parameter, none is supported"
            ))
        );
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let t = "a".repeat(MAX_JWS_LEN + 1);
        assert_eq!(parse(&t).err(), Some(Malformed("longer than 8192 bytes")));
    }

    #[test]
    fn signature_must_be_exactly_64_bytes() {
        assert!(decode_signature(&b64([7u8; 64])).is_ok());
        assert!(decode_signature(&b64([7u8; 63])).is_err());
        assert!(decode_signature(&b64([7u8; 65])).is_err());
        // DER-encoded ECDSA signatures (72 bytes or so) are not ES256.
        assert!(decode_signature(&b64([7u8; 72])).is_err());
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
