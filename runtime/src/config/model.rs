//! Typed configuration: the shape of an amesh YAML app config.
//!
//! The layout follows Solace Agent Mesh (`apps: [{name, app_module, broker,
//! app_config}]`) so its operators can bring their files. Structs deny unknown
//! fields so a typo is an error that names the key, not a silently ignored
//! setting; keys that Solace Agent Mesh uses and amesh does not act on yet are
//! accepted explicitly (and documented as ignored) instead.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

pub use super::artifact_service::{ArtifactScope, ArtifactServiceConfig, ArtifactServiceKind};

/// Top level of one YAML file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Logging; the first file that has a `log` block wins.
    #[serde(default)]
    pub log: Option<LogConfig>,
    /// Free-form block that exists to hold YAML anchors (`&broker`) shared by
    /// the apps, as in Solace Agent Mesh configs. Never read directly.
    #[serde(default)]
    pub shared_config: Option<serde_json::Value>,
    /// The apps this file starts.
    #[serde(default)]
    pub apps: Vec<RawApp>,
}

/// `log:` block. Levels use tracing's names; Python's names (`WARNING`,
/// `CRITICAL`) are accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_stdout_level")]
    pub stdout_log_level: LogLevel,
    #[serde(default = "default_file_level")]
    pub log_file_level: LogLevel,
    /// When set, logs are also appended to this file.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// `text` (default) or `json` (one object per line, for a log
    /// collector). Env `AMESH_LOG_FORMAT` overrides both formats.
    #[serde(default)]
    pub stdout_log_format: LogFormat,
    #[serde(default)]
    pub log_file_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, spans).
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            stdout_log_level: default_stdout_level(),
            log_file_level: default_file_level(),
            log_file: None,
            stdout_log_format: LogFormat::Text,
            log_file_format: LogFormat::Text,
        }
    }
}

fn default_stdout_level() -> LogLevel {
    LogLevel::Info
}
fn default_file_level() -> LogLevel {
    LogLevel::Debug
}

/// Ordered from the most verbose to the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum LogLevel {
    #[serde(alias = "trace", alias = "TRACE")]
    Trace,
    #[serde(alias = "debug", alias = "DEBUG")]
    Debug,
    #[serde(alias = "info", alias = "INFO")]
    Info,
    #[serde(alias = "warn", alias = "WARN", alias = "WARNING", alias = "warning")]
    Warn,
    #[serde(
        alias = "error",
        alias = "ERROR",
        alias = "CRITICAL",
        alias = "critical"
    )]
    Error,
}

impl LogLevel {
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One entry of `apps:` before its `app_config` is typed: which struct
/// `app_config` becomes depends on `app_module`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: String,
    /// `agent`, `gateway`, or a SAM module path (see `sam.rs`).
    pub app_module: String,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub app_config: serde_json::Value,
    /// Solace Agent Mesh app-level keys that amesh does not use.
    #[serde(default)]
    pub app_base_path: Option<String>,
    #[serde(default)]
    pub num_instances: Option<u32>,
}

/// `broker:` block of an app.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Use the in-process dev bus instead of a real broker: every app of one
    /// `amesh run` process shares it. Nothing outside the process can connect.
    #[serde(default)]
    pub dev_mode: bool,
    /// `tcp://host:1883`, `mqtt://`, `ssl://host:8883` or `mqtts://`.
    #[serde(default)]
    pub broker_url: Option<String>,
    #[serde(default)]
    pub broker_username: Option<String>,
    #[serde(default)]
    pub broker_password: Option<String>,
    /// Solace message VPN. Not used by MQTT connections; accepted so Solace
    /// Agent Mesh configs load.
    #[serde(default)]
    pub broker_vpn: Option<String>,
    /// Solace Agent Mesh setting; amesh always uses MQTT subscriptions.
    #[serde(default)]
    pub temporary_queue: Option<bool>,
    /// MQTT client id; default `{broker_username or app name}-{app name}`.
    /// Must be stable across restarts so the broker keeps the session.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Seconds the broker keeps the session (subscriptions, queued QoS 1
    /// messages) while the client is away.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_seconds: u32,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u32,
    /// CA bundle (PEM) for `ssl://` URLs; default: the system trust store.
    #[serde(default)]
    pub trust_store_file: Option<PathBuf>,
    /// Disables TLS certificate verification. Logged as a warning at start.
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// An agent announces its replica's presence and connects with a will
    /// that clears it when the session ends, so gateways refuse requests
    /// nobody would receive at once (`crate::presence`). Needs a broker
    /// that honours MQTT v5's Will Delay Interval (Mosquitto 2 does); turn
    /// it off on one that sends wills as soon as a connection drops.
    #[serde(default = "yes")]
    pub presence: bool,
}

