//! Identity tokens end to end: a gateway's card in the registry, tokens from
//! its signer, and every way a token can be wrong, including the classic
//! JWT attacks, forged with an independent JWT library (`jsonwebtoken`).

use std::time::Duration;

use amesh_trust::{
    Assurance, CardUpdate, ComponentKind, IdentitySigner, IdentityVerifier, RequestIdentity,
    SigningKey, TrustCard, TrustRegistry, UserClaims, VerifierConfig, VerifyError,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const NS: &str = "a2a/test";
const GW: &str = "gw-1";
/// The agent whose verifier the tests use, and its audience.
const AGENT: &str = "agent-a";
const AUD: &str = "a2a/test/agent/agent-a";
const NOW: u64 = 1_700_000_000;
const TTL: u64 = 300;
const MAX_TTL: u64 = 3600;
const SKEW: u64 = 60;
const DAY: u64 = 86_400;

struct Mesh {
    registry: TrustRegistry,
    gateway_key: SigningKey,
    signer: IdentitySigner,
}

impl Mesh {
    /// A registry holding the card of gateway `gw-1`, and that gateway's signer.
    fn new() -> Self {
        let registry = TrustRegistry::new(NS, Duration::from_secs(SKEW));
        let gateway_key = SigningKey::generate().expect("key");
        accept(&registry, &gateway_key, ComponentKind::Gateway, GW, NOW);
        let signer = signer(GW, &gateway_key);
        Self {
            registry,
            gateway_key,
            signer,
        }
    }

    fn verifier(&self) -> IdentityVerifier {
        self.verifier_with(VerifierConfig {
            clock_skew: Duration::from_secs(SKEW),
            enable_time_validation: true,
            max_ttl: Duration::from_secs(MAX_TTL),
            cache_capacity: 100,
            ..VerifierConfig::default()
        })
    }

    fn verifier_with(&self, config: VerifierConfig) -> IdentityVerifier {
        IdentityVerifier::new(self.registry.clone(), AGENT, config)
    }

    fn token(&self, user: &str) -> String {
        self.signer
            .sign_at(&UserClaims::new(user), AGENT, None, NOW)
            .expect("signs")
    }

    /// Claims as the real signer would write them, for forging variants.
    fn claims(&self, user: &str) -> Value {
        json!({
            "iss": GW, "sub": user, "aud": AUD,
            "iat": NOW, "nbf": NOW, "exp": NOW + TTL,
            "jti": "6f1c0a57-9b1e-4c8e-8f7e-0d1f2a3b4c5d",
        })
    }
}

fn signer(id: &str, key: &SigningKey) -> IdentitySigner {
    IdentitySigner::new(
        id,
        NS,
        key.clone(),
        Duration::from_secs(TTL),
        Duration::from_secs(MAX_TTL),
    )
    .expect("signer")
}

fn accept(
    registry: &TrustRegistry,
    key: &SigningKey,
    kind: ComponentKind,
    id: &str,
    now: u64,
) -> CardUpdate {
    let card = TrustCard::sign(key, kind, id, NS, 1, now).expect("card");
    registry
        .accept_card(kind, id, card.as_str(), now)
        .expect("card accepted")
}

/// A compact JWS with any header and claims, genuinely ES256-signed by `key`
/// (through jsonwebtoken's own signer), whatever the header claims.
fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pem = key.to_pkcs8_pem().expect("pem");
    let encoding_key =
        EncodingKey::from_ec_pem(pem.as_bytes()).expect("jsonwebtoken reads our PEM");
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &encoding_key, Algorithm::ES256)
            .expect("signs");
    format!("{signing_input}.{signature}")
}

fn es256_header(key: &SigningKey) -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()})
}

/// Error messages are logged and sent back to requesters: no token in them.
fn assert_no_token_material(err: &VerifyError, token: &str) {
    let text = format!("{err} {err:?}");
    for segment in token.split('.').filter(|s| s.len() >= 16) {
        assert!(
            !text.contains(segment),
            "error {text:?} contains a token segment"
        );
    }
}

#[test]
fn valid_token_verifies_to_its_user() {
    let mesh = Mesh::new();
    let user = UserClaims {
        sub: "alice".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice".into()),
    };
    let token = mesh.signer.sign_at(&user, AGENT, None, NOW).expect("signs");
    let identity = mesh
        .verifier()
        .verify(&token, "alice", NOW + 10)
        .expect("verifies");
    assert_eq!(identity.user_id(), "alice");
    assert_eq!(identity.email(), Some("alice@example.com"));
    assert_eq!(identity.name(), Some("Alice"));
    assert_eq!(identity.issuer(), Some(GW));
    assert!(matches!(
        identity.assurance(),
        Assurance::GatewaySigned { issuer, expires_at, .. } if issuer == GW && *expires_at == NOW + TTL
    ));
}

