//! Liveness of streamed tasks, an amesh extension to A2A over MQTT.
//!
//! A task's answers come over the broker from whichever replica took the
//! request; if that process dies (SIGKILL, a lost host) the requester hears
//! nothing more, and without this would wait the whole request timeout (10
//! minutes by default) before telling its user anything. So an agent that
//! runs a streamed task sends a `working` status update marked
//! `metadata.amesh_event: heartbeat` every [`HEARTBEAT_INTERVAL`], and
//! says so in its card (`metadata.amesh.heartbeat_seconds`). A requester
//! that sees that promise fails a `submitted` or `working` task after
//! [`MISSED_HEARTBEATS`] intervals of silence, with a reason. The same
//! limit bounds the wait for the first word: a request the broker had
//! nobody to deliver to (no replica connected, no session left to queue
//! it, as after a broker restart without persistence) fails after it
//! instead of after the request timeout. (MQTT v5 lets the broker say so
//! at once, PUBACK 0x10, and Mosquitto does; but the Paho C library under
//! paho-mqtt leaves the reason code out of a successful publish's answer,
//! so amesh cannot see it.) A task paused
//! for its user (`auth-required`, `input-required`) has no process behind
//! it, sends nothing, and is not timed this way.
//!
//! Why heartbeats rather than an MQTT Last Will per agent connection: the
//! requester does not know which replica took a request from the shared
//! subscription until it answers, and a will says nothing about a process
//! that is alive but wedged. A heartbeat needs no state beyond one timer in
//! the recorder that already exists per task, and no new topic or ACL entry.
//! Agents that make no promise (Solace Agent Mesh, older amesh) are waited
//! for as before.

use std::time::Duration;

use super::AgentCard;

/// How often an agent says a streamed task it runs is still running.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Intervals without a word after which a requester gives up on a task.
pub const MISSED_HEARTBEATS: u32 = 4;

/// The key under the card's `metadata.amesh` naming the interval, seconds.
pub const CARD_KEY: &str = "heartbeat_seconds";

/// `metadata.amesh_event` of a heartbeat status update.
pub const HEARTBEAT_EVENT: &str = "heartbeat";

/// How long a requester waits without a word from `card`'s agent about a
/// running streamed task: `None` when the card promises no heartbeats.
pub fn silence_limit(card: &AgentCard) -> Option<Duration> {
    let secs = card
        .metadata
        .as_ref()?
        .get("amesh")?
        .get(CARD_KEY)?
        .as_u64()
        .filter(|s| (1..=3600).contains(s))?;
    Some(Duration::from_secs(secs) * MISSED_HEARTBEATS)
}

/// Whether a status update's metadata marks it as a heartbeat.
pub fn is_heartbeat(metadata: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
    metadata
        .and_then(|m| m.get("amesh_event"))
        .and_then(|v| v.as_str())
        == Some(HEARTBEAT_EVENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(metadata: serde_json::Value) -> AgentCard {
        let mut card: AgentCard = serde_json::from_value(serde_json::json!({
            "protocolVersion": "0.3.0", "name": "a", "url": "", "version": "1",
            "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": [], "skills": []
        }))
        .expect("card");
        card.metadata = metadata.as_object().cloned();
        card
    }

    #[test]
    fn only_a_card_that_promises_heartbeats_gets_a_silence_limit() {
        let promised = card(serde_json::json!({"amesh": {"heartbeat_seconds": 5}}));
        assert_eq!(silence_limit(&promised), Some(Duration::from_secs(20)));
        assert_eq!(silence_limit(&card(serde_json::json!({"amesh": {}}))), None);
        assert_eq!(silence_limit(&card(serde_json::Value::Null)), None);
        let absurd = card(serde_json::json!({"amesh": {"heartbeat_seconds": 0}}));
        assert_eq!(silence_limit(&absurd), None);
    }
}
