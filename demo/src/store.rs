//! The demo provider's memory: registered clients, pending codes, tokens,
//! and the counters tests read.
//!
//! All of it sits behind one std `Mutex`: every critical section is a few
//! map operations with no `.await` inside, so an async mutex would only add
//! cost. The grant rules (PKCE S256, exact redirect URI, RFC 8707 resource,
//! refresh rotation) live here as plain functions so the HTTP handlers stay
//! thin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use amesh_mcp::oauth::resource_covers;

/// Behaviour switches, changeable while the provider runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub access_ttl: Duration,
    pub issue_refresh_tokens: bool,
    pub require_resource: bool,
    /// Whether a URL `client_id` is accepted and its Client ID Metadata
    /// Document fetched (and advertised in the server metadata).
    pub client_id_metadata_documents: bool,
    /// How long a rotated-away refresh token is still honoured (the
    /// "reuse interval" / "grace period" of Auth0 and Okta); zero: strict
    /// rotation, each refresh token works once.
    pub refresh_reuse_interval: Duration,
}

/// A client registered through `/register`.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub redirect_uris: Vec<String>,
    /// `Some` for confidential clients (`client_secret_basic`/`_post`).
    pub secret: Option<String>,
}

/// Who a token speaks for, and for what.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub user: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
}

/// What `/authorize` remembers until the code is exchanged.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires: Instant,
}

struct AccessToken {
    grant: Grant,
    expires: Instant,
}

/// An RFC 6749 §5.2 error: code, description, HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenError {
    pub error: &'static str,
    pub description: String,
    pub status: u16,
}

fn refuse(error: &'static str, description: impl Into<String>) -> TokenError {
    let status = if error == "invalid_client" { 401 } else { 400 };
    TokenError {
        error,
        description: description.into(),
        status,
    }
}

/// A successful token response.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scopes: Vec<String>,
}

/// The caller of an MCP request, once its bearer token checked out.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user: String,
    pub scopes: Vec<String>,
}

/// Counters and observations for tests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub token_requests: usize,
    pub code_exchanges: usize,
    pub refreshes: usize,
    /// `/revoke` requests that named a token the server knew.
    pub revocations: usize,
    pub registrations: usize,
    /// Client ID Metadata Documents fetched and accepted.
    pub metadata_documents: usize,
    /// `tools/call` requests that reached a tool (authorized ones).
    pub tool_calls: usize,
    pub last_resource: Option<String>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    codes: HashMap<String, PendingCode>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, Grant>,
    /// Rotated-away refresh tokens still in `refresh` during the reuse
    /// interval, and when it ends.
    retiring: HashMap<String, Instant>,
    counters: Counters,
}

/// Shared state of one demo provider. Cloning the `Arc` is shallow.
pub(crate) struct DemoState {
    /// The public base URL (no trailing slash) used in every document.
    pub base: String,
    /// Where browsers reach the consent page (no trailing slash); `base`
    /// unless the provider was told another.
    pub browser_base: String,
    settings: Mutex<Settings>,
    inner: Mutex<Inner>,
}

/// The scopes the demo knows.
pub(crate) const SCOPES: [&str; 2] = ["mcp", "profile"];

impl DemoState {
    pub fn new(base: String, browser_base: String, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            base,
            browser_base,
            settings: Mutex::new(settings),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Counts a `tools/call` that passed the bearer check.
    pub fn observe_call(&self, message: &serde_json::Value) {
        if message.get("method").and_then(serde_json::Value::as_str) == Some("tools/call") {
            self.inner().counters.tool_calls += 1;
        }
    }

    pub fn counters(&self) -> Counters {
        self.inner().counters.clone()
    }

    /// The URL of one MCP endpoint (`/mcp`, `/sse`), which is its RFC 8707 resource.
    pub fn resource_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// True when `resource` names this provider or one of its MCP endpoints.
    pub fn is_our_resource(&self, resource: &str) -> bool {
        let Ok(resource) = Url::parse(resource) else {
            return false;
        };
        ["/mcp", "/sse"].iter().any(|path| {
            Url::parse(&self.resource_of(path))
                .is_ok_and(|endpoint| resource_covers(&resource, &endpoint))
        })
    }

    pub fn register(
        &self,
        redirect_uris: Vec<String>,
        confidential: bool,
    ) -> (String, Option<String>) {
        let client_id = format!("demo-client-{}", random_token(12));
        let secret = confidential.then(|| random_token(32));
        let mut inner = self.inner();
        inner.counters.registrations += 1;
        inner.clients.insert(
            client_id.clone(),
            Client {
                redirect_uris,
                secret: secret.clone(),
            },
        );
        (client_id, secret)
    }

    /// Knows the client of an accepted Client ID Metadata Document (a
    /// public client) until the provider forgets its clients.
    pub fn adopt_metadata_client(&self, client_id: &str, redirect_uris: Vec<String>) {
        let mut inner = self.inner();
        inner.counters.metadata_documents += 1;
        inner.clients.insert(
            client_id.to_owned(),
            Client {
                redirect_uris,
                secret: None,
            },
        );
    }

    /// Forgets every registered client and what was issued to them, as a
    /// provider with an in-memory store does when it restarts.
    pub fn forget_registrations(&self) {
        let mut inner = self.inner();
        inner.clients.clear();
        inner.codes.clear();
        inner.access.clear();
        inner.refresh.clear();
    }

    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.inner().clients.get(client_id).cloned()
    }

