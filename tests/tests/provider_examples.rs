//! `configs/examples/`: the provider examples (Atlassian over SSE, Stripe
//! over Streamable HTTP, Cloudflare, Canva) pass `amesh config check` with
//! the variables an operator sets, and say what production needs: the
//! trust manager on and strict, SQL persistence, an https redirect URI, the
//! model from the shared_config anchor, the provider's tools in the
//! manifest behind OAuth2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use amesh_mcp::tool_config::TransportKind;
use amesh_runtime::config::{
    AgentConfig, AppKind, LoadOptions, SessionServiceKind, ToolConfig, VerificationMode,
    load_files_with,
};
use amesh_tests::amesh_bin::{amesh, workspace_root};

struct Example {
    file: &'static str,
    /// Prefix of its own variables (`{P}_DATABASE_URL`, ...).
    var: &'static str,
    agent: &'static str,
    transport: TransportKind,
    url: &'static str,
    /// Tools the provider documents, each of which must be in the manifest.
    tools: &'static [&'static str],
}

const EXAMPLES: [Example; 4] = [
    Example {
        file: "atlassian.yaml",
        var: "ATLASSIAN",
        agent: "AtlassianAgent",
        transport: TransportKind::Sse,
        url: "https://mcp.atlassian.com/v1/sse",
        tools: &[
            "atlassianUserInfo",
            "getAccessibleAtlassianResources",
            "getConfluenceSpaces",
            "searchJiraIssuesUsingJql",
            "createJiraIssue",
            "search",
            "fetch",
        ],
    },
    Example {
        file: "stripe.yaml",
        var: "STRIPE",
        agent: "StripeAgent",
        transport: TransportKind::StreamableHttp,
        url: "https://mcp.stripe.com/",
        tools: &[
            "search_stripe_documentation",
            "create_customer",
            "list_customers",
            "create_refund",
        ],
    },
    Example {
        file: "cloudflare.yaml",
        var: "CLOUDFLARE",
        agent: "CloudflareAgent",
        transport: TransportKind::Sse,
        url: "https://graphql.mcp.cloudflare.com/sse",
        tools: &[
            "accounts_list",
            "set_active_account",
            "zones_list",
            "graphql_query",
        ],
    },
    Example {
        file: "canva.yaml",
        var: "CANVA",
        agent: "CanvaAgent",
        transport: TransportKind::StreamableHttp,
        url: "https://mcp.canva.com/mcp",
        tools: &["search-designs", "get-design", "generate-design"],
    },
];

const REDIRECT: &str = "https://agents.example.com/api/v1/auth/tool/callback";

fn examples_dir() -> PathBuf {
    workspace_root().join("configs/examples")
}

