//! Schema migrations, applied when a store opens.
//!
//! The bookkeeping table is `amesh_credentials_migrations`, not sea-orm's
//! default `seaql_migrations`: the agent's database may also hold other
//! components' tables and migrations, and sea-orm refuses to run when it
//! finds applied migrations it does not know.
//!
//! Column sizes are chosen for MySQL's 3072-byte index limit with utf8mb4:
//! indexed ids are `VARCHAR(255)`, lookups go through fixed 64-character
//! hashes, and the unindexed `tool_id` / `server` may be 1024 characters.
//! MySQL tables use `utf8mb4_bin`, so user ids compare case-sensitively
//! there as they do on SQLite and PostgreSQL.
//!
//! Migrations are only ever appended: a database created by an earlier
//! version gets the later ones the next time a store opens it.

use sea_orm::sea_query::{ColumnDef, Index, IntoIden, Table, TableCreateStatement};
use sea_orm::{DbBackend, DbErr, DynIden};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager, async_trait};

use super::entity::{client, conversation, credential, event, flow, trust_key};

/// Longest agent id, user id and task id.
pub(crate) const MAX_ID_LEN: usize = 255;
/// Longest tool id / server URL.
pub(crate) const MAX_TOOL_LEN: usize = 1024;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables),
            Box::new(CreateConversations),
            Box::new(AddRefreshLease),
            Box::new(AddCredentialLastUsed),
            Box::new(AddConversationRenamedAt),
            Box::new(CreateTrustKeys),
        ]
    }

    fn migration_table_name() -> DynIden {
        "amesh_credentials_migrations".into_iden()
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m0001_create_credential_tables"
    }
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .take()
}

fn short(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(MAX_ID_LEN as u32)
        .not_null()
        .take()
}

fn long(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(MAX_TOOL_LEN as u32)
        .not_null()
        .take()
}

fn hash(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().take()
}

fn millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().take()
}

fn opt_millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().null().take()
}

/// `LONGBLOB` on MySQL (`BLOB` stops at 64 KiB; a resume document holds a
/// conversation), `BLOB` / `BYTEA` elsewhere.
fn sealed(backend: DbBackend, col: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    match backend {
        DbBackend::MySql => def.custom("LONGBLOB".into_iden()),
        _ => def.blob(),
    };
    def.not_null().take()
}

fn for_backend(backend: DbBackend, mut table: TableCreateStatement) -> TableCreateStatement {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use credential::Column as C;
        let backend = manager.get_database_backend();

        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(credential::Entity)
                    .col(id(C::Id))
                    .col(short(C::AgentId))
                    .col(short(C::UserId))
                    .col(long(C::ToolId))
                    .col(hash(C::KeyHash))
                    .col(
                        ColumnDef::new(C::Tombstone)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(sealed(backend, C::Sealed))
                    .col(ColumnDef::new(C::Scopes).text().not_null())
                    .col(
                        ColumnDef::new(C::Issuer)
                            .string_len(MAX_TOOL_LEN as u32)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(C::ClientId)
                            .string_len(MAX_TOOL_LEN as u32)
                            .null(),
                    )
                    .col(opt_millis(C::TokenExpiresAt))
                    .col(millis(C::CreatedAt))
                    .col(millis(C::UpdatedAt))
                    .col(millis(C::ExpiresAt))
                    .col(opt_millis(C::DeletedAt))
                    .col(ColumnDef::new(C::DeleteReason).string_len(16).null())
                    .take(),
            ))
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_credentials_live")
                    .table(credential::Entity)
                    .col(C::KeyHash)
                    .col(C::Tombstone)
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credentials_agent_user")
                    .table(credential::Entity)
                    .col(C::AgentId)
                    .col(C::UserId)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credentials_sweep")
                    .table(credential::Entity)
                    .col(C::AgentId)
                    .col(C::Tombstone)
                    .col(C::ExpiresAt)
                    .take(),
            )
            .await?;

        use flow::Column as F;
        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(flow::Entity)
                    .col(hash(F::StateHash).primary_key())
                    .col(short(F::AgentId))
                    .col(short(F::UserId))
                    .col(long(F::ToolId))
                    .col(short(F::TaskId))
                    .col(sealed(backend, F::Sealed))
                    .col(millis(F::CreatedAt))
                    .col(millis(F::ExpiresAt))
                    .col(opt_millis(F::UsedAt))
                    .take(),
            ))
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credential_flows_expiry")
                    .table(flow::Entity)
                    .col(F::AgentId)
                    .col(F::ExpiresAt)
                    .take(),
            )
            .await?;

        use client::Column as K;
        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(client::Entity)
                    .col(hash(K::KeyHash).primary_key())
                    .col(short(K::AgentId))
                    .col(long(K::Server))
                    .col(long(K::ClientId))
                    .col(sealed(backend, K::Sealed))
                    .col(millis(K::CreatedAt))
                    .col(millis(K::UpdatedAt))
                    .take(),
            ))
            .await?;

        use event::Column as E;
        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(event::Entity)
                    .col(id(E::Id))
                    .col(short(E::AgentId))
                    .col(short(E::UserId))
                    .col(long(E::ToolId))
                    .col(ColumnDef::new(E::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(E::Reason).string_len(512).null())
                    .col(millis(E::At))
                    .take(),
            ))
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_credential_events_agent_user")
                    .table(event::Entity)
                    .col(E::AgentId)
                    .col(E::UserId)
                    .col(E::Id)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            event::Entity.into_iden(),
            client::Entity.into_iden(),
            flow::Entity.into_iden(),
            credential::Entity.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}

