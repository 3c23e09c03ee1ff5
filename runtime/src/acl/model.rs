//! The ACL model: which broker user each component connects as, and the
//! exact topics it must publish on and subscribe to.
//!
//! One model, several writers: the Mosquitto files (`mosquitto_dynsec.rs`,
//! `mosquitto.rs`) and the Solace SEMP plan (`solace.rs`) are renderings of
//! an [`AclModel`], so the brokers can never disagree about who may do
//! what. Every topic comes from [`crate::topics`], the module the apps
//! build their topics with, so a permission cannot drift from the topic it
//! allows.
//!
//! The trust manager relies on this: a trust card is only believed because
//! the broker lets nobody but `{broker_username}` publish on
//! `trust/{kind}/{broker_username}`. Least privilege is therefore not
//! hygiene here but part of the identity design.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::agent::tools::BuiltinTool;
use crate::broker::{
    self,
    filter::{self, Subscription},
};
use crate::config::{AgentConfig, AppKind, AppSpec, GatewayConfig, LoadedConfig, ToolConfig};
use crate::topics::{self, TrustKind};

/// Message VPN used when an app's broker block names none (Solace's default).
pub const DEFAULT_VPN: &str = "default";

/// Every broker user to provision, with its permissions.
#[derive(Debug, Clone, Default)]
pub struct AclModel {
    /// One per broker username, in the order the configs declare them.
    pub principals: Vec<Principal>,
    /// Apps that need no broker user (dev bus), for the operator's notes.
    pub skipped: Vec<Skipped>,
}

/// One broker user: the component behind it and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    pub component: Component,
    pub namespace: String,
    /// Topic names and filters it may publish on (MQTT syntax).
    pub publish: BTreeSet<String>,
    /// Filters it subscribes with (MQTT syntax, `$share/{group}/...`
    /// included where the app uses a shared subscription).
    pub subscribe: BTreeSet<String>,
    /// `broker_password` from the config (after `${VAR}` substitution);
    /// `None` until the generator makes one.
    pub password: Option<Password>,
    /// Solace message VPN (`broker_vpn`, default [`DEFAULT_VPN`]).
    pub vpn: String,
    /// MQTT client ids its apps connect with ([`crate::broker::client_id`]).
    /// One id lets the broker bind the account to it; replicas merged into
    /// one principal with distinct ids leave it unbound.
    pub client_ids: BTreeSet<String>,
    /// The largest `max_message_size_bytes` of its apps.
    pub max_message_size_bytes: usize,
    /// Where it was declared, as `file:app` (several when replicas merge).
    pub apps: Vec<String>,
}

/// The role a broker user plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    Gateway { id: String },
    Agent { name: String },
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Gateway { id } => write!(f, "gateway {id:?}"),
            Component::Agent { name } => write!(f, "agent {name:?}"),
        }
    }
}

/// A broker password. Its `Debug` prints nothing, so a model can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, for the writers that must hash or emit it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An app left out of the model, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `file:app`.
    pub app: String,
    pub reason: String,
}

/// Why the configs cannot be turned into broker permissions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{app}: broker.broker_username is required to provision the broker: each component connects as its own broker user, and its trust topic is keyed by that name"
    )]
    MissingUsername { app: String },
    #[error("{app}: {what} {value:?} cannot be used in a broker ACL: {problem}")]
    InvalidName {
        app: String,
        what: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error(
        "broker_username {username:?} is used by {first} and by {second}: a broker user has one ACL entry, so both would need their permissions merged, giving each more than it needs (and letting one publish the other's trust card); give each app its own broker_username"
    )]
    SharedUsername {
        username: String,
        first: String,
        second: String,
    },
    #[error(
        "broker_username {username:?} has different broker_password values in {first} and {second}; a broker user has one password"
    )]
    PasswordConflict {
        username: String,
        first: String,
        second: String,
    },
    #[error(
        "MQTT client id {client_id:?} is used by {first} and by {second}: the broker lets one connection hold a client id, so each would keep kicking the other off; give each app its own client_id (or broker_username)"
    )]
    SharedClientId {
        client_id: String,
        first: String,
        second: String,
    },
    #[error(
        "no app connects to a real broker (all use dev_mode), so there is nothing to provision"
    )]
    NothingToProvision,
}

