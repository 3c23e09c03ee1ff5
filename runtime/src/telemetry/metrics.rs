//! The process's Prometheus metrics, and the one function per event that
//! the rest of the code calls (one line at each call site, so the hot
//! paths stay readable).
//!
//! One registry per process: `amesh run` may start several apps, and a
//! scrape of any of their endpoints shows them all, told apart by the
//! `gateway` / `agent` labels. Every label value comes from configuration
//! (agent, gateway, model and tool names) or from a fixed set (states,
//! outcomes, trust refusal codes), never from a request, so the number of
//! series is bounded whatever clients send. No label holds a user id or a
//! token.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::a2a::TaskState;

/// `Content-Type` of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    gateway: String,
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayStateLabels {
    gateway: String,
    agent: String,
    method: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentStateLabels {
    agent: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    agent: String,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentToolLabels {
    agent: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustLabels {
    component: String,
    reason: &'static str,
    mode: &'static str,
}

/// Buckets for calls that take milliseconds to a minute (model, MCP, round
/// trips): 1 ms doubling to ~65 s.
fn slow_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

/// Buckets for the credential store: 0.1 ms doubling to ~3 s.
fn store_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 15)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    gateway_requests: Family<GatewayStateLabels, Counter>,
    gateway_round_trip: Histograms<GatewayLabels>,
    agent_tasks: Family<AgentStateLabels, Counter>,
    model_calls: Histograms<ModelLabels>,
    mcp_calls: Histograms<ToolLabels>,
    store_ops: Histograms<StoreLabels>,
    authorization_prompts: Family<AgentToolLabels, Counter>,
    authorization_callbacks: Family<AgentStateLabels, Counter>,
    token_refreshes: Family<ToolLabels, Counter>,
    broker_reconnects: Family<ClientLabels, Counter>,
    trust_denials: Family<TrustLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let slow: fn() -> Histogram = || Histogram::new(slow_buckets());
        let fast: fn() -> Histogram = || Histogram::new(store_buckets());
        let mut m = Metrics {
            registry: Registry::with_prefix("amesh"),
            gateway_requests: Family::default(),
            gateway_round_trip: Family::new_with_constructor(slow),
            agent_tasks: Family::default(),
            model_calls: Family::new_with_constructor(slow),
            mcp_calls: Family::new_with_constructor(slow),
            store_ops: Family::new_with_constructor(fast),
            authorization_prompts: Family::default(),
            authorization_callbacks: Family::default(),
            token_refreshes: Family::default(),
            broker_reconnects: Family::default(),
            trust_denials: Family::default(),
        };
        m.registry.register(
            "gateway_requests",
            "Requests the gateway sent to agents, by A2A method and the answer's final state",
            m.gateway_requests.clone(),
        );
        m.registry.register(
            "gateway_round_trip_seconds",
            "From publishing a request to an agent to its final answer",
            m.gateway_round_trip.clone(),
        );
        m.registry.register(
            "agent_tasks",
            "Tasks an agent ended, by final state",
            m.agent_tasks.clone(),
        );
        m.registry.register(
            "model_call_seconds",
            "Model API requests (retries included), by outcome",
            m.model_calls.clone(),
        );
        m.registry.register(
            "mcp_call_seconds",
            "MCP tool calls, by tool server and outcome (ok, failed, auth_required)",
            m.mcp_calls.clone(),
        );
        m.registry.register(
            "credential_store_seconds",
            "Credential store operations, by operation and outcome",
            m.store_ops.clone(),
        );
        m.registry.register(
            "authorization_prompts",
            "Tasks paused for a user's OAuth authorization of a tool",
            m.authorization_prompts.clone(),
        );
        m.registry.register(
            "authorization_callbacks",
            "OAuth callbacks an agent handled: granted (credential stored) or denied",
            m.authorization_callbacks.clone(),
        );
        m.registry.register(
            "token_refreshes",
            "Access token refreshes, by outcome (refreshed, refused, failed)",
            m.token_refreshes.clone(),
        );
        m.registry.register(
            "broker_reconnects",
            "Reconnections to the MQTT broker after a lost connection",
            m.broker_reconnects.clone(),
        );
        m.registry.register(
            "trust_denials",
            "Identity tokens the trust manager did not accept, by reason code and verification mode",
            m.trust_denials.clone(),
        );
        m
    }
}

/// The whole registry in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

