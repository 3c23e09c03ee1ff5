//! What goes inside each encrypted blob, and which row identity it is
//! bound to.
//!
//! Every secret of a row is in one JSON document sealed with `crypto.rs`
//! (a conversation has two: its history, and its title for the listing);
//! the plaintext columns are copies for operators and indexes. On read the
//! blob is authoritative: a tampered `token_endpoint` or `client_id` column
//! cannot redirect a refresh token, because the values handed back come
//! from the authenticated blob. Plaintext buffers are zeroized after use.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Keys, OpenError, Purpose, SEAL_OVERHEAD, aad};
use crate::error::CredentialError;
use crate::model::{
    ClientRegistration, Conversation, Credential, CredentialKey, NewFlow, SecretJson, from_ms,
    to_ms,
};
use crate::secret::{ExposeSecret as _, SecretString};

/// Why a sealed row could not be read back.
#[derive(Debug)]
pub(crate) enum Unsealed {
    /// Did not decrypt: treat the row as absent, log and audit.
    Open(OpenError),
    /// Decrypted, but not JSON this version wrote.
    Corrupt(CredentialError),
}

#[derive(Serialize)]
struct CredentialOut<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    token_type: &'a str,
    expires_at_ms: Option<i64>,
    scopes: &'a [String],
    issuer: Option<&'a str>,
    token_endpoint: Option<&'a str>,
    client_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct CredentialIn {
    access_token: String,
    refresh_token: Option<String>,
    token_type: String,
    expires_at_ms: Option<i64>,
    scopes: Vec<String>,
    issuer: Option<String>,
    token_endpoint: Option<String>,
    client_id: Option<String>,
}

fn credential_aad(agent_id: &str, key: &CredentialKey) -> Vec<u8> {
    aad(Purpose::Credential, &[agent_id, &key.user_id, &key.tool_id])
}

pub(crate) fn seal_credential(
    keys: &Keys,
    agent_id: &str,
    key: &CredentialKey,
    credential: &Credential,
) -> Result<Vec<u8>, CredentialError> {
    let doc = CredentialOut {
        access_token: credential.access_token.expose_secret(),
        refresh_token: credential.refresh_token.as_ref().map(|s| s.expose_secret()),
        token_type: &credential.token_type,
        expires_at_ms: credential.expires_at.map(to_ms),
        scopes: &credential.scopes,
        issuer: credential.issuer.as_deref(),
        token_endpoint: credential.token_endpoint.as_deref(),
        client_id: credential.client_id.as_deref(),
    };
    let json = to_json(&doc, 512)?;
    keys.seal(Purpose::Credential, &credential_aad(agent_id, key), &json)
}

pub(crate) fn open_credential(
    keys: &Keys,
    agent_id: &str,
    key: &CredentialKey,
    blob: &[u8],
) -> Result<Credential, Unsealed> {
    let json = keys
        .open(Purpose::Credential, &credential_aad(agent_id, key), blob)
        .map_err(Unsealed::Open)?;
    let doc: CredentialIn = from_json(&json, "credential")?;
    Ok(Credential {
        access_token: doc.access_token.into(),
        refresh_token: doc.refresh_token.map(SecretString::from),
        token_type: doc.token_type,
        expires_at: doc.expires_at_ms.map(from_ms),
        scopes: doc.scopes,
        issuer: doc.issuer,
        token_endpoint: doc.token_endpoint,
        client_id: doc.client_id,
    })
}

#[derive(Serialize)]
struct FlowOut<'a> {
    pkce_verifier: &'a str,
    redirect_uri: &'a str,
    resume: &'a serde_json::Value,
}

#[derive(Deserialize)]
pub(crate) struct FlowIn {
    pub(crate) pkce_verifier: String,
    pub(crate) redirect_uri: String,
    pub(crate) resume: serde_json::Value,
}

/// The identity a flow blob is bound to: every plaintext column that the
/// callback acts on.
pub(crate) struct FlowIdentity<'a> {
    pub(crate) agent_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) tool_id: &'a str,
    pub(crate) task_id: &'a str,
    pub(crate) state_hash: &'a str,
}

