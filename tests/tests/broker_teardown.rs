//! Dropping an MQTT client while paho still works on a reconnect attempt
//! must leave paho usable for every other client of the process.
//!
//! Paho's connect token holds a clone of the client and is completed
//! inside a callback that holds the library's process-wide mutex; when
//! that clone was the last one, destroying the client there deadlocked
//! paho for the whole process (seen as a bench that never exited). A
//! test binary of its own: a regression hangs paho here, not in the
//! other broker tests.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use amesh_runtime::broker::{Broker, ConnectionEvent, DevBus, UserProperties};
use amesh_tests::mosquitto::MosquittoBroker;

const USERS: &[(&str, &str)] = &[("alice", "alice-pw")];
const ACL: &str = "user alice\ntopic readwrite test/#\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn a_client_dropped_during_a_reconnect_attempt_leaves_paho_working() {
    let mut mq = MosquittoBroker::start(USERS, ACL).expect("start mosquitto");
    let port = mq.port();
    let cfg = mq.broker_config("alice", "alice-pw");

    // A client, connected, on a runtime of its own.
    let rt = runtime();
    let (client, incoming) = rt
        .block_on(Broker::connect(&cfg, "teardown-a", &DevBus::new()))
        .expect("connect");
    let mut events = client.connection_events();

    // The broker goes away and a listener that accepts and never answers
    // takes its port: the reconnect attempt stays in flight.
    mq.stop().expect("stop mosquitto");
    let hole = TcpListener::bind(("127.0.0.1", port)).expect("bind the broker's port");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !matches!(events.recv().await, Ok(ConnectionEvent::Lost)) {}
        })
        .await
        .expect("the client saw the connection drop");
    });
    let (accepted_tx, accepted_rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = hole.accept() {
            // Read the CONNECT so paho is waiting for the CONNACK.
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            let _ = accepted_tx.send(conn);
        }
    });
    let conn = accepted_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the client tried to reconnect");

    // The app lets go of the client and its runtime mid-attempt; then the
    // attempt fails (the peer closes), which paho reports from its thread.
    drop(incoming);
    drop(client);
    drop(rt);
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));

    // Another client of the same process connects, subscribes and gets
    // its own message: paho is not stuck.
    let mut mq2 = MosquittoBroker::start(USERS, ACL).expect("start a second mosquitto");
    let cfg2 = mq2.broker_config("alice", "alice-pw");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = runtime();
        let outcome = rt.block_on(async {
            let (b, mut rx) = Broker::connect(&cfg2, "teardown-b", &DevBus::new())
                .await
                .map_err(|e| e.to_string())?;
            b.subscribe("test/teardown")
                .await
                .map_err(|e| e.to_string())?;
            b.publish("test/teardown", "ok", UserProperties::new(), false)
                .await
                .map_err(|e| e.to_string())?;
            let msg = rx.recv().await.ok_or("incoming closed")?;
            Ok::<_, String>(msg.payload)
        });
        let _ = done_tx.send(outcome);
    });
    let outcome = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("paho is stuck: a second client could not connect, subscribe and receive");
    assert_eq!(outcome.expect("second client").as_ref(), b"ok");
    mq2.stop().expect("stop the second mosquitto");
}
