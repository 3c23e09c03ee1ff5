//! Every topic string amesh uses, built in one place.
//!
//! The strings are the same as Solace Agent Mesh's so the two can share a
//! broker. Nothing else in the code base formats a topic: callers ask this
//! module, and the ACL model derives its permissions from the same functions,
//! so a topic can never drift from the permission that allows it.

/// Prefix shared by every A2A topic of a namespace.
pub fn base(ns: &str) -> String {
    format!("{}/a2a/v1", ns.trim_end_matches('/'))
}

/// Where agents publish their agent cards.
pub fn agent_discovery(ns: &str) -> String {
    format!("{}/discovery/agentcards", base(ns))
}

/// Where gateways publish their gateway cards.
pub fn gateway_discovery(ns: &str) -> String {
    format!("{}/discovery/gatewaycards", base(ns))
}

/// Requests addressed to one agent.
pub fn agent_request(ns: &str, agent: &str) -> String {
    format!("{}/agent/request/{agent}", base(ns))
}

/// The shared subscription that lets several replicas of one agent split its
/// request stream (each message goes to one replica).
pub fn agent_request_shared(ns: &str, agent: &str) -> String {
    format!("$share/{agent}/{}", agent_request(ns, agent))
}

/// Final response for one task, addressed to the gateway that started it.
pub fn gateway_response(ns: &str, gateway_id: &str, task_id: &str) -> String {
    format!("{}/gateway/response/{gateway_id}/{task_id}", base(ns))
}

/// Status stream for one task, addressed to the gateway that started it.
pub fn gateway_status(ns: &str, gateway_id: &str, task_id: &str) -> String {
    format!("{}/gateway/status/{gateway_id}/{task_id}", base(ns))
}

/// Final response for a sub-task, addressed to the delegating agent.
pub fn agent_response(ns: &str, agent: &str, sub_task_id: &str) -> String {
    format!("{}/agent/response/{agent}/{sub_task_id}", base(ns))
}

/// Status stream for a sub-task, addressed to the delegating agent.
pub fn agent_status(ns: &str, agent: &str, sub_task_id: &str) -> String {
    format!("{}/agent/status/{agent}/{sub_task_id}", base(ns))
}

/// Where one replica of an agent says it has a session on the broker:
/// retained, cleared by the replica's will when the session ends (see
/// `presence`). amesh's own topic; SAM has none.
pub fn agent_presence(ns: &str, agent: &str, replica: &str) -> String {
    format!("{}/presence/agent/{agent}/{replica}", base(ns))
}

/// Filter matching every agent replica's presence topic.
pub fn agent_presence_all(ns: &str) -> String {
    agent_presence(ns, ANY_LEVEL, ANY_LEVEL)
}

/// A client id as one topic level (the replica level of
/// [`agent_presence`]): the characters a level cannot hold become `_`.
pub fn as_level(name: &str) -> String {
    name.replace(['/', '+', '#', '\0'], "_")
}

/// Kind of component that owns a trust card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustKind {
    Gateway,
    Agent,
}

impl TrustKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustKind::Gateway => "gateway",
            TrustKind::Agent => "agent",
        }
    }
}

/// Where a component publishes its (retained) trust card.
pub fn trust(ns: &str, kind: TrustKind, broker_username: &str) -> String {
    format!("{}/trust/{}/{broker_username}", base(ns), kind.as_str())
}

/// Filter matching every trust card of a namespace.
pub fn trust_all(ns: &str) -> String {
    format!("{}/trust/#", base(ns))
}

/// The MQTT single-level wildcard, for filters built from the functions
/// above (`gateway_response(ns, ANY_LEVEL, ANY_LEVEL)`), so permissions are
/// derived from the same code as the topics they allow.
pub const ANY_LEVEL: &str = "+";

/// Filter matching requests to every agent of a namespace (what a gateway,
/// or an agent free to delegate to anyone, may publish on).
pub fn agent_request_any(ns: &str) -> String {
    agent_request(ns, ANY_LEVEL)
}

