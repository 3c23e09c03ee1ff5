//! The stop sequence shared by the gateway and the agent.
//!
//! Both run the same background work beside their own (the HTTP server,
//! the tasks in flight): a card publisher, the trust manager's card
//! publisher and registry, a pump reading the broker (and, in an agent, a
//! sweeper). Once their own work has ended, that work stops in one order,
//! here:
//!
//! 1. the card publisher, so nobody discovers a component that is going;
//! 2. the trust manager;
//! 3. the pump and what runs beside it: last of the readers, so answers to
//!    the final requests still arrive while the stages above wind down;
//! 4. the broker connection.
//!
//! Each stage is a [`CancellationToken`] (the broadcast stop signal the
//! stage's tasks select on) and the handles the sequence waits for.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Background tasks of one component, stopped in order by [`Self::run`].
pub(crate) struct StopSequence {
    stages: Vec<(CancellationToken, Vec<JoinHandle<()>>)>,
    broker: Broker,
}

impl StopSequence {
    /// A sequence that ends by disconnecting `broker`.
    pub(crate) fn new(broker: Broker) -> Self {
        StopSequence {
            stages: Vec::new(),
            broker,
        }
    }

    /// Adds a stage: `stop` is cancelled, then `tasks` are awaited, after
    /// the stages added before it.
    pub(crate) fn then(
        mut self,
        stop: CancellationToken,
        tasks: impl IntoIterator<Item = JoinHandle<()>>,
    ) -> Self {
        self.stages.push((stop, tasks.into_iter().collect()));
        self
    }

    /// Stops every stage in order, then disconnects from the broker. A task
    /// that panicked is logged; the sequence goes on.
    pub(crate) async fn run(self) {
        for (stop, tasks) in self.stages {
            stop.cancel();
            for task in tasks {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "background task ended abnormally");
                }
            }
        }
        self.broker.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::broker::DevBus;

    /// A task that records its name once stopped.
    fn stage(
        log: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
    ) -> (CancellationToken, JoinHandle<()>) {
        let stop = CancellationToken::new();
        let log = log.clone();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                log.lock().unwrap().push(name);
            }
        });
        (stop, task)
    }

    #[tokio::test]
    async fn stages_stop_in_the_order_they_were_added_and_the_broker_last() {
        let bus = DevBus::new();
        let (client, _incoming) = bus.client("gw", None);
        let broker = Broker::Dev(client);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (publisher_stop, publisher) = stage(&log, "publisher");
        let (trust_stop, trust) = stage(&log, "trust");
        let (pump_stop, pump) = stage(&log, "pump");
        StopSequence::new(broker.clone())
            .then(publisher_stop, [publisher])
            .then(trust_stop, [trust])
            .then(pump_stop, [pump])
            .run()
            .await;
        assert_eq!(*log.lock().unwrap(), ["publisher", "trust", "pump"]);
        let after = broker
            .publish("t", bytes::Bytes::new(), Default::default(), false)
            .await;
        assert!(after.is_err(), "the broker is disconnected last");
    }
}
