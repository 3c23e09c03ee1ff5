//! MQTT v5 client over paho-mqtt's `AsyncClient` (the Paho C library).
//!
//! One [`MqttClient`] is one MQTT connection with a stable client id,
//! `clean_start = false` and a session expiry, so a short outage keeps the
//! broker-side subscriptions and queued QoS 1 messages.
//!
//! **Reconnecting.** Paho's own automatic reconnect does not report whether
//! the broker kept the session, so a background task owned by the client
//! reconnects instead (backoff [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]).
//! After a reconnect with `session_present == false` (the broker restarted
//! without persistence) it re-subscribes every remembered filter, then
//! emits [`ConnectionEvent::Connected`]. A publish or subscribe issued while
//! disconnected waits for the reconnect up to [`OFFLINE_WAIT`], then fails.
//!
//! **Incoming messages.** Paho calls the message callback on its single
//! receive thread *while holding the library's process-wide mutex*: blocking
//! there stalls every paho client in the process and every tokio worker
//! that calls publish/subscribe (they take the same mutex), which can
//! deadlock the app that should drain the channel. So the callback never
//! blocks in normal operation: it tries the bounded [`Incoming`] channel
//! ([`INCOMING_CAPACITY`]) and, when the app falls behind, spills into an
//! overflow queue that a task feeds into the channel in order. Only past
//! [`OVERFLOW_LIMIT`] queued messages does the callback block (backpressure
//! into TCP), as a last resort against unbounded memory.
//!
//! Paho logs connect options (with the password) and outgoing messages
//! (with user properties such as `authToken`) through the `log` crate at
//! debug level: keep the `paho_mqtt` target at `info` or above.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use paho_mqtt as paho;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;

use self::inbox::Inbox;
use self::wire::{
    MQTTASYNC_DISCONNECTED, build_message, connect_options, convert, describe, describe_connect,
    describe_reason, is_retryable, paho_uri, publish_error,
};
use super::filter;
use super::{BrokerError, ConnectionEvent, Incoming, PublishError, UserProperties};
use crate::config::BrokerConfig;

mod inbox;
mod wire;

/// Capacity of the [`Incoming`] channel of one client.
pub const INCOMING_CAPACITY: usize = 4096;
/// Messages buffered beyond a full [`Incoming`] channel before the paho
/// callback blocks.
pub const OVERFLOW_LIMIT: usize = 65_536;
/// How long a publish or subscribe waits for a lost connection to return.
pub const OFFLINE_WAIT: Duration = Duration::from_secs(10);
/// First delay between reconnect attempts (the first attempt is immediate).
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the reconnect backoff.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time on top of [`CONNECT_TIMEOUT`] before amesh gives up on a connect
/// that paho never completes.
const CONNECT_GRACE: Duration = Duration::from_secs(5);
const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
const DISCONNECT_FLUSH: Duration = Duration::from_secs(2);
/// Pause after paho reports "disconnected" before our lost callback ran.
const RACE_PAUSE: Duration = Duration::from_millis(20);
const QOS_1: i32 = 1;

/// A connected MQTT v5 client. Cloning is cheap and shares the connection;
/// the connection and its background tasks end when the last clone is dropped.
#[derive(Clone)]
pub struct MqttClient {
    inner: Arc<Inner>,
}

struct Inner {
    cli: paho::AsyncClient,
    username: String,
    state: Arc<State>,
    /// Stops the reconnect and overflow tasks when set or dropped.
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
    }
}

/// Connection state shared by the handles, the paho callbacks and the
/// reconnect task. It does not hold the paho client: the callbacks live
/// inside that client, and holding it here would make a reference cycle.
struct State {
    connected: watch::Sender<bool>,
    events: broadcast::Sender<ConnectionEvent>,
    /// Wakes the reconnect task.
    lost: Notify,
    /// Set by `disconnect` and drop: no reconnecting, no waiting.
    closing: AtomicBool,
    client_id: String,
    /// Remembered subscriptions, restored after a session loss.
    filters: Mutex<Vec<String>>,
    /// The presence topic this client announces itself on (agents; see
    /// `crate::presence`), with what it publishes there.
    presence: Option<(String, Bytes)>,
}

impl State {
    fn on_lost(&self) {
        if self.connected.send_replace(false) {
            let _ = self.events.send(ConnectionEvent::Lost);
        }
        if !self.closing.load(Ordering::Acquire) {
            self.lost.notify_one();
        }
    }

