//! Periodic publishing of a component's card (agent, gateway and trust
//! cards alike).
//!
//! A card is published at start, every interval, and again right after a
//! reconnect (a restarted broker forgets retained messages, and a newcomer
//! should not wait a whole interval). The task is owned by the app and ends
//! with its shutdown token.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, ConnectionEvent, UserProperties};

/// Makes the payload of each publication; `None` skips this round (the
/// closure logs why). Trust cards are signed anew each time, other cards
/// are fixed bytes.
pub type PayloadFn = Box<dyn FnMut() -> Option<Bytes> + Send>;

/// Signs one publication: `(topic, payload)` to the `amesh-signature`
/// property (`None`: unsigned, trust disabled).
pub type SignFn = Box<dyn Fn(&str, &[u8]) -> Option<String> + Send>;

/// What to publish, where, how often.
pub struct CardPublication {
    pub topic: String,
    pub payload: PayloadFn,
    pub interval: Duration,
    pub retain: bool,
    /// Signs each publication (agent cards: receivers take a card for an
    /// agent only from that agent's account).
    pub sign: Option<SignFn>,
}

impl CardPublication {
    /// A card whose bytes never change.
    pub fn fixed(topic: String, payload: Bytes, interval: Duration, retain: bool) -> Self {
        CardPublication {
            topic,
            payload: Box::new(move || Some(payload.clone())),
            interval,
            retain,
            sign: None,
        }
    }

    /// The same publication, each one signed by `sign`.
    pub fn signed_by(mut self, sign: SignFn) -> Self {
        self.sign = Some(sign);
        self
    }
}

/// Publishes `card` until `shutdown`. `republish` wakes it early (e.g. when
/// a new gateway appears and should learn about this agent at once).
pub fn spawn(
    broker: Broker,
    mut card: CardPublication,
    republish: Option<std::sync::Arc<tokio::sync::Notify>>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut events = broker.connection_events();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(card.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let nudge = republish.unwrap_or_default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                _ = nudge.notified() => {}
                ev = events.recv() => match ev {
                    Ok(ConnectionEvent::Connected { .. }) | Err(RecvError::Lagged(_)) => {}
                    Ok(ConnectionEvent::Lost) => continue,
                    Err(RecvError::Closed) => break,
                },
            }
            let Some(payload) = (card.payload)() else {
                continue;
            };
            let mut props = UserProperties::new().with(
                crate::a2a::props::TIMESTAMP,
                amesh_trust::now_unix_millis().to_string(),
            );
            if let Some(signature) = card.sign.as_ref().and_then(|s| s(&card.topic, &payload)) {
                props.push(crate::a2a::props::SIGNATURE, signature);
            }
            if let Err(e) = broker
                .publish(&card.topic, payload, props, card.retain)
                .await
            {
                tracing::warn!(topic = %card.topic, error = %e, "card publish failed");
            }
        }
    })
}
