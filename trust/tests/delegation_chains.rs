//! Delegation chains: a gateway's token to agent A, extended by A for B
//! (and by B for C...), each hop signed by the agent that delegates and
//! verified hop by hop by the receiver. Forged, spliced, truncated, expired
//! and too-long chains are refused with a precise reason.

use std::time::Duration;

use amesh_trust::{
    Assurance, ComponentKind, DelegationSigner, IdentitySigner, IdentityVerifier, SignError,
    SigningKey, TokenScope, TrustCard, TrustRegistry, UserClaims, VerifiedIdentity, VerifierConfig,
    VerifyError,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const NS: &str = "a2a/test";
const GW: &str = "gw-1";
const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 60;
const HOP_TTL: u64 = 300;

/// A registry every component shares (one broker), a gateway, and agents
/// whose broker username is their name unless said otherwise.
struct Mesh {
    registry: TrustRegistry,
    gateway: IdentitySigner,
    gateway_key: SigningKey,
}

struct Agent {
    name: String,
    key: SigningKey,
    delegator: DelegationSigner,
}

impl Mesh {
    fn new() -> Mesh {
        let registry = TrustRegistry::new(NS, Duration::from_secs(SKEW));
        let gateway_key = SigningKey::generate().expect("key");
        accept(&registry, &gateway_key, ComponentKind::Gateway, GW);
        let gateway = IdentitySigner::new(
            GW,
            NS,
            gateway_key.clone(),
            Duration::from_secs(600),
            Duration::from_secs(3600),
        )
        .expect("signer");
        Mesh {
            registry,
            gateway,
            gateway_key,
        }
    }

    /// Agent `name` connected as broker user `account`, its card accepted.
    fn agent_as(&self, name: &str, account: &str) -> Agent {
        let key = SigningKey::generate().expect("key");
        accept(&self.registry, &key, ComponentKind::Agent, account);
        let delegator =
            DelegationSigner::new(account, name, NS, key.clone(), Duration::from_secs(HOP_TTL))
                .expect("delegator");
        Agent {
            name: name.to_owned(),
            key,
            delegator,
        }
    }

    fn agent(&self, name: &str) -> Agent {
        self.agent_as(name, name)
    }

    fn verifier(&self, agent: &str) -> IdentityVerifier {
        self.verifier_with(agent, 10)
    }

    fn verifier_with(&self, agent: &str, max_depth: usize) -> IdentityVerifier {
        IdentityVerifier::new(
            self.registry.clone(),
            agent,
            VerifierConfig {
                clock_skew: Duration::from_secs(SKEW),
                max_delegation_depth: max_depth,
                max_delegation_ttl: Duration::from_secs(HOP_TTL),
                ..VerifierConfig::default()
            },
        )
    }

    /// The gateway's token for alice at `agent`.
    fn token_for(&self, agent: &str) -> String {
        self.gateway
            .sign_at(&UserClaims::new("alice"), agent, None, NOW)
            .expect("signs")
    }
}

fn accept(registry: &TrustRegistry, key: &SigningKey, kind: ComponentKind, id: &str) {
    let card = TrustCard::sign(key, kind, id, NS, 1, NOW).expect("card");
    registry
        .accept_card(kind, id, card.as_str(), NOW)
        .expect("card accepted");
}

impl Agent {
    /// What this agent's verifier makes of `presented`, and the chain it
    /// sends on to `peer`.
    fn pass_on(&self, mesh: &Mesh, presented: &str, peer: &str, now: u64) -> String {
        let identity = mesh
            .verifier(&self.name)
            .verify(presented, "alice", now)
            .expect("verifies at the delegating agent");
        self.delegator
            .delegate(&identity, presented, peer, now)
            .expect("delegates")
    }
}

/// A compact JWS with any header and claims, ES256-signed by `key` through
/// an independent JWT library.
fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pem = key.to_pkcs8_pem().expect("pem");
    let encoding_key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("key");
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &encoding_key, Algorithm::ES256)
            .expect("signs");
    format!("{signing_input}.{signature}")
}