/// What an operator sets for `ex`: shared ones and the example's own.
fn vars(ex: &Example, dir: &Path) -> Vec<(String, String)> {
    let p = ex.var;
    let mut v: Vec<(String, String)> = [
        ("BROKER_URL", "ssl://broker.example.com:8883"),
        ("NAMESPACE", "acme/prod"),
        ("LLM_SERVICE_GENERAL_MODEL_NAME", "openai/gpt-4o"),
        ("LLM_SERVICE_ENDPOINT", "https://api.openai.com/v1"),
        ("LLM_SERVICE_API_KEY", "sk-test-not-a-key"),
        ("OAUTH_TOOL_REDIRECT_URI", REDIRECT),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lower = p.to_lowercase();
    v.push((
        format!("{p}_BROKER_PASSWORD"),
        "broker-test-password".into(),
    ));
    v.push((
        format!("{p}_DATABASE_URL"),
        format!("postgres://amesh:db-test-password@db.example.com:5432/{lower}"),
    ));
    v.push((
        format!("{p}_SECRET_FILE"),
        dir.join(format!("{lower}.secret")).display().to_string(),
    ));
    v.push((
        format!("{p}_TRUST_KEY_FILE"),
        dir.join(format!("{lower}-trust.pem")).display().to_string(),
    ));
    v
}

fn agent(ex: &Example, dir: &Path) -> AgentConfig {
    let vars: HashMap<String, String> = vars(ex, dir).into_iter().collect();
    let cfg = load_files_with(
        &[examples_dir().join(ex.file)],
        &|name| vars.get(name).cloned(),
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{} does not load:\n{e}", ex.file));
    assert!(
        cfg.warnings.is_empty(),
        "{}: {:#?}",
        ex.file,
        cfg.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert_eq!(cfg.apps.len(), 1, "{}", ex.file);
    match &cfg.apps[0].kind {
        AppKind::Agent(a) => (**a).clone(),
        AppKind::Gateway(_) => panic!("{}: not an agent", ex.file),
    }
}

#[test]
fn each_example_passes_amesh_config_check() {
    let bin = amesh();
    let dir = tempfile::tempdir().unwrap();
    for ex in &EXAMPLES {
        let out = Command::new(&bin)
            .args(["config", "check"])
            .arg(examples_dir().join(ex.file))
            .env_clear()
            .envs(vars(ex, dir.path()))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "amesh config check {}:\n{stdout}{stderr}",
            ex.file
        );
        assert_eq!(
            stdout.trim(),
            "ok: 1 file(s), 1 app(s), 0 warning(s)",
            "{}: {stderr}",
            ex.file
        );
    }
}

#[test]
fn each_example_is_configured_for_production() {
    let dir = tempfile::tempdir().unwrap();
    for ex in &EXAMPLES {
        let a = agent(ex, dir.path());
        let f = ex.file;
        assert_eq!(a.agent_name, ex.agent, "{f}");
        assert_eq!(a.namespace, "acme/prod", "{f}");
        // Trust manager on, strict.
        assert!(a.trust_manager.enabled, "{f}");
        assert_eq!(
            a.trust_manager.verification_mode,
            VerificationMode::Strict,
            "{f}"
        );
        assert!(
            a.trust_manager.key_file.is_some(),
            "{f}: a persistent trust key"
        );
        // SQL persistence on the agent's own database, secret outside it.
        assert_eq!(a.session_service.kind, SessionServiceKind::Sql, "{f}");
        let db = a.session_service.database_url.as_deref().unwrap();
        assert!(db.starts_with("postgres://"), "{f}: {db}");
        assert!(
            db.ends_with(&ex.var.to_lowercase()),
            "{f}: its own database"
        );
        assert!(!a.agent_secret_default, "{f}: an explicit secret file");
        // The redirect URI is the https one set, nothing else.
        assert_eq!(a.oauth_tool_redirect_uri.as_deref(), Some(REDIRECT), "{f}");
        // The model comes from the shared_config anchor.
        let model = a.model.as_ref().expect("model");
        assert_eq!(model.model, "openai/gpt-4o", "{f}");
        assert_eq!(
            model.api_base.as_deref(),
            Some("https://api.openai.com/v1"),
            "{f}"
        );
        // The provider's MCP server, its documented tools, users' own OAuth2.
        let ToolConfig::Mcp(mcp) = &a.tools[0] else {
            panic!("{f}: the first tool is the MCP server");
        };
        assert_eq!(mcp.connection_params.transport, ex.transport, "{f}");
        assert_eq!(mcp.connection_params.url, ex.url, "{f}");
        assert!(mcp.requires_user_auth(), "{f}: auth type oauth2");
        let names: Vec<&str> = mcp
            .manifest
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|m| m.name.as_deref())
            .collect();
        for tool in ex.tools {
            assert!(names.contains(tool), "{f}: {tool} missing from {names:?}");
        }
    }
}

#[test]
fn a_plain_http_redirect_uri_or_a_missing_database_fails_the_check() {
    let bin = amesh();
    let dir = tempfile::tempdir().unwrap();
    let ex = &EXAMPLES[0];
    let file = examples_dir().join(ex.file);
    let check = |vars: Vec<(String, String)>| {
        let out = Command::new(&bin)
            .args(["config", "check"])
            .arg(&file)
            .env_clear()
            .envs(vars)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let http: Vec<_> = vars(ex, dir.path())
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "OAUTH_TOOL_REDIRECT_URI" => (
                k,
                "http://agents.example.com/api/v1/auth/tool/callback".into(),
            ),
            _ => (k, v),
        })
        .collect();
    let err = check(http);
    assert!(err.contains("oauth_tool_redirect_uri"), "{err}");
    let no_db: Vec<_> = vars(ex, dir.path())
        .into_iter()
        .filter(|(k, _)| k != "ATLASSIAN_DATABASE_URL")
        .collect();
    let err = check(no_db);
    assert!(err.contains("ATLASSIAN_DATABASE_URL"), "{err}");
}
