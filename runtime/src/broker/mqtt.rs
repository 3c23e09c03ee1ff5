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

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use paho_mqtt as paho;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;

use super::filter;
use super::{BrokerError, ConnectionEvent, Incoming, Message, PublishError, UserProperties};
use crate::config::BrokerConfig;

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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Remembered subscriptions, restored after a session loss.
    filters: Mutex<Vec<String>>,
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
    ) -> Result<(MqttClient, Incoming), BrokerError> {
        let url = cfg.broker_url.as_deref().ok_or_else(|| {
            BrokerError::Config("`broker_url` is required unless `dev_mode: true`".into())
        })?;
        let (uri, tls) = paho_uri(url)?;
        let client_id = match &cfg.client_id {
            Some(id) => id.clone(),
            None => default_client_id(cfg.broker_username.as_deref(), app),
        };
        let create = paho::CreateOptionsBuilder::new()
            .server_uri(uri.as_str())
            .client_id(client_id.as_str())
            .mqtt_version(paho::MQTT_VERSION_5)
            .persistence(paho::PersistenceType::None)
            .finalize();
        let cli = paho::AsyncClient::new(create)
            .map_err(|e| BrokerError::Config(format!("broker_url `{url}`: {e}")))?;

        let (tx, rx) = mpsc::channel(INCOMING_CAPACITY);
        let inbox = Arc::new(Inbox::new(tx));
        let state = Arc::new(State {
            connected: watch::Sender::new(false),
            events: broadcast::channel(64).0,
            lost: Notify::new(),
            closing: AtomicBool::new(false),
            filters: Mutex::new(Vec::new()),
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

        let opts = connect_options(cfg, tls, url)?;
        let rsp = cli.connect(opts).await.map_err(|e| BrokerError::Connect {
            url: url.to_string(),
            reason: describe(&e),
        })?;
        let session_present = rsp.connect_response().is_some_and(|c| c.session_present);
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
        let result = self.subscribe_on_broker(filter).await.map_err(sub_err);
        if result.is_err() && added {
            self.inner.state.filters().retain(|f| f != filter);
        }
        result
    }

    async fn subscribe_on_broker(&self, filter: &str) -> Result<(), String> {
        let mut offline = OfflineBudget::default();
        loop {
            self.wait_connected(&mut offline)
                .await
                .map_err(str::to_string)?;
            let mut tok = self.inner.cli.subscribe(filter, QOS_1);
            match self.while_connected(&mut tok).await {
                Race::Done(Ok(rsp)) if rsp.reason_code().is_err() => {
                    return Err(describe_reason(rsp.reason_code(), rsp.properties()));
                }
                Race::Done(Ok(_)) => return Ok(()),
                Race::Done(Err(e)) if is_retryable(&e) => {
                    self.pause_after_race(&mut offline)
                        .await
                        .map_err(str::to_string)?;
                }
                Race::Done(Err(e)) => return Err(describe(&e)),
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
        let opts = paho::DisconnectOptionsBuilder::new()
            .timeout(DISCONNECT_FLUSH)
            .finalize();
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
async fn reconnect_loop(
    cli: paho::AsyncClient,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let mut backoff = MIN_BACKOFF;
        loop {
            let attempt = tokio::select! {
                r = cli.reconnect() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match attempt {
                Ok(rsp) => {
                    let session_present = rsp.connect_response().is_some_and(|c| c.session_present);
                    if !session_present {
                        resubscribe(&cli, &state).await;
                    }
                    // Lost again meanwhile? Then the callback queued another round.
                    if cli.is_connected() {
                        state.connected.send_replace(true);
                        let _ = state
                            .events
                            .send(ConnectionEvent::Connected { session_present });
                        tracing::info!(session_present, "reconnected to the MQTT broker");
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %describe(&e), ?backoff, "MQTT reconnect attempt failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
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

/// Hands messages from paho's callback thread to the app without blocking
/// it (see the module docs): the bounded channel first, an ordered overflow
/// queue when the app falls behind.
struct Inbox {
    tx: mpsc::Sender<Message>,
    /// True while the overflow queue holds messages (or is being emptied).
    spilling: AtomicBool,
    overflow: Mutex<VecDeque<Message>>,
    /// Signals the callback, blocked at [`OVERFLOW_LIMIT`], that there is room.
    room: Condvar,
    wake: Notify,
    closed: AtomicBool,
}

impl Inbox {
    fn new(tx: mpsc::Sender<Message>) -> Self {
        Self {
            tx,
            spilling: AtomicBool::new(false),
            overflow: Mutex::new(VecDeque::new()),
            room: Condvar::new(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Message>> {
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called on paho's receive thread only.
    fn push(&self, mut msg: Message) {
        if !self.spilling.load(Ordering::Acquire) {
            match self.tx.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(m)) => msg = m,
            }
        }
        if self.tx.is_closed() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.queue();
        if queue.len() >= OVERFLOW_LIMIT {
            tracing::error!(
                limit = OVERFLOW_LIMIT,
                "the app is not reading MQTT messages; blocking the MQTT receive thread"
            );
            while queue.len() >= OVERFLOW_LIMIT && !self.closed.load(Ordering::Acquire) {
                queue = self
                    .room
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        queue.push_back(msg);
        if !self.spilling.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                capacity = INCOMING_CAPACITY,
                "incoming MQTT channel full; buffering until the app catches up"
            );
            self.wake.notify_one();
        }
    }

    /// Moves spilled messages into the channel, in order, until shutdown.
    async fn drain(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            loop {
                let next = {
                    let mut queue = self.queue();
                    let next = queue.pop_front();
                    if next.is_none() {
                        // Under the lock, so the callback cannot push in between.
                        self.spilling.store(false, Ordering::Release);
                    }
                    self.room.notify_one();
                    next
                };
                let Some(msg) = next else { break };
                let sent = tokio::select! {
                    r = self.tx.send(msg) => r.is_ok(),
                    _ = shutdown.wait_for(|s| *s) => false,
                };
                if !sent {
                    self.close();
                    return;
                }
            }
        }
        self.close();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut queue = self.queue();
        queue.clear();
        self.spilling.store(false, Ordering::Release);
        self.room.notify_all();
    }
}

fn convert(msg: &paho::Message) -> Message {
    Message {
        topic: msg.topic().to_string(),
        payload: Bytes::copy_from_slice(msg.payload()),
        props: UserProperties(msg.properties().user_iter().collect()),
        retained: msg.retained(),
    }
}

fn build_message(
    topic: &str,
    payload: Bytes,
    props: &UserProperties,
    retain: bool,
) -> Result<paho::Message, PublishError> {
    let mut mqtt_props = paho::Properties::new();
    for (name, value) in props.iter() {
        // Paho's C strings cannot carry NUL (and it panics on one); MQTT
        // forbids U+0000 in strings anyway. Never echo the value: it may be a token.
        if name.contains('\0') || value.contains('\0') {
            return Err(PublishError::Other(format!(
                "user property `{}` contains a NUL character",
                name.replace('\0', "\\0")
            )));
        }
        mqtt_props
            .push_string_pair(paho::PropertyCode::UserProperty, name, value)
            .map_err(|e| PublishError::Other(format!("user property `{name}`: {e}")))?;
    }
    Ok(paho::MessageBuilder::new()
        .topic(topic)
        .payload(Vec::from(payload))
        .qos(QOS_1)
        .retained(retain)
        .properties(mqtt_props)
        .finalize())
}

fn connect_options(
    cfg: &BrokerConfig,
    tls: bool,
    url: &str,
) -> Result<paho::ConnectOptions, BrokerError> {
    let mut props = paho::Properties::new();
    props
        .push_u32(
            paho::PropertyCode::SessionExpiryInterval,
            cfg.session_expiry_seconds,
        )
        .map_err(|e| BrokerError::Config(format!("session_expiry_seconds: {e}")))?;
    let mut opts = paho::ConnectOptionsBuilder::new_v5();
    opts.clean_start(false)
        .properties(props)
        .keep_alive_interval(Duration::from_secs(u64::from(cfg.keep_alive_seconds)))
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(user) = &cfg.broker_username {
        opts.user_name(user.as_str());
    }
    if let Some(password) = &cfg.broker_password {
        opts.password(password.as_str());
    }
    if tls {
        let mut ssl = paho::SslOptionsBuilder::new();
        if let Some(ca) = &cfg.trust_store_file {
            if !ca.is_file() {
                return Err(BrokerError::Config(format!(
                    "trust_store_file `{}` is not a readable file",
                    ca.display()
                )));
            }
            ssl.trust_store(ca).map_err(|e| {
                BrokerError::Config(format!("trust_store_file `{}`: {e}", ca.display()))
            })?;
        }
        let verify = !cfg.tls_insecure_skip_verify;
        if !verify {
            tracing::warn!(
                url,
                "TLS certificate verification is disabled (tls_insecure_skip_verify)"
            );
        }
        ssl.enable_server_cert_auth(verify).verify(verify);
        opts.ssl_options(ssl.finalize());
    } else if cfg.trust_store_file.is_some() || cfg.tls_insecure_skip_verify {
        tracing::warn!(url, "TLS settings are ignored for a non-TLS broker_url");
    }
    Ok(opts.finalize())
}

/// Maps our URL schemes to paho's (`tcp://`, `ssl://`) and adds the default
/// port. Returns the URI and whether it uses TLS.
fn paho_uri(url: &str) -> Result<(String, bool), BrokerError> {
    let bad = |why: &str| {
        BrokerError::Config(format!(
            "broker_url `{url}`: {why} (expected tcp://, mqtt://, ssl:// or mqtts:// and host[:port])"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let (scheme, tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => ("tcp", false, 1883),
        "ssl" | "mqtts" => ("ssl", true, 8883),
        _ => return Err(bad("unsupported scheme")),
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    if host_port.is_empty() || host_port.contains(['/', '@', '?', '#']) {
        return Err(bad("expected only host and port after the scheme"));
    }
    // `[::1]:1883`: a port is a colon after the closing bracket.
    let after_host = host_port.rfind(']').map_or(host_port, |i| &host_port[i..]);
    let uri = if after_host.contains(':') {
        format!("{scheme}://{host_port}")
    } else {
        format!("{scheme}://{host_port}:{default_port}")
    };
    Ok((uri, tls))
}

/// `{username or app}-{app}`, limited to characters every broker accepts.
fn default_client_id(username: Option<&str>, app: &str) -> String {
    format!("{}-{app}", username.unwrap_or(app))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Paho C's `MQTTASYNC_DISCONNECTED` return code (its `ffi` is private).
const MQTTASYNC_DISCONNECTED: i32 = -3;

/// Errors after which the operation may simply be tried again once
/// connected: the connection dropped, or the broker lost the session and
/// paho abandoned the in-flight operation.
fn is_retryable(e: &paho::Error) -> bool {
    matches!(
        e,
        paho::Error::Disconnected | paho::Error::OperationIncomplete
    )
}

fn publish_error(topic: &str, e: &paho::Error) -> PublishError {
    match e {
        paho::Error::ReasonCode(rc, props) => {
            let code = *rc as u8;
            if *rc == paho::ReasonCode::NotAuthorized {
                PublishError::NotAuthorized {
                    topic: topic.to_string(),
                }
            } else {
                PublishError::Refused {
                    topic: topic.to_string(),
                    code,
                    reason: describe_reason(*rc, props),
                }
            }
        }
        other => PublishError::Other(describe(other)),
    }
}

fn describe(e: &paho::Error) -> String {
    match e {
        paho::Error::ReasonCode(rc, props) => describe_reason(*rc, props),
        paho::Error::TcpTlsConnectFailure | paho::Error::TcpConnectCompletionFailure => {
            format!("{e} (is the broker running and reachable, and the URL scheme right?)")
        }
        paho::Error::Publish(rc, _) => paho::errors::error_message(*rc).to_string(),
        other => other.to_string(),
    }
}

fn describe_reason(rc: paho::ReasonCode, props: &paho::Properties) -> String {
    let mut s = format!(
        "{} (reason code {:#04x})",
        rc.to_string().to_lowercase(),
        rc as u8
    );
    if let Some(text) = props.get_string(paho::PropertyCode::ReasonString) {
        s.push_str(": ");
        s.push_str(&text);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_paho_schemes_with_default_ports() {
        assert_eq!(
            paho_uri("mqtt://h").unwrap(),
            ("tcp://h:1883".into(), false)
        );
        assert_eq!(
            paho_uri("tcp://h:1884/").unwrap(),
            ("tcp://h:1884".into(), false)
        );
        assert_eq!(
            paho_uri("mqtts://h").unwrap(),
            ("ssl://h:8883".into(), true)
        );
        assert_eq!(paho_uri("ssl://h:9").unwrap(), ("ssl://h:9".into(), true));
        assert_eq!(
            paho_uri("tcp://[::1]").unwrap(),
            ("tcp://[::1]:1883".into(), false)
        );
        assert_eq!(
            paho_uri("tcp://[::1]:7").unwrap(),
            ("tcp://[::1]:7".into(), false)
        );
        for bad in [
            "h:1883",
            "http://h",
            "tcp://",
            "tcp://h/path",
            "tcp://u:p@h",
        ] {
            assert!(
                matches!(paho_uri(bad), Err(BrokerError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn default_client_id_is_stable_and_sanitized() {
        assert_eq!(
            default_client_id(Some("agent-1"), "weather"),
            "agent-1-weather"
        );
        assert_eq!(default_client_id(None, "my app/x"), "my_app_x-my_app_x");
    }

    #[test]
    fn puback_reason_codes_map_to_publish_errors() {
        let denied = paho::Error::from_reason_code(0x87, paho::Properties::new());
        assert!(matches!(
            publish_error("t", &denied),
            PublishError::NotAuthorized { topic } if topic == "t"
        ));
        let quota = paho::Error::from_reason_code(0x97, paho::Properties::new());
        match publish_error("t", &quota) {
            PublishError::Refused { code, reason, .. } => {
                assert_eq!(code, 0x97);
                assert!(reason.contains("0x97"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn messages_with_nul_in_properties_are_refused_without_echoing_values() {
        let props = UserProperties::new().with("authToken", "secret\0jwt");
        let err = build_message("t", Bytes::new(), &props, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("authToken"));
        assert!(!text.contains("secret"));
    }
}
