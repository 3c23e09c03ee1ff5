//! A raw A2A client on the broker, for sending what a gateway never would
//! (malformed payloads, forged tokens) and reading the agent's answer.

use std::time::Duration;

use amesh_runtime::broker::{Broker, DevBus, Incoming, Message, UserProperties};
use amesh_runtime::config::BrokerConfig;
use serde_json::{Value, json};

pub struct RawClient {
    pub broker: Broker,
    pub incoming: Incoming,
    ns: String,
}

impl RawClient {
    /// Connects with `cfg` (give each raw client its own `app` name: it is
    /// part of the client id).
    pub async fn connect(cfg: &BrokerConfig, app: &str, ns: &str) -> anyhow::Result<RawClient> {
        let (broker, incoming) = Broker::connect(cfg, app, &DevBus::new()).await?;
        Ok(RawClient {
            broker,
            incoming,
            ns: ns.to_string(),
        })
    }

    /// Publishes `payload` to `agent`'s request topic with a fresh replyTo
    /// (prepended to `props`) and returns the parsed reply.
    pub async fn request(
        &mut self,
        agent: &str,
        payload: Vec<u8>,
        props: UserProperties,
    ) -> anyhow::Result<Value> {
        let reply = format!(
            "{}/a2a/v1/gateway/response/raw/{}",
            self.ns,
            uuid::Uuid::new_v4().simple()
        );
        self.broker.subscribe(&reply).await?;
        let props = UserProperties(
            [("replyTo".to_string(), reply.clone())]
                .into_iter()
                .chain(props.0)
                .collect(),
        );
        let topic = format!("{}/a2a/v1/agent/request/{agent}", self.ns);
        self.broker.publish(&topic, payload, props, false).await?;
        let msg = self.wait_for(&reply, Duration::from_secs(10)).await?;
        self.broker.unsubscribe(&reply).await?;
        Ok(serde_json::from_slice(&msg.payload)?)
    }

    /// Waits for the next message on exactly `topic`.
    pub async fn wait_for(&mut self, topic: &str, timeout: Duration) -> anyhow::Result<Message> {
        let incoming = &mut self.incoming;
        tokio::time::timeout(timeout, async {
            loop {
                match incoming.recv().await {
                    Some(m) if m.topic == topic => return Ok(m),
                    Some(_) => continue,
                    None => anyhow::bail!("connection closed"),
                }
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("no message on {topic} within {timeout:?}"))?
    }

    pub async fn disconnect(self) {
        self.broker.disconnect().await;
    }
}

/// A `message/send` request running `tool` with `arguments`, id `id`.
pub fn tool_request(id: &str, tool: &str, arguments: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": id, "method": "message/send",
        "params": {"message": {"kind": "message", "messageId": id, "role": "user",
        "parts": [{"kind": "data", "data": {"tool": tool, "arguments": arguments}}]}}}),
    )
    .unwrap_or_default()
}

/// A `tasks/get` request for task `task`.
pub fn get_request(id: &str, task: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tasks/get", "params": {"id": task}}),
    )
    .unwrap_or_default()
}
