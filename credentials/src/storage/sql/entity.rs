//! The tables as sea-orm entities. Private to the SQL backend: no
//! model leaves it, so a sealed blob or a hash never reaches a caller by
//! accident.
//!
//! Times are unix milliseconds (`BIGINT`): one representation that
//! SQLite, PostgreSQL and MySQL compare and index the same way.

/// `credentials`: one live row per (agent, user, tool), plus the rows
/// marked deleted that are kept for audit.
///
/// `tombstone` is 0 on the live row and the row's own `id` once it is
/// marked deleted, so the unique index `(key_hash, tombstone)` allows one
/// live row and any number of deleted ones on every database (MySQL has no
/// partial indexes).
pub(crate) mod credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub agent_id: String,
        pub user_id: String,
        pub tool_id: String,
        /// Hex SHA-256 of the length-prefixed key triple: the lookup index.
        pub key_hash: String,
        pub tombstone: i64,
        /// `version | key id | nonce | AES-256-GCM(ciphertext | tag)`.
        pub sealed: Vec<u8>,
        pub scopes: String,
        pub issuer: Option<String>,
        pub client_id: Option<String>,
        pub token_expires_at: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
        pub expires_at: i64,
        pub deleted_at: Option<i64>,
        pub delete_reason: Option<String>,
        /// Until when (unix ms) one replica holds the right to refresh this
        /// row's grant; `NULL` or past means nobody does. See `lease.rs`.
        pub refresh_lease_until: Option<i64>,
        /// The store instance (replica) holding the lease.
        pub refresh_lease_holder: Option<String>,
        /// When (unix ms) a tool call last used the credential, written at
        /// most once a minute per credential (`store::UseThrottle`).
        pub last_used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `credential_flows`: pending OAuth flows, keyed by a hash of the state.
pub(crate) mod flow {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential_flows")]
    pub struct Model {
        /// Hex SHA-256 of (agent, state): the state itself is not stored.
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        pub agent_id: String,
        pub user_id: String,
        pub tool_id: String,
        pub task_id: String,
        /// PKCE verifier, redirect URI and the resume document, sealed.
        pub sealed: Vec<u8>,
        pub created_at: i64,
        pub expires_at: i64,
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `credential_clients`: dynamic client registrations per agent and server.
pub(crate) mod client {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential_clients")]
    pub struct Model {
        /// Hex SHA-256 of (agent, server).
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_hash: String,
        pub agent_id: String,
        pub server: String,
        pub client_id: String,
        /// Client secret and registration response, sealed.
        pub sealed: Vec<u8>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `credential_events`: the append-only audit log.
pub(crate) mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub agent_id: String,
        pub user_id: String,
        pub tool_id: String,
        pub kind: String,
        pub reason: Option<String>,
        pub at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `conversations`: each user's chat history with the agent per A2A
/// `contextId`. One row per (agent, context); `user_id` says whose it is.
/// No tombstones: history past retention is deleted, not kept for audit.
pub(crate) mod conversation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub agent_id: String,
        pub user_id: String,
        pub context_id: String,
        /// The history and turn count, sealed to (agent, user, context).
        pub sealed: Vec<u8>,
        /// The title (or its absence), sealed on its own for the listing.
        pub sealed_title: Vec<u8>,
        /// Plaintext copy of the turn count, for the listing.
        pub turns: i64,
        pub created_at: i64,
        pub updated_at: i64,
        /// When (unix ms) the user named the conversation; `NULL` while its
        /// title is the agent's (the first question). A named one keeps its
        /// title through later saves.
        pub renamed_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `trust_keys`: an agent's trust (signing) key, sealed with its agent
/// secret, so its replicas sign with one key and publish one trust card.
/// One row per (agent, broker account); the first replica to start writes
/// it and the others load it (see `trust_keys.rs`).
pub(crate) mod trust_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "trust_keys")]
    pub struct Model {
        /// Hex SHA-256 of (agent, account).
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_hash: String,
        pub agent_id: String,
        /// The broker username the agent connects as: its trust card's id.
        pub account: String,
        /// Plaintext copy of the key id (RFC 7638 thumbprint), for operators.
        pub kid: String,
        /// The private key as PKCS#8 PEM, sealed.
        pub sealed: Vec<u8>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
