//! The agent's trust key, kept in its database so that its replicas sign
//! with one key.
//!
//! Replicas of an agent connect with one broker username and so publish
//! their trust card on one retained topic. Each with a key of its own,
//! they would overwrite each other's card every publication: receivers
//! log a rotation each time, and one that joins late holds only the last
//! replica's key and refuses what the others sign. Kept in the database the
//! replicas already share, sealed with the agent secret they already share
//! (AES-256-GCM, its own HKDF key, the agent and account as associated
//! data), the key is created by the first replica to start and loaded by
//! every other. A memory store shares nothing, so it keeps no key.

use amesh_trust::SigningKey;

use crate::crypto::{OpenError, Purpose, lookup_hash};
use crate::error::CredentialError;
use crate::model::now_ms;
use crate::sealed::{open_trust_key, seal_trust_key};
use crate::storage::sql::migration::MAX_ID_LEN;
use crate::storage::{Storage, TrustKeyRow};
use crate::store::{CredentialStore, check_id};

/// Whether the key was made now or found in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustKeyOrigin {
    /// No replica had stored one: this one made it and stored it.
    Created,
    /// Another replica (or an earlier start) stored it.
    Loaded,
}

/// An agent's trust key from its database.
#[derive(Debug)]
pub struct SharedTrustKey {
    /// The key (its `Debug` shows the key id only).
    pub key: SigningKey,
    /// Made now, or loaded.
    pub origin: TrustKeyOrigin,
}

impl CredentialStore {
    /// The trust key of this agent connected as broker `account`, from the
    /// database; created and stored there when there is none, unless
    /// another replica stores one first (then that one is returned). `None`
    /// from a memory store, which keeps no key. A stored key that does not
    /// open with this store's agent secret is an error, never replaced.
    pub async fn shared_trust_key(
        &self,
        account: &str,
    ) -> Result<Option<SharedTrustKey>, CredentialError> {
        let s = self.open_shared()?;
        check_id("account", account, MAX_ID_LEN)?;
        if matches!(s.storage, Storage::Memory(_)) {
            return Ok(None);
        }
        let key_hash = trust_key_hash(&s.agent_id, account);
        if let Some(key) = self.stored_trust_key(account, &key_hash).await? {
            return Ok(Some(SharedTrustKey {
                key,
                origin: TrustKeyOrigin::Loaded,
            }));
        }
        let key = SigningKey::generate().map_err(|_| CredentialError::Crypto("key generation"))?;
        let pem = key
            .to_pkcs8_pem()
            .map_err(|_| CredentialError::Crypto("key encoding"))?;
        let sealed = seal_trust_key(&s.keys, &s.agent_id, account, &pem)?;
        let stored = s
            .storage
            .trust_key_insert(TrustKeyRow {
                key_hash: &key_hash,
                agent_id: &s.agent_id,
                account,
                kid: key.kid(),
                sealed,
                now: now_ms(),
            })
            .await?;
        if stored {
            return Ok(Some(SharedTrustKey {
                key,
                origin: TrustKeyOrigin::Created,
            }));
        }
        // Another replica stored its key between our read and our insert.
        match self.stored_trust_key(account, &key_hash).await? {
            Some(key) => Ok(Some(SharedTrustKey {
                key,
                origin: TrustKeyOrigin::Loaded,
            })),
            None => Err(CredentialError::Database {
                backend: s.storage.backend_name(),
                target: String::from("trust_keys"),
                detail: "the trust key insert conflicted with a row that is gone".into(),
            }),
        }
    }

    /// Deletes the stored trust key of broker `account`; whether there was
    /// one. The next replica to start makes a new one (after a change of
    /// agent secret, or to rotate the key: restart every replica).
    pub async fn forget_trust_key(&self, account: &str) -> Result<bool, CredentialError> {
        let s = self.open_shared()?;
        check_id("account", account, MAX_ID_LEN)?;
        s.storage
            .trust_key_delete(&s.agent_id, &trust_key_hash(&s.agent_id, account))
            .await
    }

    async fn stored_trust_key(
        &self,
        account: &str,
        key_hash: &str,
    ) -> Result<Option<SigningKey>, CredentialError> {
        let s = self.open_shared()?;
        let Some(blob) = s.storage.trust_key_get(&s.agent_id, key_hash).await? else {
            return Ok(None);
        };
        let unreadable = |reason: &'static str| CredentialError::TrustKeyUnreadable {
            agent_id: s.agent_id.clone(),
            account: account.to_owned(),
            reason,
        };
        let pem = open_trust_key(&s.keys, &s.agent_id, account, &blob).map_err(|why| {
            unreadable(match why {
                OpenError::ForeignKey => {
                    "it was sealed under another agent secret (every replica must use the same AMESH_AGENT_SECRET or agent_secret_file)"
                }
                other => other.reason(),
            })
        })?;
        let pem = std::str::from_utf8(&pem[..]).map_err(|_| unreadable("not PEM text"))?;
        SigningKey::from_pem(pem)
            .map(Some)
            .map_err(|_| unreadable("not a P-256 private key"))
    }
}

fn trust_key_hash(agent_id: &str, account: &str) -> String {
    lookup_hash(Purpose::TrustKey, &[agent_id, account])
}
