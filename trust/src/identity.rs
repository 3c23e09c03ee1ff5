//! The gateway's side of identity: signing "this request is for user X" as
//! an ES256 JWT that agents check against the gateway's trust card.
//!
//! Token shape (shared with the verifier): header `{alg: ES256, typ: JWT,
//! kid}`; claims `iss` (gateway id), `sub` (user id), `aud` (the one agent
//! the token is for: [`agent_audience`], `{namespace}/agent/{agent_name}`),
//! `iat`, `nbf` (= `iat`), `exp`, `jti` (UUID v4), `email` / `name` when
//! known, and `amesh_scope` when the token is good for one request only
//! ([`TokenScope`]).
//!
//! A token names its recipient so that an agent cannot replay the tokens it
//! receives at other agents: whoever holds a token for agent A can act as
//! the user at A only. To reach a peer, A signs a delegation of its own
//! ([`crate::DelegationSigner`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jws;
use crate::key::{SignError, SigningKey};
use crate::scope::TokenScope;
use crate::time::now_unix;

/// The audience of tokens for agent `agent_name` in `namespace`:
/// `{namespace}/agent/{agent_name}`. Agent names are one topic level (no
/// `/`), so the agent is always the last segment.
pub fn agent_audience(namespace: &str, agent_name: &str) -> String {
    format!("{}/agent/{agent_name}", namespace.trim_end_matches('/'))
}

/// The user a gateway vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserClaims {
    /// User id; becomes `sub` and must equal the MQTT `userId` property.
    pub sub: String,
    /// Email, if the login provided one.
    pub email: Option<String>,
    /// Display name, if the login provided one.
    pub name: Option<String>,
}

impl UserClaims {
    /// Claims for `sub` with no email or name.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            email: None,
            name: None,
        }
    }
}

/// Claims of an identity token as signed.
#[derive(Serialize)]
pub(crate) struct OutgoingClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amesh_scope: Option<&'a TokenScope>,
}

/// Claims of an identity token as read by the verifier. Unknown claims are
/// ignored; the registered ones we rely on are required.
#[derive(Deserialize)]
pub(crate) struct IncomingClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: Audience,
    pub(crate) iat: u64,
    #[serde(default)]
    pub(crate) nbf: Option<u64>,
    pub(crate) exp: u64,
    pub(crate) jti: String,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) amesh_scope: Option<TokenScope>,
}

/// RFC 7519 allows `aud` as one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(aud) => aud == audience,
            Self::Many(auds) => auds.iter().any(|aud| aud == audience),
        }
    }

    /// The one audience, if there is exactly one.
    pub(crate) fn single(&self) -> Option<&str> {
        match self {
            Self::One(aud) => Some(aud),
            Self::Many(auds) if auds.len() == 1 => Some(&auds[0]),
            Self::Many(_) => None,
        }
    }

    /// For error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::One(aud) => jws::clip(aud),
            Self::Many(auds) => {
                let clip: Vec<String> = auds.iter().take(4).map(|a| jws::clip(a)).collect();
                format!("[{}]", clip.join(", "))
            }
        }
    }
}

/// Signs user identity tokens for one gateway. Held by the gateway; its key
/// is the one whose trust card the gateway publishes.
pub struct IdentitySigner {
    gateway_id: String,
    namespace: String,
    key: SigningKey,
    /// `{"alg":"ES256","typ":"JWT","kid":...}`, the same for every token.
    header: jsonwebtoken::Header,
    default_ttl: u64,
    max_ttl: u64,
}

