//! The gateway as a browser meets it: login throttling, the session
//! cookie's flags and its revocation at logout, the Origin check of
//! state-changing requests (CSRF) and, in development mode, the Host check
//! (DNS rebinding). One gateway on the in-process dev bus per test.

use std::net::IpAddr;
use std::time::Duration;

use amesh_tests::stack::Stack;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A gateway with users alice and bob on `host`, `extra` appended to its
/// `app_config`.
async fn gateway(host: &str, auth: bool, extra: &str) -> Stack {
    let yaml = format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{dev_mode: true}}
    app_config:
      namespace: test/web
      gateway_id: gw1
      host: "{host}"
      port: 0
      frontend_use_authorization: {auth}
      session_secret_key: web-test-key
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
{extra}"#
    );
    Stack::start(&yaml).await.expect("gateway starts")
}

/// The gateway's base URL on loopback (also when it listens on 0.0.0.0).
fn base(stack: &Stack) -> String {
    let port = stack.running.as_ref().expect("running").gateway_addrs()[0].port();
    format!("http://127.0.0.1:{port}")
}

/// A client whose connections leave from `ip` (any address of 127/8 works).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

/// `amesh_session=...` from a login answer, and the whole Set-Cookie line.
async fn session(http: &reqwest::Client, base: &str, token: &str) -> (String, String) {
    let resp = login(http, base, token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let line = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    (line.split(';').next().unwrap().to_string(), line)
}

async fn me(http: &reqwest::Client, base: &str, cookie: &str) -> StatusCode {
    http.get(format!("{base}/api/v1/auth/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failed_logins_from_one_address_back_off_exponentially() {
    let mut stack = gateway("127.0.0.1", true, "").await;
    let base = base(&stack);
    let attacker = client_from("127.0.0.1");
    for i in 0..5 {
        let resp = login(&attacker, &base, "guess").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let blocked = login(&attacker, &base, "guess").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&blocked);
    assert_eq!(wait, 1);
    let body: Value = blocked.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("too many failed"),
        "{body}"
    );
    // While blocked, not even a right token is looked at, nor a bearer one.
    assert_eq!(
        login(&attacker, &base, "alice-token").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let bearer = attacker
        .get(format!("{base}/api/v1/agents"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    let other = client_from("127.0.0.2");
    assert_eq!(
        login(&other, &base, "bob-token").await.status(),
        StatusCode::OK
    );
    // After the wait one more guess is checked, and the next wait doubles.
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
    assert_eq!(
        login(&attacker, &base, "guess").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = login(&attacker, &base, "guess").await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&again), 2);
    stack.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_secure_unless_served_on_loopback() {
    let http = reqwest::Client::new();
    let mut local = gateway("127.0.0.1", true, "").await;
    let (_, line) = session(&http, &base(&local), "alice-token").await;
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    assert!(!line.contains("Secure"), "loopback over http: {line}");
    local.stop().await;

    let mut public = gateway("0.0.0.0", true, "").await;
    let (_, line) = session(&http, &base(&public), "alice-token").await;
    assert!(line.contains("; Secure"), "{line}");
    public.stop().await;

    // Behind a TLS proxy on the same machine: the public origin says https.
    let mut proxied = gateway(
        "127.0.0.1",
        true,
        "      allowed_origins: [\"https://chat.example.com\"]\n",
    )
    .await;
    let (_, line) = session(&http, &base(&proxied), "alice-token").await;
    assert!(line.contains("; Secure"), "{line}");
    proxied.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session_on_the_server() {
    let mut stack = gateway("127.0.0.1", true, "").await;
    let base = base(&stack);
    let http = reqwest::Client::new();
    let (cookie, _) = session(&http, &base, "alice-token").await;
    let (other_device, _) = session(&http, &base, "alice-token").await;
    assert_eq!(me(&http, &base, &cookie).await, StatusCode::OK);
    let out = http
        .post(format!("{base}/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    // A copy of the cookie kept by anyone stops working...
    assert_eq!(me(&http, &base, &cookie).await, StatusCode::UNAUTHORIZED);
    // ... but only that session ended.
    assert_eq!(me(&http, &base, &other_device).await, StatusCode::OK);
    stack.stop().await;
}

#[tokio::test]
async fn cookie_requests_that_change_state_need_the_gateways_own_origin() {
    let mut stack = gateway(
        "127.0.0.1",
        true,
        "      allowed_origins: [\"https://chat.example.com\"]\n",
    )
    .await;
    let base = base(&stack);
    let http = reqwest::Client::new();
    let (cookie, _) = session(&http, &base, "alice-token").await;
    let send = |origin: Option<&str>, referer: Option<&str>| {
        let mut req = http
            .post(format!("{base}/api/v1/message:send"))
            .header("cookie", &cookie)
            .json(&json!({"agent_name": "nobody", "text": "hi"}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        req.send()
    };
    for (origin, referer) in [
        (Some("http://evil.example"), None),
        (Some("null"), None),
        (None, Some("http://evil.example/page")),
        (None, None),
    ] {
        let resp = send(origin, referer).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{origin:?} {referer:?}"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("origin"),
            "{origin:?} {referer:?}: {body}"
        );
    }
    // The gateway's own origin, by Origin or Referer, and a configured one
    // get through to the handler (which knows no agent `nobody`).
    let own_page = format!("{base}/");
    for (origin, referer) in [
        (Some(base.as_str()), None),
        (None, Some(own_page.as_str())),
        (Some("https://chat.example.com"), None),
    ] {
        let resp = send(origin, referer).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{origin:?} {referer:?}"
        );
    }
    // A bearer-token call without a cookie is not a browser's ambient
    // credential: no Origin needed.
    let api = http
        .post(format!("{base}/api/v1/message:send"))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "nobody", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    stack.stop().await;
}

#[tokio::test]
async fn dev_gateway_answers_only_its_own_host_names() {
    let mut stack = gateway(
        "127.0.0.1",
        false,
        "      allowed_hosts: [amesh.internal]\n",
    )
    .await;
    let base = base(&stack);
    let port = base.rsplit(':').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let agents = |host: String| {
        http.get(format!("{base}/api/v1/agents"))
            .header("host", host)
            .send()
    };
    // A page of another site whose name was re-pointed at 127.0.0.1.
    let rebound = agents(format!("evil.example:{port}")).await.unwrap();
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: Value = rebound.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("allowed_hosts"),
        "{body}"
    );
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("amesh.internal:{port}"),
        "AMESH.internal".to_string(),
    ] {
        let resp = agents(host.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{host}");
    }
    // A state-changing request from another site's page is refused too.
    let post = http
        .post(format!("{base}/api/v1/message:send"))
        .header("origin", "http://evil.example")
        .json(&json!({"agent_name": "nobody", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::FORBIDDEN);
    stack.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_the_page_no_inline_code() {
    let mut stack = gateway("127.0.0.1", true, "").await;
    let base = base(&stack);
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/assets/app.js",
        "/assets/app.css",
        "/api/v1/agents",
        "/nope",
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let js = http
        .get(format!("{base}/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let page = http.get(format!("{base}/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\">"));
    assert!(!html.contains("<script>") && !html.contains("<style"));
    stack.stop().await;
}

#[tokio::test]
async fn conversations_belong_to_their_user_and_changes_need_the_own_origin() {
    let mut stack = gateway("127.0.0.1", true, "").await;
    let base = base(&stack);
    let http = reqwest::Client::new();
    let (alice, _) = session(&http, &base, "alice-token").await;
    let (bob, _) = session(&http, &base, "bob-token").await;
    let own = base.clone();
    let call = |method: reqwest::Method, path: String, cookie: &str, origin: &str| {
        http.request(method, format!("{base}{path}"))
            .header("cookie", cookie.to_string())
            .header("origin", origin.to_string())
    };
    let created: Value = call(
        reqwest::Method::POST,
        "/api/v1/conversations".into(),
        &alice,
        &own,
    )
    .json(&json!({"agent": "assistant"}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/conversations/{id}");
    // Bob neither sees nor changes it.
    let list: Value = call(
        reqwest::Method::GET,
        "/api/v1/conversations".into(),
        &bob,
        &own,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["conversations"], json!([]));
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = call(method.clone(), path.clone(), &bob, &own)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method}");
    }
    let resp = call(reqwest::Method::PATCH, path.clone(), &bob, &own)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Another site cannot rename or delete it with alice's cookie.
    for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let resp = call(method.clone(), path.clone(), &alice, "http://evil.example")
            .json(&json!({"title": "pwned"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method}");
    }
    // Alice can.
    let resp = call(reqwest::Method::PATCH, path.clone(), &alice, &own)
        .json(&json!({"title": "Plans"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got: Value = call(reqwest::Method::GET, path.clone(), &alice, &own)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], "Plans");
    let resp = call(reqwest::Method::DELETE, path.clone(), &alice, &own)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(reqwest::Method::GET, path, &alice, &own)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    stack.stop().await;
}
