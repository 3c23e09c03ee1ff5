//! The top-level `docker-compose.yml` is a valid Compose file, as Docker
//! Compose itself reads it: `docker compose config` (the docker CLI's
//! plugin) or `docker-compose config` (Debian's `docker-compose` package);
//! neither needs a running daemon. Skipped with a message when neither is
//! installed, unless `CI=true` (`scripts/prereqs` installs the package).
//! That the services really run is `compose_stack.rs`.

use std::path::Path;
use std::process::{Command, Output};

use amesh_tests::amesh_bin::workspace_root;
use yaml_serde::Value;

/// The Compose command available here: `docker compose` or `docker-compose`.
fn compose_tool() -> Option<Vec<&'static str>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .find(|cmd| works(cmd))
}

fn tool_or_skip() -> Option<Vec<&'static str>> {
    let tool = compose_tool();
    if tool.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: neither `docker compose` nor `docker-compose` is installed (scripts/prereqs installs docker-compose)"
        );
        eprintln!("skipped: neither `docker compose` nor `docker-compose` is installed");
    }
    tool
}

/// `config` on `file` in `dir`, with no variables from this environment
/// (so the file's own defaults are what is checked).
fn config(tool: &[&str], dir: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(tool[0])
        .args(&tool[1..])
        .arg("-f")
        .arg(file)
        .args(["--project-directory"])
        .arg(dir)
        .arg("config")
        .args(extra)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("running compose")
}

#[test]
fn docker_compose_config_accepts_the_file_and_resolves_it() {
    let Some(tool) = tool_or_skip() else {
        return;
    };
    let root = workspace_root();
    let out = config(&tool, &root, &root.join("docker-compose.yml"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool:?} config:\n{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("${"), "every variable resolved:\n{text}");
    let doc: Value = yaml_serde::from_str(&text).unwrap();
    let services = &doc["services"];
    for name in [
        "acl",
        "mosquitto",
        "postgres",
        "demo-provider",
        "gateway",
        "assistant",
        "helper",
    ] {
        assert!(services.get(name).is_some(), "{name} missing:\n{text}");
    }
    // Mosquitto waits for the provisioning to finish, the rest for a healthy broker.
    assert_eq!(
        services["mosquitto"]["depends_on"]["acl"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    for agent in ["gateway", "assistant", "helper"] {
        assert_eq!(
            services[agent]["depends_on"]["mosquitto"]["condition"].as_str(),
            Some("service_healthy"),
            "{agent}"
        );
    }
    // The anchors merged: the agents have the shared environment.
    assert_eq!(
        services["assistant"]["environment"]["BROKER_URL"].as_str(),
        Some("tcp://mosquitto:1883")
    );
    assert_eq!(services["gateway"]["image"].as_str(), Some("amesh:dev"));
}

#[test]
fn docker_compose_config_refuses_a_broken_file() {
    let Some(tool) = tool_or_skip() else {
        return;
    };
    // The check can fail: a dependency on a service that does not exist.
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let broken = text.replacen(
        "      acl:\n        condition: service_completed_successfully",
        "      no-such-service:\n        condition: service_completed_successfully",
        1,
    );
    assert_ne!(
        broken, text,
        "the mosquitto dependency on acl is in the file"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("configs/compose")).unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, broken).unwrap();
    let out = config(&tool, dir.path(), &file, &["-q"]);
    assert!(
        !out.status.success(),
        "{tool:?} config accepted a dependency on an unknown service"
    );
}
