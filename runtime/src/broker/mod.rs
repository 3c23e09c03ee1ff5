//! The broker layer: one handle type over two transports.
//!
//! Apps talk to a [`Broker`]; whether it is an MQTT v5 connection (paho) or
//! the in-process dev bus is decided by the `broker:` config and invisible to
//! them. Both give the same guarantees the apps rely on: MQTT topic-filter
//! semantics (`+`, `#`, `$share/`), retained messages, user properties, and a
//! publish that reports a refusal by the broker as a typed error.

pub mod dev;
pub mod filter;
pub mod mqtt;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use crate::config::BrokerConfig;

pub use dev::DevBus;

/// MQTT v5 user properties of a message, in order. Names may repeat on the
/// wire; [`UserProperties::get`] returns the first. `Debug` hides the value
/// of `authToken` (the identity JWT).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserProperties(pub Vec<(String, String)>);

impl std::fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(name, value)| {
                let value = if name.eq_ignore_ascii_case("authToken") {
                    "[redacted]"
                } else {
                    value
                };
                (name, value)
            }))
            .finish()
    }
}

impl UserProperties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a property (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.push((name.to_string(), value.into()));
        self
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A message received from the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub props: UserProperties,
    /// True when the broker delivered a stored retained message.
    pub retained: bool,
}

/// Why a publish did not reach the broker's subscribers.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// PUBACK reason code 0x87: the broker's ACL forbids this client to
    /// publish on the topic.
    #[error("broker refused publish on `{topic}`: not authorized (reason code 0x87)")]
    NotAuthorized { topic: String },
    /// Any other PUBACK reason code >= 0x80.
    #[error("broker refused publish on `{topic}`: reason code {code:#04x} ({reason})")]
    Refused {
        topic: String,
        code: u8,
        reason: String,
    },
    /// The client is not connected and could not deliver in time.
    #[error("not connected to the broker: {0}")]
    Disconnected(String),
    /// The topic is not a valid publish topic (empty, wildcards).
    #[error("invalid topic `{0}`")]
    InvalidTopic(String),
    #[error("publish failed: {0}")]
    Other(String),
}

impl PublishError {
    /// A short, fixed name of the variant (for a span's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::NotAuthorized { .. } => "not_authorized",
            PublishError::Refused { .. } => "refused",
            PublishError::Disconnected(_) => "disconnected",
            PublishError::InvalidTopic(_) => "invalid_topic",
            PublishError::Other(_) => "publish_failed",
        }
    }
}

/// Connecting or subscribing failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker config: {0}")]
    Config(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("subscribe to `{filter}` failed: {reason}")]
    Subscribe { filter: String, reason: String },
    #[error("broker: {0}")]
    Other(String),
}

/// Environment variable naming this process among the replicas of the
/// same app (`weather-1`, a pod name, a hostname). Replicas run one config,
/// so without it they would derive one client id, and the broker lets one
/// connection hold a client id: each would keep kicking the other off
/// (paho has aborted with a double free in that fight). Unset for a single
/// replica, so its id, and the broker session kept under it, stay as they were.
pub const REPLICA_ID_ENV: &str = "AMESH_REPLICA_ID";

