//! An agent's `tools:` list, typed item by item.
//!
//! Each item is typed as the struct its `tool_type` names, straight from
//! the tree, so an error inside it has its exact key path
//! (`tools[2].connection_params.type`), and every problem of every item is
//! found in one pass (a serde tagged enum would stop at the first, and
//! only say `tools[2]`). SAM's tool kinds amesh lacks (its other built-in
//! tools and groups, Python tools) are left out with a warning naming
//! them: the agent starts without them and they are not offered to the
//! model. SAM's `artifact_management` group is amesh's artifact tools, and
//! MCP servers over `stdio` (`command`, `args`, `environment_variables`)
//! run as child processes of the agent. A built-in name known to neither
//! amesh nor SAM is an error, the same one the agent would give at start.

use serde::Deserialize;

use super::de::from_node_warn;
use super::de_error::unknown_variant_message;
use super::error::ConfigError;
use super::model::ToolConfig;
use super::node::{Node, NodeValue};
use crate::agent::tools::BuiltinTool;

/// amesh's built-in tools.
const AMESH_BUILTINS: &[&str] = &[
    "echo",
    "time",
    "sleep",
    "delegate",
    "whoami",
    "create_artifact",
    "list_artifacts",
    "load_artifact",
    "append_to_artifact",
    "delete_artifact",
];

/// The one SAM tool group amesh implements (see `agent/artifacts.rs`).
const ARTIFACT_GROUP: &str = "artifact_management";

/// SAM's built-in tools (its `BuiltinTool` registry), which amesh lacks.
const SAM_BUILTINS: &[&str] = &[
    "apply_embed_and_create_artifact",
    "artifact_search_and_replace_regex",
    "concatenate_audio",
    "convert_file_to_markdown",
    "create_chart_from_plotly_config",
    "create_image_from_description",
    "deep_research",
    "describe_audio",
    "describe_image",
    "edit_image_with_gemini",
    "extract_content_from_artifact",
    "generate_image_with_gemini",
    "get_current_time",
    "index_search",
    "mermaid_diagram_generator",
    "multi_speaker_text_to_speech",
    "select_voice",
    "text_to_speech",
    "time_delay",
    "transcribe_audio",
    "web_request",
    "web_search_google",
    "always_fail_tool",
    "dangling_tool_call_test_tool",
];

/// `tool_type: builtin`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinEntry {
    #[serde(rename = "tool_type")]
    _tool_type: String,
    tool_name: String,
    #[serde(default)]
    tool_config: Option<serde_json::Value>,
    #[serde(default, rename = "tool_description")]
    _tool_description: Option<String>,
}

/// `tool_type: builtin-group` (SAM's groups of built-in tools).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    #[serde(rename = "tool_type")]
    _tool_type: String,
    group_name: String,
    #[serde(default, rename = "tool_config")]
    _tool_config: Option<serde_json::Value>,
}

/// The typed tools of `tools` (the node of an agent's `tools:` key at
/// `path`), each with its index in the list; problems go to `errors`,
/// tools amesh leaves out to `warnings`.
pub fn type_tools(
    tools: &Node,
    path: &str,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Vec<(usize, ToolConfig)> {
    let items = match &tools.value {
        NodeValue::Seq(items) => items.as_slice(),
        _ if tools.is_null() => &[],
        _ => {
            errors.push(ConfigError::at(
                &tools.pos,
                path,
                "expected a list of tools",
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let kind = item.get("tool_type").and_then(|e| match &e.value.value {
            NodeValue::Scalar(s) => Some((s.text.as_str(), e)),
            _ => None,
        });
        let Some((kind, kind_entry)) = kind else {
            if item.entries().is_some() {
                errors.push(ConfigError::at(
                    &item.pos,
                    &at,
                    "missing required key \"tool_type\" (builtin, builtin-group, mcp)",
                ));
            } else {
                errors.push(ConfigError::at(&item.pos, &at, "expected a mapping"));
            }
            continue;
        };
        let kind_at = format!("{at}.tool_type");
        match kind {
            "builtin" => {
                let (entry, errs) = from_node_warn::<BuiltinEntry>(item, &at, warnings);
                errors.extend(errs);
                let Some(entry) = entry else { continue };
                let name = entry.tool_name.trim();
                let name_pos = item
                    .get("tool_name")
                    .map_or_else(|| item.pos.clone(), |e| e.value.pos.clone());
                let name_at = format!("{at}.tool_name");
                if BuiltinTool::from_name(name).is_some() {
                    out.push((
                        i,
                        ToolConfig::Builtin {
                            tool_name: name.to_owned(),
                            tool_config: entry.tool_config,
                        },
                    ));
                } else if SAM_BUILTINS.contains(&name) {
                    warnings.push(ConfigError::at(
                        &name_pos,
                        name_at,
                        format!("SAM's built-in tool {name:?} is not supported by amesh, ignored (the agent starts without it)"),
                    ));
                } else {
                    let mut message = unknown_variant_message(name, AMESH_BUILTINS);
                    message = format!("unknown built-in tool: {message}");
                    if let Some(near) = near_miss(name) {
                        message.push_str(&format!("; did you mean {near:?}?"));
                    }
                    errors.push(ConfigError::at(&name_pos, name_at, message));
                }
            }
            "builtin-group" => {
                let (entry, errs) = from_node_warn::<GroupEntry>(item, &at, warnings);
                errors.extend(errs);
                let Some(entry) = entry else { continue };
                if entry.group_name.trim() == ARTIFACT_GROUP {
                    out.extend(BuiltinTool::ARTIFACT_TOOLS.iter().map(|t| {
                        (
                            i,
                            ToolConfig::Builtin {
                                tool_name: t.name().to_owned(),
                                tool_config: None,
                            },
                        )
                    }));
                } else {
                    let pos = item
                        .get("group_name")
                        .map_or_else(|| item.pos.clone(), |e| e.value.pos.clone());
                    warnings.push(ConfigError::at(
                        &pos,
                        format!("{at}.group_name"),
                        format!(
                            "SAM's built-in tool group {:?} is not supported by amesh, ignored (the agent starts without it)",
                            entry.group_name
                        ),
                    ));
                }
            }
            "mcp" => {
                let (mcp, errs) = from_node_warn::<amesh_mcp::tool_config::McpToolConfig>(
                    item, &at, warnings,
                );
                errors.extend(errs);
                if let Some(mcp) = mcp {
                    out.push((i, ToolConfig::Mcp(Box::new(mcp))));
                }
            }
            "python" => warnings.push(ConfigError::at(
                &kind_entry.value.pos,
                kind_at,
                "a SAM Python tool (tool_type: python) is not supported by amesh, ignored (the agent starts without it)",
            )),
            other => errors.push(ConfigError::at(
                &kind_entry.value.pos,
                kind_at,
                unknown_variant_message(other, &["builtin", "builtin-group", "mcp", "python"]),
            )),
        }
    }
    out
}

/// The amesh or SAM built-in `name` is a near miss of, for "did you mean".
fn near_miss(name: &str) -> Option<&'static str> {
    AMESH_BUILTINS
        .iter()
        .chain(SAM_BUILTINS)
        .map(|c| (super::de_error::edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= (name.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
