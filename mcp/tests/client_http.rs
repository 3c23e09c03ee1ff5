//! The MCP client against real HTTP servers on loopback: both transports,
//! the lifecycle, paging, auth failures, session expiry and the pool.

mod client_support;

use std::sync::Arc;

use amesh_mcp::client::{McpClientPool, McpError, with_call_headers};
use amesh_mcp::schema::ToolSchema;
use client_support::{Answer, Fake, GOOD, NARROW, Options, config};
use serde_json::json;

fn pool() -> McpClientPool {
    McpClientPool::new().unwrap()
}

/// initialize + initialized + paged tools/list + tools/call, asserting
/// what the server saw on each request.
async fn round_trip(fake: &Fake, transport: &str) {
    let cfg = config(fake, transport, json!({}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2025-06-18");
    assert_eq!(session.server_info().server_info["name"], "fake");

    let tools = session.list_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "fail", "slow", "alpha", "beta"]);

    let result = session
        .call_tool("echo", json!({"q": "hello"}))
        .await
        .unwrap();
    assert!(!result.is_error);
    assert_eq!(result.structured_content, Some(json!({"q": "hello"})));
    assert_eq!(result.text(), r#"{"q":"hello"}"#);

    let failed = session.call_tool("fail", json!({})).await.unwrap();
    assert!(failed.is_error);
    assert!(matches!(
        failed.into_result("fail"),
        Err(McpError::ToolError { message, .. }) if message == "it broke"
    ));

    // A Streamable HTTP session first asks whether the server speaks
    // 2026-07-28 (`server/discover`); this one does not.
    let methods: Vec<_> = fake
        .seen()
        .iter()
        .filter_map(|s| s.method.clone())
        .filter(|m| m != "server/discover")
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "tools/list",
            "tools/call",
            "tools/call"
        ]
    );
    for seen in fake.seen() {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(format!("Bearer {GOOD}").as_str()),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn streamable_json_round_trip_echoes_session_id_and_protocol_version() {
    let fake = Fake::start(Options::default()).await;
    round_trip(&fake, "streamable-http").await;
    let seen = fake.seen();
    assert_eq!(seen[0].method.as_deref(), Some("server/discover"));
    assert_eq!(seen[0].protocol_version.as_deref(), Some("2026-07-28"));
    let seen = &seen[1..];
    assert_eq!(seen[0].method.as_deref(), Some("initialize"));
    assert_eq!(seen[0].session_id, None, "initialize carries no session id");
    assert_eq!(seen[0].protocol_version, None);
    for later in &seen[1..] {
        assert_eq!(later.session_id.as_deref(), Some("session-1"), "{later:?}");
        assert_eq!(later.protocol_version.as_deref(), Some("2025-06-18"));
    }
}

#[tokio::test]
async fn streamable_event_stream_answers_are_read() {
    let fake = Fake::start(Options {
        answer: Answer::EventStream,
        ..Options::default()
    })
    .await;
    round_trip(&fake, "streamable-http").await;
}

#[tokio::test]
async fn legacy_sse_round_trip_posts_to_the_announced_endpoint() {
    let fake = Fake::start(Options::default()).await;
    round_trip(&fake, "sse").await;
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/sse");
    assert!(seen[1..].iter().all(|s| s.path == "/messages"));
}

#[tokio::test]
async fn older_protocol_version_answered_by_the_server_is_used() {
    let fake = Fake::start(Options {
        protocol_version: "2025-03-26",
        ..Options::default()
    })
    .await;
    let cfg = config(&fake, "streamable-http", json!({}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    session.list_tools().await.unwrap();
    assert_eq!(session.protocol_version(), "2025-03-26");
    let last = fake.seen().pop().unwrap();
    assert_eq!(last.protocol_version.as_deref(), Some("2025-03-26"));
}

#[tokio::test]
async fn expired_streamable_session_is_reinitialized_once_and_the_call_retried() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "streamable-http", json!({}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    assert_eq!(session.session_id().as_deref(), Some("session-1"));

    fake.expire_sessions();
    let result = session.call_tool("echo", json!({"n": 1})).await.unwrap();
    assert_eq!(result.structured_content, Some(json!({"n": 1})));
    assert_eq!(session.session_id().as_deref(), Some("session-2"));
    assert_eq!(fake.seen_method("initialize").len(), 2);
    let calls = fake.seen_method("tools/call");
    assert_eq!(calls.len(), 2, "one refused with 404, one retried");
    assert_eq!(calls[1].session_id.as_deref(), Some("session-2"));

    // A server that forgets every session: one retry, then the error.
    fake.expire_always();
    let err = session.call_tool("echo", json!({})).await.unwrap_err();
    assert!(matches!(err, McpError::SessionExpired { .. }), "{err}");
    assert_eq!(fake.seen_method("initialize").len(), 3);
}

#[tokio::test]
async fn closed_legacy_stream_is_reopened_before_the_next_call() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "sse", json!({}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    fake.drop_legacy_streams();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let result = session.call_tool("echo", json!({"n": 2})).await.unwrap();
    assert_eq!(result.structured_content, Some(json!({"n": 2})));
    let streams = fake.seen().iter().filter(|s| s.path == "/sse").count();
    assert_eq!(streams, 2);
    assert_eq!(
        fake.seen_method("tools/call").len(),
        1,
        "nothing sent on the dead stream"
    );
}

#[tokio::test]
async fn unauthorized_carries_the_www_authenticate_challenge() {
    let fake = Fake::start(Options::default()).await;
    for transport in ["streamable-http", "sse"] {
        let cfg = config(&fake, transport, json!({}));
        let err = pool()
            .session(&cfg, "alice", Some(&"stale-token-value".into()))
            .await
            .unwrap_err();
        let McpError::Unauthorized {
            www_authenticate,
            status,
            ..
        } = &err
        else {
            panic!("{transport}: expected Unauthorized, got {err:?}");
        };
        assert_eq!(*status, 401);
        let expected = format!(
            r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource""#,
            fake.base
        );
        assert_eq!(www_authenticate.as_deref(), Some(expected.as_str()));
        assert!(err.needs_authorization());
        assert!(!err.to_string().contains("stale-token-value"));
        assert!(!format!("{err:?}").contains("stale-token-value"));
    }
    // No token at all is a 401 too.
    let cfg = config(&fake, "streamable-http", json!({}));
    let err = pool().session(&cfg, "alice", None).await.unwrap_err();
    assert!(err.needs_authorization(), "{err}");
}

#[tokio::test]
async fn unauthorized_without_challenge_header_is_still_unauthorized() {
    let fake = Fake::start(Options {
        bare_401: true,
        ..Options::default()
    })
    .await;
    let cfg = config(&fake, "streamable-http", json!({}));
    let err = pool()
        .session(&cfg, "alice", Some(&"x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            McpError::Unauthorized {
                www_authenticate: None,
                status: 401,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn forbidden_insufficient_scope_is_parsed() {
    let fake = Fake::start(Options::default()).await;
    for transport in ["streamable-http", "sse"] {
        let cfg = config(&fake, transport, json!({}));
        let session = pool()
            .session(&cfg, "bob", Some(&NARROW.into()))
            .await
            .unwrap();
        let err = session.call_tool("echo", json!({})).await.unwrap_err();
        let McpError::Forbidden {
            error,
            scope,
            www_authenticate,
            ..
        } = &err
        else {
            panic!("{transport}: expected Forbidden, got {err:?}");
        };
        assert_eq!(error.as_deref(), Some("insufficient_scope"));
        assert_eq!(scope.as_deref(), Some("tools:call"));
        assert!(www_authenticate.as_deref().unwrap().starts_with("Bearer "));
    }
}

#[tokio::test]
async fn json_rpc_errors_and_timeouts_are_reported() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "streamable-http", json!({"timeout": 0.5}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    let err = session.call_tool("nope", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, McpError::Rpc { code: -32602, method, .. } if method == "tools/call"),
        "{err:?}"
    );
    let err = session.call_tool("slow", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, McpError::Timeout { method, .. } if method == "tools/call"),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_anything_is_sent() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "sse", json!({}));
    let session = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    let schema = json!({"type": "object", "properties": {"q": {"type": "string"}},
                        "required": ["q"]});
    let tool = ToolSchema::compile("x_echo", "echo", &schema).unwrap();
    let err = session.call(&tool, json!({"q": 5})).await.unwrap_err();
    let McpError::InvalidArguments(err) = err else {
        panic!("expected InvalidArguments, got {err:?}");
    };
    assert_eq!(err.violations[0].pointer, "/q");
    assert!(fake.seen_method("tools/call").is_empty());
    let ok = session.call(&tool, json!({"q": "hi"})).await.unwrap();
    assert_eq!(ok.structured_content, Some(json!({"q": "hi"})));
}

#[tokio::test]
async fn pool_reuses_a_session_per_tool_and_user_and_separates_users() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "streamable-http", json!({"id": "fake"}));
    let pool = pool();
    let alice = pool
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    let again = pool
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&alice, &again));
    let bob = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    assert!(!Arc::ptr_eq(&alice, &bob));
    assert_ne!(alice.session_id(), bob.session_id());
    assert_eq!(pool.session_count(), 2);

    // A new token (refresh) means a new session for that user only.
    let refreshed = pool
        .session(&cfg, "alice", Some(&NARROW.into()))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&alice, &refreshed));
    let bob_again = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    assert!(Arc::ptr_eq(&bob, &bob_again));
    assert_eq!(fake.seen_method("initialize").len(), 3);

    // Concurrent first calls for one user open one session.
    let good = GOOD.into();
    let carol = futures::future::join_all((0..4).map(|_| pool.session(&cfg, "carol", Some(&good))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert!(carol.iter().all(|s| Arc::ptr_eq(s, &carol[0])));
    assert_eq!(fake.seen_method("initialize").len(), 4);

    pool.invalidate("fake", "bob").await;
    let bob_new = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    assert!(!Arc::ptr_eq(&bob, &bob_new));
}

#[tokio::test]
async fn startup_discovery_lists_and_filters_tools_without_auth() {
    let fake = Fake::start(Options {
        require_token: false,
        ..Options::default()
    })
    .await;
    let cfg = config(
        &fake,
        "streamable-http",
        json!({"tool_name_prefix": "f_", "deny_list": ["slow", "f_fail"]}),
    );
    let tools = pool().startup_tools(&cfg).await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.exposed_name.as_str()).collect();
    assert_eq!(names, ["f_echo", "f_alpha", "f_beta"]);
    assert!(fake.seen().iter().all(|s| s.authorization.is_none()));
}

