//! Delegation: an agent asking a peer to act for the user it acts for.
//!
//! A gateway token names the one agent it is for, so an agent cannot pass
//! it on. Instead the agent signs a *delegation* with its own trust key and
//! sends the whole chain: `G~D1~...~Dn` (`~`-separated compact JWS, oldest
//! first), where G is the gateway's token to the first agent and each Di is
//! one hop:
//!
//! header `{alg: ES256, typ: "delegation+jwt", kid: the delegating agent's
//! key}`; claims `iss` (the delegating agent's broker username), `sub` (the
//! user, = G's), `aud` (`{ns}/agent/{peer}`), `iat`, `nbf`, `exp` (short —
//! the runtime uses how long the delegating agent waits for the answer —
//! and never past the token it extends), `jti`, `act` (RFC 8693: `{sub:
//! delegating agent, act: <the chain before>}`), and `prv`, the base64url
//! SHA-256 of the token it extends.
//!
//! The receiver verifies every link ([`verify_chain`]): G is a valid gateway
//! token addressed to the first actor; each Di is signed by a live agent key
//! whose account speaks for the agent `act.sub` names, extends exactly the
//! token before it (`prv`), which was addressed to that agent, for the same
//! user, with the `act` chain so far, minted while that token was valid and
//! not outliving G; the last hop is addressed to the receiver and valid now.
//! A chain longer than `max_call_depth` is refused.
//!
//! What this cannot check: that each hop was allowed by the delegating
//! agent's `inter_agent_communication` policy. The delegating agent refuses
//! to mint a hop its policy forbids and the broker ACL refuses the publish;
//! a receiver can only compare with the policy the agent publishes in its
//! own card (the runtime does), which a compromised agent can lie about.
//! A compromised agent can act, at the peers it may reach, for the users
//! whose requests reach it, while their tokens live — no further.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cache::{CachedToken, KeyCheck};
use crate::identity::agent_audience;
use crate::jws::{self, clip};
use crate::key::{SignError, SigningKey};
use crate::verified::{Assurance, Verified, VerifiedIdentity};
use crate::verifier::{VerifierInner, VerifyError};

/// Media type of a delegation, in its JWS header `typ`.
pub const DELEGATION_TYP: &str = "delegation+jwt";

/// Separates the tokens of a delegation chain (not in base64url, nor `.`).
pub const CHAIN_SEPARATOR: char = '~';

/// How long a delegation lives unless configured otherwise.
pub const DEFAULT_DELEGATION_TTL: Duration = Duration::from_secs(300);

/// Longest chain looked at: ten hops of ~700 bytes and a gateway token fit
/// many times over.
const MAX_CHAIN_LEN: usize = 64 * 1024;

/// RFC 8693 actor claim: who acts, and for whom that one acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Actor {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Box<Actor>>,
}

impl Actor {
    /// The nested claim for agents `first..=last` (outermost: `last`).
    fn chain(actors: &[String]) -> Option<Actor> {
        actors.iter().fold(None, |act, sub| {
            Some(Actor {
                sub: sub.clone(),
                act: act.map(Box::new),
            })
        })
    }
}

#[derive(Serialize)]
struct OutgoingDelegation<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    act: &'a Actor,
    prv: &'a str,
}

#[derive(Deserialize)]
struct IncomingDelegation {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    #[serde(default)]
    nbf: Option<u64>,
    exp: u64,
    jti: String,
    act: Actor,
    prv: String,
}

/// Signs the delegations of one agent. Held by the agent; its key is the
/// one its trust card carries.
pub struct DelegationSigner {
    key: SigningKey,
    account: String,
    agent: String,
    namespace: String,
    header: jsonwebtoken::Header,
    ttl: u64,
}

impl DelegationSigner {
    /// A signer for agent `agent_name`, whose broker username (and trust
    /// card id) is `account`, in `namespace`; delegations live `ttl`.
    pub fn new(
        account: impl Into<String>,
        agent_name: impl Into<String>,
        namespace: impl Into<String>,
        key: SigningKey,
        ttl: Duration,
    ) -> Result<Self, SignError> {
        let (account, agent, namespace) = (account.into(), agent_name.into(), namespace.into());
        if account.is_empty() || agent.is_empty() || namespace.is_empty() {
            return Err(SignError::InvalidInput(
                "account, agent name and namespace must not be empty",
            ));
        }
        if ttl.as_secs() == 0 {
            return Err(SignError::InvalidInput(
                "delegation lifetime below one second",
            ));
        }
        Ok(Self {
            header: jws::new_header(DELEGATION_TYP, key.kid()),
            key,
            account,
            agent,
            namespace,
            ttl: ttl.as_secs(),
        })
    }