fn claims_of(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

fn sha256_b64(token: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A hop `by` signs extending `prev`, with `claims` edited by `edit`.
fn forged_hop(by: &Agent, prev: &str, peer: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = json!({
        "iss": by.name, "sub": "alice", "aud": format!("{NS}/agent/{peer}"),
        "iat": NOW, "nbf": NOW, "exp": NOW + HOP_TTL, "jti": "j",
        "act": {"sub": by.name}, "prv": sha256_b64(prev.rsplit('~').next().expect("token")),
    });
    edit(&mut claims);
    let header = json!({"alg": "ES256", "typ": "delegation+jwt", "kid": by.key.kid()});
    format!("{prev}~{}", forge(&by.key, &header, &claims))
}

fn actors(identity: &VerifiedIdentity) -> Vec<String> {
    identity.actors().to_vec()
}

#[test]
fn gateway_to_a_to_b_reaches_b_verified_with_the_chain() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    mesh.agent("agent-b");
    let chain = a.pass_on(&mesh, &mesh.token_for("agent-a"), "agent-b", NOW);
    let at_b = mesh
        .verifier("agent-b")
        .verify(&chain, "alice", NOW + 1)
        .expect("verifies at agent-b");
    assert_eq!(at_b.user_id(), "alice");
    assert_eq!(at_b.issuer(), Some(GW));
    assert_eq!(actors(&at_b), ["agent-a"]);
    assert!(matches!(
        at_b.assurance(),
        Assurance::Delegated { expires_at, .. } if *expires_at == NOW + HOP_TTL
    ));
    let hop = claims_of(chain.split('~').nth(1).expect("hop"));
    assert_eq!(hop["iss"], "agent-a");
    assert_eq!(hop["aud"], "a2a/test/agent/agent-b");
    assert_eq!(hop["act"], json!({"sub": "agent-a"}));
}

#[test]
fn two_hops_record_both_actors_in_rfc8693_nesting() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let b = mesh.agent("agent-b");
    mesh.agent("agent-c");
    let to_b = a.pass_on(&mesh, &mesh.token_for("agent-a"), "agent-b", NOW);
    let to_c = b.pass_on(&mesh, &to_b, "agent-c", NOW + 5);
    let at_c = mesh
        .verifier("agent-c")
        .verify(&to_c, "alice", NOW + 6)
        .expect("verifies at agent-c");
    assert_eq!(actors(&at_c), ["agent-a", "agent-b"]);
    let last = claims_of(to_c.rsplit('~').next().expect("hop"));
    assert_eq!(
        last["act"],
        json!({"sub": "agent-b", "act": {"sub": "agent-a"}})
    );
}

#[test]
fn chain_presented_at_another_agent_is_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let chain = a.pass_on(&mesh, &mesh.token_for("agent-a"), "agent-b", NOW);
    let err = mesh
        .verifier("agent-c")
        .verify(&chain, "alice", NOW)
        .expect_err("addressed to agent-b");
    assert!(
        matches!(&err, VerifyError::InChain { position: 1, error }
            if matches!(**error, VerifyError::AudienceMismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("agent-c"), "{err}");
}

#[test]
fn hop_signed_by_an_account_that_does_not_speak_for_its_actor_is_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let mallory = mesh.agent("mallory");
    // mallory holds alice's token for agent-a (a leak) and signs a hop
    // claiming agent-a delegated, with its own key.
    let token = mesh.token_for("agent-a");
    let forged = forged_hop(&mallory, &token, "agent-b", |c| {
        c["act"] = json!({"sub": "agent-a"});
    });
    assert_eq!(
        mesh.verifier("agent-b").verify(&forged, "alice", NOW).err(),
        Some(VerifyError::ActorNotBound {
            hop: 1,
            agent: "agent-a".into(),
            account: "mallory".into()
        })
    );
    // Signed by mallory as itself, it does not extend a token addressed to
    // mallory.
    let forged = forged_hop(&mallory, &token, "agent-b", |_| {});
    assert!(matches!(
        mesh.verifier("agent-b").verify(&forged, "alice", NOW),
        Err(VerifyError::BrokenLink { hop: 1, .. })
    ));
    // The genuine hop by agent-a passes.
    let genuine = forged_hop(&a, &token, "agent-b", |_| {});
    assert!(
        mesh.verifier("agent-b")
            .verify(&genuine, "alice", NOW)
            .is_ok()
    );
}