impl Default for BrokerConfig {
    /// The same values an empty `broker:` block gets from serde.
    fn default() -> Self {
        BrokerConfig {
            dev_mode: false,
            broker_url: None,
            broker_username: None,
            broker_password: None,
            broker_vpn: None,
            temporary_queue: None,
            client_id: None,
            session_expiry_seconds: default_session_expiry(),
            keep_alive_seconds: default_keep_alive(),
            trust_store_file: None,
            tls_insecure_skip_verify: false,
            presence: true,
        }
    }
}

fn default_session_expiry() -> u32 {
    3600
}
fn default_keep_alive() -> u32 {
    20
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("dev_mode", &self.dev_mode)
            .field("broker_url", &self.broker_url)
            .field("broker_username", &self.broker_username)
            .field(
                "broker_password",
                &self.broker_password.as_ref().map(|_| "[redacted]"),
            )
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `trust_manager:` block, shared by gateways and agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustManagerConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_card_interval")]
    pub card_publish_interval_seconds: u64,
    #[serde(default = "default_card_expiration_days")]
    pub card_expiration_days: u64,
    #[serde(default)]
    pub verification_mode: VerificationMode,
    #[serde(default = "default_skew")]
    pub clock_skew_tolerance_seconds: u64,
    #[serde(default = "yes")]
    pub enable_time_validation: bool,
    #[serde(default = "default_jwt_ttl")]
    pub jwt_default_ttl_seconds: u64,
    #[serde(default = "default_jwt_max_ttl")]
    pub jwt_max_ttl_seconds: u64,
    /// PEM PKCS#8 P-256 key; created (mode 0600) when missing. Without it an
    /// agent with a SQL session service keeps its key in that database (its
    /// replicas share it); otherwise the key is generated at start and lives
    /// in memory only (see `trust_manager::key_source`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Default for TrustManagerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            card_publish_interval_seconds: default_card_interval(),
            card_expiration_days: default_card_expiration_days(),
            verification_mode: VerificationMode::default(),
            clock_skew_tolerance_seconds: default_skew(),
            enable_time_validation: true,
            jwt_default_ttl_seconds: default_jwt_ttl(),
            jwt_max_ttl_seconds: default_jwt_max_ttl(),
            key_file: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_card_interval() -> u64 {
    10
}
fn default_card_expiration_days() -> u64 {
    7
}
fn default_skew() -> u64 {
    300
}
fn default_jwt_ttl() -> u64 {
    3600
}
fn default_jwt_max_ttl() -> u64 {
    86400
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerificationMode {
    /// A bad or missing identity token is refused with a JSON-RPC error.
    /// Gateways and delegating agents list only agents that sign their
    /// cards, and take only signed answers.
    Strict,
    /// A bad or missing token is logged; the task runs with an unverified
    /// identity that can never unlock stored credentials. Agents that sign
    /// nothing (trust off there) are still listed and answered for.
    #[default]
    Permissive,
}

/// `session_service:` block of an agent.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionServiceConfig {
    #[serde(rename = "type", default)]
    pub kind: SessionServiceKind,
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default)]
    pub default_behavior: SessionBehavior,
}

/// The database URL's password never reaches a log or an error chain.
impl std::fmt::Debug for SessionServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.database_url.as_deref().map(|u| {
            amesh_credentials::DatabaseUrl::parse(u)
                .map(|d| d.redacted().to_owned())
                .unwrap_or_else(|_| "[unparsable URL, redacted]".to_owned())
        });
        f.debug_struct("SessionServiceConfig")
            .field("kind", &self.kind)
            .field("database_url", &url)
            .field("default_behavior", &self.default_behavior)
            .finish()
    }
}

