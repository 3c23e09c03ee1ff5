//! Fuzz targets for what arrives from the broker: trust cards and identity
//! tokens (compact JWS). Stable-toolchain property tests (proptest), so they
//! run in `cargo test`; `PROPTEST_CASES=100000 cargo test -p amesh-trust
//! --test fuzz` runs longer. Properties, beyond "never panics":
//! - a card or token that verifies after a mutation is byte-identical to
//!   the one that was signed (tokens and delegation chains: after the
//!   trim the verifier does);
//!   every other mutation is refused;
//! - arbitrary text, and well-framed JWS with arbitrary JSON segments, are
//!   refused with an error value whose message stays short (attacker
//!   text is clipped, never echoed whole).

use std::time::Duration;

use amesh_trust::{
    ComponentKind, DelegationSigner, IdentitySigner, IdentityVerifier, SigningKey, TrustCard,
    TrustRegistry, UserClaims, VerifierConfig, now_unix, verify_card,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

const NS: &str = "a2a/fuzz";
const SKEW: Duration = Duration::from_secs(60);
/// Longest error message allowed: the fixed text plus a few clipped
/// (64-character) values. An error that grows with the input echoes it.
const MAX_ERROR_LEN: usize = 400;

/// Case count: `PROPTEST_CASES` when set (longer local runs), else the
/// CI budget given.
fn config(ci_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    Config {
        cases,
        // `<crate>/proptest-regressions/fuzz.txt`, committed: every failure
        // found is replayed first on every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz.txt"
        )))),
        ..Config::default()
    }
}

/// One edit of a byte string, positions taken modulo its length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Remove {
        at: usize,
    },
    Truncate {
        at: usize,
    },
    /// Swap two of the three dot-separated segments.
    SwapSegments {
        a: usize,
        b: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (
            any::<usize>(),
            prop::sample::select(b"=.~ \n+/_-A0\0".to_vec())
        )
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
    ]
}