    pub fn issue_code(&self, pending: PendingCode) -> String {
        let code = random_token(32);
        self.inner().codes.insert(code.clone(), pending);
        code
    }

    /// Authenticates the client at the token endpoint.
    pub fn authenticate(&self, client_id: &str, secret: Option<&str>) -> Result<(), TokenError> {
        let client = self
            .client(client_id)
            .ok_or_else(|| refuse("invalid_client", format!("unknown client {client_id:?}")))?;
        match (&client.secret, secret) {
            (None, _) => Ok(()),
            (Some(expected), Some(given)) if expected == given => Ok(()),
            (Some(_), _) => Err(refuse("invalid_client", "client authentication failed")),
        }
    }

    /// `grant_type=authorization_code`.
    pub fn redeem_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let settings = self.settings();
        let mut inner = self.inner();
        inner.counters.token_requests += 1;
        inner.counters.last_resource = resource.map(str::to_owned);
        // Single use: the code is gone whatever happens next.
        let pending = inner.codes.remove(code).ok_or_else(|| {
            refuse(
                "invalid_grant",
                "unknown or already used authorization code",
            )
        })?;
        if pending.expires <= Instant::now() {
            return Err(refuse("invalid_grant", "authorization code expired"));
        }
        if pending.grant.client_id != client_id {
            return Err(refuse("invalid_grant", "code was issued to another client"));
        }
        match redirect_uri {
            Some(uri) if uri == pending.redirect_uri => {}
            Some(uri) => {
                return Err(refuse(
                    "invalid_grant",
                    format!("redirect_uri {uri:?} differs from the authorization request's"),
                ));
            }
            None => return Err(refuse("invalid_request", "redirect_uri is required")),
        }
        let verifier =
            verifier.ok_or_else(|| refuse("invalid_request", "code_verifier is required"))?;
        if !pkce_matches(verifier, &pending.code_challenge) {
            return Err(refuse("invalid_grant", "PKCE verification failed"));
        }
        let resource = check_resource(&settings, resource, pending.grant.resource.as_deref())?;
        inner.counters.code_exchanges += 1;
        let grant = Grant {
            resource,
            ..pending.grant
        };
        Ok(issue(&mut inner, &settings, grant))
    }

    /// `grant_type=refresh_token`, with rotation when refresh tokens are issued.
    pub fn redeem_refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let settings = self.settings();
        let mut inner = self.inner();
        inner.counters.token_requests += 1;
        inner.counters.last_resource = resource.map(str::to_owned);
        // Rotated-away tokens whose reuse interval ended are dropped here,
        // so the retiring set stays as small as the interval allows.
        let now = Instant::now();
        let ended: Vec<String> = inner
            .retiring
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(token, _)| token.clone())
            .collect();
        for token in ended {
            inner.retiring.remove(&token);
            inner.refresh.remove(&token);
        }
        let grant = inner
            .refresh
            .get(refresh_token)
            .cloned()
            .ok_or_else(|| refuse("invalid_grant", "unknown, used or revoked refresh token"))?;
        if grant.client_id != client_id {
            return Err(refuse(
                "invalid_grant",
                "refresh token was issued to another client",
            ));
        }
        let resource = check_resource(&settings, resource, grant.resource.as_deref())?;
        let scopes = match scope {
            Some(scope) => {
                let asked: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
                if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                    return Err(refuse(
                        "invalid_scope",
                        format!("scope {extra:?} was not granted"),
                    ));
                }
                asked
            }
            None => grant.scopes.clone(),
        };
        inner.counters.refreshes += 1;
        let grant = Grant {
            scopes,
            resource,
            ..grant
        };
        let issued = issue(&mut inner, &settings, grant);
        // Rotation: a new refresh token replaces the old one; without a new
        // one the old stays valid (RFC 6749 §6).
        if issued.refresh_token.is_some() {
            if settings.refresh_reuse_interval.is_zero() {
                inner.refresh.remove(refresh_token);
            } else {
                let until = Instant::now() + settings.refresh_reuse_interval;
                inner
                    .retiring
                    .entry(refresh_token.to_owned())
                    .or_insert(until);
            }
        }
        Ok(issued)
    }

    /// RFC 7009: forget the token, whichever kind it is.
    pub fn revoke(&self, token: &str) {
        let mut inner = self.inner();
        let known = inner.access.remove(token).is_some() | inner.refresh.remove(token).is_some();
        if known {
            inner.counters.revocations += 1;
        }
    }

    /// Checks a bearer token for the MCP endpoint whose resource is `resource`.
    pub fn check_access(&self, token: &str, resource: &str) -> Option<Caller> {
        let inner = self.inner();
        let access = inner.access.get(token)?;
        if access.expires <= Instant::now() {
            return None;
        }
        if let Some(audience) = &access.grant.resource {
            let (Ok(audience), Ok(endpoint)) = (Url::parse(audience), Url::parse(resource)) else {
                return None;
            };
            if !resource_covers(&audience, &endpoint) {
                return None;
            }
        }
        Some(Caller {
            user: access.grant.user.clone(),
            scopes: access.grant.scopes.clone(),
        })
    }

    /// Test hook: every access token issued so far is now expired.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for token in self.inner().access.values_mut() {
            token.expires = now;
        }
    }

    /// Test hook: the user withdrew consent; all their tokens and codes die.
    pub fn revoke_user(&self, user: &str) {
        let mut inner = self.inner();
        inner.access.retain(|_, t| t.grant.user != user);
        inner.refresh.retain(|_, g| g.user != user);
        inner.codes.retain(|_, c| c.grant.user != user);
    }
}