/// Filter matching the response topics of every gateway: an agent answers
/// whichever gateway asked, so it cannot be narrowed to one id.
pub fn gateway_response_any(ns: &str) -> String {
    gateway_response(ns, ANY_LEVEL, ANY_LEVEL)
}

/// Filter matching the status topics of every gateway.
pub fn gateway_status_any(ns: &str) -> String {
    gateway_status(ns, ANY_LEVEL, ANY_LEVEL)
}

/// Filter matching the sub-task response topics of every agent.
pub fn agent_response_any(ns: &str) -> String {
    agent_response(ns, ANY_LEVEL, ANY_LEVEL)
}

/// Filter matching the sub-task status topics of every agent.
pub fn agent_status_any(ns: &str) -> String {
    agent_status(ns, ANY_LEVEL, ANY_LEVEL)
}

/// Splits a trust topic into (kind, broker username); `None` for anything else.
pub fn parse_trust(ns: &str, topic: &str) -> Option<(TrustKind, String)> {
    let rest = topic.strip_prefix(&format!("{}/trust/", base(ns)))?;
    let (kind, id) = rest.split_once('/')?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let kind = match kind {
        "gateway" => TrustKind::Gateway,
        "agent" => TrustKind::Agent,
        _ => return None,
    };
    Some((kind, id.to_string()))
}

/// Last level of a topic (the task id of response and status topics).
pub fn last_level(topic: &str) -> &str {
    topic.rsplit('/').next().unwrap_or(topic)
}

/// Replaces the last level of a filter-free topic with `+`, turning a
/// per-task topic into the subscription that covers all tasks.
pub fn wildcard_last(topic: &str) -> String {
    match topic.rsplit_once('/') {
        Some((head, _)) => format!("{head}/+"),
        None => "+".to_string(),
    }
}

/// Checks that a name can be used as one topic level: non-empty, and free of
/// `/`, `+`, `#` and NUL, which would let it escape or widen its topic.
pub fn valid_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_solace_agent_mesh_strings() {
        assert_eq!(
            agent_request("a2a/prod", "weather"),
            "a2a/prod/a2a/v1/agent/request/weather"
        );
        assert_eq!(
            gateway_status("ns", "gw1", "t1"),
            "ns/a2a/v1/gateway/status/gw1/t1"
        );
        assert_eq!(agent_discovery("ns"), "ns/a2a/v1/discovery/agentcards");
        assert_eq!(
            trust("ns", TrustKind::Gateway, "gw"),
            "ns/a2a/v1/trust/gateway/gw"
        );
        assert_eq!(
            agent_request_shared("ns", "a"),
            "$share/a/ns/a2a/v1/agent/request/a"
        );
    }

    #[test]
    fn any_filters_widen_only_the_id_levels() {
        assert_eq!(agent_request_any("ns"), "ns/a2a/v1/agent/request/+");
        assert_eq!(gateway_response_any("ns"), "ns/a2a/v1/gateway/response/+/+");
        assert_eq!(gateway_status_any("ns"), "ns/a2a/v1/gateway/status/+/+");
        assert_eq!(agent_response_any("ns"), "ns/a2a/v1/agent/response/+/+");
        assert_eq!(agent_status_any("ns"), "ns/a2a/v1/agent/status/+/+");
    }

    #[test]
    fn trust_topic_parses_back() {
        let t = trust("ns", TrustKind::Agent, "bob");
        assert_eq!(
            parse_trust("ns", &t),
            Some((TrustKind::Agent, "bob".into()))
        );
        assert_eq!(parse_trust("ns", "ns/a2a/v1/trust/agent/a/b"), None);
        assert_eq!(parse_trust("ns", "ns/a2a/v1/trust/robot/a"), None);
        assert_eq!(parse_trust("other", &t), None);
    }

    #[test]
    fn wildcard_and_levels() {
        assert_eq!(
            wildcard_last(&gateway_response("ns", "g", "t")),
            "ns/a2a/v1/gateway/response/g/+"
        );
        assert_eq!(last_level("a/b/c"), "c");
        assert!(valid_level("agent_1"));
        assert!(!valid_level("a/b"));
        assert!(!valid_level("#"));
        assert!(!valid_level(""));
    }
}
