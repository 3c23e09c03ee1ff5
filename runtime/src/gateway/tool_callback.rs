//! `GET /api/v1/auth/tool/callback`: where a tool's OAuth provider sends the
//! user's browser back after sign-in.
//!
//! The gateway holds no flow state. It reads the agent and the user tag from
//! `state` ([`crate::oauth_state`]), refuses with 403 — forwarding nothing —
//! when the browser's session belongs to another user, and with 404 when
//! `state` names an agent it does not know (no accepted agent card: the
//! user's identity goes to no topic an unknown party may be reading), and
//! otherwise forwards code, state and `iss` to the agent (any replica) with an
//! assertion of the session user good for this one callback only (audience
//! that agent, scope `oauth/callback` and the hash of this `state`, two
//! minutes). The agent checks the flow, exchanges the code and resumes the
//! waiting task. The browser gets a page saying whether it can be closed.

use std::sync::Arc;
use std::time::Duration;

use amesh_mcp::oauth::{CALLBACK_PATH, client_metadata_document, client_metadata_url};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use url::Url;

use super::GatewayInner;
use super::agent_requests::ask_agent_with_token;
use super::extract::AuthUser;
use crate::a2a::client::Event;
use crate::a2a::jsonrpc;
use crate::a2a::oauth_callback::{CallbackParams, OAUTH_CALLBACK_METHOD};
use crate::logging::Throttle;
use crate::oauth_state::FlowState;

/// Callbacks that arrive without a session are logged at most once per
/// 10 s: the route is open to anyone, so its refusals must not flood the log.
static SESSIONLESS_CALLBACKS: Throttle = Throttle::new(Duration::from_secs(10));

/// Query of the provider's redirect (RFC 6749 4.1.2 and 4.1.2.1).
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body class=\"notice\"><main><h1>{t}</h1><p>{x}</p></main></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (status, Html(body)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /api/v1/auth/tool/client-metadata`: amesh's OAuth Client ID
/// Metadata Document, whose URL agents use as `client_id` with
/// authorization servers that fetch client metadata instead of taking
/// registrations. It describes this gateway's callback on the origin the
/// server asked by (its `Host`): https, or plain http for a gateway on this
/// machine. Public data, the same for every agent and every caller.
pub(crate) async fn client_metadata(headers: HeaderMap) -> Response {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let for_scheme = |scheme: &str| {
        Url::parse(&format!("{scheme}://{host}{CALLBACK_PATH}"))
            .ok()
            .and_then(|callback| client_metadata_url(&callback))
    };
    // Plain http only where `client_metadata_url` allows it (loopback).
    let Some(client_id) = for_scheme("http").or_else(|| for_scheme("https")) else {
        return (StatusCode::BAD_REQUEST, "no usable Host header").into_response();
    };
    (
        [(CACHE_CONTROL, "public, max-age=3600")],
        Json(client_metadata_document(&client_id)),
    )
        .into_response()
}

