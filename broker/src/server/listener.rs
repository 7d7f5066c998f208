//! Binds the listeners, accepts connections within `max.connections`, and
//! shuts everything down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::metrics::{self, HttpState};

/// A broker that is serving. Dropping it does not stop it; call
/// [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub kafka_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    tasks: TaskTracker,
    connections: TaskTracker,
}

/// Opens the data directory, binds the listeners and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningBroker> {
    let kafka = TcpListener::bind(config.listener)
        .await
        .map_err(|e| Error::config("listeners", format!("cannot bind {}: {e}", config.listener)))?;
    let http = metrics::bind(config.metrics_listener).await?;
    let kafka_addr = kafka.local_addr().map_err(|e| Error::io("listener", e))?;
    let metrics_addr = http
        .local_addr()
        .map_err(|e| Error::io("metrics listener", e))?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| Error::Metadata(format!("startup task failed: {e}")))??;
    if let Some(cc) = broker.config.cluster.clone() {
        let fresh = broker.metadata.lock().is_empty();
        // Topics of a single-node broker are not in any quorum's metadata:
        // joining a cluster would delete them. Refused, not guessed.
        let marker = broker.config.data_dir.join("meta").join("cluster-member");
        if !fresh && !marker.exists() {
            return Err(Error::config(
                "controller.quorum.voters",
                format!(
                    "{} holds topics of a single-node broker; a cluster member needs a new data directory",
                    broker.config.data_dir.display()
                ),
            ));
        }
        crate::storage::checkpoint::write_atomic(&marker, b"joined a cluster\n")?;
        let local = broker.cluster_id.clone();
        let (cluster, id) =
            crate::metadata::cluster::Cluster::start(&broker.config, &cc, &local, fresh).await?;
        if id != local {
            crate::metadata::ClusterMeta {
                cluster_id: id.clone(),
                node_id: broker.config.node_id,
            }
            .write(&broker.config.data_dir)?;
        }
        let _ = broker.cluster.set(Arc::new(cluster));
        tracing::info!(cluster_id = %id, internal = %cc.internal_listener, "joined the cluster");
    }

    let tasks = TaskTracker::new();
    let connections = TaskTracker::new();
    let ready = CancellationToken::new();
    let refresh_broker = Arc::clone(&broker);
    let state = HttpState {
        metrics: broker.metrics.clone(),
        ready: ready.clone(),
        refresh: Arc::new(move || refresh_broker.refresh_gauges()),
    };
    tasks.spawn(metrics::serve(http, state, broker.shutdown.clone()));
    tasks.spawn(Arc::clone(&broker).run_background());
    tasks.spawn(Arc::clone(&broker).run_cleaner());
    tasks.spawn(Arc::clone(&broker).run_materializer());
    if broker.cluster().is_some() {
        tasks.spawn(crate::partition::replication::run_fetchers(Arc::clone(
            &broker,
        )));
        tasks.spawn(crate::partition::replication::run_isr_ticker(Arc::clone(
            &broker,
        )));
    }
    // The Kafka port is bound from the start, but connections wait in its
    // backlog until this broker is registered and unfenced by the quorum,
    // as Kafka enables request processing only then: no client ever sees
    // a broker that cannot name its controller or answers from metadata
    // it has not caught up with. Readiness follows the same point.
    let serving = Arc::clone(&broker);
    let accepted = connections.clone();
    tasks.spawn(async move {
        if let Some(c) = serving.cluster().cloned() {
            tokio::select! {
                _ = serving.shutdown.cancelled() => return,
                () = c.wait_caught_up() => {}
            }
            tracing::info!("registered and unfenced: serving clients");
        }
        ready.cancel();
        accept_loop(serving, kafka, accepted).await;
    });
    tracing::info!(%kafka_addr, %metrics_addr, node_id = broker.config.node_id, "broker started");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        metrics_addr,
        tasks,
        connections,
    })
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, connections: TaskTracker) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections as usize));
    loop {
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    broker.metrics.connections_rejected.inc();
                    tracing::warn!(%peer, "max.connections reached; refusing connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let b = Arc::clone(&broker);
                connections.spawn(async move {
                    super::connection::serve(b, stream, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: back off, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl RunningBroker {
    /// Graceful shutdown: stop accepting, let in-flight requests finish
    /// (up to `shutdown.timeout.ms`), flush every log, write checkpoints.
    pub async fn shutdown(self) -> Result<()> {
        tracing::info!("shutting down");
        let timeout = Duration::from_millis(self.broker.config.shutdown_timeout_ms);
        if let Some(c) = self.broker.cluster() {
            // Controlled shutdown first, while still serving: leaderships
            // move to other in-sync replicas before the listener closes.
            // Bounded well below the pod's grace period: with no quorum
            // left (the whole cluster stopping) there is nobody to hand to.
            c.shutdown(timeout.min(Duration::from_secs(5))).await;
        }
        self.broker.shutdown.cancel();
        self.connections.close();
        if tokio::time::timeout(timeout, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still busy after shutdown.timeout.ms; closing them");
        }
        self.tasks.close();
        let _ = tokio::time::timeout(timeout, self.tasks.wait()).await;
        let broker = Arc::clone(&self.broker);
        tokio::task::spawn_blocking(move || broker.close())
            .await
            .map_err(|e| Error::Metadata(format!("shutdown task failed: {e}")))??;
        tracing::info!("shutdown complete");
        Ok(())
    }
}
