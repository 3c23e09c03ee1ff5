//! The in-process dev bus: a small MQTT-like broker inside one process.
//!
//! `amesh run` on a fresh machine starts every app of the config in one
//! process; with `broker: {dev_mode: true}` they talk through a [`DevBus`]
//! instead of a real broker. It keeps the broker semantics the apps rely on:
//! topic filters (`+`, `#`, `$`-topics), `$share/{group}/{filter}` (round
//! robin within the group), retained messages (an empty retained payload
//! clears; delivered on subscribe with `retained: true`), one delivery per
//! client however many of its subscriptions match, user properties kept in
//! order, and per publisher/subscriber ordering.
//!
//! Routing state sits behind one `std::sync::RwLock` that is held only while
//! picking the receivers of a message, never across an await. Delivery then
//! goes straight into each receiver's bounded `mpsc` channel.
//!
//! **Slow subscribers.** A publish first tries a non-blocking send; if a
//! receiver's channel is full it waits for room, but at most
//! [`DevBusOptions::slow_subscriber_timeout`]. After that the message is
//! dropped *for that receiver only* and an error is logged, the way a real
//! broker drops QoS 1 messages beyond its queue limit for a client that
//! does not read. So a stuck app slows its publishers down for a bounded time
//! but cannot stop the bus, and a publisher never deadlocks on a receiver
//! that is itself waiting for that publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::filter::{self, Subscription};
use super::{BrokerError, ConnectionEvent, Incoming, Message, PublishError, UserProperties};

/// Tuning of a [`DevBus`].
#[derive(Debug, Clone, Copy)]
pub struct DevBusOptions {
    /// Capacity of each client's [`Incoming`] channel.
    pub channel_capacity: usize,
    /// How long a publish waits for room in one full receiver before it
    /// drops the message for that receiver.
    pub slow_subscriber_timeout: Duration,
}

impl Default for DevBusOptions {
    fn default() -> Self {
        Self {
            channel_capacity: 4096,
            slow_subscriber_timeout: Duration::from_secs(5),
        }
    }
}

/// Handle to one in-process bus. Cloning is shallow: clones share the bus.
#[derive(Clone, Default)]
pub struct DevBus {
    inner: Arc<Bus>,
}

#[derive(Default)]
struct Bus {
    options: DevBusOptions,
    next_client: AtomicU64,
    routes: RwLock<Routes>,
}

type ClientId = u64;

/// Who receives what. Only ever locked for short, synchronous sections.
#[derive(Default)]
struct Routes {
    clients: HashMap<ClientId, ClientRoutes>,
    /// Shared subscriptions, keyed by (group, filter).
    groups: HashMap<(String, String), Group>,
    /// Retained message per topic.
    retained: HashMap<String, RetainedMessage>,
}

struct ClientRoutes {
    tx: mpsc::Sender<Message>,
    /// Plain (non-shared) filters, in subscription order.
    filters: Vec<String>,
}

struct Group {
    members: Vec<ClientId>,
    next: AtomicUsize,
}

struct RetainedMessage {
    payload: Bytes,
    props: UserProperties,
}

impl DevBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_options(options: DevBusOptions) -> Self {
        Self {
            inner: Arc::new(Bus {
                options,
                next_client: AtomicU64::new(0),
                routes: RwLock::default(),
            }),
        }
    }

    /// Connects a client. `username` defaults to `app`; it is what
    /// [`DevClient::username`] reports (trust topics are keyed by it).
    pub fn client(&self, app: &str, username: Option<&str>) -> (DevClient, Incoming) {
        let id = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.inner.options.channel_capacity.max(1));
        self.inner.write().clients.insert(
            id,
            ClientRoutes {
                tx,
                filters: Vec::new(),
            },
        );
        let (events, _) = broadcast::channel(16);
        let client = DevClient {
            inner: Arc::new(ClientInner {
                bus: self.clone(),
                id,
                username: username.unwrap_or(app).to_string(),
                events,
                disconnected: AtomicBool::new(false),
            }),
        };
        (client, rx)
    }
}

impl Bus {
    fn read(&self) -> RwLockReadGuard<'_, Routes> {
        // Routing state stays consistent even if a holder panicked: every
        // section under the lock is a single map operation.
        self.routes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove_client(&self, id: ClientId) {
        let mut routes = self.write();
        routes.clients.remove(&id);
        routes.groups.retain(|_, group| {
            group.members.retain(|m| *m != id);
            !group.members.is_empty()
        });
    }

    /// Sends `msg` to each receiver, waiting a bounded time on full ones.
    async fn deliver(&self, mut targets: Vec<mpsc::Sender<Message>>, msg: Message) {
        let last = targets.pop();
        for tx in targets {
            self.send_one(tx, msg.clone()).await;
        }
        if let Some(tx) = last {
            self.send_one(tx, msg).await;
        }
    }