/// Every problem found, so an operator fixes the configs in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelErrors(pub Vec<ModelError>);

impl fmt::Display for ModelErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ModelErrors {}

impl AclModel {
    /// Derives each component's broker user and permissions from loaded
    /// configs. Apps on `dev_mode` brokers are skipped (see
    /// [`AclModel::skipped`]).
    ///
    /// # Errors
    /// Every app without a `broker_username`, every name that would widen a
    /// topic, and every broker username shared by two different roles.
    pub fn from_config(cfg: &LoadedConfig) -> Result<AclModel, ModelErrors> {
        let mut model = AclModel::default();
        let mut errors = Vec::new();
        for spec in &cfg.apps {
            let app = app_ref(spec);
            if spec.broker.dev_mode {
                model.skipped.push(Skipped {
                    app,
                    reason: "uses the in-process dev bus (dev_mode: true); no broker user needed"
                        .to_string(),
                });
                continue;
            }
            match principal(spec, &app) {
                Ok(p) => model.add(p, &mut errors),
                Err(mut e) => errors.append(&mut e),
            }
        }
        model.check_client_ids(&mut errors);
        if errors.is_empty() && model.principals.is_empty() {
            errors.push(ModelError::NothingToProvision);
        }
        if errors.is_empty() {
            Ok(model)
        } else {
            Err(ModelErrors(errors))
        }
    }

    /// Adds `p`, merging it into an existing principal of the same username
    /// only when both are the same component with the same permissions
    /// (replicas); anything else is a conflict.
    fn add(&mut self, p: Principal, errors: &mut Vec<ModelError>) {
        let Some(existing) = self
            .principals
            .iter_mut()
            .find(|e| e.username == p.username)
        else {
            self.principals.push(p);
            return;
        };
        let same_role = existing.component == p.component
            && existing.namespace == p.namespace
            && existing.vpn == p.vpn
            && existing.publish == p.publish
            && existing.subscribe == p.subscribe;
        if !same_role {
            errors.push(ModelError::SharedUsername {
                username: p.username.clone(),
                first: existing.describe(),
                second: p.describe(),
            });
            return;
        }
        match (&existing.password, p.password) {
            (Some(a), Some(b)) if *a != b => errors.push(ModelError::PasswordConflict {
                username: p.username.clone(),
                first: existing.apps.join(", "),
                second: p.apps.join(", "),
            }),
            (None, Some(b)) => existing.password = Some(b),
            _ => {}
        }
        existing.apps.extend(p.apps);
        existing.client_ids.extend(p.client_ids);
        existing.max_message_size_bytes = existing
            .max_message_size_bytes
            .max(p.max_message_size_bytes);
    }

    /// A client id held by two broker users can be bound to neither.
    fn check_client_ids(&self, errors: &mut Vec<ModelError>) {
        let mut owners: BTreeMap<&str, &Principal> = BTreeMap::new();
        for p in &self.principals {
            for id in &p.client_ids {
                if let Some(first) = owners.insert(id, p) {
                    errors.push(ModelError::SharedClientId {
                        client_id: id.clone(),
                        first: first.describe(),
                        second: p.describe(),
                    });
                }
            }
        }
    }

    /// The largest `max_message_size_bytes` of any component: the broker's
    /// limit must let the biggest legitimate message through.
    pub fn max_message_size_bytes(&self) -> usize {
        self.principals
            .iter()
            .map(|p| p.max_message_size_bytes)
            .max()
            .unwrap_or(0)
    }
}

