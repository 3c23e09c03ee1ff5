//! Solace Agent Mesh's own configs, as an operator brings them: unmodified
//! copies of SAM's examples and of the project `sam init` writes (in
//! `tests/fixtures/sam/`) load with SAM's reading of YAML, warn about what
//! amesh ignores, refuse what it cannot run, and start on the dev bus.
//!
//! Variables come from an injected map shaped like the `.env` `sam init`
//! writes, never from the process environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amesh_runtime::config::{
    AgentConfig, AppKind, ConfigErrors, LoadOptions, LoadedConfig, LogFormat, LogLevel, ToolConfig,
    load_files_with,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sam")
        .join(name)
}

/// The variables of a `sam init` project's `.env` (dev broker, a model).
const SAM_ENV: &[(&str, &str)] = &[
    ("SOLACE_DEV_MODE", "true"),
    ("NAMESPACE", "myorg/dev/"),
    ("LLM_SERVICE_ENDPOINT", "http://127.0.0.1:9/v1"),
    ("LLM_SERVICE_API_KEY", "sk-test"),
    ("LLM_SERVICE_GENERAL_MODEL_NAME", "openai/gpt-4o"),
    ("LLM_SERVICE_PLANNING_MODEL_NAME", "openai/gpt-4o"),
    ("FASTAPI_HOST", "127.0.0.1"),
    ("FASTAPI_PORT", "0"),
    ("SESSION_SECRET_KEY", "test-session-key"),
    // As SAM's guide to user-delegated access asks (loopback may be http).
    (
        "OAUTH_TOOL_REDIRECT_URI",
        "http://localhost:8000/api/v1/auth/tool/callback",
    ),
];

fn load(
    files: &[&str],
    vars: &[(&str, &str)],
    options: LoadOptions,
) -> Result<LoadedConfig, ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    load_files_with(&paths, &|name| vars.get(name).cloned(), options)
}

fn load_ok(files: &[&str], vars: &[(&str, &str)]) -> LoadedConfig {
    load(files, vars, LoadOptions::default())
        .unwrap_or_else(|e| panic!("expected {files:?} to load, got:\n{e}"))
}

