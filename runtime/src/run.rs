//! `amesh run`: starts every app of the loaded configs in one process and
//! stops them gracefully on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentHandle};
use crate::broker::{self, Broker, DevBus};
use crate::config::{AppKind, LoadedConfig};
use crate::gateway::{self, GatewayHandle};
use crate::topics;

/// Every app of one process, started.
pub struct Running {
    pub agents: Vec<AgentHandle>,
    pub gateways: Vec<GatewayHandle>,
    shutdown: CancellationToken,
}

impl Running {
    /// HTTP addresses of the gateways, in config order.
    pub fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().map(|g| g.local_addr()).collect()
    }

    /// Starts the graceful stop of every app.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every app has stopped (call `shutdown` first).
    pub async fn wait(self) {
        let gateways =
            futures::future::join_all(self.gateways.into_iter().map(GatewayHandle::wait));
        let agents = futures::future::join_all(self.agents.into_iter().map(AgentHandle::wait));
        futures::future::join(gateways, agents).await;
    }
}

/// Connects and starts every app. Gateways start first so they are already
/// subscribed to discovery when the agents publish their first cards.
pub async fn start_apps(cfg: &LoadedConfig, dev_bus: &DevBus) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut running = Running {
        agents: Vec::new(),
        gateways: Vec::new(),
        shutdown: shutdown.clone(),
    };
    let mut order: Vec<_> = cfg.apps.iter().collect();
    order.sort_by_key(|a| !matches!(a.kind, AppKind::Gateway(_)));
    for app in order {
        let started = async {
            let presence = match &app.kind {
                AppKind::Agent(a) if app.broker.presence => Some(topics::agent_presence(
                    &a.namespace,
                    &a.agent_name,
                    &topics::as_level(&broker::client_id(&app.broker, &app.name)),
                )),
                AppKind::Agent(_) | AppKind::Gateway(_) => None,
            };
            let (broker, incoming) =
                Broker::connect_present(&app.broker, &app.name, dev_bus, presence).await?;
            match &app.kind {
                AppKind::Gateway(g) => {
                    let handle = gateway::start(
                        &app.name,
                        (**g).clone(),
                        broker,
                        incoming,
                        shutdown.child_token(),
                    )
                    .await?;
                    running.gateways.push(handle);
                }
                AppKind::Agent(a) => {
                    let handle =
                        agent::start((**a).clone(), broker, incoming, shutdown.child_token())
                            .await?;
                    running.agents.push(handle);
                }
            }
            anyhow::Ok(())
        }
        .await
        .with_context(|| format!("app `{}` ({})", app.name, app.source.display()));
        if let Err(e) = started {
            // Stop what already runs before reporting.
            running.shutdown();
            running.wait().await;
            return Err(e);
        }
    }
    Ok(running)
}

/// The whole `amesh run` command after the config is loaded.
pub async fn run(cfg: LoadedConfig) -> anyhow::Result<()> {
    let t0 = Instant::now();
    crate::trust_manager::warn_on_mismatch(&cfg);
    let dev_bus = DevBus::new();
    let running = start_apps(&cfg, &dev_bus).await?;
    tracing::info!(
        apps = cfg.apps.len(),
        ready_ms = t0.elapsed().as_secs_f64() * 1000.0,
        "amesh ready"
    );
    for addr in running.gateway_addrs() {
        tracing::info!("gateway at http://{addr}/");
    }
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight tasks");
    running.shutdown();
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
