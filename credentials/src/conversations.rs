//! Conversations: each user's chat history with the agent, per A2A
//! `contextId`, kept so any replica can continue it.
//!
//! A `contextId` is chosen by the client: it is neither secret nor proof
//! of anything. So the row records whose conversation it is, and another
//! user presenting the same `contextId` is refused — not served the
//! history, not allowed to overwrite it — and audited as `access_denied`.
//! History and title are sealed like credentials, with (agent, user,
//! `contextId`) as associated data: a row copied to another user or
//! context does not decrypt, and reading it is an error, never someone
//! else's history. (A row under another agent secret — the operator
//! rotated it — reads as absent, as credentials do: the conversation starts
//! over and the next save replaces it.)
//!
//! Retention: a conversation reads as absent `conversation_ttl` after its
//! last save, and the sweeper deletes it — no tombstone, history is not
//! audit material. The memory backend also bounds how many it holds (see
//! [`MAX_MEMORY_CONVERSATIONS`]). Saves are not audited: there is one per
//! turn, and they are the user's own.

use amesh_trust::VerifiedIdentity;

use crate::crypto::OpenError;
use crate::error::CredentialError;
use crate::model::{Conversation, ConversationInfo, CredentialKey, EventKind, from_ms, now_ms};
use crate::sealed::{
    ConversationIdentity, SealedConversation, Unsealed, open_conversation, open_title,
    seal_conversation,
};
use crate::storage::sql::migration::MAX_ID_LEN;
use crate::storage::{ConvRow, ConvWrite, RetitleRow};
use crate::store::{CredentialStore, Shared, assurance, check_id};

/// Most bytes a conversation may take encrypted (history and title
/// together): 4 MiB. Larger ones are refused with
/// [`CredentialError::ConversationTooLarge`]; the agent trims the history
/// first. Well under MySQL's default 16 MiB packet limit.
pub const MAX_CONVERSATION_BYTES: usize = 4 * 1024 * 1024;

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 1024;

/// Most conversations a memory store keeps; past this the least recently
/// saved is dropped.
pub const MAX_MEMORY_CONVERSATIONS: usize = 10_000;

/// Most encrypted bytes of conversations a memory store keeps (256 MiB);
/// past this the least recently saved are dropped.
pub const MAX_MEMORY_CONVERSATION_BYTES: usize = 256 * 1024 * 1024;

/// Most entries one [`list_conversations`](CredentialStore::list_conversations)
/// returns.
pub const MAX_CONVERSATION_LIST: usize = 1000;

impl CredentialStore {
    /// `who`'s conversation `context_id` with this agent; `Ok(None)` when
    /// there is none (or it is past retention).
    /// [`CredentialError::ConversationOfAnotherUser`] when `context_id` is
    /// another user's conversation: the agent refuses the request.
    /// [`CredentialError::ConversationUnreadable`] when the stored row does
    /// not decrypt for `who` and `context_id` (altered or copied).
    pub async fn conversation(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
    ) -> Result<Option<Conversation>, CredentialError> {
        Ok(self
            .conversation_with_info(who, context_id)
            .await?
            .map(|(conversation, _)| conversation))
    }

    /// [`conversation`](Self::conversation) with what the listing says of
    /// it (dates, whether the user named it), in one read.
    pub async fn conversation_with_info(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
    ) -> Result<Option<(Conversation, ConversationInfo)>, CredentialError> {
        let s = self.open_shared()?;
        check_ids(who, context_id)?;
        let Some(row) = s
            .storage
            .conv_get(&s.agent_id, context_id, s.conversation_cutoff(now_ms()))
            .await?
        else {
            return Ok(None);
        };
        if row.user_id != who.user_id() {
            return Err(s.conversation_refused(who, context_id, &row.user_id, "read"));
        }
        let id = ConversationIdentity {
            agent_id: &s.agent_id,
            user_id: &row.user_id,
            context_id,
        };
        let sealed = SealedConversation {
            messages: row.sealed,
            title: row.sealed_title,
        };
        match open_conversation(&s.keys, &id, &sealed) {
            Ok(conversation) => {
                let info = ConversationInfo {
                    context_id: context_id.to_owned(),
                    title: conversation.title.clone(),
                    turns: row.turns,
                    created_at: from_ms(row.created_at),
                    updated_at: from_ms(row.updated_at),
                    renamed_at: row.renamed_at.map(from_ms),
                };
                Ok(Some((conversation, info)))
            }
            Err(Unsealed::Open(why)) => {
                s.undecryptable("conversation", &audit_key(&row.user_id, context_id), why);
                match why {
                    OpenError::ForeignKey => Ok(None),
                    OpenError::Tampered | OpenError::Malformed => {
                        Err(CredentialError::ConversationUnreadable {
                            context_id: context_id.to_owned(),
                            reason: why.reason(),
                        })
                    }
                }
            }
            Err(Unsealed::Corrupt(err)) => Err(err),
        }
    }