impl Default for SessionServiceConfig {
    fn default() -> Self {
        Self {
            kind: SessionServiceKind::Memory,
            database_url: None,
            default_behavior: SessionBehavior::Persistent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionServiceKind {
    #[default]
    Memory,
    Sql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SessionBehavior {
    #[default]
    #[serde(rename = "PERSISTENT", alias = "persistent")]
    Persistent,
    #[serde(rename = "RUN_BASED", alias = "run_based")]
    RunBased,
}

/// `app_config` of an agent app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub namespace: String,
    pub agent_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub supports_streaming: bool,
    #[serde(default = "default_max_message_size")]
    pub max_message_size_bytes: usize,
    #[serde(default = "default_max_call_depth")]
    pub max_call_depth: u32,
    #[serde(default)]
    pub agent_card: AgentCardConfig,
    #[serde(default)]
    pub agent_card_publishing: CardPublishingConfig,
    #[serde(default)]
    pub agent_discovery: AgentDiscoveryConfig,
    #[serde(default)]
    pub inter_agent_communication: InterAgentConfig,
    /// The `tools:` key, typed item by item by the loader (`tools.rs`)
    /// into `tools`, so its errors keep exact key paths.
    #[serde(default, rename = "tools")]
    _tools: serde::de::IgnoredAny,
    /// The tools amesh runs (those it lacks are left out with a warning).
    #[serde(skip)]
    pub tools: Vec<ToolConfig>,
    /// For each of `tools`, its index in the YAML `tools:` list.
    #[serde(skip)]
    pub tool_indices: Vec<usize>,
    #[serde(default)]
    pub session_service: SessionServiceConfig,
    #[serde(default)]
    pub trust_manager: TrustManagerConfig,
    /// File holding the agent's secret unique identifier (credential
    /// encryption key material). Created with mode 0600 when missing.
    #[serde(default)]
    pub agent_secret_file: Option<PathBuf>,
    /// `agent_secret_file` was not written but derived (see `paths.rs`):
    /// the agent logs where it is and warns that replicas must share it.
    #[serde(skip)]
    pub agent_secret_default: bool,
    /// Where tool OAuth providers send users back: the gateway's
    /// `/api/v1/auth/tool/callback`. Default: env `OAUTH_TOOL_REDIRECT_URI`.
    /// Must be https unless the host is loopback.
    #[serde(default)]
    pub oauth_tool_redirect_uri: Option<String>,
    /// The language model of the agent's reasoning loop. Without one the
    /// agent runs the tool a request names in a DataPart (no reasoning).
    #[serde(default)]
    pub model: Option<super::llm::ModelConfig>,
    /// Provider for a model name without a LiteLLM prefix. SAM writes a
    /// list of its model aliases here (`[general]`); a list names a
    /// provider only when its one item is a LiteLLM provider name.
    #[serde(default, deserialize_with = "provider_or_aliases")]
    pub model_provider: Option<String>,
    /// The system prompt.
    #[serde(default)]
    pub instruction: Option<String>,
    /// Model requests one task may make before it ends (SAM's default 20).
    #[serde(default = "default_max_llm_calls")]
    pub max_llm_calls_per_task: u32,
    /// Where the artifact tools (SAM's `artifact_management`) keep files.
    #[serde(default)]
    pub artifact_service: Option<ArtifactServiceConfig>,
    /// Retained tasks and peer cards (see `limits.rs`).
    #[serde(default)]
    pub limits: super::limits::AgentLimits,
    /// Where the agent serves Prometheus `/metrics`; none when absent.
    #[serde(default)]
    pub metrics: Option<super::telemetry::MetricsConfig>,
}

/// `model_provider: openai`, or SAM's list of model aliases, which names
/// a provider only when it is one LiteLLM provider (`[openai]`).
fn provider_or_aliases<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        List(Vec<String>),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => None,
        Some(Form::One(p)) => Some(p),
        Some(Form::List(list)) => match list.as_slice() {
            [one] if super::llm::is_provider(one) => Some(one.clone()),
            _ => None,
        },
    })
}

