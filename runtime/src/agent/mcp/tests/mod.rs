//! End to end against the real demo provider (an OAuth server and MCP
//! server on loopback) and a memory credential store: the whole user
//! journey of a tool behind OAuth, on both MCP transports (`journey.rs`),
//! and every way a call or a callback is refused (`refusals.rs`). This
//! file holds the rig both use.

mod clients;
mod disclosure;
mod journey;
mod refusals;

use std::time::{Duration, SystemTime};

use amesh_credentials::{
    AgentSecret, CredentialKey, CredentialStore, Filter, StoreBackend, StoreConfig,
};
use amesh_demo::{DemoHandle, DemoOptions, DemoProvider, consent_as};
use amesh_mcp::tool_config::McpToolConfig;
use amesh_trust::{
    RequestIdentity, TrustDisabled, UnverifiedIdentity, VerifiedIdentity, VerifyError,
};
use serde_json::{Value, json};
use url::Url;

use super::{McpCall, McpOutcome, McpTools};
use crate::a2a::Part;
use crate::a2a::jsonrpc::{INVALID_PARAMS, UNAUTHENTICATED};
use crate::a2a::oauth_callback::CallbackParams;

const AGENT: &str = "test-agent";
const REDIRECT: &str = "http://localhost:8000/api/v1/auth/tool/callback";

#[derive(Clone, Copy, Debug)]
enum Transport {
    Streamable,
    Sse,
}

const BOTH: [Transport; 2] = [Transport::Streamable, Transport::Sse];

struct Rig {
    demo: DemoHandle,
    store: CredentialStore,
    tools: McpTools,
}

struct Options {
    transport: Transport,
    flow_ttl: Option<Duration>,
    redirect: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            transport: Transport::Streamable,
            flow_ttl: None,
            redirect: true,
        }
    }
}

