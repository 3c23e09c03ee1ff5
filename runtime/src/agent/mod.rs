//! The agent app: answers A2A requests that arrive on its request topic.
//!
//! One `Agent` owns one broker connection. A single pump task reads every
//! incoming message and does the cheap, order-sensitive work inline (size
//! check, JSON-RPC parsing, registering the task) so that a `tasks/cancel`
//! that follows a `message/send` always finds the task; the tool call itself
//! runs in its own tokio task, tracked so shutdown can wait for it.
//!
//! Layout: `handler.rs` admits requests; `reasoning/` is the task's loop
//! (model, tool calls, conversation history); `toolbox.rs` is what the
//! model may call; `pause.rs` owns pausing a task for a user's
//! authorization and resuming it; `llm/` speaks the model APIs; `mcp/`
//! runs MCP tools with users' credentials.

mod accounts;
mod artifacts;
mod card;
mod delegate;
mod elicitation;
mod handler;
pub(crate) mod llm;
pub(crate) mod mcp;
mod pause;
pub(crate) mod reasoning;
mod sessions;
pub mod store;
pub mod tasks;
mod toolbox;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::a2a::client::{A2aClient, Requester};
use crate::broker::{Broker, Incoming, Message};
use crate::config::AgentConfig;
use crate::discovery::Directory;
use crate::topics;

use tasks::TaskStore;
use tools::ToolSet;

/// Shared state of one running agent. Held in an `Arc` by the pump and by
/// every task handler.
pub(crate) struct AgentInner {
    pub(crate) name: String,
    pub(crate) ns: String,
    pub(crate) cfg: AgentConfig,
    pub(crate) broker: Broker,
    pub(crate) tasks: TaskStore,
    pub(crate) tools: ToolSet,
    /// Which peers have a replica with a session on the broker (followed
    /// with agent discovery; a delegation to a peer gone is refused at once).
    pub(crate) presence: crate::presence::Presence,
    /// Agents seen on discovery (this one included, so it can delegate to
    /// itself).
    pub(crate) peers: Directory,
    gateways: Directory,
    /// Sends delegations to peers and routes their answers back.
    pub(crate) client: A2aClient,
    pub(crate) tracker: TaskTracker,
    pub(crate) trust: Arc<crate::trust_manager::TrustManager>,
    /// The agent's credential store, when it has tools that act with
    /// users' own credentials (or a SQL session service).
    pub(crate) store: Option<amesh_credentials::CredentialStore>,
    /// Tools on remote MCP servers; `None` when the agent has none, so it
    /// builds no HTTP clients (TLS roots cost start-up time and memory).
    pub(crate) mcp: Option<mcp::McpTools>,
    /// The model of the reasoning loop; `None`: requests name their tool.
    pub(crate) model: Option<llm::Model>,
    /// Files of the artifact tools, when the agent has any.
    pub(crate) artifacts: Option<artifacts::Artifacts>,
    /// Set once shutdown starts: new requests are refused with an error.
    pub(crate) draining: CancellationToken,
    request_topic: String,
    agent_discovery: String,
    gateway_discovery: String,
    /// Wakes the card publisher when a new gateway or peer appears.
    greet: Arc<tokio::sync::Notify>,
}

/// A running agent. Dropping it does not stop it; `shutdown` does.
pub struct AgentHandle {
    name: String,
    join: JoinHandle<()>,
    tasks: TaskStore,
    metrics_addr: Option<std::net::SocketAddr>,
}

impl AgentHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Approximate bytes of the finished tasks the agent keeps for
    /// `tasks/get` (bounded by `limits.finished_tasks_max_bytes`).
    pub fn retained_task_bytes(&self) -> usize {
        self.tasks.retained_bytes()
    }

    /// Where the agent serves `/metrics` (`app_config.metrics`), if it does.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Waits until the agent has drained and disconnected.
    pub async fn wait(self) {
        if let Err(e) = self.join.await {
            tracing::error!(agent = %self.name, error = %e, "agent task ended abnormally");
        }
    }
}

