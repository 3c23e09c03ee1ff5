//! Opening an agent's credential store from its `session_service` block.
//!
//! Credentials live in the same database as the agent's sessions. The key
//! material never does: it comes from `AMESH_AGENT_SECRET` or
//! `agent_secret_file` (created 0600 on first start). `SECRETS_TTL_SECONDS`
//! is read here, so a bad value stops the agent at start with a message
//! naming the variable.

use amesh_credentials::{
    AgentSecret, CredentialStore, DatabaseUrl, SecretError, StoreBackend, StoreConfig, ttl_from_env,
};

use crate::config::{AgentConfig, SessionServiceKind, ToolConfig};

/// Whether this agent needs a store: it has a tool that acts with users'
/// own credentials, a model (whose conversations it keeps), or its
/// operator configured a SQL store.
pub(crate) fn needed(cfg: &AgentConfig) -> bool {
    cfg.session_service.kind == SessionServiceKind::Sql
        || cfg.model.is_some()
        || has_oauth_tools(cfg)
}

/// Whether `cfg` has a tool that acts with users' own OAuth2 credentials.
pub(crate) fn has_oauth_tools(cfg: &AgentConfig) -> bool {
    cfg.tools
        .iter()
        .any(|t| matches!(t, ToolConfig::Mcp(m) if m.requires_user_auth()))
}

/// The store configuration for `cfg`, creating a missing SQLite file and
/// secret file.
pub fn store_config(cfg: &AgentConfig) -> anyhow::Result<StoreConfig> {
    build(cfg, Missing::Create)
}

/// The store configuration of `cfg`'s existing SQL store, for `amesh
/// credentials`: a missing database file or secret file is an error. A
/// tool that lists or revokes must not leave an empty database and a
/// fresh secret behind a typo in a path (the agent would then start
/// with a secret that decrypts none of its real credentials).
pub fn existing_store_config(cfg: &AgentConfig) -> anyhow::Result<StoreConfig> {
    build(cfg, Missing::Refuse)
}

/// What to do about a SQLite file or secret file that is not there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Create,
    Refuse,
}

fn build(cfg: &AgentConfig, missing: Missing) -> anyhow::Result<StoreConfig> {
    let ttl = ttl_from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret_file = cfg.agent_secret_file.as_deref();
    let (backend, secret) = match cfg.session_service.kind {
        SessionServiceKind::Memory => {
            // A memory store dies with the process; a throwaway secret is
            // as good as any unless the operator set one.
            let secret = match AgentSecret::resolve(secret_file) {
                Ok(s) => s,
                Err(SecretError::NotConfigured) => AgentSecret::generate()?,
                Err(e) => return Err(anyhow::anyhow!("agent secret: {e}")),
            };
            (StoreBackend::Memory, secret)
        }
        SessionServiceKind::Sql => {
            let url =
                cfg.session_service.database_url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("session_service type sql needs a database_url")
                })?;
            let mut database_url = DatabaseUrl::parse(url)
                .map_err(|e| anyhow::anyhow!("session_service.database_url: {e}"))?;
            let resolve = match missing {
                Missing::Create => AgentSecret::resolve,
                Missing::Refuse => {
                    if let Some(file) = database_url.sqlite_file()
                        && !file.exists()
                    {
                        anyhow::bail!(
                            "agent {}: the database {} does not exist (session_service.database_url; \
                             a relative path is relative to the config file's directory)",
                            cfg.agent_name,
                            file.display()
                        );
                    }
                    database_url = database_url.never_create();
                    AgentSecret::resolve_existing
                }
            };
            let secret = resolve(secret_file).map_err(|e| match e {
                SecretError::NotConfigured => anyhow::anyhow!(
                    "agent {}: a sql session_service needs the agent's secret: set agent_secret_file \
                     (created with mode 0600 on first start) or AMESH_AGENT_SECRET",
                    cfg.agent_name
                ),
                e => anyhow::anyhow!("agent secret: {e}"),
            })?;
            (StoreBackend::Sql { database_url }, secret)
        }
    };
    let mut config = StoreConfig::new(backend, cfg.agent_name.clone(), secret);
    config.ttl = ttl;
    Ok(config)
}

/// Opens (and migrates) the agent's store when it needs one.
pub(crate) async fn open(cfg: &AgentConfig) -> anyhow::Result<Option<CredentialStore>> {
    if !needed(cfg) {
        return Ok(None);
    }
    let config = store_config(cfg)?;
    if cfg.agent_secret_default
        && std::env::var_os(amesh_credentials::AGENT_SECRET_ENV).is_none()
        && let Some(file) = &cfg.agent_secret_file
    {
        tracing::info!(
            agent = %cfg.agent_name,
            file = %file.display(),
            "no agent secret configured: credentials are encrypted with the secret in this file (created on first start, mode 0600)"
        );
        tracing::warn!(
            agent = %cfg.agent_name,
            file = %file.display(),
            "replicas of this agent must share this secret file (or set agent_secret_file or AMESH_AGENT_SECRET); a replica with another secret cannot read the credentials the others stored"
        );
    }
    let store = CredentialStore::open(config)
        .await
        .map_err(|e| anyhow::anyhow!("agent {}: credential store: {e}", cfg.agent_name))?;
    tracing::info!(agent = %cfg.agent_name, backend = store.backend_name(), "credential store open");
    Ok(Some(store))
}
