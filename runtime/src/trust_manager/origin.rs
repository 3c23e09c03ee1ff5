//! Who sent a reply or an agent card.
//!
//! The broker lets every agent publish on every gateway's (and every
//! delegating agent's) response and status topics — an agent answers
//! whoever asked — and on the one discovery topic all agents share. So a
//! component signs what it publishes there with its trust key (the
//! `amesh-signature` user property, see [`amesh_trust::verify_message`]),
//! and the receiver decides by the signer:
//!
//! - an agent card for agent X counts only if signed by an account that
//!   speaks for X: X's own trust card id, or the first account that signed a
//!   card for X while its trust card lives ([`TrustRegistry::bind_agent_name`]);
//! - an answer to a request sent to X counts only if signed by that account.
//!
//! Agents with the trust manager off sign nothing. A `permissive` receiver
//! still lists them and takes their unsigned answers — but never an
//! unsigned answer or card for an agent that has proven its account. A
//! `strict` receiver lists only agents that sign.
//!
//! [`TrustRegistry::bind_agent_name`]: amesh_trust::TrustRegistry::bind_agent_name

use amesh_trust::{ComponentKind, MessageError, now_unix, verify_message};

use super::TrustManager;
use crate::a2a::{AgentCard, props};
use crate::broker::Message;

/// Why an answer was not taken from the broker.
#[derive(Debug, thiserror::Error)]
pub enum AnswerRefused {
    /// The signature is missing or does not verify.
    #[error("{0}")]
    Signature(#[from] MessageError),
    /// Signed, but by another account than the asked agent's.
    #[error("signed by account {found:?}, not by {expected:?}, the account of agent {agent:?}")]
    WrongSender {
        /// The agent that was asked.
        agent: String,
        /// The account that speaks for it.
        expected: String,
        /// The account that signed.
        found: String,
    },
    /// Signed by a gateway's key.
    #[error("signed by {component}, which is not an agent")]
    NotAnAgent {
        /// The signer as `{type}/{id}`.
        component: String,
    },
    /// Strict mode, and the asked agent never proved its account.
    #[error(
        "agent {agent:?} has no account we know (no signed agent card seen); strict mode takes no answer from it"
    )]
    UnknownAccount {
        /// The agent that was asked.
        agent: String,
    },
}

