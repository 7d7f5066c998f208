//! `sluice-operator`: reconciles KafkaCluster, Topic and KafkaUser resources.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use sluice_operator::context::{Context, Settings};
use sluice_operator::metrics::{self, Metrics};
use sluice_operator::run::{self, Lease, Stopped};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SLUICE_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: SocketAddr,
    /// Compete for a Lease so that only one replica reconciles.
    #[arg(long, env = "SLUICE_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Reach a cluster's brokers at another address:
    /// `NAMESPACE/NAME=HOST:PORT` (repeatable), for an operator that runs
    /// outside the cluster.
    #[arg(long = "bootstrap-override", value_parser = parse_override)]
    bootstrap_overrides: Vec<(String, String)>,
    /// Time limit of one Kafka admin request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    admin_timeout_ms: u64,
    /// Log format: text or json.
    #[arg(long, env = "SLUICE_OPERATOR_LOG_FORMAT", default_value = "json", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter (tracing env-filter syntax); RUST_LOG wins when set.
    #[arg(long, env = "SLUICE_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAMESPACE/NAME=HOST:PORT"))?;
    if !k.contains('/') || !v.contains(':') {
        return Err(format!("{s:?}: expected NAMESPACE/NAME=HOST:PORT"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(&args);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes API configuration (in-cluster or kubeconfig)");
            return ExitCode::FAILURE;
        }
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("sluice-operator-{}", std::process::id()))
    });
    let metrics = Arc::new(Metrics::new());
    let settings = Settings {
        bootstrap_overrides: args
            .bootstrap_overrides
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>(),
        admin_timeout: Duration::from_millis(args.admin_timeout_ms),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client,
        Some(identity.clone()),
        metrics.clone(),
        settings,
    ));

    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let server = {
        let token = shutdown.clone();
        let addr = args.metrics_addr;
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for metrics");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%addr, "serving /metrics /healthz /readyz");
        tokio::spawn(async move {
            let r = axum::serve(listener, metrics::router(metrics))
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "metrics server");
            }
        })
    };

    let code = if args.leader_election {
        let lease = Lease {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity,
            duration_secs: args.lease_duration_secs,
            grace_secs: (args.lease_duration_secs / 3).max(1),
        };
        match run::with_leader_election(ctx, args.namespace.clone(), lease, shutdown.clone()).await
        {
            Ok(Stopped::Shutdown) => ExitCode::SUCCESS,
            Ok(Stopped::LostLease) => {
                tracing::error!("lost the leader lease; exiting so that a fresh start takes over");
                ExitCode::FAILURE
            }
            Err(e) => {
                tracing::error!(error = %e, "leader election");
                ExitCode::FAILURE
            }
        }
    } else {
        ctx.metrics.ready.store(true, Ordering::Relaxed);
        run::controllers(ctx, args.namespace.clone(), shutdown.clone()).await;
        ExitCode::SUCCESS
    };
    shutdown.cancel();
    let _ = server.await;
    code
}