/// This process's replica id from [`REPLICA_ID_ENV`], if set and not blank.
/// Explicit rather than a hostname or pid by default: the id must stay the
/// same across restarts for the broker to keep the replica's session.
pub fn replica_id() -> Option<String> {
    std::env::var(REPLICA_ID_ENV)
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The MQTT client id an app connects with: [`client_id_for`] with this
/// process's [`replica_id`].
pub fn client_id(cfg: &BrokerConfig, app: &str) -> String {
    client_id_for(cfg, app, replica_id().as_deref())
}

/// The MQTT client id of `app` in replica `replica`: `client_id` from its
/// `broker:` block, else `{broker_username or app}-{app}` limited to
/// characters every broker accepts, then `-{replica}` when there is one.
/// Stable across restarts so the broker keeps the session.
///
/// The one place ids are derived: the MQTT client connects with it and
/// `amesh acl generate` binds each broker account to it, so the two cannot
/// disagree.
pub fn client_id_for(cfg: &BrokerConfig, app: &str, replica: Option<&str>) -> String {
    let base = match &cfg.client_id {
        Some(id) => id.clone(),
        None => sanitized(&format!(
            "{}-{app}",
            cfg.broker_username.as_deref().unwrap_or(app)
        )),
    };
    match replica {
        Some(replica) => format!("{base}-{}", sanitized(replica)),
        None => base,
    }
}

fn sanitized(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Connection state changes, for apps that must act on them (re-publish
/// cards after the broker lost its retained store, for example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// (Re)connected. `session_present` is false when the broker kept no
    /// session: subscriptions were restored by the broker layer itself, but
    /// retained messages the app published may be gone.
    Connected { session_present: bool },
    /// The connection dropped; the layer is reconnecting with backoff.
    Lost,
}

/// Receives every message delivered to one broker handle's subscriptions.
pub type Incoming = mpsc::Receiver<Message>;

/// A connected broker client. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub enum Broker {
    Mqtt(mqtt::MqttClient),
    Dev(dev::DevClient),
}

impl Broker {
    /// Connects as configured in `cfg` (`dev_mode` picks `dev_bus`). `app`
    /// is the app name, used for the default client id.
    pub async fn connect(
        cfg: &BrokerConfig,
        app: &str,
        dev_bus: &DevBus,
    ) -> Result<(Broker, Incoming), BrokerError> {
        Self::connect_present(cfg, app, dev_bus, None).await
    }

    /// [`Broker::connect`] for an agent replica that announces itself on
    /// `presence` (see `crate::presence`): a will clears it when the
    /// session ends, and every (re)connect publishes it again. The dev bus
    /// has no sessions and announces nothing.
    pub async fn connect_present(
        cfg: &BrokerConfig,
        app: &str,
        dev_bus: &DevBus,
        presence: Option<String>,
    ) -> Result<(Broker, Incoming), BrokerError> {
        if cfg.dev_mode {
            let (client, rx) = dev_bus.client(app, cfg.broker_username.as_deref());
            Ok((Broker::Dev(client), rx))
        } else {
            let (client, rx) = mqtt::MqttClient::connect(cfg, app, presence).await?;
            Ok((Broker::Mqtt(client), rx))
        }
    }

    /// Publishes with QoS 1 and waits for the broker's acknowledgement.
    /// A PUBACK reason code >= 0x80 is an error; 0x10 (no matching
    /// subscribers) is success.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        props: UserProperties,
        retain: bool,
    ) -> Result<(), PublishError> {
        match self {
            Broker::Mqtt(c) => c.publish(topic, payload.into(), props, retain).await,
            Broker::Dev(c) => c.publish(topic, payload.into(), props, retain).await,
        }
    }

    /// Subscribes with QoS 1. The subscription is remembered and restored
    /// after a reconnect to a broker that lost the session.
    pub async fn subscribe(&self, filter: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Mqtt(c) => c.subscribe(filter).await,
            Broker::Dev(c) => c.subscribe(filter).await,
        }
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Mqtt(c) => c.unsubscribe(filter).await,
            Broker::Dev(c) => c.unsubscribe(filter).await,
        }
    }

    /// Connection state changes from now on.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        match self {
            Broker::Mqtt(c) => c.connection_events(),
            Broker::Dev(c) => c.connection_events(),
        }
    }

    /// The username this client authenticated as (dev bus: the configured
    /// one, or the app name). Trust topics are keyed by it.
    pub fn username(&self) -> &str {
        match self {
            Broker::Mqtt(c) => c.username(),
            Broker::Dev(c) => c.username(),
        }
    }

    /// Disconnects cleanly; queued publishes are flushed first.
    pub async fn disconnect(&self) {
        match self {
            Broker::Mqtt(c) => c.disconnect().await,
            Broker::Dev(c) => c.disconnect().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_configured_or_stable_and_sanitized() {
        let mut cfg = BrokerConfig {
            broker_username: Some("agent-1".into()),
            ..BrokerConfig::default()
        };
        assert_eq!(client_id_for(&cfg, "weather", None), "agent-1-weather");
        cfg.broker_username = None;
        assert_eq!(client_id_for(&cfg, "my app/x", None), "my_app_x-my_app_x");
        cfg.client_id = Some("replica 7".into());
        assert_eq!(client_id_for(&cfg, "weather", None), "replica 7");
    }

    #[test]
    fn replicas_of_one_app_get_distinct_stable_client_ids() {
        let cfg = BrokerConfig {
            broker_username: Some("agent-1".into()),
            ..BrokerConfig::default()
        };
        let a = client_id_for(&cfg, "weather", Some("pod-a"));
        let b = client_id_for(&cfg, "weather", Some("pod b"));
        assert_eq!(a, "agent-1-weather-pod-a");
        assert_eq!(b, "agent-1-weather-pod_b");
        assert_eq!(a, client_id_for(&cfg, "weather", Some("pod-a")), "stable");
    }

    #[test]
    fn debug_of_user_properties_hides_the_identity_token() {
        let props = UserProperties::new()
            .with("replyTo", "a/b")
            .with("authToken", "eyJhbGciOiJFUzI1NiJ9.secret");
        let text = format!("{props:?}");
        assert!(text.contains("a/b"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
