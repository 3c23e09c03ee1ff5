//! The paths a user walks: first authorization, reuse, refresh, a grant
//! revoked at the provider, and a scope step-up.

use super::*;

#[tokio::test]
async fn each_user_authorizes_once_and_sees_their_own_identity() {
    for transport in BOTH {
        let rig = rig(transport).await;
        assert_eq!(rig.tools.names().len(), 3);
        assert!(rig.tools.has("whoami"));

        let first = rig
            .tools
            .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
            .await;
        let url = auth_url(&first);
        assert_eq!(url.path(), "/authorize", "{transport:?}");
        assert_eq!(url.host_str(), rig.demo.base_url.host_str());
        let McpOutcome::AuthRequired(prompt) = &first else {
            unreachable!()
        };
        let (tool_id, message) = (&prompt.tool_id, &prompt.message);
        assert_eq!(tool_id, "demo");
        assert!(
            message.contains("whoami") && message.contains("127.0.0.1"),
            "{message}"
        );
        assert!(!format!("{first:?}").contains("state="), "{first:?}");

        let params = consent(&first, "alice", true).await;
        let resumed = rig
            .tools
            .callback_as(params, &verified("alice"))
            .await
            .expect("callback");
        assert_eq!(
            (resumed.task_id.as_str(), resumed.tool.as_str()),
            ("t1", "whoami")
        );
        let done = rig.tools.call_as(&resumed, &verified("alice")).await;
        assert_eq!(text_of(&done), "You are alice", "{transport:?}");

        // A later request reuses the credential: no new authorization.
        let echo = rig
            .tools
            .call_as(
                &ctx("t2", "echo", json!({"text": "hi"})),
                &verified("alice"),
            )
            .await;
        assert_eq!(text_of(&echo), "alice said: hi");
        assert_eq!(rig.demo.code_exchanges(), 1);

        // Bob authorizes separately and is Bob.
        let bob = rig.authorize("t3", "whoami", "bob").await;
        assert_eq!(text_of(&bob), "You are bob", "{transport:?}");
        assert_eq!(rig.demo.code_exchanges(), 2);
        assert_eq!(rig.demo.registrations(), 1, "one client, reused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_near_expiry_refresh_once() {
    for transport in BOTH {
        let rig = rig(transport).await;
        assert_eq!(
            text_of(&rig.authorize("t0", "whoami", "alice").await),
            "You are alice"
        );
        rig.shorten_expiry("alice").await;
        rig.demo.expire_access_tokens();
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let tools = rig.tools.clone();
                tokio::spawn(async move {
                    let task = format!("c{i}");
                    tools
                        .call_as(&ctx(&task, "whoami", json!({})), &verified("alice"))
                        .await
                })
            })
            .collect();
        for call in calls {
            let outcome = call.await.expect("call task");
            assert_eq!(text_of(&outcome), "You are alice", "{transport:?}");
        }
        assert_eq!(rig.demo.refreshes(), 1, "{transport:?}");
        let stored = rig
            .store
            .get(&CredentialKey::new("alice", "demo"), &who("alice"))
            .await
            .expect("store")
            .expect("credential");
        assert!(!super::super::refresh::near_expiry(&stored));
    }
}

#[tokio::test]
async fn token_revoked_at_the_provider_asks_again() {
    let rig = rig(Transport::Streamable).await;
    rig.authorize("t1", "whoami", "alice").await;
    rig.demo.revoke_user("alice");
    let again = rig
        .tools
        .call_as(&ctx("t2", "whoami", json!({})), &verified("alice"))
        .await;
    auth_url(&again);
    let key = CredentialKey::new("alice", "demo");
    let stored = rig.store.get(&key, &who("alice")).await.expect("store");
    assert!(stored.is_none(), "the 401 marks the credential deleted");
    let params = consent(&again, "alice", true).await;
    let resumed = rig
        .tools
        .callback_as(params, &verified("alice"))
        .await
        .expect("callback");
    let done = rig.tools.call_as(&resumed, &verified("alice")).await;
    assert_eq!(text_of(&done), "You are alice");
}

#[tokio::test]
async fn refused_refresh_asks_again() {
    let rig = rig(Transport::Streamable).await;
    rig.authorize("t1", "whoami", "alice").await;
    rig.demo.revoke_user("alice");
    rig.shorten_expiry("alice").await;
    let again = rig
        .tools
        .call_as(&ctx("t2", "whoami", json!({})), &verified("alice"))
        .await;
    auth_url(&again);
    assert_eq!(rig.demo.refreshes(), 0);
    let key = CredentialKey::new("alice", "demo");
    assert!(
        rig.store
            .get(&key, &who("alice"))
            .await
            .expect("store")
            .is_none()
    );
}

#[tokio::test]
async fn insufficient_scope_steps_up_once() {
    for transport in BOTH {
        let rig = rig(transport).await;
        rig.authorize("t0", "whoami", "alice").await;
        let first = rig
            .tools
            .call_as(&ctx("t1", "profile", json!({})), &verified("alice"))
            .await;
        let url = auth_url(&first);
        let scope = url
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .expect("scope");
        let asked: Vec<&str> = scope.split(' ').collect();
        assert!(
            asked.contains(&"profile") && asked.contains(&"mcp"),
            "{scope}"
        );
        let params = consent(&first, "alice", true).await;
        let resumed = rig
            .tools
            .callback_as(params, &verified("alice"))
            .await
            .expect("callback");
        let McpOutcome::Done(parts) = rig.tools.call_as(&resumed, &verified("alice")).await else {
            panic!("profile after step-up")
        };
        assert!(
            parts
                .iter()
                .any(|p| matches!(p, Part::Data { data, .. } if data["name"] == "alice")),
            "{parts:?}"
        );
    }
}

#[tokio::test]
async fn a_second_insufficient_scope_fails_instead_of_asking_again() {
    let rig = rig(Transport::Streamable).await;
    let server = rig.tools.inner.servers[0].clone();
    let c = McpCall {
        tool: "profile".into(),
        arguments: json!({}),
        stepped_up: false,
        retry: None,
    };
    let alice = who("alice");
    let granted = ["mcp".to_owned(), "profile".to_owned()];
    let held = rig
        .tools
        .step_up(&server, &c, &alice, &granted, Some("profile"), false)
        .await;
    assert!(
        failure_of(&held).contains("needs scope profile"),
        "{held:?}"
    );
    let again = rig
        .tools
        .step_up(&server, &c, &alice, &granted[..1], Some("profile"), true)
        .await;
    assert!(
        failure_of(&again).contains("still lacks access"),
        "{again:?}"
    );
}