#[test]
fn token_signed_by_unknown_key_is_refused() {
    let mesh = Mesh::new();
    let stranger = signer(GW, &SigningKey::generate().expect("key"));
    let token = stranger
        .sign_at(&UserClaims::new("alice"), AGENT, None, NOW)
        .expect("signs");
    let err = mesh
        .verifier()
        .verify(&token, "alice", NOW)
        .expect_err("unknown key");
    assert_eq!(
        err,
        VerifyError::UnknownKey {
            kid: stranger.kid().to_owned()
        }
    );
    assert_no_token_material(&err, &token);
}

#[test]
fn expired_token_is_refused() {
    let mesh = Mesh::new();
    let token = mesh.token("alice");
    let verifier = mesh.verifier();
    assert!(verifier.verify(&token, "alice", NOW + TTL + SKEW).is_ok());
    let fresh = mesh.verifier();
    assert_eq!(
        fresh.verify(&token, "alice", NOW + TTL + SKEW + 1).err(),
        Some(VerifyError::Expired {
            expired_at: NOW + TTL,
            now: NOW + TTL + SKEW + 1
        })
    );
}

#[test]
fn token_not_yet_valid_or_issued_in_the_future_is_refused() {
    let mesh = Mesh::new();
    let token = mesh.token("alice");
    let err = mesh
        .verifier()
        .verify(&token, "alice", NOW - SKEW - 1)
        .expect_err("early");
    assert_eq!(
        err,
        VerifyError::NotYetValid {
            not_before: NOW,
            now: NOW - SKEW - 1
        }
    );
    let mut claims = mesh.claims("alice");
    claims.as_object_mut().expect("object").remove("nbf");
    let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
    assert!(matches!(
        mesh.verifier().verify(&token, "alice", NOW - SKEW - 1),
        Err(VerifyError::IssuedInFuture { .. })
    ));
}

#[test]
fn alg_none_is_refused() {
    let mesh = Mesh::new();
    let claims = mesh.claims("alice");
    for header in [
        json!({"alg": "none", "kid": mesh.gateway_key.kid()}),
        json!({"alg": "None"}),
        json!({"alg": "NONE", "typ": "JWT"}),
    ] {
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let err = mesh
            .verifier()
            .verify(&token, "alice", NOW)
            .expect_err("alg none");
        assert!(
            matches!(err, VerifyError::AlgorithmNotAllowed { ref found } if found.eq_ignore_ascii_case("none")),
            "{err}"
        );
        assert_no_token_material(&err, &token);
    }
}

#[test]
fn hs256_keyed_with_the_gateways_public_key_is_refused() {
    // The key-confusion attack: a verifier that lets the token pick the
    // algorithm would check this HMAC with the public key as secret.
    let mesh = Mesh::new();
    let jwk = mesh.gateway_key.public_jwk();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(mesh.gateway_key.kid().to_owned());
    let secrets: [Vec<u8>; 3] = [
        mesh.gateway_key.public_key().to_uncompressed_point(),
        serde_json::to_vec(&jwk).expect("json"),
        format!("{}{}", jwk.x, jwk.y).into_bytes(),
    ];
    for secret in secrets {
        let token = jsonwebtoken::encode(
            &header,
            &mesh.claims("alice"),
            &EncodingKey::from_secret(&secret).expect("hmac key"),
        )
        .expect("encodes");
        assert_eq!(
            mesh.verifier().verify(&token, "alice", NOW).err(),
            Some(VerifyError::AlgorithmNotAllowed {
                found: "HS256".into()
            })
        );
    }
}

#[test]
fn rs256_and_es384_headers_are_refused_even_over_a_valid_es256_signature() {
    let mesh = Mesh::new();
    for alg in ["RS256", "ES384", "PS256", "EdDSA", "es256", "ES256 "] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": mesh.gateway_key.kid()});
        let token = forge(&mesh.gateway_key, &header, &mesh.claims("alice"));
        assert_eq!(
            mesh.verifier().verify(&token, "alice", NOW).err(),
            Some(VerifyError::AlgorithmNotAllowed { found: alg.into() }),
            "alg {alg}"
        );
    }
}

