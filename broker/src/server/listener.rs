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
use crate::config::{BrokerConfig, Listener};
use crate::error::{Error, Result};
use crate::metrics::{self, HttpState};
use crate::security::Security;
use crate::server::Session;

/// A broker that is serving. Dropping it does not stop it; call
/// [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    /// The first listener's bound address.
    pub kafka_addr: SocketAddr,
    /// Every listener's name and bound address, in the configured order.
    pub addresses: Vec<(String, SocketAddr)>,
    pub metrics_addr: SocketAddr,
    tasks: TaskTracker,
    connections: TaskTracker,
}

/// Opens the data directory, binds the listeners and starts serving.
pub async fn start(mut config: BrokerConfig) -> Result<RunningBroker> {
    // Key and trust stores are read before anything binds: a wrong path
    // or a key that does not match is a start-up error that names it.
    let security = Security::load(&config)?;
    let mut bound = Vec::new();
    for l in &mut config.listeners.all {
        let socket = TcpListener::bind(l.bind).await.map_err(|e| {
            Error::config(
                "listeners",
                format!("{}: cannot bind {}: {e}", l.name, l.bind),
            )
        })?;
        let addr = socket.local_addr().map_err(|e| Error::io("listener", e))?;
        // Port 0 (tests): advertise the port the system chose.
        if l.advertised_port == 0 && l.advertised_host == l.bind.ip().to_string() {
            l.advertised_port = addr.port();
        }
        bound.push((l.clone(), socket, addr));
    }
    let http = metrics::bind(config.metrics_listener).await?;
    let addresses: Vec<(String, SocketAddr)> =
        bound.iter().map(|(l, _, a)| (l.name.clone(), *a)).collect();
    let kafka_addr = addresses[0].1;
    let metrics_addr = http
        .local_addr()
        .map_err(|e| Error::io("metrics listener", e))?;
    let broker = join_quorum(config, security).await?;

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
    for tls in [&broker.security.tls, &broker.security.quorum_tls]
        .into_iter()
        .flatten()
    {
        tasks.spawn(Arc::clone(tls).watch(broker.shutdown.clone()));
    }
    tasks.spawn(Arc::clone(&broker).run_materializer());
    tasks.spawn(crate::coordinator::txn::service::run_timeouts(Arc::clone(
        &broker,
    )));
    tasks.spawn(crate::partition::replication::run_fetchers(Arc::clone(
        &broker,
    )));
    tasks.spawn(crate::partition::replication::run_isr_ticker(Arc::clone(
        &broker,
    )));
    // The Kafka port is bound from the start, but connections wait in its
    // backlog until this broker is registered and unfenced by the quorum,
    // as Kafka enables request processing only then: no client ever sees
    // a broker that cannot name its controller or answers from metadata
    // it has not caught up with. Readiness follows the same point.
    let serving = Arc::clone(&broker);
    let accepted = connections.clone();
    tasks.spawn(async move {
        let c = Arc::clone(serving.cluster());
        tokio::select! {
            _ = serving.shutdown.cancelled() => return,
            () = c.wait_caught_up() => {}
        }
        // And the partitions the metadata gives it are opened and led, so
        // that the first produce finds its leader here (bounded: a
        // partition that cannot open is logged by the materializer).
        serving.wait_served(None, Duration::from_secs(5)).await;
        tracing::info!("registered and unfenced: serving clients");
        ready.cancel();
        let limit = Arc::new(Semaphore::new(serving.config.max_connections as usize));
        let loops = bound.into_iter().map(|(l, socket, _)| {
            accept_loop(
                Arc::clone(&serving),
                l,
                socket,
                accepted.clone(),
                Arc::clone(&limit),
            )
        });
        futures::future::join_all(loops).await;
    });
    for (name, addr) in &addresses {
        tracing::info!(listener = %name, %addr, "listening");
    }
    tracing::info!(%kafka_addr, %metrics_addr, node_id = broker.config.node_id, "broker started");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        addresses,
        metrics_addr,
        tasks,
        connections,
    })
}

/// Where this data directory stands before the broker joins the quorum.
struct DataDir {
    /// The cluster id it was formatted with.
    cluster_id: String,
    /// No topics yet.
    fresh: bool,
    /// Topics written by a broker of the time before every broker was a
    /// quorum member (docs/decisions/0027): to be moved into the quorum.
    pre_quorum: bool,
}

/// The marker of a data directory whose topics live in the quorum.
const QUORUM_MARKER: &str = "cluster-member";

fn inspect(config: &BrokerConfig) -> Result<DataDir> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let meta = crate::metadata::ClusterMeta::load_or_format(dir, config.node_id)?;
    let fresh = crate::metadata::MetadataStore::open(dir)?.is_empty();
    let marker = dir.join("meta").join(QUORUM_MARKER);
    Ok(DataDir {
        cluster_id: meta.cluster_id,
        fresh,
        pre_quorum: !fresh && !marker.exists(),
    })
}

/// Joins the metadata quorum (this broker alone, or the voters
/// configured), settles the cluster id and opens the data directory; a
/// directory of a broker from before the quorum has its topics moved in.
async fn join_quorum(config: BrokerConfig, security: Security) -> Result<Arc<Broker>> {
    let blocking = |e: tokio::task::JoinError| Error::Metadata(format!("startup task failed: {e}"));
    let cfg = config.clone();
    let dir = tokio::task::spawn_blocking(move || inspect(&cfg))
        .await
        .map_err(blocking)??;
    let cc = config.cluster.clone();
    let alone =
        cc.voters.is_empty() || (cc.voters.len() == 1 && cc.voters.contains_key(&config.node_id));
    if dir.pre_quorum && !alone {
        // Its topics are not in that quorum's metadata: joining would
        // delete them. Refused, not guessed.
        return Err(Error::config(
            "controller.quorum.voters",
            format!(
                "{} holds topics of a broker that ran alone; start it once without controller.quorum.voters (its topics move into its own quorum), then move them to the cluster with a client (a mirror or a replay), or give this broker a new data directory",
                config.data_dir.display()
            ),
        ));
    }
    let (cluster, id) =
        crate::metadata::cluster::Cluster::start(&config, &security, &dir.cluster_id, dir.fresh)
            .await?;
    if id != dir.cluster_id {
        crate::metadata::ClusterMeta {
            cluster_id: id.clone(),
            node_id: config.node_id,
        }
        .write(&config.data_dir)?;
    }
    tracing::info!(cluster_id = %id, internal = %cluster.internal_address(), "joined the metadata quorum");
    let cluster = Arc::new(cluster);
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, cluster, security))
        .await
        .map_err(blocking)??;
    if dir.pre_quorum {
        broker.move_topics_into_quorum().await?;
    }
    broker.move_dynamic_configs_into_quorum().await?;
    let marker = broker.config.data_dir.join("meta").join(QUORUM_MARKER);
    crate::storage::checkpoint::write_atomic(&marker, b"topics in the metadata quorum\n")?;
    Ok(broker)
}

async fn accept_loop(
    broker: Arc<Broker>,
    config: Listener,
    listener: TcpListener,
    connections: TaskTracker,
    limit: Arc<Semaphore>,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
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
                let session = Session::new(peer, Arc::clone(&name), config.protocol);
                connections.spawn(async move {
                    super::connection::serve(b, stream, session).await;
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
        // Controlled shutdown first, while still serving: leaderships
        // move to other in-sync replicas before the listener closes.
        // Bounded well below the pod's grace period: with no quorum left
        // (the whole cluster stopping) there is nobody to hand to.
        self.broker
            .cluster()
            .shutdown(timeout.min(Duration::from_secs(5)))
            .await;
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
