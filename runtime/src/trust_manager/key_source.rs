//! Where a component's trust key comes from, and what the operator is told.
//!
//! Replicas of one component connect with one broker username, so they
//! publish their trust cards on one retained topic and must sign with one
//! key: with a key each, every publication replaces the others' card,
//! receivers log a rotation each time, and a receiver that joins late
//! holds only the last replica's key and refuses what the other replicas
//! sign. The sources, in the order they are chosen:
//!
//! 1. `trust_manager.key_file`: the operator's key (created 0600 when
//!    missing). Replicas must all read the same file.
//! 2. An agent with a SQL `session_service`: the key kept in that database,
//!    sealed with the agent secret (which its replicas already share),
//!    made by the first replica to start and loaded by every other.
//! 3. Otherwise a key made in memory at each start: fine for one process,
//!    refused for replicas (`AMESH_REPLICA_ID` set) by `config check` and
//!    `run` alike, before anything connects.

use std::path::{Path, PathBuf};

use amesh_credentials::{CredentialStore, TrustKeyOrigin};
use amesh_trust::SigningKey;

use crate::config::{AgentConfig, SessionServiceKind, TrustManagerConfig};

/// Where a component's trust key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Trust is disabled: the key signs nothing anyone checks.
    Disabled,
    /// `trust_manager.key_file`.
    File(PathBuf),
    /// The agent's SQL database, shared by its replicas.
    Database,
    /// A new key at each start.
    Memory,
}

impl KeySource {
    /// The source for a component with trust settings `trust`; `sql_store`
    /// says whether it is an agent with a SQL `session_service`.
    pub fn of(trust: &TrustManagerConfig, sql_store: bool) -> KeySource {
        match (&trust.key_file, sql_store) {
            _ if !trust.enabled => KeySource::Disabled,
            (Some(file), _) => KeySource::File(file.clone()),
            (None, true) => KeySource::Database,
            (None, false) => KeySource::Memory,
        }
    }

    /// The source of agent `cfg`'s key.
    pub fn of_agent(cfg: &AgentConfig) -> KeySource {
        Self::of(
            &cfg.trust_manager,
            cfg.session_service.kind == SessionServiceKind::Sql,
        )
    }

    /// Why replicas of the component may not run with this source, if they
    /// may not. `agent` says whether it is an agent (which has the
    /// database option).
    pub fn replica_refusal(&self, replica_id: &str, agent: bool) -> Option<String> {
        if *self != KeySource::Memory {
            return None;
        }
        let database = if agent {
            ", or give the agent a sql session_service (its replicas then share one key kept in \
             that database, sealed with the agent secret)"
        } else {
            ""
        };
        Some(format!(
            "AMESH_REPLICA_ID={replica_id:?} says this config runs as several replicas, which share \
             one broker username and so one trust card topic; with a key made in memory each \
             replica would publish its own key there and peers would refuse what the others sign: \
             set trust_manager.key_file to a key file every replica reads (`amesh keys generate \
             --out FILE`){database}"
        ))
    }
}

/// The key from `cfg.key_file` (created when missing), else a new one.
pub fn file_or_memory_key(cfg: &TrustManagerConfig) -> anyhow::Result<SigningKey> {
    match &cfg.key_file {
        Some(path) => load_file(path),
        None => SigningKey::generate().map_err(|e| anyhow::anyhow!("trust key: {e}")),
    }
}

fn load_file(path: &Path) -> anyhow::Result<SigningKey> {
    SigningKey::load_or_create(path).map_err(|e| anyhow::anyhow!("trust_manager.key_file: {e}"))
}