fn errors(files: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
    match load(files, vars, LoadOptions::default()) {
        Ok(_) => panic!("expected {files:?} to fail"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(cfg: &LoadedConfig) -> Vec<String> {
    cfg.warnings.iter().map(ToString::to_string).collect()
}

fn agent(cfg: &LoadedConfig, i: usize) -> &AgentConfig {
    match &cfg.apps[i].kind {
        AppKind::Agent(a) => a,
        AppKind::Gateway(_) => panic!("app {i} is a gateway"),
    }
}

const REMOTE_MCP: [(&str, &str, usize); 4] = [
    ("mcp_stripe.yaml", "https://mcp.stripe.com/", 911),
    ("mcp_canva.yaml", "https://mcp.canva.com/mcp", 700),
    (
        "mcp_cloudflare.yaml",
        "https://graphql.mcp.cloudflare.com/sse",
        343,
    ),
    (
        "mcp_jira_sse_example.yaml",
        "https://mcp.atlassian.com/v1/sse",
        1147,
    ),
];

#[test]
fn sams_four_remote_mcp_examples_load_with_warnings_not_errors() {
    for (file, url, embed_line) in REMOTE_MCP {
        let name = format!("examples/agents/remote-mcp/{file}");
        let cfg = load_ok(&[&name], SAM_ENV);
        assert_eq!(cfg.apps.len(), 1, "{file}");
        let agent = agent(&cfg, 0);
        assert_eq!(agent.namespace, "myorg/dev", "{file}: trailing / stripped");
        let ToolConfig::Mcp(mcp) = &agent.tools[0] else {
            panic!("{file}: the first tool is the MCP server");
        };
        assert_eq!(mcp.connection_params.url, url, "{file}");
        assert!(mcp.requires_user_auth(), "{file}: auth type oauth2");
        assert!(!mcp.manifest.as_ref().unwrap().is_empty(), "{file}");
        let names: Vec<String> = agent.tools[1..]
            .iter()
            .map(|t| match t {
                ToolConfig::Builtin { tool_name, .. } => tool_name.clone(),
                ToolConfig::Mcp(_) => "mcp".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "create_artifact",
                "list_artifacts",
                "load_artifact",
                "append_to_artifact",
                "delete_artifact"
            ],
            "{file}: artifact_management is amesh's artifact tools"
        );
        assert_eq!(agent.tool_indices, [0, 1, 1, 1, 1, 1], "{file}");
        let shown = warnings(&cfg);
        let embed = format!(
            "{}:{embed_line}:7: apps[0].app_config.enable_embed_resolution: \"enable_embed_resolution\" \
             is a Solace Agent Mesh setting that is not supported by amesh, ignored",
            fixture(&name).display()
        );
        assert!(shown.contains(&embed), "{file}: {shown:#?}");
        assert!(
            !shown.iter().any(|w| w.contains("artifact_management")),
            "{file}: {shown:#?}"
        );
        // Encryption at rest needs no configuration: a secret file next to
        // the (relative, SQLAlchemy-style) SQLite database.
        let db = agent.session_service.database_url.as_deref().unwrap();
        let dir = fixture(&name).parent().unwrap().to_path_buf();
        assert!(
            db.starts_with(&format!("sqlite://{}/", dir.display())),
            "{db}"
        );
        assert!(agent.agent_secret_default);
        let secret = agent.agent_secret_file.as_deref().unwrap();
        assert_eq!(secret.parent(), Some(dir.as_path()));
        assert!(
            secret
                .to_string_lossy()
                .ends_with(&format!(".{}.secret", agent.agent_name))
        );
    }
}

#[test]
fn an_unset_variable_is_an_error_only_where_amesh_needs_the_value() {
    // LLM_SERVICE_GENERAL_MODEL_NAME feeds `model.model`, which the agent
    // needs; LLM_SERVICE_ENDPOINT and the key are unset too but optional.
    let env: Vec<(&str, &str)> = SAM_ENV
        .iter()
        .copied()
        .filter(|(k, _)| {
            k.starts_with("SOLACE") || *k == "NAMESPACE" || *k == "OAUTH_TOOL_REDIRECT_URI"
        })
        .collect();
    let shared = fixture("examples/agents/remote-mcp/shared_config.yaml");
    assert_eq!(
        errors(&["examples/agents/remote-mcp/mcp_stripe.yaml"], &env),
        [format!(
            "{}:32:14: apps[0].app_config.model.model: a value is required here; environment variable \
             LLM_SERVICE_GENERAL_MODEL_NAME is not set and \"${{LLM_SERVICE_GENERAL_MODEL_NAME}}\" has no \
             default, so it reads as empty (write \"${{LLM_SERVICE_GENERAL_MODEL_NAME, default}}\" to give one)",
            shared.display()
        )]
    );
}

#[test]
fn what_run_refuses_at_start_config_check_finds_in_one_pass() {
    let mut env: Vec<(&str, &str)> = SAM_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "OAUTH_TOOL_REDIRECT_URI")
        .collect();
    env.push(("SECRETS_TTL_SECONDS", "2592001"));
    env.push(("STRIPE_DATABASE_URL", "sqlserver://db/x"));
    let name = "examples/agents/remote-mcp/mcp_stripe.yaml";
    let file = fixture(name).display().to_string();
    let errs = errors(&[name], &env);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "{file}:903:7: apps[0].app_config.session_service: "
        )),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("SECRETS_TTL_SECONDS") && errs[0].contains("2592000"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with(&format!(
            "{file}:905:9: apps[0].app_config.session_service.database_url: "
        )),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with(&format!("{file}:39:11: apps[0].app_config.tools[0].auth: ")),
        "{}",
        errs[2]
    );
    assert!(errs[2].contains("OAUTH_TOOL_REDIRECT_URI"), "{}", errs[2]);

    let env: Vec<(&str, &str)> = SAM_ENV
        .iter()
        .copied()
        .map(|(k, v)| {
            if k == "OAUTH_TOOL_REDIRECT_URI" {
                (k, "http://gw.example.com/callback")
            } else {
                (k, v)
            }
        })
        .collect();
    let errs = errors(&[name], &env);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains(": apps[0].app_config.oauth_tool_redirect_uri: redirect URI"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("must end in /api/v1/auth/tool/callback"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].ends_with("(from the environment variable OAUTH_TOOL_REDIRECT_URI)"),
        "{}",
        errs[0]
    );
}

