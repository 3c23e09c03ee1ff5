//! Conversations on every backend: round trip, ownership of a contextId,
//! listing, deletion, encryption binding, size cap, retention, and the
//! memory store's bound.

mod common;

use std::time::Duration;

use amesh_credentials::{
    Conversation, CredentialError, CredentialStore, EventKind, Filter, MAX_CONVERSATION_BYTES,
    MAX_MEMORY_CONVERSATIONS, MAX_TITLE_CHARS, SecretJson,
};
use common::{Kind, TestDb, all_backends, identity, secret, sql_backends};
use sea_orm::Value;
use serde_json::json;

fn convo(text: &str, turns: u32) -> Conversation {
    Conversation {
        messages: SecretJson::new(json!([
            {"role": "user", "text": text},
            {"role": "model", "text": format!("answer to {text}")}
        ])),
        title: Some(format!("title of {text}")),
        turns,
    }
}

/// Saves far enough apart that `updated_at` (milliseconds) orders them.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test]
async fn conversation_round_trip_on_every_backend() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        assert_eq!(
            store.conversation(&alice, "ctx-1").await.expect("load"),
            None,
            "[{l}] empty store"
        );

        let first = convo("secret-question-7c1", 1);
        store
            .save_conversation(&alice, "ctx-1", &first)
            .await
            .expect("save");
        let got = store.conversation(&alice, "ctx-1").await.expect("load");
        assert_eq!(got.as_ref(), Some(&first), "[{l}]");
        assert_eq!(
            store.conversation(&alice, "ctx-2").await.expect("load"),
            None,
            "[{l}] other context"
        );

        // Replaced as a whole, created_at kept, updated_at moved on.
        let created = store.list_conversations(&alice, 10).await.expect("list")[0].created_at;
        tick().await;
        let second = Conversation {
            title: None,
            ..convo("secret-question-7c1 and more", 2)
        };
        store
            .save_conversation(&alice, "ctx-1", &second)
            .await
            .expect("replace");
        let got = store
            .conversation(&alice, "ctx-1")
            .await
            .expect("load")
            .expect("saved");
        assert_eq!(got, second, "[{l}]");
        let info = store.list_conversations(&alice, 10).await.expect("list");
        assert_eq!(info.len(), 1, "[{l}] one row per context");
        assert_eq!(
            (info[0].title.as_deref(), info[0].turns),
            (None, 2),
            "[{l}]"
        );
        assert_eq!(info[0].created_at, created, "[{l}]");
        assert!(info[0].updated_at > created, "[{l}] {info:?}");

        // Debug shows no content, of the conversation or its listing.
        let shown = format!("{got:?} {:?} {info:?}", convo("x", 1));
        for secret in ["secret-question-7c1", "title of", "answer"] {
            assert!(!shown.contains(secret), "[{l}] {shown}");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn another_users_context_is_refused_audited_and_left_untouched() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, mallory) = (identity("alice"), identity("mallory"));
        let original = convo("alice's private question", 3);
        store
            .save_conversation(&alice, "ctx-shared", &original)
            .await
            .expect("save");

        let err = store
            .conversation(&mallory, "ctx-shared")
            .await
            .expect_err("read refused");
        match &err {
            CredentialError::ConversationOfAnotherUser {
                context_id,
                identity_user,
            } => assert_eq!(
                (context_id.as_str(), identity_user.as_str()),
                ("ctx-shared", "mallory"),
                "[{l}]"
            ),
            other => panic!("[{l}] expected ConversationOfAnotherUser, got {other:?}"),
        }
        assert!(
            !err.to_string().contains("alice"),
            "[{l}] the owner is not named to the requester: {err}"
        );
        let err = store
            .save_conversation(&mallory, "ctx-shared", &convo("overwrite", 1))
            .await
            .expect_err("save refused");
        assert!(
            matches!(err, CredentialError::ConversationOfAnotherUser { .. }),
            "[{l}] {err:?}"
        );
        let err = store
            .delete_conversation(&mallory, "ctx-shared")
            .await
            .expect_err("delete refused");
        assert!(
            matches!(err, CredentialError::ConversationOfAnotherUser { .. }),
            "[{l}] {err:?}"
        );
        assert!(
            store
                .list_conversations(&mallory, 10)
                .await
                .expect("list")
                .is_empty(),
            "[{l}]"
        );

        assert_eq!(
            store
                .conversation(&alice, "ctx-shared")
                .await
                .expect("load"),
            Some(original),
            "[{l}] alice's conversation is unchanged"
        );
        let denied: Vec<_> = store
            .events(&Filter::agent("agent-a").user("alice"), 10)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == EventKind::AccessDenied)
            .collect();
        assert_eq!(denied.len(), 3, "[{l}] {denied:?}");
        assert!(
            denied.iter().all(|e| e.tool_id == "conversation:ctx-shared"
                && e.reason.as_deref().unwrap_or("").contains("mallory")),
            "[{l}] {denied:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn concurrent_first_saves_of_one_context_by_different_users_have_one_winner() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let saves = (0..6).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let who = identity(&format!("user-{i}"));
                let result = store
                    .save_conversation(&who, "ctx-race", &convo(&format!("from user-{i}"), 1))
                    .await;
                (i, result)
            })
        });
        let mut winners = Vec::new();
        for save in saves.collect::<Vec<_>>() {
            let (i, result) = save.await.expect("task");
            match result {
                Ok(()) => winners.push(i),
                Err(CredentialError::ConversationOfAnotherUser { .. }) => {}
                Err(other) => panic!("[{l}] user-{i}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "[{l}] {winners:?}");
        let winner = identity(&format!("user-{}", winners[0]));
        let got = store
            .conversation(&winner, "ctx-race")
            .await
            .expect("load")
            .expect("the winner's");
        assert_eq!(
            got.title.as_deref(),
            Some(format!("title of from user-{}", winners[0]).as_str()),
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn list_is_newest_first_and_only_the_users_own() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, bob) = (identity("alice"), identity("bob"));
        for (i, ctx) in ["c1", "c2", "c3"].into_iter().enumerate() {
            store
                .save_conversation(&alice, ctx, &convo(ctx, i as u32 + 1))
                .await
                .expect("save");
            tick().await;
        }
        store
            .save_conversation(&bob, "b1", &convo("b1", 1))
            .await
            .expect("save");
        tick().await;
        // Saving c1 again makes it the newest.
        store
            .save_conversation(&alice, "c1", &convo("c1", 4))
            .await
            .expect("save");

        let mine = store.list_conversations(&alice, 10).await.expect("list");
        let order: Vec<_> = mine.iter().map(|c| c.context_id.as_str()).collect();
        assert_eq!(order, ["c1", "c3", "c2"], "[{l}]");
        assert_eq!(mine[0].title.as_deref(), Some("title of c1"), "[{l}]");
        assert_eq!(
            mine.iter().map(|c| c.turns).collect::<Vec<_>>(),
            [4, 3, 2],
            "[{l}]"
        );
        assert!(mine.windows(2).all(|w| w[0].updated_at >= w[1].updated_at));

        let two: Vec<_> = store
            .list_conversations(&alice, 2)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        assert_eq!(two, ["c1", "c3"], "[{l}] limit");
        assert!(
            store
                .list_conversations(&alice, 0)
                .await
                .expect("list")
                .is_empty()
        );
        let bobs: Vec<_> = store
            .list_conversations(&bob, 10)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        assert_eq!(bobs, ["b1"], "[{l}]");

        // Another agent sharing the database sees none of them, and the
        // same contextId is a different conversation there.
        if db.kind != Kind::Memory {
            let other = db.open("agent-b", secret(2)).await;
            assert!(
                other
                    .list_conversations(&alice, 10)
                    .await
                    .expect("list")
                    .is_empty(),
                "[{l}]"
            );
            assert_eq!(
                other.conversation(&bob, "c1").await.expect("load"),
                None,
                "[{l}] agent-a's c1 is not agent-b's"
            );
            other
                .save_conversation(&bob, "c1", &convo("agent-b c1", 1))
                .await
                .expect("save");
            other.close().await;
            assert_eq!(
                store
                    .conversation(&alice, "c1")
                    .await
                    .expect("load")
                    .map(|c| c.turns),
                Some(4),
                "[{l}]"
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn delete_removes_only_that_conversation() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        for ctx in ["c1", "c2"] {
            store
                .save_conversation(&alice, ctx, &convo(ctx, 1))
                .await
                .expect("save");
        }
        assert!(
            store
                .delete_conversation(&alice, "c1")
                .await
                .expect("delete"),
            "[{l}]"
        );
        assert!(
            !store
                .delete_conversation(&alice, "c1")
                .await
                .expect("delete"),
            "[{l}] twice"
        );
        assert!(
            !store
                .delete_conversation(&alice, "never")
                .await
                .expect("delete"),
            "[{l}] unknown"
        );
        assert_eq!(
            store.conversation(&alice, "c1").await.expect("load"),
            None,
            "[{l}]"
        );
        assert!(
            store
                .conversation(&alice, "c2")
                .await
                .expect("load")
                .is_some(),
            "[{l}] c2 kept"
        );
        let left: Vec<_> = store
            .list_conversations(&alice, 10)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        assert_eq!(left, ["c2"], "[{l}]");
        // A deleted context is free: anyone may start it again.
        store
            .save_conversation(&identity("bob"), "c1", &convo("bob's c1", 1))
            .await
            .expect("save");
        store.close().await;
    }
}

/// The sealed blobs of `context_id`'s row.
async fn blobs(db: &TestDb, context_id: &str) -> (Vec<u8>, Vec<u8>) {
    let sql = |col: &str| {
        format!(
            "SELECT {col} FROM conversations WHERE agent_id = 'agent-a' AND context_id = '{context_id}'"
        )
    };
    let sealed = db.query_bytes(&sql("sealed")).await.pop().expect("row");
    let title = db
        .query_bytes(&sql("sealed_title"))
        .await
        .pop()
        .expect("row");
    (sealed, title)
}

async fn overwrite_blobs(db: &TestDb, context_id: &str, (sealed, title): (Vec<u8>, Vec<u8>)) {
    let changed = db
        .exec(
            "UPDATE conversations SET sealed = ?, sealed_title = ? WHERE agent_id = 'agent-a' AND context_id = ?",
            vec![Value::from(sealed), Value::from(title), Value::from(context_id)],
        )
        .await;
    assert_eq!(changed, 1, "[{}] row overwritten", db.label());
}

#[tokio::test]
async fn a_row_copied_to_another_user_or_context_does_not_decrypt() {
    for db in sql_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, bob) = (identity("alice"), identity("bob"));
        store
            .save_conversation(&alice, "ctx-a", &convo("alice-only-history", 1))
            .await
            .expect("save");
        store
            .save_conversation(&alice, "ctx-a2", &convo("alice's other", 1))
            .await
            .expect("save");
        store
            .save_conversation(&bob, "ctx-b", &convo("bob's", 1))
            .await
            .expect("save");
        let alices = blobs(&db, "ctx-a").await;

        // Into another user's row, and into another context of the same user.
        overwrite_blobs(&db, "ctx-b", alices.clone()).await;
        overwrite_blobs(&db, "ctx-a2", alices.clone()).await;
        for (who, ctx) in [(&bob, "ctx-b"), (&alice, "ctx-a2")] {
            let err = store.conversation(who, ctx).await.expect_err("not data");
            assert!(
                matches!(&err, CredentialError::ConversationUnreadable { context_id, .. } if context_id == ctx),
                "[{l}] {ctx}: {err:?}"
            );
            assert!(!err.to_string().contains("alice-only-history"));
        }
        // The history alone moved, the title left in place: still refused.
        let (_, bobs_title) = blobs(&db, "ctx-b").await;
        store
            .save_conversation(&bob, "ctx-b", &convo("bob's again", 2))
            .await
            .expect("a save replaces the unreadable row");
        let (_, fresh_title) = blobs(&db, "ctx-b").await;
        assert_ne!(bobs_title, fresh_title);
        overwrite_blobs(&db, "ctx-b", (alices.0.clone(), fresh_title)).await;
        assert!(
            matches!(
                store.conversation(&bob, "ctx-b").await,
                Err(CredentialError::ConversationUnreadable { .. })
            ),
            "[{l}]"
        );
        // Moving the row to another context is the same.
        db.exec(
            "UPDATE conversations SET context_id = 'ctx-moved' WHERE context_id = 'ctx-a'",
            vec![],
        )
        .await;
        assert!(
            matches!(
                store.conversation(&alice, "ctx-moved").await,
                Err(CredentialError::ConversationUnreadable { .. })
            ),
            "[{l}]"
        );
        // Listings leave out rows whose title does not decrypt.
        let listed: Vec<_> = store
            .list_conversations(&alice, 10)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        assert!(listed.is_empty(), "[{l}] {listed:?}");

        let failed = store
            .events(&Filter::agent("agent-a").user("bob"), 10)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == EventKind::DecryptFailed)
            .count();
        assert!(failed >= 2, "[{l}] decrypt failures audited");

        // The rightful row still reads after all that.
        store
            .save_conversation(&alice, "ctx-a", &convo("alice fresh", 5))
            .await
            .expect("save");
        assert_eq!(
            store
                .conversation(&alice, "ctx-a")
                .await
                .expect("load")
                .map(|c| c.turns),
            Some(5),
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn conversations_under_another_agent_secret_read_as_absent() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let before = db.open("agent-a", secret(1)).await;
        before
            .save_conversation(&alice, "ctx-1", &convo("before rotation", 1))
            .await
            .expect("save");
        before.close().await;

        let rotated = db.open("agent-a", secret(9)).await;
        assert_eq!(
            rotated.conversation(&alice, "ctx-1").await.expect("load"),
            None,
            "[{l}]"
        );
        assert!(
            rotated
                .list_conversations(&alice, 10)
                .await
                .expect("list")
                .is_empty(),
            "[{l}]"
        );
        rotated
            .save_conversation(&alice, "ctx-1", &convo("after rotation", 1))
            .await
            .expect("save over");
        assert!(
            rotated
                .conversation(&alice, "ctx-1")
                .await
                .expect("load")
                .is_some(),
            "[{l}]"
        );
        rotated.close().await;
    }
}

#[tokio::test]
async fn a_conversation_over_the_size_cap_is_refused_and_one_under_it_kept() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let sized = |bytes: usize| Conversation {
            messages: SecretJson::new(json!("x".repeat(bytes))),
            title: Some("big".into()),
            turns: 9,
        };
        let under = sized(MAX_CONVERSATION_BYTES - 1024);
        store
            .save_conversation(&alice, "ctx-big", &under)
            .await
            .unwrap_or_else(|e| panic!("[{l}] just under the cap: {e}"));
        assert_eq!(
            store.conversation(&alice, "ctx-big").await.expect("load"),
            Some(under),
            "[{l}] read back whole"
        );

        let err = store
            .save_conversation(&alice, "ctx-big", &sized(MAX_CONVERSATION_BYTES))
            .await
            .expect_err("over the cap");
        match err {
            CredentialError::ConversationTooLarge {
                context_id,
                size,
                max,
            } => {
                assert_eq!(context_id, "ctx-big");
                assert_eq!(max, MAX_CONVERSATION_BYTES);
                assert!(size > MAX_CONVERSATION_BYTES, "[{l}] {size}");
            }
            other => panic!("[{l}] expected ConversationTooLarge, got {other:?}"),
        }
        assert_eq!(
            store
                .conversation(&alice, "ctx-big")
                .await
                .expect("load")
                .map(|c| c.turns),
            Some(9),
            "[{l}] the refused save changed nothing"
        );

        let long_title = Conversation {
            title: Some("t".repeat(MAX_TITLE_CHARS + 1)),
            ..convo("x", 1)
        };
        assert!(
            matches!(
                store
                    .save_conversation(&alice, "ctx-title", &long_title)
                    .await,
                Err(CredentialError::InvalidInput { field: "title", .. })
            ),
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn conversations_past_retention_read_as_absent_and_are_swept() {
    for db in all_backends().await {
        let l = db.label();
        let mut config = db.config("agent-a", secret(1));
        // Long enough that "fresh" outlives the checks on a loaded machine.
        config.conversation_ttl = Duration::from_millis(1500);
        let store = CredentialStore::open(config).await.expect("open");
        let (alice, bob) = (identity("alice"), identity("bob"));
        for ctx in ["old-1", "old-2"] {
            store
                .save_conversation(&alice, ctx, &convo(ctx, 1))
                .await
                .expect("save");
        }
        tokio::time::sleep(Duration::from_millis(1600)).await;
        store
            .save_conversation(&alice, "fresh", &convo("fresh", 1))
            .await
            .expect("save");

        // Past retention: absent to reads and lists, swept or not.
        assert_eq!(
            store.conversation(&alice, "old-1").await.expect("load"),
            None,
            "[{l}]"
        );
        let listed: Vec<_> = store
            .list_conversations(&alice, 10)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        assert_eq!(listed, ["fresh"], "[{l}]");
        assert!(
            !store
                .delete_conversation(&bob, "old-2")
                .await
                .expect("another user's expired one is not refused"),
            "[{l}]"
        );
        // ... and its contextId is free again.
        store
            .save_conversation(&bob, "old-2", &convo("bob takes over", 1))
            .await
            .expect("expired context taken over");
        assert!(
            matches!(
                store.conversation(&alice, "old-2").await,
                Err(CredentialError::ConversationOfAnotherUser { .. })
            ),
            "[{l}] old-2 is bob's now"
        );

        store.sweep_now().await.expect("sweep");
        if db.kind != Kind::Memory {
            let mut left = db
                .query_strings("SELECT context_id FROM conversations")
                .await;
            left.sort();
            assert_eq!(left, ["fresh", "old-2"], "[{l}] old-1 deleted");
        }
        assert!(
            store
                .conversation(&alice, "fresh")
                .await
                .expect("load")
                .is_some(),
            "[{l}] fresh kept"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_background_sweeper_deletes_conversations_past_retention() {
    for db in sql_backends().await {
        let l = db.label();
        let mut config = db.config("agent-a", secret(1));
        config.conversation_ttl = Duration::from_millis(300);
        config.sweep_interval = Duration::from_millis(100);
        let store = CredentialStore::open(config).await.expect("open");
        store
            .save_conversation(&identity("alice"), "ctx", &convo("short-lived", 1))
            .await
            .expect("save");
        let mut left = 1;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = db
                .query_strings("SELECT context_id FROM conversations")
                .await
                .len();
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "[{l}] swept within 5 s");
        store.close().await;
    }
}

#[tokio::test]
async fn the_memory_store_keeps_at_most_its_bound_dropping_the_least_recently_saved() {
    let store = common::memory().open("agent-a", secret(1)).await;
    let alice = identity("alice");
    let small = Conversation {
        messages: SecretJson::new(json!([])),
        title: None,
        turns: 1,
    };
    for i in 0..MAX_MEMORY_CONVERSATIONS {
        store
            .save_conversation(&alice, &format!("ctx-{i}"), &small)
            .await
            .expect("save");
    }
    // ctx-0 saved again: ctx-1 is now the least recently saved.
    store
        .save_conversation(&alice, "ctx-0", &small)
        .await
        .expect("save");
    store
        .save_conversation(&alice, "ctx-new", &small)
        .await
        .expect("save");
    assert!(
        store
            .conversation(&alice, "ctx-1")
            .await
            .expect("load")
            .is_none(),
        "ctx-1 dropped"
    );
    for ctx in ["ctx-0", "ctx-2", "ctx-new"] {
        assert!(
            store
                .conversation(&alice, ctx)
                .await
                .expect("load")
                .is_some(),
            "{ctx} kept"
        );
    }
    let last = format!("ctx-{}", MAX_MEMORY_CONVERSATIONS - 1);
    assert!(
        store
            .conversation(&alice, &last)
            .await
            .expect("load")
            .is_some()
    );
}

#[tokio::test]
async fn conversations_survive_a_restart_and_are_shared_by_replicas() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let first = db.open("agent-a", secret(4)).await;
        first
            .save_conversation(&alice, "ctx-1", &convo("persisted", 2))
            .await
            .expect("save");
        let replica = db.open("agent-a", secret(4)).await;
        assert_eq!(
            replica.conversation(&alice, "ctx-1").await.expect("load"),
            Some(convo("persisted", 2)),
            "[{l}] another replica continues it"
        );
        first.close().await;
        replica.close().await;
        let restarted = db.open("agent-a", secret(4)).await;
        assert!(
            restarted
                .conversation(&alice, "ctx-1")
                .await
                .expect("load")
                .is_some(),
            "[{l}] after a restart"
        );
        restarted.close().await;
    }
}

#[tokio::test]
async fn a_database_from_before_conversations_gets_the_table() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let key = amesh_credentials::CredentialKey::new("alice", "tool-1");
        let store = db.open("agent-a", secret(1)).await;
        store
            .put(
                &key,
                &alice,
                &amesh_credentials::Credential::bearer("kept-token"),
            )
            .await
            .expect("put");
        store.close().await;
        // Back to the schema of the version without conversations.
        db.exec("DROP TABLE conversations", vec![]).await;
        let forgotten = db
            .exec(
                "DELETE FROM amesh_credentials_migrations WHERE version = 'm0002_create_conversations'",
                vec![],
            )
            .await;
        assert_eq!(forgotten, 1, "[{l}]");
        // That version had no `renamed_at` either (added to the table by a
        // later migration).
        db.exec(
            "DELETE FROM amesh_credentials_migrations WHERE version = 'm0005_add_conversation_renamed_at'",
            vec![],
        )
        .await;

        let upgraded = db.open("agent-a", secret(1)).await;
        upgraded
            .save_conversation(&alice, "ctx-1", &convo("after upgrade", 1))
            .await
            .unwrap_or_else(|e| panic!("[{l}] conversations after the upgrade: {e}"));
        assert!(
            upgraded
                .conversation(&alice, "ctx-1")
                .await
                .expect("load")
                .is_some()
        );
        assert!(
            upgraded.get(&key, &alice).await.expect("get").is_some(),
            "[{l}] credentials kept"
        );
        upgraded.close().await;
    }
}

#[tokio::test]
async fn unusable_ids_and_settings_are_refused() {
    let store = common::memory().open("agent-a", secret(1)).await;
    let alice = identity("alice");
    for ctx in [String::new(), "c".repeat(256)] {
        assert!(
            matches!(
                store.conversation(&alice, &ctx).await,
                Err(CredentialError::InvalidInput {
                    field: "context_id",
                    ..
                })
            ),
            "{} chars",
            ctx.len()
        );
    }
    let mut config = common::memory().config("agent-a", secret(1));
    config.conversation_ttl = Duration::ZERO;
    assert!(matches!(
        CredentialStore::open(config).await,
        Err(CredentialError::InvalidInput {
            field: "conversation_ttl",
            ..
        })
    ));
}
