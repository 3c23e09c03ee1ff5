//! Semantic checks that types alone cannot express: names that become MQTT
//! topic levels, uniqueness across every file of one run, value ranges, and
//! settings that only make sense together.
//!
//! Each check points at the offending key in the YAML; when the value came
//! from a default (no key written), it points at the nearest enclosing key.

use secrecy::ExposeSecret as _;
use std::collections::HashMap;

use super::error::{ConfigError, Pos};
use super::model::{
    AgentConfig, AppKind, AppSpec, BrokerConfig, GatewayConfig, SSO_CALLBACK_PATH,
    SessionServiceKind, SsoConfig, TrustManagerConfig,
};
use super::node::{Node, join_key};

/// The smallest `max_message_size_bytes` that still fits an A2A request.
const MIN_MESSAGE_SIZE: usize = 1024;

/// Broker URL schemes the MQTT client understands.
const BROKER_SCHEMES: [&str; 4] = ["tcp", "mqtt", "ssl", "mqtts"];

/// A typed app together with the tree it came from, so checks can name
/// the position of any of its keys.
#[derive(Debug, Clone)]
pub struct LocatedApp {
    pub spec: AppSpec,
    /// The `apps[i]` mapping node.
    pub node: Node,
    /// `apps[i]`.
    pub path: String,
}

/// One step of a key path below an app.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seg<'s> {
    Key(&'s str),
    Index(usize),
}

use Seg::{Index, Key};