#[test]
fn sams_stdio_mcp_example_loads_its_servers() {
    let name = "examples/agents/a2a_mcp_example.yaml";
    let cfg = load_ok(&[name], SAM_ENV);
    assert_eq!(cfg.apps.len(), 2);
    let stdio: Vec<&amesh_mcp::tool_config::McpToolConfig> = (0..2)
        .flat_map(|i| agent(&cfg, i).tools.iter())
        .filter_map(|t| match t {
            ToolConfig::Mcp(m) => Some(&**m),
            _ => None,
        })
        .collect();
    assert_eq!(stdio.len(), 2);
    let params = &stdio[0].connection_params;
    assert!(params.transport.is_stdio());
    assert_eq!(
        params.command.as_deref(),
        Some("./node_modules/.bin/mcp-server-filesystem")
    );
    assert_eq!(params.args, ["/tmp/samv2"]);
    assert_eq!(params.timeout(), Duration::from_secs(300));
    assert_eq!(
        stdio[1].connection_params.command.as_deref(),
        Some("./node_modules/.bin/mcp-server-playwright")
    );
    let shown = warnings(&cfg);
    assert!(
        !shown.iter().any(|w| w.contains("connection_params")),
        "{shown:#?}"
    );
    // The shared config (`!include ../shared_config.yaml`) is named
    // without `..` in messages.
    let env: Vec<(&str, &str)> = SAM_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "LLM_SERVICE_PLANNING_MODEL_NAME")
        .collect();
    let errs = errors(&[name], &env);
    let shared = fixture("examples/shared_config.yaml").display().to_string();
    assert!(
        errs[0].starts_with(&format!("{shared}:16:14: apps[0].app_config.model.model: ")),
        "{errs:#?}"
    );
}

#[test]
fn a_stdio_tool_with_auth_or_without_command_is_an_error_at_its_key() {
    let yaml = r#"apps:
  - name: a
    app_module: agent
    broker: {dev_mode: true}
    app_config:
      namespace: ns
      agent_name: A
      tools:
        - tool_type: mcp
          connection_params: {type: stdio, args: [x]}
          auth: {type: oauth2}
          manifest: [{name: t, description: d, inputSchema: {type: object}}]
"#;
    let errs: Vec<String> = amesh_runtime::config::load_str("stdio.yaml", yaml)
        .expect_err("refused")
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        errs.iter().any(|e| e.starts_with(
            "stdio.yaml:10:11: apps[0].app_config.tools[0].connection_params.command: "
        ) && e.contains("needs `command`")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(
            |e| e.starts_with("stdio.yaml:11:11: apps[0].app_config.tools[0].auth: ")
                && e.contains("has no OAuth")
        ),
        "{errs:#?}"
    );
}

#[test]
fn sams_default_websocket_broker_says_to_use_mqtt_or_dev_mode() {
    let env: Vec<(&str, &str)> = SAM_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "SOLACE_DEV_MODE")
        .collect();
    let errs = errors(&["examples/agents/remote-mcp/mcp_canva.yaml"], &env);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let shared = fixture("examples/agents/remote-mcp/shared_config.yaml");
    assert!(
        errs[0].starts_with(&format!(
            "{}:4:7: apps[0].broker.broker_url: ",
            shared.display()
        )),
        "{errs:#?}"
    );
    for part in [
        "ws://localhost:8008",
        "WebSocket",
        "tcp://HOST:1883",
        "dev_mode: true",
    ] {
        assert!(errs[0].contains(part), "{part}: {}", errs[0]);
    }
}

