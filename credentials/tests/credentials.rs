//! The credential API on every backend: round trip, refresh, restart,
//! identity checks, TTL, operator functions.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amesh_credentials::ExposeSecret as _;
use amesh_credentials::{
    ClientRegistration, Credential, CredentialError, CredentialKey, DeleteReason, EventKind,
    Filter, NewFlow, SecretJson,
};
use amesh_trust::{
    ComponentKind, IdentitySigner, IdentityVerifier, SigningKey, TrustCard, TrustRegistry,
    UserClaims, VerifierConfig, now_unix,
};
use common::{Kind, all_backends, identity, secret, sql_backends};

const TOOL: &str = "https://mcp.example.com/mcp";

fn full_credential(access: &str) -> Credential {
    Credential {
        access_token: access.into(),
        refresh_token: Some("refresh-token-value-1".into()),
        token_type: "Bearer".into(),
        // Whole seconds: the store keeps milliseconds.
        expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
        scopes: vec!["read".into(), "write".into()],
        issuer: Some("https://auth.example.com".into()),
        token_endpoint: Some("https://auth.example.com/token".into()),
        client_id: Some("client-123".into()),
    }
}

#[tokio::test]
async fn credential_round_trip_on_every_backend() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);

        assert!(
            store.get(&key, &alice).await.expect("get").is_none(),
            "[{l}] empty store"
        );
        store
            .put(&key, &alice, &full_credential("access-token-value-1"))
            .await
            .expect("put");

        let got = store.get(&key, &alice).await.expect("get").expect("stored");
        assert_eq!(
            got.access_token.expose_secret(),
            "access-token-value-1",
            "[{l}]"
        );
        assert_eq!(
            got.refresh_token.as_ref().map(|t| t.expose_secret()),
            Some("refresh-token-value-1"),
            "[{l}]"
        );
        assert_eq!(got.token_type, "Bearer");
        assert_eq!(
            got.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
            "[{l}]"
        );
        assert_eq!(got.scopes, ["read", "write"]);
        assert_eq!(got.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(
            got.token_endpoint.as_deref(),
            Some("https://auth.example.com/token")
        );
        assert_eq!(got.client_id.as_deref(), Some("client-123"));

        let other_tool = CredentialKey::new("alice", "https://other.example.com/mcp");
        assert!(
            store.get(&other_tool, &alice).await.expect("get").is_none(),
            "[{l}] other tool"
        );

        let mine = store.list_for_user(&alice).await.expect("list");
        assert_eq!(mine.len(), 1, "[{l}]");
        assert_eq!(
            (mine[0].user_id.as_str(), mine[0].tool_id.as_str()),
            ("alice", TOOL)
        );
        assert_eq!(mine[0].scopes, ["read", "write"]);
        assert_eq!(mine[0].client_id.as_deref(), Some("client-123"));
        assert!(mine[0].deleted_at.is_none());

        assert!(
            store
                .delete(&key, &alice, DeleteReason::Invalid)
                .await
                .expect("delete"),
            "[{l}]"
        );
        assert!(
            store.get(&key, &alice).await.expect("get").is_none(),
            "[{l}] deleted"
        );
        assert!(
            !store
                .delete(&key, &alice, DeleteReason::Invalid)
                .await
                .expect("delete"),
            "[{l}] twice"
        );

        let kinds: Vec<EventKind> = store
            .events(&Filter::agent("agent-a").user("alice"), 10)
            .await
            .expect("events")
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [EventKind::Deleted, EventKind::Used, EventKind::Acquired],
            "[{l}] newest first"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn second_put_is_a_refresh_and_keeps_one_live_row() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        store
            .put(&key, &alice, &full_credential("first-access"))
            .await
            .expect("put");
        store
            .put(&key, &alice, &Credential::bearer("second-access"))
            .await
            .expect("refresh");
        let got = store.get(&key, &alice).await.expect("get").expect("stored");
        assert_eq!(got.access_token.expose_secret(), "second-access", "[{l}]");
        assert!(got.refresh_token.is_none(), "[{l}] replaced as a whole");
        let rows = store
            .list(&Filter::agent("agent-a").with_deleted())
            .await
            .expect("list");
        assert_eq!(rows.len(), 1, "[{l}] a refresh updates the live row");
        assert!(rows[0].updated_at >= rows[0].created_at);
        let events = store
            .events(&Filter::agent("agent-a"), 10)
            .await
            .expect("events");
        assert_eq!(events[1].kind, EventKind::Refreshed, "[{l}] {events:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn credentials_and_client_registrations_survive_a_process_restart() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        {
            let store = db.open("agent-a", secret(7)).await;
            store
                .put(&key, &alice, &full_credential("survives-restart"))
                .await
                .expect("put");
            store
                .put_client(&ClientRegistration {
                    server: "https://auth.example.com".into(),
                    client_id: "dyn-client".into(),
                    client_secret: Some("dyn-secret".into()),
                    client_secret_expires_at: None,
                    registration: SecretJson::new(serde_json::json!({"client_id": "dyn-client"})),
                })
                .await
                .expect("put client");
            store.close().await;
        }
        // A new process: a new store on the same database with the same secret.
        let store = db.open("agent-a", secret(7)).await;
        let got = store
            .get(&key, &alice)
            .await
            .expect("get")
            .expect("persisted");
        assert_eq!(
            got.access_token.expose_secret(),
            "survives-restart",
            "[{l}]"
        );
        let client = store
            .get_client("https://auth.example.com")
            .await
            .expect("get client")
            .expect("persisted");
        assert_eq!(client.client_id, "dyn-client");
        assert_eq!(
            client.client_secret.as_ref().map(|s| s.expose_secret()),
            Some("dyn-secret")
        );
        assert_eq!(client.registration.expose()["client_id"], "dyn-client");
        store.close().await;
    }
}