/// How long in-flight tasks may run on after shutdown starts before they
/// are canceled and reported failed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Subscribes, publishes the agent card and starts serving. Returns once the
/// agent is subscribed (ready for requests). `shutdown` starts the drain.
pub async fn start(
    cfg: AgentConfig,
    broker: Broker,
    incoming: Incoming,
    shutdown: CancellationToken,
) -> anyhow::Result<AgentHandle> {
    let tools = ToolSet::from_config(&cfg.tools)?;
    let ns = cfg.namespace.clone();
    let name = cfg.agent_name.clone();
    let peer_ttl = Duration::from_secs(cfg.agent_card_publishing.interval_seconds.max(1) * 3);
    let directory_limits = crate::discovery::DirectoryLimits {
        max_card_bytes: cfg.limits.max_agent_card_bytes,
        max_entries: cfg.limits.max_agents,
    };
    let model = match &cfg.model {
        Some(m) => Some(
            llm::Model::new(m, cfg.model_provider.as_deref())
                .map_err(|e| anyhow::anyhow!("agent {name}: model: {e}"))?,
        ),
        None => None,
    };
    let artifacts =
        artifacts::Artifacts::for_agent(&cfg).map_err(|e| anyhow::anyhow!("agent {name}: {e}"))?;
    let store = store::open(&cfg).await?;
    let mcp = start_mcp(&cfg, store.clone()).await?;
    // After the store: replicas with a SQL store share the key kept there.
    let key = crate::trust_manager::key_source::agent_key(&cfg, store.as_ref(), broker.username())
        .await?;
    let trust = crate::trust_manager::TrustManager::with_key(
        &cfg.trust_manager,
        amesh_trust::ComponentKind::Agent,
        broker.username(),
        &ns,
        &name,
        crate::trust_manager::DelegationLimits {
            max_depth: cfg.max_call_depth,
            hop_ttl: Duration::from_secs(cfg.inter_agent_communication.request_timeout_seconds),
        },
        key,
    )?;
    let inner = Arc::new(AgentInner {
        request_topic: topics::agent_request(&ns, &name),
        agent_discovery: topics::agent_discovery(&ns),
        gateway_discovery: topics::gateway_discovery(&ns),
        name: name.clone(),
        ns: ns.clone(),
        broker: broker.clone(),
        tasks: TaskStore::new(tasks::Retention {
            max_bytes: cfg.limits.finished_tasks_max_bytes,
            ttl: Duration::from_secs(cfg.limits.finished_tasks_ttl_seconds.max(1)),
        }),
        tools,
        presence: crate::presence::Presence::new(&ns, directory_limits.max_entries),
        peers: Directory::with_limits(peer_ttl, directory_limits),
        gateways: Directory::with_limits(peer_ttl, directory_limits),
        client: A2aClient::new(
            broker.clone(),
            &ns,
            &name,
            Requester::Agent,
            cfg.max_message_size_bytes,
        ),
        tracker: TaskTracker::new(),
        trust,
        store,
        mcp,
        model,
        artifacts,
        draining: CancellationToken::new(),
        greet: Arc::default(),
        cfg,
    });

    // Served until the agent has stopped, so a scrape sees the drain; a
    // failed start below drops the guard and stops it too.
    let metrics_stop = CancellationToken::new().drop_guard();
    let metrics = match &inner.cfg.metrics {
        Some(m) => Some(
            crate::telemetry::endpoint::start(m.addr(), metrics_stop.token().clone())
                .await
                .map_err(|e| anyhow::anyhow!("agent {name}: metrics port {}: {e}", m.addr()))?,
        ),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|m| m.addr);

    // Trust cards first: a request can only be verified once the gateway's
    // card is known, and it is retained, so it arrives right away.
    let trust_stop = CancellationToken::new();
    let trust_task = inner.trust.start(&broker, trust_stop.clone()).await?;
    // Replies to our own delegations next, so no answer can be missed.
    inner.client.subscribe().await?;
    broker.subscribe(&inner.gateway_discovery).await?;
    if inner.cfg.agent_discovery.enabled {
        broker.subscribe(&inner.agent_discovery).await?;
        broker.subscribe(&topics::agent_presence_all(&ns)).await?;
    }
    broker
        .subscribe(&topics::agent_request_shared(&ns, &name))
        .await?;

    let publisher_stop = CancellationToken::new();
    let publisher = crate::cards::spawn(
        broker.clone(),
        card::publication(&inner),
        Some(inner.greet.clone()),
        publisher_stop.clone(),
    );

    let pump_stop = CancellationToken::new();
    let pump = tokio::spawn(pump(inner.clone(), incoming, pump_stop.clone()));
    let sweeper = tokio::spawn(sweep_waiting(inner.clone(), pump_stop.clone()));

    let join = tokio::spawn({
        let inner = inner.clone();
        async move {
            shutdown.cancelled().await;
            drain(&inner).await;
            crate::stop::StopSequence::new(inner.broker.clone())
                .then(publisher_stop, [publisher])
                .then(trust_stop, trust_task)
                .then(pump_stop, [pump, sweeper])
                .run()
                .await;
            if let Some(store) = &inner.store {
                store.close().await;
            }
            drop(metrics_stop);
            if let Some(m) = metrics {
                let _ = m.task.await;
            }
            tracing::info!(agent = %inner.name, "agent stopped");
        }
    });
    tracing::info!(agent = %name, namespace = %ns, "agent ready");
    Ok(AgentHandle {
        name,
        join,
        tasks: inner.tasks.clone(),
        metrics_addr,
    })
}