impl Principal {
    /// `agent "a" in namespace "ns" (file:app)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} in namespace {:?} ({})",
            self.component,
            self.namespace,
            self.apps.join(", ")
        )
    }

    /// The one client id the account may connect with, when its apps agree
    /// on one (see [`Principal::client_ids`]).
    pub fn bound_client_id(&self) -> Option<&str> {
        match self.client_ids.len() {
            1 => self.client_ids.first().map(String::as_str),
            _ => None,
        }
    }

    /// Shared-subscription groups it joins (`$share/{group}/...`): on
    /// brokers that check subscriptions, only the group's owner may join.
    pub fn share_groups(&self) -> BTreeSet<&str> {
        self.subscribe
            .iter()
            .filter_map(|f| Subscription::parse(f).ok().and_then(|s| s.group))
            .collect()
    }

    /// True if one of the publish filters matches `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| filter::matches(f, topic))
    }

    /// True if a message on `topic` reaches one of the subscriptions.
    pub fn may_receive(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|f| {
            Subscription::parse(f)
                .map(|s| s.matches(topic))
                .unwrap_or(false)
        })
    }
}

/// `file:app`, how errors and notes name an app.
fn app_ref(spec: &AppSpec) -> String {
    format!("{}:{}", spec.source.display(), spec.name)
}

