//! OpenTelemetry traces across the broker, over real sockets: a gateway and
//! an agent as two `amesh run` processes on a real Mosquitto, a scripted
//! model that asks for a tool of a scripted MCP server, and an OTLP/HTTP
//! receiver decoding what the processes export. One trace must run from
//! the HTTP client through the gateway, the MQTT hop, the agent, the model
//! call and the MCP call, with the right parent links, and the model and
//! MCP servers must receive a `traceparent` naming those calls; with
//! traces off, nothing of the kind may leave the processes.
//!
//! Multi-threaded runtimes: the test blocks a thread while it waits for
//! `amesh run`'s log, and the scripted servers must answer meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amesh_runtime::broker::UserProperties;
use amesh_tests::amesh_run::{AmeshRun, free_port, wait_listed};
use amesh_tests::mcp_server::ScriptedMcp;
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::{RawClient, tool_request};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{Value, json};

const NS: &str = "otel/ns";
const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("agent", "agent-pass"),
    ("tester", "tester-pass"),
];
const PROMPT: &str = "please look up the word zebrafish";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A real OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered as a collector answers.
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// While set, every export is answered 503.
    down: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One exported span with the service that sent it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

impl Seen {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type CollectorState = (Arc<Mutex<Vec<ExportTraceServiceRequest>>>, Arc<AtomicBool>);

async fn export(
    State((exports, down)): State<CollectorState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
    }
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind != "application/x-protobuf" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            exports.lock().unwrap().push(request);
            let answer = ExportTraceServiceResponse::default().encode_to_vec();
            (StatusCode::OK, answer)
        }
        Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("address");
        let exports = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state((exports.clone(), down.clone()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector {
            addr,
            exports,
            down,
            server,
        }
    }

    /// For `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends `/v1/traces`).
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn export_count(&self) -> usize {
        self.exports.lock().unwrap().len()
    }

    fn spans(&self) -> Vec<Seen> {
        let mut out = Vec::new();
        for request in self.exports.lock().unwrap().iter() {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attributes(&r.attributes).remove("service.name"))
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        out.push(Seen {
                            service: service.clone(),
                            name: span.name.clone(),
                            kind: span.kind,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            attributes: attributes(&span.attributes),
                        });
                    }
                }
            }
        }
        out
    }

    /// The spans once `done` holds for them (the processes export every
    /// 100 ms); panics after 20 s with what arrived.
    async fn wait_for(&self, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the expected spans did not arrive; got:\n{spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gateway_yaml(mq: &MosquittoBroker, port: u16) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: otel-gw
      port: {port}
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
      trust_manager: {{card_publish_interval_seconds: 1}}
"#,
        url = mq.url(),
    )
}

fn agent_yaml(mq: &MosquittoBroker, model: &ScriptedModel, mcp: &ScriptedMcp) -> String {
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: traced
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      model: {{model: openai/trace-model, api_base: "{model}", api_key: sk-trace-key, timeout: 10, max_retries: 0}}
      tools:
        - tool_type: mcp
          connection_params: {{type: streamable-http, url: "{mcp}"}}
"#,
        url = mq.url(),
        model = model.base_url(),
        mcp = mcp.url(),
    )
}

/// Gateway and agent as two apps of one `amesh run`.
fn gateway_and_agent_yaml(
    mq: &MosquittoBroker,
    port: u16,
    model: &ScriptedModel,
    mcp: &ScriptedMcp,
) -> String {
    format!(
        "{}{}",
        gateway_yaml(mq, port),
        agent_yaml(mq, model, mcp)
            .strip_prefix("apps:\n")
            .expect("an apps list")
    )
}

/// Variables for a traced process: the collector, a service name, and a
/// short batch delay so spans arrive while the test waits.
fn traced_env<'a>(collector: &'a str, service: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// Sends the prompt through the gateway with `traceparent` (if any) and
/// returns the finished task.
async fn ask(http: &reqwest::Client, base: &str, traceparent: Option<&str>) -> Value {
    let mut request = http
        .post(format!("{base}/api/v1/message:send"))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "traced", "text": PROMPT}));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let resp = request.send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.expect("json");
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert!(task.to_string().contains("found zebrafish"), "{task}");
    task
}

fn script(model: &ScriptedModel) {
    model.push(Turn::tool_calls([("lookup", json!({"q": "zebrafish"}))]));
    model.push(Turn::text("the tool said: found zebrafish"));
}

fn one<'a>(spans: &'a [Seen], what: &str, pick: impl Fn(&Seen) -> bool) -> &'a Seen {
    let found: Vec<&Seen> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}\nall spans: {spans:#?}");
    found[0]
}