    /// Creates or replaces `who`'s conversation `context_id`, starting its
    /// retention again. Refused with
    /// [`CredentialError::ConversationOfAnotherUser`] when it is another
    /// user's (unless that one is past retention: then it is replaced), and
    /// with [`CredentialError::ConversationTooLarge`] above
    /// [`MAX_CONVERSATION_BYTES`]; nothing is stored then.
    pub async fn save_conversation(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
        conversation: &Conversation,
    ) -> Result<(), CredentialError> {
        let s = self.open_shared()?;
        check_ids(who, context_id)?;
        if let Some(title) = &conversation.title {
            let len = title.chars().count();
            if len > MAX_TITLE_CHARS {
                return Err(CredentialError::InvalidInput {
                    field: "title",
                    reason: format!("has {len} characters; at most {MAX_TITLE_CHARS} are allowed"),
                });
            }
        }
        let id = ConversationIdentity {
            agent_id: &s.agent_id,
            user_id: who.user_id(),
            context_id,
        };
        let sealed = seal_conversation(&s.keys, &id, conversation, MAX_CONVERSATION_BYTES)?;
        let now = now_ms();
        let outcome = s
            .storage
            .conv_save(ConvRow {
                agent_id: &s.agent_id,
                user_id: who.user_id(),
                context_id,
                sealed: sealed.messages,
                sealed_title: sealed.title,
                turns: conversation.turns,
                now,
                cutoff: s.conversation_cutoff(now),
            })
            .await?;
        match outcome {
            // A save never finds "nothing to delete"; both mean stored.
            ConvWrite::Done | ConvWrite::Missing => Ok(()),
            ConvWrite::OwnedBy(owner) => {
                Err(s.conversation_refused(who, context_id, &owner, "save"))
            }
        }
    }

    /// Names `who`'s conversation `context_id` with `title`, for good: later
    /// saves keep it (the agent's own title is the first question). A
    /// conversation not saved yet is created empty with that title, so a
    /// chat named before its first answer keeps the name. Another user's
    /// is refused, as in [`conversation`](Self::conversation); a title
    /// empty or over [`MAX_TITLE_CHARS`] is refused with
    /// [`CredentialError::InvalidInput`].
    pub async fn rename_conversation(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
        title: &str,
    ) -> Result<(), CredentialError> {
        let s = self.open_shared()?;
        check_ids(who, context_id)?;
        check_id("title", title, MAX_TITLE_CHARS)?;
        let id = ConversationIdentity {
            agent_id: &s.agent_id,
            user_id: who.user_id(),
            context_id,
        };
        let empty = Conversation {
            messages: crate::model::SecretJson::new(serde_json::Value::Array(Vec::new())),
            title: Some(title.to_owned()),
            turns: 0,
        };
        let sealed = seal_conversation(&s.keys, &id, &empty, MAX_CONVERSATION_BYTES)?;
        let now = now_ms();
        let outcome = s
            .storage
            .conv_retitle(RetitleRow {
                agent_id: &s.agent_id,
                user_id: who.user_id(),
                context_id,
                sealed_title: sealed.title,
                empty_sealed: sealed.messages,
                now,
                cutoff: s.conversation_cutoff(now),
            })
            .await?;
        match outcome {
            ConvWrite::Done | ConvWrite::Missing => Ok(()),
            ConvWrite::OwnedBy(owner) => {
                Err(s.conversation_refused(who, context_id, &owner, "rename"))
            }
        }
    }

