//! Tool block parsing and validation, tool ids, argument validation and
//! name filters: everything about MCP tools that needs no server.

use amesh_mcp::client::{ToolDescriptor, apply_filters};
use amesh_mcp::manifest::{ManifestErrorKind, manifest_tools};
use amesh_mcp::schema::{DRAFT_07, DRAFT_2020_12, ToolSchema, for_model, validate_arguments};
use amesh_mcp::secret::ExposeSecret as _;
use amesh_mcp::tool_config::{
    AuthConfig, McpToolConfig, SchemaDialect, TransportKind, normalize_url,
};
use serde_json::{Value, json};

const SAM_BLOCK: &str = r#"
tool_type: mcp
id: atlassian
connection_params:
  type: sse
  url: "https://mcp.example.com/v1/sse"
  timeout: 30
auth:
  type: oauth2
  client_id: my-client
  client_secret: very-secret
  authorization_url: https://auth.example.com/authorize
  token_url: https://auth.example.com/token
  scopes: [read:jira-work, offline_access]
manifest:
  - name: exampleTool
    description: Example tool description
    inputSchema: {type: object, properties: {}, additionalProperties: false, $schema: "http://json-schema.org/draft-07/schema#"}
tool_name_prefix: jira_
allow_list: [exampleTool]
schema_dialect: draft-07
"#;

fn parse(yaml: &str) -> McpToolConfig {
    yaml_serde::from_str(yaml).expect("tool block parses")
}

fn oauth_block(manifest: Value) -> McpToolConfig {
    serde_json::from_value(json!({
        "id": "jira",
        "connection_params": {"type": "streamable-http", "url": "https://mcp.example.com/mcp"},
        "auth": {"type": "oauth2"},
        "manifest": manifest,
    }))
    .unwrap()
}

fn errors_of(cfg: &McpToolConfig) -> Vec<amesh_mcp::manifest::ManifestError> {
    cfg.validate().expect_err("expected validation errors")
}

#[test]
fn sam_shaped_block_parses_and_validates() {
    let cfg = parse(SAM_BLOCK);
    assert_eq!(cfg.tool_id(), "atlassian");
    assert_eq!(cfg.connection_params.transport, TransportKind::Sse);
    assert_eq!(cfg.connection_params.timeout().as_secs(), 30);
    assert_eq!(cfg.schema_dialect, Some(SchemaDialect::Draft07));
    let Some(AuthConfig::OAuth2 {
        scopes,
        client_secret,
        ..
    }) = &cfg.auth
    else {
        panic!("oauth2 auth expected");
    };
    assert_eq!(scopes, &["read:jira-work", "offline_access"]);
    assert_eq!(
        client_secret.as_ref().unwrap().expose_secret(),
        "very-secret"
    );
    assert!(!format!("{cfg:?}").contains("very-secret"));
    cfg.validate().expect("valid block");
    let tools = apply_filters(&cfg, manifest_tools(&cfg));
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].exposed_name, "jira_exampleTool");
    assert_eq!(tools[0].tool.name, "exampleTool");
}

#[test]
fn unknown_keys_are_refused() {
    let err = yaml_serde::from_str::<McpToolConfig>(
        "connection_params: {type: sse, url: 'https://x/sse'}\nallow_lst: [a]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("allow_lst"), "{err}");
    let err = yaml_serde::from_str::<McpToolConfig>(
        "connection_params: {type: sse, url: 'https://x/sse', tiemout: 3}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("tiemout"), "{err}");
}

#[test]
fn tool_id_defaults_to_the_normalized_url() {
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "connection_params": {"type": "sse", "url": "HTTPS://MCP.Example.COM:443/v1/SSE/?x=1#frag"}
    }))
    .unwrap();
    assert_eq!(cfg.tool_id(), "https://mcp.example.com/v1/SSE");
    assert_eq!(
        normalize_url("http://127.0.0.1:8080/mcp/"),
        "http://127.0.0.1:8080/mcp"
    );
    assert_eq!(normalize_url("http://Host:80"), "http://host");
    assert_eq!(
        normalize_url("https://user:pw@host/a"),
        "https://host/a",
        "credentials in the URL never become part of the id"
    );
}

#[test]
fn oauth2_tool_without_manifest_is_an_error() {
    for manifest in [Value::Null, json!([])] {
        let errors = errors_of(&oauth_block(manifest));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, ManifestErrorKind::MissingManifest);
        assert_eq!(errors[0].tool_id, "jira");
        assert_eq!(errors[0].field, "manifest");
    }
}