struct CreateConversations;

impl MigrationName for CreateConversations {
    fn name(&self) -> &str {
        "m0002_create_conversations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateConversations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use conversation::Column as V;
        let backend = manager.get_database_backend();
        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(conversation::Entity)
                    .col(id(V::Id))
                    .col(short(V::AgentId))
                    .col(short(V::UserId))
                    .col(short(V::ContextId))
                    .col(sealed(backend, V::Sealed))
                    // A title is at most `MAX_TITLE_CHARS` (1024)
                    // characters: a plain BLOB (64 KiB on MySQL) holds it.
                    .col(ColumnDef::new(V::SealedTitle).blob().not_null())
                    .col(ColumnDef::new(V::Turns).big_integer().not_null())
                    .col(millis(V::CreatedAt))
                    .col(millis(V::UpdatedAt))
                    .take(),
            ))
            .await?;
        // One conversation per context of an agent: what makes "this
        // context is another user's" decidable.
        manager
            .create_index(
                Index::create()
                    .name("ux_conversations_context")
                    .table(conversation::Entity)
                    .col(V::AgentId)
                    .col(V::ContextId)
                    .unique()
                    .take(),
            )
            .await?;
        // A user's conversation list, newest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_conversations_user")
                    .table(conversation::Entity)
                    .col(V::AgentId)
                    .col(V::UserId)
                    .col(V::UpdatedAt)
                    .take(),
            )
            .await?;
        // The sweeper's retention purge.
        manager
            .create_index(
                Index::create()
                    .name("ix_conversations_sweep")
                    .table(conversation::Entity)
                    .col(V::AgentId)
                    .col(V::UpdatedAt)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(conversation::Entity).take())
            .await
    }
}

/// The refresh lease on a credential row: replicas sharing the database
/// take it before spending a rotating refresh token (see
/// `storage/sql/lease.rs`). Nullable columns, so rows written by an
/// earlier version read as "not leased".
struct AddRefreshLease;

impl MigrationName for AddRefreshLease {
    fn name(&self) -> &str {
        "m0003_add_credential_refresh_lease"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRefreshLease {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use credential::Column as C;
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(credential::Entity)
                    .add_column(opt_millis(C::RefreshLeaseUntil))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(credential::Entity)
                    .add_column(ColumnDef::new(C::RefreshLeaseHolder).string_len(64).null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use credential::Column as C;
        for col in [C::RefreshLeaseUntil, C::RefreshLeaseHolder] {
            manager
                .alter_table(
                    Table::alter()
                        .table(credential::Entity)
                        .drop_column(col)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}

/// `credentials.last_used_at`: when a tool call last used the credential,
/// for the user's connected accounts page. Nullable: rows written by an
/// earlier version read as "not used since the upgrade".
struct AddCredentialLastUsed;

impl MigrationName for AddCredentialLastUsed {
    fn name(&self) -> &str {
        "m0004_add_credential_last_used"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddCredentialLastUsed {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(credential::Entity)
                    .add_column(opt_millis(credential::Column::LastUsedAt))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(credential::Entity)
                    .drop_column(credential::Column::LastUsedAt)
                    .take(),
            )
            .await
    }
}

/// `conversations.renamed_at`: set when the user names a conversation, so
/// the name outlives the gateway (which keeps conversations in memory
/// only) and is not replaced by the agent's own title at the next save.
/// Nullable: conversations saved by an earlier version keep the agent's title.
struct AddConversationRenamedAt;

impl MigrationName for AddConversationRenamedAt {
    fn name(&self) -> &str {
        "m0005_add_conversation_renamed_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddConversationRenamedAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(conversation::Entity)
                    .add_column(opt_millis(conversation::Column::RenamedAt))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(conversation::Entity)
                    .drop_column(conversation::Column::RenamedAt)
                    .take(),
            )
            .await
    }
}

/// The agent's trust key, shared by its replicas (see
/// `storage/sql/trust_keys.rs`).
struct CreateTrustKeys;

impl MigrationName for CreateTrustKeys {
    fn name(&self) -> &str {
        "m0006_create_trust_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTrustKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use trust_key::Column as T;
        let backend = manager.get_database_backend();
        manager
            .create_table(for_backend(
                backend,
                Table::create()
                    .table(trust_key::Entity)
                    .col(hash(T::KeyHash).primary_key())
                    .col(short(T::AgentId))
                    .col(short(T::Account))
                    .col(ColumnDef::new(T::Kid).string_len(64).not_null())
                    .col(sealed(backend, T::Sealed))
                    .col(millis(T::CreatedAt))
                    .take(),
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(trust_key::Entity).take())
            .await
    }
}
