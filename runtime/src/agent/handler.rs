//! Handling of one A2A request, the mini-redis way: one admission step in
//! the pump (`admit`: size, parse, depth, identity), then one function
//! per method (`dispatch`); a task's execution runs in its own tokio task
//! ([`super::reasoning`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::AgentInner;
use super::llm::{ChatMessage, ToolCallRequest};
use super::reasoning::{
    self,
    state::{LoopState, Mode, PendingCall, TaskRoute},
};
use super::tasks::TaskStoreError;
use super::tools;
use crate::a2a::elicitation::{ELICITATION_COMPLETE_METHOD, ElicitationParams};
use crate::a2a::jsonrpc::{self, Request, Response, RpcError};
use crate::a2a::oauth_callback::{CallbackParams, OAUTH_CALLBACK_METHOD};
use crate::a2a::{
    Message as A2aMessage, MessageSendParams, Part, Task, TaskIdParams, TaskQueryParams, TaskState,
    TaskStatus, methods, props,
};
use crate::broker::{Message, UserProperties};
use crate::telemetry::{propagation, spans};
use crate::trust_manager::Admission;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Who a request is made for, as read from its user properties.
#[derive(Clone)]
pub(crate) struct Caller {
    pub user_id: String,
    /// Verified (by token, or trust disabled by configuration) or only
    /// claimed. Stored credentials are only ever read for a verified one.
    pub identity: amesh_trust::RequestIdentity,
    /// The token or delegation chain the request came with, as it came: a
    /// delegation to a peer extends it.
    pub auth_token: Option<String>,
    pub call_depth: u32,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user_id", &self.user_id)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "[redacted]"),
            )
            .field("call_depth", &self.call_depth)
            .finish()
    }
}

/// User id used when a request names none (a peer that is not amesh).
const ANONYMOUS: &str = "anonymous";

/// Entry point from the pump. Never blocks on the network: every publish
/// happens in a spawned task.
///
/// The request's span ([`spans::a2a_process`]) continues the sender's
/// trace when the message names one, and is entered here: the tasks
/// dispatch spawns (the task's loop, the replies) carry it on.
pub(super) fn on_request(inner: &Arc<AgentInner>, msg: Message) {
    if let Some(kid) = card_not_yet_here(inner, &msg) {
        wait_for_card(inner, msg, kid);
        return;
    }
    handle_request(inner, msg);
}

/// Requests waiting for their signer's trust card, all senders together.
static WAITING_FOR_CARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// At most this many wait at once; others are judged at once.
const MAX_WAITING_FOR_CARDS: usize = 64;
/// How long a request waits for its signer's trust card.
const CARD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The `kid` of a request's identity token when the trust manager holds no
/// card with it yet. An agent back from an outage gets the requests queued
/// in its broker session right after it connects, before the retained
/// trust cards its new subscription brings (`tests/tests/faults.rs`,
/// the agent-away test): judged at once, those would be refused for an
/// unknown key that arrives milliseconds later.
fn card_not_yet_here(inner: &Arc<AgentInner>, msg: &Message) -> Option<String> {
    if !inner.trust.enabled() {
        return None;
    }
    let kid = amesh_trust::token_kid(msg.props.get(props::AUTH_TOKEN)?)?;
    inner.trust.registry().key(&kid).is_none().then_some(kid)
}

/// Judges `msg` once its signer's card is here, or after [`CARD_WAIT`]
/// (then refused as before). Bounded by [`MAX_WAITING_FOR_CARDS`].
fn wait_for_card(inner: &Arc<AgentInner>, msg: Message, kid: String) {
    use std::sync::atomic::Ordering;
    if WAITING_FOR_CARDS.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING_FOR_CARDS {
        WAITING_FOR_CARDS.fetch_sub(1, Ordering::AcqRel);
        handle_request(inner, msg);
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + CARD_WAIT;
        while inner.trust.registry().key(&kid).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        WAITING_FOR_CARDS.fetch_sub(1, Ordering::AcqRel);
        handle_request(&inner, msg);
    });
}