impl LocatedApp {
    /// Position of the deepest key of `segs` that is written in the YAML,
    /// and the full key path of `segs`.
    fn locate(&self, segs: &[Seg<'_>]) -> (Pos, String) {
        let (pos, path, _) = self.locate_node(segs);
        (pos, path)
    }

    /// As [`Self::locate`], plus the node of `segs` when it is written.
    fn locate_node(&self, segs: &[Seg<'_>]) -> (Pos, String, Option<&Node>) {
        let mut node = Some(&self.node);
        let mut pos = self.node.pos.clone();
        let mut path = self.path.clone();
        for seg in segs {
            match *seg {
                Key(key) => {
                    path = join_key(&path, key);
                    let entry = node.and_then(|n| n.get(key));
                    if let Some(entry) = entry {
                        pos = entry.key.pos.clone();
                    }
                    node = entry.map(|e| &e.value);
                }
                Index(i) => {
                    path.push_str(&format!("[{i}]"));
                    node = node.and_then(|n| n.items()).and_then(|items| items.get(i));
                    if let Some(n) = node {
                        pos = n.pos.clone();
                    }
                }
            }
        }
        (pos, path, node)
    }

    /// An error at the key of `segs`; when unset variables emptied its
    /// value, the message says so.
    pub(super) fn error(&self, segs: &[Seg<'_>], message: impl Into<String>) -> ConfigError {
        let (pos, path, node) = self.locate_node(segs);
        let mut message = message.into();
        if let Some(note) = node.and_then(Node::unset_note) {
            message = format!("{message}; {note}");
        }
        ConfigError::at(&pos, path, message)
    }

    /// `file:line` of a key, for "already used at ..." messages.
    fn where_is(&self, segs: &[Seg<'_>]) -> String {
        let (pos, _) = self.locate(segs);
        format!("{}:{}", pos.file.display(), pos.line)
    }
}

/// Runs every check over all apps of one run; returns all problems found.
pub fn validate(apps: &[LocatedApp]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names: HashMap<&str, &LocatedApp> = HashMap::new();
    let mut agents: HashMap<(&str, &str), &LocatedApp> = HashMap::new();
    let mut gateway_ids: HashMap<(&str, &str), &LocatedApp> = HashMap::new();
    let mut listeners: Vec<(&str, u16, &LocatedApp)> = Vec::new();

    for app in apps {
        let spec = &app.spec;
        if spec.name.is_empty() {
            errors.push(app.error(&[Key("name")], "app name must not be empty"));
        } else if let Some(first) = names.insert(&spec.name, app) {
            errors.push(app.error(
                &[Key("name")],
                format!(
                    "app name {:?} is already used at {}",
                    spec.name,
                    first.where_is(&[Key("name")])
                ),
            ));
        }
        check_broker(app, &spec.broker, &mut errors);
        match &spec.kind {
            AppKind::Agent(agent) => {
                check_agent(app, agent, &mut errors);
                let at = [Key("app_config"), Key("agent_name")];
                let id = (agent.namespace.as_str(), agent.agent_name.as_str());
                if let Some(first) = agents.insert(id, app) {
                    errors.push(app.error(
                        &at,
                        format!(
                            "agent {:?} in namespace {:?} is already defined at {}",
                            agent.agent_name,
                            agent.namespace,
                            first.where_is(&at)
                        ),
                    ));
                }
            }
            AppKind::Gateway(gateway) => {
                check_gateway(app, gateway, &mut errors);
                let id = gateway.gateway_id.as_deref().unwrap_or(&spec.name);
                let at = gateway_id_key(gateway);
                if let Some(first) = gateway_ids.insert((gateway.namespace.as_str(), id), app) {
                    errors.push(app.error(
                        &at,
                        format!(
                            "gateway_id {id:?} in namespace {:?} is already used at {}; every gateway replica needs its own",
                            gateway.namespace,
                            first.where_is(&at)
                        ),
                    ));
                }
                let at = [Key("app_config"), Key("port")];
                if let Some((_, _, first)) = listeners.iter().find(|(host, port, _)| {
                    gateway.port != 0 && *port == gateway.port && hosts_overlap(host, &gateway.host)
                }) {
                    errors.push(app.error(
                        &at,
                        format!(
                            "{}:{} is already used by gateway app {:?} at {}",
                            gateway.host,
                            gateway.port,
                            first.spec.name,
                            first.where_is(&at)
                        ),
                    ));
                }
                listeners.push((&gateway.host, gateway.port, app));
            }
        }
    }
    errors
}

/// Where `gateway_id` comes from: its key, or the app name it defaults to.
fn gateway_id_key(gateway: &GatewayConfig) -> Vec<Seg<'static>> {
    if gateway.gateway_id.is_some() {
        vec![Key("app_config"), Key("gateway_id")]
    } else {
        vec![Key("name")]
    }
}

/// Two listen addresses clash on one port when equal or when either is a
/// wildcard address (it binds every interface).
fn hosts_overlap(a: &str, b: &str) -> bool {
    let wildcard = |h: &str| matches!(h, "" | "0.0.0.0" | "::" | "[::]");
    a.eq_ignore_ascii_case(b) || wildcard(a) || wildcard(b)
}

fn check_broker(app: &LocatedApp, broker: &BrokerConfig, errors: &mut Vec<ConfigError>) {
    if let Some(user) = &broker.broker_username
        && let Some(problem) = topic_level_problem(user)
    {
        errors.push(app.error(
            &[Key("broker"), Key("broker_username")],
            format!("broker_username {user:?} is used as an MQTT topic level and {problem}"),
        ));
    }
    if broker.dev_mode {
        return;
    }
    let at = [Key("broker"), Key("broker_url")];
    match &broker.broker_url {
        None => errors.push(app.error(
            &at,
            "broker_url is required (like tcp://localhost:1883); or set `dev_mode: true` in `broker:` to use the in-process dev bus",
        )),
        Some(url) => {
            if let Some(problem) = broker_url_problem(url) {
                errors.push(app.error(&at, problem));
            }
        }
    }
}

/// The ports a Solace broker serves SMF (its own protocol) on: plain,
/// compressed, TLS.
const SMF_PORTS: [u16; 3] = [55555, 55003, 55443];

/// What to use instead of a Solace URL amesh cannot connect to.
const USE_MQTT: &str = "amesh speaks MQTT: use the broker's MQTT port (tcp://HOST:1883, or ssl://HOST:8883 with TLS; on Solace, enable the message VPN's MQTT service), or set `dev_mode: true` in `broker:` for the in-process dev bus";

fn broker_url_problem(url: &str) -> Option<String> {
    let expected = "expected tcp://, mqtt://, ssl:// or mqtts://";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("broker_url {url:?} has no scheme; {expected}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if matches!(scheme.as_str(), "ws" | "wss") {
        return Some(format!(
            "broker_url {url:?} is a Solace WebSocket (SMF) URL, SAM's default dev broker; {USE_MQTT}"
        ));
    }
    if scheme == "tcps" {
        return Some(format!(
            "broker_url {url:?} is a Solace SMF over TLS URL; {USE_MQTT}"
        ));
    }
    if !BROKER_SCHEMES.contains(&scheme.as_str()) {
        return Some(format!(
            "unsupported scheme {scheme:?} in broker_url {url:?}; {expected}"
        ));
    }
    if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
        return Some(format!("broker_url {url:?} has no host"));
    }
    let port = rest
        .split('/')
        .next()
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    if let Some(port) = port.filter(|p| SMF_PORTS.contains(p)) {
        return Some(format!(
            "broker_url {url:?}: port {port} is a Solace SMF port, not MQTT; {USE_MQTT}"
        ));
    }
    None
}

fn check_agent(app: &LocatedApp, agent: &AgentConfig, errors: &mut Vec<ConfigError>) {
    let cfg = Key("app_config");
    check_namespace(app, &agent.namespace, errors);
    if let Some(problem) = topic_level_problem(&agent.agent_name) {
        errors.push(app.error(
            &[cfg, Key("agent_name")],
            format!(
                "agent_name {:?} is used as an MQTT topic level and {problem}",
                agent.agent_name
            ),
        ));
    }
    check_message_size(app, agent.max_message_size_bytes, errors);
    check_trust_manager(app, &agent.trust_manager, errors);
    if agent.agent_card_publishing.interval_seconds < 1 {
        errors.push(app.error(
            &[cfg, Key("agent_card_publishing"), Key("interval_seconds")],
            "interval_seconds must be at least 1",
        ));
    }
    for (j, tool) in agent.tools.iter().enumerate() {
        if let super::model::ToolConfig::Mcp(mcp) = tool
            && let Err(problems) = mcp.validate()
        {
            for p in problems {
                let owned = field_segments(&p.field);
                let index = agent.tool_indices.get(j).copied().unwrap_or(j);
                let mut segs = vec![cfg, Key("tools"), Index(index)];
                segs.extend(owned.iter().map(|s| match s {
                    OwnedSeg::Key(k) => Key(k.as_str()),
                    OwnedSeg::Index(i) => Index(*i),
                }));
                let entry = match (p.entry_index, &p.entry_name) {
                    (Some(i), Some(name)) => format!(", manifest entry {i} (`{name}`)"),
                    (Some(i), None) => format!(", manifest entry {i}"),
                    _ => String::new(),
                };
                let text = format!("MCP tool `{}`{entry}: {}", p.tool_id, p.message);
                errors.push(app.error(&segs, text));
            }
        }
    }
    if let Some(model) = &agent.model
        && let Err(problem) = model.resolve(agent.model_provider.as_deref())
    {
        errors.push(app.error(&[cfg, Key("model")], problem.to_string()));
    }
    if agent.max_llm_calls_per_task < 1 {
        errors.push(app.error(
            &[cfg, Key("max_llm_calls_per_task")],
            "max_llm_calls_per_task must be at least 1",
        ));
    }
    let session = &agent.session_service;
    if session.kind == SessionServiceKind::Sql && session.database_url.is_none() {
        errors.push(app.error(
            &[cfg, Key("session_service"), Key("database_url")],
            "session_service type sql needs a database_url (like sqlite://agent.db or postgres://...)",
        ));
    }
}

/// A key path like `manifest[2].inputSchema`, split into segments.
enum OwnedSeg {
    Key(String),
    Index(usize),
}

fn field_segments(field: &str) -> Vec<OwnedSeg> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(OwnedSeg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(n) = stripped[..end].parse() {
                    out.push(OwnedSeg::Index(n));
                }
                rest = &stripped[end + 1..];
            }
        } else {
            out.push(OwnedSeg::Key(rest.to_string()));
        }
    }
    out
}

