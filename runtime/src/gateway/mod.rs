//! The gateway app: HTTP + SSE in front, A2A over the broker behind.
//!
//! A user's request becomes an A2A JSON-RPC request on the agent's request
//! topic, with `replyTo` and `a2aStatusTopic` pointing at per-task topics of
//! this gateway. One pump task reads the gateway's broker connection and
//! routes each answer to the HTTP request waiting for it by task id.
//!
//! Layout: `http.rs` is the route table; `task_routes.rs`, `stream.rs`,
//! `auth_routes.rs`, `sso.rs`, `connections.rs`, `conversation_routes.rs`
//! and `tool_callback.rs` serve the routes; `agent_requests.rs` asks agents
//! through the A2A client (`agent_sessions.rs`: about conversations);
//! `pump.rs` reads the broker.

mod agent_requests;
mod agent_sessions;
mod api_error;
pub mod auth;
mod auth_routes;
mod body;
mod connections;
mod conversation_routes;
mod conversations;
mod extract;
mod http;
mod links;
mod page;
mod pump;
mod quota;
mod revocation;
mod serve;
mod site;
mod sso;
mod stream;
mod task_events;
mod task_index;
mod task_routes;
mod throttle;
mod tokens;
pub mod tool_callback;

pub use serve::ConnectionStats;

use secrecy::ExposeSecret as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::a2a::client::{A2aClient, Requester};
use crate::a2a::{AgentCapabilities, AgentCard, PROTOCOL_VERSION};
use crate::broker::{Broker, Incoming};
use crate::config::GatewayConfig;
use crate::discovery::Directory;
use crate::topics;

use auth::{Authenticator, DevAuthenticator, SessionCodec, TokenAuthenticator, User};
use task_index::{IndexLimits, TaskIndex};

/// Shared state of one gateway; handlers hold it through an `Arc`.
pub(crate) struct GatewayInner {
    pub(crate) id: String,
    pub(crate) ns: String,
    pub(crate) cfg: GatewayConfig,
    pub(crate) broker: Broker,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) sessions: SessionCodec,
    /// Sign-in with an OpenID Connect provider, when `sso:` is configured.
    pub(crate) sso: Option<sso::Sso>,
    /// Failed authentications per client address.
    pub(crate) throttle: throttle::LoginThrottle,
    /// Which sites browsers may reach the gateway from; cookie flags.
    pub(crate) site: site::SitePolicy,
    pub(crate) agents: Directory,
    /// Which agents have a replica with a session on the broker.
    pub(crate) presence: crate::presence::Presence,
    /// Sends the requests to agents and routes their answers back.
    pub(crate) client: A2aClient,
    pub(crate) tasks: TaskIndex,
    /// What streamed tasks said, for clients that come back.
    pub(crate) events: task_events::TaskEvents,
    /// The web page's conversations, per user.
    pub(crate) conversations: conversations::Conversations,
    /// Open `message:stream` streams per user.
    pub(crate) streams: quota::UserSlots,
    /// Open HTTP connections and their limits.
    conns: Arc<serve::Connections>,
    pub(crate) trust: Arc<crate::trust_manager::TrustManager>,
    pub(crate) tokens: tokens::TokenCache,
}

/// A running gateway.
pub struct GatewayHandle {
    id: String,
    addr: SocketAddr,
    join: JoinHandle<()>,
    inner: Arc<GatewayInner>,
}

/// What a running gateway holds, for operators and tests: how much of
/// each bounded structure is in use.
#[derive(Debug, Clone, Default)]
pub struct GatewayStats {
    pub connections: ConnectionStats,
    /// Open `message:stream` streams, all users together.
    pub open_streams: usize,
    /// Tasks in the ownership index (id, user, agent, state).
    pub tasks_indexed: usize,
    /// Approximate bytes of the ownership index.
    pub task_index_bytes: usize,
    /// Agents listed by `GET /api/v1/agents`.
    pub agents_listed: usize,
    /// Tasks whose events are kept for clients that come back.
    pub task_logs: usize,
    /// Approximate bytes of those events.
    pub task_log_bytes: usize,
    /// Conversations kept, all users together, and their approximate bytes.
    pub conversations: usize,
    pub conversation_bytes: usize,
}