fn default_max_message_size() -> usize {
    10_000_000
}
fn default_max_call_depth() -> u32 {
    10
}
fn default_max_llm_calls() -> u32 {
    20
}

/// `agent_card:` block: what the agent advertises in discovery.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentCardConfig {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "defaultInputModes")]
    pub default_input_modes: Option<Vec<String>>,
    #[serde(default, rename = "defaultOutputModes")]
    pub default_output_modes: Option<Vec<String>>,
    #[serde(default)]
    pub skills: Vec<SkillConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
}

/// `agent_card_publishing:` / `gateway_card_publishing:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardPublishingConfig {
    #[serde(default = "default_card_interval")]
    pub interval_seconds: u64,
}

impl Default for CardPublishingConfig {
    fn default() -> Self {
        Self {
            interval_seconds: default_card_interval(),
        }
    }
}

/// `agent_discovery:` block: whether this agent listens to peers' cards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDiscoveryConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for AgentDiscoveryConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `inter_agent_communication:` block: which peers this agent may delegate to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterAgentConfig {
    #[serde(default = "allow_all")]
    pub allow_list: Vec<String>,
    #[serde(default)]
    pub deny_list: Vec<String>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
}

impl Default for InterAgentConfig {
    fn default() -> Self {
        Self {
            allow_list: allow_all(),
            deny_list: Vec::new(),
            request_timeout_seconds: default_request_timeout(),
        }
    }
}

fn allow_all() -> Vec<String> {
    vec!["*".to_string()]
}
fn default_request_timeout() -> u64 {
    600
}

/// One entry of an agent's `tools:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "tool_type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ToolConfig {
    /// A tool compiled into amesh (`echo`, `time`, `sleep`, `delegate`,
    /// `whoami`).
    Builtin {
        tool_name: String,
        #[serde(default)]
        tool_config: Option<serde_json::Value>,
    },
    /// A remote MCP server (Streamable HTTP or legacy SSE), optionally
    /// reached with each user's own OAuth2 credentials.
    Mcp(Box<amesh_mcp::tool_config::McpToolConfig>),
}

/// `app_config` of a gateway app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub namespace: String,
    /// Stable id of this gateway replica; default: the app name.
    #[serde(default)]
    pub gateway_id: Option<String>,
    #[serde(default = "default_host", alias = "fastapi_host")]
    pub host: String,
    #[serde(default = "default_port", alias = "fastapi_port")]
    pub port: u16,
    /// false: every request acts as `dev_user`. true: requests must carry a
    /// configured user's API token or a session cookie.
    #[serde(default)]
    pub frontend_use_authorization: bool,
    #[serde(default)]
    pub dev_user: UserConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Key that signs session cookies. Replicas behind one load balancer must
    /// share it; without it a random key is made at start (sessions end with
    /// the process).
    #[serde(default)]
    pub session_secret_key: Option<SecretString>,
    /// Origins (`scheme://host[:port]`) besides the gateway's own from which
    /// a browser may send requests that change state with the session
    /// cookie: the public URL of a reverse proxy, for instance. An `https`
    /// entry also marks the session cookie `Secure`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names (no port) the gateway answers to besides `localhost`, IP
    /// addresses and `host`. Checked in development mode
    /// (`frontend_use_authorization: false`) always, and in any mode once
    /// set: a web page that re-points its own domain name at the gateway
    /// (DNS rebinding) gets a 421.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Agents whose cards have not been seen for this long are dropped.
    #[serde(default = "default_discovery_ttl")]
    pub agent_card_ttl_seconds: u64,
    #[serde(default)]
    pub gateway_card_publishing: CardPublishingConfig,
    #[serde(default = "default_max_message_size")]
    pub max_message_size_bytes: usize,
    /// A task with no final answer after this long ends as failed.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    #[serde(default)]
    pub trust_manager: TrustManagerConfig,
    /// Connection, stream, task and card limits (see `limits.rs`).
    #[serde(default)]
    pub limits: super::limits::GatewayLimits,
    /// Single sign-on with an OpenID Connect provider (`gateway/sso.rs`).
    #[serde(default)]
    pub sso: Option<SsoConfig>,
}