fn check_gateway(app: &LocatedApp, gateway: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let cfg = Key("app_config");
    check_namespace(app, &gateway.namespace, errors);
    let id = gateway.gateway_id.as_deref().unwrap_or(&app.spec.name);
    if let Some(problem) = topic_level_problem(id) {
        let what = if gateway.gateway_id.is_some() {
            format!("gateway_id {id:?}")
        } else {
            format!("the app name {id:?} (the default gateway_id)")
        };
        errors.push(app.error(
            &gateway_id_key(gateway),
            format!("{what} is used as an MQTT topic level and {problem}"),
        ));
    }
    check_message_size(app, gateway.max_message_size_bytes, errors);
    check_trust_manager(app, &gateway.trust_manager, errors);
    if gateway.gateway_card_publishing.interval_seconds < 1 {
        errors.push(app.error(
            &[cfg, Key("gateway_card_publishing"), Key("interval_seconds")],
            "interval_seconds must be at least 1",
        ));
    }
    for (i, origin) in gateway.allowed_origins.iter().enumerate() {
        if let Some(problem) = origin_problem(origin) {
            errors.push(app.error(
                &[cfg, Key("allowed_origins"), Index(i)],
                format!("{origin:?} {problem}"),
            ));
        }
    }
    for (i, host) in gateway.allowed_hosts.iter().enumerate() {
        let name = host.trim();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            errors.push(app.error(
                &[cfg, Key("allowed_hosts"), Index(i)],
                format!("{host:?} is not a host name: expected a name like gw.example.com, without scheme or port"),
            ));
        }
    }
    if let Some(sso) = &gateway.sso {
        check_sso(app, gateway, sso, errors);
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, user) in gateway.users.iter().enumerate() {
        let at = |key| [cfg, Key("users"), Index(i), Key(key)];
        if let Some(first) = ids.insert(&user.id, i) {
            errors.push(app.error(
                &at("id"),
                format!("user id {:?} is already used by users[{first}]", user.id),
            ));
        }
        if let Some(hash) = &user.token_sha256
            && !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            errors.push(app.error(
                &at("token_sha256"),
                "token_sha256 must be 64 hex characters (`amesh users hash-token` prints it)",
            ));
        }
        if gateway.frontend_use_authorization && user.token.is_none() && user.token_sha256.is_none()
        {
            errors.push(app.error(
                &[cfg, Key("users"), Index(i)],
                format!(
                    "user {:?} needs a token or token_sha256 because frontend_use_authorization is true",
                    user.id
                ),
            ));
        }
    }
}

