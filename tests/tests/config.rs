//! The YAML config loader as operators meet it: fixture files in
//! `tests/fixtures/config/`, exact `file:line:column: key.path: message`
//! errors, and Solace Agent Mesh shaped configs that must load.
//!
//! Variables come from an injected map (`load_files_with_env`), never from
//! the process environment, so tests stay independent of each other and of
//! the machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use amesh_mcp::secret::ExposeSecret as _;
use amesh_runtime::config::{
    AppKind, AppSpec, LoadedConfig, LogLevel, SessionServiceKind, VerificationMode, load_files,
    load_files_with_env,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(name)
}

/// `fixture(name)` as it appears at the start of an error line.
fn f(name: &str) -> String {
    fixture(name).display().to_string()
}

fn with_env(
    files: &[&str],
    vars: &[(&str, &str)],
) -> Result<LoadedConfig, amesh_runtime::config::ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|name| fixture(name)).collect();
    load_files_with_env(&paths, &|name| vars.get(name).cloned())
}

fn load_ok(files: &[&str], vars: &[(&str, &str)]) -> LoadedConfig {
    match with_env(files, vars) {
        Ok(cfg) => cfg,
        Err(errors) => panic!("expected {files:?} to load, got:\n{errors}"),
    }
}

fn errors(files: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
    match with_env(files, vars) {
        Ok(_) => panic!("expected {files:?} to fail"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn agent(app: &AppSpec) -> &amesh_runtime::config::AgentConfig {
    match &app.kind {
        AppKind::Agent(a) => a,
        AppKind::Gateway(_) => panic!("{} is a gateway", app.name),
    }
}

fn gateway(app: &AppSpec) -> &amesh_runtime::config::GatewayConfig {
    match &app.kind {
        AppKind::Gateway(g) => g,
        AppKind::Agent(_) => panic!("{} is an agent", app.name),
    }
}

#[test]
fn typo_in_enum_value_names_the_choices() {
    assert_eq!(
        errors(&["typo_enum.yaml"], &[]),
        [format!(
            "{}:14:28: apps[0].app_config.trust_manager.verification_mode: expected \"strict\" or \"permissive\", found \"stict\"",
            f("typo_enum.yaml")
        )]
    );
}

#[test]
fn unknown_key_is_reported_at_the_key_with_the_known_keys() {
    assert_eq!(
        errors(&["unknown_key.yaml"], &[]),
        [format!(
            "{}:11:9: apps[0].app_config.trust_manager.verificaton_mode: unknown key \"verificaton_mode\"; \
             expected one of: enabled, card_publish_interval_seconds, card_expiration_days, verification_mode, \
             clock_skew_tolerance_seconds, enable_time_validation, jwt_default_ttl_seconds, jwt_max_ttl_seconds, \
             key_file; did you mean \"verification_mode\"?",
            f("unknown_key.yaml")
        )]
    );
}

#[test]
fn missing_required_key_is_reported_at_the_mapping() {
    assert_eq!(
        errors(&["missing_key.yaml"], &[]),
        [format!(
            "{}:8:7: apps[0].app_config: missing required key \"namespace\"",
            f("missing_key.yaml")
        )]
    );
}

#[test]
fn nested_includes_and_merged_include_load() {
    let cfg = load_ok(&["include_ok.yaml"], &[]);
    let app = &cfg.apps[0];
    assert!(app.broker.dev_mode);
    assert_eq!(app.broker.broker_username.as_deref(), Some("included-user"));
    assert_eq!(app.broker.keep_alive_seconds, 30);
    assert_eq!(agent(app).namespace, "a2a/include");
    assert_eq!(agent(app).max_call_depth, 3);
    assert_eq!(app.source, fixture("include_ok.yaml"));
}

#[test]
fn error_inside_included_file_names_that_file() {
    assert_eq!(
        errors(&["include_error.yaml"], &[]),
        [format!(
            "{}:3:17: apps[0].app_config.max_call_depth: expected an integer, found \"deep\"",
            fixture("include/agent_bad.yaml").display()
        )]
    );
}

#[test]
fn env_defaults_are_substituted_then_typed() {
    let cfg = load_ok(&["env.yaml"], &[]);
    let app = &cfg.apps[0];
    assert!(app.broker.dev_mode);
    let gw = gateway(app);
    let port: u16 = gw.port;
    assert_eq!(port, 8000);
    assert_eq!(gw.namespace, "a2a/env");
    assert_eq!(gw.host, "127.0.0.1");
    // Quoted: stays the string "0123", not the number 123.
    assert_eq!(
        gw.session_secret_key.as_ref().map(|k| k.expose_secret()),
        Some("0123")
    );
}

#[test]
fn env_values_override_defaults_and_are_typed() {
    let cfg = load_ok(
        &["env.yaml"],
        &[
            ("CFG_IT_ENV_PORT", "9443"),
            ("CFG_IT_ENV_DEV", "false"),
            ("CFG_IT_ENV_URL", "ssl://broker.example:8883"),
        ],
    );
    let app = &cfg.apps[0];
    assert!(!app.broker.dev_mode);
    assert_eq!(
        app.broker.broker_url.as_deref(),
        Some("ssl://broker.example:8883")
    );
    assert_eq!(gateway(app).port, 9443);
}

#[test]
fn env_value_of_the_wrong_type_is_reported_at_the_scalar() {
    assert_eq!(
        errors(&["env.yaml"], &[("CFG_IT_ENV_PORT", "abc")]),
        [format!(
            "{}:13:13: apps[0].app_config.port: expected an integer, found \"abc\"",
            f("env.yaml")
        )]
    );
}

#[test]
fn missing_env_var_without_default_names_the_variable() {
    assert_eq!(
        errors(&["env_missing.yaml"], &[]),
        [format!(
            "{}:8:18: apps[0].app_config.namespace: a value is required here; environment variable CFG_IT_MISSING_NS is not set and \
             \"${{CFG_IT_MISSING_NS}}\" has no default, so it reads as empty (write \"${{CFG_IT_MISSING_NS, default}}\" to give one)",
            f("env_missing.yaml")
        )]
    );
    let cfg = load_ok(&["env_missing.yaml"], &[("CFG_IT_MISSING_NS", "a2a/set")]);
    assert_eq!(agent(&cfg.apps[0]).namespace, "a2a/set");
}

#[test]
fn missing_env_var_does_not_hide_type_errors() {
    let file = f("env_missing_more.yaml");
    assert_eq!(
        errors(&["env_missing_more.yaml"], &[]),
        [
            format!(
                "{file}:8:18: apps[0].app_config.namespace: a value is required here; environment variable CFG_IT_MISSING_MORE_NS is not set \
                 and \"${{CFG_IT_MISSING_MORE_NS}}\" has no default, so it reads as empty (write \"${{CFG_IT_MISSING_MORE_NS, default}}\" to give one)"
            ),
            format!(
                "{file}:10:23: apps[0].app_config.max_call_depth: expected an integer, found \"many\""
            ),
        ]
    );
}

#[test]
fn merge_keys_explicit_keys_win_and_earlier_sources_win() {
    let cfg = load_ok(&["merge.yaml"], &[]);
    let app = &cfg.apps[0];
    assert!(!app.broker.dev_mode);
    assert_eq!(
        app.broker.broker_url.as_deref(),
        Some("tcp://localhost:1883")
    );
    assert_eq!(app.broker.broker_username.as_deref(), Some("agent-user"));
    assert_eq!(app.broker.keep_alive_seconds, 30);
    let tm = &agent(app).trust_manager;
    assert_eq!(tm.verification_mode, VerificationMode::Strict);
    assert_eq!(tm.jwt_default_ttl_seconds, 900);
    assert_eq!(tm.card_publish_interval_seconds, 5);
    assert!(tm.enabled);
}

#[test]
fn error_in_merged_anchor_points_at_the_anchor_definition() {
    assert_eq!(
        errors(&["merge_error.yaml"], &[]),
        [format!(
            "{}:6:25: apps[0].broker.keep_alive_seconds: expected an integer, found \"soon\"",
            f("merge_error.yaml")
        )]
    );
}

#[test]
fn include_cycle_is_an_error() {
    assert_eq!(
        errors(&["cycle_a.yaml"], &[]),
        [format!(
            "{b}:3:8: apps[0].app_config.tools: include cycle: {a} -> {b} -> {a}",
            a = f("cycle_a.yaml"),
            b = f("cycle_b.yaml"),
        )]
    );
}

#[test]
fn all_errors_of_all_files_are_reported_in_one_run() {
    let missing = fixture("does_not_exist.yaml");
    let paths = [
        fixture("many_a.yaml"),
        fixture("many_b.yaml"),
        fixture("many_c.yaml"),
        missing.clone(),
    ];
    let errs: Vec<String> = match load_files_with_env(&paths, &|_| None) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    let (a, b, c) = (f("many_a.yaml"), f("many_b.yaml"), f("many_c.yaml"));
    let expected = [
        format!(
            "{a}:10:9: apps[0].app_config.trust_manager.verificaton_mode: unknown key \"verificaton_mode\"; \
             expected one of: enabled, card_publish_interval_seconds, card_expiration_days, verification_mode, \
             clock_skew_tolerance_seconds, enable_time_validation, jwt_default_ttl_seconds, jwt_max_ttl_seconds, \
             key_file; did you mean \"verification_mode\"?"
        ),
        format!("{a}:17:13: apps[1].app_config.port: expected an integer, found \"lots\""),
        format!(
            "{a}:19:17: apps[2].app_module: unknown app_module \"agnet\"; amesh runs \"agent\" \
             (SAM's solace_agent_mesh.agent.sac.app) and \"gateway\" (solace_agent_mesh.gateway.http_sse.app); \
             did you mean \"agent\"?"
        ),
        format!(
            "{c}:4:4: YAML syntax error: while parsing a block collection, did not find expected '-' indicator"
        ),
        format!(
            "{}: cannot read file: No such file or directory (os error 2)",
            missing.display()
        ),
        format!("{b}:2:5: apps[0].name: app name \"first\" is already used at {a}:3"),
        format!(
            "{b}:4:5: apps[0].broker.broker_url: broker_url is required (like tcp://localhost:1883); \
             or set `dev_mode: true` in `broker:` to use the in-process dev bus"
        ),
        format!(
            "{b}:7:7: apps[0].app_config.namespace: namespace \"a2a//many\" has an empty topic level \
             (a leading, trailing or doubled \"/\")"
        ),
        format!(
            "{b}:9:7: apps[0].app_config.max_message_size_bytes: max_message_size_bytes must be at least 1024, found 10"
        ),
    ];
    assert_eq!(errs, expected, "got:\n{}", errs.join("\n"));
}

#[test]
fn semantic_checks_point_at_the_offending_keys() {
    let s = f("semantics.yaml");
    let expected = [
        format!(
            "{s}:7:7: apps[0].broker.broker_username: broker_username \"user+1\" is used as an MQTT topic level \
             and must not contain the MQTT wildcards \"+\" or \"#\""
        ),
        format!(
            "{s}:6:7: apps[0].broker.broker_url: unsupported scheme \"http\" in broker_url \"http://localhost:1883\"; \
             expected tcp://, mqtt://, ssl:// or mqtts://"
        ),
        format!(
            "{s}:12:9: apps[0].app_config.trust_manager.jwt_default_ttl_seconds: jwt_default_ttl_seconds (7200) \
             must not exceed jwt_max_ttl_seconds (3600)"
        ),
        format!(
            "{s}:14:9: apps[0].app_config.trust_manager.card_publish_interval_seconds: \
             card_publish_interval_seconds must be at least 1"
        ),
        format!(
            "{s}:16:9: apps[0].app_config.agent_card_publishing.interval_seconds: interval_seconds must be at least 1"
        ),
        format!(
            "{s}:17:7: apps[0].app_config.session_service.database_url: session_service type sql needs a \
             database_url (like sqlite://agent.db or postgres://...)"
        ),
        format!(
            "{s}:24:7: apps[1].app_config.agent_name: agent \"twin\" in namespace \"a2a/sem\" is already defined at {s}:10"
        ),
        format!(
            "{s}:25:5: apps[2].name: the app name \"gw/one\" (the default gateway_id) is used as an MQTT topic \
             level and must not contain \"/\""
        ),
        format!(
            "{s}:36:11: apps[2].app_config.users[1].id: user id \"alice\" is already used by users[0]"
        ),
        format!(
            "{s}:37:11: apps[2].app_config.users[1].token_sha256: token_sha256 must be 64 hex characters \
             (`amesh users hash-token` prints it)"
        ),
        format!(
            "{s}:38:11: apps[2].app_config.users[2]: user \"bob\" needs a token or token_sha256 because \
             frontend_use_authorization is true"
        ),
        format!(
            "{s}:43:7: apps[3].app_config.namespace: namespace \"a2a//sem\" has an empty topic level \
             (a leading, trailing or doubled \"/\")"
        ),
        format!(
            "{s}:45:7: apps[3].app_config.port: 127.0.0.1:8080 is already used by gateway app \"gw/one\" at {s}:31"
        ),
    ];
    let errs = errors(&["semantics.yaml"], &[]);
    assert_eq!(errs, expected, "got:\n{}", errs.join("\n"));
}

#[test]
fn solace_agent_mesh_shaped_config_loads() {
    let cfg = load_ok(&["sam_agent.yaml"], &[]);
    assert_eq!(cfg.log.stdout_log_level, LogLevel::Warn);
    assert_eq!(
        cfg.log.log_file.as_deref(),
        Some(Path::new("sam_agent.log"))
    );
    assert_eq!(cfg.apps.len(), 2);

    let orchestrator = &cfg.apps[0];
    assert_eq!(orchestrator.name, "orchestrator_app");
    assert!(!orchestrator.broker.dev_mode);
    assert_eq!(
        orchestrator.broker.broker_url.as_deref(),
        Some("tcp://localhost:1883")
    );
    assert_eq!(
        orchestrator.broker.broker_username.as_deref(),
        Some("default")
    );
    // A plain number in a string field is accepted as its text.
    assert_eq!(orchestrator.broker.broker_password.as_deref(), Some("1234"));
    assert_eq!(orchestrator.broker.temporary_queue, Some(true));
    let a = agent(orchestrator);
    assert_eq!(a.namespace, "sam/prod");
    assert_eq!(a.agent_name, "OrchestratorAgent");
    let model = a.model.as_ref().expect("model");
    assert_eq!(model.model, "openai/gpt-4o");
    assert_eq!(model.temperature, Some(0.1));
    assert!(
        a.instruction
            .as_deref()
            .unwrap_or("")
            .starts_with("You are the Orchestrator")
    );
    assert_eq!(a.session_service.kind, SessionServiceKind::Memory);
    assert_eq!(
        a.artifact_service.as_ref().expect("artifacts").kind,
        amesh_runtime::config::ArtifactServiceKind::Filesystem
    );
    assert_eq!(
        a.agent_card.default_output_modes.as_deref(),
        Some(&["text".to_string(), "file".to_string()][..])
    );

    let webui = &cfg.apps[1];
    assert_eq!(webui.broker.broker_username.as_deref(), Some("webui"));
    let g = gateway(webui);
    assert_eq!(g.gateway_id.as_deref(), Some("webui-gateway"));
    assert_eq!((g.host.as_str(), g.port), ("127.0.0.1", 8000));
}

#[test]
fn several_files_load_into_one_config_in_order() {
    // env.yaml's gateway would take sam_agent.yaml's port 8000 by default.
    let cfg = load_ok(
        &["sam_agent.yaml", "merge.yaml", "env.yaml"],
        &[("CFG_IT_ENV_PORT", "8001")],
    );
    let names: Vec<&str> = cfg.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "orchestrator_app",
            "webui_app",
            "merged-agent",
            "env-gateway"
        ]
    );
    assert_eq!(cfg.log.stdout_log_level, LogLevel::Warn);
    assert_eq!(cfg.apps[2].source, fixture("merge.yaml"));
}

#[test]
fn shipped_dev_config_loads() {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/dev.yaml");
    let cfg = match load_files_with_env(&[dev], &|_| None) {
        Ok(cfg) => cfg,
        Err(errors) => panic!("configs/dev.yaml:\n{errors}"),
    };
    assert!(cfg.apps.iter().all(|a| a.broker.dev_mode));
}

#[test]
fn load_files_reads_the_process_environment() {
    // No variable is needed: every `${...}` in env.yaml has a default, and
    // the CFG_IT_ names are unique to this test file.
    let cfg = match load_files(&[fixture("env.yaml")]) {
        Ok(cfg) => cfg,
        Err(errors) => panic!("{errors}"),
    };
    assert_eq!(cfg.apps.len(), 1);
}

/// The redirect URI an agent with OAuth2 tools needs to pass `config check`.
const REDIRECT: &[(&str, &str)] = &[(
    "OAUTH_TOOL_REDIRECT_URI",
    "http://localhost:8000/api/v1/auth/tool/callback",
)];

#[test]
fn mcp_manifest_errors_name_the_tool_the_entry_and_the_line() {
    let errs = errors(&["mcp_manifest_errors.yaml"], REDIRECT);
    let file = f("mcp_manifest_errors.yaml");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "{file}:19:15: apps[0].app_config.tools[0].manifest[0].inputSchema: MCP tool `jira`, manifest entry 0 (`search`): not a valid tool input schema"
        )),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[1],
        format!(
            "{file}:20:15: apps[0].app_config.tools[0].manifest[1].description: MCP tool `jira`, manifest entry 1 (`nodesc`): missing `description`: the model chooses tools by it"
        )
    );
}