#[test]
fn the_sam_init_project_loads_with_its_python_logging_config() {
    let cfg = load_ok(
        &[
            "preset/logging_config.yaml",
            "preset/agents/basic/main_orchestrator.yaml",
            "preset/agents/basic/webui.yaml",
        ],
        SAM_ENV,
    );
    assert_eq!(cfg.apps.len(), 2);
    // root WARNING, but the solace_agent_mesh logger is at INFO; the
    // rotating file handler's file name comes from its ${VAR, default}.
    assert_eq!(cfg.log.stdout_log_level, LogLevel::Info);
    assert_eq!(cfg.log.log_file.as_deref(), Some(Path::new("sam.log")));
    let orchestrator = agent(&cfg, 0);
    assert_eq!(orchestrator.agent_name, "OrchestratorAgent");
    assert!(orchestrator.model.is_some());
    let AppKind::Gateway(webui) = &cfg.apps[1].kind else {
        panic!("webui is a gateway");
    };
    assert_eq!(webui.namespace, "myorg/dev");
    assert_eq!(webui.port, 0);
    let shown = warnings(&cfg);
    assert!(
        shown.iter().any(|w| w.contains("frontend_welcome_message")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|w| w.contains("Python logging config read as amesh levels")),
        "{shown:#?}"
    );
}

#[test]
fn logging_config_path_names_the_python_logging_config_as_in_sam() {
    let path = fixture("preset/logging_config.yaml").display().to_string();
    let mut env = SAM_ENV.to_vec();
    env.push(("LOGGING_CONFIG_PATH", &path));
    env.push(("LOGGING_FILE_NAME", "sam-from-env.log"));
    let cfg = load_ok(&["preset/agents/basic/main_orchestrator.yaml"], &env);
    assert_eq!(
        cfg.log.log_file.as_deref(),
        Some(Path::new("sam-from-env.log")),
        "the logging config's file handler, its ${{VAR}} substituted"
    );
    let mut env = SAM_ENV.to_vec();
    let not_logging = fixture("preset/shared_config.yaml").display().to_string();
    env.push(("LOGGING_CONFIG_PATH", &not_logging));
    let errs = errors(&["preset/agents/basic/main_orchestrator.yaml"], &env);
    assert!(
        errs[0].contains("LOGGING_CONFIG_PATH names this file"),
        "{errs:#?}"
    );
}

#[test]
fn a_json_formatter_in_the_python_logging_config_makes_that_output_json() {
    let original = std::fs::read_to_string(fixture("preset/logging_config.yaml")).expect("fixture");
    let file_handler =
        "    class: logging.handlers.RotatingFileHandler\n    formatter: simpleFormatter";
    assert!(original.contains(file_handler), "fixture changed");
    let json_file = original.replace(
        file_handler,
        "    class: logging.handlers.RotatingFileHandler\n    formatter: jsonFormatter",
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("logging_config.yaml");
    std::fs::write(&path, json_file).expect("write");
    let path = path.display().to_string();
    let mut env = SAM_ENV.to_vec();
    env.push(("LOGGING_CONFIG_PATH", &path));
    let cfg = load_ok(&["preset/agents/basic/main_orchestrator.yaml"], &env);
    assert_eq!(cfg.log.log_file_format, LogFormat::Json);
    assert_eq!(cfg.log.stdout_log_format, LogFormat::Text);

    let mut env = SAM_ENV.to_vec();
    let plain = fixture("preset/logging_config.yaml").display().to_string();
    env.push(("LOGGING_CONFIG_PATH", &plain));
    let cfg = load_ok(&["preset/agents/basic/main_orchestrator.yaml"], &env);
    assert_eq!(
        cfg.log.log_file_format,
        LogFormat::Text,
        "simpleFormatter is text"
    );
}

#[test]
fn unsupported_app_modules_are_one_error_each_or_skipped_on_request() {
    let files = [
        "preset/agents/basic/platform.yaml",
        "examples/workflows/level1_simple_sequential.yaml",
        "preset/agents/basic/main_orchestrator.yaml",
    ];
    let errs = errors(&files, SAM_ENV);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("apps[0].app_module: app \"platform_service_app\" runs solace_agent_mesh.services.platform.app (SAM's platform service), which amesh does not implement"), "{}", errs[0]);
    assert!(
        errs[1].contains("solace_agent_mesh.workflow.app (SAM's workflow engine)"),
        "{}",
        errs[1]
    );
    assert!(errs.iter().all(|e| e.contains("--skip-unsupported")));

    let cfg = load(
        &files,
        SAM_ENV,
        LoadOptions {
            skip_unsupported: true,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = cfg.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data_doubler_app",
            "value_formatter_app",
            "orchestrator-agent_app"
        ],
        "the workflow's own agents and the orchestrator start"
    );
    let shown = warnings(&cfg);
    assert!(
        shown
            .iter()
            .any(|w| w.contains("\"platform_service_app\"") && w.contains("skipped")),
        "{shown:#?}"
    );
}