    /// Extends `presented` — the token or chain `identity` was verified
    /// from, as it arrived — with a hop to agent `peer`, and returns the new
    /// chain to send to the peer.
    ///
    /// Refused for an identity that did not come from a token (trust
    /// disabled), one scoped to a single request, one whose token has
    /// expired, and a `presented` that is not what `identity` came from.
    pub fn delegate(
        &self,
        identity: &VerifiedIdentity,
        presented: &str,
        peer: &str,
        now: u64,
    ) -> Result<String, SignError> {
        let (Some(expected), Some(expires_at)) = (identity.token_sha256(), identity.expires_at())
        else {
            return Err(SignError::InvalidInput(
                "only an identity verified from a token can be delegated",
            ));
        };
        if identity.scope().is_some() {
            return Err(SignError::InvalidInput(
                "a token scoped to one request cannot be delegated",
            ));
        }
        if peer.is_empty() || peer.contains('/') {
            return Err(SignError::InvalidInput(
                "peer agent name is empty or contains `/`",
            ));
        }
        let presented = presented.trim();
        let last = presented
            .rsplit(CHAIN_SEPARATOR)
            .next()
            .unwrap_or(presented);
        if sha256(last) != *expected {
            return Err(SignError::InvalidInput(
                "the token to extend is not the one the identity was verified from",
            ));
        }
        let exp = now.saturating_add(self.ttl).min(expires_at);
        if exp <= now {
            return Err(SignError::InvalidInput("the token to extend has expired"));
        }
        let mut actors = identity.actors().to_vec();
        actors.push(self.agent.clone());
        let act = Actor::chain(&actors).ok_or(SignError::Crypto)?;
        let jti = uuid::Uuid::new_v4().to_string();
        let aud = agent_audience(&self.namespace, peer);
        let prv = jws::b64(sha256(last));
        let claims = OutgoingDelegation {
            iss: &self.account,
            sub: identity.user_id(),
            aud: &aud,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            act: &act,
            prv: &prv,
        };
        let hop = self.key.sign(&self.header, &claims)?;
        Ok(format!("{presented}{CHAIN_SEPARATOR}{hop}"))
    }

    /// The agent this signer delegates for.
    pub fn agent(&self) -> &str {
        &self.agent
    }
}

impl fmt::Debug for DelegationSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegationSigner")
            .field("account", &self.account)
            .field("agent", &self.agent)
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("ttl_secs", &self.ttl)
            .finish()
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the link before a hop established.
struct Link {
    /// The token itself, for `prv`.
    token_sha256: [u8; 32],
    aud: String,
    iat: u64,
    exp: u64,
    act: Option<Actor>,
}