#[test]
fn configured_oauth_endpoints_that_are_not_https_are_reported_at_their_lines() {
    let errs = errors(&["mcp_auth_url_errors.yaml"], REDIRECT);
    let file = f("mcp_auth_url_errors.yaml");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        errs[0],
        format!(
            "{file}:16:13: apps[0].app_config.tools[0].auth.authorization_url: MCP tool `jira`: \
             authorization_url must use https (http only for a loopback host: localhost, \
             127.0.0.0/8, ::1); found scheme \"javascript\""
        )
    );
    assert_eq!(
        errs[1],
        format!(
            "{file}:17:13: apps[0].app_config.tools[0].auth.token_url: MCP tool `jira`: \
             token_url must use https (http only for a loopback host: localhost, \
             127.0.0.0/8, ::1); found http to \"auth.example.com\", which is not a loopback host"
        )
    );
}

#[test]
fn plain_http_to_a_remote_mcp_server_is_refused_unless_allowed() {
    let errs = errors(&["mcp_insecure_http.yaml"], &[]);
    let file = f("mcp_insecure_http.yaml");
    assert_eq!(
        errs,
        [format!(
            "{file}:13:13: apps[0].app_config.tools[0].connection_params.url: MCP tool `plain`: \
             http:// to \"mcp.example.com\", which is not a loopback host, would carry requests \
             and credentials unencrypted; use https, or set `allow_insecure_http: true` in \
             connection_params"
        )]
    );
}

