//! What amesh knows of Solace Agent Mesh configs beyond what it implements.
//!
//! An operator bringing a SAM project has configs full of keys for SAM
//! features amesh does not have (embeds, frontend options, data tools...).
//! Refusing them would make no SAM config load; accepting every unknown key
//! would hide typos. So the keys SAM's own schemas define (its pydantic app
//! models, `SamAgentAppConfig` and the gateway `app_schema`s, as of SAM
//! 1.x) are listed here per amesh struct: such a key is a warning ("not
//! supported by amesh, ignored"); any other unknown key stays an error with
//! a did-you-mean. Likewise SAM's app modules amesh does not implement are
//! named, so the error says what the app is rather than "unknown value".

use super::error::ConfigError;
use super::node::{Node, join_key};

/// SAM keys, per amesh struct (serde's struct name), that amesh ignores.
const IGNORED: &[(&str, &[&str])] = &[
    (
        "AgentConfig",
        &[
            "agent_type",
            "deployment",
            "agent_identity",
            "global_instruction",
            "auto_inject_artifact_tools",
            "planner",
            "code_executor",
            "inject_current_time",
            "memory_service",
            "auto_summarization",
            "credential_service",
            "multi_session_request_response",
            "tool_output_save_threshold_bytes",
            "tool_output_llm_return_max_bytes",
            "mcp_tool_response_save_threshold_bytes",
            "mcp_tool_llm_return_max_bytes",
            "artifact_handling_mode",
            "enable_inline_vision",
            "max_inline_vision_images",
            "max_inline_vision_bytes",
            "schema_max_keys",
            "schema_inference_depth",
            "enable_embed_resolution",
            "enable_auto_continuation",
            "stream_batching_threshold_bytes",
            "enable_artifact_content_instruction",
            "input_schema",
            "output_schema",
            "inject_system_purpose",
            "inject_response_format",
            "inject_user_profile",
            "agent_init_function",
            "agent_cleanup_function",
            "text_artifact_content_max_length",
            "data_tools_config",
            "extract_content_from_artifact_config",
            "mcp_intelligent_processing",
            "identity_service",
            "thinking",
        ],
    ),
    (
        "GatewayConfig",
        &[
            "fastapi_https_port",
            "cors_allowed_origins",
            "cors_allowed_origin_regex",
            "sse_max_queue_size",
            "visualization_queue_size",
            "task_logger_queue_size",
            "resolve_artifact_uris_in_gateway",
            "model",
            "model_provider",
            "frontend_welcome_message",
            "frontend_bot_name",
            "frontend_collect_feedback",
            "frontend_disclaimer_text",
            "frontend_auth_login_url",
            "frontend_redirect_url",
            "frontend_server_url",
            "frontend_logo_url",
            "frontend_feature_enablement",
            "external_auth_callback_uri",
            "external_auth_service_url",
            "external_auth_provider",
            "ssl_keyfile",
            "ssl_certfile",
            "ssl_keyfile_password",
            "session_service",
            "platform_service",
            "task_logging",
            "feedback_publishing",
            "background_tasks",
            "scheduler_service",
            "data_retention",
            "speech",
            "default_agent_name",
            "system_purpose",
            "response_format",
            "artifact_service",
            "enable_embed_resolution",
            "gateway_max_artifact_resolve_size_bytes",
            "gateway_artifact_content_limit_bytes",
            "gateway_recursive_embed_depth",
            "artifact_handling_mode",
            "gateway_max_message_size_bytes",
            "gateway_max_upload_size_bytes",
            "gateway_max_project_size_bytes",
            "gateway_max_batch_upload_size_bytes",
            "task_timeout_seconds",
            "default_user_identity",
            "force_user_identity",
            "identity_service",
            "gateway_type",
            "gateway_card",
        ],
    ),
    (
        "BrokerConfig",
        &[
            "broker_type",
            "reconnection_strategy",
            "retry_interval",
            "retry_count",
            "max_connection_retries",
            "queue_name",
            "create_queue_on_start",
            "payload_encoding",
            "payload_format",
            "trust_store_path",
        ],
    ),
    (
        "AgentCardConfig",
        &["documentationUrl", "provider", "version"],
    ),
    (
        "AgentDiscoveryConfig",
        &["health_check_ttl_seconds", "health_check_interval_seconds"],
    ),
    (
        "ModelFields",
        &[
            "llm_service_title_model_name",
            "oauth_token_url",
            "oauth_client_id",
            "oauth_client_secret",
            "oauth_scope",
            "oauth_ca_cert",
            "oauth_token_refresh_buffer_seconds",
        ],
    ),
];