#[test]
fn each_missing_entry_field_is_reported_with_index_and_name() {
    let errors = errors_of(&oauth_block(json!([
        {"name": "ok", "description": "d", "inputSchema": {"type": "object"}},
        {"description": "no name", "inputSchema": {"type": "object"}},
        {"name": "noDescription", "inputSchema": {"type": "object"}},
        {"name": "noSchema", "description": "d"},
    ])));
    let got: Vec<_> = errors
        .iter()
        .map(|e| {
            (
                e.entry_index,
                e.entry_name.as_deref(),
                e.field.as_str(),
                e.kind,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some(1),
                None,
                "manifest[1].name",
                ManifestErrorKind::MissingField
            ),
            (
                Some(2),
                Some("noDescription"),
                "manifest[2].description",
                ManifestErrorKind::MissingField
            ),
            (
                Some(3),
                Some("noSchema"),
                "manifest[3].inputSchema",
                ManifestErrorKind::MissingField
            ),
        ]
    );
    let shown = errors[1].to_string();
    assert!(
        shown.contains("`jira`") && shown.contains("entry 2") && shown.contains("noDescription"),
        "{shown}"
    );
}

#[test]
fn invalid_input_schemas_are_reported() {
    let errors = errors_of(&oauth_block(json!([
        {"name": "badType", "description": "d", "inputSchema": {"type": "objekt"}},
        {"name": "notObject", "description": "d", "inputSchema": {"type": "string"}},
        {"name": "badKeyword", "description": "d",
         "inputSchema": {"type": "object", "properties": {"a": {"minLength": -1}}}},
        {"name": "badRef", "description": "d",
         "inputSchema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}},
        {"name": "array", "description": "d", "inputSchema": []},
    ])));
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for (i, e) in errors.iter().enumerate() {
        assert_eq!(e.kind, ManifestErrorKind::InvalidSchema, "{e}");
        assert_eq!(e.entry_index, Some(i));
        assert_eq!(e.field, format!("manifest[{i}].inputSchema"));
    }
    assert!(
        errors[2].message.contains("/properties/a/minLength"),
        "{}",
        errors[2].message
    );
}

#[test]
fn duplicate_names_are_reported() {
    let entry = json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}});
    let errors = errors_of(&oauth_block(json!([entry, entry])));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ManifestErrorKind::DuplicateName);
    assert_eq!(errors[0].entry_index, Some(1));
}

#[test]
fn allow_and_deny_lists_exclude_each_other() {
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "id": "x",
        "connection_params": {"type": "sse", "url": "https://x/sse"},
        "allow_list": ["a"], "deny_list": ["b"],
    }))
    .unwrap();
    let errors = errors_of(&cfg);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ManifestErrorKind::ConflictingLists);
}

#[test]
fn non_http_urls_and_bad_timeouts_are_refused() {
    for url in [
        "ftp://x/sse",
        "file:///tmp/sock",
        "not a url",
        "/relative/sse",
    ] {
        let cfg: McpToolConfig = serde_json::from_value(json!({
            "id": "x", "connection_params": {"type": "sse", "url": url},
        }))
        .unwrap();
        let errors = errors_of(&cfg);
        assert_eq!(errors[0].kind, ManifestErrorKind::InvalidUrl, "{url}");
        assert_eq!(errors[0].field, "connection_params.url");
    }
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "id": "x", "connection_params": {"type": "sse", "url": "https://x/sse", "timeout": 0},
    }))
    .unwrap();
    assert_eq!(errors_of(&cfg)[0].field, "connection_params.timeout");
}