    fn filters(&self) -> MutexGuard<'_, Vec<String>> {
        self.filters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MqttClient {
    /// Connects to `cfg.broker_url`. Fails fast (no retry) with
    /// [`BrokerError::Connect`] naming the URL and the broker's reason.
    pub async fn connect(
        cfg: &BrokerConfig,
        app: &str,
        presence: Option<String>,
    ) -> Result<(MqttClient, Incoming), BrokerError> {
        let url = cfg.broker_url.as_deref().ok_or_else(|| {
            BrokerError::Config("`broker_url` is required unless `dev_mode: true`".into())
        })?;
        let (uri, tls) = paho_uri(url)?;
        let client_id = super::client_id(cfg, app);
        let create = paho::CreateOptionsBuilder::new()
            .server_uri(uri.as_str())
            .client_id(client_id.as_str())
            .mqtt_version(paho::MQTT_VERSION_5)
            .persistence(paho::PersistenceType::None)
            .finalize();
        let cli = paho::AsyncClient::new(create)
            .map_err(|e| BrokerError::Config(format!("broker_url `{url}`: {e}")))?;

        let (tx, rx) = mpsc::channel(INCOMING_CAPACITY);
        let inbox = Arc::new(Inbox::new(tx, OVERFLOW_LIMIT));
        let state = Arc::new(State {
            connected: watch::Sender::new(false),
            events: broadcast::channel(64).0,
            lost: Notify::new(),
            closing: AtomicBool::new(false),
            client_id: client_id.clone(),
            filters: Mutex::new(Vec::new()),
            presence: presence.map(|topic| {
                let body = serde_json::json!({
                    "client_id": client_id,
                    "session_expiry_seconds": cfg.session_expiry_seconds,
                });
                (topic, Bytes::from(body.to_string()))
            }),
        });
        let cb_inbox = inbox.clone();
        cli.set_message_callback(move |_, msg| {
            if let Some(msg) = msg {
                cb_inbox.push(convert(&msg));
            }
        });
        let cb_state = state.clone();
        cli.set_connection_lost_callback(move |_| {
            tracing::warn!("connection to the MQTT broker lost; reconnecting");
            cb_state.on_lost();
        });
        let cb_state = state.clone();
        cli.set_disconnected_callback(move |_, _, reason| {
            tracing::warn!(%reason, "the MQTT broker closed the connection; reconnecting");
            cb_state.on_lost();
        });

        let will = state.presence.as_ref().map(|(topic, _)| topic.as_str());
        let opts = connect_options(cfg, tls, url, will)?;
        // A refused CONNECT completes our future from inside paho's failure
        // callback, which still holds paho's process-wide mutex and a clone
        // of the client. Dropping ours first would make that clone the last
        // one, destroyed inside the callback (MQTTAsync_destroy takes the
        // same mutex): every paho client of the process deadlocks
        // (paho.mqtt.rust#239). A refused CONNECT (bad password, foreign
        // client id, unknown CA) is rare and ends the app, so this
        // never-connected client is leaked instead. The timeout of our own
        // bounds a connect paho never completes, so a start never hangs.
        let limit = CONNECT_TIMEOUT + CONNECT_GRACE;
        let rsp = match tokio::time::timeout(limit, cli.connect(opts)).await {
            Ok(Ok(rsp)) => rsp,
            Ok(Err(e)) => {
                std::mem::forget(cli);
                return Err(BrokerError::Connect {
                    url: url.to_string(),
                    reason: describe_connect(&e, tls),
                });
            }
            Err(_) => {
                std::mem::forget(cli);
                return Err(BrokerError::Connect {
                    url: url.to_string(),
                    reason: format!(
                        "no answer to the connection attempt within {} s",
                        limit.as_secs()
                    ),
                });
            }
        };
        let session_present = rsp.connect_response().is_some_and(|c| c.session_present);
        announce(&cli, &state).await;
        state.connected.send_replace(true);
        tracing::info!(
            url,
            client_id,
            session_present,
            "connected to the MQTT broker"
        );

        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(reconnect_loop(
            cli.clone(),
            state.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(inbox.drain(shutdown_rx));
        let username = cfg
            .broker_username
            .clone()
            .unwrap_or_else(|| app.to_string());
        let inner = Inner {
            cli,
            username,
            state,
            shutdown,
        };
        Ok((
            MqttClient {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// Publishes with QoS 1 and waits for the PUBACK. A reason code >= 0x80
    /// is an error (0x87: [`PublishError::NotAuthorized`]); 0x10 (no
    /// matching subscribers) is success.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        props: UserProperties,
        retain: bool,
    ) -> Result<(), PublishError> {
        filter::validate_topic(topic).map_err(|_| PublishError::InvalidTopic(topic.to_string()))?;
        let mut msg = build_message(topic, payload.into(), &props, retain)?;
        let mut offline = OfflineBudget::default();
        let offline_err =
            |reason: &str| PublishError::Disconnected(format!("publish on `{topic}`: {reason}"));
        loop {
            self.wait_connected(&mut offline)
                .await
                .map_err(offline_err)?;
            let mut tok = match self.inner.cli.try_publish(msg) {
                Ok(tok) => tok,
                Err(paho::Error::Publish(rc, m)) if rc == MQTTASYNC_DISCONNECTED => {
                    msg = m;
                    self.pause_after_race(&mut offline)
                        .await
                        .map_err(offline_err)?;
                    continue;
                }
                Err(e) => return Err(PublishError::Other(describe(&e))),
            };
            // Wait for the PUBACK; across a reconnect that kept the session,
            // paho retransmits and the same token completes.
            msg = loop {
                match self.while_connected(&mut tok).await {
                    Race::Done(Ok(())) => return Ok(()),
                    Race::Done(Err(e)) if is_retryable(&e) => break tok.message().clone(),
                    Race::Done(Err(e)) => return Err(publish_error(topic, &e)),
                    Race::Lost => self
                        .wait_connected(&mut offline)
                        .await
                        .map_err(offline_err)?,
                }
            };
        }
    }

    /// Subscribes with QoS 1 and checks the SUBACK reason code. The filter
    /// is remembered and restored after a reconnect that lost the session.
    pub async fn subscribe(&self, filter: &str) -> Result<(), BrokerError> {
        let sub_err = |reason: String| BrokerError::Subscribe {
            filter: filter.to_string(),
            reason,
        };
        filter::validate_filter(filter).map_err(|e| sub_err(format!("filter {e}")))?;
        let added = {
            let mut filters = self.inner.state.filters();
            let added = !filters.iter().any(|f| f == filter);
            if added {
                filters.push(filter.to_string());
            }
            added
        };
        let result = self
            .subscribe_on_broker(filter)
            .await
            .map_err(|e| sub_err(e.to_string()));
        if result.is_err() && added {
            self.inner.state.filters().retain(|f| f != filter);
        }
        result
    }

    async fn subscribe_on_broker(&self, filter: &str) -> Result<(), SubscribeFailure> {
        let mut offline = OfflineBudget::default();
        loop {
            self.wait_connected(&mut offline)
                .await
                .map_err(SubscribeFailure::Offline)?;
            let mut tok = self.inner.cli.subscribe(filter, QOS_1);
            match self.while_connected(&mut tok).await {
                Race::Done(Ok(rsp)) if rsp.reason_code().is_err() => {
                    return Err(SubscribeFailure::Refused(describe_reason(
                        rsp.reason_code(),
                        rsp.properties(),
                    )));
                }
                Race::Done(Ok(_)) => return Ok(()),
                Race::Done(Err(e)) if is_retryable(&e) => {
                    self.pause_after_race(&mut offline)
                        .await
                        .map_err(SubscribeFailure::Offline)?;
                }
                Race::Done(Err(e)) => return Err(SubscribeFailure::Failed(describe(&e))),
                // Subscribing is idempotent: ask again once reconnected.
                Race::Lost => {}
            }
        }
    }

    /// Unsubscribes and forgets the filter.
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), BrokerError> {
        let err = |reason: String| {
            BrokerError::Other(format!("unsubscribe from `{filter}` failed: {reason}"))
        };
        filter::validate_filter(filter).map_err(|e| err(format!("filter {e}")))?;
        self.inner.state.filters().retain(|f| f != filter);
        let mut offline = OfflineBudget::default();
        self.wait_connected(&mut offline)
            .await
            .map_err(|r| err(r.to_string()))?;
        let mut tok = self.inner.cli.unsubscribe(filter);
        match self.while_connected(&mut tok).await {
            Race::Done(Ok(_)) => Ok(()),
            Race::Done(Err(e)) => Err(err(describe(&e))),
            Race::Lost => Err(err("connection lost before the broker answered".into())),
        }
    }

    /// Connection state changes from now on.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.state.events.subscribe()
    }

    /// The configured broker username, or the app name when anonymous.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// Sends DISCONNECT after in-flight messages complete (bounded wait),
    /// stops reconnecting and ends the [`Incoming`] channel once drained.
    pub async fn disconnect(&self) {
        let state = &self.inner.state;
        if state.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let opts = {
            let mut opts = paho::DisconnectOptionsBuilder::new();
            opts.timeout(DISCONNECT_FLUSH);
            if state.presence.is_some() {
                // The will (presence cleared) still comes when the session ends.
                opts.publish_will_message();
            }
            opts.finalize()
        };
        if let Err(e) = self.inner.cli.disconnect(opts).await {
            tracing::debug!(error = %e, "MQTT disconnect");
        }
        state.connected.send_replace(false);
        self.inner.cli.remove_message_callback();
        self.inner.shutdown.send_replace(true);
    }

    /// Returns once connected, or `Err` when the offline budget runs out.
    async fn wait_connected(&self, budget: &mut OfflineBudget) -> Result<(), &'static str> {
        let state = &self.inner.state;
        let mut rx = state.connected.subscribe();
        if *rx.borrow_and_update() {
            return Ok(());
        }
        if state.closing.load(Ordering::Acquire) {
            return Err("client disconnected");
        }
        match tokio::time::timeout_at(budget.deadline(), rx.wait_for(|c| *c)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err("not connected to the broker and no reconnect in time"),
        }
    }

    /// Paho said "disconnected" but our lost callback may not have run yet:
    /// give it a moment (counted against the offline budget).
    async fn pause_after_race(&self, budget: &mut OfflineBudget) -> Result<(), &'static str> {
        let deadline = budget.deadline();
        if Instant::now() >= deadline {
            return Err("not connected to the broker and no reconnect in time");
        }
        let mut rx = self.inner.state.connected.subscribe();
        let _ = tokio::time::timeout(RACE_PAUSE, rx.wait_for(|c| !*c)).await;
        Ok(())
    }

    /// Awaits `fut` unless the connection drops first.
    async fn while_connected<F: Future + Unpin>(&self, fut: &mut F) -> Race<F::Output> {
        let mut rx = self.inner.state.connected.subscribe();
        tokio::select! {
            biased;
            out = fut => Race::Done(out),
            _ = rx.wait_for(|c| !*c) => Race::Lost,
        }
    }
}

/// Why the broker did not take a subscription.
#[derive(Debug, thiserror::Error)]
enum SubscribeFailure {
    /// Not connected, and no reconnect within the offline budget.
    #[error("{0}")]
    Offline(&'static str),
    /// The SUBACK refused it (reason code and the broker's reason string).
    #[error("{0}")]
    Refused(String),
    /// The client library failed the request.
    #[error("{0}")]
    Failed(String),
}

enum Race<T> {
    Done(T),
    Lost,
}

/// Bounds the total time one operation spends waiting for a connection.
#[derive(Default)]
struct OfflineBudget {
    deadline: Option<Instant>,
}

impl OfflineBudget {
    fn deadline(&mut self) -> Instant {
        *self
            .deadline
            .get_or_insert_with(|| Instant::now() + OFFLINE_WAIT)
    }
}

/// Reconnects after every loss until the client is closed.
///
/// The first attempt after a loss is immediate, unless the connection had
/// lived less than [`STABLE_CONNECTION`]: then the backoff carries on from
/// the last round. That keeps two processes sharing one client id (each
/// connect kicks the other off) from reconnecting in a tight loop.
async fn reconnect_loop(
    cli: paho::AsyncClient,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut connected_at = Instant::now();
    let mut quick_drops = 0u32;
    loop {
        tokio::select! {
            _ = state.lost.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if state.closing.load(Ordering::Acquire) || cli.is_connected() {
            continue;
        }
        if state.connected.send_replace(false) {
            let _ = state.events.send(ConnectionEvent::Lost);
        }
        if connected_at.elapsed() < STABLE_CONNECTION {
            quick_drops += 1;
            if quick_drops.is_multiple_of(5) {
                tracing::error!(
                    client_id = state.client_id,
                    quick_drops,
                    "the MQTT connection keeps dropping right after connecting; \
                     does another client use the same client id?"
                );
            }
            if sleep_or_shutdown(backoff, &mut shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
            quick_drops = 0;
        }
        let mut failures = 0u32;
        loop {
            if state.closing.load(Ordering::Acquire) {
                break;
            }
            let token = cli.reconnect();
            let in_flight = InFlight::new(&cli, &state, &token);
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT + CONNECT_GRACE, token) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            // Timed out, the attempt is still paho's: `in_flight` lets go of it.
            let attempt = match attempt {
                Ok(done) => {
                    in_flight.completed();
                    done
                }
                Err(_) => Err(paho::Error::General("reconnect attempt timed out")),
            };
            match attempt {
                Ok(rsp) => {
                    connected_at = Instant::now();
                    let session_present = rsp.connect_response().is_some_and(|c| c.session_present);
                    if !session_present {
                        resubscribe(&cli, &state).await;
                    }
                    announce(&cli, &state).await;
                    // Lost again meanwhile? Then the callback queued another round.
                    if cli.is_connected() {
                        state.connected.send_replace(true);
                        let _ = state
                            .events
                            .send(ConnectionEvent::Connected { session_present });
                        tracing::info!(session_present, "reconnected to the MQTT broker");
                        crate::telemetry::metrics::broker_reconnect(&state.client_id);
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures.is_multiple_of(10) {
                        tracing::warn!(error = %describe(&e), failures, "still cannot reconnect to the MQTT broker; retrying");
                    } else {
                        tracing::debug!(error = %describe(&e), ?backoff, "MQTT reconnect attempt failed");
                    }
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A reconnect attempt paho has not completed yet.
///
/// Paho's connect token holds a clone of the client, and paho completes
/// it inside a callback that holds the library's process-wide mutex. If
/// amesh lets go of an attempt (the client is shut down or dropped with
/// its runtime, or the attempt timed out) and then of its own clones,
/// that callback drops the last one: `MQTTAsync_destroy` takes the same
/// mutex and every paho client of the process deadlocks (seen at a
/// bench's exit; paho.mqtt.rust#239). So letting go of an attempt leaks
/// one clone of the client, and the last one is never dropped inside a
/// paho callback; a thread waits for paho to finish the attempt and
/// disconnects what it connected if the client is closing (no zombie
/// connection holding the client id). That is one small C client per
/// client that abandoned an attempt (an outage at shutdown), never per
/// message.
struct InFlight {
    armed: Option<(paho::AsyncClient, Arc<State>, paho::Token)>,
}

/// How long the thread of an abandoned attempt waits for paho.
const ABANDONED_WAIT: Duration = Duration::from_secs(60);

impl InFlight {
    fn new(cli: &paho::AsyncClient, state: &Arc<State>, token: &paho::Token) -> InFlight {
        InFlight {
            armed: Some((cli.clone(), state.clone(), token.clone())),
        }
    }

    /// Paho finished the attempt: its callback has run.
    fn completed(mut self) {
        self.armed = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some((cli, state, token)) = self.armed.take() else {
            return;
        };
        std::mem::forget(cli.clone());
        let spawned = std::thread::Builder::new()
            .name("mqtt-abandoned-connect".into())
            .spawn(move || {
                let connected = token.wait_for(ABANDONED_WAIT).is_ok();
                if connected && state.closing.load(Ordering::Acquire) {
                    let _ = cli.disconnect(None).wait_for(DISCONNECT_FLUSH);
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no thread to close an abandoned MQTT connect");
        }
    }
}

/// Sleeps `d`; true if the client shut down meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    }
}

/// Publishes the client's presence (retained) after a (re)connect: the
/// broker may have lost the retained message with a restart, or the will
/// of an earlier session may have cleared it.
async fn announce(cli: &paho::AsyncClient, state: &State) {
    let Some((topic, body)) = &state.presence else {
        return;
    };
    let msg = paho::MessageBuilder::new()
        .topic(topic.as_str())
        .payload(body.to_vec())
        .qos(QOS_1)
        .retained(true)
        .finalize();
    match tokio::time::timeout(RESUBSCRIBE_TIMEOUT, cli.publish(msg)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(%topic, error = %describe(&e), "could not announce presence; gateways will not answer 503 for this agent until the next reconnect")
        }
        Err(_) => tracing::warn!(%topic, "announcing presence timed out"),
    }
}

/// Restores every remembered subscription (pipelined).
async fn resubscribe(cli: &paho::AsyncClient, state: &State) {
    let filters = state.filters().clone();
    if filters.is_empty() {
        return;
    }
    let tokens: Vec<_> = filters
        .iter()
        .map(|f| cli.subscribe(f.as_str(), QOS_1))
        .collect();
    let all = async {
        for (filter, tok) in filters.iter().zip(tokens) {
            match tok.await {
                Ok(rsp) if rsp.reason_code().is_err() => tracing::error!(
                    filter,
                    reason = %describe_reason(rsp.reason_code(), rsp.properties()),
                    "broker refused to restore a subscription"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(filter, error = %describe(&e), "restoring a subscription failed")
                }
            }
        }
    };
    if tokio::time::timeout(RESUBSCRIBE_TIMEOUT, all)
        .await
        .is_err()
    {
        tracing::warn!("restoring subscriptions timed out");
    }
    tracing::info!(
        count = filters.len(),
        "subscriptions restored after the broker lost the session"
    );
}