/// The `sso:` block: URLs the browser and the gateway can use, the
/// `openid` scope, and a gateway that asks who its users are.
fn check_sso(
    app: &LocatedApp,
    gateway: &GatewayConfig,
    sso: &SsoConfig,
    errors: &mut Vec<ConfigError>,
) {
    let at = |key| [Key("app_config"), Key("sso"), Key(key)];
    if !gateway.frontend_use_authorization {
        errors.push(app.error(
            &[Key("app_config"), Key("sso")],
            "sso needs frontend_use_authorization: true (without it every request is the dev user)",
        ));
    }
    if let Some(problem) = sso_url_problem(&sso.issuer) {
        errors.push(app.error(&at("issuer"), format!("issuer {:?} {problem}", sso.issuer)));
    }
    match sso_url_problem(&sso.redirect_uri) {
        Some(problem) => errors.push(app.error(
            &at("redirect_uri"),
            format!("redirect_uri {:?} {problem}", sso.redirect_uri),
        )),
        None => {
            let path_ok = url::Url::parse(sso.redirect_uri.trim())
                .is_ok_and(|u| u.path().ends_with(SSO_CALLBACK_PATH) && u.query().is_none());
            if !path_ok {
                errors.push(app.error(
                    &at("redirect_uri"),
                    format!(
                        "redirect_uri {:?} must be the gateway's callback, \
                         https://<gateway>{SSO_CALLBACK_PATH}",
                        sso.redirect_uri
                    ),
                ));
            }
        }
    }
    if let Some(uri) = &sso.post_logout_redirect_uri
        && let Some(problem) = sso_url_problem(uri)
    {
        errors.push(app.error(
            &at("post_logout_redirect_uri"),
            format!("post_logout_redirect_uri {uri:?} {problem}"),
        ));
    }
    if sso.client_id.trim().is_empty() {
        errors.push(app.error(&at("client_id"), "client_id must not be empty"));
    }
    // Written but empty (often an unset variable): a public client by
    // mistake would fail only at the first sign-in.
    let secret_written = app.locate_node(&at("client_secret")).2.is_some();
    if secret_written
        && sso
            .client_secret
            .as_ref()
            .is_none_or(|s| s.expose_secret().trim().is_empty())
    {
        errors.push(app.error(
            &at("client_secret"),
            "client_secret is empty; leave the key out for a public client",
        ));
    }
    if !sso.scope.split_whitespace().any(|s| s == "openid") {
        errors.push(app.error(
            &at("scope"),
            format!(
                "scope {:?} must include openid (like \"openid email profile\")",
                sso.scope
            ),
        ));
    }
    for key in ["user_id_claim", "email_claim", "name_claim"] {
        let value = match key {
            "user_id_claim" => &sso.user_id_claim,
            "email_claim" => &sso.email_claim,
            _ => &sso.name_claim,
        };
        if value.trim().is_empty() {
            errors.push(app.error(&at(key), format!("{key} must name an ID token claim")));
        }
    }
    if sso.provider.trim().is_empty() {
        errors.push(app.error(&at("provider"), "provider must not be empty"));
    }
    if sso.login_timeout_seconds < 10 {
        errors.push(app.error(
            &at("login_timeout_seconds"),
            "login_timeout_seconds must be at least 10",
        ));
    }
}

