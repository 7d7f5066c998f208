//! The real-API-server tier: etcd and kube-apiserver as processes on
//! loopback, the CRDs installed from `crds/`, the operator's controllers
//! running against it, and a real sluice-broker process for the Topic
//! controller. The test plays the StatefulSet controller and the kubelet
//! (no controller-manager or kubelet runs): it marks the StatefulSet's
//! replicas ready the way they would report.
//!
//! Ignored by default (cargo reports it as ignored, not passed);
//! `scripts/test.sh` runs it with `--ignored` when `SLUICE_TEST_KUBE_APISERVER`
//! and `SLUICE_TEST_ETCD` name the binaries (etcd from Debian's
//! `etcd-server`; kube-apiserver built from the Kubernetes source).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use sluice_client::AdminClient;
use sluice_e2e::{BrokerProcess, free_ports};
use sluice_operator::context::{Context, Settings};
use sluice_operator::metrics::Metrics;
use sluice_operator::run;
use sluice_operator::{KafkaCluster, Topic};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "sluice-test-admin-token";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binaries() -> Option<(PathBuf, PathBuf)> {
    let api = std::env::var_os("SLUICE_TEST_KUBE_APISERVER")?;
    let etcd = std::env::var_os("SLUICE_TEST_ETCD")?;
    Some((PathBuf::from(api), PathBuf::from(etcd)))
}

fn spawn(cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Proc(
        cmd.stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    )
}