#[tokio::test]
async fn memory_backend_forgets_everything_on_restart_by_design() {
    let db = common::memory();
    let alice = identity("alice");
    let key = CredentialKey::new("alice", TOOL);
    let store = db.open("agent-a", secret(1)).await;
    store
        .put(&key, &alice, &Credential::bearer("gone-after-restart"))
        .await
        .expect("put");
    drop(store);
    let store = db.open("agent-a", secret(1)).await;
    assert!(store.get(&key, &alice).await.expect("get").is_none());
}

/// A gateway-signed identity for `user`, through the real verifier.
fn gateway_identity(user: &str) -> amesh_trust::VerifiedIdentity {
    let ns = "a2a/test";
    let now = now_unix();
    let key = SigningKey::generate().expect("key");
    let card = TrustCard::sign(&key, ComponentKind::Gateway, "gw-1", ns, 1, now).expect("card");
    let signer = IdentitySigner::new(
        "gw-1",
        ns,
        key,
        Duration::from_secs(300),
        Duration::from_secs(3600),
    )
    .expect("signer");
    let token = signer
        .sign(&UserClaims::new(user), "agent-a", None)
        .expect("token");
    let registry = TrustRegistry::new(ns, Duration::from_secs(60));
    registry
        .accept_card(ComponentKind::Gateway, "gw-1", card.as_str(), now)
        .expect("card accepted");
    IdentityVerifier::new(registry, "agent-a", VerifierConfig::default())
        .verify(&token, user, now)
        .expect("verified")
}

