//! Readiness and liveness probes as the kubelet runs them: HTTP GET (a
//! status from 200 to 399 succeeds) or a TCP connect to the pod's address,
//! a named port looked up in the container's ports, within `timeoutSeconds`.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The parts of a `Probe` that decide when it runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
    }
}

fn port(c: &Container, p: &IntOrString) -> Result<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).context("probe port out of range"),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .with_context(|| format!("the container has no port named {name}")),
    }
}

/// One run of the probe.
pub async fn check(p: &Probe, c: &Container, pod_ip: &str) -> Result<()> {
    let t = timing(p);
    if let Some(h) = &p.http_get {
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port(c, &h.port)?;
        if h.scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
        {
            bail!("only HTTP probes are supported");
        }
        let uri = format!("http://{host}:{port}{}", h.path.as_deref().unwrap_or("/"));
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri: hyper::Uri = uri.parse().context("probe URI")?;
        let answer = tokio::time::timeout(t.timeout, client.get(uri.clone()))
            .await
            .with_context(|| format!("GET {uri}: no answer within {:?}", t.timeout))?
            .with_context(|| format!("GET {uri}"))?;
        let status = answer.status().as_u16();
        if !(200..400).contains(&status) {
            bail!("GET {uri}: HTTP {status}");
        }
        Ok(())
    } else if let Some(s) = &p.tcp_socket {
        let host = s.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port(c, &s.port)?;
        tokio::time::timeout(
            t.timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .with_context(|| format!("connect {host}:{port}: timed out"))?
        .with_context(|| format!("connect {host}:{port}"))?;
        Ok(())
    } else {
        bail!("only httpGet and tcpSocket probes are supported by process-kubelet")
    }
}
