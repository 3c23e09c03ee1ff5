//! What `amesh run` would refuse at start, checked without connecting.
//!
//! `config check` is meant to be `run` minus the network: a config that
//! passes it must not then stop at start for a setting the loader could
//! have judged. Besides the file, these checks read the environment the
//! agent reads at start (`SECRETS_TTL_SECONDS`, `AMESH_AGENT_SECRET`,
//! `OAUTH_TOOL_REDIRECT_URI`, `AMESH_REPLICA_ID`) and existing key files, through the loader's variable lookup so
//! they see what `run` will see. Each error points at the key it concerns,
//! or at the nearest written one when the value comes from the environment.

use amesh_credentials::{
    AGENT_SECRET_ENV, AgentSecret, DatabaseUrl, SECRETS_TTL_VAR, SecretError, parse_ttl,
};

use super::error::ConfigError;
use super::model::{
    AgentConfig, AppKind, ArtifactServiceKind, SessionServiceKind, ToolConfig, TrustManagerConfig,
};
use super::scalar::EnvLookup;
use super::validate::{LocatedApp, Seg};
use crate::trust_manager::key_source::KeySource;

/// The variable an agent's OAuth redirect URI comes from when the config
/// has no `oauth_tool_redirect_uri`.
pub const REDIRECT_URI_VAR: &str = "OAUTH_TOOL_REDIRECT_URI";

/// Runs the start checks on every agent; returns their errors.
pub fn check(apps: &[LocatedApp], env: EnvLookup<'_>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let replica = env(crate::broker::REPLICA_ID_ENV).filter(|v| !v.trim().is_empty());
    for app in apps {
        let (trust, source) = match &app.spec.kind {
            AppKind::Agent(agent) => {
                check_agent(app, agent, env, &mut errors);
                (&agent.trust_manager, KeySource::of_agent(agent))
            }
            AppKind::Gateway(gateway) => (
                &gateway.trust_manager,
                KeySource::of(&gateway.trust_manager, false),
            ),
        };
        check_trust_key(app, trust, &mut errors);
        let agent = matches!(app.spec.kind, AppKind::Agent(_));
        if let Some(refusal) = replica
            .as_deref()
            .and_then(|id| source.replica_refusal(id, agent))
        {
            errors.push(app.error(
                &[Seg::Key("app_config"), Seg::Key("trust_manager")],
                refusal,
            ));
        }
    }
    errors
}

/// What `run` starts but an operator should hear about before users do:
/// warnings, which `config check` prints and `run` logs.
pub fn warnings(apps: &[LocatedApp]) -> Vec<ConfigError> {
    apps.iter()
        .filter_map(|app| match &app.spec.kind {
            // The guide's "credentials not persisting across restarts".
            AppKind::Agent(agent)
                if agent.session_service.kind == SessionServiceKind::Memory
                    && crate::agent::store::has_oauth_tools(agent) =>
            {
                Some(app.error(
                    &[Seg::Key("app_config"), Seg::Key("session_service")],
                    "users' tool credentials are kept in memory (session_service type memory, the default): \
                     they are lost when this agent stops and every user must authorize again; \
                     set session_service: {type: sql, database_url: ...} in production",
                ))
            }
            _ => None,
        })
        .collect()
}

/// An existing `trust_manager.key_file` must be a key amesh can read; a
/// missing one is created at start.
fn check_trust_key(app: &LocatedApp, trust: &TrustManagerConfig, errors: &mut Vec<ConfigError>) {
    let Some(file) = trust.key_file.as_deref() else {
        return;
    };
    if file.exists()
        && let Err(e) = amesh_trust::SigningKey::load(file)
    {
        errors.push(app.error(
            &[
                Seg::Key("app_config"),
                Seg::Key("trust_manager"),
                Seg::Key("key_file"),
            ],
            e.to_string(),
        ));
    }
}

