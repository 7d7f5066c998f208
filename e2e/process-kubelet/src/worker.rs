//! One pod on one node: prepares its environment and volumes, runs each
//! container as a process and restarts it as `restartPolicy` says, runs the
//! probes, reports the pod's status, and on deletion stops the processes
//! (SIGTERM, the grace period, SIGKILL) and removes the pod object.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, NodeInfo, now};
use crate::probe;
use crate::process::{self, Mount};
use crate::spec::{self, Assigned, Objects};

/// Publishes an event about the pod: type, reason, note.
type Events = Arc<dyn Fn(EventType, &str, String) + Send + Sync>;

/// What the sync loop holds of a running pod.
#[derive(Debug)]
pub struct PodHandle {
    pub node: String,
    /// Cancelled when the pod is deleted: stop gracefully, then remove it.
    pub terminate: CancellationToken,
    /// Seconds the processes get between SIGTERM and SIGKILL.
    pub grace: Arc<AtomicU64>,
    /// Cancelled when the node stops: SIGKILL, no status, no removal.
    pub kill: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
        pid: u32,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: String,
        finished_at: String,
    },
}

#[derive(Debug, Clone)]
struct ContainerStatus {
    name: String,
    image: String,
    ready: bool,
    restarts: i32,
    state: State,
    last: Option<State>,
}

#[derive(Debug)]
struct PodStatus {
    containers: Vec<ContainerStatus>,
    ready_since: Option<(bool, String)>,
}

struct Prepared {
    container: Container,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
}

fn state_json(s: &State) -> Value {
    match s {
        State::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running { started_at, .. } => json!({"running": {"startedAt": started_at}}),
        State::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => json!({"terminated": {
            "exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at}}),
    }
}

fn status_json(st: &mut PodStatus, ip: &str, host_ip: &str, start: &str) -> Value {
    let running = st
        .containers
        .iter()
        .any(|c| matches!(c.state, State::Running { .. }));
    let ready = !st.containers.is_empty() && st.containers.iter().all(|c| c.ready);
    let since = match &st.ready_since {
        Some((r, t)) if *r == ready => t.clone(),
        _ => {
            let t = now();
            st.ready_since = Some((ready, t.clone()));
            t
        }
    };
    let flag = if ready { "True" } else { "False" };
    let containers: Vec<Value> = st
        .containers
        .iter()
        .map(|c| {
            let mut v = json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": c.ready,
                "restartCount": c.restarts, "started": matches!(c.state, State::Running { .. }),
                "state": state_json(&c.state),
            });
            if let State::Running { pid, .. } = c.state {
                v["containerID"] = json!(format!("process://{pid}"));
            }
            if let Some(l) = &c.last {
                v["lastState"] = state_json(l);
            }
            v
        })
        .collect();
    json!({"status": {
        "phase": if running || st.containers.iter().any(|c| c.restarts > 0) { "Running" } else { "Pending" },
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": start,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": since},
            {"type": "Ready", "status": flag, "lastTransitionTime": since},
        ],
        "containerStatuses": containers,
    }})
}