/// Why `text` is not a URL for OpenID Connect: http(s) with a host, https
/// unless the host is loopback, no credentials or fragment.
fn sso_url_problem(text: &str) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(text.trim()) else {
        return Some("is not a URL: expected https://host/path");
    };
    let Some(host) = url.host_str() else {
        return Some("has no host");
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Some("must be https (plain http only to localhost)"),
        _ => return Some("must be an https URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not carry credentials");
    }
    if url.fragment().is_some() {
        return Some("must not have a #fragment");
    }
    None
}

/// Why `origin` is not an origin as browsers send it
/// (`scheme://host[:port]`, http or https).
fn origin_problem(origin: &str) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(origin.trim()) else {
        return Some(
            "is not an origin: expected scheme://host[:port], like https://chat.example.com",
        );
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Some(
            "is not an http(s) origin: expected scheme://host[:port], like https://chat.example.com",
        );
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    (!bare).then_some(
        "is not an origin: only scheme://host[:port], without path, query or user, like https://chat.example.com",
    )
}

fn check_namespace(app: &LocatedApp, namespace: &str, errors: &mut Vec<ConfigError>) {
    let problem = if namespace.is_empty() {
        Some("must not be empty".to_owned())
    } else if namespace.split('/').any(str::is_empty) {
        Some("has an empty topic level (a leading, trailing or doubled \"/\")".to_owned())
    } else {
        namespace
            .split('/')
            .find_map(topic_level_problem)
            .map(|p| format!("is used in MQTT topics and {p}"))
    };
    if let Some(problem) = problem {
        errors.push(app.error(
            &[Key("app_config"), Key("namespace")],
            format!("namespace {namespace:?} {problem}"),
        ));
    }
}

fn check_message_size(app: &LocatedApp, size: usize, errors: &mut Vec<ConfigError>) {
    if size < MIN_MESSAGE_SIZE {
        errors.push(app.error(
            &[Key("app_config"), Key("max_message_size_bytes")],
            format!("max_message_size_bytes must be at least {MIN_MESSAGE_SIZE}, found {size}"),
        ));
    }
}

fn check_trust_manager(app: &LocatedApp, tm: &TrustManagerConfig, errors: &mut Vec<ConfigError>) {
    let at = |key| [Key("app_config"), Key("trust_manager"), Key(key)];
    if tm.jwt_default_ttl_seconds > tm.jwt_max_ttl_seconds {
        errors.push(app.error(
            &at("jwt_default_ttl_seconds"),
            format!(
                "jwt_default_ttl_seconds ({}) must not exceed jwt_max_ttl_seconds ({})",
                tm.jwt_default_ttl_seconds, tm.jwt_max_ttl_seconds
            ),
        ));
    }
    if tm.card_publish_interval_seconds < 1 {
        errors.push(app.error(
            &at("card_publish_interval_seconds"),
            "card_publish_interval_seconds must be at least 1",
        ));
    }
}