/// Builds the agent's MCP tools. The redirect URI is checked here, at
/// start, when any tool acts with users' own credentials.
async fn start_mcp(
    cfg: &AgentConfig,
    store: Option<amesh_credentials::CredentialStore>,
) -> anyhow::Result<Option<mcp::McpTools>> {
    let servers: Vec<_> = cfg
        .tools
        .iter()
        .filter_map(|t| match t {
            crate::config::ToolConfig::Mcp(m) => Some((**m).clone()),
            _ => None,
        })
        .collect();
    let needs_redirect = servers.iter().any(|s| s.requires_user_auth());
    let redirect_uri = match cfg
        .oauth_tool_redirect_uri
        .clone()
        .or_else(|| std::env::var("OAUTH_TOOL_REDIRECT_URI").ok())
    {
        Some(uri) if needs_redirect => {
            Some(amesh_mcp::oauth::validate_redirect_uri(&uri).map_err(|e| {
                anyhow::anyhow!(
                    "agent {}: OAUTH_TOOL_REDIRECT_URI {uri:?}: {e}",
                    cfg.agent_name
                )
            })?)
        }
        None if needs_redirect => anyhow::bail!(
            "agent {} has tools with auth type oauth2 but no redirect URI: set OAUTH_TOOL_REDIRECT_URI \
             (or oauth_tool_redirect_uri) to the gateway's /api/v1/auth/tool/callback URL",
            cfg.agent_name
        ),
        _ => None,
    };
    if servers.is_empty() {
        return Ok(None);
    }
    mcp::McpTools::start(
        &cfg.agent_name,
        &cfg.namespace,
        servers,
        store,
        redirect_uri,
        cfg.max_message_size_bytes,
    )
    .await
    .map(|tools| {
        tools.bound_sessions(
            Duration::from_secs(cfg.limits.mcp_session_idle_seconds),
            cfg.limits.max_mcp_sessions,
        );
        Some(tools)
    })
}

impl AgentInner {
    /// Exposed MCP tool names with descriptions.
    pub(crate) fn mcp_names(&self) -> Vec<(String, String)> {
        self.mcp.as_ref().map(|m| m.names()).unwrap_or_default()
    }

    pub(crate) fn has_mcp(&self, name: &str) -> bool {
        self.mcp.as_ref().is_some_and(|m| m.has(name))
    }
}

/// Lets in-flight tasks finish within the grace period, then cancels the
/// rest (they report `failed` with a shutdown message).
async fn drain(inner: &Arc<AgentInner>) {
    inner.draining.cancel();
    inner.tracker.close();
    let running = inner.tasks.running();
    if running > 0 {
        tracing::info!(agent = %inner.name, running, "waiting for in-flight tasks");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, inner.tracker.wait())
        .await
        .is_err()
    {
        let n = inner.tasks.cancel_all();
        tracing::warn!(agent = %inner.name, canceled = n, "grace period over; ending remaining tasks");
        let _ = tokio::time::timeout(Duration::from_secs(2), inner.tracker.wait()).await;
    }
}

/// How often tasks waiting for authorization are checked for expiry.
const WAIT_SWEEP: Duration = Duration::from_secs(15);

/// Ends tasks whose user never completed the authorization they wait for,
/// forgets finished tasks past their retention, and closes MCP sessions no
/// call used for a while.
async fn sweep_waiting(inner: Arc<AgentInner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(WAIT_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                pause::expire_waiting(&inner).await;
                inner.tasks.purge(std::time::Instant::now());
                if let Some(mcp) = &inner.mcp {
                    mcp.evict_idle_sessions().await;
                }
            }
        }
    }
}

/// Reads the connection's messages and routes them by topic.
async fn pump(inner: Arc<AgentInner>, mut incoming: Incoming, stop: CancellationToken) {
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = incoming.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        route(&inner, msg);
    }
}

fn route(inner: &Arc<AgentInner>, msg: Message) {
    if inner.trust.on_message(&msg) {
        return;
    }
    if msg.topic == inner.request_topic {
        handler::on_request(inner, msg);
    } else if inner.client.on_reply(&msg, &inner.trust, |_, _, _, _| {}) {
        // An answer to one of our delegations, now with its caller.
    } else if inner.presence.observe(&msg.topic, &msg.payload) {
        // A peer replica's session began or ended.
    } else if msg.topic == inner.agent_discovery {
        // Only a card signed by the agent's own account counts; refused
        // cards (too large, too many names, not the agent's) are logged there.
        let _ = inner.peers.observe_checked(&msg.payload, || {
            inner
                .trust
                .accept_agent_card(&msg)
                .ok_or(crate::discovery::CardRefused::NotAccepted)
        });
    } else if msg.topic == inner.gateway_discovery {
        // A gateway we have not seen yet gets our card at once instead of
        // after up to one publishing interval.
        if let Ok(true) = inner.gateways.observe_payload(&msg.payload) {
            inner.greet.notify_one();
        }
    } else {
        tracing::debug!(topic = %msg.topic, "message on unexpected topic ignored");
    }
}