fn handle_request(inner: &Arc<AgentInner>, msg: Message) {
    let span = spans::a2a_process(&msg.topic, &inner.name);
    if let Some(parent) = propagation::from_user_properties(&msg.props) {
        let _ = span.set_parent(parent);
    }
    let _entered = span.enter();
    let reply_to = msg.props.get(props::REPLY_TO).map(str::to_string);
    let result = admit(inner, &msg, reply_to.as_deref()).and_then(|req| {
        span.record("rpc.method", req.req.method.as_str());
        record_id(&span, &req.id);
        dispatch(inner, req)
    });
    if let Err((id, error)) = result {
        record_id(&span, &id);
        span.record("rpc.jsonrpc.error_code", error.code);
        spans::failed(&span, "refused");
        tracing::info!(
            agent = %inner.name,
            code = error.code,
            error = %error.message,
            "request refused"
        );
        match reply_to {
            Some(topic) => spawn_reply(inner, topic, Response::err(id, error)),
            None => {
                tracing::warn!(agent = %inner.name, "refused request had no replyTo; nothing sent")
            }
        }
    }
}

/// The request's JSON-RPC id on its span (a string id as it is).
fn record_id(span: &tracing::Span, id: &Value) {
    match id {
        Value::String(id) => span.record("rpc.jsonrpc.request_id", id.as_str()),
        Value::Null => span,
        other => span.record("rpc.jsonrpc.request_id", tracing::field::display(other)),
    };
}

/// A refused request: the JSON-RPC id to answer, and why.
type Refusal = (Value, RpcError);

fn refusal(id: &Value, code: i64, text: String) -> Refusal {
    (id.clone(), RpcError::new(code, text))
}

/// A request that passed admission: within the size limit, a JSON-RPC
/// request with an id, within `max_call_depth`, from an identity the trust
/// manager admits for this method, with somewhere to answer.
struct Admitted<'m> {
    req: Request,
    id: Value,
    caller: Caller,
    reply_to: &'m str,
    status_topic: Option<&'m str>,
}

/// The admission step, in order: size, parse, id, draining, depth,
/// identity, reply topic. Cheap and in the pump, so the order of requests
/// is the order they are admitted in.
fn admit<'m>(
    inner: &Arc<AgentInner>,
    msg: &'m Message,
    reply_to: Option<&'m str>,
) -> Result<Admitted<'m>, Refusal> {
    let max = inner.cfg.max_message_size_bytes;
    if msg.payload.len() > max {
        return Err(refusal(
            &Value::Null,
            jsonrpc::MESSAGE_TOO_LARGE,
            format!(
                "message of {} bytes exceeds max_message_size_bytes ({max})",
                msg.payload.len()
            ),
        ));
    }
    let req = jsonrpc::parse_request(&msg.payload)?;
    let id = req.id.clone().unwrap_or(Value::Null);
    if req.id.is_none() {
        return Err(refusal(
            &id,
            jsonrpc::INVALID_REQUEST,
            "A2A requests need an id".into(),
        ));
    }
    if inner.draining.is_cancelled() {
        return Err(refusal(
            &id,
            jsonrpc::INTERNAL_ERROR,
            format!("agent {} is shutting down; retry", inner.name),
        ));
    }
    let call_depth = match msg.props.get(props::CALL_DEPTH) {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            refusal(
                &id,
                jsonrpc::INVALID_REQUEST,
                format!("callDepth `{v}` is not a number"),
            )
        })?,
    };
    if call_depth > inner.cfg.max_call_depth {
        return Err(refusal(
            &id,
            jsonrpc::CALL_DEPTH_EXCEEDED,
            format!(
                "call depth {call_depth} exceeds max_call_depth {} of agent {}",
                inner.cfg.max_call_depth, inner.name
            ),
        ));
    }
    let claimed = msg.props.get(props::USER_ID).unwrap_or(ANONYMOUS);
    let token = msg.props.get(props::AUTH_TOKEN);
    let sender = msg.props.get(props::CLIENT_ID).unwrap_or("unknown");
    let identity = match inner
        .trust
        .admit(token, claimed, sender, |who| admissible(inner, &req, who))
    {
        Admission::Run(identity) => identity,
        Admission::Refuse(why) => return Err(refusal(&id, jsonrpc::UNAUTHENTICATED, why)),
    };
    // A chain of n delegations is n hops deep, whatever callDepth says.
    let hops = identity.verified().map_or(0, |v| v.actors().len());
    let caller = Caller {
        user_id: identity.user_id().to_string(),
        identity,
        auth_token: token.map(str::to_string),
        call_depth: call_depth.max(u32::try_from(hops).unwrap_or(u32::MAX)),
    };
    let Some(reply_to) = reply_to else {
        return Err(refusal(
            &id,
            jsonrpc::INVALID_REQUEST,
            "request has no replyTo user property".into(),
        ));
    };
    Ok(Admitted {
        req,
        id,
        caller,
        reply_to,
        status_topic: msg.props.get(props::STATUS_TOPIC),
    })
}