#[test]
fn sam_reading_rules_in_one_file() {
    let cfg = load_ok(&["rules/agent_rules.yaml"], &[("SOLACE_DEV_MODE", "true")]);
    let a = agent(&cfg, 0);
    assert_eq!(
        a.namespace, "rules/ns",
        "quoted default, trailing / stripped"
    );
    assert_eq!(a.display_name.as_deref(), Some("Rules, quoted"));
    assert_eq!(
        a.agent_card_publishing.interval_seconds, 5,
        "var in a flow mapping"
    );
    assert_eq!(
        a.inter_agent_communication.allow_list,
        ["Peer*"],
        "var in a flow sequence"
    );
    assert_eq!(a.model_provider, None, "SAM's alias list is not a provider");
    // echo, the MCP server and the artifact tools run; time_delay is left out.
    assert_eq!(a.tools.len(), 7);
    assert_eq!(a.tool_indices, [0, 2, 3, 3, 3, 3, 3]);
    let ToolConfig::Mcp(mcp) = &a.tools[1] else {
        panic!("tools[2] is MCP")
    };
    let entry = &mcp.manifest.as_ref().unwrap()[0];
    assert!(entry.id.is_some() && entry.title.is_some() && entry.annotations.is_some());
    assert!(entry.output_schema.is_some() && entry.meta.is_some());
    let shown = warnings(&cfg);
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[1].contains("tools[1].tool_name: SAM's built-in tool \"time_delay\""));
}

#[test]
fn typos_stay_errors_with_exact_key_paths_all_in_one_pass() {
    let file = fixture("rules/agent_typos.yaml").display().to_string();
    let errs = errors(&["rules/agent_typos.yaml"], &[]);
    let expected = [
        format!(
            "{file}:12:22: apps[0].app_config.tools[0].tool_name: unknown built-in tool: expected one of \"echo\", \"time\", \"sleep\", \"delegate\", \"whoami\", \"create_artifact\", \"list_artifacts\", \"load_artifact\", \"append_to_artifact\", \"delete_artifact\", found \"ecko\"; did you mean \"echo\"?"
        ),
        format!(
            "{file}:17:19: apps[0].app_config.tools[2].connection_params.type: expected one of \"sse\", \"streamable-http\", \"streamable_http\", \"stdio\", found \"websocket\""
        ),
        format!(
            "{file}:20:78: apps[0].app_config.tools[3].connection_params.bogus: unknown key \"bogus\"; expected one of: type, url, command, args, cwd, timeout, sse_read_timeout, headers, tls_insecure_skip_verify, allow_insecure_http"
        ),
        format!(
            "{file}:21:22: apps[0].app_config.tools[4].tool_type: expected one of \"builtin\", \"builtin-group\", \"mcp\", \"python\", found \"bultin\""
        ),
        // Inside `auth` (a tagged enum, typed by serde from a buffer) too.
        format!(
            "{file}:25:32: apps[0].app_config.tools[5].auth.scopez: unknown key \"scopez\"; expected one of: client_id, client_secret, authorization_url, token_url, scopes, allowed_internal_hosts; did you mean \"scopes\"?"
        ),
    ];
    assert_eq!(errs[..5], expected, "got:\n{}", errs.join("\n"));
    assert_eq!(errs.len(), 6, "got:\n{}", errs.join("\n"));
    assert!(errs[5].starts_with(&format!(
        "{file}:9:7: apps[0].app_config.enable_embed_resolutoin: unknown key"
    )));
    assert!(errs[5].ends_with(
        "did you mean \"enable_embed_resolution\" (a Solace Agent Mesh setting amesh ignores)?"
    ));
}

