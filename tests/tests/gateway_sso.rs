//! Single sign-on through a real OpenID Connect provider (npm
//! `oidc-provider`, started by the test; see `tests/src/oidc.rs`): the
//! gateway's code flow with PKCE, state and nonce, its session for the API
//! and a chat turn with an agent over Mosquitto, logout ending the session
//! here and, RP-initiated, at the provider; and the refusals: another
//! sign-in's state, a nonce or PKCE challenge changed on the way, a
//! replayed callback, a sign-in cancelled at the provider.
//!
//! Without node or the npm package the tests are skipped with a message,
//! except under `CI=true`, where that is a failure (scripts/test installs
//! the package).
// The setup future nests deeply (gateway + agent + provider start).
#![recursion_limit = "256"]

use std::time::Duration;

use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oidc::{self, OidcProvider, browser, location, sign_in_at_provider};
use amesh_tests::stack::Stack;
use reqwest::header::{COOKIE, ORIGIN};
use serde_json::{Value, json};

const NS: &str = "test/sso";
const USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("echo", "echo-pass")];

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The provider can run here; else skip (fail under CI).
fn prerequisites() -> bool {
    let Some(what) = oidc::missing_prerequisite() else {
        return true;
    };
    assert!(
        !ci(),
        "{what} is missing; under CI=true the SSO tests must run (scripts/test installs it)"
    );
    eprintln!("SKIPPED: {what} is missing (scripts/test installs it)");
    false
}

/// A port the gateway can listen on: the provider must know the gateway's
/// redirect URI before the gateway starts, and the gateway its issuer.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Setup {
    _mq: MosquittoBroker,
    idp: OidcProvider,
    stack: Stack,
    base: String,
}

async fn setup(with_agent: bool) -> Setup {
    setup_with(with_agent, "client_secret_basic").await
}

async fn setup_with(with_agent: bool, client_auth: &str) -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let redirect = format!("{base}/api/v1/auth/callback");
    let idp = OidcProvider::start_with(&redirect, &format!("{base}/"), client_auth)
        .await
        .expect("the OIDC provider starts");
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let agent = format!(
        r#"
  - name: echo
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: echo, broker_password: echo-pass}}
    app_config:
      namespace: {NS}
      agent_name: echo
      agent_card_publishing: {{interval_seconds: 1}}
      tools:
        - {{tool_type: builtin, tool_name: echo}}
"#,
        url = mq.url()
    );
    let yaml = format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: gw1
      port: {port}
      request_timeout_seconds: 20
      frontend_use_authorization: true
      session_secret_key: sso-test-session-key
      users:
        - {{id: robot, token: robot-token}}
      sso:
        provider: Test IdP
        issuer: "{issuer}"
        client_id: {client_id}
        client_secret: {secret}
        redirect_uri: "{redirect}"
        scope: openid email profile
        user_id_claim: email
        name_claim: name
{agent}"#,
        url = mq.url(),
        issuer = idp.issuer,
        client_id = oidc::CLIENT_ID,
        secret = oidc::CLIENT_SECRET,
        agent = if with_agent { agent.as_str() } else { "" },
    );
    let stack = Stack::start(&yaml).await.expect("the stack starts");
    if with_agent {
        stack
            .wait_for_agent_as("echo", Duration::from_secs(15), Some("robot-token"))
            .await
            .expect("the agent is listed");
    }
    Setup {
        _mq: mq,
        idp,
        stack,
        base,
    }
}

