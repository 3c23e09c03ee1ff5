//! Pending OAuth flows and client registrations on every backend.

mod common;

use std::time::{Duration, SystemTime};

use amesh_credentials::ExposeSecret as _;
use amesh_credentials::{
    ClientRegistration, CredentialError, CredentialStore, EventKind, Filter, NewFlow, SecretJson,
};
use common::{all_backends, identity, secret, sql_backends};
use serde_json::json;

const TOOL: &str = "https://mcp.example.com/mcp";

fn flow(state: &str) -> NewFlow {
    NewFlow {
        state: state.into(),
        tool_id: TOOL.into(),
        task_id: "task-42".into(),
        pkce_verifier: "pkce-verifier-0123456789".into(),
        redirect_uri: "https://gateway.example.com/api/v1/auth/tool/callback".into(),
        resume: SecretJson::new(json!({
            "tool": "search", "arguments": {"q": "invoices"},
            "conversation": [{"role": "user", "text": "find my invoices"}]
        })),
    }
}

#[tokio::test]
async fn pending_flow_is_single_use() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let expires = store
            .start_flow(flow("state-single-use-0001"), &alice)
            .await
            .expect("start");
        let left = expires
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(600),
            "[{l}] ten minutes: {left:?}"
        );

        let taken = store
            .take_flow("state-single-use-0001", &alice)
            .await
            .expect("take");
        assert_eq!(
            (taken.agent_id.as_str(), taken.user_id.as_str()),
            ("agent-a", "alice"),
            "[{l}]"
        );
        assert_eq!(
            (taken.tool_id.as_str(), taken.task_id.as_str()),
            (TOOL, "task-42")
        );
        assert_eq!(
            taken.pkce_verifier.expose_secret(),
            "pkce-verifier-0123456789"
        );
        assert_eq!(
            taken.redirect_uri,
            "https://gateway.example.com/api/v1/auth/tool/callback"
        );
        assert_eq!(taken.resume.expose()["arguments"]["q"], "invoices", "[{l}]");
        assert_eq!(taken.expires_at, expires);

        let again = store.take_flow("state-single-use-0001", &alice).await;
        assert!(
            matches!(again, Err(CredentialError::FlowAlreadyUsed)),
            "[{l}] {again:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn concurrent_takes_let_exactly_one_win() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        store
            .start_flow(flow("state-concurrent-00001"), &alice)
            .await
            .expect("start");
        let takes = (0..8).map(|_| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move { store.take_flow("state-concurrent-00001", &alice).await })
        });
        let results = futures_join(takes).await;
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "[{l}] {results:?}");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, CredentialError::FlowAlreadyUsed)),
            "[{l}]"
        );
        store.close().await;
    }
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn pending_flow_expires() {
    for db in all_backends().await {
        let l = db.label();
        let mut config = db.config("agent-a", secret(1));
        config.flow_ttl = Duration::from_millis(300);
        let store = CredentialStore::open(config).await.expect("open");
        let alice = identity("alice");
        store
            .start_flow(flow("state-expires-000001"), &alice)
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let err = store
            .take_flow("state-expires-000001", &alice)
            .await
            .expect_err("expired");
        assert!(
            matches!(err, CredentialError::FlowExpired { .. }),
            "[{l}] {err:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn another_users_take_is_refused_audited_and_does_not_use_the_flow() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        store
            .start_flow(flow("state-wrong-user-0001"), &identity("alice"))
            .await
            .expect("start");
        let err = store
            .take_flow("state-wrong-user-0001", &identity("mallory"))
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, CredentialError::FlowUserMismatch { identity_user } if identity_user == "mallory"),
            "[{l}] {err:?}"
        );
        let events = store
            .events(&Filter::agent("agent-a").user("alice"), 5)
            .await
            .expect("events");
        assert_eq!(events[0].kind, EventKind::AccessDenied, "[{l}] {events:?}");
        assert!(
            events[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("mallory")
        );
        assert!(
            store
                .take_flow("state-wrong-user-0001", &identity("alice"))
                .await
                .is_ok(),
            "[{l}] still usable by alice"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn unknown_state_is_flow_not_found_and_states_are_never_reused() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let alice = identity("alice");
        let err = store
            .take_flow("state-never-started-01", &alice)
            .await
            .expect_err("unknown");
        assert!(
            matches!(err, CredentialError::FlowNotFound),
            "[{l}] {err:?}"
        );
        store
            .start_flow(flow("state-duplicate-00001"), &alice)
            .await
            .expect("start");
        let dup = store
            .start_flow(flow("state-duplicate-00001"), &alice)
            .await;
        assert!(
            matches!(
                dup,
                Err(CredentialError::InvalidInput { field: "state", .. })
            ),
            "[{l}] {dup:?}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn pending_flow_survives_a_restart_and_any_replica_can_take_it() {
    for db in sql_backends().await {
        let l = db.label();
        let alice = identity("alice");
        {
            let before_restart = db.open("agent-a", secret(3)).await;
            before_restart
                .start_flow(flow("state-restart-000001"), &alice)
                .await
                .expect("start");
            before_restart.close().await;
        }
        let after_restart = db.open("agent-a", secret(3)).await;
        let taken = after_restart
            .take_flow("state-restart-000001", &alice)
            .await
            .expect("take after restart");
        assert_eq!(taken.resume.expose()["tool"], "search", "[{l}]");

        // Two replicas at once: one starts, the other finishes; the first
        // then sees it used.
        let replica_1 = db.open("agent-a", secret(3)).await;
        let replica_2 = db.open("agent-a", secret(3)).await;
        replica_1
            .start_flow(flow("state-replicas-000001"), &alice)
            .await
            .expect("start");
        assert!(
            replica_2
                .take_flow("state-replicas-000001", &alice)
                .await
                .is_ok(),
            "[{l}]"
        );
        assert!(matches!(
            replica_1.take_flow("state-replicas-000001", &alice).await,
            Err(CredentialError::FlowAlreadyUsed)
        ));

        // Another agent in the same database does not see it.
        let other = db.open("agent-b", secret(3)).await;
        replica_1
            .start_flow(flow("state-other-agent-0001"), &alice)
            .await
            .expect("start");
        assert!(
            matches!(
                other.take_flow("state-other-agent-0001", &alice).await,
                Err(CredentialError::FlowNotFound)
            ),
            "[{l}]"
        );
        for s in [after_restart, replica_1, replica_2, other] {
            s.close().await;
        }
    }
}

#[tokio::test]
async fn client_registrations_round_trip_list_replace_expire_and_delete() {
    for db in all_backends().await {
        let l = db.label();
        let store = db.open("agent-a", secret(1)).await;
        let server = "https://auth.example.com";
        assert!(
            store.get_client(server).await.expect("get").is_none(),
            "[{l}]"
        );
        let mut reg = ClientRegistration {
            server: server.into(),
            client_id: "client-1".into(),
            client_secret: Some("client-secret-1".into()),
            client_secret_expires_at: None,
            registration: SecretJson::new(
                json!({"client_id": "client-1", "registration_access_token": "rat-1"}),
            ),
        };
        store.put_client(&reg).await.expect("put");
        let got = store
            .get_client(server)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(got.client_id, "client-1", "[{l}]");
        assert_eq!(
            got.client_secret.as_ref().map(|s| s.expose_secret()),
            Some("client-secret-1")
        );
        assert_eq!(
            got.registration.expose()["registration_access_token"],
            "rat-1"
        );

        let listed = store.list_clients().await.expect("list");
        assert_eq!(listed.len(), 1, "[{l}]");
        assert_eq!(
            (listed[0].agent_id.as_str(), listed[0].server.as_str()),
            ("agent-a", server)
        );
        assert_eq!(listed[0].client_id, "client-1", "[{l}]");
        let first_created = listed[0].created_at;
        let other = db.open("agent-b", secret(2)).await;
        assert!(
            other.list_clients().await.expect("list").is_empty(),
            "[{l}]"
        );
        other.close().await;

        reg.client_id = "client-2".into();
        reg.client_secret = None;
        store.put_client(&reg).await.expect("replace");
        let listed = store.list_clients().await.expect("list");
        assert_eq!(listed.len(), 1, "[{l}] replaced, not added");
        assert_eq!(listed[0].client_id, "client-2", "[{l}]");
        assert_eq!(listed[0].created_at, first_created, "[{l}]");
        assert!(listed[0].updated_at >= first_created, "[{l}]");
        let got = store
            .get_client(server)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(got.client_id, "client-2", "[{l}]");
        assert!(got.client_secret.is_none());

        reg.client_secret_expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        store.put_client(&reg).await.expect("replace");
        assert!(
            store.get_client(server).await.expect("get").is_none(),
            "[{l}] expired secret reads absent"
        );

        assert!(store.delete_client(server).await.expect("delete"), "[{l}]");
        assert!(!store.delete_client(server).await.expect("delete"), "[{l}]");
        assert!(
            store.list_clients().await.expect("list").is_empty(),
            "[{l}]"
        );
        store.close().await;
    }
}
