//! Encryption at rest binds a row to its agent, user and tool: SQL-level
//! copies and moves do not decrypt, read as absent, and are audited.

mod common;

use amesh_credentials::ExposeSecret as _;
use amesh_credentials::{Credential, CredentialKey, EventKind, Filter};
use common::{TestDb, identity, secret, sql_backends};
use sea_orm::Value;

const TOOL: &str = "https://mcp.example.com/mcp";

fn live_row(agent: &str, user: &str) -> String {
    format!(
        "SELECT sealed FROM credentials WHERE agent_id = '{agent}' AND user_id = '{user}' AND tombstone = 0"
    )
}

/// Replaces `agent_b`'s live row for alice by a copy of `agent_a`'s row
/// with `agent_id` changed — what an attacker with SQL access would do.
async fn copy_row_across_agents(db: &TestDb, agent_a: &str, agent_b: &str) {
    let hash = db
        .query_strings(&format!("SELECT key_hash FROM credentials WHERE agent_id = '{agent_b}' AND user_id = 'alice' AND tombstone = 0"))
        .await
        .pop()
        .expect("agent b's row");
    db.exec(
        "DELETE FROM credentials WHERE agent_id = ?",
        vec![Value::from(agent_b)],
    )
    .await;
    let copied = db
        .exec(
            "INSERT INTO credentials (agent_id, user_id, tool_id, key_hash, tombstone, sealed, scopes, issuer, client_id, token_expires_at, created_at, updated_at, expires_at) \
             SELECT ?, user_id, tool_id, ?, 0, sealed, scopes, issuer, client_id, token_expires_at, created_at, updated_at, expires_at \
             FROM credentials WHERE agent_id = ? AND user_id = 'alice' AND tombstone = 0",
            vec![Value::from(agent_b), Value::from(hash), Value::from(agent_a)],
        )
        .await;
    assert_eq!(copied, 1, "[{}] row copied", db.label());
}

