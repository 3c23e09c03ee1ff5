//! The values that go in and out of the store.
//!
//! Secret fields are [`SecretString`] or [`SecretJson`], so deriving `Debug`
//! on these types is safe: `{:?}` of a credential shows its scopes and
//! expiry, never a token. Conversation titles are plain `String`s for the
//! agent's convenience, so the two conversation types write their own
//! `Debug` instead. Times are `SystemTime`; the database holds unix
//! milliseconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::secret::SecretString;

/// Which credential: one OAuth grant of `user_id` for `tool_id` (the MCP
/// tool block's `id` or its normalized URL). The agent is the store's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    /// The user the grant belongs to.
    pub user_id: String,
    /// The tool (MCP server) the grant is for.
    pub tool_id: String,
}

impl CredentialKey {
    /// The key of `user_id`'s grant for `tool_id`.
    pub fn new(user_id: impl Into<String>, tool_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            tool_id: tool_id.into(),
        }
    }
}

/// An OAuth2 token set and what is needed to refresh it.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<SecretString>,
    /// `token_type` from the token response, usually `Bearer`.
    pub token_type: String,
    /// When the access token expires, if the provider said.
    pub expires_at: Option<SystemTime>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The authorization server's issuer.
    pub issuer: Option<String>,
    /// Where to refresh the token.
    pub token_endpoint: Option<String>,
    /// The OAuth client the grant was issued to.
    pub client_id: Option<String>,
}

impl Credential {
    /// A bearer token with nothing else known.
    pub fn bearer(access_token: impl Into<SecretString>) -> Self {
        Self {
            access_token: access_token.into(),
            refresh_token: None,
            token_type: "Bearer".into(),
            expires_at: None,
            scopes: Vec::new(),
            issuer: None,
            token_endpoint: None,
            client_id: None,
        }
    }

    /// Whether the access token has expired at `now` (false when its
    /// expiry is unknown).
    pub fn is_access_token_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

/// What operators see of a stored credential: metadata, never tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    /// The agent the row belongs to.
    pub agent_id: String,
    /// The user.
    pub user_id: String,
    /// The tool.
    pub tool_id: String,
    /// Granted scopes (plaintext copy for operators).
    pub scopes: Vec<String>,
    /// The authorization server (plaintext copy for operators).
    pub issuer: Option<String>,
    /// The OAuth client id (plaintext copy for operators).
    pub client_id: Option<String>,
    /// When the access token expires, if known.
    pub token_expires_at: Option<SystemTime>,
    /// First stored.
    pub created_at: SystemTime,
    /// Last stored (acquired or refreshed).
    pub updated_at: SystemTime,
    /// When a tool call last used it, to the minute: written at most once
    /// a minute per credential (see
    /// [`CredentialStore::record_use`](crate::CredentialStore::record_use)).
    /// `None`: not used since it was stored (or since the upgrade that
    /// added the column).
    pub last_used_at: Option<SystemTime>,
    /// When the row's TTL (`SECRETS_TTL_SECONDS`) runs out.
    pub expires_at: SystemTime,
    /// When it was marked deleted, if it was.
    pub deleted_at: Option<SystemTime>,
    /// Why it was marked deleted.
    pub delete_reason: Option<DeleteReason>,
}

/// Why a credential row was marked deleted (rows are kept for audit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeleteReason {
    /// Its TTL ran out (the sweeper).
    Ttl,
    /// An operator or the user revoked it.
    Revoked,
    /// It stopped working (the provider answered 401, the grant was refused).
    Invalid,
}

impl DeleteReason {
    /// `ttl`, `revoked`, `invalid` (the database value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ttl => "ttl",
            Self::Revoked => "revoked",
            Self::Invalid => "invalid",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "ttl" => Some(Self::Ttl),
            "revoked" => Some(Self::Revoked),
            "invalid" => Some(Self::Invalid),
            _ => None,
        }
    }
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rows an operator function applies to. `None` matches anything;
/// `Filter::default()` matches every live row of every agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this agent's rows.
    pub agent_id: Option<String>,
    /// Only this user's rows.
    pub user_id: Option<String>,
    /// Only this tool's rows.
    pub tool_id: Option<String>,
    /// Also rows marked deleted (ignored by `revoke`).
    pub include_deleted: bool,
}

impl Filter {
    /// Rows of `agent_id`.
    pub fn agent(agent_id: impl Into<String>) -> Self {
        Self {
            agent_id: Some(agent_id.into()),
            ..Self::default()
        }
    }