fn flow_aad(id: &FlowIdentity<'_>) -> Vec<u8> {
    aad(
        Purpose::Flow,
        &[
            id.agent_id,
            id.user_id,
            id.tool_id,
            id.task_id,
            id.state_hash,
        ],
    )
}

pub(crate) fn seal_flow(
    keys: &Keys,
    id: &FlowIdentity<'_>,
    flow: &NewFlow,
) -> Result<Vec<u8>, CredentialError> {
    let doc = FlowOut {
        pkce_verifier: flow.pkce_verifier.expose_secret(),
        redirect_uri: &flow.redirect_uri,
        resume: flow.resume.expose(),
    };
    let json = to_json(&doc, 4096)?;
    keys.seal(Purpose::Flow, &flow_aad(id), &json)
}

pub(crate) fn open_flow(
    keys: &Keys,
    id: &FlowIdentity<'_>,
    blob: &[u8],
) -> Result<FlowIn, Unsealed> {
    let json = keys
        .open(Purpose::Flow, &flow_aad(id), blob)
        .map_err(Unsealed::Open)?;
    from_json(&json, "flow")
}

#[derive(Serialize)]
struct ClientOut<'a> {
    client_id: &'a str,
    client_secret: Option<&'a str>,
    client_secret_expires_at_ms: Option<i64>,
    registration: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct ClientIn {
    client_id: String,
    client_secret: Option<String>,
    client_secret_expires_at_ms: Option<i64>,
    registration: serde_json::Value,
}

fn client_aad(agent_id: &str, server: &str) -> Vec<u8> {
    aad(Purpose::Client, &[agent_id, server])
}

pub(crate) fn seal_client(
    keys: &Keys,
    agent_id: &str,
    client: &ClientRegistration,
) -> Result<Vec<u8>, CredentialError> {
    let doc = ClientOut {
        client_id: &client.client_id,
        client_secret: client.client_secret.as_ref().map(|s| s.expose_secret()),
        client_secret_expires_at_ms: client.client_secret_expires_at.map(to_ms),
        registration: client.registration.expose(),
    };
    let json = to_json(&doc, 1024)?;
    keys.seal(
        Purpose::Client,
        &client_aad(agent_id, &client.server),
        &json,
    )
}

pub(crate) fn open_client(
    keys: &Keys,
    agent_id: &str,
    server: &str,
    blob: &[u8],
) -> Result<ClientRegistration, Unsealed> {
    let json = keys
        .open(Purpose::Client, &client_aad(agent_id, server), blob)
        .map_err(Unsealed::Open)?;
    let doc: ClientIn = from_json(&json, "client registration")?;
    Ok(ClientRegistration {
        server: server.to_owned(),
        client_id: doc.client_id,
        client_secret: doc.client_secret.map(SecretString::from),
        client_secret_expires_at: doc.client_secret_expires_at_ms.map(from_ms),
        registration: SecretJson::new(doc.registration),
    })
}

#[derive(Serialize)]
struct ConversationOut<'a> {
    turns: u32,
    messages: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct ConversationIn {
    turns: u32,
    messages: serde_json::Value,
}

/// The identity a conversation's blobs are bound to: a blob copied to
/// another agent's, user's or `contextId`'s row does not open.
pub(crate) struct ConversationIdentity<'a> {
    pub(crate) agent_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) context_id: &'a str,
}

impl ConversationIdentity<'_> {
    fn messages_aad(&self) -> Vec<u8> {
        aad(
            Purpose::Conversation,
            &[self.agent_id, self.user_id, self.context_id],
        )
    }

    /// The extra field keeps a title blob from opening as a history blob
    /// of the same row, and the other way round.
    fn title_aad(&self) -> Vec<u8> {
        aad(
            Purpose::Conversation,
            &[self.agent_id, self.user_id, self.context_id, "title"],
        )
    }
}

/// A conversation's two blobs: the history (with the turn count), and the
/// title on its own, so a conversation list decrypts a few bytes per row
/// rather than every history.
pub(crate) struct SealedConversation {
    pub(crate) messages: Vec<u8>,
    pub(crate) title: Vec<u8>,
}

