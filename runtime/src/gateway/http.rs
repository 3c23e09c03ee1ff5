//! The gateway's HTTP surface. Every route is declared in [`router`]; the
//! handlers live in modules named for what they serve.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::{
    GatewayInner, auth_routes, body, connections, conversation_routes, page, site, sso, stream,
    task_routes, tool_callback,
};

pub(crate) fn router(inner: Arc<GatewayInner>) -> Router {
    let limit = inner.cfg.max_message_size_bytes;
    let body_rules = body::BodyRules {
        idle_timeout: Duration::from_secs(inner.cfg.limits.idle_timeout_seconds.max(1)),
        max_bytes: limit,
    };
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/healthz", get(task_routes::healthz))
        .route("/metrics", get(crate::telemetry::endpoint::scrape))
        .route("/api/v1/agents", get(task_routes::list_agents))
        .route("/api/v1/message:stream", post(stream::message_stream))
        .route("/api/v1/message:send", post(task_routes::message_send))
        .route("/api/v1/tasks", get(stream::list_tasks))
        .route(
            "/api/v1/tasks/{id}",
            get(task_routes::get_task).post(task_routes::task_action),
        )
        .route("/api/v1/tasks/{id}/events", get(stream::task_events))
        .route(
            "/api/v1/conversations",
            get(conversation_routes::list).post(conversation_routes::create),
        )
        .route(
            "/api/v1/conversations/{id}",
            get(conversation_routes::get)
                .patch(conversation_routes::rename)
                .delete(conversation_routes::delete),
        )
        .route("/api/v1/connections", get(connections::list))
        .route(
            "/api/v1/connections/{agent}/{tool}",
            post(connections::connect).delete(connections::disconnect),
        )
        .route(
            "/api/v1/auth/login",
            get(sso::login).post(auth_routes::login),
        )
        .route("/api/v1/auth/callback", get(sso::callback))
        .route("/api/v1/auth/config", get(auth_routes::config))
        .route("/api/v1/auth/logout", post(auth_routes::logout))
        .route("/api/v1/auth/me", get(auth_routes::me))
        .route("/api/v1/auth/tool/callback", get(tool_callback::callback))
        .route(
            amesh_mcp::oauth::CLIENT_METADATA_PATH,
            get(tool_callback::client_metadata),
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            body_rules,
            body::timely_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            site::guard,
        ))
        .layer(axum::middleware::from_fn(page::security_headers))
        // Outermost: the request's span covers every layer above.
        .layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(inner.id.as_str()),
            crate::telemetry::http_span::trace_request,
        ))
        .with_state(inner)
}