async fn fetch_objects(agent: &Agent, pod: &Pod) -> Result<Objects> {
    let ns = pod.namespace().unwrap_or_default();
    let (cms, secrets) = spec::referenced(pod);
    let mut objects = Objects::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &ns);
    for name in cms {
        if let Some(cm) = cm_api.get_opt(&name).await.context("reading a ConfigMap")? {
            let mut keys: std::collections::BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            keys.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            objects.config_maps.insert(name, keys);
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(agent.client.clone(), &ns);
    for name in secrets {
        if let Some(s) = secret_api
            .get_opt(&name)
            .await
            .context("reading a Secret")?
        {
            let mut keys: std::collections::BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            keys.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            objects.secrets.insert(name, keys);
        }
    }
    Ok(objects)
}

/// Everything the containers need, or why not: (reason, message).
async fn prepare(
    agent: &Agent,
    pod: &Pod,
    ip: &str,
    node: &NodeInfo,
    dir: &std::path::Path,
) -> std::result::Result<Vec<Prepared>, (String, String)> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err((
            "CreateContainerConfigError".into(),
            "init containers are not supported by process-kubelet".into(),
        ));
    }
    let mut images = Vec::new();
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        images.push(
            spec::resolve_image(&image, &agent.images)
                .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?
                .clone(),
        );
    }
    let config_error =
        |e: anyhow::Error| ("CreateContainerConfigError".to_string(), format!("{e:#}"));
    let assigned = Assigned {
        pod_ip: ip,
        host_ip: &node.host_ip,
    };
    let objects = fetch_objects(agent, pod).await.map_err(config_error)?;
    let volumes = crate::volumes::materialize(&agent.client, pod, &objects, &assigned, dir)
        .await
        .map_err(config_error)?;
    let mut out = Vec::new();
    for (c, image) in spec.containers.iter().zip(images) {
        let env = spec::environment(
            pod,
            c,
            &assigned,
            &objects,
            (&agent.apiserver.0, agent.apiserver.1),
        )
        .map_err(config_error)?;
        let (binary, args) = spec::command_line(c, &image, &env).map_err(config_error)?;
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let source = volumes.get(&m.name).ok_or_else(|| {
                config_error(anyhow::anyhow!("volumeMount {} names no volume", m.name))
            })?;
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => source.join(sub),
                None => source.clone(),
            };
            mounts.push(Mount {
                source,
                target: m.mount_path.clone(),
                read_only: m.read_only == Some(true),
            });
        }
        out.push(Prepared {
            container: c.clone(),
            binary,
            args,
            env,
            mounts,
        });
    }
    Ok(out)
}

fn set(st: &Mutex<PodStatus>, i: usize, f: impl FnOnce(&mut ContainerStatus)) {
    if let Some(c) = st.lock().containers.get_mut(i) {
        f(c);
    }
}

/// Sleeps, or returns false when the pod is to stop.
async fn pause(d: Duration, terminate: &CancellationToken, kill: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = terminate.cancelled() => false,
        _ = kill.cancelled() => false,
    }
}

/// Runs `p` every period; flips `ready` after the thresholds.
async fn readiness(
    p: k8s_openapi::api::core::v1::Probe,
    c: Container,
    ip: String,
    st: Arc<Mutex<PodStatus>>,
    i: usize,
) {
    let t = probe::timing(&p);
    tokio::time::sleep(t.initial_delay).await;
    let (mut ok, mut bad) = (0u32, 0u32);
    loop {
        if probe::check(&p, &c, &ip).await.is_ok() {
            ok += 1;
            bad = 0;
            if ok >= t.success_threshold {
                set(&st, i, |c| c.ready = true);
            }
        } else {
            bad += 1;
            ok = 0;
            if bad >= t.failure_threshold {
                set(&st, i, |c| c.ready = false);
            }
        }
        tokio::time::sleep(t.period).await;
    }
}

/// Resolves when the liveness probe has failed `failureThreshold` times in a row.
async fn liveness(
    p: Option<k8s_openapi::api::core::v1::Probe>,
    c: Container,
    ip: String,
) -> String {
    let Some(p) = p else {
        return std::future::pending().await;
    };
    let t = probe::timing(&p);
    tokio::time::sleep(t.initial_delay).await;
    let mut bad = 0;
    loop {
        match probe::check(&p, &c, &ip).await {
            Ok(()) => bad = 0,
            Err(e) => {
                bad += 1;
                if bad >= t.failure_threshold {
                    return format!("{e:#}");
                }
            }
        }
        tokio::time::sleep(t.period).await;
    }
}

