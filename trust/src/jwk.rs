//! P-256 public keys: their JWK form, their RFC 7638 thumbprint (`kid`),
//! and the parsed form that verifies signatures.
//!
//! A public key reaches an agent only inside a trust card, as a JWK. It is
//! checked once here ([`PublicKey::from_jwk`]: p256 decides whether the
//! point is on the curve) and kept in the registry with the jsonwebtoken
//! `DecodingKey` made from it, so no JWK is decoded per message.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::jws::{self, ES256_NAME, clip};

/// Length of one P-256 coordinate in bytes.
const COORD_LEN: usize = 32;
/// SEC1 uncompressed point: `0x04 || x || y`.
const POINT_LEN: usize = 1 + 2 * COORD_LEN;

/// An elliptic-curve public key as a JSON Web Key (RFC 7517), the shape it
/// has inside a trust card.
///
/// This is plain data: building one proves nothing. [`PublicKey::from_jwk`]
/// checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcPublicJwk {
    /// Key type, `"EC"`.
    pub kty: String,
    /// Curve, `"P-256"`.
    pub crv: String,
    /// X coordinate, base64url of 32 bytes.
    pub x: String,
    /// Y coordinate, base64url of 32 bytes.
    pub y: String,
    /// RFC 7638 thumbprint of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm the key is for, `"ES256"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use, `"sig"`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl EcPublicJwk {
    /// The RFC 7638 thumbprint of this key: base64url(SHA-256) of the
    /// canonical JSON `{"crv":..,"kty":..,"x":..,"y":..}` (members in
    /// lexicographic order, no whitespace).
    ///
    /// Computed from the fields as they are; use [`PublicKey::from_jwk`] to
    /// know they describe a valid P-256 key.
    pub fn thumbprint(&self) -> String {
        let canonical = serde_json::json!({
            "crv": self.crv,
            "kty": self.kty,
            "x": self.x,
            "y": self.y,
        });
        // serde_json's map is ordered by key and `to_string` is compact, so
        // this is exactly the RFC 7638 canonical form.
        jws::b64(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Why a JWK is not an acceptable ES256 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// `kty` is not `"EC"`.
    #[error("expected key type \"EC\", found {found:?}")]
    UnsupportedKeyType {
        /// The `kty` that was found, clipped to 64 characters.
        found: String,
    },
    /// `crv` is not `"P-256"`.
    #[error("expected curve \"P-256\", found {found:?}")]
    UnsupportedCurve {
        /// The `crv` that was found, clipped to 64 characters.
        found: String,
    },
    /// `alg` is present and not `"ES256"`.
    #[error("expected key algorithm \"ES256\", found {found:?}")]
    UnsupportedAlgorithm {
        /// The `alg` that was found, clipped to 64 characters.
        found: String,
    },
    /// `use` is present and not `"sig"`.
    #[error("expected key use \"sig\", found {found:?}")]
    WrongUse {
        /// The `use` that was found, clipped to 64 characters.
        found: String,
    },
    /// `x` or `y` is not base64url of exactly 32 bytes.
    #[error("coordinate {coordinate} is not base64url of 32 bytes")]
    BadCoordinate {
        /// `"x"` or `"y"`.
        coordinate: &'static str,
    },
    /// The coordinates are well formed but not a point of P-256.
    #[error("(x, y) is not a point on P-256")]
    NotOnCurve,
    /// The JWK declares a `kid` that is not its own thumbprint.
    #[error("jwk kid {declared:?} is not the key's RFC 7638 thumbprint {thumbprint:?}")]
    KidMismatch {
        /// The `kid` the JWK declared, clipped to 64 characters.
        declared: String,
        /// The thumbprint computed from the key.
        thumbprint: String,
    },
}

/// A checked P-256 public key, parsed once for verifying ES256 signatures.
///
/// Cloning is shallow. Its `kid` is always its RFC 7638 thumbprint, so two
/// `PublicKey`s with the same `kid` are the same key.
#[derive(Clone)]
pub struct PublicKey {
    inner: Arc<PublicKeyInner>,
}

struct PublicKeyInner {
    kid: String,
    x: String,
    y: String,
    /// SEC1 uncompressed point `0x04 || x || y`.
    point: [u8; POINT_LEN],
    /// What jsonwebtoken verifies with.
    decoding: DecodingKey,
}

impl PublicKey {
    /// Checks a JWK (`kty: EC`, `crv: P-256`, `alg` absent or `ES256`, `use`
    /// absent or `sig`, 32-byte coordinates on the curve, `kid` absent or
    /// equal to the thumbprint) and parses it.
    pub fn from_jwk(jwk: &EcPublicJwk) -> Result<Self, JwkError> {
        if jwk.kty != "EC" {
            return Err(JwkError::UnsupportedKeyType {
                found: clip(&jwk.kty),
            });
        }
        if jwk.crv != "P-256" {
            return Err(JwkError::UnsupportedCurve {
                found: clip(&jwk.crv),
            });
        }
        if let Some(alg) = jwk.alg.as_deref().filter(|alg| *alg != ES256_NAME) {
            return Err(JwkError::UnsupportedAlgorithm { found: clip(alg) });
        }
        if let Some(use_) = jwk.use_.as_deref().filter(|use_| *use_ != "sig") {
            return Err(JwkError::WrongUse { found: clip(use_) });
        }
        let x = jws::b64_fixed::<COORD_LEN>(&jwk.x)
            .ok_or(JwkError::BadCoordinate { coordinate: "x" })?;
        let y = jws::b64_fixed::<COORD_LEN>(&jwk.y)
            .ok_or(JwkError::BadCoordinate { coordinate: "y" })?;
        let mut point = [0u8; POINT_LEN];
        point[0] = 0x04;
        point[1..=COORD_LEN].copy_from_slice(&x);
        point[1 + COORD_LEN..].copy_from_slice(&y);
        let key = Self::from_uncompressed_point(&point)?;
        if let Some(declared) = jwk.kid.as_deref().filter(|kid| *kid != key.kid()) {
            return Err(JwkError::KidMismatch {
                declared: clip(declared),
                thumbprint: key.kid().to_owned(),
            });
        }
        Ok(key)
    }

    /// Parses a SEC1 uncompressed point (`0x04 || x || y`), which must be a
    /// point of P-256 other than the identity.
    pub(crate) fn from_uncompressed_point(point: &[u8]) -> Result<Self, JwkError> {
        let point: [u8; POINT_LEN] = point.try_into().map_err(|_| JwkError::NotOnCurve)?;
        if point[0] != 0x04 || p256::PublicKey::from_sec1_bytes(&point).is_err() {
            return Err(JwkError::NotOnCurve);
        }
        let x = jws::b64(&point[1..=COORD_LEN]);
        let y = jws::b64(&point[1 + COORD_LEN..]);
        let kid = thumbprint_p256(&x, &y);
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| JwkError::NotOnCurve)?;
        Ok(Self {
            inner: Arc::new(PublicKeyInner {
                kid,
                x,
                y,
                point,
                decoding,
            }),
        })
    }

    /// The key id: the RFC 7638 thumbprint of the key.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The key as a JWK with `kid`, `alg: ES256` and `use: sig`.
    pub fn to_jwk(&self) -> EcPublicJwk {
        EcPublicJwk {
            kty: "EC".to_owned(),
            crv: "P-256".to_owned(),
            x: self.inner.x.clone(),
            y: self.inner.y.clone(),
            kid: Some(self.inner.kid.clone()),
            alg: Some(ES256_NAME.to_owned()),
            use_: Some("sig".to_owned()),
        }
    }

    /// The SEC1 uncompressed point `0x04 || x || y`.
    pub fn to_uncompressed_point(&self) -> Vec<u8> {
        self.inner.point.to_vec()
    }

    /// The key as jsonwebtoken verifies with it, made once with the key.
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.inner.decoding
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.kid == other.inner.kid
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7638 thumbprint of a P-256 key from its base64url coordinates, which
/// the caller has produced itself (so they need no JSON escaping).
fn thumbprint_p256(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    jws::b64(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 key of RFC 7517 Appendix A.1.
    fn rfc7517_jwk() -> EcPublicJwk {
        EcPublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4".into(),
            y: "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM".into(),
            kid: None,
            alg: None,
            use_: None,
        }
    }

    /// Published thumbprint of that key (the RFC 7638 example is RSA; this
    /// EC value is the one other JOSE libraries test against, and the
    /// integration tests recompute it with an independent SHA-256).
    const RFC7517_THUMBPRINT: &str = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";

    #[test]
    fn thumbprint_of_rfc7517_p256_key_matches_published_value() {
        let jwk = rfc7517_jwk();
        assert_eq!(jwk.thumbprint(), RFC7517_THUMBPRINT);
        let key = PublicKey::from_jwk(&jwk).expect("valid key");
        assert_eq!(key.kid(), RFC7517_THUMBPRINT);
    }

    #[test]
    fn jwk_round_trips_with_kid_alg_and_use() {
        let key = PublicKey::from_jwk(&rfc7517_jwk()).expect("valid key");
        let jwk = key.to_jwk();
        assert_eq!(jwk.kid.as_deref(), Some(RFC7517_THUMBPRINT));
        assert_eq!(jwk.alg.as_deref(), Some("ES256"));
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
        let json = serde_json::to_value(&jwk).expect("serializes");
        assert_eq!(json["use"], "sig");
        assert_eq!(PublicKey::from_jwk(&jwk).expect("reparses"), key);
    }

    #[test]
    fn jwk_with_foreign_kid_is_refused() {
        let mut jwk = rfc7517_jwk();
        jwk.kid = Some("1".into());
        assert!(matches!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::KidMismatch { .. })
        ));
    }

    #[test]
    fn jwk_of_other_type_curve_alg_or_use_is_refused() {
        let mut jwk = rfc7517_jwk();
        jwk.kty = "RSA".into();
        assert!(matches!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::UnsupportedKeyType { .. })
        ));
        let mut jwk = rfc7517_jwk();
        jwk.crv = "P-384".into();
        assert!(matches!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::UnsupportedCurve { .. })
        ));
        let mut jwk = rfc7517_jwk();
        jwk.alg = Some("HS256".into());
        assert!(matches!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::UnsupportedAlgorithm { .. })
        ));
        let mut jwk = rfc7517_jwk();
        jwk.use_ = Some("enc".into());
        assert!(matches!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::WrongUse { .. })
        ));
    }

    #[test]
    fn point_off_the_curve_is_refused() {
        let mut jwk = rfc7517_jwk();
        jwk.y = jws::b64([0x11u8; 32]);
        assert_eq!(PublicKey::from_jwk(&jwk), Err(JwkError::NotOnCurve));
    }

    #[test]
    fn short_coordinate_is_refused() {
        let mut jwk = rfc7517_jwk();
        jwk.x = jws::b64([1u8; 31]);
        assert_eq!(
            PublicKey::from_jwk(&jwk),
            Err(JwkError::BadCoordinate { coordinate: "x" })
        );
    }
}
