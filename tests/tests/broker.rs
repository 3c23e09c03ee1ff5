//! The MQTT broker layer against a real Mosquitto with passwords and an ACL.

use std::time::Duration;

use amesh_runtime::broker::{
    Broker, BrokerError, ConnectionEvent, DevBus, Incoming, Message, PublishError, UserProperties,
};
use amesh_tests::mosquitto::MosquittoBroker;
use tokio::sync::broadcast;
use tokio::time::timeout;

const USERS: &[(&str, &str)] = &[("alice", "alice-pw"), ("bob", "bob-pw")];
const ACL: &str = "\
user alice
topic readwrite test/#
topic readwrite retained/#

user bob
topic readwrite test/#
topic read retained/#
topic read forbidden/#
";
const WAIT: Duration = Duration::from_secs(5);

fn start_broker() -> MosquittoBroker {
    MosquittoBroker::start(USERS, ACL).expect("start mosquitto")
}

async fn connect(broker: &MosquittoBroker, user: &str, app: &str) -> (Broker, Incoming) {
    let password = USERS
        .iter()
        .find(|(u, _)| *u == user)
        .expect("known user")
        .1;
    let cfg = broker.broker_config(user, password);
    match Broker::connect(&cfg, app, &DevBus::new()).await {
        Ok(c) => c,
        Err(e) => panic!("connect {user}/{app}: {e}\nbroker log:\n{}", broker.log()),
    }
}

async fn recv(rx: &mut Incoming) -> Message {
    timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("incoming channel closed")
}