enum Outcome {
    Exited(i32),
    Unhealthy(String),
    Terminate,
    Kill,
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    p: Prepared,
    i: usize,
    ip: String,
    log: PathBuf,
    restart_policy: String,
    st: Arc<Mutex<PodStatus>>,
    events: Events,
    stop: (CancellationToken, CancellationToken, Arc<AtomicU64>),
) {
    let (terminate, kill, grace) = stop;
    let mut restarts = 0i32;
    loop {
        let started_at = now();
        let mut child = match process::spawn(&p.binary, &p.args, &p.env, &p.mounts, &log) {
            Ok(c) => c,
            Err(e) => {
                set(&st, i, |c| {
                    c.state = State::Waiting {
                        reason: "RunContainerError".into(),
                        message: format!("{e:#}"),
                    }
                });
                if !pause(Duration::from_secs(10), &terminate, &kill).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        events(
            EventType::Normal,
            "Started",
            format!("Started container {} (pid {pid})", p.container.name),
        );
        set(&st, i, |c| {
            c.state = State::Running {
                started_at: started_at.clone(),
                pid,
            };
            c.ready = p.container.readiness_probe.is_none();
        });
        let ready_task = p.container.readiness_probe.clone().map(|probe| {
            tokio::spawn(readiness(
                probe,
                p.container.clone(),
                ip.clone(),
                st.clone(),
                i,
            ))
        });
        let outcome = tokio::select! {
            s = child.wait() => Outcome::Exited(s.map(process::exit_code).unwrap_or(-1)),
            why = liveness(p.container.liveness_probe.clone(), p.container.clone(), ip.clone()) => Outcome::Unhealthy(why),
            _ = terminate.cancelled() => Outcome::Terminate,
            _ = kill.cancelled() => Outcome::Kill,
        };
        if let Some(t) = ready_task {
            t.abort();
        }
        let grace_period = Duration::from_secs(grace.load(Ordering::Relaxed));
        let (code, reason, again) = match outcome {
            Outcome::Exited(code) => (code, if code == 0 { "Completed" } else { "Error" }, true),
            Outcome::Unhealthy(why) => {
                events(
                    EventType::Warning,
                    "Unhealthy",
                    format!(
                        "Liveness probe failed: {why}; restarting container {}",
                        p.container.name
                    ),
                );
                (process::stop(&mut child, grace_period).await, "Error", true)
            }
            Outcome::Terminate => {
                events(
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {}", p.container.name),
                );
                (
                    process::stop(&mut child, grace_period).await,
                    "Completed",
                    false,
                )
            }
            Outcome::Kill => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        };
        let finished = State::Terminated {
            exit_code: code,
            reason: reason.into(),
            started_at,
            finished_at: now(),
        };
        let restart = again
            && match restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
        set(&st, i, |c| {
            c.ready = false;
            c.state = finished.clone();
        });
        if !restart {
            return;
        }
        restarts += 1;
        // The kubelet's back-off: at once the first time, then 10 s doubling to 5 min.
        let delay = if restarts == 1 {
            0
        } else {
            (10u64 << (restarts - 2).min(5)).min(300)
        };
        set(&st, i, |c| {
            c.restarts = restarts;
            c.last = Some(finished.clone());
            if delay > 0 {
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!("back-off {delay}s restarting container {}", c.name),
                };
            }
        });
        if !pause(Duration::from_secs(delay), &terminate, &kill).await {
            return;
        }
    }
}

/// Runs one pod until it is deleted (then removes it) or its node stops.
/// How often the ConfigMap and Secret volumes of a running pod are written
/// again (a kubelet's is its sync period, about a minute; shorter here so
/// that tests of a renewal wait less).
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

async fn refresh_volumes(
    agent: Arc<Agent>,
    pod: Pod,
    dir: std::path::PathBuf,
    terminate: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(VOLUME_REFRESH) => {}
            () = terminate.cancelled() => return,
        }
        let refreshed = match fetch_objects(&agent, &pod).await {
            Ok(objects) => crate::volumes::refresh(&pod, &objects, &dir),
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            tracing::debug!(pod = %pod.name_any(), "volumes not refreshed: {e:#}");
        }
    }
}

