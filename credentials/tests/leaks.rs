//! Known secret values — tokens, PKCE verifier, OAuth state, client
//! secret, resume document, conversation history and title, database
//! password — never appear in the
//! database, in logs (every level, this crate's and the drivers'), or in
//! any `Debug` / `Display` output.
//!
//! One test in this binary: it installs the global tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amesh_credentials::ExposeSecret as _;
use amesh_credentials::{
    ClientRegistration, Conversation, Credential, CredentialKey, CredentialStore, DatabaseUrl,
    Filter, NewFlow, SecretJson, StoreBackend, StoreConfig,
};
use common::{DB_PASSWORD, Kind, TestDb, all_backends, identity, secret};
use sea_orm::{ConnectionTrait, Statement};

const ACCESS: &str = "ACCESS-TOKEN-d3adb33f-value";
const REFRESH: &str = "REFRESH-TOKEN-c0ffee-value";
const PKCE: &str = "PKCE-VERIFIER-5ecret-value";
const STATE: &str = "OAUTH-STATE-8a7b6c5d4e3f";
const CLIENT_SECRET: &str = "CLIENT-SECRET-f00dface";
const CONVERSATION: &str = "CONVERSATION-private-words";
const TITLE: &str = "TITLE-of-a-private-chat";

fn secrets() -> [&'static str; 8] {
    [
        ACCESS,
        REFRESH,
        PKCE,
        STATE,
        CLIENT_SECRET,
        CONVERSATION,
        TITLE,
        DB_PASSWORD,
    ]
}

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

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn assert_clean(haystack: &[u8], what: &str) {
    let text = String::from_utf8_lossy(haystack);
    for secret in secrets() {
        assert!(!text.contains(secret), "{what} contains {secret}");
        assert!(
            !text.to_lowercase().contains(&hex(secret)),
            "{what} contains hex of {secret}"
        );
    }
}

/// Exercises every path that touches a secret: store, read, refresh, flow,
/// client registration, conversation, denial, decrypt failure, revoke,
/// listing, events.
async fn exercise(db: &TestDb) -> Vec<String> {
    let mut debug = Vec::new();
    let store = db.open("agent-a", secret(1)).await;
    let alice = identity("alice");
    let key = CredentialKey::new("alice", "https://mcp.example.com/mcp");
    let credential = Credential {
        access_token: ACCESS.into(),
        refresh_token: Some(REFRESH.into()),
        scopes: vec!["read".into()],
        ..Credential::bearer("")
    };
    debug.push(format!("{credential:?}"));
    store.put(&key, &alice, &credential).await.expect("put");
    store.put(&key, &alice, &credential).await.expect("refresh");
    let got = store.get(&key, &alice).await.expect("get").expect("stored");
    assert_eq!(got.access_token.expose_secret(), ACCESS);
    debug.push(format!("{got:?} {:?}", Some(&got)));

    let flow = NewFlow {
        state: STATE.into(),
        tool_id: key.tool_id.clone(),
        task_id: "task-1".into(),
        pkce_verifier: PKCE.into(),
        redirect_uri: "https://gw.example.com/api/v1/auth/tool/callback".into(),
        resume: SecretJson::new(serde_json::json!({"conversation": [CONVERSATION]})),
    };
    debug.push(format!("{flow:?}"));
    store.start_flow(flow, &alice).await.expect("start flow");
    let wrong = store
        .take_flow(STATE, &identity("mallory"))
        .await
        .expect_err("wrong user");
    debug.push(format!("{wrong} {wrong:?}"));
    let taken = store.take_flow(STATE, &alice).await.expect("take");
    assert_eq!(taken.pkce_verifier.expose_secret(), PKCE);
    debug.push(format!("{taken:?}"));
    let used = store.take_flow(STATE, &alice).await.expect_err("used");
    debug.push(format!("{used} {used:?}"));

    let reg = ClientRegistration {
        server: "https://auth.example.com".into(),
        client_id: "client-1".into(),
        client_secret: Some(CLIENT_SECRET.into()),
        client_secret_expires_at: None,
        registration: SecretJson::new(serde_json::json!({"client_secret": CLIENT_SECRET})),
    };
    debug.push(format!("{reg:?}"));
    store.put_client(&reg).await.expect("put client");
    let reg = store
        .get_client("https://auth.example.com")
        .await
        .expect("get client")
        .expect("stored");
    debug.push(format!("{reg:?}"));

    let conversation = Conversation {
        messages: SecretJson::new(serde_json::json!([{"role": "user", "text": CONVERSATION}])),
        title: Some(TITLE.into()),
        turns: 1,
    };
    debug.push(format!("{conversation:?}"));
    store
        .save_conversation(&alice, "ctx-1", &conversation)
        .await
        .expect("save conversation");
    let got = store
        .conversation(&alice, "ctx-1")
        .await
        .expect("load conversation")
        .expect("saved");
    debug.push(format!("{got:?}"));
    debug.push(format!(
        "{:?}",
        store.list_conversations(&alice, 10).await.expect("list")
    ));
    let refused = store
        .conversation(&identity("mallory"), "ctx-1")
        .await
        .expect_err("another user's");
    debug.push(format!("{refused} {refused:?}"));

    let denied = store
        .get(&key, &identity("mallory"))
        .await
        .expect_err("denied");
    debug.push(format!("{denied} {denied:?}"));
    // A second agent secret: decrypt failures are logged.
    let rotated = db.open("agent-a", secret(2)).await;
    assert!(rotated.get(&key, &alice).await.expect("get").is_none());
    assert!(
        rotated
            .conversation(&alice, "ctx-1")
            .await
            .expect("load")
            .is_none()
    );
    rotated.close().await;

    debug.push(format!(
        "{:?}",
        store
            .list(&Filter::default().with_deleted())
            .await
            .expect("list")
    ));
    debug.push(format!(
        "{:?}",
        store.events(&Filter::default(), 100).await.expect("events")
    ));
    store
        .revoke(&Filter::agent("agent-a"), "test")
        .await
        .expect("revoke");
    debug.push(format!("{store:?} {:?}", db.config("agent-a", secret(1))));
    store.close().await;
    debug
}