#[tokio::test]
async fn another_users_identity_is_denied_and_audited() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let key = CredentialKey::new("alice", TOOL);
        store
            .put(
                &key,
                &gateway_identity("alice"),
                &Credential::bearer("alice-only-token"),
            )
            .await
            .expect("put");

        let mallory = gateway_identity("mallory");
        let err = store.get(&key, &mallory).await.expect_err("denied");
        match &err {
            CredentialError::AccessDenied {
                key_user,
                identity_user,
                operation,
                ..
            } => {
                assert_eq!(
                    (key_user.as_str(), identity_user.as_str(), *operation),
                    ("alice", "mallory", "read"),
                    "[{l}]"
                );
            }
            other => panic!("[{l}] expected AccessDenied, got {other:?}"),
        }
        assert!(!err.to_string().contains("alice-only-token"));
        let bob = identity("bob");
        assert!(matches!(
            store.put(&key, &bob, &Credential::bearer("injected")).await,
            Err(CredentialError::AccessDenied {
                operation: "store",
                ..
            })
        ));
        assert!(matches!(
            store.delete(&key, &bob, DeleteReason::Revoked).await,
            Err(CredentialError::AccessDenied {
                operation: "delete",
                ..
            })
        ));
        // Nothing changed.
        let still = store
            .get(&key, &identity("alice"))
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(
            still.access_token.expose_secret(),
            "alice-only-token",
            "[{l}]"
        );

        let denied: Vec<_> = store
            .events(&Filter::agent("agent-a").user("alice"), 20)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == EventKind::AccessDenied)
            .collect();
        assert_eq!(denied.len(), 3, "[{l}] {denied:?}");
        let reason = denied
            .last()
            .and_then(|e| e.reason.clone())
            .unwrap_or_default();
        assert!(
            reason.contains("mallory") && reason.contains("gateway-signed"),
            "[{l}] {reason}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn expired_credentials_are_swept_kept_for_audit_and_never_read() {
    for db in all_backends().await {
        let l = db.label();
        let mut config = db.config("agent-a", secret(1));
        config.ttl = Duration::from_millis(1200);
        config.sweep_interval = Duration::from_millis(200);
        let store = amesh_credentials::CredentialStore::open(config)
            .await
            .expect("open");
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        store
            .put(&key, &alice, &Credential::bearer("short-lived"))
            .await
            .expect("put");
        assert!(
            store.get(&key, &alice).await.expect("get").is_some(),
            "[{l}] fresh"
        );

        // Reads miss as soon as the TTL is over, swept or not.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            store.get(&key, &alice).await.expect("get").is_none(),
            "[{l}] expired"
        );
        assert!(
            store.list_for_user(&alice).await.expect("list").is_empty(),
            "[{l}]"
        );

        // The sweeper marks it deleted (ttl) and keeps the row.
        let deadline = SystemTime::now() + Duration::from_secs(5);
        let swept = loop {
            let rows = store
                .list(&Filter::agent("agent-a").with_deleted())
                .await
                .expect("list");
            if rows.iter().any(|r| r.delete_reason.is_some()) || SystemTime::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(swept.len(), 1, "[{l}] {swept:?}");
        assert_eq!(swept[0].delete_reason, Some(DeleteReason::Ttl), "[{l}]");
        assert!(swept[0].deleted_at.is_some());
        let events = store
            .events(&Filter::agent("agent-a"), 10)
            .await
            .expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::Expired && e.reason.as_deref() == Some("ttl")),
            "[{l}] {events:?}"
        );

        // A put over the deleted row makes a new live one; the old stays.
        store
            .put(&key, &alice, &Credential::bearer("fresh-again"))
            .await
            .expect("put");
        let got = store.get(&key, &alice).await.expect("get").expect("live");
        assert_eq!(got.access_token.expose_secret(), "fresh-again", "[{l}]");
        let rows = store
            .list(&Filter::agent("agent-a").with_deleted())
            .await
            .expect("list");
        assert_eq!(rows.len(), 2, "[{l}] {rows:?}");
        assert_eq!(
            rows.iter().filter(|r| r.deleted_at.is_none()).count(),
            1,
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn put_over_an_expired_unswept_row_is_a_new_acquisition() {
    for db in all_backends().await {
        let l = db.label();
        let mut config = db.config("agent-a", secret(1));
        config.ttl = Duration::from_millis(300);
        let store = amesh_credentials::CredentialStore::open(config)
            .await
            .expect("open");
        let alice = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        store
            .put(&key, &alice, &Credential::bearer("old"))
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(400)).await;
        store
            .put(&key, &alice, &Credential::bearer("new"))
            .await
            .expect("put");
        let rows = store
            .list(&Filter::agent("agent-a").with_deleted())
            .await
            .expect("list");
        assert_eq!(rows.len(), 2, "[{l}]");
        assert!(
            rows.iter()
                .any(|r| r.delete_reason == Some(DeleteReason::Ttl)),
            "[{l}] {rows:?}"
        );
        let kinds: Vec<_> = store
            .events(&Filter::agent("agent-a"), 10)
            .await
            .expect("events")
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [EventKind::Acquired, EventKind::Expired, EventKind::Acquired],
            "[{l}]"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn operator_list_revoke_and_events() {
    for db in all_backends().await {
        let l = db.label();
        let a = db.open("agent-a", secret(1)).await;
        // On SQL a second agent shares the database; memory stores are per agent.
        let b = if db.kind == Kind::Memory {
            None
        } else {
            Some(db.open("agent-b", secret(2)).await)
        };
        for user in ["alice", "bob"] {
            for tool in ["tool-1", "tool-2"] {
                let cred = Credential {
                    scopes: vec!["s1".into()],
                    ..Credential::bearer(format!("{user}-{tool}-token"))
                };
                a.put(&CredentialKey::new(user, tool), &identity(user), &cred)
                    .await
                    .expect("put");
            }
        }
        if let Some(b) = &b {
            b.put(
                &CredentialKey::new("alice", "tool-1"),
                &identity("alice"),
                &Credential::bearer("b-token"),
            )
            .await
            .expect("put");
        }

        let all = a.list(&Filter::default()).await.expect("list");
        assert_eq!(all.len(), if b.is_some() { 5 } else { 4 }, "[{l}]");
        let shown = format!("{all:?}");
        assert!(
            !shown.contains("-token"),
            "[{l}] listing shows no tokens: {shown}"
        );
        assert_eq!(
            a.list(&Filter::agent("agent-a").user("alice"))
                .await
                .expect("list")
                .len(),
            2
        );
        assert_eq!(
            a.list(&Filter::default().tool("tool-2"))
                .await
                .expect("list")
                .len(),
            2
        );

        let revoked = a
            .revoke(
                &Filter::agent("agent-a").user("alice"),
                "user left the company",
            )
            .await
            .expect("revoke");
        assert_eq!(revoked, 2, "[{l}]");
        assert!(
            a.get(&CredentialKey::new("alice", "tool-1"), &identity("alice"))
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            a.get(&CredentialKey::new("bob", "tool-1"), &identity("bob"))
                .await
                .expect("get")
                .is_some()
        );
        if let Some(b) = &b {
            assert!(
                b.get(&CredentialKey::new("alice", "tool-1"), &identity("alice"))
                    .await
                    .expect("get")
                    .is_some(),
                "[{l}] other agent untouched"
            );
        }
        let kept = a
            .list(&Filter::agent("agent-a").user("alice").with_deleted())
            .await
            .expect("list");
        assert!(
            kept.iter()
                .all(|r| r.delete_reason == Some(DeleteReason::Revoked)),
            "[{l}] {kept:?}"
        );
        let events = a
            .events(&Filter::agent("agent-a").user("alice"), 100)
            .await
            .expect("events");
        let revokes: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::Revoked)
            .collect();
        assert_eq!(revokes.len(), 2, "[{l}]");
        assert!(
            revokes
                .iter()
                .all(|e| e.reason.as_deref() == Some("user left the company"))
        );
        assert_eq!(
            a.events(&Filter::default(), 3).await.expect("events").len(),
            3,
            "[{l}] limit"
        );
        a.close().await;
        if let Some(b) = b {
            b.close().await;
        }
    }
}

#[tokio::test]
async fn unusable_keys_and_states_are_refused() {
    let store = common::memory().open("agent-a", secret(1)).await;
    let alice = identity("alice");
    for key in [
        CredentialKey::new("alice", ""),
        CredentialKey::new("", TOOL),
        CredentialKey::new("alice", "x".repeat(1025)),
    ] {
        assert!(
            matches!(
                store.get(&key, &alice).await,
                Err(CredentialError::InvalidInput { .. })
            ),
            "{key:?}"
        );
    }
    let flow = NewFlow {
        state: "too-short".into(),
        tool_id: TOOL.into(),
        task_id: "task-1".into(),
        pkce_verifier: "v".into(),
        redirect_uri: "https://gw/cb".into(),
        resume: SecretJson::default(),
    };
    assert!(matches!(
        store.start_flow(flow, &alice).await,
        Err(CredentialError::InvalidInput { field: "state", .. })
    ));
}
