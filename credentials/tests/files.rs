//! The SQLite database on disk: what another local account can read of it.
//! Tokens are encrypted, but the file also holds user ids, tool ids, scopes
//! and audit events; it is the agent's own, like its secret file.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use amesh_credentials::{Credential, CredentialKey};
use common::{identity, secret, sqlite};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn sqlite_database_and_its_wal_files_are_created_owner_only() {
    let db = sqlite();
    let store = db.open("agent-a", secret(1)).await;
    store
        .put(
            &CredentialKey::new("alice", "https://mcp.example.com/mcp"),
            &identity("alice"),
            &Credential::bearer("tok"),
        )
        .await
        .expect("put");
    let path = db.sqlite_path.clone().expect("a file");
    // The write-ahead log and shared memory exist while the store is open.
    for suffix in ["", "-wal", "-shm"] {
        let file = Path::new(&format!("{}{suffix}", path.display())).to_path_buf();
        let mode = mode(&file);
        assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
    }
    store.close().await;
}