    async fn send_one(&self, tx: mpsc::Sender<Message>, msg: Message) {
        match tx.try_send(msg) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let timeout = self.options.slow_subscriber_timeout;
                let topic = msg.topic.clone();
                match tokio::time::timeout(timeout, tx.send(msg)).await {
                    Ok(_) => {}
                    Err(_) => tracing::error!(
                        topic,
                        ?timeout,
                        "dev bus: a subscriber did not read its messages in time; message dropped for it"
                    ),
                }
            }
        }
    }
}

/// One app's connection to a [`DevBus`]. Cloning is shallow; the client
/// leaves the bus when the last clone is dropped or on [`disconnect`].
///
/// [`disconnect`]: DevClient::disconnect
#[derive(Clone)]
pub struct DevClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    bus: DevBus,
    id: ClientId,
    username: String,
    /// Never sent on (the bus cannot drop a connection); kept so receivers
    /// stay open for the life of the client.
    events: broadcast::Sender<ConnectionEvent>,
    disconnected: AtomicBool,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.bus.inner.remove_client(self.id);
    }
}

impl DevClient {
    /// Publishes to every matching subscription. Returns once the message
    /// is in every receiver's channel (or dropped for a receiver that stayed
    /// full, see the module docs).
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        props: UserProperties,
        retain: bool,
    ) -> Result<(), PublishError> {
        let payload = payload.into();
        filter::validate_topic(topic).map_err(|_| PublishError::InvalidTopic(topic.to_string()))?;
        self.check_connected()
            .map_err(|e| PublishError::Disconnected(e.to_string()))?;
        let bus = &self.inner.bus.inner;
        let targets = if retain {
            let mut routes = bus.write();
            if payload.is_empty() {
                routes.retained.remove(topic);
            } else {
                routes.retained.insert(
                    topic.to_string(),
                    RetainedMessage {
                        payload: payload.clone(),
                        props: props.clone(),
                    },
                );
            }
            routes.targets(topic)
        } else {
            bus.read().targets(topic)
        };
        if targets.is_empty() {
            return Ok(());
        }
        let msg = Message {
            topic: topic.to_string(),
            payload,
            props,
            retained: false,
        };
        bus.deliver(targets, msg).await;
        Ok(())
    }

    /// Subscribes; a plain filter also delivers the matching retained
    /// messages (flagged `retained: true`). Subscribing twice is harmless.
    pub async fn subscribe(&self, filter: &str) -> Result<(), BrokerError> {
        let sub = Subscription::parse(filter).map_err(|e| BrokerError::Subscribe {
            filter: filter.to_string(),
            reason: format!("filter {e}"),
        })?;
        self.check_connected().map_err(|e| BrokerError::Subscribe {
            filter: filter.to_string(),
            reason: e.to_string(),
        })?;
        let bus = &self.inner.bus.inner;
        let id = self.inner.id;
        let (tx, retained) = {
            let mut routes = bus.write();
            if let Some(group) = sub.group {
                let key = (group.to_string(), sub.filter.to_string());
                let group = routes.groups.entry(key).or_insert_with(|| Group {
                    members: Vec::new(),
                    next: AtomicUsize::new(0),
                });
                if !group.members.contains(&id) {
                    group.members.push(id);
                }
                // MQTT sends no retained messages to shared subscriptions.
                return Ok(());
            }
            let Some(client) = routes.clients.get_mut(&id) else {
                return Err(BrokerError::Subscribe {
                    filter: filter.to_string(),
                    reason: "dev bus client disconnected".into(),
                });
            };
            if !client.filters.iter().any(|f| f == filter) {
                client.filters.push(filter.to_string());
            }
            let tx = client.tx.clone();
            let retained: Vec<Message> = routes
                .retained
                .iter()
                .filter(|(topic, _)| filter::matches(filter, topic))
                .map(|(topic, m)| Message {
                    topic: topic.clone(),
                    payload: m.payload.clone(),
                    props: m.props.clone(),
                    retained: true,
                })
                .collect();
            (tx, retained)
        };
        for msg in retained {
            bus.send_one(tx.clone(), msg).await;
        }
        Ok(())
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), BrokerError> {
        let sub = Subscription::parse(filter).map_err(|e| BrokerError::Subscribe {
            filter: filter.to_string(),
            reason: format!("filter {e}"),
        })?;
        let id = self.inner.id;
        let mut routes = self.inner.bus.inner.write();
        if let Some(group) = sub.group {
            let key = (group.to_string(), sub.filter.to_string());
            if let Some(g) = routes.groups.get_mut(&key) {
                g.members.retain(|m| *m != id);
                if g.members.is_empty() {
                    routes.groups.remove(&key);
                }
            }
        } else if let Some(client) = routes.clients.get_mut(&id) {
            client.filters.retain(|f| f != filter);
        }
        Ok(())
    }

    /// Connection state changes. The dev bus never drops a connection, so
    /// nothing is ever received; the receiver stays open while the client lives.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// The configured username, or the app name.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// Leaves the bus: no more deliveries, and the [`Incoming`] channel ends
    /// once drained. Later publishes fail with [`PublishError::Disconnected`].
    pub async fn disconnect(&self) {
        if !self.inner.disconnected.swap(true, Ordering::AcqRel) {
            self.inner.bus.inner.remove_client(self.inner.id);
        }
    }

    fn check_connected(&self) -> Result<(), ClientDisconnected> {
        if self.inner.disconnected.load(Ordering::Acquire) {
            Err(ClientDisconnected)
        } else {
            Ok(())
        }
    }
}