#[test]
fn relative_sqlite_and_secret_paths_resolve_against_the_config_file() {
    let cfg = load_ok(&["relative_paths.yaml"], &[("SECRET_DIR", "rel")]);
    let dir = fixture("relative_paths.yaml")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let relative = agent(&cfg.apps[0]);
    assert_eq!(
        relative.session_service.database_url.as_deref(),
        Some(format!("sqlite://{dir}/data/relative.db?mode=rwc").as_str())
    );
    assert_eq!(
        relative.agent_secret_file.as_deref(),
        Some(Path::new(&format!("{dir}/data/relative.secret")))
    );
    let absolute = agent(&cfg.apps[1]);
    assert_eq!(
        absolute.session_service.database_url.as_deref(),
        Some("sqlite:///var/lib/amesh/absolute.db")
    );
    assert_eq!(
        absolute.agent_secret_file.as_deref(),
        Some(Path::new("/var/lib/amesh/absolute.secret"))
    );
    let memory = agent(&cfg.apps[2]);
    assert_eq!(
        memory.session_service.database_url.as_deref(),
        Some("sqlite::memory:")
    );
    // A path from a variable is written in the config too.
    assert_eq!(
        memory.agent_secret_file.as_deref(),
        Some(Path::new(&format!("{dir}/rel/memory.secret")))
    );
    // `sqlite:///x.db` is relative, as in SQLAlchemy; with no secret named,
    // the secret file sits next to the database, named after the agent.
    let sam = agent(&cfg.apps[3]);
    assert_eq!(
        sam.session_service.database_url.as_deref(),
        Some(format!("sqlite://{dir}/data/sam.db").as_str())
    );
    assert_eq!(
        sam.agent_secret_file.as_deref(),
        Some(Path::new(&format!("{dir}/data/sam.SamAgent.secret")))
    );
    assert!(sam.agent_secret_default && !relative.agent_secret_default);
}

#[test]
fn a_config_without_a_file_keeps_paths_relative_to_the_current_directory() {
    let text = std::fs::read_to_string(fixture("relative_paths.yaml")).unwrap();
    let cfg = amesh_runtime::config::load_str_with_env("<embedded>", &text, &|name| {
        (name == "SECRET_DIR").then(|| "rel".to_owned())
    })
    .expect("loads");
    let relative = agent(&cfg.apps[0]);
    assert_eq!(
        relative.session_service.database_url.as_deref(),
        Some("sqlite://data/relative.db?mode=rwc")
    );
    assert_eq!(
        relative.agent_secret_file.as_deref(),
        Some(Path::new("data/relative.secret"))
    );
}

#[test]
fn an_unreadable_trust_key_is_found_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("agent.key");
    std::fs::write(&key, "not a key\n").unwrap();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config:\n      namespace: ns\n      agent_name: a\n      trust_manager:\n        key_file: {}\n",
            key.display()
        ),
    )
    .unwrap();
    let errs = load_files_with_env(&[&cfg], &|_| None).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(
        (e.line, e.key_path.as_str()),
        (9, "apps[0].app_config.trust_manager.key_file")
    );
    assert!(e.message.contains(&key.display().to_string()), "{e}");
}