/// Verifies a chain `G~D1~...~Dn` addressed (by its last hop) to the
/// verifier's agent. See the module documentation for every check.
pub(crate) fn verify_chain(
    verifier: &VerifierInner,
    chain: &str,
    now: u64,
) -> Result<CachedToken, VerifyError> {
    if chain.len() > MAX_CHAIN_LEN {
        return Err(VerifyError::Malformed(
            "delegation chain longer than 64 KiB",
        ));
    }
    let tokens: Vec<&str> = chain.split(CHAIN_SEPARATOR).collect();
    let hops = tokens.len() - 1;
    if hops > verifier.max_depth {
        return Err(VerifyError::ChainTooDeep {
            hops,
            max: verifier.max_depth,
        });
    }
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(VerifyError::Malformed("empty token in a delegation chain"));
    }

    let gateway = verifier
        .check_gateway_token(tokens[0], now)
        .map_err(|e| e.in_chain(0))?;
    let root = gateway.claims;
    if let Some(scope) = &root.amesh_scope {
        return Err(VerifyError::ScopedTokenDelegated {
            method: scope.method().to_owned(),
        });
    }
    let Some(root_aud) = root.aud.single() else {
        return Err(
            VerifyError::Malformed("delegated gateway token names several audiences").in_chain(0),
        );
    };
    let mut link = Link {
        token_sha256: sha256(tokens[0]),
        aud: root_aud.to_owned(),
        iat: root.iat,
        exp: root.exp,
        act: None,
    };
    let mut keys = vec![gateway.key];
    let mut last_jti = String::new();
    for (hop, token) in tokens.iter().enumerate().skip(1) {
        let last = hop == hops;
        let (claims, key) = verify_hop(verifier, token, now, last).map_err(|e| e.in_chain(hop))?;
        let broken = |problem| VerifyError::BrokenLink { hop, problem };
        if jws::b64_fixed::<32>(&claims.prv) != Some(link.token_sha256) {
            return Err(broken(
                "it does not extend the token before it (prv differs)",
            ));
        }
        if claims.sub != root.sub {
            return Err(broken("it is for another user than the gateway token"));
        }
        if claims.act.act.as_deref() != link.act.as_ref() {
            return Err(broken(
                "its act chain does not continue the chain before it",
            ));
        }
        let actor = &claims.act.sub;
        if link.aud != agent_audience(verifier.registry.namespace(), actor) {
            return Err(broken(
                "the token it extends is not addressed to the agent that delegates",
            ));
        }
        if verifier.registry.agent_account(actor).as_deref() != Some(claims.iss.as_str()) {
            return Err(VerifyError::ActorNotBound {
                hop,
                agent: clip(actor),
                account: claims.iss.clone(),
            });
        }
        let skew = verifier.skew_secs;
        if claims.iat.saturating_add(skew) < link.iat {
            return Err(broken("it is issued before the token it extends"));
        }
        if claims.iat > link.exp.saturating_add(skew) {
            return Err(broken("it extends a token that had already expired"));
        }
        if claims.exp > root.exp {
            return Err(broken("it outlives the gateway token"));
        }
        if last && claims.aud != verifier.audience {
            return Err(VerifyError::AudienceMismatch {
                expected: verifier.audience.clone(),
                found: clip(&claims.aud),
            }
            .in_chain(hop));
        }
        keys.push(KeyCheck {
            kid: key,
            component_id: claims.iss.clone(),
            agent_name: Some(actor.clone()),
        });
        last_jti = claims.jti;
        link = Link {
            token_sha256: sha256(token),
            aud: claims.aud,
            iat: claims.iat,
            exp: claims.exp,
            act: Some(claims.act),
        };
    }
    let mut actors = Vec::with_capacity(hops);
    let mut act = link.act.as_ref();
    while let Some(a) = act {
        actors.push(a.sub.clone());
        act = a.act.as_deref();
    }
    actors.reverse();
    Ok(CachedToken {
        identity: VerifiedIdentity::from_verified(Verified {
            user_id: root.sub,
            email: root.email,
            name: root.name,
            assurance: Assurance::Delegated {
                issuer: root.iss,
                jti: last_jti,
                expires_at: link.exp,
                actors,
            },
            scope: None,
            token_sha256: link.token_sha256,
        }),
        keys,
        expires_at: link.exp,
    })
}

/// One delegation on its own: header, key, signature, issuer, lifetime,
/// and (for the last hop, the one in use now) the clock. Returns its claims
/// and `kid`.
fn verify_hop(
    verifier: &VerifierInner,
    token: &str,
    now: u64,
    last: bool,
) -> Result<(IncomingDelegation, String), VerifyError> {
    let header = jws::header(token)?;
    if header.typ.as_deref() != Some(DELEGATION_TYP) {
        return Err(VerifyError::WrongTokenType {
            expected: DELEGATION_TYP,
            found: header
                .typ
                .as_deref()
                .map_or_else(|| "(no typ)".to_owned(), clip),
        });
    }
    let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
    let key = verifier.agent_key(kid, now)?;
    let claims: IncomingDelegation = jws::verify(token, key.public_key())?;
    if claims.iss != key.component_id() {
        return Err(VerifyError::IssuerMismatch {
            expected: key.component_id().to_owned(),
            found: clip(&claims.iss),
        });
    }
    verifier.check_lifetime(claims.iat, claims.exp, verifier.max_delegation_ttl_secs)?;
    if last {
        verifier.check_now(claims.iat, claims.nbf, claims.exp, now)?;
    }
    Ok((claims, kid.to_owned()))
}