/// `GET /api/v1/auth/login` as `client`: the provider's authorization URL.
async fn start_login(client: &reqwest::Client, base: &str) -> url::Url {
    let resp = client
        .get(format!("{base}/api/v1/auth/login?return_to=/%3Fc%3D1"))
        .send()
        .await
        .expect("login starts");
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let set_cookie = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(set_cookie.starts_with("amesh_sso="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    url::Url::parse(location(&resp).unwrap()).expect("an absolute URL")
}

async fn me(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let resp = client
        .get(format!("{base}/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_sign_in_chat_and_rp_initiated_logout() {
    if !prerequisites() {
        return;
    }
    let mut s = setup(true).await;
    let base = s.base.clone();
    let (client, jar) = browser();

    // The page learns how to sign in.
    let cfg: Value = client
        .get(format!("{base}/api/v1/auth/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["sso"]["provider"], "Test IdP");
    assert_eq!(cfg["sso"]["login_url"], "/api/v1/auth/login");
    assert_eq!(cfg["token_login"], true);

    // The authorization request: code flow, PKCE S256, state and nonce.
    let authorize = start_login(&client, &base).await;
    assert!(authorize.as_str().starts_with(&s.idp.issuer), "{authorize}");
    assert_eq!(query(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&authorize, "client_id").as_deref(),
        Some(oidc::CLIENT_ID)
    );
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query(&authorize, "code_challenge").is_some());
    assert!(query(&authorize, "state").is_some());
    assert!(query(&authorize, "nonce").is_some());
    let scope = query(&authorize, "scope").unwrap_or_default();
    for s in ["openid", "email", "profile"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }

    let (callback, asked) = sign_in_at_provider(&client, authorize, "alice", "alice-pw", &base)
        .await
        .expect("signed in at the provider");
    assert!(asked, "the provider asked for a password");
    let resp = client.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp).unwrap(),
        "/?c=1",
        "back where the sign-in began"
    );

    let (status, body) = me(&client, &base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], "alice@example.com");
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["name"], "Alice Example");

    // A chat turn with the session cookie (a browser sends Origin).
    let resp = client
        .post(format!("{base}/api/v1/message:send"))
        .header(ORIGIN, &base)
        .json(&json!({"agent_name": "echo", "text": "hello from sso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "hello from sso");

    // API tokens still work for machines, and are someone else.
    let robot: Value = s
        .stack
        .http
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth("robot-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(robot["user"]["id"], "robot");

    // Logout: the session ends here (a copy of the cookie too), and the
    // answer sends the browser to the provider's end-session endpoint.
    let gateway_url = url::Url::parse(&base).unwrap();
    let cookies = reqwest::cookie::CookieStore::cookies(&*jar, &gateway_url)
        .expect("cookies")
        .to_str()
        .unwrap()
        .to_owned();
    let resp = client
        .post(format!("{base}/api/v1/auth/logout"))
        .header(ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    let logout_url = url::Url::parse(out["logout_url"].as_str().expect("logout_url")).unwrap();
    assert!(
        logout_url
            .as_str()
            .starts_with(&format!("{}/session/end", s.idp.issuer))
    );
    assert_eq!(
        query(&logout_url, "client_id").as_deref(),
        Some(oidc::CLIENT_ID)
    );
    assert_eq!(
        query(&logout_url, "post_logout_redirect_uri"),
        Some(format!("{base}/"))
    );
    assert_eq!(me(&client, &base).await.0, 401);
    let copy = reqwest::Client::new()
        .get(format!("{base}/api/v1/auth/me"))
        .header(COOKIE, cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(
        copy.status(),
        401,
        "a copy of the ended session's cookie is refused"
    );

    // Before the provider's logout, it would sign alice in without asking;
    // after it, it asks for the password again.
    let back = oidc::confirm_logout(&client, logout_url.as_str())
        .await
        .expect("the provider ends its session");
    assert_eq!(back, format!("{base}/"));
    let authorize = start_login(&client, &base).await;
    let (callback, asked) = sign_in_at_provider(&client, authorize, "bob", "bob-pw", &base)
        .await
        .unwrap();
    assert!(asked, "the provider's session ended, so it asks again");
    assert_eq!(client.get(callback).send().await.unwrap().status(), 303);
    assert_eq!(me(&client, &base).await.1["user"]["id"], "bob@example.com");

    s.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sign_ins_state_a_changed_nonce_a_replay_and_a_cancel_are_refused() {
    if !prerequisites() {
        return;
    }
    let mut s = setup(false).await;
    let base = s.base.clone();

    // Two browsers start a sign-in; A's answer is delivered to B.
    let (a, _) = browser();
    let (b, _) = browser();
    let authorize_a = start_login(&a, &base).await;
    let _ = start_login(&b, &base).await;
    let (callback_a, _) = sign_in_at_provider(&a, authorize_a, "alice", "alice-pw", &base)
        .await
        .unwrap();
    let resp = b.get(callback_a.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("state differs"), "{page}");
    assert_eq!(me(&b, &base).await.0, 401);

    // A's own browser still completes it (the refusal spent nothing)...
    let resp = a.get(callback_a.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(me(&a, &base).await.0, 200);
    // ...once: the login cookie is gone, so a replay is refused.
    let resp = a.get(callback_a).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("no sign-in was under way")
    );

    // A callback with no sign-in cookie at all.
    let (c, _) = browser();
    let resp = c
        .get(format!("{base}/api/v1/auth/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The nonce changed on the way to the provider: the ID token carries
    // the changed one, which is not this sign-in's.
    let (d, _) = browser();
    let mut authorize = start_login(&d, &base).await;
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "forged-nonce".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let (callback, _) = sign_in_at_provider(&d, authorize, "bob", "bob-pw", &base)
        .await
        .unwrap();
    let resp = d.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(page.to_lowercase().contains("nonce"), "{page}");
    assert_eq!(me(&d, &base).await.0, 401);

    // The user cancels at the provider: the page says so in words.
    let (f, _) = browser();
    let authorize = start_login(&f, &base).await;
    let callback = oidc::cancel_at_provider(&f, authorize, &base)
        .await
        .unwrap();
    let resp = f.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(
            "the provider refused the sign-in: access_denied (The user cancelled the sign-in.)"
        ),
        "{page}"
    );
    assert_eq!(me(&f, &base).await.0, 401);

    // A changed PKCE challenge: the provider refuses the code exchange.
    let (e, _) = browser();
    let mut authorize = start_login(&e, &base).await;
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code_challenge" {
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let (callback, _) = sign_in_at_provider(&e, authorize, "bob", "bob-pw", &base)
        .await
        .unwrap();
    let resp = e.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(page.contains("did not accept the code"), "{page}");
    assert!(!page.contains(oidc::CLIENT_SECRET));
    assert_eq!(me(&e, &base).await.0, 401);

    s.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_takes_the_client_secret_only_in_the_body() {
    if !prerequisites() {
        return;
    }
    let mut s = setup_with(false, "client_secret_post").await;
    let base = s.base.clone();
    let (client, _) = browser();
    let authorize = start_login(&client, &base).await;
    let (callback, _) = sign_in_at_provider(&client, authorize, "bob", "bob-pw", &base)
        .await
        .unwrap();
    let resp = client.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    assert_eq!(me(&client, &base).await.1["user"]["id"], "bob@example.com");
    s.stack.stop().await;
}