/// SAM's agents and gateway start on the dev bus and the agents reach the
/// gateway's agent list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_examples_start_on_the_dev_bus() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().display().to_string();
    let stripe_db = format!("sqlite:///{d}/stripe-agent.db");
    let orchestrator_db = format!("sqlite:///{d}/orchestrator-agent.db");
    let mut env: Vec<(&str, &str)> = SAM_ENV.to_vec();
    env.push(("STRIPE_DATABASE_URL", &stripe_db));
    env.push(("ORCHESTRATOR_DATABASE_URL", &orchestrator_db));
    let cfg = load_ok(
        &[
            "examples/agents/remote-mcp/mcp_stripe.yaml",
            "preset/agents/basic/main_orchestrator.yaml",
            "preset/agents/basic/webui.yaml",
        ],
        &env,
    );
    let bus = amesh_runtime::broker::DevBus::new();
    let running = amesh_runtime::run::start_apps(&cfg, &bus)
        .await
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    let url = format!("http://{}/api/v1/agents", running.gateway_addrs()[0]);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listed = String::new();
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(&url).send().await {
            listed = resp.text().await.unwrap_or_default();
            if listed.contains("StripeAgent") && listed.contains("OrchestratorAgent") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown();
    running.wait().await;
    assert!(
        listed.contains("StripeAgent") && listed.contains("OrchestratorAgent"),
        "{listed}"
    );
    // No secret was configured: each agent made its own next to its database.
    assert!(
        data.path()
            .join("stripe-agent.StripeAgent.secret")
            .is_file()
    );
    assert!(
        data.path()
            .join("orchestrator-agent.OrchestratorAgent.secret")
            .is_file()
    );
}

/// SAM's `artifact_management` group through a gateway and an agent on the
/// dev bus: what a conversation saves, that conversation (and no other)
/// lists and loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_management_keeps_files_per_conversation() {
    let yaml = r#"apps:
  - name: webui
    app_module: solace_agent_mesh.gateway.http_sse.app
    broker: {dev_mode: true}
    app_config: {namespace: ns/, fastapi_port: 0}
  - name: files
    app_module: solace_agent_mesh.agent.sac.app
    broker: {dev_mode: true}
    app_config:
      namespace: ns/
      agent_name: Files
      agent_card_publishing: {interval_seconds: 1}
      tools:
        - tool_type: builtin-group
          group_name: artifact_management
      artifact_service: {type: filesystem, base_path: artifacts}
