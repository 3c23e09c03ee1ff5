//! Identity token throughput on one core: sign, verify cold (no cache: one
//! ECDSA verification per call), verify warm (cache hit), and for reference
//! a bare `jsonwebtoken::decode` of the same token (the library this crate
//! verifies through, without our header pre-read, key lookup and claim
//! checks), and the floor: aws-lc's bare ES256 verification of the same
//! bytes with a parsed key.
//! Also: signing one delegation hop, verifying a one-hop chain cold, and
//! signing and verifying a reply signature (`amesh-signature`).
//!
//! Quick run: `cargo bench -p amesh-trust --bench identity -- --warm-up-time 1 --measurement-time 3`
//!
//! On a machine shared with other work, `AMESH_BENCH_CLOCK=thread-cpu`
//! measures the bench thread's CPU time instead of wall time, so the time
//! it spends descheduled by the load does not count (see [`ThreadCpuTime`]).

use std::hint::black_box;
use std::time::Duration;

use amesh_trust::{
    ComponentKind, DelegationSigner, IdentitySigner, IdentityVerifier, MessageSigner, SigningKey,
    TrustCard, TrustRegistry, UserClaims, VerifierConfig, now_unix, verify_message,
};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};

const NS: &str = "a2a/bench";
const GATEWAY: &str = "gw-bench";
const AGENT: &str = "agent-bench";
const PEER: &str = "peer-bench";

struct Setup {
    signer: IdentitySigner,
    registry: TrustRegistry,
    user: UserClaims,
    token: String,
    now: u64,
}

fn setup() -> Setup {
    let now = now_unix();
    let key = SigningKey::generate().expect("key");
    let card = TrustCard::sign(&key, ComponentKind::Gateway, GATEWAY, NS, 30, now).expect("card");
    let registry = TrustRegistry::new(NS, Duration::from_secs(60));
    registry
        .accept_card(ComponentKind::Gateway, GATEWAY, card.as_str(), now)
        .expect("card accepted");
    let signer = IdentitySigner::new(
        GATEWAY,
        NS,
        key,
        Duration::from_secs(600),
        Duration::from_secs(3600),
    )
    .expect("signer");
    let user = UserClaims {
        sub: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice Example".into()),
    };
    let token = signer.sign_at(&user, AGENT, None, now).expect("token");
    Setup {
        signer,
        registry,
        user,
        token,
        now,
    }
}

fn identity<M: Measurement>(c: &mut Criterion<M>) {
    let s = setup();
    let verifier = |cache_capacity| {
        IdentityVerifier::new(
            s.registry.clone(),
            AGENT,
            VerifierConfig {
                cache_capacity,
                ..VerifierConfig::default()
            },
        )
    };
    let cold = verifier(0);
    let warm = verifier(10_000);
    warm.verify(&s.token, &s.user.sub, s.now).expect("verifies");

    let mut group = c.benchmark_group("identity");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| {
            s.signer
                .sign_at(black_box(&s.user), AGENT, None, s.now)
                .expect("token")
        })
    });
    group.bench_function("verify_cold", |b| {
        b.iter(|| {
            cold.verify(black_box(&s.token), &s.user.sub, s.now)
                .expect("verifies")
        })
    });
    group.bench_function("verify_warm", |b| {
        b.iter(|| {
            warm.verify(black_box(&s.token), &s.user.sub, s.now)
                .expect("verifies")
        })
    });

    // Reference: jsonwebtoken 12 (aws_lc_rs backend) verifying the same token.
    let jwk = s.signer.key().public_jwk();
    let decoding_key =
        jsonwebtoken::DecodingKey::from_ec_components(&jwk.x, &jwk.y).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[format!("{NS}/agent/{AGENT}")]);
    validation.set_issuer(&[GATEWAY]);
    group.bench_function("verify_cold_jsonwebtoken_reference", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(
                black_box(&s.token),
                &decoding_key,
                &validation,
            )
            .expect("verifies")
        })
    });

    // Floor: the ECDSA verification alone, key parsed once.
    let point = s.signer.key().public_key().to_uncompressed_point();
    let parsed = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    )
    .expect("parsed key");
    let (signing_input, signature_b64) = s.token.rsplit_once('.').expect("three segments");
    let signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature_b64)
            .expect("base64url")
    };
    group.bench_function("floor_aws_lc_es256_verify", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(signing_input.as_bytes()), &signature)
                .expect("verifies")
        })
    });

    // Delegation: the agent's key and card, one hop to a peer.
    let agent_key = SigningKey::generate().expect("key");
    let card =
        TrustCard::sign(&agent_key, ComponentKind::Agent, AGENT, NS, 30, s.now).expect("card");
    s.registry
        .accept_card(ComponentKind::Agent, AGENT, card.as_str(), s.now)
        .expect("card accepted");
    let delegator = DelegationSigner::new(
        AGENT,
        AGENT,
        NS,
        agent_key.clone(),
        Duration::from_secs(300),
    )
    .expect("delegator");
    let identity = warm.verify(&s.token, &s.user.sub, s.now).expect("verifies");
    let chain = delegator
        .delegate(&identity, &s.token, PEER, s.now)
        .expect("delegates");
    let peer_cold = IdentityVerifier::new(
        s.registry.clone(),
        PEER,
        VerifierConfig {
            cache_capacity: 0,
            ..VerifierConfig::default()
        },
    );
    group.bench_function("delegate_one_hop", |b| {
        b.iter(|| {
            delegator
                .delegate(black_box(&identity), &s.token, PEER, s.now)
                .expect("delegates")
        })
    });
    group.bench_function("verify_chain_one_hop_cold", |b| {
        b.iter(|| {
            peer_cold
                .verify(black_box(&chain), &s.user.sub, s.now)
                .expect("verifies")
        })
    });

    // Reply signatures.
    let messages = MessageSigner::new(agent_key, AGENT).expect("signer");
    let topic = format!("{NS}/a2a/v1/gateway/response/{GATEWAY}/task-1");
    let reply = vec![b'x'; 600];
    let reply_signature = messages.sign(&topic, &reply, s.now).expect("signs");
    group.bench_function("sign_reply", |b| {
        b.iter(|| {
            messages
                .sign(&topic, black_box(&reply), s.now)
                .expect("signs")
        })
    });
    group.bench_function("verify_reply", |b| {
        b.iter(|| {
            verify_message(
                &s.registry,
                Some(&reply_signature),
                &topic,
                black_box(&reply),
                s.now,
            )
            .expect("verifies")
        })
    });
    group.finish();
}

/// The CPU time of the measuring thread (`CLOCK_THREAD_CPUTIME_ID`).
///
/// Every bench here runs on the calling thread only, so its CPU time is
/// its cost; wall time on a loaded 2-core machine also counts the time
/// the scheduler gave to other processes, which swings by ±20% from run
/// to run and hides a 10% difference between two builds.
struct ThreadCpuTime(WallTime);

fn thread_cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    // CPU time since the thread started: never negative, nanos < 1e9.
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way: wall time's units and throughput.
        self.0.formatter()
    }
}

fn main() {
    if std::env::var("AMESH_BENCH_CLOCK").as_deref() == Ok("thread-cpu") {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime(WallTime))
            .configure_from_args();
        identity(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        identity(&mut c);
        c.final_summary();
    }
}
