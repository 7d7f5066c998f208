//! process-kubelet: a kubelet for tests that runs pods as local processes.
//!
//! It registers `--nodes` Nodes (zones `zone-0`, `zone-1`, ...), and runs
//! every pod the scheduler binds to them: each container's image maps to a
//! binary of this repository (`--image sluice/broker=target/debug/sluice-broker`;
//! any other image leaves the pod waiting with an event that says why), in
//! a mount namespace of its own with its volumes bind-mounted where the pod
//! spec says, on a loopback address of its own (`status.podIP`,
//! 127.1.<node>.<n>). Probes, restarts, graceful deletion, a local volume
//! provisioner, and pod and Service names in /etc/hosts come with it; see
//! docs/decisions/0022-a-real-control-plane-with-process-pods.md.

mod agent;
mod hosts;
mod node;
mod pods;
mod probe;
mod process;
mod provisioner;
mod spec;
mod volumes;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, NodeInfo};
use crate::spec::ImageMap;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs the pods bound to its Nodes as local processes (a test kubelet)"
)]
struct Args {
    /// Kubeconfig of the API server (with rights on nodes, pods, leases, volumes).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many Nodes to register.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Node names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "node")]
    node_prefix: String,
    /// Where pods, volumes and the stop files live.
    #[arg(long)]
    state_dir: PathBuf,
    /// REPOSITORY=BINARY: pods of that image run BINARY (repeatable).
    #[arg(long = "image", required = true)]
    images: Vec<ImageMap>,
    /// The API server as pods reach it, HOST:PORT (KUBERNETES_SERVICE_HOST/PORT).
    #[arg(long)]
    apiserver: String,
    /// Pods get addresses 127.NET.<node+1>.<n>: agents side by side take different nets.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pod_net: u8,
    /// The hosts file that gets the cluster's names.
    #[arg(long, default_value = "/etc/hosts")]
    hosts_file: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let (host, port) = args
        .apiserver
        .rsplit_once(':')
        .context("--apiserver takes HOST:PORT")?;
    let port: u16 = port.parse().context("--apiserver port")?;
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kubeconfig")?;
    let client = kube::Client::try_from(config).context("API client")?;
    let state_dir = std::path::absolute(&args.state_dir).context("--state-dir")?;
    std::fs::create_dir_all(state_dir.join("stopped"))?;
    let images = args
        .images
        .iter()
        .map(|m| {
            let entrypoint = std::path::absolute(&m.entrypoint)?;
            anyhow::ensure!(
                entrypoint.is_file(),
                "--image {}: no binary at {}",
                m.repository,
                entrypoint.display()
            );
            Ok(ImageMap {
                repository: m.repository.clone(),
                entrypoint,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let nodes = (0..args.nodes)
        .map(|i| NodeInfo {
            pod_net: args.pod_net,
            name: format!("{}-{i}", args.node_prefix),
            index: i,
            zone: format!("zone-{}", i % 3),
            host_ip: format!("127.{}.{}.1", args.pod_net, i + 1),
            dir: state_dir
                .join("nodes")
                .join(format!("{}-{i}", args.node_prefix)),
        })
        .collect();
    let agent = Arc::new(Agent::new(
        client,
        nodes,
        images,
        (host.to_string(), port),
        state_dir,
    ));

    node::register_all(&agent).await?;
    provisioner::ensure_class(&agent).await?;
    tracing::info!(nodes = agent.nodes.len(), "nodes registered");

    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node::heartbeat_loop(agent.clone(), stop.clone()));
    tasks.spawn(pods::sync_loop(agent.clone(), stop.clone()));
    tasks.spawn(provisioner::run(agent.clone(), stop.clone()));
    tasks.spawn(hosts::run(
        agent.clone(),
        args.hosts_file.clone(),
        stop.clone(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: every pod process gets SIGTERM");
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