    /// Narrows to `user_id`.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Narrows to `tool_id`.
    pub fn tool(mut self, tool_id: impl Into<String>) -> Self {
        self.tool_id = Some(tool_id.into());
        self
    }

    /// Includes rows marked deleted.
    pub fn with_deleted(mut self) -> Self {
        self.include_deleted = true;
        self
    }

    pub(crate) fn matches(&self, agent: &str, user: &str, tool: &str) -> bool {
        self.agent_id.as_deref().is_none_or(|a| a == agent)
            && self.user_id.as_deref().is_none_or(|u| u == user)
            && self.tool_id.as_deref().is_none_or(|t| t == tool)
    }
}

/// What happened to a credential, as recorded in `credential_events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Stored where no live credential was.
    Acquired,
    /// Released to its user.
    Used,
    /// Stored over a live credential (token refresh).
    Refreshed,
    /// Its TTL ran out.
    Expired,
    /// Deleted by the agent (e.g. the provider answered 401).
    Deleted,
    /// Revoked by an operator.
    Revoked,
    /// Another user's identity asked for it.
    AccessDenied,
    /// It did not decrypt (other agent secret, or altered/moved row).
    DecryptFailed,
    /// An authorization response for it was refused before its code was
    /// redeemed (RFC 9207 issuer mismatch).
    AuthorizationRefused,
    /// A user's tool authorization did not complete (the callback was
    /// refused: unknown, expired or reused flow, code exchange failed).
    AuthorizationFailed,
}

impl EventKind {
    /// The database value (`acquired`, `access_denied`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Used => "used",
            Self::Refreshed => "refreshed",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Revoked => "revoked",
            Self::AccessDenied => "access_denied",
            Self::DecryptFailed => "decrypt_failed",
            Self::AuthorizationRefused => "authorization_refused",
            Self::AuthorizationFailed => "authorization_failed",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        [
            Self::Acquired,
            Self::Used,
            Self::Refreshed,
            Self::Expired,
            Self::Deleted,
            Self::Revoked,
            Self::AccessDenied,
            Self::DecryptFailed,
            Self::AuthorizationRefused,
            Self::AuthorizationFailed,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record. Never holds token material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialEvent {
    /// Insertion order (database id; a counter in memory).
    pub id: i64,
    /// When.
    pub at: SystemTime,
    /// Whose agent.
    pub agent_id: String,
    /// Whose credential.
    pub user_id: String,
    /// Which tool.
    pub tool_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Why, in words (who was denied, the revocation reason, ...).
    pub reason: Option<String>,
}

impl CredentialEvent {
    /// The event as one JSON object for a SIEM: `id`, `time` (RFC 3339,
    /// UTC, milliseconds), `agent_id`, `user_id`, `tool_id`, `event` (the
    /// kind, e.g. `access_denied`) and `reason` (null when none).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "time": rfc3339_ms(self.at),
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "tool_id": self.tool_id,
            "event": self.kind.as_str(),
            "reason": self.reason,
        })
    }
}

/// `2026-12-02T10:22:48.123Z`: what SIEMs parse without a format hint.
fn rfc3339_ms(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&format)
        .unwrap_or_else(|_| to_ms(t).to_string())
}

/// Where a page of an audit export starts: events at or after `since`
/// whose id is above `after_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportCursor {
    /// Events older than this are left out.
    pub since: SystemTime,
    /// The id of the last event already read (0: none).
    pub after_id: i64,
}

impl ExportCursor {
    /// The first page: everything from `since`.
    pub fn since(since: SystemTime) -> Self {
        Self { since, after_id: 0 }
    }

    /// The page after the one that ended with event `last_id`.
    pub fn after(self, last_id: i64) -> Self {
        Self {
            after_id: last_id,
            ..self
        }
    }
}

/// JSON that may hold personal or secret data (a conversation, a client
/// registration response). Stored encrypted; `Debug` prints `[redacted]`.
#[derive(Clone, Default, PartialEq)]
pub struct SecretJson(serde_json::Value);

impl SecretJson {
    /// Wraps `value`.
    pub fn new(value: serde_json::Value) -> Self {
        Self(value)
    }