/// The gateway's SSO callback route, the path `sso.redirect_uri` ends in.
pub const SSO_CALLBACK_PATH: &str = "/api/v1/auth/callback";

/// `sso:` block of a gateway: sign-in with an OpenID Connect provider
/// (authorization code flow with PKCE, endpoints found by discovery). The
/// keys are those of a provider entry in Solace Agent Mesh's
/// `oauth2_config.yaml` (`issuer`, `client_id`, `client_secret`,
/// `redirect_uri`, `scope`), plus which ID token claims give the user's
/// id, email and name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// The provider's name on the page's button: "Sign in with <provider>".
    #[serde(default = "default_sso_provider")]
    pub provider: String,
    /// The issuer URL; `<issuer>/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    /// The client secret (from the environment: `${OIDC_CLIENT_SECRET}`);
    /// none for a public client, which PKCE alone protects.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// The gateway's callback as the provider knows it:
    /// `https://<gateway>/api/v1/auth/callback`.
    pub redirect_uri: String,
    /// Scopes asked for, space separated (`openid` is required).
    #[serde(default = "default_sso_scope")]
    pub scope: String,
    /// The ID token claim that is the user's id in amesh (`sub`, or
    /// `email`, `preferred_username`, `oid`...).
    #[serde(default = "default_user_id_claim")]
    pub user_id_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Where the provider sends the browser after RP-initiated logout; it
    /// must be registered with the provider. Default: the gateway's page
    /// (the origin of `redirect_uri`).
    #[serde(default)]
    pub post_logout_redirect_uri: Option<String>,
    /// How long a sign-in may take at the provider.
    #[serde(default = "default_sso_login_timeout")]
    pub login_timeout_seconds: u64,
    /// How long discovered provider metadata and signing keys are used
    /// before they are read again.
    #[serde(default = "default_sso_metadata_ttl")]
    pub metadata_ttl_seconds: u64,
}

impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("user_id_claim", &self.user_id_claim)
            .field("email_claim", &self.email_claim)
            .field("name_claim", &self.name_claim)
            .field("post_logout_redirect_uri", &self.post_logout_redirect_uri)
            .field("login_timeout_seconds", &self.login_timeout_seconds)
            .field("metadata_ttl_seconds", &self.metadata_ttl_seconds)
            .finish()
    }
}

fn default_sso_provider() -> String {
    "SSO".to_string()
}
fn default_sso_scope() -> String {
    "openid email profile".to_string()
}
fn default_user_id_claim() -> String {
    "sub".to_string()
}
fn default_email_claim() -> String {
    "email".to_string()
}
fn default_name_claim() -> String {
    "name".to_string()
}
fn default_sso_login_timeout() -> u64 {
    600
}
fn default_sso_metadata_ttl() -> u64 {
    3600
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}
fn default_port() -> u16 {
    8000
}
fn default_discovery_ttl() -> u64 {
    30
}

/// A gateway user. `token_sha256` is the hex SHA-256 of the user's API
/// token (`amesh users hash-token`); `token` (plain, e.g. from `${ENV}`) is
/// hashed by the gateway's authenticator at start, which keeps only the hash.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token_sha256: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self {
            id: "dev-user".to_string(),
            name: Some("Dev User".to_string()),
            email: Some("dev-user@localhost".to_string()),
            token_sha256: None,
            token: None,
        }
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("token_sha256", &self.token_sha256.as_ref().map(|_| "[set]"))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A fully loaded, typed app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub broker: BrokerConfig,
    pub kind: AppKind,
    /// The file the app was declared in (for messages).
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub enum AppKind {
    Agent(Box<AgentConfig>),
    Gateway(Box<GatewayConfig>),
}

/// Everything `amesh run FILE...` starts.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub log: LogConfig,
    pub apps: Vec<AppSpec>,
    /// Settings amesh ignores (SAM keys it does not implement) and apps
    /// skipped with `skip_unsupported`: shown by `config check`, logged by
    /// `run`.
    pub warnings: Vec<super::ConfigError>,
}

/// How lenient loading is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Apps whose module amesh does not implement are left out with a
    /// warning instead of failing the load (`amesh run --skip-unsupported`).
    pub skip_unsupported: bool,
}
