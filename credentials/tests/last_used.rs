//! "Last used" on credential rows, on every backend: written when a tool
//! call uses the credential but at most once a minute per credential, kept
//! through a refresh, cleared by a new grant, and added to a database made
//! by an earlier version by migration `m0004_add_credential_last_used`.

mod common;

use std::time::{Duration, SystemTime};

use amesh_credentials::{Credential, CredentialKey, CredentialStore, Filter};
use common::{TestDb, all_backends, identity, secret, sql_backends};

async fn last_used(store: &CredentialStore, user: &str, tool: &str) -> Option<SystemTime> {
    let rows = store
        .list_for_user(&identity(user))
        .await
        .expect("list for user");
    rows.into_iter()
        .find(|r| r.tool_id == tool)
        .expect("a live row")
        .last_used_at
}

#[tokio::test]
async fn a_use_is_written_at_most_once_a_minute_per_credential() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, bob) = (identity("alice"), identity("bob"));
        let key = CredentialKey::new("alice", "demo");
        let other = CredentialKey::new("alice", "billing");
        for k in [&key, &other] {
            store
                .put(k, &alice, &Credential::bearer("t"))
                .await
                .expect("put");
        }
        assert_eq!(last_used(&store, "alice", "demo").await, None, "[{l}]");

        let before = SystemTime::now() - Duration::from_secs(1);
        assert!(store.record_use(&key, &alice).await.expect("use"), "[{l}]");
        let first = last_used(&store, "alice", "demo")
            .await
            .unwrap_or_else(|| panic!("[{l}] written"));
        assert!(first >= before, "[{l}]");
        // Within the minute: no write, the value stays.
        tokio::time::sleep(Duration::from_millis(5)).await;
        for _ in 0..20 {
            assert!(!store.record_use(&key, &alice).await.expect("use"), "[{l}]");
        }
        assert_eq!(
            last_used(&store, "alice", "demo").await,
            Some(first),
            "[{l}]"
        );
        // Each credential has its own minute; others' identities write nothing.
        assert_eq!(last_used(&store, "alice", "billing").await, None, "[{l}]");
        assert!(!store.record_use(&other, &bob).await.expect("use"), "[{l}]");
        assert_eq!(last_used(&store, "alice", "billing").await, None, "[{l}]");
        assert!(
            store.record_use(&other, &alice).await.expect("use"),
            "[{l}]"
        );
        assert!(
            last_used(&store, "alice", "billing").await.is_some(),
            "[{l}]"
        );

        // A refresh is the same grant: last use kept.
        store
            .put(&key, &alice, &Credential::bearer("refreshed"))
            .await
            .expect("refresh");
        assert_eq!(
            last_used(&store, "alice", "demo").await,
            Some(first),
            "[{l}]"
        );
        // A new grant after a disconnect starts unused, and its first use
        // is written at once.
        store
            .delete(&key, &alice, amesh_credentials::DeleteReason::Revoked)
            .await
            .expect("delete");
        store
            .put(&key, &alice, &Credential::bearer("new grant"))
            .await
            .expect("put");
        assert_eq!(last_used(&store, "alice", "demo").await, None, "[{l}]");
        assert!(store.record_use(&key, &alice).await.expect("use"), "[{l}]");
        assert!(last_used(&store, "alice", "demo").await.is_some(), "[{l}]");
        // The operator listing shows it too, deleted rows included.
        let all = store
            .list(&Filter::default().with_deleted())
            .await
            .expect("list");
        assert_eq!(
            all.iter().filter(|r| r.tool_id == "demo").count(),
            2,
            "[{l}] {all:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn replicas_throttle_on_their_own_and_share_the_row() {
    for db in sql_backends().await {
        let l = db.label();
        let (a, b) = (
            db.open("agent-a", secret(1)).await,
            db.open("agent-a", secret(1)).await,
        );
        let alice = identity("alice");
        let key = CredentialKey::new("alice", "demo");
        a.put(&key, &alice, &Credential::bearer("t"))
            .await
            .expect("put");
        assert!(a.record_use(&key, &alice).await.expect("use a"), "[{l}]");
        let first = last_used(&b, "alice", "demo").await.expect("seen by b");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(b.record_use(&key, &alice).await.expect("use b"), "[{l}]");
        let second = last_used(&a, "alice", "demo").await.expect("seen by a");
        assert!(second > first, "[{l}] {first:?} then {second:?}");
        a.close().await;
        b.close().await;
    }
}

async fn forget_migration(db: &TestDb, version: &str) {
    let n = db
        .exec(
            "DELETE FROM amesh_credentials_migrations WHERE version = ?",
            vec![version.into()],
        )
        .await;
    assert_eq!(n, 1, "[{}] {version} was applied", db.label());
}

#[tokio::test]
async fn a_database_from_before_last_used_and_titles_gets_the_columns() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let key = CredentialKey::new("alice", "demo");
        let store = db.open("agent-a", secret(1)).await;
        store
            .put(&key, &alice, &Credential::bearer("kept-token"))
            .await
            .expect("put");
        store.close().await;
        // Back to the schema of the version before both columns.
        db.exec("ALTER TABLE credentials DROP COLUMN last_used_at", vec![])
            .await;
        db.exec("ALTER TABLE conversations DROP COLUMN renamed_at", vec![])
            .await;
        forget_migration(&db, "m0004_add_credential_last_used").await;
        forget_migration(&db, "m0005_add_conversation_renamed_at").await;

        let upgraded = db.open("agent-a", secret(1)).await;
        assert_eq!(last_used(&upgraded, "alice", "demo").await, None, "[{l}]");
        assert!(
            upgraded.record_use(&key, &alice).await.expect("use"),
            "[{l}]"
        );
        assert!(
            last_used(&upgraded, "alice", "demo").await.is_some(),
            "[{l}]"
        );
        assert!(
            upgraded.get(&key, &alice).await.expect("get").is_some(),
            "[{l}] credential kept"
        );
        upgraded
            .rename_conversation(&alice, "ctx-1", "Named after the upgrade")
            .await
            .unwrap_or_else(|e| panic!("[{l}] rename after the upgrade: {e}"));
        let list = upgraded.list_conversations(&alice, 10).await.expect("list");
        assert_eq!(list[0].title.as_deref(), Some("Named after the upgrade"));
        assert!(list[0].renamed_at.is_some(), "[{l}]");
        upgraded.close().await;
    }
}
