//! Conversations: the history of each (agent, user, contextId), so a
//! follow-up in the same context continues where the last task ended.
//!
//! Kept in the agent's `session_service` store (memory, or SQL beside the
//! credentials, encrypted), and only for a verified identity: an identity
//! the agent could not verify might be anyone, so it gets no history and
//! none is written for it. `default_behavior: RUN_BASED` keeps none at all.
//! A contextId that belongs to another user is refused.
//!
//! Bounded by turns and bytes: at most [`MAX_TURNS`] user turns and about
//! [`MAX_BYTES`] of text are kept; the oldest whole turns are dropped (a
//! turn starts at a user message, so a tool call is never separated from
//! its result).

use amesh_credentials::{Conversation, CredentialError, SecretJson};
use amesh_trust::RequestIdentity;

use super::state::LoopState;
use crate::agent::AgentInner;
use crate::agent::handler::Caller;
use crate::agent::llm::ChatMessage;
use crate::config::SessionBehavior;

/// User turns kept per conversation.
pub(crate) const MAX_TURNS: usize = 20;
/// Text kept per conversation, in bytes (about 64k tokens).
pub(crate) const MAX_BYTES: usize = 256 * 1024;

/// The earlier messages of `context_id` for `caller`; empty for a new
/// context. Err: the one failure that refuses the task (the context is
/// another user's); any other leaves the task without history.
pub(crate) async fn load(
    inner: &AgentInner,
    caller: &Caller,
    context_id: &str,
) -> Result<Vec<ChatMessage>, CredentialError> {
    let (Some(store), RequestIdentity::Verified(who)) = (kept(inner), &caller.identity) else {
        return Ok(Vec::new());
    };
    match store.conversation(who, context_id).await {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(c)) => match serde_json::from_value(c.messages.into_inner()) {
            Ok(messages) => Ok(messages),
            Err(e) => {
                tracing::warn!(agent = %inner.name, user = %who.user_id(), error = ?e.classify(), "stored conversation unreadable; starting afresh");
                Ok(Vec::new())
            }
        },
        Err(e @ CredentialError::ConversationOfAnotherUser { .. }) => Err(e),
        Err(CredentialError::ConversationUnreadable { .. }) => Ok(Vec::new()),
        Err(e) => {
            // History is a convenience; the task can still run without it.
            tracing::warn!(agent = %inner.name, user = %who.user_id(), error = %e, "conversation history unavailable");
            Ok(Vec::new())
        }
    }
}

/// Stores the conversation of a finished task, trimmed to the bounds.
pub(crate) async fn save(inner: &AgentInner, caller: &Caller, state: &LoopState) {
    let (Some(store), RequestIdentity::Verified(who)) = (kept(inner), &caller.identity) else {
        return;
    };
    let messages = trim(&state.messages);
    let turns = messages
        .iter()
        .filter(|m| matches!(m, ChatMessage::User { .. }))
        .count() as u32;
    // The first line of the first question. The store keeps a title the
    // user gave instead (`amesh/sessions/rename`).
    let title = messages.iter().find_map(|m| match m {
        ChatMessage::User { text } => Some(
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect::<String>(),
        ),
        _ => None,
    });
    let messages = match serde_json::to_value(messages) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(agent = %inner.name, error = %e, "conversation not saved");
            return;
        }
    };
    let conversation = Conversation {
        messages: SecretJson::new(messages),
        title,
        turns,
    };
    if let Err(e) = store
        .save_conversation(who, &state.route.context_id, &conversation)
        .await
    {
        tracing::warn!(agent = %inner.name, user = %who.user_id(), error = %e, "conversation not saved");
    }
}

/// The store conversations are kept in: none with `RUN_BASED`.
pub(crate) fn kept(inner: &AgentInner) -> Option<&amesh_credentials::CredentialStore> {
    (inner.cfg.session_service.default_behavior == SessionBehavior::Persistent)
        .then_some(inner.store.as_ref())
        .flatten()
}

/// The newest whole turns within [`MAX_TURNS`] and [`MAX_BYTES`].
pub(crate) fn trim(messages: &[ChatMessage]) -> &[ChatMessage] {
    let mut turns = 0;
    let mut bytes = 0;
    let mut start = messages.len();
    // Walk back turn by turn; a turn begins at a user message.
    let mut i = messages.len();
    while i > 0 {
        i -= 1;
        bytes += messages[i].weight();
        if bytes > MAX_BYTES {
            break;
        }
        if matches!(messages[i], ChatMessage::User { .. }) {
            turns += 1;
            if turns > MAX_TURNS {
                break;
            }
            start = i;
        }
    }
    &messages[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(t: &str) -> ChatMessage {
        ChatMessage::User { text: t.into() }
    }
    fn answer(t: &str) -> ChatMessage {
        ChatMessage::Assistant {
            text: t.into(),
            tool_calls: vec![],
        }
    }

    #[test]
    fn oldest_whole_turns_are_dropped() {
        let mut m = Vec::new();
        for i in 0..(MAX_TURNS + 3) {
            m.push(user(&format!("q{i}")));
            m.push(answer(&format!("a{i}")));
        }
        let kept = trim(&m);
        assert_eq!(kept.len(), MAX_TURNS * 2);
        assert_eq!(kept[0], user("q3"));
        let big = "x".repeat(MAX_BYTES / 2 + 1);
        let m = vec![user(&big), answer("1"), user(&big), answer("2")];
        let kept = trim(&m);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1], answer("2"));
    }
}
