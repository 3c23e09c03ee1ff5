use amesh_runtime::broker::{Broker, DevBus, UserProperties};
use amesh_runtime::config::BrokerConfig;
use amesh_tests::mosquitto::MosquittoBroker;
fn cfg(url: &str, ca: Option<&str>, insecure: bool) -> BrokerConfig {
    BrokerConfig { broker_url: Some(url.into()), trust_store_file: ca.map(Into::into), tls_insecure_skip_verify: insecure, session_expiry_seconds: 60, keep_alive_seconds: 20, ..Default::default() }
}
#[tokio::test]
async fn tls() {
    let r = Broker::connect(&cfg("mqtts://localhost:18883", Some("/tmp/tlst/ca.crt"), false), "tls1", &DevBus::new()).await;
    eprintln!("localhost with CA: {:?}", r.as_ref().err());
    if let Ok((c, _)) = &r { c.publish("a/b", "x", UserProperties::new(), false).await.unwrap(); eprintln!("publish over tls ok"); }
    let r = Broker::connect(&cfg("ssl://localhost:18883", None, false), "tls2", &DevBus::new()).await;
    eprintln!("no CA: {:?}", r.as_ref().err());
    let r = Broker::connect(&cfg("ssl://127.0.0.2:18883", Some("/tmp/tlst/ca.crt"), false), "tls3", &DevBus::new()).await;
    eprintln!("wrong host: {:?}", r.as_ref().err());
    let r = Broker::connect(&cfg("ssl://localhost:18883", None, true), "tls4", &DevBus::new()).await;
    eprintln!("insecure: {:?}", r.as_ref().err());
    let r = Broker::connect(&cfg("tcp://localhost:18883", None, false), "tls5", &DevBus::new()).await;
    eprintln!("plain to tls port: {:?}", r.as_ref().err());
}
#[tokio::test]
async fn overlapping() {
    let b = MosquittoBroker::start(&[("a", "p")], "user a\ntopic readwrite #\n").unwrap();
    let (c, mut rx) = Broker::connect(&b.broker_config("a", "p"), "x", &DevBus::new()).await.unwrap();
    c.subscribe("t/#").await.unwrap();
    c.subscribe("t/+").await.unwrap();
    c.publish("t/1", "x", UserProperties::new(), false).await.unwrap();
    c.publish("t/end", "end", UserProperties::new(), false).await.unwrap();
    let mut n = 0;
    loop { let m = rx.recv().await.unwrap(); if m.topic == "t/end" { break } n += 1; }
    eprintln!("overlapping deliveries of t/1: {n}");
}
