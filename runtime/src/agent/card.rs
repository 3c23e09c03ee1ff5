//! The agent card this agent publishes on the discovery topic.
//!
//! Signed with the agent's trust key (receivers take a card for this agent
//! only from its account), and naming, in `metadata.amesh`, the account and
//! the `inter_agent_communication` policy, so a peer can compare a
//! delegation it receives with what this agent says it may do.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::AgentInner;
use crate::a2a::{AgentCapabilities, AgentCard, AgentSkill, PROTOCOL_VERSION};
use crate::cards::CardPublication;
use crate::topics;

pub(super) fn build(inner: &AgentInner) -> AgentCard {
    let cfg = &inner.cfg;
    let mut skills: Vec<AgentSkill> = cfg
        .agent_card
        .skills
        .iter()
        .map(|s| AgentSkill {
            id: s.id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            tags: s.tags.clone(),
            examples: s.examples.clone(),
        })
        .collect();
    if skills.is_empty() {
        skills = inner
            .tools
            .iter()
            .map(|t| AgentSkill {
                id: t.name().to_string(),
                name: t.name().to_string(),
                description: t.description().to_string(),
                tags: vec!["tool".to_string()],
                examples: vec![],
            })
            .collect();
    }
    if cfg.agent_card.skills.is_empty() {
        skills.extend(
            inner
                .mcp_names()
                .into_iter()
                .map(|(name, description)| AgentSkill {
                    id: name.clone(),
                    name,
                    description,
                    tags: vec!["tool".to_string(), "mcp".to_string()],
                    examples: vec![],
                }),
        );
    }
    let mut tools: Vec<String> = inner.tools.iter().map(|t| t.name().to_string()).collect();
    tools.extend(inner.mcp_names().into_iter().map(|(name, _)| name));
    AgentCard {
        protocol_version: PROTOCOL_VERSION.to_string(),
        name: inner.name.clone(),
        display_name: cfg.display_name.clone(),
        description: cfg.agent_card.description.clone().unwrap_or_default(),
        url: format!("mqtt://{}", topics::agent_request(&inner.ns, &inner.name)),
        version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: AgentCapabilities {
            streaming: cfg.supports_streaming,
            push_notifications: false,
            state_transition_history: false,
        },
        default_input_modes: cfg
            .agent_card
            .default_input_modes
            .clone()
            .unwrap_or_else(|| vec!["text".into(), "data".into()]),
        default_output_modes: cfg
            .agent_card
            .default_output_modes
            .clone()
            .unwrap_or_else(|| vec!["text".into(), "data".into()]),
        skills,
        metadata: json!({ "amesh": {
            "tools": tools,
            "namespace": inner.ns,
            "broker_username": inner.broker.username(),
            // `liveness::CARD_KEY`: streamed tasks send heartbeats.
            "heartbeat_seconds": crate::a2a::liveness::HEARTBEAT_INTERVAL.as_secs(),
            "inter_agent_communication": {
                "allow_list": cfg.inter_agent_communication.allow_list,
                "deny_list": cfg.inter_agent_communication.deny_list,
            },
        } })
        .as_object()
        .cloned(),
    }
}

/// The delegation policy `card` publishes: (allow list, deny list).
pub(super) fn published_policy(card: &AgentCard) -> Option<(Vec<String>, Vec<String>)> {
    let policy = card
        .metadata
        .as_ref()?
        .get("amesh")?
        .get("inter_agent_communication")?;
    let list = |name| -> Option<Vec<String>> {
        policy
            .get(name)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    Some((list("allow_list")?, list("deny_list")?))
}

pub(super) fn publication(inner: &AgentInner) -> CardPublication {
    let trust = inner.trust.clone();
    CardPublication::fixed(
        topics::agent_discovery(&inner.ns),
        Bytes::from(serde_json::to_vec(&build(inner)).unwrap_or_default()),
        Duration::from_secs(inner.cfg.agent_card_publishing.interval_seconds.max(1)),
        false,
    )
    .signed_by(Box::new(move |topic, payload| {
        trust.sign_message(topic, payload)
    }))
}
