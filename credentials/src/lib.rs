//! # amesh-credentials
//!
//! The credential service of an amesh agent: each user's OAuth2 tokens for
//! each remote MCP tool, keyed by (agent, user, tool), released only to
//! that user's [`VerifiedIdentity`](amesh_trust::VerifiedIdentity) —
//! plus the pending OAuth flows and dynamic client registrations the MCP
//! code needs, and each user's conversations with the agent, in the same
//! store, so any replica of an agent can finish a flow or continue a
//! conversation another replica started.
//!
//! - [`CredentialStore`]: put / get / delete / list for a user; flows
//!   ([`start_flow`](CredentialStore::start_flow),
//!   [`take_flow`](CredentialStore::take_flow)); client registrations;
//!   conversations per A2A `contextId`
//!   ([`conversation`](CredentialStore::conversation),
//!   [`save_conversation`](CredentialStore::save_conversation),
//!   [`delete_conversation`](CredentialStore::delete_conversation),
//!   [`list_conversations`](CredentialStore::list_conversations));
//!   operator [`list`](CredentialStore::list),
//!   [`revoke`](CredentialStore::revoke) and
//!   [`events`](CredentialStore::events); the agent's trust key, shared by
//!   its replicas ([`shared_trust_key`](CredentialStore::shared_trust_key)).
//! - [`StoreConfig`]: memory or SQL (SQLite, PostgreSQL, MySQL/MariaDB via
//!   sea-orm, migrated at open — a database from an earlier version gets
//!   the new tables), the agent id and its [`AgentSecret`], the TTL
//!   ([`ttl_from_env`] reads `SECRETS_TTL_SECONDS`) and the conversation
//!   retention ([`StoreConfig::conversation_ttl`], 30 days by default).
//! - Encryption at rest: AES-256-GCM, a random nonce per write, keys from
//!   HKDF-SHA256 over the agent secret with the purpose and agent id in
//!   `info`, and the row's identity — (agent, user, tool), or (agent,
//!   user, `contextId`) for a conversation — as associated data.
//!   Conversation history *and* title are encrypted.
//! - Conversations belong to the user who first saved them: another user
//!   presenting the same `contextId` gets
//!   [`CredentialError::ConversationOfAnotherUser`], a row moved to
//!   another user or context gets
//!   [`CredentialError::ConversationUnreadable`], and one over
//!   [`MAX_CONVERSATION_BYTES`] is refused
//!   ([`CredentialError::ConversationTooLarge`]; the agent trims first).
//! - TTL: a background sweeper marks expired credentials deleted (`ttl`),
//!   keeps them for audit, and reads never return them; it deletes
//!   conversations not saved within `conversation_ttl`, which reads also
//!   treat as absent. A memory store keeps at most
//!   [`MAX_MEMORY_CONVERSATIONS`] conversations (and
//!   [`MAX_MEMORY_CONVERSATION_BYTES`]), dropping the least recently saved.
//! - Audit: `credential_events` (acquired, used, refreshed, expired,
//!   deleted, revoked, access_denied, decrypt_failed), never token material
//!   or conversation content. Conversation saves are not audited; refusals
//!   and decrypt failures are, with `conversation:<contextId>` as the tool.
//!
//! ```
//! use amesh_credentials::*;
//! use amesh_trust::{TrustDisabled, VerifiedIdentity};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let config = StoreConfig::new(StoreBackend::Memory, "billing-agent", AgentSecret::generate()?);
//! let store = CredentialStore::open(config).await?;
//!
//! // In the agent, identities come from the IdentityVerifier.
//! let alice = VerifiedIdentity::trust_disabled(TrustDisabled::by_configuration(), "alice", None, None);
//! let key = CredentialKey::new("alice", "https://mcp.example.com/mcp");
//! store.put(&key, &alice, &Credential::bearer("access-token")).await?;
//! let credential = store.get(&key, &alice).await?.expect("stored");
//! assert_eq!(credential.access_token.expose_secret(), "access-token");
//! assert!(!format!("{:?}", credential.access_token).contains("access-token"));
//!
//! // The agent keeps each conversation (A2A contextId) of each user.
//! let history = Conversation {
//!     messages: SecretJson::new(serde_json::json!([{"role": "user", "text": "hello"}])),
//!     title: Some("Greeting".into()),
//!     turns: 1,
//! };
//! store.save_conversation(&alice, "ctx-1", &history).await?;
//! assert_eq!(store.conversation(&alice, "ctx-1").await?, Some(history));
//! assert_eq!(store.list_conversations(&alice, 20).await?[0].context_id, "ctx-1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Deploying: one database, or at least one secret, per agent
//!
//! *(For the README.)* Each agent should have its own credential database
//! (`session_service.database_url`), or at the very least its own agent
//! secret. Rows are scoped by `agent_id` and encrypted with keys derived
//! from the agent's secret *and* its id, so one agent cannot read another's
//! rows even in a shared database — but a shared database lets one agent's
//! operator list, revoke and delete another's, and a shared secret turns
//! one agent's compromise into every agent's. The agent secret
//! (`AMESH_AGENT_SECRET`, or the `agent_secret_file`, created 0600 with 32
//! random bytes when missing) never goes in the database; back it up
//! separately. Replicas of one agent must share both its database and its
//! secret. If the secret changes, stored credentials become unreadable:
//! the store logs it once and treats them as absent, and users sign in to
//! their tools again; stored conversations likewise read as absent, and
//! start over. Stored credentials live `SECRETS_TTL_SECONDS` (default and
//! maximum 2592000, 30 days) from their last refresh; conversations
//! `conversation_ttl` (default 30 days) from their last save.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod anomaly;
mod config;
mod conversations;
mod crypto;
mod error;
mod flows;
mod last_used;
mod model;
mod refresh;
mod sealed;
mod secret;
mod storage;
mod store;
mod sweeper;
mod trust_key;
mod ttl;

pub use config::{
    DEFAULT_CONVERSATION_TTL, DEFAULT_FLOW_TTL, DatabaseUrl, StoreBackend, StoreConfig,
};
pub use conversations::{
    MAX_CONVERSATION_BYTES, MAX_CONVERSATION_LIST, MAX_MEMORY_CONVERSATION_BYTES,
    MAX_MEMORY_CONVERSATIONS, MAX_TITLE_CHARS,
};
pub use error::{CredentialError, SecretError};
pub use flows::MIN_STATE_LEN;
pub use last_used::USE_WRITE_INTERVAL_MS;
pub use model::{
    ClientInfo, ClientRegistration, Conversation, ConversationInfo, Credential, CredentialEvent,
    CredentialInfo, CredentialKey, DeleteReason, EventKind, ExportCursor, Filter, NewFlow,
    PendingFlow, SecretJson,
};
pub use refresh::{LeaseTiming, Refresh};
pub use secret::{
    AGENT_SECRET_ENV, AGENT_SECRET_MIN_BYTES, AgentSecret, ExposeSecret, SecretString,
};
pub use store::CredentialStore;
pub use trust_key::{SharedTrustKey, TrustKeyOrigin};
pub use ttl::{DEFAULT_TTL, MAX_TTL_SECONDS, SECRETS_TTL_VAR, parse_ttl, ttl_from_env};