/// Whether `key` of struct `name` is a SAM key that amesh ignores.
pub fn ignored_key(name: &str, key: &str) -> bool {
    IGNORED
        .iter()
        .any(|(s, keys)| *s == name && keys.contains(&key))
}

/// The ignored SAM key of struct `name` that `key` is a near miss of.
pub fn near_ignored_key(name: &str, key: &str) -> Option<&'static str> {
    IGNORED
        .iter()
        .filter(|(s, _)| *s == name)
        .flat_map(|(_, keys)| keys.iter())
        .map(|k| (super::de_error::edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= (key.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Warnings for the ignored SAM keys of mapping `node` (at `path`) typed
/// as struct `name` by a visitor rather than through the node
/// deserializer, which would otherwise report them.
pub fn warn_ignored_keys(node: &Node, path: &str, name: &str, warnings: &mut Vec<ConfigError>) {
    for entry in node.entries().unwrap_or_default() {
        if ignored_key(name, &entry.key.text) {
            warnings.push(ConfigError::at(
                &entry.key.pos,
                join_key(path, &entry.key.text),
                ignored_message(&entry.key.text),
            ));
        }
    }
}

/// The warning for an ignored SAM key.
pub fn ignored_message(key: &str) -> String {
    format!("{key:?} is a Solace Agent Mesh setting that is not supported by amesh, ignored")
}

/// What amesh makes of an `app_module`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleKind {
    Agent,
    Gateway,
    /// A SAM module amesh does not implement, with what it is.
    Unsupported(&'static str),
    Unknown,
}

/// SAM's module paths amesh does not implement, with what they are.
const UNSUPPORTED_MODULES: &[(&str, &str)] = &[
    ("solace_agent_mesh.workflow.app", "SAM's workflow engine"),
    (
        "solace_agent_mesh.services.platform.app",
        "SAM's platform service",
    ),
    ("solace_agent_mesh.agent.proxies.a2a.app", "SAM's A2A proxy"),
    (
        "solace_agent_mesh.gateway.generic.app",
        "SAM's generic gateway (MCP server, Slack adapters)",
    ),
    (
        "sam_event_mesh_gateway.app",
        "the event-mesh gateway plugin",
    ),
    ("sam_rest_gateway.app", "the REST gateway plugin"),
    ("sam_webhook.app", "the webhook gateway plugin"),
    ("sam_webhook_gateway.app", "the webhook gateway plugin"),
    ("sam_slack.app", "the Slack gateway plugin"),
    ("sam_slack_gateway.app", "the Slack gateway plugin"),
    ("solace_agent_mesh.gateway.slack.app", "the Slack gateway"),
];

/// Classifies an `app_module`. `src.` in front of a SAM module path (how
/// SAM's own repository names its modules) is the same module.
pub fn module_kind(module: &str) -> ModuleKind {
    let module = module.trim();
    let bare = module.strip_prefix("src.").unwrap_or(module);
    match bare {
        "agent" | "solace_agent_mesh.agent.sac.app" => ModuleKind::Agent,
        "gateway" | "solace_agent_mesh.gateway.http_sse.app" => ModuleKind::Gateway,
        _ => UNSUPPORTED_MODULES
            .iter()
            .find(|(m, _)| *m == bare)
            .map_or(ModuleKind::Unknown, |(_, what)| {
                ModuleKind::Unsupported(what)
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_with_and_without_src_prefix() {
        assert_eq!(
            module_kind("src.solace_agent_mesh.agent.sac.app"),
            ModuleKind::Agent
        );
        assert_eq!(
            module_kind("solace_agent_mesh.gateway.http_sse.app"),
            ModuleKind::Gateway
        );
        assert_eq!(
            module_kind("solace_agent_mesh.workflow.app"),
            ModuleKind::Unsupported("SAM's workflow engine")
        );
        assert_eq!(module_kind("my_plugin.app"), ModuleKind::Unknown);
    }

    #[test]
    fn ignored_keys_are_per_struct() {
        assert!(ignored_key("AgentConfig", "enable_embed_resolution"));
        assert!(!ignored_key("GatewayConfig", "planner"));
        assert!(!ignored_key("AgentConfig", "enable_embed_resolutoin"));
    }
}
