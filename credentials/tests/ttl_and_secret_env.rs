//! `SECRETS_TTL_SECONDS` and `AMESH_AGENT_SECRET` as read at startup.
//!
//! The environment is process-wide (and setting it is `unsafe` in Rust
//! 2024), so the env-reading functions are checked in a child process:
//! this test binary re-runs itself with the variable set.

use std::process::Command;
use std::time::Duration;

use amesh_credentials::{
    AgentSecret, CredentialError, CredentialStore, SecretError, StoreBackend, StoreConfig,
    parse_ttl, ttl_from_env,
};

#[test]
fn bad_secrets_ttl_values_are_startup_errors_naming_the_variable_and_range() {
    for value in [
        "0",
        "-5",
        "-0",
        "abc",
        "1.5",
        "2592001",
        "99999999999999999999999",
        "1e3",
        "+10",
        "30d",
    ] {
        let err = parse_ttl(Some(value)).expect_err(value);
        assert!(
            matches!(err, CredentialError::InvalidTtl { .. }),
            "{value}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("SECRETS_TTL_SECONDS"), "{text}");
        assert!(text.contains("from 1 to 2592000"), "{text}");
    }
    let zero = parse_ttl(Some("0")).expect_err("zero").to_string();
    assert!(zero.contains("zero"), "{zero}");
    let negative = parse_ttl(Some("-5")).expect_err("negative").to_string();
    assert!(negative.contains("negative"), "{negative}");
    let big = parse_ttl(Some("2592001")).expect_err("big").to_string();
    assert!(big.contains("above the maximum"), "{big}");
}

#[test]
fn good_secrets_ttl_values_parse() {
    assert_eq!(
        parse_ttl(None).expect("default"),
        Duration::from_secs(2_592_000)
    );
    assert_eq!(
        parse_ttl(Some("")).expect("blank is unset"),
        Duration::from_secs(2_592_000)
    );
    assert_eq!(parse_ttl(Some("1")).expect("min"), Duration::from_secs(1));
    assert_eq!(
        parse_ttl(Some("3600")).expect("hour"),
        Duration::from_secs(3600)
    );
    assert_eq!(
        parse_ttl(Some("2592000")).expect("max"),
        Duration::from_secs(2_592_000)
    );
}

#[tokio::test]
async fn a_configured_ttl_out_of_range_refuses_to_open() {
    for ttl in [Duration::ZERO, Duration::from_secs(2_592_001)] {
        let mut config = StoreConfig::new(
            StoreBackend::Memory,
            "agent-a",
            AgentSecret::generate().expect("secret"),
        );
        config.ttl = ttl;
        let err = CredentialStore::open(config).await.expect_err("refused");
        assert!(matches!(err, CredentialError::InvalidTtl { .. }), "{err:?}");
    }
}

/// Runs `test` of this binary in a child process with `env` set.
fn child(test: &str, env: &[(&str, &str)]) -> bool {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--test-threads=1"])
        .env("AMESH_TEST_CHILD", "1");
    cmd.env_remove("SECRETS_TTL_SECONDS")
        .env_remove("AMESH_AGENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("child runs");
    out.status.success()
}

fn is_child() -> bool {
    std::env::var("AMESH_TEST_CHILD").is_ok()
}

/// In the child: `ttl_from_env()` must give `AMESH_EXPECT` seconds, or an
/// error when that is `err`.
#[test]
fn child_ttl_from_env() {
    if !is_child() {
        return;
    }
    let expect = std::env::var("AMESH_EXPECT").expect("expectation");
    match (ttl_from_env(), expect.as_str()) {
        (
            Err(CredentialError::InvalidTtl {
                variable: "SECRETS_TTL_SECONDS",
                ..
            }),
            "err",
        ) => {}
        (Ok(ttl), secs) => assert_eq!(ttl.as_secs().to_string(), secs),
        (other, _) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ttl_from_env_reads_secrets_ttl_seconds() {
    if is_child() {
        return;
    }
    assert!(
        child("child_ttl_from_env", &[("AMESH_EXPECT", "2592000")]),
        "unset: default"
    );
    assert!(child(
        "child_ttl_from_env",
        &[("SECRETS_TTL_SECONDS", "86400"), ("AMESH_EXPECT", "86400")]
    ));
    for bad in ["0", "-1", "soon", "2592001"] {
        assert!(
            child(
                "child_ttl_from_env",
                &[("SECRETS_TTL_SECONDS", bad), ("AMESH_EXPECT", "err")]
            ),
            "{bad}"
        );
    }
}

/// In the child: `AgentSecret::resolve` with `AMESH_EXPECT` = `env` (from
/// the environment, the file untouched), `file` (created) or `err`.
#[test]
fn child_agent_secret_from_env() {
    if !is_child() {
        return;
    }
    let file = std::env::var("AMESH_SECRET_FILE").expect("file");
    let result = AgentSecret::resolve(Some(std::path::Path::new(&file)));
    match std::env::var("AMESH_EXPECT").expect("expectation").as_str() {
        "env" => {
            result.expect("resolved");
            assert!(
                !std::path::Path::new(&file).exists(),
                "env wins: no file created"
            );
        }
        "file" => {
            result.expect("resolved");
            assert!(std::path::Path::new(&file).exists(), "created on first use");
        }
        _ => {
            let err = result.expect_err("refused");
            assert!(
                matches!(
                    err,
                    SecretError::TooShort { .. } | SecretError::Malformed { .. }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("AMESH_AGENT_SECRET"), "{err}");
        }
    }
}

#[test]
fn agent_secret_env_wins_over_the_file_and_is_validated() {
    if is_child() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("agent.secret");
    let file = file.to_str().expect("utf-8 path");
    let good = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
    assert!(child(
        "child_agent_secret_from_env",
        &[
            ("AMESH_AGENT_SECRET", good),
            ("AMESH_SECRET_FILE", file),
            ("AMESH_EXPECT", "env")
        ]
    ));
    assert!(child(
        "child_agent_secret_from_env",
        &[
            ("AMESH_AGENT_SECRET", "c2hvcnQ="),
            ("AMESH_SECRET_FILE", file),
            ("AMESH_EXPECT", "err")
        ]
    ));
    assert!(child(
        "child_agent_secret_from_env",
        &[
            ("AMESH_AGENT_SECRET", "%%%"),
            ("AMESH_SECRET_FILE", file),
            ("AMESH_EXPECT", "err")
        ]
    ));
    // Without the variable the file is created on first use.
    assert!(child(
        "child_agent_secret_from_env",
        &[("AMESH_SECRET_FILE", file), ("AMESH_EXPECT", "file")]
    ));
}
