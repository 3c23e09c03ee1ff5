//! What can go wrong, one variant per thing a caller can act on.
//!
//! The MCP/OAuth code turns `AccessDenied` into a refusal, the `Flow*`
//! variants into a precise message to the user, and `Unavailable` into "try
//! again later" — so those are distinct variants, not strings. No variant
//! carries token material or a database password: messages name the backend
//! and host, the user and tool ids, never the secrets.

use std::path::PathBuf;

/// Errors of the credential store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A [`VerifiedIdentity`](amesh_trust::VerifiedIdentity) asked for
    /// another user's credentials (audited as `access_denied`).
    #[error(
        "access denied: identity of user {identity_user:?} may not {operation} credentials of user {key_user:?} (agent {agent_id:?}, tool {tool_id:?})"
    )]
    AccessDenied {
        /// The store's agent.
        agent_id: String,
        /// The user the credential belongs to.
        key_user: String,
        /// The user the identity is for.
        identity_user: String,
        /// The tool of the credential.
        tool_id: String,
        /// `read`, `store`, `delete`.
        operation: &'static str,
    },

    /// The database cannot be reached or refuses work (down, dropped,
    /// locked, connections exhausted). Retry later; nothing was changed.
    #[error("credential database unavailable ({backend} at {target}): {detail}")]
    Unavailable {
        /// `SQLite`, `PostgreSQL`, `MySQL/MariaDB`.
        backend: &'static str,
        /// Host, port and database (or file), never the password.
        target: String,
        /// What the driver said, with any password scrubbed.
        detail: String,
    },

    /// The database answered with an error that is not about reachability
    /// (schema missing, constraint, type mismatch).
    #[error("credential database error ({backend} at {target}): {detail}")]
    Database {
        /// `SQLite`, `PostgreSQL`, `MySQL/MariaDB`.
        backend: &'static str,
        /// Host, port and database (or file), never the password.
        target: String,
        /// What the driver said, with any password scrubbed.
        detail: String,
    },

    /// Migrations could not be applied at start.
    #[error("credential database migration failed ({backend} at {target}): {detail}")]
    Migration {
        /// `SQLite`, `PostgreSQL`, `MySQL/MariaDB`.
        backend: &'static str,
        /// Host, port and database (or file), never the password.
        target: String,
        /// What went wrong, with any password scrubbed.
        detail: String,
    },

    /// No pending OAuth flow has this `state` (never started, already
    /// purged, or written under another agent secret).
    #[error("no pending OAuth flow matches this state")]
    FlowNotFound,

    /// The pending flow's ten minutes (or configured lifetime) are over.
    #[error("the OAuth flow expired at unix ms {expired_at_ms}; start it again")]
    FlowExpired {
        /// When it expired (unix milliseconds).
        expired_at_ms: i64,
    },

    /// The flow was already taken: a `state` is good for one callback.
    #[error("the OAuth flow was already completed (a state is single use)")]
    FlowAlreadyUsed,

    /// The flow belongs to another user (audited as `access_denied`).
    #[error("the OAuth flow was started by another user than {identity_user:?}")]
    FlowUserMismatch {
        /// The user the presented identity is for.
        identity_user: String,
    },

    /// `SECRETS_TTL_SECONDS` (or a configured TTL) is out of range.
    #[error(
        "{variable}={value:?} is invalid: {reason}; expected whole seconds from 1 to {max} (30 days)"
    )]
    InvalidTtl {
        /// The variable or setting.
        variable: &'static str,
        /// The value given (clipped).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The largest value allowed.
        max: u64,
    },

    /// The database URL cannot be used (unknown scheme, malformed).
    #[error("invalid database_url ({redacted_url}): {reason}")]
    InvalidDatabaseUrl {
        /// The URL with any password replaced by `[redacted]`.
        redacted_url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An argument is unusable (empty id, id too long, weak state).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The conversation of this `contextId` belongs to another user of the
    /// agent: the agent refuses the request (audited as `access_denied`).
    /// The owner is not named — the message may reach the requester.
    #[error(
        "conversation {context_id:?} belongs to another user than {identity_user:?}; start a new conversation"
    )]
    ConversationOfAnotherUser {
        /// The A2A `contextId` asked for.
        context_id: String,
        /// The user the presented identity is for.
        identity_user: String,
    },

    /// A conversation is too large to store; the agent trims its history
    /// and saves again. Nothing was stored.
    #[error(
        "conversation {context_id:?} would take {size} bytes encrypted; at most {max} are stored, trim its history"
    )]
    ConversationTooLarge {
        /// The A2A `contextId`.
        context_id: String,
        /// Its encrypted size.
        size: usize,
        /// The limit, [`MAX_CONVERSATION_BYTES`](crate::MAX_CONVERSATION_BYTES).
        max: usize,
    },

    /// The stored conversation does not decrypt for this user and
    /// `contextId`: it was altered, or copied from another row (audited as
    /// `decrypt_failed`). Its content is never used; saving the
    /// conversation again replaces it.
    #[error("stored conversation {context_id:?} does not decrypt: {reason}")]
    ConversationUnreadable {
        /// The A2A `contextId`.
        context_id: String,
        /// Why, in words (never content).
        reason: &'static str,
    },

    /// A row decrypted but its content is not what this version writes.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// `credential`, `flow`, `client registration`, `conversation`.
        what: &'static str,
        /// What could not be read (never the plaintext).
        detail: String,
    },

    /// The agent's trust key in the database cannot be used: sealed under
    /// another agent secret (a replica started with another secret), altered
    /// or moved, or not a P-256 key. Nothing was changed; the agent must not
    /// start with a key of its own, or its replicas would publish two.
    #[error(
        "the trust key stored for agent {agent_id:?} (broker account {account:?}) cannot be used: {reason}"
    )]
    TrustKeyUnreadable {
        /// The store's agent.
        agent_id: String,
        /// The broker username the key is for.
        account: String,
        /// Why, in words (never key material).
        reason: &'static str,
    },

    /// Encryption failed (random source unavailable).
    #[error("encryption failed: {0}")]
    Crypto(&'static str),

    /// The store was closed with [`CredentialStore::close`](crate::CredentialStore::close).
    #[error("the credential store is closed")]
    Closed,
}

/// Errors loading or creating the [`AgentSecret`](crate::AgentSecret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret file could not be read or written.
    #[error("cannot {action} the agent secret file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// `read`, `create`, `write`, ...
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The secret is not base64.
    #[error(
        "the agent secret in {origin} is unusable: {reason} (expected base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`)"
    )]
    Malformed {
        /// `file <path>` or `environment variable AMESH_AGENT_SECRET`.
        origin: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The secret decodes to fewer than 32 bytes.
    #[error(
        "the agent secret in {origin} has {bytes} bytes; at least 32 are required (e.g. `openssl rand -base64 32`)"
    )]
    TooShort {
        /// Where it came from.
        origin: String,
        /// How many bytes it has.
        bytes: usize,
    },
    /// The secret file does not exist and was not to be created.
    #[error("the agent secret file {path} does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Neither `AMESH_AGENT_SECRET` nor a secret file is configured.
    #[error("no agent secret: set AMESH_AGENT_SECRET or configure agent_secret_file")]
    NotConfigured,
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed")]
    Random,
}
