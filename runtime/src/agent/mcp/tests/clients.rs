//! The OAuth client amesh registers, against a demo provider that forgets
//! its registrations (as a provider with an in-memory store does when it
//! restarts), and the RFC 9207 check on the authorization response.

use amesh_credentials::EventKind;

use super::*;

fn client_id_of(outcome: &McpOutcome) -> String {
    auth_url(outcome)
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .expect("client_id in the authorization URL")
}

async fn stored_client_ids(rig: &Rig) -> Vec<String> {
    rig.store
        .list_clients()
        .await
        .expect("clients")
        .into_iter()
        .map(|c| c.client_id)
        .collect()
}

#[tokio::test]
async fn a_provider_that_forgot_its_clients_gets_a_new_registration_before_the_prompt() {
    let rig = rig(Transport::Streamable).await;
    let first = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    let old_client = client_id_of(&first);
    rig.approve(&first, "alice").await;
    assert_eq!(
        stored_client_ids(&rig).await,
        std::slice::from_ref(&old_client)
    );

    rig.demo.forget_registrations();
    // Bob's prompt would lead to the provider's "unknown client" page: amesh
    // notices before it prompts, registers again and prompts with the new client.
    let bobs = rig
        .tools
        .call_as(&ctx("t2", "whoami", json!({})), &verified("bob"))
        .await;
    let new_client = client_id_of(&bobs);
    assert_ne!(new_client, old_client);
    assert_eq!(rig.demo.registrations(), 2);
    assert_eq!(stored_client_ids(&rig).await, [new_client]);
    let resumed = rig.approve(&bobs, "bob").await;
    let done = rig.tools.call_as(&resumed, &verified("bob")).await;
    assert!(text_of(&done).contains("bob"), "{}", text_of(&done));
}

#[tokio::test]
async fn a_refresh_refused_as_invalid_client_registers_again_and_prompts() {
    let rig = rig(Transport::Streamable).await;
    let done = rig.authorize("t1", "whoami", "alice").await;
    assert!(text_of(&done).contains("alice"));
    let old = stored_client_ids(&rig).await;

    rig.demo.forget_registrations();
    rig.shorten_expiry("alice").await;
    let again = rig
        .tools
        .call_as(&ctx("t2", "whoami", json!({})), &verified("alice"))
        .await;
    let new_client = client_id_of(&again);
    assert!(!old.contains(&new_client), "{old:?} {new_client}");
    assert_eq!(rig.demo.registrations(), 2);
    let resumed = rig.approve(&again, "alice").await;
    let done = rig.tools.call_as(&resumed, &verified("alice")).await;
    assert!(text_of(&done).contains("alice"), "{}", text_of(&done));
}

#[tokio::test]
async fn a_redirect_error_naming_the_client_drops_the_registration() {
    let rig = rig(Transport::Streamable).await;
    let first = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    assert_eq!(stored_client_ids(&rig).await.len(), 1);
    let url = auth_url(&first);
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let refused = CallbackParams {
        state,
        code: None,
        error: Some("invalid_request".into()),
        error_description: Some("Client ID 'demo-client-x' not found".into()),
        iss: Some(rig.demo.base_url.as_str().trim_end_matches('/').to_owned()),
    };
    let (task, e) = rig
        .tools
        .callback_as(refused, &verified("alice"))
        .await
        .expect_err("refused");
    assert_eq!(task.expect("the task comes back").task_id, "t1");
    assert!(
        e.message.contains("no longer knows amesh's client"),
        "{}",
        e.message
    );
    assert!(stored_client_ids(&rig).await.is_empty());
}

#[tokio::test]
async fn an_authorization_response_of_another_issuer_is_refused_before_redemption_and_audited() {
    let rig = rig(Transport::Streamable).await;
    let issuer = rig.demo.base_url.as_str().trim_end_matches('/').to_owned();
    for (task, iss) in [("t1", Some("https://evil.example")), ("t2", None)] {
        let first = rig
            .tools
            .call_as(&ctx(task, "whoami", json!({})), &verified("alice"))
            .await;
        let mut params = consent(&first, "alice", true).await;
        // The demo promises `iss` and sends its own.
        assert_eq!(params.iss.as_deref(), Some(issuer.as_str()));
        params.iss = iss.map(str::to_owned);
        let (back, e) = rig
            .tools
            .callback_as(params, &verified("alice"))
            .await
            .expect_err("refused");
        assert_eq!(back.expect("the task comes back").task_id, task);
        assert_eq!(e.code, INVALID_PARAMS);
        let expected = match iss {
            Some(_) => "came back from another authorization server",
            None => "without the authorization server's name",
        };
        assert!(e.message.contains(expected), "{}", e.message);
    }
    assert_eq!(rig.demo.code_exchanges(), 0);
    let key = CredentialKey::new("alice", "demo");
    assert!(
        rig.store
            .get(&key, &who("alice"))
            .await
            .expect("store")
            .is_none()
    );
    rig.store.flush_audit().await;
    let refused: Vec<_> = rig
        .store
        .events(&Filter::default(), 100)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == EventKind::AuthorizationRefused)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    let reason = refused
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(reason.contains("https://evil.example"), "{reason}");
    assert!(reason.contains("carries no `iss`"), "{reason}");

    // The real response, with the real `iss`, still goes through.
    let done = rig.authorize("t3", "whoami", "alice").await;
    assert!(text_of(&done).contains("alice"));
}

#[tokio::test]
async fn a_grant_of_another_issuer_is_never_refreshed_here_but_authorized_again() {
    let rig = rig(Transport::Streamable).await;
    assert!(text_of(&rig.authorize("t1", "whoami", "alice").await).contains("alice"));
    // As if the MCP server had moved to another authorization server since
    // the grant was made: its refresh token must not go to the new one.
    let key = CredentialKey::new("alice", "demo");
    let mut credential = rig
        .store
        .get(&key, &who("alice"))
        .await
        .expect("store")
        .expect("stored");
    credential.issuer = Some("https://old-issuer.example".into());
    credential.expires_at = Some(SystemTime::now() + Duration::from_secs(10));
    rig.store
        .put(&key, &who("alice"), &credential)
        .await
        .expect("store");
    let again = rig
        .tools
        .call_as(&ctx("t2", "whoami", json!({})), &verified("alice"))
        .await;
    auth_url(&again);
    assert_eq!(rig.demo.refreshes(), 0);
    assert!(
        rig.store
            .get(&key, &who("alice"))
            .await
            .expect("store")
            .is_none()
    );
}