#[test]
fn tampered_payload_is_refused() {
    let mesh = Mesh::new();
    let token = mesh.token("alice");
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = "mallory".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let err = mesh
        .verifier()
        .verify(&tampered, "mallory", NOW)
        .expect_err("tampered");
    assert_eq!(err, VerifyError::BadSignature);
    assert_no_token_material(&err, &tampered);
}

#[test]
fn token_for_another_user_than_the_request_claims_is_refused() {
    let mesh = Mesh::new();
    let token = mesh.token("alice");
    assert_eq!(
        mesh.verifier().verify(&token, "bob", NOW).err(),
        Some(VerifyError::SubjectMismatch {
            token_sub: "alice".into(),
            claimed: "bob".into()
        })
    );
}

#[test]
fn token_signed_by_an_agents_key_is_refused() {
    let mesh = Mesh::new();
    let agent_key = SigningKey::generate().expect("key");
    accept(
        &mesh.registry,
        &agent_key,
        ComponentKind::Agent,
        "agent-a",
        NOW,
    );
    // The agent signs a perfectly shaped token with its own (trusted) key.
    let agent_signer = signer("agent-a", &agent_key);
    let token = agent_signer
        .sign_at(&UserClaims::new("alice"), AGENT, None, NOW)
        .expect("signs");
    let err = mesh
        .verifier()
        .verify(&token, "alice", NOW)
        .expect_err("agent key");
    assert_eq!(
        err,
        VerifyError::NotAGateway {
            kid: agent_key.kid().to_owned(),
            component: "agent/agent-a".into()
        }
    );
    assert!(err.to_string().contains("agent/agent-a"), "{err}");
}

#[test]
fn gateway_cannot_issue_tokens_in_another_gateways_name() {
    let mesh = Mesh::new();
    let other = SigningKey::generate().expect("key");
    accept(&mesh.registry, &other, ComponentKind::Gateway, "gw-2", NOW);
    let mut claims = mesh.claims("alice");
    claims["iss"] = "gw-2".into();
    let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
    assert_eq!(
        mesh.verifier().verify(&token, "alice", NOW).err(),
        Some(VerifyError::IssuerMismatch {
            expected: GW.into(),
            found: "gw-2".into()
        })
    );
}

#[test]
fn token_for_another_agent_or_namespace_is_refused() {
    let mesh = Mesh::new();
    for aud in [
        "a2a/test/agent/agent-b",
        "a2a/prod/agent/agent-a",
        NS,
        "a2a/prod",
    ] {
        let mut claims = mesh.claims("alice");
        claims["aud"] = aud.into();
        let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
        assert_eq!(
            mesh.verifier().verify(&token, "alice", NOW).err(),
            Some(VerifyError::AudienceMismatch {
                expected: AUD.into(),
                found: aud.into()
            }),
            "aud {aud}"
        );
    }
    // An audience array naming this agent is fine (RFC 7519 §4.1.3).
    let mut claims = mesh.claims("alice");
    claims["aud"] = json!(["a2a/test/agent/agent-b", AUD]);
    let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
    assert!(mesh.verifier().verify(&token, "alice", NOW).is_ok());
}

#[test]
fn token_the_gateway_signed_for_one_agent_is_refused_by_another() {
    let mesh = Mesh::new();
    let for_b = mesh
        .signer
        .sign_at(&UserClaims::new("alice"), "agent-b", None, NOW)
        .expect("signs");
    let at_a = mesh.verifier();
    let err = at_a
        .verify(&for_b, "alice", NOW)
        .expect_err("not for agent-a");
    assert_eq!(
        err,
        VerifyError::AudienceMismatch {
            expected: AUD.into(),
            found: "a2a/test/agent/agent-b".into()
        }
    );
    assert_eq!(at_a.cached_tokens(), 0, "a refused token is not cached");
    let at_b = IdentityVerifier::new(mesh.registry.clone(), "agent-b", VerifierConfig::default());
    assert!(at_b.verify(&for_b, "alice", NOW).is_ok());
}

#[test]
fn token_living_longer_than_the_maximum_is_refused() {
    let mesh = Mesh::new();
    let mut claims = mesh.claims("alice");
    claims["exp"] = (NOW + MAX_TTL + 1).into();
    let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
    assert_eq!(
        mesh.verifier().verify(&token, "alice", NOW).err(),
        Some(VerifyError::LifetimeTooLong {
            lifetime_secs: MAX_TTL + 1,
            max_secs: MAX_TTL
        })
    );
}