#[tokio::test]
async fn endpoint_on_another_origin_is_refused() {
    let fake = Fake::start(Options {
        endpoint: "http://127.0.0.2:9/messages?session_id={sid}".into(),
        ..Options::default()
    })
    .await;
    let cfg = config(&fake, "sse", json!({}));
    let err = pool()
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, McpError::Protocol { message, .. } if message.contains("another origin")),
        "{err:?}"
    );
}

#[tokio::test]
async fn redirects_are_followed_within_the_origin_only() {
    let fake = Fake::start(Options::default()).await;
    let at = |path: &str| -> amesh_mcp::tool_config::McpToolConfig {
        serde_json::from_value(json!({"connection_params": {
            "type": "streamable-http", "url": format!("{}{path}", fake.base)}}))
        .unwrap()
    };
    let session = pool()
        .session(&at("/moved"), "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    session.list_tools().await.unwrap();
    assert_eq!(
        fake.seen_method("initialize")[0].authorization.as_deref(),
        Some(format!("Bearer {GOOD}").as_str())
    );
    let err = pool()
        .session(&at("/moved-away"), "alice", Some(&GOOD.into()))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Http { status: 307, .. }), "{err:?}");
}

#[tokio::test]
async fn call_headers_reach_the_server_on_every_request_of_the_call_only() {
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for transport in ["streamable-http", "sse"] {
        let fake = Fake::start(Options::default()).await;
        let cfg = config(&fake, transport, json!({}));
        let pool = pool();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("traceparent", TP.parse().unwrap());
        // A call header cannot replace the user's bearer token.
        headers.insert("authorization", "Bearer stolen".parse().unwrap());
        with_call_headers(headers, async {
            let session = pool.session(&cfg, "alice", Some(&GOOD.into())).await?;
            session.call_tool("echo", json!({"q": "x"})).await
        })
        .await
        .unwrap();
        // Outside the scope: the same pooled session, no header.
        let session = pool
            .session(&cfg, "alice", Some(&GOOD.into()))
            .await
            .unwrap();
        session.call_tool("echo", json!({"q": "y"})).await.unwrap();

        let posts: Vec<_> = fake
            .seen()
            .into_iter()
            .filter(|s| s.method.is_some())
            .collect();
        let calls = fake.seen_method("tools/call");
        assert_eq!(calls.len(), 2, "{transport}");
        assert_eq!(calls[0].traceparent.as_deref(), Some(TP), "{transport}");
        assert_eq!(calls[1].traceparent, None, "{transport}");
        // The handshake (a `server/discover` probe first on Streamable
        // HTTP, then `initialize` with this older server) is part of the call.
        let init = posts
            .iter()
            .position(|s| s.method.as_deref() == Some("initialize"))
            .expect("initialize");
        for seen in &posts[..=init] {
            assert_eq!(
                seen.traceparent.as_deref(),
                Some(TP),
                "{transport}: {:?}",
                seen.method
            );
        }
        for seen in fake.seen() {
            assert_eq!(
                seen.authorization.as_deref(),
                Some(format!("Bearer {GOOD}").as_str()),
                "{transport}: {seen:?}"
            );
        }
    }
}