"#;
    let mut stack = amesh_tests::stack::Stack::start(yaml).await.unwrap();
    stack
        .wait_for_agent("Files", Duration::from_secs(10))
        .await
        .unwrap();
    let send = |context: &'static str, tool: &'static str, arguments: serde_json::Value| {
        let http = stack.http.clone();
        let url = format!("{}/api/v1/message:send", stack.url());
        async move {
            let body = serde_json::json!({"agent_name": "Files", "contextId": context,
                                          "data": {"tool": tool, "arguments": arguments}});
            let task: serde_json::Value = http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(task["status"]["state"], "completed", "{task}");
            task["artifacts"][0]["parts"][0]["data"].clone()
        }
    };
    let saved = send(
        "c1",
        "create_artifact",
        serde_json::json!({"filename": "plan.md", "content": "step 1"}),
    )
    .await;
    assert_eq!(saved["version"], 0, "{saved}");
    let listed = send("c1", "list_artifacts", serde_json::json!({})).await;
    assert_eq!(listed["artifacts"][0]["filename"], "plan.md", "{listed}");
    let loaded = send(
        "c1",
        "load_artifact",
        serde_json::json!({"filename": "plan.md", "version": 0}),
    )
    .await;
    assert_eq!(loaded["content"], "step 1", "{loaded}");
    let other = send("c2", "list_artifacts", serde_json::json!({})).await;
    assert_eq!(other["artifacts"], serde_json::json!([]), "{other}");
    // Kept on disk next to the config, under the namespace and dev user.
    let base = stack.dir.path().join("artifacts");
    assert!(base.join("ns").join("dev-user").join("c1").is_dir());
    stack.stop().await;
}

/// The MCP TypeScript SDK's install directory (`MCP_TS_SDK_DIR`, set by
/// scripts/test), or `None`: the test says so and passes, except under
/// `CI=true`, where a missing SDK fails.
fn mcp_ts_sdk() -> Option<PathBuf> {
    let Ok(root) = std::env::var("MCP_TS_SDK_DIR") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "MCP_TS_SDK_DIR must be set under CI=true (scripts/test installs the SDK)"
        );
        eprintln!("MCP_TS_SDK_DIR not set: skipping the stdio MCP test");
        return None;
    };
    Some(PathBuf::from(root))
}

/// A SAM agent with an MCP server over stdio (the SDK's stdio transport,
/// `tests/mcp/stdio_server.mjs`) answers a message through the gateway on
/// the dev bus: the agent started the server as its child, listed its tools
/// and calls one, with `environment_variables` reaching the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_stdio_mcp_server_answers_on_the_dev_bus() {
    let Some(sdk) = mcp_ts_sdk() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/stdio_server.mjs");
    let yaml = format!(
        r#"apps:
  - name: webui
    app_module: solace_agent_mesh.gateway.http_sse.app
    broker: {{dev_mode: true}}
    app_config: {{namespace: ns/, fastapi_port: 0}}
  - name: local
    app_module: solace_agent_mesh.agent.sac.app
    broker: {{dev_mode: true}}
    app_config:
      namespace: ns/
      agent_name: Local
      agent_card_publishing: {{interval_seconds: 1}}
      tools:
        - tool_type: mcp
          connection_params:
            type: stdio
            command: node
            args: ["{script}", "{sdk}"]
            timeout: 10
          environment_variables:
            GREETING: "hello from the config"
          tool_name_prefix: "local_"
"#,
        script = script.display(),
        sdk = sdk.display()
    );
    let mut stack = amesh_tests::stack::Stack::start(&yaml).await.unwrap();
    stack
        .wait_for_agent("Local", Duration::from_secs(20))
        .await
        .unwrap();
    let send = |tool: &'static str, arguments: serde_json::Value| {
        let http = stack.http.clone();
        let url = format!("{}/api/v1/message:send", stack.url());
        async move {
            let body = serde_json::json!({"agent_name": "Local",
                                          "data": {"tool": tool, "arguments": arguments}});
            let task: serde_json::Value = http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            task
        }
    };
    let task = send("local_echo", serde_json::json!({"text": "over stdio"})).await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"], "over stdio",
        "{task}"
    );
    let task = send("local_env", serde_json::json!({"name": "GREETING"})).await;
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"], "hello from the config",
        "{task}"
    );
    let task = send("local_pid", serde_json::json!({})).await;
    let pid = task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(pid.parse::<u32>().is_ok(), "{task}");
    assert!(process_alive(&pid));
    // The agent's child goes with the agent.
    stack.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(&pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !process_alive(&pid),
        "stdio server {pid} outlived its agent"
    );
}

/// Whether process `pid` runs (a zombie, killed but not yet reaped, does
/// not count). Linux `/proc`.
fn process_alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state ...`; comm may hold spaces, so split after `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