/// Seals `conversation`, or refuses it with
/// [`CredentialError::ConversationTooLarge`] when both blobs together
/// would exceed `max` bytes. The size is measured before anything is
/// buffered, so an oversized history costs one serialization pass and no
/// allocation.
pub(crate) fn seal_conversation(
    keys: &Keys,
    id: &ConversationIdentity<'_>,
    conversation: &Conversation,
    max: usize,
) -> Result<SealedConversation, CredentialError> {
    let doc = ConversationOut {
        turns: conversation.turns,
        messages: conversation.messages.expose(),
    };
    let title = conversation.title.as_deref();
    let (doc_len, title_len) = (json_len(&doc)?, json_len(&title)?);
    let size = doc_len
        .saturating_add(title_len)
        .saturating_add(2 * SEAL_OVERHEAD);
    if size > max {
        return Err(CredentialError::ConversationTooLarge {
            context_id: id.context_id.to_owned(),
            size,
            max,
        });
    }
    Ok(SealedConversation {
        messages: keys.seal(
            Purpose::Conversation,
            &id.messages_aad(),
            &to_json(&doc, doc_len)?,
        )?,
        title: keys.seal(
            Purpose::Conversation,
            &id.title_aad(),
            &to_json(&title, title_len)?,
        )?,
    })
}

pub(crate) fn open_conversation(
    keys: &Keys,
    id: &ConversationIdentity<'_>,
    sealed: &SealedConversation,
) -> Result<Conversation, Unsealed> {
    let title = open_title(keys, id, &sealed.title)?;
    let json = keys
        .open(Purpose::Conversation, &id.messages_aad(), &sealed.messages)
        .map_err(Unsealed::Open)?;
    let doc: ConversationIn = from_json(&json, "conversation")?;
    Ok(Conversation {
        messages: SecretJson::new(doc.messages),
        title,
        turns: doc.turns,
    })
}

/// The title alone, for a conversation list.
pub(crate) fn open_title(
    keys: &Keys,
    id: &ConversationIdentity<'_>,
    blob: &[u8],
) -> Result<Option<String>, Unsealed> {
    let json = keys
        .open(Purpose::Conversation, &id.title_aad(), blob)
        .map_err(Unsealed::Open)?;
    from_json(&json, "conversation title")
}

/// The AAD of the trust key of `agent_id` connected as `account` (its
/// broker username, the id on its trust card): a key copied to another
/// agent's or account's row does not open.
fn trust_key_aad(agent_id: &str, account: &str) -> Vec<u8> {
    aad(Purpose::TrustKey, &[agent_id, account])
}

/// Seals a trust key, given as its PKCS#8 PEM.
pub(crate) fn seal_trust_key(
    keys: &Keys,
    agent_id: &str,
    account: &str,
    pem: &str,
) -> Result<Vec<u8>, CredentialError> {
    keys.seal(
        Purpose::TrustKey,
        &trust_key_aad(agent_id, account),
        pem.as_bytes(),
    )
}

/// The PKCS#8 PEM of a sealed trust key; zeroized when dropped.
pub(crate) fn open_trust_key(
    keys: &Keys,
    agent_id: &str,
    account: &str,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    keys.open(Purpose::TrustKey, &trust_key_aad(agent_id, account), blob)
}

/// How many bytes `doc` serializes to, without buffering it.
fn json_len<T: Serialize>(doc: &T) -> Result<usize, CredentialError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, doc)
        .map_err(|_| CredentialError::Crypto("serializing the secret document"))?;
    Ok(count.0)
}

/// Serializes into a buffer sized up front (fewer reallocations leaving
/// copies behind) that is zeroized when dropped.
fn to_json<T: Serialize>(doc: &T, capacity: usize) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buf, doc)
        .map_err(|_| CredentialError::Crypto("serializing the secret document"))?;
    Ok(buf)
}

fn from_json<T: for<'de> Deserialize<'de>>(json: &[u8], what: &'static str) -> Result<T, Unsealed> {
    serde_json::from_slice(json).map_err(|err| {
        Unsealed::Corrupt(CredentialError::Corrupt {
            what,
            // Position and category only: the message could quote plaintext.
            detail: format!(
                "{:?} error at line {} column {}",
                err.classify(),
                err.line(),
                err.column()
            ),
        })
    })
}