#[test]
fn token_without_required_claims_or_kid_is_malformed() {
    let mesh = Mesh::new();
    let mut claims = mesh.claims("alice");
    claims.as_object_mut().expect("object").remove("jti");
    let token = forge(&mesh.gateway_key, &es256_header(&mesh.gateway_key), &claims);
    assert!(matches!(
        mesh.verifier().verify(&token, "alice", NOW),
        Err(VerifyError::Malformed(_))
    ));
    let token = forge(
        &mesh.gateway_key,
        &json!({"alg": "ES256"}),
        &mesh.claims("alice"),
    );
    assert_eq!(
        mesh.verifier().verify(&token, "alice", NOW).err(),
        Some(VerifyError::MissingKid)
    );
    for garbage in ["", "   ", "a.b", "a.b.c", "😀.😀.😀"] {
        assert!(
            mesh.verifier().verify(garbage, "alice", NOW).is_err(),
            "{garbage:?}"
        );
    }
    assert_eq!(
        mesh.verifier().verify("", "alice", NOW).err(),
        Some(VerifyError::MissingToken)
    );
}

#[test]
fn trust_card_is_not_accepted_as_an_identity_token() {
    let mesh = Mesh::new();
    let card =
        TrustCard::sign(&mesh.gateway_key, ComponentKind::Gateway, GW, NS, 1, NOW).expect("card");
    assert_eq!(
        mesh.verifier().verify(card.as_str(), "alice", NOW).err(),
        Some(VerifyError::WrongTokenType {
            expected: "JWT",
            found: "trust-card+jwt".into()
        })
    );
}

#[test]
fn token_of_a_gateway_whose_card_expired_is_refused() {
    let mesh = Mesh::new();
    let later = NOW + DAY + SKEW + 1;
    let token = mesh
        .signer
        .sign_at(&UserClaims::new("alice"), AGENT, None, later)
        .expect("signs");
    assert!(matches!(
        mesh.verifier().verify(&token, "alice", later),
        Err(VerifyError::KeyExpired { .. })
    ));
}

#[test]
fn gateway_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_pruned() {
    let mesh = Mesh::new();
    // Time checks off, so the old token's own expiry does not hide what
    // the key's removal does.
    let verifier = mesh.verifier_with(VerifierConfig {
        enable_time_validation: false,
        max_ttl: Duration::from_secs(MAX_TTL),
        ..VerifierConfig::default()
    });
    let old_token = mesh.token("alice");
    assert!(
        verifier.verify(&old_token, "alice", NOW).is_ok(),
        "cached now"
    );

    let new_key = SigningKey::generate().expect("key");
    let rotated_at = NOW + 600;
    assert_eq!(
        accept(
            &mesh.registry,
            &new_key,
            ComponentKind::Gateway,
            GW,
            rotated_at
        ),
        CardUpdate::Rotated {
            previous_kid: mesh.gateway_key.kid().to_owned()
        }
    );
    let new_token = signer(GW, &new_key)
        .sign_at(&UserClaims::new("alice"), AGENT, None, rotated_at)
        .expect("signs");
    assert!(verifier.verify(&new_token, "alice", rotated_at).is_ok());
    assert!(
        verifier.verify(&old_token, "alice", rotated_at).is_ok(),
        "old key still trusted"
    );

    // The old card's expiry passes; prune drops its key, the cached old
    // token dies with it, the new key lives on.
    assert_eq!(mesh.registry.prune(NOW + DAY + SKEW + 1), 1);
    assert_eq!(
        verifier
            .verify(&old_token, "alice", NOW + DAY + SKEW + 1)
            .err(),
        Some(VerifyError::UnknownKey {
            kid: mesh.gateway_key.kid().to_owned()
        })
    );
    assert!(
        verifier
            .verify(&new_token, "alice", NOW + DAY + SKEW + 1)
            .is_ok()
    );
}