fn apply(token: &str, mutations: &[Mutation]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Remove { at } => {
                if !bytes.is_empty() {
                    bytes.remove(at % len);
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::SwapSegments { a, b } => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut parts: Vec<&str> = text.split('.').collect();
                if a < parts.len() && b < parts.len() {
                    parts.swap(a, b);
                }
                bytes = parts.join(".").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A well-framed JWS whose header and claims are the given JSON.
fn framed(header: &serde_json::Value, claims: &serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// JSON values up to a few levels deep, leaning to the shapes a JWS has.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            "ES256",
            "none",
            "HS256",
            "JWT",
            "trust-card+jwt",
            "gateway",
            "agent",
            "EC",
            "P-256",
            "",
        ])
        .prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "alg",
                        "typ",
                        "kid",
                        "crit",
                        "jwk",
                        "kty",
                        "crv",
                        "x",
                        "y",
                        "iat",
                        "exp",
                        "nbf",
                        "sub",
                        "aud",
                        "iss",
                        "act",
                        "component_type",
                        "component_id",
                        "namespace",
                    ]),
                    inner
                ),
                0..8
            )
            .prop_map(|fields| Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

struct Gateway {
    key: SigningKey,
    card: String,
    signer: IdentitySigner,
    verifier: IdentityVerifier,
    registry: TrustRegistry,
    now: u64,
}

fn gateway() -> Gateway {
    let now = now_unix();
    let key = SigningKey::generate().expect("key");
    let card = TrustCard::sign(&key, ComponentKind::Gateway, "gw-1", NS, 30, now)
        .expect("card")
        .into_string();
    let registry = TrustRegistry::new(NS, SKEW);
    registry
        .accept_card(ComponentKind::Gateway, "gw-1", &card, now)
        .expect("card accepted");
    let signer = IdentitySigner::new(
        "gw-1",
        NS,
        key.clone(),
        Duration::from_secs(300),
        Duration::from_secs(3600),
    )
    .expect("signer");
    let verifier = IdentityVerifier::new(registry.clone(), "weather", VerifierConfig::default());
    Gateway {
        key,
        card,
        signer,
        verifier,
        registry,
        now,
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn mutated_card_is_refused_unless_unchanged(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let gw = gateway();
        let mutated = apply(&gw.card, &mutations);
        match verify_card(&mutated, ComponentKind::Gateway, "gw-1", NS, gw.now, SKEW) {
            Ok(card) => {
                prop_assert_eq!(&mutated, &gw.card);
                prop_assert_eq!(card.key().kid(), gw.key.kid());
            }
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{e}"),
        }
    }

    #[test]
    fn mutated_identity_token_is_refused_unless_unchanged(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let gw = gateway();
        let token = gw.signer.sign(&UserClaims::new("alice"), "weather", None).expect("token");
        let mutated = apply(&token, &mutations);
        match gw.verifier.verify(&mutated, "alice", gw.now) {
            Ok(identity) => {
                prop_assert_eq!(mutated.trim(), token.as_str());
                prop_assert_eq!(identity.user_id(), "alice");
            }
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{e}"),
        }
    }

    #[test]
    fn mutated_delegation_chain_is_refused_unless_unchanged(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        // The gateway's token for `weather`, which delegates to `billing`.
        let gw = gateway();
        let agent_key = SigningKey::generate().expect("key");
        let agent_card = TrustCard::sign(&agent_key, ComponentKind::Agent, "weather", NS, 30, gw.now)
            .expect("card");
        gw.registry
            .accept_card(ComponentKind::Agent, "weather", agent_card.as_str(), gw.now)
            .expect("agent card accepted");
        let token = gw.signer.sign(&UserClaims::new("alice"), "weather", None).expect("token");
        let identity = gw.verifier.verify(&token, "alice", gw.now).expect("verifies");
        let delegator =
            DelegationSigner::new("weather", "weather", NS, agent_key, Duration::from_secs(60))
                .expect("delegator");
        let chain = delegator.delegate(&identity, &token, "billing", gw.now).expect("delegates");
        let billing = IdentityVerifier::new(gw.registry.clone(), "billing", VerifierConfig::default());
        let mutated = apply(&chain, &mutations);
        match billing.verify(&mutated, "alice", gw.now) {
            Ok(identity) => {
                prop_assert_eq!(mutated.trim(), chain.as_str());
                prop_assert_eq!(identity.user_id(), "alice");
            }
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{e}"),
        }
    }

    #[test]
    fn arbitrary_text_is_never_a_card_or_identity(text in ".{0,300}|[A-Za-z0-9_.~=-]{0,300}") {
        let gw = gateway();
        let card = verify_card(&text, ComponentKind::Gateway, "gw-1", NS, gw.now, SKEW);
        prop_assert!(card.is_err());
        let identity = gw.verifier.verify(&text, "alice", gw.now);
        prop_assert!(identity.is_err());
        let message = identity.err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(message.len() <= MAX_ERROR_LEN, "{message}");
    }

    #[test]
    fn framed_jws_with_arbitrary_json_is_refused_with_a_short_error(
        header in json(),
        claims in json(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
        separators in 0usize..3,
    ) {
        let gw = gateway();
        let mut token = framed(&header, &claims, &signature);
        // Delegation chains (`G~D1~...`) take another verifier path.
        for _ in 0..separators {
            token = format!("{token}~{}", framed(&header, &claims, &signature));
        }
        let card = verify_card(&token, ComponentKind::Gateway, "gw-1", NS, gw.now, SKEW);
        match card {
            Ok(_) => prop_assert!(false, "a card nobody signed verified"),
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{e}"),
        }
        match gw.verifier.verify(&token, "alice", gw.now) {
            Ok(_) => prop_assert!(false, "a token nobody signed verified"),
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{e}"),
        }
    }
}

/// The signed card and token themselves verify (so the mutation targets
/// above start from something genuine).
#[test]
fn unmutated_card_and_token_verify() {
    let gw = gateway();
    verify_card(&gw.card, ComponentKind::Gateway, "gw-1", NS, gw.now, SKEW).expect("card");
    let token = gw
        .signer
        .sign(&UserClaims::new("alice"), "weather", None)
        .expect("token");
    gw.verifier
        .verify(&format!(" {token}\n"), "alice", gw.now)
        .expect("token");
}