/// Every row of every table, every column, as text or bytes.
async fn dump(db: &TestDb) -> Vec<u8> {
    let raw = db.raw().await;
    let backend = raw.get_database_backend();
    let mut out = Vec::new();
    for table in [
        "credentials",
        "credential_flows",
        "credential_clients",
        "credential_events",
        "conversations",
    ] {
        let rows = raw
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT * FROM {table}"),
            ))
            .await
            .expect("select *");
        assert!(
            !rows.is_empty() || table == "credential_clients",
            "[{}] {table} has rows",
            db.label()
        );
        for row in rows {
            for (i, name) in row.column_names().iter().enumerate() {
                out.extend_from_slice(name.as_bytes());
                if let Ok(Some(s)) = row.try_get_by_index::<Option<String>>(i) {
                    out.extend_from_slice(s.as_bytes());
                } else if let Ok(Some(b)) = row.try_get_by_index::<Option<Vec<u8>>>(i) {
                    out.extend_from_slice(&b);
                } else if let Ok(Some(n)) = row.try_get_by_index::<Option<i64>>(i) {
                    out.extend_from_slice(n.to_string().as_bytes());
                }
            }
        }
    }
    raw.close().await.ok();
    out
}

#[tokio::test]
async fn known_secrets_never_appear_in_database_logs_or_debug_output() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    for db in all_backends().await {
        let l = db.label();
        let debug = exercise(&db).await;
        for (i, text) in debug.iter().enumerate() {
            assert_clean(text.as_bytes(), &format!("[{l}] debug output #{i}: {text}"));
        }
        match db.kind {
            Kind::Memory => {}
            Kind::Sqlite => {
                let path = db.sqlite_path.clone().expect("path");
                let dir = path.parent().expect("dir");
                let mut scanned = 0;
                for entry in std::fs::read_dir(dir).expect("dir") {
                    let file = entry.expect("entry").path();
                    let bytes = std::fs::read(&file).expect("read");
                    assert_clean(&bytes, &format!("[sqlite] file {}", file.display()));
                    scanned += bytes.len();
                }
                assert!(
                    scanned > 8192,
                    "scanned the database files ({scanned} bytes)"
                );
            }
            Kind::Postgres | Kind::MySql => {
                let dumped = dump(&db).await;
                assert!(dumped.len() > 500, "[{l}] dumped {} bytes", dumped.len());
                assert_clean(&dumped, &format!("[{l}] SELECT * dump"));
            }
        }
    }

    // A failing connection with a password in the URL: the error and the
    // logs name the host, not the password.
    let mut config = StoreConfig::new(
        StoreBackend::Sql {
            database_url: DatabaseUrl::parse(&format!(
                "postgres://amesh:{DB_PASSWORD}@127.0.0.1:1/creds"
            ))
            .expect("url"),
        },
        "agent-a",
        secret(1),
    );
    config.connect_timeout = Duration::from_millis(500);
    let debug_config = format!("{config:?}");
    assert_clean(debug_config.as_bytes(), "StoreConfig debug");
    let err = CredentialStore::open(config)
        .await
        .expect_err("unreachable");
    assert_clean(format!("{err} {err:?}").as_bytes(), "connect error");

    let captured = logs.0.lock().expect("logs").clone();
    assert!(
        String::from_utf8_lossy(&captured).contains("another agent secret"),
        "the test captured the store's logs"
    );
    for line in String::from_utf8_lossy(&captured)
        .lines()
        .filter(|l| l.contains(DB_PASSWORD))
    {
        eprintln!("LEAK: {}", &line[..line.len().min(600)]);
    }
    eprintln!(
        "captured {} bytes of logs; driver spans: {}",
        captured.len(),
        String::from_utf8_lossy(&captured)
            .matches("ConnectOptions")
            .count()
    );
    assert_clean(&captured, "captured logs");
}