impl IdentitySigner {
    /// A signer for gateway `gateway_id` in `namespace`. Tokens live
    /// `default_ttl` unless asked otherwise, and never longer than `max_ttl`
    /// (both whole seconds, at least one).
    pub fn new(
        gateway_id: impl Into<String>,
        namespace: impl Into<String>,
        key: SigningKey,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> Result<Self, SignError> {
        let gateway_id = gateway_id.into();
        let namespace = namespace.into();
        if gateway_id.is_empty() {
            return Err(SignError::InvalidInput("gateway id is empty"));
        }
        if namespace.is_empty() {
            return Err(SignError::InvalidInput("namespace is empty"));
        }
        let (default_ttl, max_ttl) = (default_ttl.as_secs(), max_ttl.as_secs());
        if default_ttl == 0 || max_ttl == 0 {
            return Err(SignError::InvalidInput("token lifetime below one second"));
        }
        if default_ttl > max_ttl {
            return Err(SignError::InvalidInput(
                "default token lifetime above the maximum",
            ));
        }
        Ok(Self {
            gateway_id,
            namespace,
            header: jws::new_header("JWT", key.kid()),
            key,
            default_ttl,
            max_ttl,
        })
    }

    /// Signs a token for `user` addressed to agent `agent`, valid from now
    /// for `ttl` (default: the configured default; clamped to the maximum).
    pub fn sign(
        &self,
        user: &UserClaims,
        agent: &str,
        ttl: Option<Duration>,
    ) -> Result<String, SignError> {
        self.sign_at(user, agent, ttl, now_unix())
    }

    /// [`sign`](Self::sign) with an explicit `now` (unix seconds).
    pub fn sign_at(
        &self,
        user: &UserClaims,
        agent: &str,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<String, SignError> {
        self.sign_token(user, agent, None, ttl, now)
    }

    /// A token for `user` at agent `agent` that is good only for the one
    /// request `scope` names (and cannot be delegated).
    pub fn sign_scoped_at(
        &self,
        user: &UserClaims,
        agent: &str,
        scope: &TokenScope,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<String, SignError> {
        self.sign_token(user, agent, Some(scope), ttl, now)
    }

    fn sign_token(
        &self,
        user: &UserClaims,
        agent: &str,
        scope: Option<&TokenScope>,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<String, SignError> {
        if user.sub.is_empty() {
            return Err(SignError::InvalidInput("user id (sub) is empty"));
        }
        if agent.is_empty() || agent.contains('/') {
            return Err(SignError::InvalidInput(
                "recipient agent name is empty or contains `/`",
            ));
        }
        let ttl = match ttl {
            None => self.default_ttl,
            Some(ttl) if ttl.as_secs() == 0 => {
                return Err(SignError::InvalidInput("token lifetime below one second"));
            }
            Some(ttl) => ttl.as_secs().min(self.max_ttl),
        };
        let exp = now
            .checked_add(ttl)
            .ok_or(SignError::InvalidInput("token expiry overflows"))?;
        let jti = uuid::Uuid::new_v4().to_string();
        let aud = agent_audience(&self.namespace, agent);
        let claims = OutgoingClaims {
            iss: &self.gateway_id,
            sub: &user.sub,
            aud: &aud,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            email: user.email.as_deref(),
            name: user.name.as_deref(),
            amesh_scope: scope,
        };
        self.key.sign(&self.header, &claims)
    }

    /// The `kid` tokens carry.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The gateway id tokens carry as `iss`.
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// The namespace of the agents tokens are for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The signing key (to sign the gateway's trust card with).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("gateway_id", &self.gateway_id)
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("default_ttl_secs", &self.default_ttl)
            .field("max_ttl_secs", &self.max_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn signer(default: u64, max: u64) -> IdentitySigner {
        IdentitySigner::new(
            "gw-1",
            "a2a/test",
            SigningKey::generate().expect("key"),
            Duration::from_secs(default),
            Duration::from_secs(max),
        )
        .expect("signer")
    }

    fn claims_of(token: &str) -> Value {
        jws::segment_json(token, 1)
    }

    #[test]
    fn token_carries_the_documented_claims() {
        let s = signer(300, 3600);
        let mut user = UserClaims::new("alice");
        user.email = Some("alice@example.com".into());
        let token = s.sign_at(&user, "agent-a", None, 1000).expect("signs");
        let c = claims_of(&token);
        assert_eq!(c["iss"], "gw-1");
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["aud"], "a2a/test/agent/agent-a");
        assert!(c.get("amesh_scope").is_none());
        assert_eq!(c["iat"], 1000);
        assert_eq!(c["nbf"], 1000);
        assert_eq!(c["exp"], 1300);
        assert_eq!(c["email"], "alice@example.com");
        assert!(c.get("name").is_none());
        let jti = c["jti"].as_str().expect("jti");
        assert_eq!(
            uuid::Uuid::parse_str(jti).map(|u| u.get_version_num()),
            Ok(4)
        );
        let h = jws::segment_json(&token, 0);
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["kid"], s.kid());
    }

    #[test]
    fn requested_lifetime_is_clamped_to_the_maximum() {
        let s = signer(300, 3600);
        let token = s
            .sign_at(
                &UserClaims::new("a"),
                "agent-a",
                Some(Duration::from_secs(86_400)),
                1000,
            )
            .expect("signs");
        assert_eq!(claims_of(&token)["exp"], 1000 + 3600);
    }

    #[test]
    fn signer_refuses_nonsense_settings_and_empty_subject() {
        let key = SigningKey::generate().expect("key");
        let s = Duration::from_secs;
        assert!(IdentitySigner::new("gw", "ns", key.clone(), s(600), s(60)).is_err());
        assert!(IdentitySigner::new("gw", "ns", key.clone(), s(0), s(60)).is_err());
        assert!(IdentitySigner::new("", "ns", key, s(1), s(60)).is_err());
        assert_eq!(
            signer(1, 1).sign(&UserClaims::new(""), "agent-a", None),
            Err(SignError::InvalidInput("user id (sub) is empty"))
        );
        assert!(signer(1, 1).sign(&UserClaims::new("a"), "", None).is_err());
        assert!(
            signer(1, 1)
                .sign(&UserClaims::new("a"), "x/y", None)
                .is_err()
        );
    }

    #[test]
    fn scoped_token_names_its_method_but_not_its_value() {
        let s = signer(300, 3600);
        let scope = TokenScope::new("oauth/callback", "the-state");
        let token = s
            .sign_scoped_at(&UserClaims::new("a"), "agent-a", &scope, None, 1000)
            .expect("signs");
        let c = claims_of(&token);
        assert_eq!(c["amesh_scope"]["method"], "oauth/callback");
        assert!(!token.contains("the-state"));
    }

    #[test]
    fn each_token_has_its_own_jti() {
        let s = signer(300, 3600);
        let a = s
            .sign_at(&UserClaims::new("a"), "x", None, 1)
            .expect("signs");
        let b = s
            .sign_at(&UserClaims::new("a"), "x", None, 1)
            .expect("signs");
        assert_ne!(claims_of(&a)["jti"], claims_of(&b)["jti"]);
    }

    #[test]
    fn debug_of_signer_shows_no_key_material() {
        let s = signer(300, 3600);
        let pem = s.key().to_pkcs8_pem().expect("pem");
        let debug = format!("{s:?}");
        assert!(
            debug.contains("[redacted]") && debug.contains("gw-1"),
            "{debug}"
        );
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for chunk in body.as_bytes().chunks(16) {
            let chunk = std::str::from_utf8(chunk).expect("ascii");
            assert!(!debug.contains(chunk));
        }
    }
}