#[test]
fn spliced_truncated_or_rewritten_chains_are_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let b = mesh.agent("agent-b");
    mesh.agent("agent-c");
    let token = mesh.token_for("agent-a");
    let at_c = mesh.verifier("agent-c");

    // prv pointing at another token (a hop spliced from another chain).
    let other = mesh.token_for("agent-a");
    let spliced = forged_hop(&a, &token, "agent-c", |c| {
        c["prv"] = sha256_b64(&other).into()
    });
    assert!(matches!(
        at_c.verify(&spliced, "alice", NOW),
        Err(VerifyError::BrokenLink { hop: 1, .. })
    ));

    // A hop for another user than the gateway vouched for.
    let other_user = forged_hop(&a, &token, "agent-c", |c| c["sub"] = "bob".into());
    assert!(matches!(
        at_c.verify(&other_user, "bob", NOW),
        Err(VerifyError::BrokenLink { hop: 1, .. })
    ));

    // b drops agent-a from the act chain it extends.
    let to_b = a.pass_on(&mesh, &token, "agent-b", NOW);
    let rewritten = forged_hop(&b, &to_b, "agent-c", |_| {});
    let err = at_c
        .verify(&rewritten, "alice", NOW)
        .expect_err("act rewritten");
    assert!(
        matches!(err, VerifyError::BrokenLink { hop: 2, .. }),
        "{err}"
    );

    // The middle hop taken out: b's hop no longer extends what precedes it.
    let to_c = b.pass_on(&mesh, &to_b, "agent-c", NOW);
    let hops: Vec<&str> = to_c.split('~').collect();
    let truncated = format!("{}~{}", hops[0], hops[2]);
    assert!(matches!(
        at_c.verify(&truncated, "alice", NOW),
        Err(VerifyError::BrokenLink { hop: 1, .. })
    ));

    // A tampered hop signature.
    let at = to_c.len() - 10;
    let flipped = if &to_c[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &to_c[..at], &to_c[at + 1..]);
    assert!(matches!(
        at_c.verify(&tampered, "alice", NOW),
        Err(VerifyError::InChain { position: 2, .. })
    ));
    assert!(at_c.verify(&to_c, "alice", NOW).is_ok());
}

#[test]
fn expired_or_overlong_hops_are_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    mesh.agent("agent-b");
    let token = mesh.token_for("agent-a");
    let chain = a.pass_on(&mesh, &token, "agent-b", NOW);
    let at_b = mesh.verifier("agent-b");
    let late = NOW + HOP_TTL + SKEW + 1;
    let err = at_b.verify(&chain, "alice", late).expect_err("expired");
    assert!(
        matches!(&err, VerifyError::InChain { position: 1, error }
            if matches!(**error, VerifyError::Expired { .. })),
        "{err}"
    );

    let overlong = forged_hop(&a, &token, "agent-b", |c| {
        c["exp"] = (NOW + HOP_TTL + 1).into();
    });
    assert!(matches!(
        at_b.verify(&overlong, "alice", NOW),
        Err(VerifyError::InChain { position: 1, .. })
    ));

    // Past the gateway token's own expiry, even within its own lifetime.
    let short = mesh
        .gateway
        .sign_at(
            &UserClaims::new("alice"),
            "agent-a",
            Some(Duration::from_secs(100)),
            NOW,
        )
        .expect("signs");
    let outliving = forged_hop(&a, &short, "agent-b", |_| {});
    assert!(matches!(
        at_b.verify(&outliving, "alice", NOW),
        Err(VerifyError::BrokenLink { hop: 1, .. })
    ));
    // The signer itself never outlives the token it extends.
    let chain = a.pass_on(&mesh, &short, "agent-b", NOW);
    assert_eq!(
        claims_of(chain.rsplit('~').next().expect("hop"))["exp"],
        NOW + 100
    );
}

#[test]
fn chain_longer_than_max_call_depth_is_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let mut chain = mesh.token_for("agent-a");
    for _ in 0..3 {
        chain = a.pass_on(&mesh, &chain, "agent-a", NOW);
    }
    assert!(
        mesh.verifier_with("agent-a", 3)
            .verify(&chain, "alice", NOW)
            .is_ok()
    );
    assert_eq!(
        mesh.verifier_with("agent-a", 2)
            .verify(&chain, "alice", NOW)
            .err(),
        Some(VerifyError::ChainTooDeep { hops: 3, max: 2 })
    );
}

#[test]
fn scoped_token_cannot_be_delegated() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    mesh.agent("agent-b");
    let scope = TokenScope::new("oauth/callback", "state-1");
    let scoped = mesh
        .gateway
        .sign_scoped_at(&UserClaims::new("alice"), "agent-a", &scope, None, NOW)
        .expect("signs");
    let identity = mesh
        .verifier("agent-a")
        .verify(&scoped, "alice", NOW)
        .expect("verifies at agent-a");
    assert_eq!(identity.scope(), Some(&scope));
    assert!(matches!(
        a.delegator.delegate(&identity, &scoped, "agent-b", NOW),
        Err(SignError::InvalidInput(_))
    ));
    let forged = forged_hop(&a, &scoped, "agent-b", |_| {});
    assert_eq!(
        mesh.verifier("agent-b").verify(&forged, "alice", NOW).err(),
        Some(VerifyError::ScopedTokenDelegated {
            method: "oauth/callback".into()
        })
    );
}

