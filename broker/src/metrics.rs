//! Prometheus metrics and the HTTP endpoint that serves them, with health
//! probes. Label sets are bounded: API names come from a fixed table and
//! error codes from Kafka's fixed set; topics are not labels.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub messages_in: IntCounter,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub request_latency: HistogramVec,
    pub fetch_wait: Histogram,
    pub connections: IntGauge,
    pub connections_rejected: IntCounter,
    pub partitions: IntGauge,
    pub log_size_bytes: IntGauge,
    pub malformed_requests: IntCounter,
    /// Failed TLS handshakes and SASL authentications, by listener and
    /// mechanism (`TLS`, `PLAIN`, `SCRAM-SHA-256`, ...).
    pub authentication_failures: IntCounterVec,
    pub authentications: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let bytes_in = counter(
            "sluice_broker_topic_bytes_in_total",
            "Record bytes appended by producers.",
        );
        let bytes_out = counter(
            "sluice_broker_topic_bytes_out_total",
            "Record bytes served to fetchers.",
        );
        let messages_in = counter(
            "sluice_broker_topic_messages_in_total",
            "Records appended by producers.",
        );
        let connections = gauge("sluice_network_connections", "Open client connections.");
        let connections_rejected = counter(
            "sluice_network_connections_rejected_total",
            "Connections refused because max.connections was reached.",
        );
        let partitions = gauge("sluice_log_partitions", "Partitions hosted by this broker.");
        let log_size_bytes = gauge(
            "sluice_log_size_bytes",
            "Bytes on disk across all partition logs.",
        );
        let malformed_requests = counter(
            "sluice_network_malformed_requests_total",
            "Requests that could not be decoded; their connections were closed.",
        );
        let requests = IntCounterVec::new(
            Opts::new("sluice_network_requests_total", "Requests handled, by API."),
            &["api"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "sluice_network_errors_total",
                "Error codes returned in responses, by API and Kafka error code.",
            ),
            &["api", "error"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(errors.clone()))
            .expect("unique metric");
        let by_mechanism = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["listener", "mechanism"])
                .expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let authentication_failures = by_mechanism(
            "sluice_network_authentication_failures_total",
            "Failed TLS handshakes and SASL authentications; the connection was closed.",
        );
        let authentications = by_mechanism(
            "sluice_network_authentications_total",
            "Successful TLS handshakes and SASL authentications.",
        );
        let request_latency = HistogramVec::new(
            HistogramOpts::new(
                "sluice_network_request_duration_seconds",
                "Time from a request's arrival to its response being queued, by API (Fetch includes long-poll waits).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["api"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(request_latency.clone()))
            .expect("unique metric");
        let fetch_wait = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_fetch_wait_seconds",
                "Time fetches spent long-polling for data.",
            )
            .buckets(vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(fetch_wait.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            bytes_in,
            bytes_out,
            messages_in,
            requests,
            errors,
            request_latency,
            fetch_wait,
            connections,
            connections_rejected,
            partitions,
            log_size_bytes,
            malformed_requests,
            authentication_failures,
            authentications,
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Health as the probes see it.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub ready: CancellationToken,
    pub refresh: Arc<dyn Fn() + Send + Sync>,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (s.refresh)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    if s.ready.is_cancelled() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Binds the metrics endpoint. Serves `/metrics`, `/healthz`, `/readyz`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config("metrics.listener", format!("cannot bind {addr}: {e}")))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}