fn check_agent(
    app: &LocatedApp,
    agent: &AgentConfig,
    env: EnvLookup<'_>,
    errors: &mut Vec<ConfigError>,
) {
    use Seg::Key;
    let cfg = Key("app_config");
    let session = [cfg, Key("session_service")];
    if crate::agent::store::needed(agent) {
        if let Err(e) = parse_ttl(env(SECRETS_TTL_VAR).as_deref()) {
            errors.push(app.error(&session, format!("the agent's credential store: {e}")));
        }
        match env(AGENT_SECRET_ENV).filter(|v| !v.trim().is_empty()) {
            Some(value) => {
                let origin = format!("environment variable {AGENT_SECRET_ENV}");
                if let Err(e) = AgentSecret::from_base64(&value, &origin) {
                    errors.push(app.error(&[cfg], format!("agent secret: {e}")));
                }
            }
            None => check_secret_file(app, agent, errors),
        }
    }
    if agent.session_service.kind == SessionServiceKind::Sql
        && let Some(url) = agent.session_service.database_url.as_deref()
        && let Err(e) = DatabaseUrl::parse(url).and_then(|u| u.check_built_in())
    {
        errors.push(app.error(
            &[cfg, Key("session_service"), Key("database_url")],
            e.to_string(),
        ));
    }
    check_artifact_service(app, agent, errors);
    let oauth_tool = agent
        .tools
        .iter()
        .zip(&agent.tool_indices)
        .find(|(t, _)| matches!(t, ToolConfig::Mcp(m) if m.requires_user_auth()));
    if let Some((_, &index)) = oauth_tool {
        match &agent.oauth_tool_redirect_uri {
            None => errors.push(app.error(
                &[cfg, Key("tools"), Seg::Index(index), Key("auth")],
                format!(
                    "this tool acts with each user's OAuth2 credentials, so the agent needs the redirect URI users come back to: set {REDIRECT_URI_VAR} (or oauth_tool_redirect_uri) to the gateway's /api/v1/auth/tool/callback URL"
                ),
            )),
            // `oauth_tool_redirect_uri: ${OAUTH_TOOL_REDIRECT_URI}` with the
            // variable unset reads as empty: name the variable, not a URL error.
            Some(uri) if uri.trim().is_empty() => errors.push(app.error(
                &[cfg, Key("oauth_tool_redirect_uri")],
                format!(
                    "the redirect URI is empty ({REDIRECT_URI_VAR} not set?): set it to the gateway's /api/v1/auth/tool/callback URL, https://<gateway domain>/api/v1/auth/tool/callback"
                ),
            )),
            Some(uri) => {
                if let Err(e) = amesh_mcp::oauth::validate_redirect_uri(uri) {
                    let written = app
                        .node
                        .get("app_config")
                        .and_then(|c| c.value.get("oauth_tool_redirect_uri"))
                        .is_some();
                    let e = if written {
                        e
                    } else {
                        format!("{e} (from the environment variable {REDIRECT_URI_VAR})")
                    };
                    errors.push(app.error(&[cfg, Key("oauth_tool_redirect_uri")], e));
                }
            }
        }
    }
}

/// The artifact tools need a store amesh has: memory, or filesystem with
/// a `base_path`.
fn check_artifact_service(app: &LocatedApp, agent: &AgentConfig, errors: &mut Vec<ConfigError>) {
    use Seg::Key;
    let uses = agent.tools.iter().any(|t| {
        matches!(t, ToolConfig::Builtin { tool_name, .. }
            if crate::agent::tools::BuiltinTool::from_name(tool_name)
                .is_some_and(crate::agent::tools::BuiltinTool::is_artifact_tool))
    });
    let Some(service) = agent.artifact_service.as_ref().filter(|_| uses) else {
        return;
    };
    let at = [Key("app_config"), Key("artifact_service")];
    match service.kind {
        ArtifactServiceKind::Memory => {}
        ArtifactServiceKind::Filesystem if service.base_path.is_some() => {}
        ArtifactServiceKind::Filesystem => errors.push(app.error(
            &at,
            "artifact_service type filesystem needs a base_path (the directory artifacts are kept in)",
        )),
        kind => errors.push(app.error(
            &[at[0], at[1], Key("type")],
            format!(
                "artifact_service type {} is not supported by amesh; the artifact tools need memory or filesystem",
                format!("{kind:?}").to_lowercase()
            ),
        )),
    }
}

/// An existing secret file must be readable and long enough; a missing one
/// is created at start, which is fine.
fn check_secret_file(app: &LocatedApp, agent: &AgentConfig, errors: &mut Vec<ConfigError>) {
    use Seg::Key;
    let Some(file) = &agent.agent_secret_file else {
        return;
    };
    match AgentSecret::load(file) {
        Ok(_) | Err(SecretError::Missing { .. }) => {}
        Err(e) => {
            let at: &[Seg<'_>] = if agent.agent_secret_default {
                &[Key("app_config"), Key("session_service")]
            } else {
                &[Key("app_config"), Key("agent_secret_file")]
            };
            errors.push(app.error(at, format!("agent secret: {e}")));
        }
    }
}