/// `traceparent` names this trace and this span as the parent.
fn names(traceparent: Option<&str>, trace: &str, span: &str) -> bool {
    traceparent == Some(format!("00-{trace}-{span}-01").as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_broker_agent_model_and_mcp_server() {
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    script(&model);
    let mcp = ScriptedMcp::start().await;
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let mut gateway = AmeshRun::start(
        &gateway_yaml(&mq, port),
        &traced_env(&endpoint, "otel-gateway"),
    );
    let mut agent = AmeshRun::start(
        &agent_yaml(&mq, &model, &mcp),
        &traced_env(&endpoint, "otel-agent"),
    );
    gateway.wait_for("exporting traces over OTLP/HTTP");
    agent.wait_for("agent ready");
    let http = reqwest::Client::new();
    wait_listed(&base, "alice-token", &["traced"], Duration::from_secs(20)).await;

    // Answers to the gateway go past a listener of our own, to see that
    // replies carry the trace back.
    let tester = mq.broker_config("tester", "tester-pass");
    let mut raw = RawClient::connect(&tester, "otel-raw", NS)
        .await
        .expect("raw client");
    let responses = format!("{NS}/a2a/v1/gateway/response/otel-gw/+");
    raw.broker.subscribe(&responses).await.expect("subscribe");

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let task = ask(&http, &base, Some(&traceparent)).await;
    let task_id = task["id"].as_str().expect("task id").to_owned();
    let reply_topic = format!("{NS}/a2a/v1/gateway/response/otel-gw/{task_id}");
    let reply = raw
        .wait_for(&reply_topic, Duration::from_secs(5))
        .await
        .expect("the reply, seen by the listener");

    let spans = collector
        .wait_for(|spans| {
            spans
                .iter()
                .any(|s| s.service == "otel-agent" && s.attr("a2a.task.state").is_some())
                && spans.iter().any(|s| s.name == "POST /api/v1/message:send")
        })
        .await;

    // The gateway continues the client's trace...
    let http_span = one(&spans, "gateway HTTP span", |s| {
        s.service == "otel-gateway" && s.name == "POST /api/v1/message:send"
    });
    assert_eq!(http_span.kind, SpanKind::Server as i32);
    assert_eq!(http_span.trace_id, CLIENT_TRACE);
    assert_eq!(http_span.parent, CLIENT_SPAN);
    assert_eq!(http_span.attr("http.response.status_code"), Some("200"));
    assert_eq!(http_span.attr("http.route"), Some("/api/v1/message:send"));
    // ... publishes the request under it ...
    let request_topic = format!("{NS}/a2a/v1/agent/request/traced");
    let send = one(&spans, "gateway send span", |s| {
        s.service == "otel-gateway" && s.parent == http_span.span_id
    });
    assert_eq!(send.name, format!("send {request_topic}"));
    assert_eq!(send.kind, SpanKind::Producer as i32);
    assert_eq!(send.attr("rpc.method"), Some("message/send"));
    assert_eq!(
        send.attr("messaging.destination.name"),
        Some(request_topic.as_str())
    );
    // ... and the agent, another process, picks the trace up from the
    // message's user properties, across the broker.
    let process = one(&spans, "agent process span", |s| {
        s.service == "otel-agent" && s.kind == SpanKind::Consumer as i32
    });
    assert_eq!(process.name, format!("process {request_topic}"));
    assert_eq!(process.parent, send.span_id);
    assert_eq!(process.attr("a2a.task.state"), Some("completed"));
    assert_eq!(
        process.attr("rpc.jsonrpc.request_id"),
        Some(task_id.as_str())
    );
    // Two model calls (the tool call, then the answer) and one MCP call,
    // all children of the agent's span.
    let chats: Vec<&Seen> = spans
        .iter()
        .filter(|s| s.name == "chat trace-model")
        .collect();
    assert_eq!(chats.len(), 2, "{spans:#?}");
    for chat in &chats {
        assert_eq!(chat.parent, process.span_id);
        assert_eq!(chat.kind, SpanKind::Client as i32);
        assert_eq!(chat.attr("gen_ai.operation.name"), Some("chat"));
        assert_eq!(chat.attr("gen_ai.request.model"), Some("trace-model"));
    }
    let tool = one(&spans, "MCP call span", |s| s.name == "tools/call lookup");
    assert_eq!(tool.parent, process.span_id);
    assert_eq!(tool.kind, SpanKind::Client as i32);
    assert_eq!(tool.attr("mcp.method.name"), Some("tools/call"));
    assert_eq!(tool.attr("gen_ai.tool.name"), Some("lookup"));
    for span in [http_span, send, process, chats[0], chats[1], tool] {
        assert_eq!(span.trace_id, CLIENT_TRACE, "{span:#?}");
    }

    // The model API got each request with its call's span as the parent.
    let sent_to_model: Vec<Option<String>> = model
        .headers()
        .iter()
        .map(|h| {
            h.get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(sent_to_model.len(), 2);
    for chat in &chats {
        assert!(
            sent_to_model
                .iter()
                .any(|tp| names(tp.as_deref(), CLIENT_TRACE, &chat.span_id)),
            "no model request names {chat:#?}: {sent_to_model:?}"
        );
    }
    // So did the MCP server, for the call and the session it opened.
    for method in ["initialize", "tools/call"] {
        let seen = mcp.seen_method(method);
        let last = seen.last().expect(method);
        assert!(
            names(last.header("traceparent"), CLIENT_TRACE, &tool.span_id),
            "{method}: {:?}",
            last.header("traceparent")
        );
    }
    // The reply carries the trace back, from the agent's span.
    assert!(
        names(
            reply.props.get("traceparent"),
            CLIENT_TRACE,
            &process.span_id
        ),
        "{:?}",
        reply.props
    );

    // Nothing secret or said by the user is in any attribute.
    for span in &spans {
        for value in span.attributes.values() {
            for secret in [PROMPT, "zebrafish", "alice-token", "sk-trace-key", "alice"] {
                assert!(!value.contains(secret), "{secret:?} in {span:#?}");
            }
        }
    }

    // A malformed traceparent is ignored, never an error: this request is
    // refused for what it is (no identity token), and its span starts a
    // trace of its own.
    let refused = raw
        .request(
            "traced",
            tool_request("bad-trace", "lookup", json!({"q": "x"})),
            UserProperties::new().with("traceparent", "00-not-a-trace-01"),
        )
        .await
        .expect("an answer");
    assert_eq!(
        refused["error"]["code"],
        amesh_runtime::a2a::jsonrpc::UNAUTHENTICATED,
        "{refused}"
    );
    let spans = collector
        .wait_for(|spans| {
            spans
                .iter()
                .any(|s| s.attr("rpc.jsonrpc.request_id") == Some("bad-trace"))
        })
        .await;
    let bad = one(&spans, "refused request span", |s| {
        s.attr("rpc.jsonrpc.request_id") == Some("bad-trace")
    });
    assert_eq!(bad.parent, "", "a root span: {bad:#?}");
    assert_ne!(bad.trace_id, CLIENT_TRACE);
    assert_eq!(bad.attr("error.type"), Some("refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_off_no_traceparent_leaves_and_nothing_is_exported() {
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    let mcp = ScriptedMcp::start().await;
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    // Off by default (no OTEL_ variable at all, as an empty one counts),
    // then off with an endpoint set but the SDK disabled.
    let off_by_default: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
    ];
    let disabled: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    for env in [off_by_default, disabled] {
        script(&model);
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let yaml = gateway_and_agent_yaml(&mq, port, &model, &mcp);
        let mut run = AmeshRun::start(&yaml, &env);
        let log = run.wait_for("amesh ready");
        assert!(!log.contains("exporting traces"), "{log}");
        let http = reqwest::Client::new();
        wait_listed(&base, "alice-token", &["traced"], Duration::from_secs(20)).await;
        let before = (model.request_count(), mcp.seen().len());
        // A client's trace context is not passed on either.
        ask(
            &http,
            &base,
            Some(&format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")),
        )
        .await;
        let model_headers = &model.headers()[before.0..];
        let mcp_seen = &mcp.seen()[before.1..];
        assert_eq!(model_headers.len(), 2);
        assert!(mcp_seen.iter().any(|s| s.method == "tools/call"));
        for headers in model_headers {
            assert!(headers.get("traceparent").is_none(), "{headers:?}");
            assert!(headers.get("tracestate").is_none(), "{headers:?}");
        }
        for seen in mcp_seen {
            assert_eq!(seen.header("traceparent"), None, "{seen:?}");
            assert_eq!(seen.header("tracestate"), None, "{seen:?}");
        }
        // Ten export intervals: a running exporter would have sent by now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(collector.export_count(), 0);
        run.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_refusing_spans_is_a_warning_and_its_return_is_said() {
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    let mcp = ScriptedMcp::start().await;
    let collector = Collector::start().await;
    collector.down.store(true, Ordering::SeqCst);
    let endpoint = collector.endpoint();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let yaml = gateway_and_agent_yaml(&mq, port, &model, &mcp);
    let mut run = AmeshRun::start(&yaml, &traced_env(&endpoint, "amesh-both"));
    run.wait_for("amesh ready");
    let http = reqwest::Client::new();
    wait_listed(&base, "alice-token", &["traced"], Duration::from_secs(20)).await;
    script(&model);
    ask(&http, &base, None).await;
    // The batch processor dropped what the collector refused: said once,
    // with where and how much, at warn.
    let log = run.wait_for("traces not exported");
    let line = log
        .lines()
        .find(|l| l.contains("traces not exported"))
        .expect("the line");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("{endpoint}/v1/traces")), "{line}");
    assert!(line.contains("spans="), "{line}");
    assert_eq!(collector.export_count(), 0);

    collector.down.store(false, Ordering::SeqCst);
    script(&model);
    ask(&http, &base, None).await;
    let log = run.wait_for("traces exported again");
    assert_eq!(
        log.matches("traces not exported").count(),
        1,
        "one line for the outage, not one per batch:\n{log}"
    );
    assert!(collector.export_count() > 0);
    run.kill();
}
