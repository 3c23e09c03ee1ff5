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
    for cmd in ["run", "config", "users", "keys", "acl", "demo-provider"] {
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