async fn wait_event(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    want: ConnectionEvent,
    within: Duration,
) {
    let found = timeout(within, async {
        loop {
            match events.recv().await {
                Ok(ev) if ev == want => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {want:?} within {within:?}");
}

#[tokio::test]
async fn round_trip_preserves_payload_and_user_properties() {
    let broker = start_broker();
    let (sub, mut rx) = connect(&broker, "alice", "rt-sub").await;
    let (publ, _) = connect(&broker, "bob", "rt-pub").await;
    sub.subscribe("test/rt/+").await.unwrap();

    let props = UserProperties::new()
        .with("replyTo", "test/rt/reply")
        .with("userId", "alice@example.com")
        .with("a2aUserConfig", r#"{"k":"v"}"#)
        .with("replyTo", "second value");
    let payload: &'static [u8] = &[0, 159, 146, 150, 255, b'x'];
    publ.publish("test/rt/1", payload, props.clone(), false)
        .await
        .unwrap();

    let msg = recv(&mut rx).await;
    assert_eq!(msg.topic, "test/rt/1");
    assert_eq!(&msg.payload[..], payload);
    assert_eq!(
        msg.props, props,
        "user properties keep their order and duplicates"
    );
    assert_eq!(msg.props.get("replyTo"), Some("test/rt/reply"));
    assert!(!msg.retained);
    assert_eq!(sub.username(), "alice");
}

#[tokio::test]
async fn publish_denied_by_acl_returns_not_authorized() {
    let broker = start_broker();
    let (publ, _) = connect(&broker, "bob", "denied").await;
    let err = publ
        .publish("forbidden/x", "nope", UserProperties::new(), false)
        .await
        .expect_err("bob may not write forbidden/#");
    assert!(
        matches!(&err, PublishError::NotAuthorized { topic } if topic == "forbidden/x"),
        "got {err:?}"
    );
    // The connection stays usable.
    publ.publish("test/after-denial", "ok", UserProperties::new(), false)
        .await
        .unwrap();
}

#[tokio::test]
async fn publish_with_no_subscribers_is_ok() {
    let broker = start_broker();
    let (publ, _) = connect(&broker, "bob", "lonely").await;
    publ.publish("test/nobody/listens", "x", UserProperties::new(), false)
        .await
        .unwrap();
}

#[tokio::test]
async fn retained_message_is_delivered_to_a_late_subscriber() {
    let broker = start_broker();
    let (publ, _) = connect(&broker, "alice", "card-pub").await;
    let props = UserProperties::new().with("kid", "k-1");
    publ.publish("retained/trust/gateway/alice", "card", props.clone(), true)
        .await
        .unwrap();

    let (late, mut rx) = connect(&broker, "bob", "card-sub").await;
    late.subscribe("retained/trust/+/+").await.unwrap();
    let msg = recv(&mut rx).await;
    assert!(msg.retained);
    assert_eq!(msg.topic, "retained/trust/gateway/alice");
    assert_eq!(&msg.payload[..], b"card");
    assert_eq!(msg.props, props);

    // An empty retained publish clears it for later subscribers.
    publ.publish(
        "retained/trust/gateway/alice",
        "",
        UserProperties::new(),
        true,
    )
    .await
    .unwrap();
    recv(&mut rx).await;
    let (later, mut rx2) = connect(&broker, "bob", "card-sub-2").await;
    later.subscribe("retained/trust/#").await.unwrap();
    // Prove the subscription is live, then that nothing retained came first.
    publ.publish("retained/trust/marker", "m", UserProperties::new(), false)
        .await
        .unwrap();
    let first = recv(&mut rx2).await;
    assert_eq!(
        first.topic, "retained/trust/marker",
        "cleared message was delivered"
    );
}

#[tokio::test]
async fn wrong_password_is_a_clear_connect_error() {
    let broker = start_broker();
    let mut cfg = broker.broker_config("alice", "Wr0ng-Passw0rd");
    cfg.client_id = Some("bad-login".into());
    let err = match Broker::connect(&cfg, "bad", &DevBus::new()).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => e,
    };
    let text = err.to_string();
    match &err {
        BrokerError::Connect { url, reason } => {
            assert_eq!(url, &broker.url());
            let reason = reason.to_lowercase();
            assert!(
                reason.contains("not authorized") || reason.contains("bad user name or password"),
                "{text}"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(!text.contains("Wr0ng-Passw0rd"), "password leaked: {text}");
}

#[tokio::test]
async fn unreachable_broker_fails_fast_naming_the_url() {
    let mut broker = start_broker();
    let cfg = broker.broker_config("alice", "alice-pw");
    broker.stop().unwrap();
    let err = match timeout(WAIT, Broker::connect(&cfg, "nobody-home", &DevBus::new())).await {
        Ok(Ok(_)) => panic!("connected to a stopped broker"),
        Ok(Err(e)) => e,
        Err(_) => panic!("connect to a stopped broker did not fail fast"),
    };
    assert!(
        matches!(&err, BrokerError::Connect { url, .. } if url == &broker.url()),
        "{err:?}"
    );
}

#[tokio::test]
async fn shared_subscription_splits_messages_between_members() {
    let broker = start_broker();
    let (r1, mut rx1) = connect(&broker, "alice", "replica-1").await;
    let (r2, mut rx2) = connect(&broker, "alice", "replica-2").await;
    let (publ, _) = connect(&broker, "bob", "shared-pub").await;
    r1.subscribe("$share/agent/test/shared/+").await.unwrap();
    r2.subscribe("$share/agent/test/shared/+").await.unwrap();

    const N: usize = 20;
    for i in 0..N {
        publ.publish(
            "test/shared/req",
            i.to_string(),
            UserProperties::new(),
            false,
        )
        .await
        .unwrap();
    }
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    timeout(WAIT, async {
        while got1.len() + got2.len() < N {
            tokio::select! {
                Some(m) = rx1.recv() => got1.push(m.payload),
                Some(m) = rx2.recv() => got2.push(m.payload),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} + {} of {N} messages arrived",
            got1.len(),
            got2.len()
        )
    });
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "{} / {}",
        got1.len(),
        got2.len()
    );
    let mut all: Vec<String> = got1
        .iter()
        .chain(&got2)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    all.sort_by_key(|s| s.parse::<usize>().unwrap());
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(all, expected, "each message exactly once");
}

#[tokio::test]
async fn invalid_filters_and_topics_are_refused_locally() {
    let broker = start_broker();
    let (c, _) = connect(&broker, "alice", "invalid").await;
    assert!(matches!(
        c.subscribe("test/#/x").await,
        Err(BrokerError::Subscribe { .. })
    ));
    assert!(matches!(
        c.subscribe("test/\0").await,
        Err(BrokerError::Subscribe { .. })
    ));
    assert!(matches!(
        c.publish("test/+", "x", UserProperties::new(), false).await,
        Err(PublishError::InvalidTopic(_))
    ));
}

#[tokio::test]
async fn reconnects_after_broker_restart() {
    let mut broker = start_broker();
    let (sub, mut rx) = connect(&broker, "alice", "restart-sub").await;
    let (publ, _) = connect(&broker, "bob", "restart-pub").await;
    sub.subscribe("test/restart/#").await.unwrap();
    let mut events = sub.connection_events();

    broker.stop().unwrap();
    wait_event(&mut events, ConnectionEvent::Lost, WAIT).await;

    // A publish while the broker is down waits for the reconnect.
    let pending = tokio::spawn({
        let publ = publ.clone();
        async move {
            publ.publish(
                "test/restart/during",
                "queued",
                UserProperties::new(),
                false,
            )
            .await
        }
    });
    broker.restart().unwrap();

    // No persistence: the broker lost the session, the layer re-subscribed.
    wait_event(
        &mut events,
        ConnectionEvent::Connected {
            session_present: false,
        },
        Duration::from_secs(15),
    )
    .await;
    pending
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("publish during the outage: {e}\nlog:\n{}", broker.log()));

    publ.publish("test/restart/after", "after", UserProperties::new(), false)
        .await
        .unwrap();
    // "during" may or may not arrive first, depending on which client
    // reconnected first; "after" must arrive.
    timeout(WAIT, async {
        loop {
            let msg = recv(&mut rx).await;
            if msg.topic == "test/restart/after" {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("subscription not restored; log:\n{}", broker.log()));
}

#[tokio::test]
async fn disconnect_ends_incoming_and_later_publishes_fail() {
    let broker = start_broker();
    let (c, mut rx) = connect(&broker, "alice", "leaving").await;
    c.subscribe("test/leaving").await.unwrap();
    c.publish("test/leaving", "last", UserProperties::new(), false)
        .await
        .unwrap();
    c.disconnect().await;
    // Messages already received are still readable, then the channel ends.
    let mut topics = Vec::new();
    while let Some(msg) = timeout(WAIT, rx.recv())
        .await
        .expect("incoming did not end")
    {
        topics.push(msg.topic);
    }
    assert!(topics.len() <= 1, "{topics:?}");
    assert!(matches!(
        c.publish("test/leaving", "x", UserProperties::new(), false)
            .await,
        Err(PublishError::Disconnected(_))
    ));
}

/// An agent's presence (see `amesh_runtime::presence`): announced retained
/// at connect, and cleared by the broker's will — not when the connection
/// ends, but when the session does (`session_expiry_seconds` later).
#[tokio::test]
async fn presence_is_announced_and_cleared_by_the_will_when_the_session_ends() {
    let broker = start_broker();
    let (watcher, mut rx) = connect(&broker, "bob", "presence-watch").await;
    watcher.subscribe("test/presence/+").await.unwrap();
    let cfg = amesh_runtime::config::BrokerConfig {
        session_expiry_seconds: 2,
        ..broker.broker_config("alice", "alice-pw")
    };
    let topic = "test/presence/a";
    let (agent, _agent_rx) =
        Broker::connect_present(&cfg, "presence-a", &DevBus::new(), Some(topic.into()))
            .await
            .expect("connect");
    let here = recv(&mut rx).await;
    assert_eq!(here.topic, topic);
    let v: serde_json::Value = serde_json::from_slice(&here.payload).unwrap();
    assert_eq!(v["session_expiry_seconds"], 2);

    // A late reader gets it retained.
    let (late, mut late_rx) = connect(&broker, "bob", "presence-late").await;
    late.subscribe("test/presence/+").await.unwrap();
    assert!(!recv(&mut late_rx).await.payload.is_empty());

    // A graceful stop: nothing at once (the session still queues), the
    // will once the session ends.
    agent.disconnect().await;
    let stopped = std::time::Instant::now();
    assert!(
        timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "the will came while the session lasted"
    );
    let gone = timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the will within the session expiry")
        .expect("incoming open");
    assert_eq!(gone.topic, topic);
    assert!(gone.payload.is_empty(), "{:?}", gone.payload);
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );

    // Cleared: a new reader finds nothing retained.
    let (fresh, mut fresh_rx) = connect(&broker, "bob", "presence-fresh").await;
    fresh.subscribe("test/presence/+").await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), fresh_rx.recv())
            .await
            .is_err()
    );
}