/// Builds the principal of one app on a real broker.
fn principal(spec: &AppSpec, app: &str) -> Result<Principal, Vec<ModelError>> {
    let mut errors = Vec::new();
    let username = match spec.broker.broker_username.as_deref() {
        None | Some("") => {
            errors.push(ModelError::MissingUsername {
                app: app.to_string(),
            });
            String::new()
        }
        Some(u) => {
            check_level(app, "broker_username", u, &mut errors);
            u.to_string()
        }
    };
    let (component, namespace, perms, max_message_size_bytes) = match &spec.kind {
        AppKind::Gateway(gw) => {
            let id = gw.gateway_id.clone().unwrap_or_else(|| spec.name.clone());
            check_level(app, "gateway_id", &id, &mut errors);
            check_namespace(app, &gw.namespace, &mut errors);
            let perms = gateway_permissions(gw, &id, &username);
            let size = gw.max_message_size_bytes;
            (Component::Gateway { id }, gw.namespace.clone(), perms, size)
        }
        AppKind::Agent(agent) => {
            check_level(app, "agent_name", &agent.agent_name, &mut errors);
            check_namespace(app, &agent.namespace, &mut errors);
            let peers = delegation_peers(agent, app, &mut errors);
            let perms = agent_permissions(agent, &peers, &username);
            let name = agent.agent_name.clone();
            let size = agent.max_message_size_bytes;
            (
                Component::Agent { name },
                agent.namespace.clone(),
                perms,
                size,
            )
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (publish, subscribe) = perms;
    Ok(Principal {
        username,
        component,
        namespace,
        publish,
        subscribe,
        password: spec.broker.broker_password.clone().map(Password),
        vpn: spec
            .broker
            .broker_vpn
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_VPN.to_string()),
        // Replicas (AMESH_REPLICA_ID) each connect with their own id: the
        // account cannot be bound to one of them.
        client_ids: match broker::replica_id() {
            Some(_) => BTreeSet::new(),
            None => BTreeSet::from([broker::client_id_for(&spec.broker, &spec.name, None)]),
        },
        max_message_size_bytes,
        apps: vec![app.to_string()],
    })
}

type Permissions = (BTreeSet<String>, BTreeSet<String>);

/// A gateway sends requests to any agent and announces itself; it reads
/// only the answers addressed to its own id.
fn gateway_permissions(gw: &GatewayConfig, id: &str, username: &str) -> Permissions {
    let ns = gw.namespace.as_str();
    let mut publish =
        BTreeSet::from([topics::agent_request_any(ns), topics::gateway_discovery(ns)]);
    let mut subscribe = BTreeSet::from([
        topics::gateway_response(ns, id, topics::ANY_LEVEL),
        topics::gateway_status(ns, id, topics::ANY_LEVEL),
        topics::agent_discovery(ns),
        topics::agent_presence_all(ns),
    ]);
    if gw.trust_manager.enabled {
        publish.insert(topics::trust(ns, TrustKind::Gateway, username));
        subscribe.insert(topics::trust_all(ns));
    }
    (publish, subscribe)
}

/// An agent answers whoever asked (any gateway, any delegating agent: the
/// reply topic arrives in the request), announces itself, and sends
/// requests only to the peers its policy permits.
fn agent_permissions(agent: &AgentConfig, peers: &[String], username: &str) -> Permissions {
    let ns = agent.namespace.as_str();
    let name = agent.agent_name.as_str();
    let mut publish = BTreeSet::from([
        topics::gateway_response_any(ns),
        topics::gateway_status_any(ns),
        topics::agent_response_any(ns),
        topics::agent_status_any(ns),
        topics::agent_discovery(ns),
        // Its replicas' presence (and the broker's will on their behalf).
        topics::agent_presence(ns, name, topics::ANY_LEVEL),
    ]);
    publish.extend(peers.iter().cloned());
    let mut subscribe = BTreeSet::from([
        topics::agent_request_shared(ns, name),
        topics::agent_response(ns, name, topics::ANY_LEVEL),
        topics::agent_status(ns, name, topics::ANY_LEVEL),
        topics::gateway_discovery(ns),
    ]);
    if agent.agent_discovery.enabled {
        subscribe.insert(topics::agent_discovery(ns));
        subscribe.insert(topics::agent_presence_all(ns));
    }
    if agent.trust_manager.enabled {
        publish.insert(topics::trust(ns, TrustKind::Agent, username));
        subscribe.insert(topics::trust_all(ns));
    }
    (publish, subscribe)
}

/// Request topics an agent may publish on when delegating.
///
/// Only agents with the `delegate` tool delegate at all. An allow_list made
/// of plain names becomes exactly those request topics (minus what the
/// deny_list excludes); a pattern with `*` cannot be listed in advance, so
/// it becomes the filter for every agent's requests and the deny_list is
/// left to the agent itself (MQTT ACLs have no "all but").
fn delegation_peers(agent: &AgentConfig, app: &str, errors: &mut Vec<ModelError>) -> Vec<String> {
    let delegates = agent.tools.iter().any(|t| match t {
        ToolConfig::Builtin { tool_name, .. } => {
            BuiltinTool::from_name(tool_name) == Some(BuiltinTool::Delegate)
        }
        ToolConfig::Mcp(_) => false,
    });
    if !delegates {
        return Vec::new();
    }
    let policy = &agent.inter_agent_communication;
    if policy.allow_list.iter().any(|p| p.contains('*')) {
        return vec![topics::agent_request_any(&agent.namespace)];
    }
    let mut peers = Vec::new();
    for peer in &policy.allow_list {
        if !topics::valid_level(peer) {
            errors.push(ModelError::InvalidName {
                app: app.to_string(),
                what: "inter_agent_communication.allow_list entry",
                value: peer.clone(),
                problem: LEVEL_PROBLEM,
            });
            continue;
        }
        if policy
            .deny_list
            .iter()
            .any(|d| crate::glob::matches(d, peer))
        {
            continue;
        }
        peers.push(topics::agent_request(&agent.namespace, peer));
    }
    peers
}

const LEVEL_PROBLEM: &str =
    "it becomes one MQTT topic level, so it must be non-empty and free of `/`, `+`, `#` and NUL";

fn check_level(app: &str, what: &'static str, value: &str, errors: &mut Vec<ModelError>) {
    if !topics::valid_level(value) {
        errors.push(ModelError::InvalidName {
            app: app.to_string(),
            what,
            value: value.to_string(),
            problem: LEVEL_PROBLEM,
        });
    }
}

/// A namespace with a wildcard would turn every permission into a filter
/// over other namespaces.
fn check_namespace(app: &str, ns: &str, errors: &mut Vec<ModelError>) {
    if ns.is_empty() || filter::validate_topic(&topics::base(ns)).is_err() {
        errors.push(ModelError::InvalidName {
            app: app.to_string(),
            what: "namespace",
            value: ns.to_string(),
            problem: "it prefixes every topic, so it must be non-empty and free of `+`, `#` and NUL",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const NS: &str = "acme/prod";

    fn load(yaml: &str) -> LoadedConfig {
        config::load_str_with_env("mesh.yaml", yaml, &|_| None).expect("config loads")
    }

    fn model(yaml: &str) -> AclModel {
        AclModel::from_config(&load(yaml)).expect("model builds")
    }

    fn errors(yaml: &str) -> Vec<ModelError> {
        AclModel::from_config(&load(yaml))
            .expect_err("model fails")
            .0
    }

    fn broker(user: &str) -> String {
        format!(
            "{{broker_url: tcp://localhost:1883, broker_username: {user}, broker_password: pw-{user}}}"
        )
    }

    fn mesh() -> String {
        format!(
            r#"
apps:
  - name: web
    app_module: gateway
    broker: {gw}
    app_config: {{namespace: {NS}, gateway_id: web-1}}
  - name: planner
    app_module: agent
    broker: {planner}
    app_config:
      namespace: {NS}
      agent_name: planner
      tools: [{{tool_type: builtin, tool_name: delegate}}]
      inter_agent_communication:
        allow_list: [weather, news]
        deny_list: ["new*"]
  - name: weather
    app_module: agent
    broker: {weather}
    app_config:
      namespace: {NS}
      agent_name: weather
      agent_discovery: {{enabled: false}}
"#,
            gw = broker("gw-user"),
            planner = broker("planner-user"),
            weather = broker("weather-user"),
        )
    }

    fn find<'m>(m: &'m AclModel, user: &str) -> &'m Principal {
        m.principals
            .iter()
            .find(|p| p.username == user)
            .expect("principal")
    }

    fn set(items: &[String]) -> BTreeSet<String> {
        items.iter().cloned().collect()
    }

    #[test]
    fn gateway_acl_publishes_requests_and_reads_only_its_own_answers() {
        let m = mesh_model();
        let gw = find(&m, "gw-user");
        assert_eq!(gw.component, Component::Gateway { id: "web-1".into() });
        assert_eq!(
            gw.publish,
            set(&[
                topics::agent_request_any(NS),
                topics::gateway_discovery(NS),
                topics::trust(NS, TrustKind::Gateway, "gw-user"),
            ])
        );
        assert_eq!(
            gw.subscribe,
            set(&[
                topics::gateway_response(NS, "web-1", "+"),
                topics::gateway_status(NS, "web-1", "+"),
                topics::agent_discovery(NS),
                topics::agent_presence_all(NS),
                topics::trust_all(NS),
            ])
        );
        assert!(gw.may_receive(&topics::agent_presence(NS, "weather", "weather-user-w")));
        assert!(!gw.may_publish(&topics::agent_presence(NS, "weather", "weather-user-w")));
        assert!(!gw.may_receive(&topics::gateway_response(NS, "web-2", "t")));
        assert!(!gw.may_publish(&topics::gateway_response(NS, "web-2", "t")));
        assert!(!gw.may_publish(&topics::trust(NS, TrustKind::Agent, "planner-user")));
        assert_eq!(gw.vpn, DEFAULT_VPN);
        assert_eq!(gw.apps, vec!["mesh.yaml:web".to_string()]);
    }

    fn mesh_model() -> AclModel {
        model(&mesh())
    }

    #[test]
    fn agent_acl_replies_anywhere_but_delegates_only_to_permitted_peers() {
        let m = mesh_model();
        let planner = find(&m, "planner-user");
        assert!(planner.may_publish(&topics::agent_request(NS, "weather")));
        // Allowed, then denied by the deny_list pattern.
        assert!(!planner.may_publish(&topics::agent_request(NS, "news")));
        assert!(!planner.may_publish(&topics::agent_request(NS, "billing")));
        assert!(planner.may_publish(&topics::gateway_response(NS, "any-gw", "t")));
        assert!(planner.may_publish(&topics::agent_status(NS, "other", "t")));
        assert!(planner.may_publish(&topics::trust(NS, TrustKind::Agent, "planner-user")));
        assert!(!planner.may_publish(&topics::trust(NS, TrustKind::Agent, "weather-user")));
        assert!(!planner.may_publish(&topics::trust(NS, TrustKind::Gateway, "gw-user")));
        assert!(!planner.may_publish(&topics::gateway_discovery(NS)));
        // Its own presence only (the broker checks the will against it too).
        assert!(planner.may_publish(&topics::agent_presence(NS, "planner", "planner-user-p")));
        assert!(!planner.may_publish(&topics::agent_presence(NS, "weather", "planner-user-p")));
        assert!(
            planner
                .subscribe
                .contains(&topics::agent_request_shared(NS, "planner"))
        );
        assert!(planner.may_receive(&topics::agent_request(NS, "planner")));
        assert!(!planner.may_receive(&topics::agent_request(NS, "weather")));
        assert!(planner.may_receive(&topics::agent_discovery(NS)));
        // With discovery it follows its peers' presence.
        assert!(planner.may_receive(&topics::agent_presence(NS, "weather", "w-1")));
    }

    #[test]
    fn agent_without_delegate_tool_publishes_no_requests() {
        let m = mesh_model();
        let weather = find(&m, "weather-user");
        assert!(
            weather
                .publish
                .iter()
                .all(|f| !f.starts_with(&topics::agent_request(NS, "")))
        );
        // Discovery of peers is off, so it does not read agent cards.
        assert!(!weather.may_receive(&topics::agent_discovery(NS)));
        assert!(!weather.may_receive(&topics::agent_presence(NS, "planner", "p-1")));
        assert!(weather.may_publish(&topics::agent_discovery(NS)));
    }

    #[test]
    fn wildcard_allow_list_allows_every_agents_requests() {
        let yaml = format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {}\n    app_config:\n      namespace: {NS}\n      agent_name: a\n      tools: [{{tool_type: builtin, tool_name: delegate}}]\n",
            broker("a-user")
        );
        let a = model(&yaml).principals.remove(0);
        assert!(a.publish.contains(&topics::agent_request_any(NS)));
    }

    #[test]
    fn disabled_trust_manager_gets_no_trust_topics() {
        let yaml = format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {}\n    app_config:\n      namespace: {NS}\n      agent_name: a\n      trust_manager: {{enabled: false}}\n",
            broker("a-user")
        );
        let a = model(&yaml).principals.remove(0);
        assert!(!a.may_publish(&topics::trust(NS, TrustKind::Agent, "a-user")));
        assert!(!a.may_receive(&topics::trust(NS, TrustKind::Gateway, "g")));
    }

    #[test]
    fn every_permission_is_a_valid_mqtt_filter() {
        for p in mesh_model().principals {
            for f in p.publish.iter().chain(&p.subscribe) {
                assert!(Subscription::parse(f).is_ok(), "{f}");
            }
        }
    }

    #[test]
    fn dev_mode_apps_are_skipped_with_a_note() {
        let yaml = format!(
            "apps:\n  - name: dev\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config: {{namespace: {NS}, agent_name: dev}}\n{}",
            mesh().trim_start().trim_start_matches("apps:\n")
        );
        let m = model(&yaml);
        assert_eq!(m.skipped.len(), 1);
        assert_eq!(m.skipped[0].app, "mesh.yaml:dev");
        assert_eq!(m.principals.len(), 3);
    }

    #[test]
    fn only_dev_mode_apps_is_an_error() {
        let yaml = format!(
            "apps:\n  - name: dev\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config: {{namespace: {NS}, agent_name: dev}}\n"
        );
        assert_eq!(errors(&yaml), vec![ModelError::NothingToProvision]);
    }

    #[test]
    fn missing_username_names_file_and_app() {
        let yaml = format!(
            "apps:\n  - name: lonely\n    app_module: agent\n    broker: {{broker_url: tcp://localhost:1883}}\n    app_config: {{namespace: {NS}, agent_name: lonely}}\n"
        );
        let errs = errors(&yaml);
        assert_eq!(
            errs,
            vec![ModelError::MissingUsername {
                app: "mesh.yaml:lonely".into()
            }]
        );
        assert!(
            errs[0]
                .to_string()
                .starts_with("mesh.yaml:lonely: broker.broker_username")
        );
    }

    #[test]
    fn one_username_for_two_roles_is_refused_and_says_why() {
        let yaml = format!(
            "apps:\n  - name: web\n    app_module: gateway\n    broker: {b}\n    app_config: {{namespace: {NS}}}\n  - name: a\n    app_module: agent\n    broker: {b}\n    app_config: {{namespace: {NS}, agent_name: a}}\n",
            b = broker("shared")
        );
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            matches!(errs[0], ModelError::SharedUsername { .. }),
            "{msg}"
        );
        assert!(msg.contains("\"shared\""), "{msg}");
        assert!(
            msg.contains("mesh.yaml:web") && msg.contains("mesh.yaml:a"),
            "{msg}"
        );
        assert!(msg.contains("merged"), "{msg}");
    }

    #[test]
    fn two_agents_sharing_a_username_are_refused() {
        let yaml = format!(
            "apps:\n  - name: a\n    app_module: agent\n    broker: {b}\n    app_config: {{namespace: {NS}, agent_name: a}}\n  - name: b\n    app_module: agent\n    broker: {b}\n    app_config: {{namespace: {NS}, agent_name: b}}\n",
            b = broker("shared")
        );
        assert!(matches!(
            errors(&yaml)[..],
            [ModelError::SharedUsername { .. }]
        ));
    }

    #[test]
    fn wildcard_names_are_refused_even_without_the_loader() {
        let mut cfg = load(&mesh());
        cfg.apps[0].broker.broker_username = Some("gw+".into());
        let errs = AclModel::from_config(&cfg).expect_err("refused").0;
        assert!(
            matches!(
                &errs[..],
                [ModelError::InvalidName {
                    what: "broker_username",
                    ..
                }]
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn each_account_is_bound_to_the_client_id_its_app_connects_with() {
        let m = mesh_model();
        let weather = find(&m, "weather-user");
        assert_eq!(weather.bound_client_id(), Some("weather-user-weather"));
        assert_eq!(weather.share_groups(), BTreeSet::from(["weather"]));
        assert!(find(&m, "gw-user").share_groups().is_empty());
        assert_eq!(weather.max_message_size_bytes, 10_000_000);
        assert_eq!(m.max_message_size_bytes(), 10_000_000);
    }

    #[test]
    fn replicas_with_distinct_client_ids_leave_the_account_unbound() {
        // The loader refuses one agent twice, so merge by hand what replicas
        // with their own client ids would be.
        let mut m = AclModel::default();
        let weather = find(&mesh_model(), "weather-user").clone();
        let mut replica = weather.clone();
        replica.client_ids = BTreeSet::from(["weather-2".to_string()]);
        replica.max_message_size_bytes = 20_000_000;
        let mut errors = Vec::new();
        m.add(weather, &mut errors);
        m.add(replica, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let merged = &m.principals[0];
        assert_eq!(merged.client_ids.len(), 2);
        assert_eq!(merged.bound_client_id(), None);
        assert_eq!(merged.max_message_size_bytes, 20_000_000);
    }

    #[test]
    fn one_client_id_for_two_accounts_is_refused() {
        let app = |name: &str, user: &str| {
            format!(
                "  - name: {name}\n    app_module: agent\n    broker: {{broker_url: tcp://h:1883, broker_username: {user}, client_id: same}}\n    app_config: {{namespace: {NS}, agent_name: {name}}}\n"
            )
        };
        let yaml = format!("apps:\n{}{}", app("a", "a-user"), app("b", "b-user"));
        let errs = errors(&yaml);
        assert!(
            matches!(&errs[..], [ModelError::SharedClientId { client_id, .. }] if client_id == "same"),
            "{errs:?}"
        );
        assert!(errs[0].to_string().contains("kicking"), "{}", errs[0]);
    }

    #[test]
    fn passwords_never_show_in_debug() {
        let m = mesh_model();
        let dbg = format!("{m:?}");
        assert!(!dbg.contains("pw-gw-user"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        assert_eq!(
            find(&m, "gw-user").password.as_ref().map(Password::expose),
            Some("pw-gw-user")
        );
    }
}