#[test]
fn delegation_must_extend_the_token_the_identity_came_from() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let token = mesh.token_for("agent-a");
    let identity = mesh
        .verifier("agent-a")
        .verify(&token, "alice", NOW)
        .expect("verifies");
    let another = mesh.token_for("agent-a");
    assert!(matches!(
        a.delegator.delegate(&identity, &another, "agent-b", NOW),
        Err(SignError::InvalidInput(_))
    ));
    assert!(matches!(
        a.delegator
            .delegate(&identity, &token, "agent-b", NOW + 4000),
        Err(SignError::InvalidInput(_))
    ));
}

#[test]
fn a_hop_signed_with_a_gateway_key_or_a_lone_delegation_is_refused() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let token = mesh.token_for("agent-a");
    let header = json!({"alg": "ES256", "typ": "delegation+jwt", "kid": mesh.gateway_key.kid()});
    let claims = json!({
        "iss": GW, "sub": "alice", "aud": format!("{NS}/agent/agent-b"),
        "iat": NOW, "exp": NOW + 60, "jti": "j", "act": {"sub": "agent-a"},
        "prv": sha256_b64(&token),
    });
    let by_gateway = format!("{token}~{}", forge(&mesh.gateway_key, &header, &claims));
    let err = mesh
        .verifier("agent-b")
        .verify(&by_gateway, "alice", NOW)
        .expect_err("gateway key");
    assert!(
        matches!(&err, VerifyError::InChain { position: 1, error }
            if matches!(**error, VerifyError::NotAnAgent { .. })),
        "{err}"
    );
    // A delegation without the chain before it is no gateway token.
    let chain = a.pass_on(&mesh, &token, "agent-b", NOW);
    let lone = chain.rsplit('~').next().expect("hop");
    assert_eq!(
        mesh.verifier("agent-b").verify(lone, "alice", NOW).err(),
        Some(VerifyError::WrongTokenType {
            expected: "JWT",
            found: "delegation+jwt".into()
        })
    );
}

#[test]
fn agent_whose_account_differs_from_its_name_needs_a_bound_name() {
    let mesh = Mesh::new();
    let weather = mesh.agent_as("weather", "acct-weather");
    mesh.agent("agent-b");
    let chain = weather.pass_on(&mesh, &mesh.token_for("weather"), "agent-b", NOW);
    let at_b = mesh.verifier("agent-b");
    assert_eq!(
        at_b.verify(&chain, "alice", NOW).err(),
        Some(VerifyError::ActorNotBound {
            hop: 1,
            agent: "weather".into(),
            account: "acct-weather".into()
        })
    );
    // A signed card of `weather` from acct-weather binds the name.
    assert_eq!(
        mesh.registry.bind_agent_name("weather", "acct-weather"),
        Ok(true)
    );
    let identity = at_b.verify(&chain, "alice", NOW).expect("verifies");
    assert_eq!(actors(&identity), ["weather"]);
}

#[test]
fn cached_chain_dies_with_the_delegating_agents_card() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    mesh.agent("agent-b");
    let chain = a.pass_on(&mesh, &mesh.token_for("agent-a"), "agent-b", NOW);
    let at_b = mesh.verifier("agent-b");
    assert!(at_b.verify(&chain, "alice", NOW).is_ok());
    assert_eq!(at_b.cached_tokens(), 1);
    assert!(at_b.verify(&chain, "alice", NOW + 1).is_ok(), "cache hit");
    assert!(mesh.registry.remove(ComponentKind::Agent, "agent-a"));
    assert!(matches!(
        at_b.verify(&chain, "alice", NOW + 2),
        Err(VerifyError::InChain { position: 1, .. })
    ));
    assert_eq!(at_b.cached_tokens(), 0);
}

#[test]
fn errors_and_debug_output_carry_no_token_material() {
    let mesh = Mesh::new();
    let a = mesh.agent("agent-a");
    let chain = a.pass_on(&mesh, &mesh.token_for("agent-a"), "agent-b", NOW);
    let err = mesh
        .verifier("agent-c")
        .verify(&chain, "alice", NOW)
        .expect_err("wrong agent");
    let text = format!("{err} {err:?} {:?}", a.delegator);
    for token in chain.split('~') {
        for segment in token.split('.').filter(|s| s.len() >= 16) {
            assert!(!text.contains(segment), "{text}");
        }
    }
}