/// Why `level` cannot be one MQTT topic level, if it cannot.
fn topic_level_problem(level: &str) -> Option<&'static str> {
    if level.is_empty() {
        Some("must not be empty")
    } else if level.contains('/') {
        Some("must not contain \"/\"")
    } else if level.contains(['+', '#']) {
        Some("must not contain the MQTT wildcards \"+\" or \"#\"")
    } else if level.contains('\0') {
        Some("must not contain a NUL character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_levels_reject_separators_and_wildcards() {
        assert_eq!(topic_level_problem("agent-1"), None);
        assert!(topic_level_problem("").is_some());
        assert!(topic_level_problem("a/b").is_some());
        assert!(topic_level_problem("a+").is_some());
        assert!(topic_level_problem("#").is_some());
        assert!(topic_level_problem("a\0").is_some());
    }

    fn sso_errors(sso: &str, auth: bool, env: &[(&str, &str)]) -> Vec<String> {
        let yaml = format!(
            "apps:\n  - name: gw\n    app_module: gateway\n    broker: {{dev_mode: true}}\n    app_config:\n      namespace: ns\n      frontend_use_authorization: {auth}\n      sso:\n{sso}"
        );
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match crate::config::load_str_with_env("gw.yaml", &yaml, &|k| env.get(k).cloned()) {
            Ok(loaded) => {
                let AppKind::Gateway(g) = &loaded.apps[0].kind else {
                    unreachable!()
                };
                let text = format!("{:?}", g.sso);
                assert!(!text.contains("s3cr3t"), "{text}");
                Vec::new()
            }
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn sso_settings_are_checked_where_they_are_written() {
        let good = "        issuer: https://idp.example/realms/x\n        client_id: gw\n        client_secret: ${SECRET}\n        redirect_uri: https://gw.example/api/v1/auth/callback\n";
        assert_eq!(
            sso_errors(good, true, &[("SECRET", "s3cr3t")]),
            Vec::<String>::new()
        );
        let errors = sso_errors(good, false, &[("SECRET", "s3cr3t")]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "gw.yaml:8:7: apps[0].app_config.sso: sso needs frontend_use_authorization: true"
            ),
            "{errors:?}"
        );
        let bad = "        issuer: http://idp.example\n        client_id: gw\n        client_secret: ${UNSET}\n        redirect_uri: https://gw.example/callback\n        scope: email profile\n";
        let errors = sso_errors(bad, true, &[]);
        let expect = [
            "gw.yaml:9:9: apps[0].app_config.sso.issuer: issuer \"http://idp.example\" must be https",
            "gw.yaml:12:9: apps[0].app_config.sso.redirect_uri: redirect_uri \"https://gw.example/callback\" must be the gateway's callback",
            "gw.yaml:11:9: apps[0].app_config.sso.client_secret: client_secret is empty",
            "gw.yaml:13:9: apps[0].app_config.sso.scope: scope \"email profile\" must include openid",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:?}");
        for e in expect {
            assert!(errors.iter().any(|x| x.starts_with(e)), "{e}\n{errors:?}");
        }
        // Plain http is fine on loopback (a provider on this machine).
        let local = "        issuer: http://127.0.0.1:8080\n        client_id: gw\n        redirect_uri: http://localhost:8000/api/v1/auth/callback\n";
        assert_eq!(sso_errors(local, true, &[]), Vec::<String>::new());
    }

    #[test]
    fn allowed_origins_are_bare_http_origins() {
        for ok in [
            "https://chat.example.com",
            "https://chat.example.com/",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert_eq!(origin_problem(ok), None, "{ok}");
        }
        for bad in [
            "chat.example.com",
            "https://chat.example.com/app",
            "https://u@chat.example.com",
            "ftp://chat.example.com",
            "null",
        ] {
            assert!(origin_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn broker_urls_need_a_known_scheme_and_a_host() {
        assert_eq!(broker_url_problem("tcp://localhost:1883"), None);
        assert_eq!(broker_url_problem("MQTTS://broker"), None);
        assert!(
            broker_url_problem("localhost:1883")
                .unwrap()
                .contains("no scheme")
        );
        assert!(
            broker_url_problem("http://x")
                .unwrap()
                .contains("unsupported scheme")
        );
        assert!(
            broker_url_problem("tcp://:1883")
                .unwrap()
                .contains("no host")
        );
    }

    #[test]
    fn solace_smf_and_websocket_urls_say_what_to_use_instead() {
        for url in [
            "ws://localhost:8008",
            "wss://x.messaging.solace.cloud:443",
            "tcp://localhost:55555",
            "tcps://x.messaging.solace.cloud:55443",
        ] {
            let problem = broker_url_problem(url).unwrap();
            assert!(problem.contains("Solace"), "{url}: {problem}");
            assert!(problem.contains("tcp://HOST:1883"), "{url}: {problem}");
            assert!(problem.contains("dev_mode: true"), "{url}: {problem}");
        }
        assert_eq!(broker_url_problem("tcp://broker:1883"), None);
    }

    #[test]
    fn wildcard_hosts_overlap_everything() {
        assert!(hosts_overlap("127.0.0.1", "127.0.0.1"));
        assert!(hosts_overlap("0.0.0.0", "127.0.0.1"));
        assert!(!hosts_overlap("127.0.0.1", "10.0.0.1"));
    }
}