pub(crate) async fn callback(
    State(inner): State<Arc<GatewayInner>>,
    user: Result<AuthUser, super::api_error::ApiError>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Ok(AuthUser(user)) = user else {
        // The usual cause besides an expired session: the provider sent the
        // browser to another origin than the one the user signed in at
        // (http vs https, a port, localhost vs 127.0.0.1), so the session
        // cookie stayed behind. Say so, since nothing else will.
        if let Some(held_back) = SESSIONLESS_CALLBACKS.allow() {
            let host = headers
                .get(HOST)
                .map(|h| {
                    String::from_utf8_lossy(h.as_bytes())
                        .chars()
                        .take(100)
                        .collect::<String>()
                })
                .unwrap_or_default();
            tracing::warn!(
                gateway = %inner.id,
                host = ?host,
                held_back,
                "tool authorization callback without a signed-in session: either the user is not signed in here, or OAUTH_TOOL_REDIRECT_URI names another origin (scheme, host, port) than the one users open the gateway at, so the browser sent no session cookie"
            );
        }
        return page(
            StatusCode::UNAUTHORIZED,
            "Please sign in",
            "Sign in to the gateway in this browser, then start the authorization again. \
             If you are signed in already, this page's address differs from the one you use \
             for the gateway: tell the operator (OAUTH_TOOL_REDIRECT_URI).",
        );
    };
    let Some(state) = q.state.as_deref().and_then(FlowState::parse) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown authorization",
            "The link has no valid state. Start the authorization again from the conversation.",
        );
    };
    if !state.is_for(&inner.ns, &user.id) {
        tracing::warn!(
            gateway = %inner.id,
            user = %user.id,
            agent = %state.agent,
            "tool authorization callback from another user's session refused"
        );
        return page(
            StatusCode::FORBIDDEN,
            "Not your authorization",
            "This authorization was started by another user. Nothing was sent to the agent.",
        );
    }
    if inner.agents.get(&state.agent).is_none() {
        tracing::warn!(
            gateway = %inner.id,
            user = %user.id,
            agent = %state.agent,
            "tool authorization callback for an agent without an accepted card refused"
        );
        return page(
            StatusCode::NOT_FOUND,
            "Unknown agent",
            &format!(
                "This authorization is for agent {}, which this gateway does not know. Nothing was sent.",
                state.agent
            ),
        );
    }
    let raw_state = q.state.clone().unwrap_or_default();
    let token = inner.trust.sign_callback(
        &super::tokens::claims(&user),
        &state.agent,
        OAUTH_CALLBACK_METHOD,
        &raw_state,
    );
    let params = CallbackParams {
        state: raw_state,
        code: q.code,
        error: q.error,
        error_description: q.error_description,
        iss: q.iss,
    };
    // The agent exchanges the code with the provider before it answers.
    let answer = ask_agent_with_token(
        &inner,
        &user,
        &state.agent,
        OAUTH_CALLBACK_METHOD,
        params,
        Duration::from_secs(30),
        token,
    )
    .await;
    match answer {
        // The agent says what became of the task: it may have ended (been
        // canceled) while it waited, and then nothing continues; a flow
        // started from the connected accounts page had no task.
        Ok(Some(Event::Final(answer))) => {
            let (said, outcome) = agent_said(&answer);
            let text = match outcome.as_deref() {
                Some("task_ended") => format!(
                    "Your account is connected, but the task it was for had already ended \
                     (canceled or expired), so nothing continues. Ask again in the \
                     conversation to use it. ({said})"
                ),
                Some("connected") => {
                    "Connected. The agent can now use this account for you. You can close this tab."
                        .to_owned()
                }
                _ => "Connected. The agent has your authorization and the task continues in \
                     the conversation. You can close this tab."
                    .to_owned(),
            };
            page(StatusCode::OK, "Authorization complete", &text)
        }
        Ok(Some(Event::Error(e))) => {
            let status = match e.code {
                jsonrpc::UNAUTHENTICATED => StatusCode::FORBIDDEN,
                jsonrpc::INVALID_PARAMS => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            page(status, "Authorization failed", &e.message)
        }
        Ok(_) => page(
            StatusCode::GATEWAY_TIMEOUT,
            "No answer",
            &format!("Agent {} did not answer. Try again.", state.agent),
        ),
        Err(e) => page(e.status, "Authorization failed", &e.message),
    }
}

/// The text parts of the agent's answer to the callback, and its
/// `outcome` (`resumed`, `task_ended`, `connected`) when it says.
fn agent_said(answer: &crate::a2a::StreamResult) -> (String, Option<String>) {
    let parts = match answer {
        crate::a2a::StreamResult::Message(m) => m.parts.as_slice(),
        crate::a2a::StreamResult::Task(t) => t
            .status
            .message
            .as_ref()
            .map_or(&[][..], |m| m.parts.as_slice()),
        _ => &[],
    };
    let mut text = Vec::new();
    let mut outcome = None;
    for part in parts {
        match part {
            crate::a2a::Part::Text { text: t, .. } => text.push(t.as_str()),
            crate::a2a::Part::Data { data, .. } => {
                if let Some(o) = data.get("outcome").and_then(|o| o.as_str()) {
                    outcome = Some(o.to_owned());
                }
            }
            _ => {}
        }
    }
    (text.join(" "), outcome)
}
