//! The artifact store: versions, append, list, delete, isolation by user
//! and session, and names that cannot leave the base directory.

use serde_json::{Value, json};

use super::*;
use crate::config::{ArtifactServiceConfig, ToolConfig};

fn agent_with(service: Option<&str>) -> AgentConfig {
    let mut yaml = String::from(
        "apps:\n  - name: a\n    app_module: agent\n    broker: {dev_mode: true}\n    app_config:\n      namespace: ns\n      agent_name: a\n      tools: [{tool_type: builtin-group, group_name: artifact_management}]\n",
    );
    if let Some(s) = service {
        yaml.push_str(&format!("      artifact_service: {s}\n"));
    }
    let cfg = crate::config::load_str_with_env("t.yaml", &yaml, &|_| None).expect("loads");
    match &cfg.apps[0].kind {
        crate::config::AppKind::Agent(a) => (**a).clone(),
        crate::config::AppKind::Gateway(_) => unreachable!(),
    }
}

fn data(parts: &[Part]) -> Value {
    match parts {
        [Part::Data { data, .. }] => data.clone(),
        other => panic!("expected one data part, got {other:?}"),
    }
}

async fn exercise(store: &Artifacts) {
    let run = |tool, user: &'static str, session: &'static str, args: Value| async move {
        store.call(tool, user, session, &args).await
    };
    let v0 = run(
        BuiltinTool::CreateArtifact,
        "alice",
        "s1",
        json!({"filename": "notes.md", "content": "# Notes\n", "mime_type": "text/markdown"}),
    )
    .await
    .unwrap();
    assert_eq!(data(&v0)["version"], 0);
    let v1 = run(
        BuiltinTool::AppendToArtifact,
        "alice",
        "s1",
        json!({"filename": "notes.md", "content_chunk": "- one\n", "mime_type": "text/plain"}),
    )
    .await
    .unwrap();
    assert_eq!(data(&v1)["version"], 1);
    let loaded = run(
        BuiltinTool::LoadArtifact,
        "alice",
        "s1",
        json!({"filename": "notes.md", "version": "latest"}),
    )
    .await
    .unwrap();
    let loaded = data(&loaded);
    assert_eq!(loaded["content"], "# Notes\n- one\n");
    assert_eq!(
        loaded["mime_type"], "text/markdown",
        "append keeps the MIME type"
    );
    let first = run(
        BuiltinTool::LoadArtifact,
        "alice",
        "s1",
        json!({"filename": "notes.md", "version": 0}),
    )
    .await
    .unwrap();
    assert_eq!(data(&first)["content"], "# Notes\n");

    // Binary content is base64; a name with separators stays one file.
    let png = run(
        BuiltinTool::CreateArtifact,
        "alice",
        "s1",
        json!({"filename": "../../etc/x.png", "content": "iVBORw0KGgo=", "mime_type": "image/png"}),
    )
    .await
    .unwrap();
    assert_eq!(data(&png)["version"], 0);
    let list = run(BuiltinTool::ListArtifacts, "alice", "s1", json!({}))
        .await
        .unwrap();
    let list = data(&list);
    let artifacts = list["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{list}");
    assert_eq!(artifacts[1]["filename"], "notes.md");
    assert_eq!(artifacts[1]["latest_version"], 1);
    assert_eq!(artifacts[0]["size_bytes"], 8);

    // Another session of the same user, and another user, see nothing.
    for (user, session) in [("alice", "s2"), ("bob", "s1")] {
        let other = run(BuiltinTool::ListArtifacts, user, session, json!({}))
            .await
            .unwrap();
        assert_eq!(data(&other)["artifacts"], json!([]), "{user} {session}");
        let err = run(
            BuiltinTool::LoadArtifact,
            user,
            session,
            json!({"filename": "notes.md", "version": 0}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("no version 0"), "{err}");
    }

    let err = run(
        BuiltinTool::AppendToArtifact,
        "alice",
        "s1",
        json!({"filename": "nope.txt", "content_chunk": "x"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("create it first"), "{err}");
    let err = run(
        BuiltinTool::CreateArtifact,
        "alice",
        "s1",
        json!({"filename": "bin", "content": "not base64!", "mime_type": "application/octet-stream"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("base64"), "{err}");

    let deleted = run(
        BuiltinTool::DeleteArtifact,
        "alice",
        "s1",
        json!({"filename": "notes.md"}),
    )
    .await
    .unwrap();
    assert_eq!(data(&deleted)["deleted_versions"], 2);
    let list = run(BuiltinTool::ListArtifacts, "alice", "s1", json!({}))
        .await
        .unwrap();
    assert_eq!(data(&list)["artifacts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn memory_store_keeps_versions_per_user_and_session() {
    let cfg = agent_with(None);
    assert_eq!(cfg.tools.len(), 5, "the group is the five artifact tools");
    let store = Artifacts::for_agent(&cfg).unwrap().expect("a store");
    exercise(&store).await;
}

#[tokio::test]
async fn filesystem_store_keeps_everything_under_base_path() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("artifacts");
    let cfg = agent_with(Some(&format!(
        "{{type: filesystem, base_path: {}, artifact_scope: app}}",
        base.display()
    )));
    let store = Artifacts::for_agent(&cfg).unwrap().expect("a store");
    exercise(&store).await;
    // Everything stays below base_path/<scope>: the `../../etc/x.png` name
    // is one encoded directory.
    assert!(!dir.path().join("etc").exists());
    let scope = base.join("a");
    let session = scope.join("alice").join("s1");
    let entries: Vec<String> = std::fs::read_dir(&session)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["%2E.%2F..%2Fetc%2Fx.png"]);
}

#[test]
fn components_round_trip_and_never_traverse() {
    for s in [
        "",
        ".",
        "..",
        "a/b",
        "r\u{e9}sum\u{e9}.pdf",
        "x%y",
        ".hidden",
    ] {
        let e = encode_component(s);
        assert!(
            !e.is_empty() && !e.starts_with('.') && !e.contains('/'),
            "{s} -> {e}"
        );
        assert_eq!(decode_component(&e).as_deref(), Some(s));
    }
}

#[test]
fn cloud_stores_are_refused_where_the_tools_need_them() {
    let mut cfg = agent_with(None);
    let service: ArtifactServiceConfig =
        serde_json::from_value(json!({"type": "s3", "bucket_name": "b"})).unwrap();
    cfg.artifact_service = Some(service);
    let err = Artifacts::for_agent(&cfg).unwrap_err().to_string();
    assert!(err.contains("not supported by amesh"), "{err}");
    cfg.tools = vec![ToolConfig::Builtin {
        tool_name: "echo".into(),
        tool_config: None,
    }];
    assert!(Artifacts::for_agent(&cfg).unwrap().is_none());
}