impl GatewayHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway's bounded structures, as they are now.
    pub fn stats(&self) -> GatewayStats {
        GatewayStats {
            connections: self.inner.conns.stats(),
            open_streams: self.inner.streams.total(),
            tasks_indexed: self.inner.tasks.len(),
            task_index_bytes: self.inner.tasks.approx_bytes(),
            agents_listed: self.inner.agents.list().len(),
            task_logs: self.inner.events.len(),
            task_log_bytes: self.inner.events.approx_bytes(),
            conversations: self.inner.conversations.len(),
            conversation_bytes: self.inner.conversations.approx_bytes(),
        }
    }

    pub async fn wait(self) {
        if let Err(e) = self.join.await {
            tracing::error!(gateway = %self.id, error = %e, "gateway task ended abnormally");
        }
    }
}

/// Builds the authenticator the config asks for.
fn authenticator(
    cfg: &GatewayConfig,
    sessions: &SessionCodec,
    sso: Option<&sso::Sso>,
) -> anyhow::Result<Arc<dyn Authenticator>> {
    if cfg.frontend_use_authorization {
        let mut auth = TokenAuthenticator::new(&cfg.users, sessions.clone())?;
        if let Some(sso) = sso {
            auth = auth.with_sso(sso.issuer());
        }
        Ok(Arc::new(auth))
    } else {
        tracing::warn!(
            user = %cfg.dev_user.id,
            "frontend_use_authorization is false: every request acts as the dev user"
        );
        Ok(Arc::new(DevAuthenticator {
            user: User::from(&cfg.dev_user),
        }))
    }
}