/// RFC 8707 at the token endpoint: required if so configured, ours, and the
/// same as the one the user consented to.
fn check_resource(
    settings: &Settings,
    asked: Option<&str>,
    consented: Option<&str>,
) -> Result<Option<String>, TokenError> {
    match (asked, consented) {
        (None, _) if settings.require_resource => Err(refuse(
            "invalid_target",
            "the resource parameter is required",
        )),
        (Some(asked), Some(consented)) if asked != consented => Err(refuse(
            "invalid_target",
            format!("resource {asked:?} differs from the consented {consented:?}"),
        )),
        (asked, consented) => Ok(asked.or(consented).map(str::to_owned)),
    }
}

fn issue(inner: &mut Inner, settings: &Settings, grant: Grant) -> Issued {
    let access_token = random_token(32);
    let refresh_token = settings.issue_refresh_tokens.then(|| random_token(32));
    if let Some(refresh) = &refresh_token {
        inner.refresh.insert(refresh.clone(), grant.clone());
    }
    let scopes = grant.scopes.clone();
    inner.access.insert(
        access_token.clone(),
        AccessToken {
            grant,
            expires: Instant::now() + settings.access_ttl,
        },
    );
    Issued {
        access_token,
        refresh_token,
        expires_in: settings.access_ttl.as_secs(),
        scopes,
    }
}

/// RFC 7636 §4.6 with S256.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    well_formed && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// An opaque random string (base64url of `bytes` CSPRNG bytes).
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches("short", "x"));
    }

    #[test]
    fn resource_rules() {
        let strict = Settings {
            access_ttl: Duration::from_secs(60),
            issue_refresh_tokens: true,
            require_resource: true,
            client_id_metadata_documents: false,
            refresh_reuse_interval: Duration::ZERO,
        };
        assert!(check_resource(&strict, None, Some("http://h/mcp")).is_err());
        assert!(check_resource(&strict, Some("http://h/sse"), Some("http://h/mcp")).is_err());
        assert_eq!(
            check_resource(&strict, Some("http://h/mcp"), None)
                .unwrap()
                .as_deref(),
            Some("http://h/mcp")
        );
        let lax = Settings {
            require_resource: false,
            ..strict
        };
        assert_eq!(check_resource(&lax, None, None).unwrap(), None);
    }
}