    /// The JSON itself.
    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }

    /// Unwraps the JSON.
    pub fn into_inner(self) -> serde_json::Value {
        self.0
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A pending OAuth authorization, as the agent starts it (the user is the
/// identity passed to [`start_flow`](crate::CredentialStore::start_flow)).
#[derive(Clone, Debug)]
pub struct NewFlow {
    /// The OAuth `state` (at least 16 characters of randomness). Stored
    /// only as a hash.
    pub state: SecretString,
    /// The tool being authorized.
    pub tool_id: String,
    /// The A2A task waiting on the user.
    pub task_id: String,
    /// The PKCE code verifier.
    pub pkce_verifier: SecretString,
    /// The redirect URI the authorization request used.
    pub redirect_uri: String,
    /// Everything needed to resume the task on any replica (tool,
    /// arguments, conversation). Opaque to the store; encrypted.
    pub resume: SecretJson,
}

/// A pending flow as taken back by the callback.
#[derive(Clone, Debug)]
pub struct PendingFlow {
    /// The agent that started it.
    pub agent_id: String,
    /// The user who must complete it.
    pub user_id: String,
    /// The tool being authorized.
    pub tool_id: String,
    /// The task to resume.
    pub task_id: String,
    /// The PKCE code verifier for the token exchange.
    pub pkce_verifier: SecretString,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// When it was started.
    pub created_at: SystemTime,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
    /// What the agent stored to resume the task.
    pub resume: SecretJson,
}

/// An OAuth dynamic client registration (RFC 7591) of this agent at one
/// authorization server / MCP server.
#[derive(Clone, Debug)]
pub struct ClientRegistration {
    /// The issuer or MCP server URL the client is registered with (the key).
    pub server: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, for confidential clients.
    pub client_secret: Option<SecretString>,
    /// When the client secret expires (`client_secret_expires_at`; `None`
    /// for never). An expired registration reads as absent.
    pub client_secret_expires_at: Option<SystemTime>,
    /// The full registration response (may hold a registration access
    /// token). Encrypted.
    pub registration: SecretJson,
}

/// What operators see of a client registration: where and under which
/// `client_id`, never the secret or the registration response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The agent the registration belongs to.
    pub agent_id: String,
    /// The issuer it is registered with (the key).
    pub server: String,
    /// The client id the issuer gave.
    pub client_id: String,
    /// When it was first stored.
    pub created_at: SystemTime,
    /// When it was last replaced.
    pub updated_at: SystemTime,
}

/// One conversation of a user with this agent (an A2A `contextId`): the
/// chat history the agent feeds its model, as the agent shapes it.
///
/// `messages` and `title` are both encrypted at rest — a title is usually
/// the gist of the user's first message, which is as personal as the
/// messages. `Debug` shows neither, only whether there is a title and the
/// turn count.
#[derive(Clone, Default, PartialEq)]
pub struct Conversation {
    /// The history (typically a JSON array of messages). Opaque to the
    /// store; the agent trims it to stay under
    /// [`MAX_CONVERSATION_BYTES`](crate::MAX_CONVERSATION_BYTES).
    pub messages: SecretJson,
    /// A short title for a conversation list (at most
    /// [`MAX_TITLE_CHARS`](crate::MAX_TITLE_CHARS) characters).
    pub title: Option<String>,
    /// How many turns the conversation has had (also stored in plaintext,
    /// for the listing).
    pub turns: u32,
}

impl fmt::Debug for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("messages", &self.messages)
            .field("title", &self.title.as_ref().map(|_| Redacted))
            .field("turns", &self.turns)
            .finish()
    }
}

/// What a conversation list shows: no messages. The title is decrypted for
/// the list but, as in [`Conversation`], `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationInfo {
    /// The A2A `contextId`.
    pub context_id: String,
    /// The conversation's title, if the agent gave it one.
    pub title: Option<String>,
    /// Turns so far.
    pub turns: u32,
    /// First saved.
    pub created_at: SystemTime,
    /// Last saved; the conversation is dropped
    /// [`conversation_ttl`](crate::StoreConfig::conversation_ttl) after this.
    pub updated_at: SystemTime,
    /// When the user named it; `None` while the title is the agent's.
    pub renamed_at: Option<SystemTime>,
}

impl fmt::Debug for ConversationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationInfo")
            .field("context_id", &self.context_id)
            .field("title", &self.title.as_ref().map(|_| Redacted))
            .field("turns", &self.turns)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("renamed_at", &self.renamed_at)
            .finish()
    }
}

/// Stands in for a value `Debug` must not print.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Unix milliseconds of `t` (0 before the epoch, saturating).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The `SystemTime` of unix milliseconds `ms`.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Now, as the store keeps times (unix milliseconds, signed for SQL).
pub(crate) fn now_ms() -> i64 {
    i64::try_from(amesh_trust::now_unix_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole milliseconds, at least 1.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