#[test]
fn cache_returns_the_same_identity_and_refuses_an_expired_token_on_a_hit() {
    let mesh = Mesh::new();
    let verifier = mesh.verifier();
    let token = mesh.token("alice");
    let first = verifier.verify(&token, "alice", NOW).expect("verifies");
    assert_eq!(verifier.cached_tokens(), 1);
    let second = verifier
        .verify(&token, "alice", NOW + 1)
        .expect("cache hit");
    assert_eq!(verifier.cached_tokens(), 1);
    assert_eq!(first.user_id(), second.user_id());
    assert_eq!(first.assurance(), second.assurance());

    // A hit still checks who the token is presented for...
    assert!(matches!(
        verifier.verify(&token, "bob", NOW + 2),
        Err(VerifyError::SubjectMismatch { .. })
    ));
    // ...and when it expires.
    assert_eq!(
        verifier.verify(&token, "alice", NOW + TTL + SKEW + 1).err(),
        Some(VerifyError::Expired {
            expired_at: NOW + TTL,
            now: NOW + TTL + SKEW + 1
        })
    );
    assert_eq!(verifier.cached_tokens(), 0, "expired entry dropped");
}

#[test]
fn cached_token_dies_when_its_gateway_card_is_cleared() {
    let mesh = Mesh::new();
    let verifier = mesh.verifier();
    let token = mesh.token("alice");
    verifier.verify(&token, "alice", NOW).expect("verifies");
    assert!(mesh.registry.remove(ComponentKind::Gateway, GW));
    assert!(matches!(
        verifier.verify(&token, "alice", NOW + 1),
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn identify_gives_unverified_identity_with_reason_in_permissive_use() {
    let mesh = Mesh::new();
    let verifier = mesh.verifier();
    let token = mesh.token("alice");
    assert!(matches!(
        verifier.identify(Some(&token), "alice", NOW),
        RequestIdentity::Verified(ref id) if id.user_id() == "alice"
    ));
    match verifier.identify(None, "carol", NOW) {
        RequestIdentity::Unverified(id) => {
            assert_eq!(id.claimed_user_id(), "carol");
            assert_eq!(id.reason(), &VerifyError::MissingToken);
        }
        RequestIdentity::Verified(_) => panic!("no token, yet verified"),
    }
    let claimed = verifier.identify(Some(&token), "bob", NOW);
    assert_eq!(claimed.user_id(), "bob");
    assert!(claimed.verified().is_none());
}

#[test]
fn debug_of_verified_identity_and_verifier_contains_no_token() {
    let mesh = Mesh::new();
    let verifier = mesh.verifier();
    let token = mesh.token("alice");
    let identity = verifier.verify(&token, "alice", NOW).expect("verifies");
    for debug in [
        format!("{identity:?}"),
        format!("{verifier:?}"),
        format!("{:?}", mesh.signer),
    ] {
        for segment in token.split('.') {
            assert!(!debug.contains(segment), "{debug} contains a token segment");
        }
    }
}

#[test]
fn our_tokens_verify_with_an_independent_jwt_library() {
    let mesh = Mesh::new();
    let token = mesh
        .signer
        .sign(&UserClaims::new("alice"), AGENT, None)
        .expect("signs");
    let jwk = mesh.gateway_key.public_jwk();
    let key = jsonwebtoken::DecodingKey::from_ec_components(&jwk.x, &jwk.y).expect("key");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[GW]);
    let data =
        jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("jsonwebtoken verifies");
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.header.kid.as_deref(), Some(mesh.gateway_key.kid()));
}

#[test]
fn tokens_from_an_independent_jwt_library_verify_with_ours() {
    let mesh = Mesh::new();
    let pem = mesh.gateway_key.to_pkcs8_pem().expect("pem");
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(mesh.gateway_key.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &mesh.claims("alice"),
        &EncodingKey::from_ec_pem(pem.as_bytes()).expect("key"),
    )
    .expect("encodes");
    assert!(mesh.verifier().verify(&token, "alice", NOW).is_ok());
}

#[test]
fn verifier_without_cache_gives_the_same_answers() {
    let mesh = Mesh::new();
    let uncached = mesh.verifier_with(VerifierConfig {
        cache_capacity: 0,
        clock_skew: Duration::from_secs(SKEW),
        max_ttl: Duration::from_secs(MAX_TTL),
        ..VerifierConfig::default()
    });
    let token = mesh.token("alice");
    for _ in 0..2 {
        assert_eq!(
            uncached
                .verify(&token, "alice", NOW)
                .map(|id| id.user_id().to_owned()),
            Ok("alice".to_owned())
        );
    }
    assert_eq!(uncached.cached_tokens(), 0);
    assert!(matches!(
        uncached.verify(&token, "bob", NOW),
        Err(VerifyError::SubjectMismatch { .. })
    ));
    assert!(matches!(
        uncached.verify(&token, "alice", NOW + TTL + SKEW + 1),
        Err(VerifyError::Expired { .. })
    ));
}
