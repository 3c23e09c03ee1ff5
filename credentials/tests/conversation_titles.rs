//! A user's own conversation titles and the paged listing, on every
//! backend: a rename survives the agent's later saves (which would
//! otherwise title the conversation after its first question), naming a
//! conversation not saved yet creates it, another user's is refused, and
//! pages follow the `before` cursor.

mod common;

use std::time::Duration;

use amesh_credentials::{Conversation, CredentialError, SecretJson};
use common::{all_backends, identity, secret};
use serde_json::json;

fn convo(question: &str, turns: u32) -> Conversation {
    Conversation {
        messages: SecretJson::new(json!([{"role": "user", "text": question}])),
        title: Some(question.to_owned()),
        turns,
    }
}

#[tokio::test]
async fn a_users_title_survives_later_saves_and_only_they_can_set_it() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, bob) = (identity("alice"), identity("bob"));
        store
            .save_conversation(&alice, "ctx-1", &convo("first question", 1))
            .await
            .expect("save");
        store
            .rename_conversation(&alice, "ctx-1", "Trip plans")
            .await
            .expect("rename");
        // The next turn's save carries the agent's title; the user's stays.
        store
            .save_conversation(&alice, "ctx-1", &convo("first question", 2))
            .await
            .expect("save again");
        let got = store
            .conversation(&alice, "ctx-1")
            .await
            .expect("load")
            .expect("kept");
        assert_eq!(got.title.as_deref(), Some("Trip plans"), "[{l}]");
        assert_eq!(got.turns, 2, "[{l}] the history is the new one");
        let listed = store.list_conversations(&alice, 10).await.expect("list");
        assert_eq!(listed[0].title.as_deref(), Some("Trip plans"), "[{l}]");
        assert!(listed[0].renamed_at.is_some(), "[{l}]");

        // Bob cannot name alice's conversation, nor read it by naming it.
        let err = store
            .rename_conversation(&bob, "ctx-1", "Mine now")
            .await
            .expect_err("another user's");
        assert!(
            matches!(err, CredentialError::ConversationOfAnotherUser { .. }),
            "[{l}] {err:?}"
        );
        let got = store.conversation(&alice, "ctx-1").await.expect("load");
        assert_eq!(got.and_then(|c| c.title).as_deref(), Some("Trip plans"));
        assert!(
            store
                .list_conversations(&bob, 10)
                .await
                .expect("list")
                .is_empty()
        );

        // Named before its first answer: created empty, and the first save
        // keeps the name.
        store
            .rename_conversation(&bob, "ctx-2", "Bob's chat")
            .await
            .expect("rename new");
        let listed = store.list_conversations(&bob, 10).await.expect("list");
        assert_eq!(
            (listed[0].title.as_deref(), listed[0].turns),
            (Some("Bob's chat"), 0),
            "[{l}]"
        );
        store
            .save_conversation(&bob, "ctx-2", &convo("hello", 1))
            .await
            .expect("first save");
        let got = store
            .conversation(&bob, "ctx-2")
            .await
            .expect("load")
            .expect("kept");
        assert_eq!(
            (got.title.as_deref(), got.turns),
            (Some("Bob's chat"), 1),
            "[{l}]"
        );

        // Bad titles are refused before anything is stored.
        for bad in [
            String::new(),
            "x".repeat(amesh_credentials::MAX_TITLE_CHARS + 1),
        ] {
            let err = store
                .rename_conversation(&alice, "ctx-1", &bad)
                .await
                .expect_err("bad title");
            assert!(
                matches!(err, CredentialError::InvalidInput { field: "title", .. }),
                "[{l}] {err:?}"
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn the_listing_pages_newest_first() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        for i in 0..5 {
            store
                .save_conversation(&alice, &format!("ctx-{i}"), &convo(&format!("q{i}"), 1))
                .await
                .expect("save");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .list_conversations_before(&alice, before, 2)
                .await
                .expect("page");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2, "[{l}]");
            before = page.last().map(|c| c.updated_at);
            seen.extend(page.into_iter().map(|c| c.context_id));
        }
        assert_eq!(seen, ["ctx-4", "ctx-3", "ctx-2", "ctx-1", "ctx-0"], "[{l}]");
        store.close().await;
    }
}