#[tokio::test]
async fn agents_sharing_a_database_cannot_read_each_others_rows() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        let a = db.open("agent-a", secret(1)).await;
        // agent-b has its own secret; agent-c (misconfigured) shares agent-a's.
        let b = db.open("agent-b", secret(2)).await;
        let c = db.open("agent-c", secret(1)).await;
        a.put(&key, &alice, &Credential::bearer("agent-a-token"))
            .await
            .expect("put a");
        b.put(&key, &alice, &Credential::bearer("agent-b-token"))
            .await
            .expect("put b");
        c.put(&key, &alice, &Credential::bearer("agent-c-token"))
            .await
            .expect("put c");

        // Scoping: each agent sees its own row.
        assert_eq!(
            b.get(&key, &alice)
                .await
                .expect("get")
                .expect("b")
                .access_token
                .expose_secret(),
            "agent-b-token"
        );

        copy_row_across_agents(&db, "agent-a", "agent-b").await;
        copy_row_across_agents(&db, "agent-a", "agent-c").await;
        for (store, agent) in [(&b, "agent-b"), (&c, "agent-c")] {
            let got = store.get(&key, &alice).await.expect("no error");
            assert!(
                got.is_none(),
                "[{l}] {agent} must not read agent-a's copied row"
            );
            let events = store
                .events(&Filter::agent(agent).user("alice"), 5)
                .await
                .expect("events");
            assert_eq!(
                events[0].kind,
                EventKind::DecryptFailed,
                "[{l}] {agent}: {events:?}"
            );
            assert!(
                events[0]
                    .reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("another agent secret or agent id"),
                "[{l}] {events:?}"
            );
        }
        // agent-a still reads its own.
        assert_eq!(
            a.get(&key, &alice)
                .await
                .expect("get")
                .expect("a")
                .access_token
                .expose_secret(),
            "agent-a-token",
            "[{l}]"
        );
        for s in [a, b, c] {
            s.close().await;
        }
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_users_row_is_absent_and_audited() {
    for db in sql_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let (alice, bob) = (identity("alice"), identity("bob"));
        let alice_key = CredentialKey::new("alice", TOOL);
        let bob_key = CredentialKey::new("bob", TOOL);
        store
            .put(&alice_key, &alice, &Credential::bearer("alice-token"))
            .await
            .expect("put");
        store
            .put(&bob_key, &bob, &Credential::bearer("bob-token"))
            .await
            .expect("put");

        let alice_blob = db
            .query_bytes(&live_row("agent-a", "alice"))
            .await
            .pop()
            .expect("alice row");
        let moved = db
            .exec(
                "UPDATE credentials SET sealed = ? WHERE agent_id = 'agent-a' AND user_id = 'bob' AND tombstone = 0",
                vec![Value::from(alice_blob)],
            )
            .await;
        assert_eq!(moved, 1);

        assert!(
            store.get(&bob_key, &bob).await.expect("no error").is_none(),
            "[{l}] bob must not get alice's token"
        );
        let events = store
            .events(&Filter::agent("agent-a").user("bob"), 5)
            .await
            .expect("events");
        assert_eq!(events[0].kind, EventKind::DecryptFailed, "[{l}] {events:?}");
        assert!(
            events[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("altered or moved"),
            "[{l}] {events:?}"
        );
        assert_eq!(
            store
                .get(&alice_key, &alice)
                .await
                .expect("get")
                .expect("alice")
                .access_token
                .expose_secret(),
            "alice-token"
        );

        // Bob signs in again: the new token replaces the unreadable row.
        store
            .put(&bob_key, &bob, &Credential::bearer("bob-token-2"))
            .await
            .expect("put");
        assert_eq!(
            store
                .get(&bob_key, &bob)
                .await
                .expect("get")
                .expect("bob")
                .access_token
                .expose_secret(),
            "bob-token-2",
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn changed_agent_secret_makes_old_rows_absent_without_failing() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        let before = db.open("agent-a", secret(1)).await;
        before
            .put(&key, &alice, &Credential::bearer("old-secret-token"))
            .await
            .expect("put");
        before.close().await;

        let after = db.open("agent-a", secret(9)).await;
        assert!(
            after
                .get(&key, &alice)
                .await
                .expect("not an error")
                .is_none(),
            "[{l}]"
        );
        assert!(
            after
                .get(&key, &alice)
                .await
                .expect("still not an error")
                .is_none(),
            "[{l}]"
        );
        let events = after
            .events(&Filter::agent("agent-a"), 5)
            .await
            .expect("events");
        assert_eq!(events[0].kind, EventKind::DecryptFailed, "[{l}]");
        after
            .put(&key, &alice, &Credential::bearer("new-secret-token"))
            .await
            .expect("re-authenticated");
        assert_eq!(
            after
                .get(&key, &alice)
                .await
                .expect("get")
                .expect("new")
                .access_token
                .expose_secret(),
            "new-secret-token"
        );
        after.close().await;
    }
}

#[tokio::test]
async fn tampered_plaintext_columns_do_not_change_what_is_returned() {
    for db in sql_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        let cred = Credential {
            client_id: Some("real-client".into()),
            issuer: Some("https://auth.example.com".into()),
            token_endpoint: Some("https://auth.example.com/token".into()),
            ..Credential::bearer("t")
        };
        store.put(&key, &alice, &cred).await.expect("put");
        db.exec(
            "UPDATE credentials SET client_id = 'evil-client', issuer = 'https://evil.example.com' WHERE agent_id = 'agent-a'",
            vec![],
        )
        .await;
        let got = store.get(&key, &alice).await.expect("get").expect("row");
        assert_eq!(
            got.client_id.as_deref(),
            Some("real-client"),
            "[{l}] the sealed copy is authoritative"
        );
        assert_eq!(got.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(
            got.token_endpoint.as_deref(),
            Some("https://auth.example.com/token")
        );
        store.close().await;
    }
}
