//! The audit trail as a SIEM gets it, on every backend this machine has:
//! an export in pages, oldest first, from a point in time, with no token
//! material; and the guide's anomalous patterns (repeated failed
//! authorizations by one user, rapid create/delete cycles) logged as
//! warnings when they happen.
//!
//! One test in this binary: it installs the global tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use amesh_credentials::{
    Credential, CredentialKey, CredentialStore, DeleteReason, ExportCursor, Filter,
};
use common::{all_backends, identity, secret};
use serde_json::Value;

const ACCESS: &str = "ACCESS-TOKEN-audit-5ecret";
const TOOL: &str = "https://mcp.example.com/mcp";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().expect("log buffer")))
            .into_owned()
    }
}

/// Three create/delete cycles by eve, five failed authorizations by
/// mallory, one ordinary read by alice.
async fn exercise(store: &CredentialStore) {
    let credential = Credential {
        access_token: ACCESS.into(),
        ..Credential::bearer("")
    };
    let eve = identity("eve");
    let key = CredentialKey::new("eve", TOOL);
    for _ in 0..3 {
        store.put(&key, &eve, &credential).await.expect("put");
        store
            .delete(&key, &eve, DeleteReason::Revoked)
            .await
            .expect("delete");
    }
    for _ in 0..5 {
        store.authorization_failed("mallory", TOOL, "the OAuth flow is unknown or expired");
    }
    let alice = identity("alice");
    let key = CredentialKey::new("alice", TOOL);
    store.put(&key, &alice, &credential).await.expect("put");
    store.get(&key, &alice).await.expect("get");
}

/// Every event from `since`, read two at a time as the CLI pages.
async fn export(store: &CredentialStore, since: SystemTime) -> Vec<Value> {
    let mut cursor = ExportCursor::since(since);
    let mut out = Vec::new();
    loop {
        let page = store
            .export_events(&Filter::agent("agent-a"), cursor, 2)
            .await
            .expect("export");
        out.extend(page.iter().map(|e| e.to_json()));
        match page.last() {
            Some(last) if page.len() == 2 => cursor = cursor.after(last.id),
            _ => return out,
        }
    }
}

#[tokio::test]
async fn audit_export_pages_oldest_first_and_anomalies_are_warned() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    for db in all_backends().await {
        let l = db.label();
        let before = SystemTime::now() - Duration::from_secs(1);
        let store = db.open("agent-a", secret(1)).await;
        logs.take();
        exercise(&store).await;

        let warned = logs.take();
        let failures: Vec<&str> = warned
            .lines()
            .filter(|l| l.contains("anomaly: repeated failed authorizations by one user"))
            .collect();
        assert_eq!(failures.len(), 1, "[{l}] one warning: {warned}");
        assert!(
            failures[0].contains("WARN") && failures[0].contains("user=mallory"),
            "[{l}] {}",
            failures[0]
        );
        let churn: Vec<&str> = warned
            .lines()
            .filter(|l| l.contains("anomaly: rapid credential create/delete cycles"))
            .collect();
        assert_eq!(churn.len(), 1, "[{l}] one warning: {warned}");
        assert!(churn[0].contains("user=eve"), "[{l}] {}", churn[0]);
        assert!(
            !warned.contains("user=alice"),
            "[{l}] alice did nothing odd: {warned}"
        );

        let events = export(&store, before).await;
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(
            kinds,
            [
                "acquired",
                "deleted",
                "acquired",
                "deleted",
                "acquired",
                "deleted",
                "authorization_failed",
                "authorization_failed",
                "authorization_failed",
                "authorization_failed",
                "authorization_failed",
                "acquired",
                "used",
            ],
            "[{l}] every event, oldest first"
        );
        let ids: Vec<i64> = events
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "[{l}] ids ascend: {ids:?}"
        );
        let failed = &events[6];
        assert_eq!(failed["user_id"], "mallory", "[{l}]");
        assert_eq!(failed["tool_id"], TOOL, "[{l}]");
        assert_eq!(failed["agent_id"], "agent-a", "[{l}]");
        assert_eq!(
            failed["reason"], "the OAuth flow is unknown or expired",
            "[{l}]"
        );
        let time = failed["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.contains('T'),
            "[{l}] RFC 3339: {time}"
        );
        let all = serde_json::to_string(&events).expect("json");
        assert!(!all.contains(ACCESS), "[{l}] no token in the export");

        let later = export(&store, SystemTime::now() + Duration::from_secs(3600)).await;
        assert!(later.is_empty(), "[{l}] --since in the future: nothing");
        store.close().await;
    }
}