pub async fn run(
    agent: Arc<Agent>,
    pod: Pod,
    node: NodeInfo,
    ip: String,
    terminate: CancellationToken,
    kill: CancellationToken,
    grace: Arc<AtomicU64>,
) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let dir = node.dir.join("pods").join(format!("{ns}_{name}_{uid}"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(pod = %name, "creating {}: {e}", dir.display());
        return;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let st = Arc::new(Mutex::new(PodStatus {
        containers: spec
            .containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ready: false,
                restarts: 0,
                state: State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
                last: None,
            })
            .collect(),
        ready_since: None,
    }));

    let recorder = Recorder::new(
        agent.client.clone(),
        Reporter {
            controller: "process-kubelet".into(),
            instance: Some(node.name.clone()),
        },
    );
    let reference = pod.object_ref(&());
    let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel::<(EventType, String, String)>();
    let events: Events = Arc::new(move |t, reason: &str, note| {
        let _ = etx.send((t, reason.to_string(), note));
    });
    let event_task = tokio::spawn(async move {
        while let Some((type_, reason, note)) = erx.recv().await {
            let e = Event {
                type_,
                reason,
                note: Some(note),
                action: "Sync".into(),
                secondary: None,
            };
            if let Err(err) = recorder.publish(&e, &reference).await {
                tracing::debug!("event not published: {err}");
            }
        }
    });

    // Status: patched whenever what it says changes.
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let status_stop = CancellationToken::new();
    let status_task = {
        let (st, pods, name, ip, host_ip, stop) = (
            st.clone(),
            pods.clone(),
            name.clone(),
            ip.clone(),
            node.host_ip.clone(),
            status_stop.clone(),
        );
        tokio::spawn(async move {
            let start = now();
            let mut last = Value::Null;
            loop {
                let body = status_json(&mut st.lock(), &ip, &host_ip, &start);
                if body != last {
                    match pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                    {
                        Ok(_) => last = body,
                        Err(e) => tracing::debug!(pod = %name, "status not patched: {e}"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        })
    };

    let prepared = loop {
        match prepare(&agent, &pod, &ip, &node, &dir).await {
            Ok(p) => break Some(p),
            Err((reason, message)) => {
                let first = st.lock().containers.iter().all(
                    |c| !matches!(&c.state, State::Waiting { message: m, .. } if *m == message),
                );
                if first {
                    tracing::warn!(pod = %name, "{reason}: {message}");
                    events(EventType::Warning, "Failed", format!("{reason}: {message}"));
                }
                for i in 0..spec.containers.len() {
                    set(&st, i, |c| {
                        c.state = State::Waiting {
                            reason: reason.clone(),
                            message: message.clone(),
                        }
                    });
                }
                if !pause(Duration::from_secs(2), &terminate, &kill).await {
                    break None;
                }
            }
        }
    };

    if let Some(prepared) = prepared {
        let refresher = tokio::spawn(refresh_volumes(
            agent.clone(),
            pod.clone(),
            dir.clone(),
            terminate.clone(),
        ));
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut tasks = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            let log = dir.join(format!("{}.log", p.container.name));
            tasks.push(tokio::spawn(supervise(
                p,
                i,
                ip.clone(),
                log,
                restart_policy.clone(),
                st.clone(),
                events.clone(),
                (terminate.clone(), kill.clone(), grace.clone()),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        refresher.abort();
    }
    if kill.is_cancelled() {
        status_stop.cancel();
        let _ = status_task.await;
        event_task.abort();
        return;
    }
    // Deleted: report the stopped containers, then remove the pod for good.
    tokio::time::sleep(Duration::from_millis(300)).await;
    status_stop.cancel();
    let _ = status_task.await;
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(2), event_task).await;
    if terminate.is_cancelled() {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = pods.delete(&name, &dp).await {
            tracing::debug!(pod = %name, "final delete: {e}");
        }
    }
}
