//! Everything that must be refused, and how clearly: bad callbacks,
//! unverified identities, invalid arguments, missing configuration.

use super::*;

#[tokio::test]
async fn callbacks_that_cannot_complete_are_refused_clearly() {
    let rig = rig(Transport::Streamable).await;
    let unknown = CallbackParams {
        state: "AAAAAAAAAAAAAAAAAAAAAA.test-agent.AAAAAAAAAAAAAAAA".into(),
        code: Some("code".into()),
        error: None,
        error_description: None,
        iss: None,
    };
    let (ctx_back, e) = rig
        .tools
        .callback_as(unknown, &verified("alice"))
        .await
        .expect_err("unknown state");
    assert!(ctx_back.is_none());
    assert_eq!(e.code, INVALID_PARAMS);
    assert!(e.message.contains("unknown"), "{}", e.message);

    let first = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    let params = consent(&first, "alice", true).await;
    let again = || CallbackParams {
        state: params.state.clone(),
        code: params.code.clone(),
        error: None,
        error_description: None,
        iss: params.iss.clone(),
    };
    // Another user's identity: refused, and the flow stays usable.
    let (_, e) = rig
        .tools
        .callback_as(again(), &verified("bob"))
        .await
        .expect_err("bob");
    assert_eq!(e.code, UNAUTHENTICATED);
    let unverified =
        RequestIdentity::Unverified(UnverifiedIdentity::new("alice", VerifyError::MissingToken));
    let (_, e) = rig
        .tools
        .callback_as(again(), &unverified)
        .await
        .expect_err("unverified");
    assert_eq!(e.code, UNAUTHENTICATED);

    rig.tools
        .callback_as(again(), &verified("alice"))
        .await
        .expect("alice completes her flow");
    let (ctx_back, e) = rig
        .tools
        .callback_as(again(), &verified("alice"))
        .await
        .expect_err("reused state");
    assert!(ctx_back.is_none());
    assert_eq!(e.code, INVALID_PARAMS);
    assert!(e.message.contains("already used"), "{}", e.message);
}

#[tokio::test]
async fn expired_flow_is_refused() {
    let rig = rig_with(Options {
        flow_ttl: Some(Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let first = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    let params = consent(&first, "alice", true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, e) = rig
        .tools
        .callback_as(params, &verified("alice"))
        .await
        .expect_err("expired");
    assert_eq!(e.code, INVALID_PARAMS);
    assert!(e.message.contains("expired"), "{}", e.message);
}

#[tokio::test]
async fn provider_denial_ends_the_task_with_its_context() {
    let rig = rig(Transport::Streamable).await;
    let first = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    let params = consent(&first, "alice", false).await;
    let (ctx_back, e) = rig
        .tools
        .callback_as(params, &verified("alice"))
        .await
        .expect_err("denied");
    assert_eq!(ctx_back.expect("context").task_id, "t1");
    assert_eq!(e.code, INVALID_PARAMS);
    assert!(
        e.message
            .starts_with("the provider refused the authorization: access_denied"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn unverified_identity_fails_without_touching_the_store() {
    let rig = rig(Transport::Streamable).await;
    rig.store.flush_audit().await;
    let before = rig
        .store
        .events(&Filter::default(), 1000)
        .await
        .expect("events");
    let mallory =
        RequestIdentity::Unverified(UnverifiedIdentity::new("alice", VerifyError::MissingToken));
    let outcome = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &mallory)
        .await;
    let text = failure_of(&outcome);
    assert!(
        text.starts_with("tool whoami needs a verified identity; this request's identity was not verified: no identity token"),
        "{text}"
    );
    rig.store.flush_audit().await;
    let after = rig
        .store
        .events(&Filter::default(), 1000)
        .await
        .expect("events");
    assert_eq!(before, after);
    assert_eq!(rig.demo.registrations(), 0);
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_anything_is_sent() {
    let rig = rig(Transport::Streamable).await;
    let outcome = rig
        .tools
        .call_as(&ctx("t1", "echo", json!({"text": 5})), &verified("alice"))
        .await;
    let text = failure_of(&outcome);
    assert!(
        text.contains("invalid arguments for tool `echo`") && text.contains("/text"),
        "{text}"
    );
    assert_eq!(rig.demo.registrations() + rig.demo.token_requests(), 0);
}

#[tokio::test]
async fn missing_redirect_uri_names_the_variable() {
    let rig = rig_with(Options {
        redirect: false,
        ..Options::default()
    })
    .await;
    let outcome = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    assert!(
        failure_of(&outcome).contains("OAUTH_TOOL_REDIRECT_URI"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn closed_store_is_reported_unavailable() {
    let rig = rig(Transport::Streamable).await;
    rig.store.close().await;
    let outcome = rig
        .tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    assert!(
        failure_of(&outcome).starts_with("credential store unavailable"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn unknown_tool_lists_the_offered_ones() {
    let rig = rig(Transport::Streamable).await;
    let outcome = rig
        .tools
        .call_as(&ctx("t1", "nope", json!({})), &verified("alice"))
        .await;
    assert!(
        failure_of(&outcome).contains("whoami, echo, profile"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn start_names_an_open_tool_whose_tools_cannot_be_listed() {
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo");
    // Without `auth` the tools are listed at start; the demo wants a token.
    let cfgs = vec![config(&demo.mcp_url(), "streamable-http", false)];
    let err = McpTools::start(AGENT, "test/ns", cfgs, None, None, 1 << 20)
        .await
        .expect_err("listing needs a token");
    let text = format!("{err:#}");
    assert!(
        text.contains("MCP tool `demo`") && text.contains("401"),
        "{text}"
    );
}