#[test]
fn arguments_are_validated_with_every_violation_and_its_pointer() {
    let schema = json!({
        "type": "object",
        "properties": {
            "project": {"type": "string", "minLength": 2},
            "limit": {"type": "integer", "maximum": 50},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["project"],
        "additionalProperties": false,
        "$schema": DRAFT_07,
    });
    let tool = ToolSchema::compile("jira_search", "search", &schema).unwrap();
    validate_arguments(&tool, &json!({"project": "AM", "limit": 5})).unwrap();

    let err = validate_arguments(
        &tool,
        &json!({"limit": 500, "labels": ["ok", 7], "extra": true}),
    )
    .unwrap_err();
    assert_eq!(err.tool, "jira_search");
    let mut pointers: Vec<_> = err.violations.iter().map(|v| v.pointer.as_str()).collect();
    pointers.sort();
    assert_eq!(pointers, ["", "", "/labels/1", "/limit"], "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("/labels/1") && shown.contains("/limit"),
        "{shown}"
    );
}

#[test]
fn for_model_sets_the_requested_dialect() {
    let schema = json!({"type": "object", "$schema": DRAFT_07});
    assert_eq!(
        for_model(&schema, Some(SchemaDialect::Draft202012))["$schema"],
        DRAFT_2020_12
    );
    let bare = json!({"type": "object"});
    assert_eq!(
        for_model(&bare, Some(SchemaDialect::Draft07))["$schema"],
        DRAFT_07
    );
}

#[test]
fn filters_apply_allow_deny_and_prefix() {
    let tools: Vec<ToolDescriptor> = ["search", "create", "delete"]
        .iter()
        .map(|n| ToolDescriptor {
            name: (*n).into(),
            description: None,
            input_schema: json!({"type": "object"}),
        })
        .collect();
    let cfg = |extra: Value| -> McpToolConfig {
        let mut base = json!({"connection_params": {"type": "sse", "url": "https://x/sse"},
                              "tool_name_prefix": "j_"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    };
    let names = |cfg: &McpToolConfig| -> Vec<String> {
        apply_filters(cfg, tools.clone())
            .into_iter()
            .map(|t| t.exposed_name)
            .collect()
    };
    assert_eq!(names(&cfg(json!({}))), ["j_search", "j_create", "j_delete"]);
    assert_eq!(
        names(&cfg(json!({"allow_list": ["search", "j_create"]}))),
        ["j_search", "j_create"]
    );
    assert_eq!(
        names(&cfg(json!({"deny_list": ["delete"]}))),
        ["j_search", "j_create"]
    );
}

#[test]
fn configured_oauth_endpoints_must_be_https_or_loopback_http() {
    let block = |authorization_url: &str, token_url: &str| -> McpToolConfig {
        serde_json::from_value(json!({
            "id": "jira",
            "connection_params": {"type": "streamable-http", "url": "https://mcp.example.com/mcp"},
            "auth": {"type": "oauth2", "authorization_url": authorization_url, "token_url": token_url},
            "manifest": [{"name": "t", "description": "d", "inputSchema": {"type": "object"}}],
        }))
        .unwrap()
    };
    let errors = errors_of(&block(
        "javascript:fetch('/api/v1/auth/me')",
        "http://auth.example.com/token",
    ));
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.kind, e.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{errors:#?}");
    assert_eq!(found[0].0, "auth.authorization_url");
    assert_eq!(found[0].1, ManifestErrorKind::InvalidUrl);
    assert!(found[0].2.contains("authorization_url"), "{}", found[0].2);
    assert!(
        found[0].2.contains(r#"scheme "javascript""#),
        "{}",
        found[0].2
    );
    assert_eq!(found[1].0, "auth.token_url");
    assert_eq!(found[1].1, ManifestErrorKind::InvalidUrl);
    assert!(
        found[1]
            .2
            .contains(r#"http to "auth.example.com", which is not a loopback host"#),
        "{}",
        found[1].2
    );
    for (authorization_url, token_url) in [
        ("data:text/html,x", "https://a.example/token"),
        ("https://a.example/authorize", "file:///etc/passwd"),
        ("not a url", "https://a.example/token"),
    ] {
        assert_eq!(
            errors_of(&block(authorization_url, token_url)).len(),
            1,
            "{authorization_url} {token_url}"
        );
    }
    block(
        "http://127.0.0.1:9100/authorize",
        "http://localhost:9100/token",
    )
    .validate()
    .expect("loopback http is fine for configured endpoints");
    block("https://a.example/authorize", "https://a.example/token")
        .validate()
        .expect("https is fine");
}

#[test]
fn allowed_internal_hosts_must_be_bare_hosts() {
    let block = |hosts: Value| -> McpToolConfig {
        serde_json::from_value(json!({
            "id": "jira",
            "connection_params": {"type": "streamable-http", "url": "https://mcp.example.com/mcp"},
            "auth": {"type": "oauth2", "allowed_internal_hosts": hosts},
            "manifest": [{"name": "t", "description": "d", "inputSchema": {"type": "object"}}],
        }))
        .unwrap()
    };
    let ok = block(json!(["idp.corp.local", "10.0.0.5", "fd00::1"]));
    ok.validate().expect("hosts and addresses are fine");
    assert_eq!(
        ok.allowed_internal_hosts(),
        ["idp.corp.local", "10.0.0.5", "fd00::1"]
    );
    let errors = errors_of(&block(json!([
        "idp.corp.local",
        "https://idp.corp.local",
        "*.corp.local",
        "idp:8443"
    ])));
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "auth.allowed_internal_hosts[1]",
            "auth.allowed_internal_hosts[2]",
            "auth.allowed_internal_hosts[3]"
        ],
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.kind == ManifestErrorKind::InvalidField)
    );
    assert!(
        errors[1].message.contains("wildcards"),
        "{}",
        errors[1].message
    );
    assert!(oauth_block(json!([])).allowed_internal_hosts().is_empty());
}