/// A client that left the bus (see [`DevClient::disconnect`]).
#[derive(Debug, thiserror::Error)]
#[error("dev bus client disconnected")]
struct ClientDisconnected;

impl Routes {
    /// The channels a message on `topic` goes to: every client with a
    /// matching plain filter, plus one member of each matching shared group,
    /// each client at most once.
    fn targets(&self, topic: &str) -> Vec<mpsc::Sender<Message>> {
        let mut ids: Vec<ClientId> = Vec::new();
        for (id, client) in &self.clients {
            if client.filters.iter().any(|f| filter::matches(f, topic)) {
                ids.push(*id);
            }
        }
        for ((_, group_filter), group) in &self.groups {
            if group.members.is_empty() || !filter::matches(group_filter, topic) {
                continue;
            }
            let n = group.next.fetch_add(1, Ordering::Relaxed) % group.members.len();
            let id = group.members[n];
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.iter()
            .filter_map(|id| self.clients.get(id))
            .filter(|c| !c.tx.is_closed())
            .map(|c| c.tx.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(2);

    async fn recv(rx: &mut Incoming) -> Message {
        timeout(WAIT, rx.recv())
            .await
            .expect("timed out waiting for a message")
            .expect("incoming channel closed")
    }

    fn assert_empty(rx: &mut Incoming) {
        if let Ok(msg) = rx.try_recv() {
            panic!("unexpected message on {}", msg.topic);
        }
    }

    #[tokio::test]
    async fn round_trip_keeps_payload_and_user_properties_in_order() {
        let bus = DevBus::new();
        let (sub, mut rx) = bus.client("agent", None);
        let (publ, _) = bus.client("gateway", Some("gw-user"));
        sub.subscribe("ns/a2a/v1/agent/request/+").await.unwrap();
        let props = UserProperties::new()
            .with("replyTo", "ns/resp")
            .with("userId", "alice")
            .with("replyTo", "second");
        publ.publish("ns/a2a/v1/agent/request/agent", "hi", props.clone(), false)
            .await
            .unwrap();
        let msg = recv(&mut rx).await;
        assert_eq!(msg.topic, "ns/a2a/v1/agent/request/agent");
        assert_eq!(&msg.payload[..], b"hi");
        assert_eq!(msg.props, props);
        assert_eq!(msg.props.get("replyTo"), Some("ns/resp"));
        assert!(!msg.retained);
        assert_eq!(publ.username(), "gw-user");
        assert_eq!(sub.username(), "agent");
    }

    #[tokio::test]
    async fn wildcards_follow_mqtt_rules() {
        let bus = DevBus::new();
        let (sub, mut rx) = bus.client("a", None);
        let (publ, _) = bus.client("b", None);
        sub.subscribe("x/+/z").await.unwrap();
        sub.subscribe("#").await.unwrap();
        publ.publish("$SYS/x", "s", UserProperties::new(), false)
            .await
            .unwrap();
        publ.publish("x/y/z", "1", UserProperties::new(), false)
            .await
            .unwrap();
        // Both filters match, but the client gets it once.
        assert_eq!(recv(&mut rx).await.topic, "x/y/z");
        assert_empty(&mut rx);
    }

    #[tokio::test]
    async fn invalid_topics_and_filters_are_refused() {
        let bus = DevBus::new();
        let (c, _rx) = bus.client("a", None);
        assert!(matches!(
            c.publish("a/+", "x", UserProperties::new(), false).await,
            Err(PublishError::InvalidTopic(_))
        ));
        assert!(matches!(
            c.subscribe("a/#/b").await,
            Err(BrokerError::Subscribe { .. })
        ));
    }

    #[tokio::test]
    async fn retained_message_reaches_late_subscriber_until_cleared() {
        let bus = DevBus::new();
        let (publ, _) = bus.client("gw", None);
        let props = UserProperties::new().with("kid", "k1");
        publ.publish("ns/trust/gateway/gw", "card", props.clone(), true)
            .await
            .unwrap();

        let (sub, mut rx) = bus.client("agent", None);
        sub.subscribe("ns/trust/+/+").await.unwrap();
        let msg = recv(&mut rx).await;
        assert!(msg.retained);
        assert_eq!(&msg.payload[..], b"card");
        assert_eq!(msg.props, props);

        // Live delivery of a retained publish is not flagged retained.
        publ.publish("ns/trust/gateway/gw", "card2", UserProperties::new(), true)
            .await
            .unwrap();
        let live = recv(&mut rx).await;
        assert!(!live.retained);
        assert_eq!(&live.payload[..], b"card2");

        // An empty retained payload clears it.
        publ.publish("ns/trust/gateway/gw", "", UserProperties::new(), true)
            .await
            .unwrap();
        recv(&mut rx).await;
        let (late, mut late_rx) = bus.client("late", None);
        late.subscribe("ns/trust/#").await.unwrap();
        assert_empty(&mut late_rx);
    }

    #[tokio::test]
    async fn shared_subscription_round_robins_within_the_group() {
        let bus = DevBus::new();
        let (r1, mut rx1) = bus.client("replica1", None);
        let (r2, mut rx2) = bus.client("replica2", None);
        let (watcher, mut rx_w) = bus.client("watcher", None);
        let (publ, _) = bus.client("gw", None);
        r1.subscribe("$share/agent/ns/req/agent").await.unwrap();
        r2.subscribe("$share/agent/ns/req/agent").await.unwrap();
        watcher.subscribe("ns/req/#").await.unwrap();
        for i in 0..10 {
            publ.publish("ns/req/agent", i.to_string(), UserProperties::new(), false)
                .await
                .unwrap();
        }
        let mut n1 = 0;
        while rx1.try_recv().is_ok() {
            n1 += 1;
        }
        let mut n2 = 0;
        while rx2.try_recv().is_ok() {
            n2 += 1;
        }
        assert_eq!((n1, n2), (5, 5));
        let mut nw = 0;
        while rx_w.try_recv().is_ok() {
            nw += 1;
        }
        assert_eq!(nw, 10, "a plain subscriber still gets every message");

        // A member that leaves stops receiving; the other gets everything.
        drop(r2);
        drop(rx2);
        for _ in 0..4 {
            publ.publish("ns/req/agent", "x", UserProperties::new(), false)
                .await
                .unwrap();
        }
        let mut n1 = 0;
        while rx1.try_recv().is_ok() {
            n1 += 1;
        }
        assert_eq!(n1, 4);
    }

    #[tokio::test]
    async fn messages_from_one_publisher_keep_their_order() {
        let bus = DevBus::new();
        let (sub, mut rx) = bus.client("sub", None);
        let (publ, _) = bus.client("pub", None);
        sub.subscribe("seq/#").await.unwrap();
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 10_000 {
                let msg = recv(&mut rx).await;
                seen.push(String::from_utf8(msg.payload.to_vec()).unwrap());
            }
            seen
        });
        for i in 0..10_000 {
            publ.publish("seq/a", i.to_string(), UserProperties::new(), false)
                .await
                .unwrap();
        }
        let seen = reader.await.unwrap();
        let expected: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_full_subscriber_delays_but_does_not_block_others() {
        let bus = DevBus::with_options(DevBusOptions {
            channel_capacity: 2,
            slow_subscriber_timeout: Duration::from_millis(50),
        });
        let (stuck, _stuck_rx) = bus.client("stuck", None);
        let (ok, mut ok_rx) = bus.client("ok", None);
        let (publ, _) = bus.client("pub", None);
        stuck.subscribe("t").await.unwrap();
        ok.subscribe("t").await.unwrap();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while n < 5 {
                recv(&mut ok_rx).await;
                n += 1;
            }
            n
        });
        for _ in 0..5 {
            timeout(WAIT, publ.publish("t", "x", UserProperties::new(), false))
                .await
                .expect("publish must not block forever on a full subscriber")
                .unwrap();
        }
        assert_eq!(reader.await.unwrap(), 5);
    }

    #[tokio::test]
    async fn unsubscribe_and_disconnect_stop_delivery() {
        let bus = DevBus::new();
        let (sub, mut rx) = bus.client("sub", None);
        let (publ, _) = bus.client("pub", None);
        sub.subscribe("a/#").await.unwrap();
        sub.unsubscribe("a/#").await.unwrap();
        publ.publish("a/b", "x", UserProperties::new(), false)
            .await
            .unwrap();
        assert_empty(&mut rx);

        sub.subscribe("a/#").await.unwrap();
        sub.disconnect().await;
        publ.publish("a/b", "x", UserProperties::new(), false)
            .await
            .unwrap();
        assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
        assert!(matches!(
            sub.publish("a/b", "x", UserProperties::new(), false).await,
            Err(PublishError::Disconnected(_))
        ));
    }
}