/// One function per A2A method (and per amesh method).
fn dispatch(inner: &Arc<AgentInner>, a: Admitted<'_>) -> Result<(), Refusal> {
    match a.req.method.as_str() {
        methods::SEND => start_task(inner, a.req, a.caller, a.reply_to, None),
        methods::STREAM => {
            let status_topic = a.status_topic.map(str::to_string);
            start_task(inner, a.req, a.caller, a.reply_to, status_topic)
        }
        methods::GET => get_task(inner, a),
        methods::CANCEL => cancel_task(inner, a),
        m if super::accounts::is_method(m) => {
            super::accounts::handle(
                inner,
                m,
                a.id,
                a.req.params.clone(),
                a.caller,
                a.reply_to.to_string(),
            );
            Ok(())
        }
        ELICITATION_COMPLETE_METHOD => {
            let p: ElicitationParams = params(&a.req)?;
            super::elicitation::on_complete(inner, a.id, p, a.caller, a.reply_to.to_string());
            Ok(())
        }
        OAUTH_CALLBACK_METHOD => {
            let p: CallbackParams = params(&a.req)?;
            super::pause::on_callback(inner, a.id, p, a.caller, a.reply_to.to_string());
            Ok(())
        }
        other => Err(refusal(
            &a.id,
            jsonrpc::METHOD_NOT_FOUND,
            format!(
                "method `{other}` not found; supported: message/send, message/stream, tasks/get, tasks/cancel"
            ),
        )),
    }
}

/// `tasks/get`: the task as it is now, for its own user only.
fn get_task(inner: &Arc<AgentInner>, a: Admitted<'_>) -> Result<(), Refusal> {
    let p: TaskQueryParams = params(&a.req)?;
    match inner.tasks.get(&p.id, &a.caller.user_id) {
        Some(task) => {
            spawn_reply(inner, a.reply_to.to_string(), Response::ok(a.id, task));
            Ok(())
        }
        None => Err(refusal(
            &a.id,
            jsonrpc::TASK_NOT_FOUND,
            format!("task {} not found", p.id),
        )),
    }
}

/// `tasks/cancel`: ends the task (its own user only) and answers with it.
fn cancel_task(inner: &Arc<AgentInner>, a: Admitted<'_>) -> Result<(), Refusal> {
    let p: TaskIdParams = params(&a.req)?;
    match inner.tasks.cancel(&p.id, &a.caller.user_id) {
        Ok(_) => {
            let status = TaskStatus::new(
                TaskState::Canceled,
                Some(agent_text(&p.id, "", "canceled at the user's request")),
            );
            // Taken before the status ends the wait: a task waiting
            // for its user's authorization has no loop that would
            // report the cancel on its stream.
            let waiting = inner.tasks.take_wait(&p.id);
            let task = inner.tasks.set_status(&p.id, status.clone());
            spawn_reply(inner, a.reply_to.to_string(), Response::ok(a.id, task));
            if let Some(route) = waiting {
                let inner = inner.clone();
                tokio::spawn(
                    async move {
                        super::reasoning::report::finish(&inner, &route, status, None).await
                    }
                    .in_current_span(),
                );
            }
            Ok(())
        }
        Err(TaskStoreError::NotCancelable(state)) => Err(refusal(
            &a.id,
            jsonrpc::TASK_NOT_CANCELABLE,
            format!("task {} is already {state:?} and cannot be canceled", p.id),
        )),
        Err(_) => Err(refusal(
            &a.id,
            jsonrpc::TASK_NOT_FOUND,
            format!("task {} not found", p.id),
        )),
    }
}

/// What a verified token must also satisfy for this request: a token
/// scoped to one callback is good for that callback only, and a callback
/// needs such a token (the gateway forwards each with its own); each hop of
/// a delegation chain must be allowed by the delegating agent's published
/// policy.
fn admissible(
    inner: &AgentInner,
    req: &Request,
    who: &amesh_trust::VerifiedIdentity,
) -> Result<(), amesh_trust::VerifyError> {
    if req.method == OAUTH_CALLBACK_METHOD {
        let state = req.params.get("state").and_then(Value::as_str);
        who.check_scoped_use(&req.method, state)?;
    } else {
        who.check_use(&req.method, None)?;
    }
    super::delegate::hops_permitted(inner, who)
}

fn params<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Refusal> {
    serde_json::from_value(req.params.clone()).map_err(|e| {
        (
            req.id.clone().unwrap_or(Value::Null),
            RpcError::new(
                jsonrpc::INVALID_PARAMS,
                format!("invalid params for {}: {e}", req.method),
            ),
        )
    })
}