/// Subscribes, binds the HTTP listener and starts serving. Returns once the
/// gateway accepts connections. `shutdown` stops it gracefully: no new
/// requests, open streams end when their tasks end (bounded).
pub async fn start(
    app_name: &str,
    cfg: GatewayConfig,
    broker: Broker,
    incoming: Incoming,
    shutdown: CancellationToken,
) -> anyhow::Result<GatewayHandle> {
    let id = cfg
        .gateway_id
        .clone()
        .unwrap_or_else(|| app_name.to_string());
    let ns = cfg.namespace.clone();
    if cfg.session_secret_key.is_none() {
        tracing::info!(gateway = %id, "no session_secret_key: sessions end when the process does");
    }
    let sessions = SessionCodec::new(cfg.session_secret_key.as_ref().map(|k| k.expose_secret()));
    let sso = cfg
        .sso
        .as_ref()
        .map(sso::Sso::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("gateway {id}: {e}"))?;
    if let Some(sso) = &sso {
        tracing::info!(gateway = %id, provider = sso.provider(), issuer = sso.issuer(), "single sign-on with OpenID Connect");
    }
    let trust = crate::trust_manager::TrustManager::new(
        &cfg.trust_manager,
        amesh_trust::ComponentKind::Gateway,
        broker.username(),
        &ns,
        &id,
        Default::default(),
    )?;
    let inner = Arc::new(GatewayInner {
        auth: authenticator(&cfg, &sessions, sso.as_ref())?,
        sessions,
        sso,
        throttle: throttle::LoginThrottle::new(
            cfg.limits.max_login_failures_per_ip,
            Duration::from_secs(cfg.limits.login_backoff_max_seconds),
        ),
        site: site::SitePolicy::new(&cfg),
        agents: Directory::with_limits(
            Duration::from_secs(cfg.agent_card_ttl_seconds.max(1)),
            crate::discovery::DirectoryLimits {
                max_card_bytes: cfg.limits.max_agent_card_bytes,
                max_entries: cfg.limits.max_agents,
            },
        ),
        presence: crate::presence::Presence::new(&ns, cfg.limits.max_agents),
        client: A2aClient::new(
            broker.clone(),
            &ns,
            &id,
            Requester::Gateway,
            cfg.max_message_size_bytes,
        ),
        tasks: TaskIndex::new(IndexLimits {
            max_tasks: cfg.limits.task_index_max_tasks.max(1),
            ttl: Duration::from_secs(cfg.limits.task_index_ttl_seconds.max(1)),
            running_per_user: cfg.limits.max_running_tasks_per_user.max(1),
            running_window: Duration::from_secs(cfg.request_timeout_seconds.max(1)),
        }),
        events: task_events::TaskEvents::new(task_events::EventLimits {
            max_tasks: cfg.limits.task_events_max_tasks.max(1),
            max_bytes: cfg.limits.task_events_max_bytes,
            per_task_bytes: cfg.limits.task_events_per_task_bytes,
            ttl: Duration::from_secs(cfg.limits.task_events_ttl_seconds.max(1)),
        }),
        conversations: conversations::Conversations::new(conversations::ConversationLimits {
            per_user: cfg.limits.max_conversations_per_user.max(1),
            max_total: cfg.limits.max_conversations.max(1),
            max_bytes: cfg.limits.conversations_max_bytes,
        }),
        streams: quota::UserSlots::new(cfg.limits.max_streams_per_user),
        conns: serve::Connections::new(serve::ConnLimits {
            header_read_timeout: Duration::from_secs(cfg.limits.header_read_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(cfg.limits.idle_timeout_seconds.max(1)),
            max_total: cfg.limits.max_connections,
            max_per_ip: cfg.limits.max_connections_per_ip,
        }),
        trust,
        tokens: tokens::TokenCache::default(),
        id: id.clone(),
        ns: ns.clone(),
        broker: broker.clone(),
        cfg,
    });

    let trust_stop = CancellationToken::new();
    let trust_task = inner.trust.start(&broker, trust_stop.clone()).await?;
    inner.client.subscribe().await?;
    broker.subscribe(&topics::agent_discovery(&ns)).await?;
    broker.subscribe(&topics::agent_presence_all(&ns)).await?;

    let addr: SocketAddr = format!("{}:{}", inner.cfg.host, inner.cfg.port)
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(inner.cfg.host.as_str(), inner.cfg.port))
                .map_err(anyhow::Error::from)
                .and_then(|mut a| a.next().ok_or_else(|| anyhow::anyhow!("no address")))
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "gateway {id}: cannot resolve {}:{}: {e}",
                inner.cfg.host,
                inner.cfg.port
            )
        })?;
    let listener = serve::listen(addr)
        .map_err(|e| anyhow::anyhow!("gateway {id}: cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr()?;

    let publisher_stop = CancellationToken::new();
    let publisher = crate::cards::spawn(
        broker.clone(),
        crate::cards::CardPublication::fixed(
            topics::gateway_discovery(&ns),
            Bytes::from(serde_json::to_vec(&card(&inner, addr)).unwrap_or_default()),
            Duration::from_secs(inner.cfg.gateway_card_publishing.interval_seconds.max(1)),
            false,
        ),
        None,
        publisher_stop.clone(),
    );
    let pump_stop = CancellationToken::new();
    let pump = tokio::spawn(pump::pump(inner.clone(), incoming, pump_stop.clone()));

    let router = http::router(inner.clone());
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(serve::serve(
        listener,
        router,
        inner.conns.clone(),
        server_shutdown,
    ));

    let join = tokio::spawn({
        let inner = inner.clone();
        async move {
            shutdown.cancelled().await;
            // Streams still open end when their task ends; agents report
            // within their own grace period, so bound the wait beyond it.
            let limit = crate::agent::SHUTDOWN_GRACE + Duration::from_secs(5);
            match tokio::time::timeout(limit, server).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(gateway = %inner.id, error = %e, "HTTP server task failed")
                }
                Err(_) => {
                    tracing::warn!(gateway = %inner.id, "open streams did not end in time; closing")
                }
            }
            crate::stop::StopSequence::new(inner.broker.clone())
                .then(publisher_stop, [publisher])
                .then(trust_stop, trust_task)
                .then(pump_stop, [pump])
                .run()
                .await;
            tracing::info!(gateway = %inner.id, "gateway stopped");
        }
    });
    tracing::info!(gateway = %id, %addr, namespace = %ns, "gateway listening");
    Ok(GatewayHandle {
        id,
        addr,
        join,
        inner,
    })
}

/// The gateway card published on the gateway discovery topic.
fn card(inner: &GatewayInner, addr: SocketAddr) -> AgentCard {
    AgentCard {
        protocol_version: PROTOCOL_VERSION.to_string(),
        name: inner.id.clone(),
        display_name: None,
        description: "amesh HTTP/SSE gateway".to_string(),
        url: format!("http://{addr}"),
        version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: AgentCapabilities {
            streaming: true,
            push_notifications: false,
            state_transition_history: false,
        },
        default_input_modes: vec!["text".into(), "data".into()],
        default_output_modes: vec!["text".into(), "data".into()],
        skills: vec![],
        metadata: None,
    }
}