    /// Deletes `who`'s conversation `context_id`; whether there was one (a
    /// conversation past retention is deleted but counts as none). Another
    /// user's is refused, as in [`conversation`](Self::conversation).
    pub async fn delete_conversation(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
    ) -> Result<bool, CredentialError> {
        let s = self.open_shared()?;
        check_ids(who, context_id)?;
        let cutoff = s.conversation_cutoff(now_ms());
        match s
            .storage
            .conv_delete(&s.agent_id, context_id, who.user_id(), cutoff)
            .await?
        {
            ConvWrite::Done => Ok(true),
            ConvWrite::Missing => Ok(false),
            ConvWrite::OwnedBy(owner) => {
                Err(s.conversation_refused(who, context_id, &owner, "delete"))
            }
        }
    }

    /// `who`'s conversations with this agent, most recently saved first, at
    /// most `limit` (and [`MAX_CONVERSATION_LIST`]): metadata and titles,
    /// no history. A row whose title does not decrypt is left out (and
    /// logged and audited).
    pub async fn list_conversations(
        &self,
        who: &VerifiedIdentity,
        limit: usize,
    ) -> Result<Vec<ConversationInfo>, CredentialError> {
        self.list_conversations_before(who, None, limit).await
    }

    /// One page of [`list_conversations`](Self::list_conversations): those
    /// last saved before `before` (the previous page's last `updated_at`;
    /// `None` for the first page). Two conversations saved in the same
    /// millisecond on either side of a page boundary can make the second
    /// wait for the next save to be listed: the cursor is the time alone.
    pub async fn list_conversations_before(
        &self,
        who: &VerifiedIdentity,
        before: Option<std::time::SystemTime>,
        limit: usize,
    ) -> Result<Vec<ConversationInfo>, CredentialError> {
        let s = self.open_shared()?;
        check_id("user_id", who.user_id(), MAX_ID_LEN)?;
        let limit = limit.min(MAX_CONVERSATION_LIST);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = s
            .storage
            .conv_list(
                &s.agent_id,
                who.user_id(),
                s.conversation_cutoff(now_ms()),
                before.map(crate::model::to_ms),
                limit,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = ConversationIdentity {
                agent_id: &s.agent_id,
                user_id: who.user_id(),
                context_id: &row.context_id,
            };
            let title = match open_title(&s.keys, &id, &row.sealed_title) {
                Ok(title) => title,
                Err(Unsealed::Open(why)) => {
                    let key = audit_key(who.user_id(), &row.context_id);
                    s.undecryptable("conversation", &key, why);
                    continue;
                }
                Err(Unsealed::Corrupt(err)) => {
                    tracing::error!(agent = %s.agent_id, user = %who.user_id(), context = %row.context_id, error = %err, "stored conversation title decrypted but is unreadable; left out of the list");
                    continue;
                }
            };
            out.push(ConversationInfo {
                context_id: row.context_id,
                title,
                turns: row.turns,
                created_at: from_ms(row.created_at),
                updated_at: from_ms(row.updated_at),
                renamed_at: row.renamed_at.map(from_ms),
            });
        }
        Ok(out)
    }
}

impl Shared {
    /// Conversations last saved at or before this are past retention.
    pub(crate) fn conversation_cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(self.conversation_ttl_ms)
    }

    /// Logs and audits `who` presenting `owner`'s `context_id`, and the
    /// error that refuses it. The error does not name the owner: the agent
    /// may show it to the requester.
    fn conversation_refused(
        &self,
        who: &VerifiedIdentity,
        context_id: &str,
        owner: &str,
        operation: &'static str,
    ) -> CredentialError {
        tracing::warn!(agent = %self.agent_id, user = %owner, context = %context_id, identity = %who.user_id(), operation, "conversation refused: its contextId is another user's");
        let reason = format!(
            "conversation {operation} by identity of user {:?} ({})",
            who.user_id(),
            assurance(who)
        );
        self.record(vec![self.event(
            &audit_key(owner, context_id),
            EventKind::AccessDenied,
            Some(reason),
        )]);
        CredentialError::ConversationOfAnotherUser {
            context_id: context_id.to_owned(),
            identity_user: who.user_id().to_owned(),
        }
    }
}

/// How a conversation appears in `credential_events`: the owner, and the
/// context as the "tool", prefixed so an operator cannot mistake it for one.
fn audit_key(user_id: &str, context_id: &str) -> CredentialKey {
    CredentialKey::new(user_id, format!("conversation:{context_id}"))
}

fn check_ids(who: &VerifiedIdentity, context_id: &str) -> Result<(), CredentialError> {
    check_id("user_id", who.user_id(), MAX_ID_LEN)?;
    check_id("context_id", context_id, MAX_ID_LEN)
}
