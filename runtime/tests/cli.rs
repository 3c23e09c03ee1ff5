//! The `amesh` binary's subcommands, run as a user would.

use std::process::Command;

fn amesh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amesh"))
}

#[test]
fn help_lists_every_subcommand() {
    let out = amesh().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "run",
        "config",
        "users",
        "keys",
        "acl",
        "demo-provider",
        "credentials",
    ] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}

#[test]
fn config_check_accepts_the_dev_config_and_reports_errors_with_positions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let ok = amesh()
        .args(["config", "check"])
        .arg(root.join("configs/dev.yaml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apps:\n  - name: a\n    app_module: agent\n    broker: {dev_mode: true}\n    app_config:\n      namespace: ns\n      agent_name: a\n      trust_manager:\n        verification_mode: stict\n",
    )
    .unwrap();
    let out = amesh()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:9:")
            && err.contains("apps[0].app_config.trust_manager.verification_mode")
            && err.contains("\"stict\""),
        "{err}"
    );
}

#[test]
fn keys_generate_writes_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = amesh()
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kid"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = amesh()
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success(), "overwrote an existing key");
}

#[test]
fn users_hash_token_prints_sha256_hex() {
    let out = amesh()
        .args(["users", "hash-token", "abc"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// An agent config with a SQLite credential store in `dir`.
fn sqlite_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config:\n      namespace: ns\n      agent_name: billing\n      agent_secret_file: {d}/billing.secret\n      session_service: {{type: sql, database_url: \"sqlite:///{d}/billing.db\"}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn bad_secrets_ttl_stops_the_agent_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_agent(dir.path());
    for bad in ["abc", "0", "-5", "2592001"] {
        let out = amesh()
            .arg("run")
            .arg(&cfg)
            .env("SECRETS_TTL_SECONDS", bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "started with SECRETS_TTL_SECONDS={bad}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("SECRETS_TTL_SECONDS"), "{bad}: {err}");
        assert!(
            err.contains("2592000"),
            "{bad}: the allowed range is named: {err}"
        );
    }
}

#[test]
fn unreachable_database_is_a_clear_start_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config:\n      namespace: ns\n      agent_name: billing\n      agent_secret_file: {d}/s\n      session_service: {{type: sql, database_url: \"postgres://amesh:hunter2secret@127.0.0.1:{port}/x\"}}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = amesh().arg("run").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("hunter2secret"), "password leaked: {err}");
}

#[test]
fn credentials_list_and_revoke_show_metadata_never_tokens() {
    use amesh_credentials::{
        AgentSecret, Credential, CredentialKey, CredentialStore, DatabaseUrl, StoreBackend,
        StoreConfig,
    };
    use amesh_trust::{TrustDisabled, VerifiedIdentity};
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_agent(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let secret = AgentSecret::load_or_create(&dir.path().join("billing.secret")).unwrap();
        let url =
            DatabaseUrl::parse(&format!("sqlite://{}/billing.db", dir.path().display())).unwrap();
        let store = CredentialStore::open(StoreConfig::new(
            StoreBackend::Sql { database_url: url },
            "billing",
            secret,
        ))
        .await
        .unwrap();
        for user in ["alice", "bob"] {
            let who = VerifiedIdentity::trust_disabled(
                TrustDisabled::by_configuration(),
                user,
                None,
                None,
            );
            let mut c = Credential::bearer(format!("tok-{user}-VERYSECRET"));
            c.scopes = vec!["read".into()];
            store
                .put(
                    &CredentialKey::new(user, "https://mcp.example.com/mcp"),
                    &who,
                    &c,
                )
                .await
                .unwrap();
        }
        store.close().await;
    });
    let list = amesh()
        .args(["credentials", "list"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("billing\talice\thttps://mcp.example.com/mcp\tread"),
        "{text}"
    );
    assert!(text.contains("\tbob\t"), "{text}");
    assert!(!text.contains("VERYSECRET"), "a token was printed: {text}");

    let revoke = amesh()
        .args(["credentials", "revoke"])
        .arg(&cfg)
        .args(["--user", "alice"])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    assert!(String::from_utf8_lossy(&revoke.stdout).contains("revoked 1"));
    let after = amesh()
        .args(["credentials", "list", "--deleted"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&after.stdout);
    let alice = text.lines().find(|l| l.contains("\talice\t")).unwrap();
    assert!(alice.ends_with("\trevoked"), "{alice}");
    let live = amesh()
        .args(["credentials", "list"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&live.stdout).contains("\talice\t"));
}

/// `amesh credentials` with `--user`, run in `cwd` without an agent secret
/// in the environment.
fn credentials_cmd(
    cwd: &std::path::Path,
    verb: &str,
    cfg: &std::path::Path,
) -> std::process::Output {
    let mut cmd = amesh();
    cmd.current_dir(cwd)
        .env_remove("AMESH_AGENT_SECRET")
        .args(["credentials", verb])
        .arg(cfg);
    if verb == "revoke" {
        cmd.args(["--user", "alice"]);
    }
    cmd.output().unwrap()
}

#[test]
fn credentials_commands_never_create_a_database_or_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_agent(dir.path());
    let db = dir.path().join("billing.db");
    let secret = dir.path().join("billing.secret");
    for verb in ["list", "revoke"] {
        let out = credentials_cmd(dir.path(), verb, &cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb} succeeded: {err}");
        assert!(
            err.contains(&db.display().to_string()) && err.contains("does not exist"),
            "{verb}: {err}"
        );
        assert!(!db.exists(), "{verb} created the database");
        assert!(!secret.exists(), "{verb} created the secret");
    }
    // The database is there but the secret is not: a new secret would make
    // every stored credential unreadable, so it is not made either.
    std::fs::write(&db, b"").unwrap();
    for verb in ["list", "revoke"] {
        let out = credentials_cmd(dir.path(), verb, &cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb} succeeded: {err}");
        assert!(
            err.contains(&secret.display().to_string()) && err.contains("does not exist"),
            "{verb}: {err}"
        );
        assert!(!secret.exists(), "{verb} created the secret");
    }
}

#[test]
fn relative_database_and_secret_paths_are_relative_to_the_config_file() {
    use amesh_credentials::{
        AgentSecret, Credential, CredentialKey, CredentialStore, DatabaseUrl, StoreBackend,
        StoreConfig,
    };
    use amesh_trust::{TrustDisabled, VerifiedIdentity};
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let data = conf.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = conf.join("agent.yaml");
    std::fs::write(
        &cfg,
        "apps:\n  - name: a\n    app_module: agent\n    broker: {dev_mode: true}\n    app_config:\n      namespace: ns\n      agent_name: billing\n      agent_secret_file: data/billing.secret\n      session_service: {type: sql, database_url: \"sqlite://data/billing.db\"}\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let secret = AgentSecret::load_or_create(&data.join("billing.secret")).unwrap();
        let url = DatabaseUrl::parse(&format!("sqlite://{}/billing.db", data.display())).unwrap();
        let store = CredentialStore::open(StoreConfig::new(
            StoreBackend::Sql { database_url: url },
            "billing",
            secret,
        ))
        .await
        .unwrap();
        let who = VerifiedIdentity::trust_disabled(
            TrustDisabled::by_configuration(),
            "alice",
            None,
            None,
        );
        store
            .put(
                &CredentialKey::new("alice", "https://mcp.example.com/mcp"),
                &who,
                &Credential::bearer("tok"),
            )
            .await
            .unwrap();
        store.close().await;
    });
    // Run from elsewhere: the paths follow the config file, not the shell.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = credentials_cmd(&elsewhere, "list", &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("billing\talice\t"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "files were created in the current directory"
    );
}

/// A SAM-style agent: `sqlite:///` (SQLAlchemy's relative form) and no
/// secret named, so its secret would be the default file next to the database.
fn sam_style_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        "apps:\n  - name: a\n    app_module: solace_agent_mesh.agent.sac.app\n    broker: {dev_mode: true}\n    app_config:\n      namespace: ns/\n      agent_name: Billing\n      enable_embed_resolution: true\n      session_service: {type: sql, database_url: \"sqlite:///billing.db\"}\n",
    )
    .unwrap();
    cfg
}

#[test]
fn credentials_against_a_missing_database_say_so_without_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sam_style_agent(dir.path());
    let db = dir.path().join("billing.db");
    for verb in ["list", "revoke"] {
        let out = credentials_cmd(dir.path(), verb, &cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb} succeeded: {err}");
        assert!(
            err.contains(&db.display().to_string()) && err.contains("does not exist"),
            "{verb}: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["agent.yaml"], "nothing but the config");
}

#[test]
fn config_check_prints_sam_warnings_and_run_refuses_unsupported_apps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sam_style_agent(dir.path());
    let out = amesh()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {}:8:7: apps[0].app_config.enable_embed_resolution: ",
            cfg.display()
        )) && err.contains("not supported by amesh, ignored"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 warning(s)"));

    let platform = dir.path().join("platform.yaml");
    std::fs::write(
        &platform,
        "apps:\n  - name: platform_service_app\n    app_module: solace_agent_mesh.services.platform.app\n    broker: {dev_mode: true}\n    app_config: {namespace: ns}\n",
    )
    .unwrap();
    let out = amesh().arg("run").arg(&platform).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("platform_service_app")
            && err.contains("SAM's platform service")
            && err.contains("--skip-unsupported"),
        "{err}"
    );
}

#[test]
fn an_agent_with_sql_persistence_and_no_secret_makes_one_and_says_where() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let cfg = sam_style_agent(dir.path());
    let mut child = amesh()
        .arg("run")
        .arg(&cfg)
        .env_remove("AMESH_AGENT_SECRET")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                let ready = line.contains("amesh ready");
                log.push(line);
                if ready {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    let secret = dir.path().join("billing.Billing.secret");
    assert!(secret.is_file(), "no default secret file: {log}");
    assert!(log.contains(&secret.display().to_string()), "{log}");
    assert!(log.contains("replicas of this agent must share"), "{log}");
}