impl TrustManager {
    /// Whether `msg`, an answer on one of our reply topics to a request we
    /// sent to `agent`, really comes from `agent`.
    pub fn check_answer(&self, msg: &Message, agent: &str) -> Result<(), AnswerRefused> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let account = self.registry.agent_account(agent);
        let signature = msg.props.get(props::SIGNATURE);
        if signature.is_none() && account.is_none() && !self.strict() {
            // An agent that signs nothing (trust off there): permissive.
            return Ok(());
        }
        let origin = verify_message(
            &self.registry,
            signature,
            &msg.topic,
            &msg.payload,
            now_unix(),
        )?;
        if origin.kind != ComponentKind::Agent {
            return Err(AnswerRefused::NotAnAgent {
                component: format!("{}/{}", origin.kind, origin.component_id),
            });
        }
        match account {
            Some(account) if account == origin.component_id => Ok(()),
            Some(account) => Err(AnswerRefused::WrongSender {
                agent: agent.to_string(),
                expected: account,
                found: origin.component_id,
            }),
            None if self.strict() => Err(AnswerRefused::UnknownAccount {
                agent: agent.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The agent card in `msg` (from the discovery topic), if it counts:
    /// see the module documentation. Refusals are logged.
    pub fn accept_agent_card(&self, msg: &Message) -> Option<AgentCard> {
        let card: AgentCard = match serde_json::from_slice(&msg.payload) {
            Ok(card) => card,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable agent card ignored");
                return None;
            }
        };
        if !crate::topics::valid_level(&card.name) {
            tracing::debug!("agent card with an invalid name ignored");
            return None;
        }
        if !self.cfg.enabled {
            return Some(card);
        }
        let signature = msg.props.get(props::SIGNATURE);
        let refuse = |why: &dyn std::fmt::Display| {
            tracing::warn!(component = %self.name, agent = %card.name, reason = %why,
                "agent card ignored");
        };
        let origin = match verify_message(
            &self.registry,
            signature,
            &msg.topic,
            &msg.payload,
            now_unix(),
        ) {
            Ok(origin) => origin,
            Err(MessageError::Unsigned) => {
                if let Some(account) = self.registry.agent_account(&card.name) {
                    refuse(&format_args!(
                        "unsigned, but account {account:?} speaks for this agent and signs its cards"
                    ));
                    return None;
                }
                if self.strict() {
                    refuse(&"unsigned, and strict mode lists only agents that sign their cards");
                    return None;
                }
                tracing::debug!(agent = %card.name, "unsigned agent card accepted (permissive)");
                return Some(card);
            }
            Err(e) => {
                refuse(&e);
                return None;
            }
        };
        if origin.kind != ComponentKind::Agent {
            refuse(&format_args!(
                "signed by {}/{}",
                origin.kind, origin.component_id
            ));
            return None;
        }
        match self
            .registry
            .bind_agent_name(&card.name, &origin.component_id)
        {
            Ok(_) => Some(card),
            Err(e) => {
                refuse(&e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::broker::UserProperties;
    use crate::config::{TrustManagerConfig, VerificationMode};

    const NS: &str = "a2a/test";

    fn manager(kind: ComponentKind, id: &str, mode: VerificationMode) -> Arc<TrustManager> {
        let cfg = TrustManagerConfig {
            verification_mode: mode,
            ..TrustManagerConfig::default()
        };
        TrustManager::new(
            &cfg,
            kind,
            id,
            NS,
            id,
            super::super::DelegationLimits::default(),
        )
        .expect("trust manager")
    }

    /// `receiver` learns `sender`'s trust card, as from the broker.
    fn introduce(receiver: &TrustManager, sender: &TrustManager) {
        let kind = match sender.kind {
            ComponentKind::Gateway => crate::topics::TrustKind::Gateway,
            ComponentKind::Agent => crate::topics::TrustKind::Agent,
        };
        let msg = Message {
            topic: crate::topics::trust(NS, kind, &sender.id),
            payload: sender.card(now_unix()).expect("card"),
            props: UserProperties::new(),
            retained: true,
        };
        assert!(receiver.on_message(&msg));
    }

    fn message(topic: &str, payload: &[u8], by: Option<&TrustManager>) -> Message {
        let mut props = UserProperties::new();
        if let Some(sender) = by {
            props.push(
                props::SIGNATURE,
                sender.sign_message(topic, payload).expect("signed"),
            );
        }
        Message {
            topic: topic.to_string(),
            payload: Bytes::copy_from_slice(payload),
            props,
            retained: false,
        }
    }

    fn card(name: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "protocolVersion": "0.3.0", "name": name, "description": "d", "url": "u",
            "version": "1", "capabilities": {"streaming": true, "pushNotifications": false,
            "stateTransitionHistory": false}
        }))
        .expect("json")
    }

    const REPLY: &str = "a2a/test/a2a/v1/gateway/response/gw/task-1";

    #[test]
    fn only_the_asked_agents_account_may_answer() {
        let gateway = manager(ComponentKind::Gateway, "gw", VerificationMode::Permissive);
        let alpha = manager(ComponentKind::Agent, "alpha", VerificationMode::Strict);
        let mallory = manager(ComponentKind::Agent, "mallory", VerificationMode::Strict);
        introduce(&gateway, &alpha);
        introduce(&gateway, &mallory);
        let body = br#"{"jsonrpc":"2.0","id":"task-1","result":{}}"#;
        assert!(
            gateway
                .check_answer(&message(REPLY, body, Some(&alpha)), "alpha")
                .is_ok()
        );
        assert!(matches!(
            gateway.check_answer(&message(REPLY, body, Some(&mallory)), "alpha"),
            Err(AnswerRefused::WrongSender { ref found, .. }) if found == "mallory"
        ));
        assert!(matches!(
            gateway.check_answer(&message(REPLY, body, None), "alpha"),
            Err(AnswerRefused::Signature(MessageError::Unsigned))
        ));
        // alpha's signature on another task's topic does not carry over.
        let signed = message(
            "a2a/test/a2a/v1/gateway/response/gw/task-2",
            body,
            Some(&alpha),
        );
        let moved = Message {
            topic: REPLY.to_string(),
            ..signed
        };
        assert!(matches!(
            gateway.check_answer(&moved, "alpha"),
            Err(AnswerRefused::Signature(MessageError::TopicMismatch { .. }))
        ));
    }

    #[test]
    fn an_agent_that_never_signed_is_answered_for_only_in_permissive_mode() {
        let permissive = manager(ComponentKind::Gateway, "gw", VerificationMode::Permissive);
        let strict = manager(ComponentKind::Gateway, "gw2", VerificationMode::Strict);
        let unsigned = message(REPLY, b"{}", None);
        assert!(permissive.check_answer(&unsigned, "legacy").is_ok());
        assert!(matches!(
            strict.check_answer(&unsigned, "legacy"),
            Err(AnswerRefused::Signature(MessageError::Unsigned))
        ));
    }

    #[test]
    fn a_card_counts_only_from_the_account_that_speaks_for_its_agent() {
        let topic = crate::topics::agent_discovery(NS);
        let gateway = manager(ComponentKind::Gateway, "gw", VerificationMode::Permissive);
        let alpha = manager(ComponentKind::Agent, "alpha", VerificationMode::Strict);
        let mallory = manager(ComponentKind::Agent, "mallory", VerificationMode::Strict);
        introduce(&gateway, &alpha);
        introduce(&gateway, &mallory);
        let accepted = |payload: &[u8], by: Option<&TrustManager>| {
            gateway
                .accept_agent_card(&message(&topic, payload, by))
                .map(|c| c.name)
        };
        assert_eq!(
            accepted(&card("alpha"), Some(&alpha)).as_deref(),
            Some("alpha")
        );
        assert_eq!(accepted(&card("alpha"), Some(&mallory)), None);
        assert_eq!(
            accepted(&card("alpha"), None),
            None,
            "alpha signs its cards"
        );
        // A name nobody holds goes to the first account that signs for it.
        assert_eq!(
            accepted(&card("newbie"), Some(&mallory)).as_deref(),
            Some("newbie")
        );
        assert_eq!(accepted(&card("newbie"), Some(&alpha)), None);
        // Permissive: an agent that signs nothing is still listed; strict is not.
        assert_eq!(accepted(&card("legacy"), None).as_deref(), Some("legacy"));
        let strict = manager(ComponentKind::Gateway, "gw2", VerificationMode::Strict);
        assert!(
            strict
                .accept_agent_card(&message(&topic, &card("legacy"), None))
                .is_none()
        );
    }
}