/// The gateway got the final answer to a request (`method`, one of the
/// few the gateway sends) it sent `started` ago. `state` is the task's
/// final state, `message` (a non-task answer) or `error` (the agent
/// refused).
pub fn gateway_answer(
    gateway: &str,
    agent: &str,
    method: &str,
    state: &'static str,
    started: Instant,
) {
    let m = &*METRICS;
    m.gateway_requests
        .get_or_create(&GatewayStateLabels {
            gateway: gateway.to_owned(),
            agent: agent.to_owned(),
            method: method.to_owned(),
            state,
        })
        .inc();
    m.gateway_round_trip
        .get_or_create(&GatewayLabels {
            gateway: gateway.to_owned(),
            agent: agent.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
}

/// An agent answered a task with `state`.
pub fn task_ended(agent: &str, state: TaskState) {
    METRICS
        .agent_tasks
        .get_or_create(&AgentStateLabels {
            agent: agent.to_owned(),
            state: state_name(state),
        })
        .inc();
}

/// One model request (with its retries) took `took`.
pub fn model_call(model: &str, ok: bool, took: Duration) {
    METRICS
        .model_calls
        .get_or_create(&ModelLabels {
            model: model.to_owned(),
            outcome: if ok { "ok" } else { "error" },
        })
        .observe(took.as_secs_f64());
}

/// One MCP tool call on server `tool` (its credential key) took `took`.
pub fn mcp_call(agent: &str, tool: &str, outcome: &'static str, took: Duration) {
    METRICS
        .mcp_calls
        .get_or_create(&ToolLabels {
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            outcome,
        })
        .observe(took.as_secs_f64());
}

/// Runs one credential store operation and times it.
pub async fn store_op<T, E>(
    operation: &'static str,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = op.await;
    METRICS
        .store_ops
        .get_or_create(&StoreLabels {
            operation,
            outcome: if result.is_ok() { "ok" } else { "error" },
        })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// A task was paused for the user to authorize tool server `tool`.
pub fn authorization_prompt(agent: &str, tool: &str) {
    METRICS
        .authorization_prompts
        .get_or_create(&AgentToolLabels {
            agent: agent.to_owned(),
            tool: tool.to_owned(),
        })
        .inc();
}

/// An OAuth callback was granted (credential stored) or denied.
pub fn authorization_callback(agent: &str, granted: bool) {
    METRICS
        .authorization_callbacks
        .get_or_create(&AgentStateLabels {
            agent: agent.to_owned(),
            state: if granted { "granted" } else { "denied" },
        })
        .inc();
}

/// A refresh of the access token for tool server `tool` ended:
/// `refreshed`, `refused` (the grant is dead) or `failed` (provider down).
pub fn token_refresh(agent: &str, tool: &str, outcome: &'static str) {
    METRICS
        .token_refreshes
        .get_or_create(&ToolLabels {
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            outcome,
        })
        .inc();
}

/// The MQTT client `client_id` reconnected after losing its connection.
pub fn broker_reconnect(client_id: &str) {
    METRICS
        .broker_reconnects
        .get_or_create(&ClientLabels {
            client_id: client_id.to_owned(),
        })
        .inc();
}

/// The trust manager of `component` did not accept an identity (`reason`
/// is the verifier's stable code); `strict` refused the request,
/// permissive ran it without stored credentials.
pub fn trust_denial(component: &str, reason: &'static str, strict: bool) {
    METRICS
        .trust_denials
        .get_or_create(&TrustLabels {
            component: component.to_owned(),
            reason,
            mode: if strict { "strict" } else { "permissive" },
        })
        .inc();
}

/// The A2A name of a state (`auth-required`, ...), as a label value.
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Submitted => "submitted",
        TaskState::Working => "working",
        TaskState::InputRequired => "input-required",
        TaskState::Completed => "completed",
        TaskState::Canceled => "canceled",
        TaskState::Failed => "failed",
        TaskState::Rejected => "rejected",
        TaskState::AuthRequired => "auth-required",
        TaskState::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_event_shows_in_the_exposition_with_its_labels() {
        task_ended("unit-agent", TaskState::Completed);
        trust_denial("unit-agent", "expired", true);
        let text = render();
        assert!(
            text.contains(r#"amesh_agent_tasks_total{agent="unit-agent",state="completed"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"amesh_trust_denials_total{component="unit-agent",reason="expired",mode="strict"}"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn store_op_times_the_operation_and_passes_its_result_through() {
        let r: Result<u8, &str> = store_op("unit_op", async { Err("down") }).await;
        assert_eq!(r, Err("down"));
        let text = render();
        assert!(
            text.contains(
                r#"amesh_credential_store_seconds_count{operation="unit_op",outcome="error"} 1"#
            ),
            "{text}"
        );
    }
}