/// `message/send` and `message/stream`: registers the task and starts its
/// loop (with a model) or its one tool call (without).
fn start_task(
    inner: &Arc<AgentInner>,
    req: Request,
    caller: Caller,
    reply_to: &str,
    status_topic: Option<String>,
) -> Result<(), Refusal> {
    let id = req.id.clone().unwrap_or(Value::Null);
    let p: MessageSendParams = params(&req)?;
    let refuse = |code, text: String| Err((id.clone(), RpcError::new(code, text)));
    // With a model, the message is the user's words; without one, it names
    // the tool to run (wave 1 behaviour, kept for configs without a model).
    let (mode, messages, pending) = if inner.model.is_some() {
        let text = user_text(&p.message);
        if text.trim().is_empty() {
            return refuse(jsonrpc::INVALID_PARAMS, "the message has no text".into());
        }
        (Mode::Model, vec![ChatMessage::User { text }], Vec::new())
    } else {
        let call = match tools::tool_call(&p.message) {
            Ok(c) => c,
            Err(e) => return refuse(jsonrpc::INVALID_PARAMS, e.to_string()),
        };
        if inner.tools.get(&call.tool).is_none() && !inner.has_mcp(&call.tool) {
            let mut offered: Vec<String> =
                inner.tools.iter().map(|t| t.name().to_string()).collect();
            offered.extend(inner.mcp_names().into_iter().map(|(name, _)| name));
            return refuse(
                jsonrpc::INVALID_PARAMS,
                format!(
                    "agent {} has no tool `{}`; it offers: {}",
                    inner.name,
                    call.tool,
                    offered.join(", ")
                ),
            );
        }
        let pending = vec![PendingCall::new(ToolCallRequest {
            id: "direct".into(),
            name: call.tool,
            arguments: call.arguments.to_string(),
        })];
        (Mode::Direct, Vec::new(), pending)
    };
    // The JSON-RPC id is the task id (as in Solace Agent Mesh): the gateway
    // chose it and already listens on topics named after it.
    let task_id = match &id {
        Value::String(s) if crate::topics::valid_level(s) => s.clone(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let context_id = p
        .message
        .context_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut task = Task::new(&task_id, &context_id, TaskState::Submitted);
    task.history.push(p.message);
    let cancel = match inner.tasks.insert(task, &caller.user_id) {
        Ok(c) => c,
        Err(_) => {
            return refuse(
                jsonrpc::INVALID_REQUEST,
                format!("task id {task_id} is already in use"),
            );
        }
    };
    let state = LoopState {
        route: TaskRoute {
            task_id,
            context_id,
            rpc_id: id,
            reply_to: reply_to.to_string(),
            status_topic,
            call_depth: caller.call_depth,
        },
        mode,
        messages,
        history_len: 0,
        pending,
        llm_calls: 0,
        corrections: 0,
        stepped_up: None,
        presented_token: caller
            .auth_token
            .as_deref()
            .map(secrecy::SecretString::from),
    };
    inner
        .tracker
        .spawn(reasoning::start(inner.clone(), state, caller, cancel).in_current_span());
    Ok(())
}

/// The user's words: the text parts, else the data parts as JSON.
fn user_text(message: &A2aMessage) -> String {
    let text = message.text();
    if !text.trim().is_empty() {
        return text;
    }
    message
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Data { data, .. } => Some(data.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn agent_text(task_id: &str, context_id: &str, text: &str) -> A2aMessage {
    A2aMessage::agent(vec![Part::text(text)], task_id, context_id)
}

/// Publishes a reply or status update, signed: the gateway or delegating
/// agent takes it only from this agent's account.
pub(super) async fn publish(inner: &AgentInner, topic: &str, response: &Response) {
    let payload = Bytes::from(response.to_bytes());
    let mut user_props = UserProperties::new();
    if let Some(signature) = inner.trust.sign_message(topic, &payload) {
        user_props.push(props::SIGNATURE, signature);
    }
    // Replies carry the trace back to whoever asked.
    propagation::inject_user_properties(&mut user_props);
    if let Err(e) = inner
        .broker
        .publish(topic, payload, user_props, false)
        .await
    {
        tracing::warn!(agent = %inner.name, topic, error = %e, "reply not delivered");
    }
}

pub(super) fn spawn_reply(inner: &Arc<AgentInner>, topic: String, response: Response) {
    let inner = inner.clone();
    tokio::spawn(async move { publish(&inner, &topic, &response).await }.in_current_span());
}