fn config(url: &Url, transport: &str, auth: bool) -> McpToolConfig {
    let mut cfg = json!({
        "id": "demo",
        "connection_params": {"type": transport, "url": url.as_str(), "timeout": 10},
    });
    if auth {
        cfg["auth"] = json!({"type": "oauth2", "scopes": ["mcp"]});
        let empty = json!({"type": "object", "properties": {}});
        cfg["manifest"] = json!([
            {"name": "whoami", "description": "Who am I", "inputSchema": empty},
            {"name": "echo", "description": "Repeats text", "inputSchema": {
                "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
            {"name": "profile", "description": "Profile", "inputSchema": empty},
        ]);
    }
    serde_json::from_value(cfg).expect("tool config")
}

async fn rig_with(options: Options) -> Rig {
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    let (url, kind) = match options.transport {
        Transport::Streamable => (demo.mcp_url(), "streamable-http"),
        Transport::Sse => (demo.sse_url(), "sse"),
    };
    let secret = AgentSecret::generate().expect("agent secret");
    let mut store_cfg = StoreConfig::new(StoreBackend::Memory, AGENT, secret);
    if let Some(ttl) = options.flow_ttl {
        store_cfg.flow_ttl = ttl;
    }
    let store = CredentialStore::open(store_cfg).await.expect("store");
    let redirect = options
        .redirect
        .then(|| Url::parse(REDIRECT).expect("redirect"));
    let cfgs = vec![config(&url, kind, true)];
    let tools = McpTools::start(
        AGENT,
        "test/ns",
        cfgs,
        Some(store.clone()),
        redirect,
        1 << 20,
    )
    .await
    .expect("mcp tools");
    Rig { demo, store, tools }
}

async fn rig(transport: Transport) -> Rig {
    rig_with(Options {
        transport,
        ..Options::default()
    })
    .await
}

fn who(user: &str) -> VerifiedIdentity {
    VerifiedIdentity::trust_disabled(TrustDisabled::by_configuration(), user, None, None)
}

fn verified(user: &str) -> RequestIdentity {
    RequestIdentity::Verified(who(user))
}

/// A call of a task, as these tests pass it around: it is also the
/// "paused task" stored with a flow, so the callback hands it back.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct TestCall {
    task_id: String,
    tool: String,
    arguments: Value,
    #[serde(default)]
    stepped_up: bool,
}

fn ctx(task: &str, tool: &str, arguments: Value) -> TestCall {
    TestCall {
        task_id: task.into(),
        tool: tool.into(),
        arguments,
        stepped_up: false,
    }
}

/// The pause owner's part, played by the tests: record the flow with the
/// call as its state; take the call back (with the step-up mark) from the
/// callback.
trait PauseForTests {
    async fn call_as(&self, call: &TestCall, who: &RequestIdentity) -> McpOutcome;
    async fn callback_as(
        &self,
        params: CallbackParams,
        who: &RequestIdentity,
    ) -> Result<TestCall, (Option<TestCall>, crate::a2a::jsonrpc::RpcError)>;
}

impl PauseForTests for McpTools {
    async fn call_as(&self, call: &TestCall, who: &RequestIdentity) -> McpOutcome {
        let mcp_call = McpCall {
            tool: call.tool.clone(),
            arguments: call.arguments.clone(),
            stepped_up: call.stepped_up,
            retry: None,
        };
        let outcome = self.call(&mcp_call, who).await;
        if let (McpOutcome::AuthRequired(prompt), RequestIdentity::Verified(v)) = (&outcome, who) {
            let state = serde_json::to_value(call).expect("call as json");
            self.record_flow(prompt, &call.task_id, v, state)
                .await
                .expect("flow recorded");
        }
        outcome
    }

    async fn callback_as(
        &self,
        params: CallbackParams,
        who: &RequestIdentity,
    ) -> Result<TestCall, (Option<TestCall>, crate::a2a::jsonrpc::RpcError)> {
        let read = |v: Value| serde_json::from_value::<TestCall>(v).expect("stored call");
        match self.on_callback(params, who).await {
            Ok(done) => {
                let mut call = read(done.task);
                call.stepped_up = done.step_up;
                Ok(call)
            }
            Err((task, e)) => Err((task.map(read), e)),
        }
    }
}

fn auth_url(outcome: &McpOutcome) -> Url {
    match outcome {
        McpOutcome::AuthRequired(prompt) => {
            Url::parse(&prompt.authorization_url).expect("authorization url")
        }
        other => panic!("expected AuthRequired, got {other:?}"),
    }
}

fn params_of(callback: &Url) -> CallbackParams {
    let get = |key: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    CallbackParams {
        state: get("state").expect("callback has a state"),
        code: get("code"),
        error: get("error"),
        error_description: get("error_description"),
        iss: get("iss"),
    }
}

/// Consents at the demo as `user` to the flow `outcome` started.
async fn consent(outcome: &McpOutcome, user: &str, approve: bool) -> CallbackParams {
    let callback = consent_as(&auth_url(outcome), user, approve)
        .await
        .expect("consent");
    assert!(callback.as_str().starts_with(REDIRECT), "{callback}");
    params_of(&callback)
}

fn text_of(outcome: &McpOutcome) -> String {
    match outcome {
        McpOutcome::Done(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected Done, got {other:?}"),
    }
}

fn failure_of(outcome: &McpOutcome) -> String {
    match outcome {
        McpOutcome::Failed(why) => why.to_string(),
        other => panic!("expected Failed, got {other:?}"),
    }
}

impl Rig {
    /// Runs `tool` for `user` through a first authorization; returns what
    /// the re-run after the callback answered.
    async fn authorize(&self, task: &str, tool: &str, user: &str) -> McpOutcome {
        let first = self
            .tools
            .call_as(&ctx(task, tool, json!({})), &verified(user))
            .await;
        let resumed = self.approve(&first, user).await;
        assert_eq!(resumed.task_id, task);
        self.tools.call_as(&resumed, &verified(user)).await
    }

    /// `user` approves at the demo provider the authorization `prompt`
    /// asked for; the callback's answer is the call to resume.
    async fn approve(&self, prompt: &McpOutcome, user: &str) -> TestCall {
        let params = consent(prompt, user, true).await;
        self.tools
            .callback_as(params, &verified(user))
            .await
            .unwrap_or_else(|(_, e)| panic!("callback refused: {e}"))
    }

    async fn shorten_expiry(&self, user: &str) {
        let key = CredentialKey::new(user, "demo");
        let mut credential = self
            .store
            .get(&key, &who(user))
            .await
            .expect("store")
            .expect("stored credential");
        credential.expires_at = Some(SystemTime::now() + Duration::from_secs(10));
        self.store
            .put(&key, &who(user), &credential)
            .await
            .expect("store");
    }
}