/// The trust key of agent `cfg`, connected as broker `account`, from its
/// [`KeySource`]; `store` is its credential store (opened already when it
/// has a SQL `session_service`). Logs where the key came from.
pub async fn agent_key(
    cfg: &AgentConfig,
    store: Option<&CredentialStore>,
    account: &str,
) -> anyhow::Result<SigningKey> {
    let agent = cfg.agent_name.as_str();
    match KeySource::of_agent(cfg) {
        KeySource::Disabled => {
            SigningKey::generate().map_err(|e| anyhow::anyhow!("trust key: {e}"))
        }
        KeySource::File(path) => {
            let key = load_file(&path)?;
            tracing::info!(agent, kid = key.kid(), file = %path.display(), "trust key from trust_manager.key_file");
            Ok(key)
        }
        KeySource::Database => {
            let store = store.ok_or_else(|| {
                anyhow::anyhow!("agent {agent}: a sql session_service without a credential store")
            })?;
            let shared = store
                .shared_trust_key(account)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "agent {agent}: trust key: {e}; if the agent secret was changed on purpose, \
                         delete the stored key (`amesh keys forget-shared CONFIG`) and restart every replica"
                    )
                })?
                .ok_or_else(|| anyhow::anyhow!("agent {agent}: the credential store keeps no trust key"))?;
            match shared.origin {
                TrustKeyOrigin::Created => tracing::info!(
                    agent,
                    kid = shared.key.kid(),
                    "trust key created and stored in the agent's database, sealed with the agent secret: \
                     every replica of this agent signs with it"
                ),
                TrustKeyOrigin::Loaded => tracing::info!(
                    agent,
                    kid = shared.key.kid(),
                    "trust key loaded from the agent's database (shared by its replicas)"
                ),
            }
            Ok(shared.key)
        }
        KeySource::Memory => {
            let key = SigningKey::generate().map_err(|e| anyhow::anyhow!("trust key: {e}"))?;
            tracing::info!(
                agent,
                kid = key.kid(),
                "trust key made in memory: it changes at each start (set trust_manager.key_file, \
                 or a sql session_service, to keep it)"
            );
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_wins_then_the_database_then_memory() {
        let mut trust = TrustManagerConfig::default();
        assert_eq!(KeySource::of(&trust, false), KeySource::Memory);
        assert_eq!(KeySource::of(&trust, true), KeySource::Database);
        trust.key_file = Some("k.pem".into());
        assert_eq!(KeySource::of(&trust, true), KeySource::File("k.pem".into()));
        trust.enabled = false;
        assert_eq!(KeySource::of(&trust, true), KeySource::Disabled);
    }

    /// `config check` and `run` (one loader) with `AMESH_REPLICA_ID` set.
    fn check_as_replica(app_config: &str, module: &str) -> Result<(), crate::config::ConfigErrors> {
        let yaml = format!(
            "apps:\n  - name: a\n    app_module: {module}\n    broker: {{dev_mode: true}}\n    app_config: {app_config}\n"
        );
        let env = |name: &str| match name {
            "AMESH_REPLICA_ID" => Some("2".to_owned()),
            "AMESH_AGENT_SECRET" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()),
            _ => None,
        };
        crate::config::load_str_with_env("replica.yaml", &yaml, &env).map(|_| ())
    }

    #[test]
    fn replicas_without_a_shared_key_are_refused_at_load() {
        let agent = "{namespace: ns, agent_name: a}";
        let err = check_as_replica(agent, "agent")
            .expect_err("memory key refused")
            .to_string();
        assert!(err.contains("trust_manager"), "{err}");
        assert!(err.contains("AMESH_REPLICA_ID=\"2\""), "{err}");
        let sql = "{namespace: ns, agent_name: a, session_service: {type: sql, database_url: \"sqlite://a.db\"}}";
        check_as_replica(sql, "agent").expect("the database shares the key");
        let file = "{namespace: ns, agent_name: a, trust_manager: {key_file: shared.pem}}";
        check_as_replica(file, "agent").expect("a key file is shared");
        let off = "{namespace: ns, agent_name: a, trust_manager: {enabled: false}}";
        check_as_replica(off, "agent").expect("no trust, no key");
        let gateway = "{namespace: ns, gateway_id: g}";
        let err = check_as_replica(gateway, "gateway")
            .expect_err("gateway refused")
            .to_string();
        assert!(err.contains("key_file"), "{err}");
    }

    #[test]
    fn only_a_key_made_in_memory_is_refused_for_replicas() {
        let refusal = KeySource::Memory
            .replica_refusal("2", true)
            .expect("refused");
        assert!(refusal.contains("trust_manager.key_file"), "{refusal}");
        assert!(refusal.contains("sql session_service"), "{refusal}");
        let gateway = KeySource::Memory
            .replica_refusal("2", false)
            .expect("refused");
        assert!(!gateway.contains("session_service"), "{gateway}");
        for fine in [
            KeySource::Database,
            KeySource::File("k.pem".into()),
            KeySource::Disabled,
        ] {
            assert_eq!(fine.replica_refusal("2", true), None, "{fine:?}");
        }
    }
}