/// etcd, then kube-apiserver with a static admin token; returns a client.
async fn start_control_plane(dir: &Path) -> (Proc, Proc, Client) {
    let (apiserver, etcd) = binaries().expect("checked by the caller");
    let [client_port, peer_port, api_port] = free_ports::<3>().expect("ports");
    let etcd = spawn(
        Command::new(etcd)
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            )),
        &dir.join("etcd.log"),
    );
    let key = dir.join("sa.key");
    let status = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl genrsa");
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{TOKEN},sluice-test,sluice-test,system:masters\n"),
    )
    .expect("token file");
    let api = spawn(
        Command::new(apiserver)
            .arg(format!("--etcd-servers=http://127.0.0.1:{client_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg("--cert-dir")
            .arg(dir.join("certs"))
            .arg("--token-auth-file")
            .arg(dir.join("tokens.csv"))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-key-file")
            .arg(&key)
            .arg("--service-account-signing-key-file")
            .arg(&key)
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            .arg("--disable-admission-plugins=ServiceAccount"),
        &dir.join("kube-apiserver.log"),
    );
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\nusers:\n- name: test\n  user:\n    token: {TOKEN}\n"
    );
    let kc: Kubeconfig = serde_yaml_ng::from_str(&kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ns: Api<Namespace> = Api::all(client.clone());
        if ns.get_opt("default").await.ok().flatten().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver not serving after 90 s; see {}",
            dir.join("kube-apiserver.log").display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (etcd, api, client)
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect()
}

/// Plays the StatefulSet controller: reports `ready` replicas for the
/// current generation.
async fn mark_ready(client: &Client, ns: &str, ready: i32) {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = api.get("demo").await.expect("sts");
    let status = json!({"status": {
        "replicas": ready, "readyReplicas": ready, "availableReplicas": ready,
        "currentReplicas": ready, "updatedReplicas": ready,
        "observedGeneration": sts.metadata.generation,
    }});
    api.patch_status("demo", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("sts status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd: set SLUICE_TEST_KUBE_APISERVER and SLUICE_TEST_ETCD; scripts/test.sh then runs it"]
async fn operator_against_a_real_kube_apiserver() {
    assert!(
        binaries().is_some(),
        "set SLUICE_TEST_KUBE_APISERVER and SLUICE_TEST_ETCD to the kube-apiserver and etcd binaries"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_etcd, _api, client) = start_control_plane(dir.path()).await;

    // CRDs from crds/, exactly as users apply them.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "kafkaclusters.sluice.dev",
        "topics.sluice.dev",
        "kafkausers.sluice.dev",
    ] {
        let doc = yaml_docs(&repo().join("crds").join(format!("{name}.yaml")))
            .pop()
            .expect("crd doc");
        let crd: CustomResourceDefinition = serde_json::from_value(doc).expect("crd");
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create crd");
        eventually(&format!("{name} Established"), || {
            let crds = crds.clone();
            async move {
                let c = crds.get(name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }

    let ns = "kafka";
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
    )
    .await
    .expect("namespace");

    // A real broker with node id 0, as the pod with ordinal 0 would be.
    let data = dir.path().join("broker");
    let broker = BrokerProcess::start(&data, &["--node-id", "0"]).expect("broker");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Some("test".into()),
        Arc::new(Metrics::new()),
        Settings {
            bootstrap_overrides: [(format!("{ns}/demo"), broker.bootstrap())].into(),
            poll: Duration::from_secs(1),
            ..Settings::default()
        },
    ));
    let stop = CancellationToken::new();
    let operator = tokio::spawn(run::controllers(ctx, Some(ns.into()), stop.clone()));

    // The example KafkaCluster, at one broker.
    let mut kc_doc = yaml_docs(&repo().join("examples/kafkacluster.yaml"))
        .pop()
        .expect("kc doc");
    kc_doc["spec"]["replicas"] = json!(1);
    kc_doc["spec"]["config"] = json!({"num.partitions": "3"});
    let kcs: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let kc: KafkaCluster = serde_json::from_value(kc_doc).expect("kc");
    kcs.create(&PostParams::default(), &kc)
        .await
        .expect("create kc");

    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = eventually("the StatefulSet", || {
        let stss = stss.clone();
        async move { stss.get_opt("demo").await.ok().flatten() }
    })
    .await;
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("KafkaCluster", "demo")
    );
    let managers: Vec<_> = sts
        .managed_fields()
        .iter()
        .filter_map(|m| Some((m.manager.clone()?, m.operation.clone()?)))
        .collect();
    assert!(
        managers.contains(&("sluice-operator".into(), "Apply".into())),
        "server-side applied by sluice-operator: {managers:?}"
    );
    for (kind, found) in [
        (
            "Service demo-brokers",
            Api::<Service>::namespaced(client.clone(), ns)
                .get_opt("demo-brokers")
                .await
                .ok()
                .flatten()
                .is_some(),
        ),
        (
            "Service demo-bootstrap",
            Api::<Service>::namespaced(client.clone(), ns)
                .get_opt("demo-bootstrap")
                .await
                .ok()
                .flatten()
                .is_some(),
        ),
        (
            "ConfigMap demo-config",
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt("demo-config")
                .await
                .ok()
                .flatten()
                .is_some(),
        ),
        (
            "PodDisruptionBudget demo-brokers",
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
                .get_opt("demo-brokers")
                .await
                .ok()
                .flatten()
                .is_some(),
        ),
        (
            "ServiceAccount demo-broker",
            Api::<ServiceAccount>::namespaced(client.clone(), ns)
                .get_opt("demo-broker")
                .await
                .ok()
                .flatten()
                .is_some(),
        ),
    ] {
        assert!(found, "{kind} created");
    }

    // A KafkaUser of a cluster that has no SCRAM listener says so, and
    // its finalizer lets it go.
    let users: Api<sluice_operator::KafkaUser> = Api::namespaced(client.clone(), ns);
    let user: sluice_operator::KafkaUser = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": "nobody"},
        "spec": {"clusterRef": "demo", "authentication": {"type": "scram-sha-512"}}
    }))
    .expect("user");
    users
        .create(&PostParams::default(), &user)
        .await
        .expect("create user");
    eventually("KafkaUser nobody: Ready False, NoScramListener", || {
        let users = users.clone();
        async move {
            let u = users.get("nobody").await.ok()?;
            u.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "NoScramListener")
                .then_some(())
        }
    })
    .await;
    users
        .delete("nobody", &Default::default())
        .await
        .expect("delete user");
    eventually("KafkaUser nobody deleted", || {
        let users = users.clone();
        async move { users.get_opt("nobody").await.ok()?.is_none().then_some(()) }
    })
    .await;

    // Ready once the brokers report ready.
    mark_ready(&client, ns, 1).await;
    let kc = eventually("KafkaCluster Ready", || {
        let kcs = kcs.clone();
        async move {
            let kc = kcs.get("demo").await.ok()?;
            let ready = kc
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(kc)
        }
    })
    .await;
    let status = kc.status.expect("status");
    assert_eq!(status.ready_replicas, 1);
    assert!(status.cluster_id.is_some_and(|c| !c.is_empty()));
    assert!(status.brokers[0].registered);

    // `kubectl scale kc demo --replicas=3` goes through /scale.
    let scale = kcs
        .patch_scale(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    eventually("StatefulSet at 3 replicas", || {
        let stss = stss.clone();
        async move {
            let s = stss.get("demo").await.ok()?;
            (s.spec?.replicas == Some(3)).then_some(())
        }
    })
    .await;
    let scale = kcs.get_scale("demo").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));

    // The example Topic, at replication factor 1 (one broker).
    let mut t_doc = yaml_docs(&repo().join("examples/topic.yaml"))
        .pop()
        .expect("topic doc");
    t_doc["spec"]["replicationFactor"] = json!(1);
    t_doc["spec"]["deletionPolicy"] = json!("Delete");
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    let t: Topic = serde_json::from_value(t_doc).expect("topic");
    topics
        .create(&PostParams::default(), &t)
        .await
        .expect("create topic");
    let t = eventually("Topic Ready", || {
        let topics = topics.clone();
        async move {
            let t = topics.get("orders").await.ok()?;
            let ready = t
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(t)
        }
    })
    .await;
    let mut admin = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin");
    let found = admin
        .describe_topics(Some(&["orders"]))
        .await
        .expect("describe");
    assert_eq!(found.len(), 1, "a real topic on the broker");
    assert_eq!(found[0].partitions, 6);
    assert_eq!(
        t.status.as_ref().and_then(|s| s.topic_id.clone()),
        Some(found[0].id.clone())
    );
    assert!(t.finalizers().iter().any(|f| f == "sluice.dev/topic"));

    // Deleting the object deletes the topic (deletionPolicy: Delete).
    topics
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("Topic object gone", || {
        let topics = topics.clone();
        async move { topics.get_opt("orders").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        admin
            .describe_topics(Some(&["orders"]))
            .await
            .expect("describe")
            .is_empty(),
        "the topic is deleted on the broker"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("controllers stop on shutdown")
        .expect("join");
}
