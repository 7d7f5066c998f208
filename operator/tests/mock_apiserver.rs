//! Reconcilers against a mocked Kubernetes API server (`tower-test`): each
//! test asserts the exact requests the operator sends, in order, and
//! answers them as the API server would. Where the operator talks Kafka,
//! it talks to a real sluice-broker process on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use sluice_client::AdminClient;
use sluice_e2e::BrokerProcess;
use sluice_operator::context::{Context, Settings};
use sluice_operator::controller::{cluster, topic};
use sluice_operator::metrics::Metrics;
use sluice_operator::{KafkaCluster, Topic};
use tower_test::mock::{self, Handle, SendResponse};

type MockHandle = Handle<Request<Body>, Response<Body>>;

/// One request as the mock API server received it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Value,
}

struct ApiServer {
    handle: MockHandle,
}

impl ApiServer {
    /// The next request; fails the test if none comes within 10 s.
    async fn next(&mut self) -> (Seen, SendResponse<Response<Body>>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
            .await
            .expect("the operator sent no further request within 10 s")
            .expect("service dropped");
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        (
            Seen {
                method,
                path,
                query,
                body,
            },
            send,
        )
    }

    /// Expects `method path`, answers `reply` with 200, returns the request.
    async fn expect(
        &mut self,
        method: &str,
        path: &str,
        reply: impl FnOnce(&Seen) -> Value,
    ) -> Seen {
        let (seen, send) = self.next().await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (method, path),
            "unexpected request {seen:?}"
        );
        let body = reply(&seen);
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
        seen
    }

    /// Nothing more is sent.
    async fn done(mut self) {
        let more =
            tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await;
        if let Ok(Some((req, _))) = more {
            panic!("unexpected extra request {} {}", req.method(), req.uri());
        }
    }
}

/// A StatefulSet without claim templates: storage.size changes nothing.
fn existing_statefulset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "demo", "namespace": "ns"},
           "spec": {"selector": {}, "serviceName": "demo-brokers", "template": {}}})
}

fn context(overrides: &[(&str, String)]) -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let settings = Settings {
        bootstrap_overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        admin_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    let ctx = Context::new(
        client,
        Some("test-operator".into()),
        Arc::new(Metrics::new()),
        settings,
    );
    (Arc::new(ctx), ApiServer { handle })
}

fn kafka_cluster(config: Value) -> KafkaCluster {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-kc", "generation": 2},
        "spec": {"replicas": 1, "storage": {"size": "1Gi"}, "config": config}
    }))
    .expect("KafkaCluster")
}

/// Checks a server-side apply: field manager, force, and the object.
fn assert_apply(seen: &Seen, kind: &str, name: &str) {
    assert_eq!(
        seen.query.get("fieldManager").map(String::as_str),
        Some("sluice-operator")
    );
    assert_eq!(seen.query.get("force").map(String::as_str), Some("true"));
    assert_eq!(seen.body["kind"], kind, "{:?}", seen.body);
    assert_eq!(seen.body["metadata"]["name"], name);
    assert_eq!(seen.body["metadata"]["namespace"], "ns");
    let owner = &seen.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (
            Some("KafkaCluster"),
            Some("demo"),
            Some("uid-kc"),
            Some(true)
        ),
        "{kind} {name} is owned by its KafkaCluster"
    );
}

fn echo(seen: &Seen) -> Value {
    seen.body.clone()
}

/// The API server's answer to a status write: the whole object with the
/// new status.
fn with_status(object: Value) -> impl FnOnce(&Seen) -> Value {
    move |seen| {
        let mut o = object;
        o["status"] = seen.body["status"].clone();
        o
    }
}

/// The API server's answer to a finalizer patch: the object.
fn object(o: Value) -> impl FnOnce(&Seen) -> Value {
    move |_| o
}

/// Drives one KafkaCluster reconcile through every owned object and the
/// status; returns the status body and the Action.
async fn cluster_round(kc: KafkaCluster, ctx: Arc<Context>, mut api: ApiServer) -> (Value, Action) {
    let task = tokio::spawn(cluster::reconcile(Arc::new(kc), ctx));
    let s = api
        .expect(
            "PATCH",
            "/api/v1/namespaces/ns/serviceaccounts/demo-broker",
            echo,
        )
        .await;
    assert_apply(&s, "ServiceAccount", "demo-broker");
    let s = api
        .expect(
            "PATCH",
            "/api/v1/namespaces/ns/configmaps/demo-config",
            echo,
        )
        .await;
    assert_apply(&s, "ConfigMap", "demo-config");
    assert!(
        s.body["data"]["server.properties"]
            .as_str()
            .is_some_and(|p| p.contains("log.dirs=/var/lib/sluice/data")),
        "{:?}",
        s.body["data"]
    );
    let s = api
        .expect("PATCH", "/api/v1/namespaces/ns/services/demo-brokers", echo)
        .await;
    assert_apply(&s, "Service", "demo-brokers");
    assert_eq!(s.body["spec"]["clusterIP"], "None");
    assert_eq!(s.body["spec"]["publishNotReadyAddresses"], true);
    let s = api
        .expect(
            "PATCH",
            "/api/v1/namespaces/ns/services/demo-bootstrap",
            echo,
        )
        .await;
    assert_apply(&s, "Service", "demo-bootstrap");
    let s = api
        .expect(
            "PATCH",
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/demo-brokers",
            echo,
        )
        .await;
    assert_apply(&s, "PodDisruptionBudget", "demo-brokers");
    // The StatefulSet as it is, for a change of storage.size.
    api.expect(
        "GET",
        "/apis/apps/v1/namespaces/ns/statefulsets/demo",
        |_| existing_statefulset(),
    )
    .await;
    let s = api
        .expect(
            "PATCH",
            "/apis/apps/v1/namespaces/ns/statefulsets/demo",
            |seen| {
                let mut sts = seen.body.clone();
                sts["metadata"]["generation"] = json!(1);
                sts["status"] = json!({"replicas": 1, "readyReplicas": 1, "observedGeneration": 1});
                sts
            },
        )
        .await;
    assert_apply(&s, "StatefulSet", "demo");
    assert_eq!(s.body["spec"]["replicas"], 1);
    assert_eq!(s.body["spec"]["serviceName"], "demo-brokers");
    let s = api
        .expect("GET", "/api/v1/namespaces/ns/pods", |_| {
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "demo-0", "namespace": "ns"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }]})
        })
        .await;
    assert_eq!(
        s.query.get("labelSelector").map(String::as_str),
        Some(
            "app.kubernetes.io%2Fcomponent%3Dbroker%2Capp.kubernetes.io%2Finstance%3Ddemo%2Capp.kubernetes.io%2Fname%3Dsluice"
        )
    );
    let s = api
        .expect("GET", "/api/v1/namespaces/ns/persistentvolumeclaims", |_| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []})
        })
        .await;
    assert!(
        s.query
            .get("labelSelector")
            .is_some_and(|l| l.contains("instance%3Ddemo"))
    );
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo/status",
            with_status(kc_json()),
        )
        .await;
    assert_eq!(
        s.query.get("fieldManager").map(String::as_str),
        Some("sluice-operator")
    );
    let status = s.body["status"].clone();
    let (api_after, action) = (api, task);
    let action = tokio::time::timeout(Duration::from_secs(20), async {
        // A Ready transition records one event.
        let mut api = api_after;
        if status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        }) {
            let e = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
                .await;
            assert_eq!(e.body["reason"], "Ready");
            assert_eq!(e.body["type"], "Normal");
            assert_eq!(e.body["regarding"]["name"], "demo");
        }
        let a = action.await.expect("join").expect("reconcile ok");
        api.done().await;
        a
    })
    .await
    .expect("reconcile finished");
    (status, action)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn cluster_applies_owned_objects_and_reports_an_unreachable_cluster() {
    // Port 1 on loopback: nothing listens, connect fails at once.
    let (ctx, api) = context(&[("ns/demo", "127.0.0.1:1".into())]);
    let (status, action) = cluster_round(kafka_cluster(json!({})), ctx.clone(), api).await;
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "ClusterUnreachable");
    assert_eq!(
        condition(&status, "Degraded")["reason"],
        "ClusterUnreachable"
    );
    assert_eq!(status["readyReplicas"], 1);
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["bootstrapServers"], "demo-bootstrap.ns.svc:9092");
    assert_eq!(status["brokers"][0]["state"], "Running");
    assert_eq!(status["brokers"][0]["registered"], false);
    assert_eq!(
        action,
        Action::requeue(ctx.settings.poll),
        "not settled: poll again"
    );
}

#[tokio::test]
async fn cluster_status_comes_from_the_real_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Node id 0, as the pod with ordinal 0 gets.
    let broker =
        BrokerProcess::start(&dir.path().join("data"), &["--node-id", "0"]).expect("broker");
    let (ctx, api) = context(&[("ns/demo", broker.bootstrap())]);
    let (status, action) = cluster_round(kafka_cluster(json!({})), ctx.clone(), api).await;
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(status["brokers"][0]["registered"], true);
    let mut admin = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin");
    let info = admin.describe_cluster().await.expect("describe");
    assert_eq!(status["clusterId"].as_str(), info.cluster_id.as_deref());
    assert_eq!(
        action,
        Action::requeue(ctx.settings.resync),
        "settled: resync later"
    );
    let text = ctx.metrics.render();
    assert!(
        text.contains("sluice_operator_reconciles_total{controller=\"kafkacluster\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_cluster_spec_changes_nothing_and_says_why() {
    let (ctx, mut api) = context(&[]);
    let kc = kafka_cluster(json!({"node.id": "7"}));
    let task = tokio::spawn(cluster::reconcile(Arc::new(kc), ctx));
    // No object is applied: the first request is the status.
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo/status",
            with_status(kc_json()),
        )
        .await;
    let ready = condition(&s.body["status"], "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("node.id")),
        "{ready}"
    );
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(
        (e.body["type"].as_str(), e.body["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );
    let action = task.await.expect("join").expect("reconcile ok");
    assert_eq!(action, Action::await_change());
    api.done().await;
}

fn topic_object(spec: Value, finalizers: &[&str], deleting: bool) -> Topic {
    let mut meta = json!({"name": "orders", "namespace": "ns", "uid": "uid-t", "generation": 3});
    if !finalizers.is_empty() {
        meta["finalizers"] = json!(finalizers);
    }
    if deleting {
        meta["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
    }
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Topic",
        "metadata": meta,
        "spec": spec,
    }))
    .expect("Topic")
}

/// A Topic as the API server would return it.
fn topic_json() -> Value {
    let spec = json!({"clusterRef": "demo", "partitions": 1, "replicationFactor": 1});
    serde_json::to_value(topic_object(spec, &["sluice.dev/topic"], false)).expect("json")
}

fn kc_json() -> Value {
    serde_json::to_value(kafka_cluster(json!({}))).expect("json")
}

#[tokio::test]
async fn topic_gets_a_finalizer_then_becomes_a_real_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("broker");
    let (ctx, mut api) = context(&[("ns/demo", broker.bootstrap())]);
    let spec = json!({"clusterRef": "demo", "partitions": 3, "replicationFactor": 1,
                      "config": {"retention.ms": "3600000"}});

    // Round 1: no finalizer yet; the operator adds it and waits.
    let t = topic_object(spec.clone(), &[], false);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders",
            object(topic_json()),
        )
        .await;
    let ops = s.body.as_array().expect("JSON patch");
    assert!(
        ops.iter()
            .any(|op| op["op"] == "add" && op["value"] == json!(["sluice.dev/topic"])),
        "{ops:?}"
    );
    let _ = task.await.expect("join");

    // Round 2: with the finalizer, the topic is created on the broker.
    let t = topic_object(spec, &["sluice.dev/topic"], false);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    api.expect(
        "GET",
        "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo",
        |_| kc_json(),
    )
    .await;
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(e.body["reason"], "Created");
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders/status",
            with_status(topic_json()),
        )
        .await;
    let action = task.await.expect("join").expect("reconcile ok");
    api.done().await;
    assert_eq!(action, Action::requeue(ctx.settings.resync));

    let status = &s.body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["config"]["retention.ms"], "3600000");
    let mut admin = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin");
    let topics = admin
        .describe_topics(Some(&["orders"]))
        .await
        .expect("describe");
    assert_eq!(topics.len(), 1, "the topic exists on the broker");
    assert_eq!(topics[0].partitions, 3);
    assert_eq!(status["topicId"].as_str(), Some(topics[0].id.as_str()));
    let configs = admin.topic_configs("orders").await.expect("configs");
    assert_eq!(configs["retention.ms"], ("3600000".to_string(), true));
}

#[tokio::test]
async fn topic_partition_decrease_is_refused_without_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("broker");
    let mut admin = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin");
    // An existing topic of the same name is adopted.
    admin
        .create_topic("orders", 4, 1, &BTreeMap::new())
        .await
        .expect("create");
    let (ctx, mut api) = context(&[("ns/demo", broker.bootstrap())]);
    let spec = json!({"clusterRef": "demo", "partitions": 2, "replicationFactor": 1,
                      "config": {"cleanup.policy": "compact"}});
    let t = topic_object(spec, &["sluice.dev/topic"], false);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    api.expect(
        "GET",
        "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo",
        |_| kc_json(),
    )
    .await;
    // The config change still applies; the decrease is refused.
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(e.body["reason"], "ConfigChanged");
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(
        (e.body["type"].as_str(), e.body["reason"].as_str()),
        (Some("Warning"), Some("ChangeRefused"))
    );
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders/status",
            with_status(topic_json()),
        )
        .await;
    task.await.expect("join").expect("reconcile ok");
    api.done().await;
    let ready = condition(&s.body["status"], "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ChangeRefused"))
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("4 partitions")),
        "{ready}"
    );
    let topics = admin
        .describe_topics(Some(&["orders"]))
        .await
        .expect("describe");
    assert_eq!(topics[0].partitions, 4, "partitions untouched");
    assert_eq!(
        admin.topic_configs("orders").await.expect("configs")["cleanup.policy"].0,
        "compact"
    );
}

#[tokio::test]
async fn topic_with_missing_cluster_waits_with_a_condition() {
    let (ctx, mut api) = context(&[]);
    let spec = json!({"clusterRef": "nope", "partitions": 1, "replicationFactor": 1});
    let t = topic_object(spec, &["sluice.dev/topic"], false);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    let (seen, send) = api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "GET",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/nope"
        )
    );
    send.send_response(
        Response::builder()
            .status(404)
            .body(Body::from(
                serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "kafkaclusters \"nope\" not found"}))
                .expect("json"),
            ))
            .expect("response"),
    );
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(e.body["reason"], "ClusterNotFound");
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders/status",
            with_status(topic_json()),
        )
        .await;
    assert_eq!(
        condition(&s.body["status"], "Ready")["reason"],
        "ClusterNotFound"
    );
    let action = task.await.expect("join").expect("reconcile ok");
    assert_eq!(action, Action::requeue(ctx.settings.poll));
    api.done().await;
}

#[tokio::test]
async fn deleting_a_topic_with_delete_policy_deletes_it_then_drops_the_finalizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("broker");
    let mut admin = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin");
    admin
        .create_topic("orders", 1, 1, &BTreeMap::new())
        .await
        .expect("create");
    let (ctx, mut api) = context(&[("ns/demo", broker.bootstrap())]);
    let spec = json!({"clusterRef": "demo", "partitions": 1, "replicationFactor": 1,
                      "deletionPolicy": "Delete"});
    let t = topic_object(spec, &["sluice.dev/topic"], true);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    api.expect(
        "GET",
        "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo",
        |_| kc_json(),
    )
    .await;
    let e = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", echo)
        .await;
    assert_eq!(e.body["reason"], "Deleted");
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders",
            object(topic_json()),
        )
        .await;
    let ops = s.body.as_array().expect("JSON patch");
    assert!(
        ops.iter()
            .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
        "{ops:?}"
    );
    task.await.expect("join").expect("reconcile ok");
    api.done().await;
    assert!(
        admin
            .describe_topics(Some(&["orders"]))
            .await
            .expect("describe")
            .is_empty(),
        "the topic is gone from the broker"
    );
}

#[tokio::test]
async fn deleting_a_topic_with_retain_policy_keeps_it() {
    let (ctx, mut api) = context(&[]);
    let spec = json!({"clusterRef": "demo", "partitions": 1, "replicationFactor": 1});
    let t = topic_object(spec, &["sluice.dev/topic"], true);
    let task = tokio::spawn(topic::reconcile(Arc::new(t), ctx.clone()));
    // No cluster lookup, no Kafka call: only the finalizer goes.
    let s = api
        .expect(
            "PATCH",
            "/apis/sluice.dev/v1alpha1/namespaces/ns/topics/orders",
            object(topic_json()),
        )
        .await;
    assert!(
        s.body
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["op"] == "remove"))
    );
    task.await.expect("join").expect("reconcile ok");
    api.done().await;
}

/// What one reconcile of a multi-broker KafkaCluster sent: the replica
/// counts of its StatefulSet applies (in order), the reasons of its
/// events, and the status it wrote.
struct Round {
    statefulsets: Vec<i64>,
    events: Vec<String>,
    status: Value,
    deleted: Vec<String>,
}

/// What the API server shows besides the operator's own objects: the
/// StatefulSet's update revision and the broker pods (default: every pod
/// of the StatefulSet, ready, unlabelled).
#[derive(Default)]
struct Scene {
    revision: Option<String>,
    pods: Option<Vec<Value>>,
    /// Broker id and the uid of its volume claim.
    claims: Vec<(i64, String)>,
}

fn pod(i: i64, revision: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("demo-{i}"), "namespace": "ns",
                        "labels": {"controller-revision-hash": revision}},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// Runs one reconcile, answering as the API server would (the StatefulSet
/// and its pods all ready), whatever order the requests come in.
async fn any_round(kc: &KafkaCluster, ctx: Arc<Context>, api: &mut ApiServer) -> Round {
    scene_round(kc, ctx, api, &Scene::default()).await
}

async fn scene_round(
    kc: &KafkaCluster,
    ctx: Arc<Context>,
    api: &mut ApiServer,
    scene: &Scene,
) -> Round {
    let mut task = tokio::spawn(cluster::reconcile(Arc::new(kc.clone()), ctx));
    let mut round = Round {
        statefulsets: Vec::new(),
        events: Vec::new(),
        status: Value::Null,
        deleted: Vec::new(),
    };
    let mut pods = 0;
    loop {
        let (seen, send) = tokio::select! {
            r = &mut task => {
                r.expect("join").expect("reconcile ok");
                return round;
            }
            next = api.next() => next,
        };
        let reply = match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/apis/apps/v1/namespaces/ns/statefulsets/demo") => existing_statefulset(),
            ("PATCH", "/apis/apps/v1/namespaces/ns/statefulsets/demo") => {
                let n = seen.body["spec"]["replicas"].as_i64().expect("replicas");
                round.statefulsets.push(n);
                pods = n;
                let mut sts = seen.body.clone();
                sts["metadata"]["generation"] = json!(1);
                sts["status"] = json!({"replicas": n, "readyReplicas": n, "observedGeneration": 1});
                if let Some(r) = &scene.revision {
                    sts["status"]["updateRevision"] = json!(r);
                }
                sts
            }
            ("GET", "/api/v1/namespaces/ns/persistentvolumeclaims") => {
                let items: Vec<Value> = scene
                    .claims
                    .iter()
                    .map(|(id, uid)| {
                        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "metadata": {"name": format!("data-demo-{id}"), "namespace": "ns", "uid": uid}})
                    })
                    .collect();
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": items})
            }
            ("GET", "/api/v1/namespaces/ns/pods") if scene.pods.is_some() => {
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": scene.pods.clone()})
            }
            ("DELETE", p) if p.starts_with("/api/v1/namespaces/ns/pods/") => {
                let name = p.rsplit('/').next().unwrap_or_default().to_string();
                round.deleted.push(name.clone());
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}})
            }
            ("GET", "/api/v1/namespaces/ns/pods") => {
                let items: Vec<Value> = (0..pods)
                    .map(|i| {
                        json!({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": format!("demo-{i}"), "namespace": "ns"},
                               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
                    })
                    .collect();
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            }
            ("PATCH", "/apis/sluice.dev/v1alpha1/namespaces/ns/kafkaclusters/demo/status") => {
                round.status = seen.body["status"].clone();
                let mut o = serde_json::to_value(kc).expect("json");
                o["status"] = round.status.clone();
                o
            }
            ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events") | ("PATCH", _)
                if seen
                    .path
                    .starts_with("/apis/events.k8s.io/v1/namespaces/ns/events") =>
            {
                round
                    .events
                    .push(seen.body["reason"].as_str().unwrap_or_default().to_string());
                seen.body.clone()
            }
            ("PATCH", p) if p.starts_with("/api/v1/") || p.starts_with("/apis/policy/") => {
                seen.body.clone()
            }
            _ => panic!("unexpected request {seen:?}"),
        };
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                .expect("response"),
        );
    }
}

fn scaled_cluster(replicas: i32, status: Value) -> KafkaCluster {
    let mut kc = kafka_cluster(json!({}));
    kc.spec.replicas = replicas;
    kc.status = Some(serde_json::from_value(status).expect("status"));
    kc
}

/// Where the replicas of `topic` are, by broker.
async fn replicas_of(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let mut admin = AdminClient::connect(bootstrap, Duration::from_secs(5))
        .await
        .expect("admin");
    let info = admin.describe_cluster().await.expect("describe");
    info.partitions
        .iter()
        .filter(|p| p.topic == topic)
        .map(|p| p.replicas.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_shows_its_plan_then_drains_before_the_statefulset_shrinks() {
    let (_dir, mut brokers, first, bootstrap, mut admin) = running_cluster(5).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    admin
        .create_topic("orders", 6, 3, &BTreeMap::new())
        .await
        .expect("orders");
    admin
        .create_topic("wide", 2, 4, &BTreeMap::new())
        .await
        .expect("wide");
    // Both topics visible to the broker the operator asks.
    while replicas_of(&first, "wide").await.len() < 2
        || replicas_of(&first, "orders").await.len() < 6
    {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(60),
            "topics not visible"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ctx, mut api) = context(&[("ns/demo", first.clone())]);
    let was_five = json!({"appliedReplicas": 5, "balancedReplicas": 5});

    // A topic with four replicas cannot live on three brokers: refused,
    // naming it, with a Warning event; the StatefulSet keeps five pods.
    let r = any_round(&scaled_cluster(3, was_five.clone()), ctx.clone(), &mut api).await;
    assert_eq!(r.statefulsets, vec![5]);
    assert_eq!(r.status["plan"]["phase"], "Refused", "{}", r.status);
    assert!(
        r.status["plan"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("wide"))
    );
    assert_eq!(condition(&r.status, "Rebalancing")["reason"], "Refused");
    assert!(
        r.events.contains(&"RebalanceRefused".to_string()),
        "{:?}",
        r.events
    );
    assert_eq!(r.status["appliedReplicas"], 5);
    admin.delete_topic("wide").await.expect("delete wide");
    while !replicas_of(&first, "wide").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(60),
            "wide not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // From here on a producer writes at acks=all; every record it had
    // acknowledged is read back at the end.
    let load = sluice_e2e::rd::AckedLoad::start(&bootstrap, "orders", 0).expect("load");

    // With approval required, the plan is shown and waits: twice, and
    // with an annotation naming another plan; nothing moves meanwhile.
    let gated = |status: Value, approved: Option<&str>| {
        let mut kc = scaled_cluster(3, status);
        kc.spec.rebalance.require_approval = true;
        kc.spec.rebalance.throttle_bytes_per_second = 10 * 1024 * 1024;
        if let Some(id) = approved {
            kc.metadata.annotations = Some(BTreeMap::from([(
                "sluice.dev/approved-plan".to_string(),
                id.to_string(),
            )]));
        }
        kc
    };
    let before = replicas_of(&first, "orders").await;
    let mut status = was_five;
    for approved in [None, None, Some("another-plan")] {
        let r = any_round(&gated(status, approved), ctx.clone(), &mut api).await;
        assert_eq!(r.statefulsets, vec![5]);
        let plan = &r.status["plan"];
        assert_eq!(plan["phase"], "AwaitingApproval", "{}", r.status);
        assert!(!plan["moves"].as_array().expect("moves").is_empty());
        assert_eq!(plan["throttleBytesPerSecond"], 10 * 1024 * 1024);
        let id = plan["id"].as_str().expect("plan id");
        let how = format!("kubectl annotate kafkacluster demo sluice.dev/approved-plan={id}");
        assert!(
            plan["message"].as_str().is_some_and(|m| m.contains(&how)),
            "{plan}"
        );
        assert_eq!(
            condition(&r.status, "Rebalancing")["reason"],
            "AwaitingApproval"
        );
        assert_eq!(replicas_of(&first, "orders").await, before);
        status = r.status;
    }
    let id = status["plan"]["id"].as_str().expect("id").to_string();

    // Approved: it runs under the throttle, pass after pass, and the
    // StatefulSet shrinks only when brokers 3 and 4 hold nothing.
    let mut phases = Vec::new();
    let mut throttled = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = any_round(&gated(status.clone(), Some(&id)), ctx.clone(), &mut api).await;
        if r.status["plan"]["phase"] == "Moving" {
            let configs = admin.broker_configs(0).await.expect("broker configs");
            throttled = ["leader", "follower"].iter().all(|side| {
                configs.get(&format!("{side}.replication.throttled.rate"))
                    == Some(&("10485760".to_string(), true))
            });
        }
        phases.push(
            r.status["plan"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        status = r.status;
        if r.statefulsets.len() == 2 {
            assert_eq!(r.statefulsets, vec![5, 3], "drained, then shrunk");
            assert!(
                r.events.contains(&"ScaledDown".to_string()),
                "{:?}",
                r.events
            );
            break;
        }
        assert_eq!(r.statefulsets, vec![5], "no shrink before the moves finish");
    }
    assert_eq!(status["appliedReplicas"], 3, "phases {phases:?}");
    assert!(phases.iter().any(|p| p == "Moving"), "{phases:?}");
    assert!(throttled, "the moves ran without the throttle");
    assert_eq!(status["plan"]["phase"], "Balanced");
    assert_eq!(condition(&status, "Rebalancing")["status"], "False");
    // Balanced: the throttle is gone from every broker.
    for (id, b) in (0..3).zip(&brokers) {
        let mut a = AdminClient::connect(&b.bootstrap(), Duration::from_secs(5))
            .await
            .expect("admin");
        let configs = a.broker_configs(id).await.expect("broker configs");
        for k in sluice_operator::rebalance::THROTTLE_CONFIGS {
            assert!(
                !configs.get(k).is_some_and(|(_, dynamic)| *dynamic),
                "{k} still set on broker {id}: {configs:?}"
            );
        }
    }
    for rs in replicas_of(&first, "orders").await {
        assert!(
            rs.iter().all(|b| *b < 3),
            "{rs:?} still on a leaving broker"
        );
        assert_eq!(rs.len(), 3);
    }

    // Brokers 3 and 4 are still running (their pods terminate): they stay
    // registered until they are gone, then leave the metadata.
    assert_eq!(status["unregistering"], json!([3, 4]), "{status}");
    for b in [3, 4] {
        brokers[b].kill9().expect("stop");
    }
    let mut events = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = any_round(&scaled_cluster(3, status.clone()), ctx.clone(), &mut api).await;
        status = r.status;
        events.extend(r.events);
        if status.get("unregistering").is_none() {
            break;
        }
    }
    assert!(status.get("unregistering").is_none(), "{status}");
    assert!(
        events.contains(&"BrokersUnregistered".to_string()),
        "{events:?}"
    );
    for b in [3, 4] {
        let e = admin.unregister_broker(b).await.expect_err("already gone");
        assert_eq!(sluice_client::error_code(&e), Some(102), "{e}");
    }
    // A voter of the metadata quorum is refused, saying why.
    let e = admin.unregister_broker(1).await.expect_err("a voter");
    assert!(e.to_string().contains("quorum"), "{e}");

    // Below three brokers the quorum keeps one voter: the vote of leaving
    // broker 2 moves first, shown in the plan before it runs (and, the
    // spec set back to three below, never run). status.quorum shows the
    // voters and the controller.
    let r = any_round(&scaled_cluster(2, status.clone()), ctx.clone(), &mut api).await;
    assert_eq!(r.statefulsets, vec![3]);
    assert_eq!(r.status["plan"]["phase"], "Planned", "{}", r.status);
    assert_eq!(r.status["plan"]["id"], "quorum-remove-2");
    assert!(
        r.status["plan"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("quorum")),
        "{}",
        r.status["plan"]
    );
    let voters: Vec<i64> = r.status["quorum"]["voters"]
        .as_array()
        .expect("status.quorum.voters")
        .iter()
        .filter_map(|v| v["id"].as_i64())
        .collect();
    assert_eq!(voters, vec![0, 1, 2], "{}", r.status["quorum"]);
    assert!(
        r.status["quorum"]["controller"]
            .as_i64()
            .is_some_and(|c| c < 3)
    );

    // 3 -> 5: the StatefulSet grows at once, its new pods (brokers 3 and
    // 4, started again) register, and partitions move onto them; then
    // 5 -> 3 again, without approval this time.
    for b in [3, 4] {
        tokio::task::block_in_place(|| brokers[b].restart()).expect("start");
    }
    for (want, sts) in [(5, 5), (3, 3)] {
        let mut balanced = false;
        for _ in 0..120 {
            let r = any_round(&scaled_cluster(want, status.clone()), ctx.clone(), &mut api).await;
            status = r.status;
            if status["balancedReplicas"] == want && status["appliedReplicas"] == sts {
                balanced = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(balanced, "scale to {want}: {status}");
        let rs = replicas_of(&first, "orders").await;
        let used: std::collections::BTreeSet<i32> = rs.iter().flatten().copied().collect();
        assert_eq!(
            used,
            (0..want).collect(),
            "scale to {want}: every broker holds replicas, no other does: {rs:?}"
        );
    }
    let result = load.finish().await.expect("load");
    assert_eq!(result.failed, 0, "{:?}", result.first_errors);
    let acked = result.acked;
    tokio::task::spawn_blocking(move || {
        sluice_e2e::rd::check_acknowledged(&bootstrap, "orders", 6, &acked, Duration::from_secs(60))
    })
    .await
    .expect("join")
    .expect("read back");
    drop(brokers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_template_restarts_one_broker_at_a_time_controller_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = sluice_e2e::start_cluster(dir.path(), 3, &[]).expect("three brokers");
    let first = brokers[0].bootstrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let controller = loop {
        if let Ok(mut a) = AdminClient::connect(&first, Duration::from_secs(5)).await
            && let Ok(c) = a.describe_cluster().await
            && c.brokers.len() == 3
            && c.controller_id >= 0
        {
            break c.controller_id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three brokers did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut admin = AdminClient::connect(&first, Duration::from_secs(5))
        .await
        .expect("admin");
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin
        .create_topic("orders", 3, 3, &configs)
        .await
        .expect("orders");
    let (ctx, mut api) = context(&[("ns/demo", first.clone())]);
    let settled = json!({"appliedReplicas": 3, "balancedReplicas": 3,
                         "plan": {"phase": "Balanced", "targetBrokers": 3, "message": "balanced"}});
    let kc = scaled_cluster(3, settled);

    // Every pod is at the old revision: one goes, not the controller.
    let old = Scene {
        revision: Some("rev-2".into()),
        pods: Some((0..3).map(|i| pod(i, "rev-1", true)).collect()),
        ..Scene::default()
    };
    let r = scene_round(&kc, ctx.clone(), &mut api, &old).await;
    assert_eq!(r.deleted.len(), 1, "{:?}", r.deleted);
    let first_rolled = r.deleted[0].clone();
    assert_ne!(
        first_rolled,
        format!("demo-{controller}"),
        "the controller goes last"
    );
    assert_eq!(
        condition(&r.status, "RollingRestart")["reason"],
        "Restarting"
    );
    assert!(r.events.contains(&"RestartingBroker".to_string()));

    // While that pod is not back, nothing else restarts, and the condition
    // says which broker it waits for.
    let rolled: i64 = first_rolled
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("ordinal");
    let coming_back = Scene {
        revision: Some("rev-2".into()),
        pods: Some(
            (0..3)
                .map(|i| {
                    if i == rolled {
                        pod(i, "rev-2", false)
                    } else {
                        pod(i, "rev-1", true)
                    }
                })
                .collect(),
        ),
        ..Scene::default()
    };
    let r = scene_round(&kc, ctx.clone(), &mut api, &coming_back).await;
    assert!(r.deleted.is_empty(), "{:?}", r.deleted);
    let c = condition(&r.status, "RollingRestart");
    assert_eq!(c["reason"], "Blocked");
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("broker {rolled}"))),
        "{c}"
    );

    // Back and current: the next one goes; the controller only when it is
    // the last one left.
    let mut revisions: Vec<&str> = vec!["rev-1"; 3];
    revisions[rolled as usize] = "rev-2";
    let mut order = vec![rolled];
    for _ in 0..2 {
        let scene = Scene {
            revision: Some("rev-2".into()),
            pods: Some(
                (0..3)
                    .map(|i| pod(i, revisions[i as usize], true))
                    .collect(),
            ),
            ..Scene::default()
        };
        let r = scene_round(&kc, ctx.clone(), &mut api, &scene).await;
        assert_eq!(r.deleted.len(), 1, "{:?} {}", r.deleted, r.status);
        let b: i64 = r.deleted[0]
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("ordinal");
        revisions[b as usize] = "rev-2";
        order.push(b);
    }
    assert_eq!(
        order.last().copied(),
        Some(i64::from(controller)),
        "order {order:?}"
    );
    let done = Scene {
        revision: Some("rev-2".into()),
        pods: Some((0..3).map(|i| pod(i, "rev-2", true)).collect()),
        ..Scene::default()
    };
    let r = scene_round(&kc, ctx.clone(), &mut api, &done).await;
    assert!(r.deleted.is_empty());
    assert_eq!(condition(&r.status, "RollingRestart")["status"], "False");
    drop(brokers);
}

/// Waits until `n` brokers are registered and live.
async fn registered(bootstrap: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = match AdminClient::connect(bootstrap, Duration::from_secs(5)).await {
            Ok(mut a) => a.describe_cluster().await.map_or(0, |c| c.brokers.len()),
            Err(_) => 0,
        };
        if seen == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} brokers did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` brokers of one cluster, registered: their directory, the processes,
/// the first's address, all addresses, and an admin client on the first.
async fn running_cluster(
    n: usize,
) -> (
    tempfile::TempDir,
    Vec<BrokerProcess>,
    String,
    String,
    AdminClient,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = sluice_e2e::start_cluster(dir.path(), n, &[]).expect("brokers");
    let first = brokers[0].bootstrap();
    let bootstrap = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    registered(&first, n).await;
    let admin = AdminClient::connect(&first, Duration::from_secs(5))
        .await
        .expect("admin");
    (dir, brokers, first, bootstrap, admin)
}

/// `min.insync.replicas=2`, as a topic config.
fn min_isr_2() -> BTreeMap<String, String> {
    BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_a_new_empty_volume_is_tracked_until_its_replicas_are_rebuilt() {
    let (_dir, mut brokers, first, bootstrap, mut admin) = running_cluster(4).await;
    admin
        .create_topic("kept", 4, 3, &min_isr_2())
        .await
        .expect("create");
    let p = sluice_e2e::rd::producer(&bootstrap, &[("acks", "all")]).expect("producer");
    let mut acked = Vec::new();
    for partition in 0..4 {
        let offsets = sluice_e2e::rd::produce_n(&p, "kept", partition, 500)
            .await
            .expect("produce");
        acked.push(offsets.len());
    }
    drop(p);
    let hosted: Vec<i32> = admin
        .describe_cluster()
        .await
        .expect("describe")
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&3))
        .map(|p| p.partition)
        .collect();
    assert!(!hosted.is_empty(), "broker 3 hosts nothing");

    let (ctx, mut api) = context(&[("ns/demo", first.clone())]);
    let claims = |three: &str| -> Vec<(i64, String)> {
        (0..4)
            .map(|i| {
                let uid = if i == 3 {
                    three.to_string()
                } else {
                    format!("uid-{i}")
                };
                (i, uid)
            })
            .collect()
    };
    let ready = |down: Option<i64>| -> Vec<Value> {
        (0..4).map(|i| pod(i, "r1", Some(i) != down)).collect()
    };
    let settled = json!({"appliedReplicas": 4, "balancedReplicas": 4});
    let scene = Scene {
        revision: Some("r1".into()),
        pods: Some(ready(None)),
        claims: claims("uid-3-old"),
    };
    let r = scene_round(&scaled_cluster(4, settled), ctx.clone(), &mut api, &scene).await;
    let three = &r.status["brokers"][3];
    assert_eq!(three["volume"], "uid-3-old", "{three}");
    assert_eq!(three["state"], "Running", "{three}");
    assert_eq!(three["replicas"], hosted.len());

    // The volume is lost: the broker stops, its data is gone, and its pod
    // comes back on a new, empty claim.
    brokers[3].kill9().expect("kill");
    std::fs::remove_dir_all(brokers[3].data_dir()).expect("wipe");
    let scene = Scene {
        revision: Some("r1".into()),
        pods: Some(ready(Some(3))),
        claims: claims("uid-3-new"),
    };
    let r = scene_round(&scaled_cluster(4, r.status), ctx.clone(), &mut api, &scene).await;
    let three = &r.status["brokers"][3];
    assert_eq!(three["state"], "Rebuilding", "{three}");
    assert_eq!(three["volume"], "uid-3-new");
    // What it must hold again: its partitions' bytes on the other brokers.
    assert!(
        three["rebuildBytes"].as_u64().is_some_and(|b| b > 0),
        "{three}"
    );
    assert!(
        three["message"]
            .as_str()
            .is_some_and(|m| m.contains("data-demo-3")),
        "{three}"
    );
    assert!(
        r.events.contains(&"VolumeReplaced".to_string()),
        "{:?}",
        r.events
    );

    // It starts again, empty, copies its replicas back, and is Running
    // once every one of them is in sync again.
    brokers[3].restart().expect("restart");
    let scene = Scene {
        revision: Some("r1".into()),
        pods: Some(ready(None)),
        claims: claims("uid-3-new"),
    };
    let mut status = r.status;
    let mut messages = Vec::new();
    let mut rebuilt = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = scene_round(&scaled_cluster(4, status), ctx.clone(), &mut api, &scene).await;
        status = r.status;
        let three = &status["brokers"][3];
        if three["state"] == "Rebuilding" {
            messages.push(three["message"].as_str().unwrap_or_default().to_string());
            continue;
        }
        assert_eq!(three["state"], "Running", "{three}");
        assert_eq!(three["inSyncReplicas"], hosted.len(), "{three}");
        rebuilt = r.events.contains(&"BrokerRebuilt".to_string());
        break;
    }
    assert!(rebuilt, "not rebuilt: {messages:?}");

    // Its copies are whole again: as large as the leaders'.
    let mut mine = AdminClient::connect(&brokers[3].bootstrap(), Duration::from_secs(5))
        .await
        .expect("admin on broker 3");
    let local = mine.local_partition_sizes().await.expect("sizes");
    let info = admin.describe_cluster().await.expect("describe");
    for p in info.partitions.iter().filter(|p| p.replicas.contains(&3)) {
        let leader = &brokers[p.leader as usize];
        let mut l = AdminClient::connect(&leader.bootstrap(), Duration::from_secs(5))
            .await
            .expect("admin on the leader");
        let theirs = l.local_partition_sizes().await.expect("sizes");
        let key = ("kept".to_string(), p.partition);
        assert!(
            theirs.get(&key).is_some_and(|n| *n > 0),
            "leader {} of kept-{}: {theirs:?}",
            p.leader,
            p.partition
        );
        assert_eq!(local.get(&key), theirs.get(&key), "kept-{}", p.partition);
    }
    // And every acknowledged record is there.
    let want: usize = acked.iter().sum();
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        sluice_e2e::rd::consume(&b, "kept", 4, want, Duration::from_secs(60))
    })
    .await
    .expect("join")
    .expect("consume");
    assert_eq!(got.len(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_fails_no_write() {
    let (_dir, mut brokers, first, bootstrap, mut admin) = running_cluster(3).await;
    admin
        .create_topic("orders", 6, 3, &min_isr_2())
        .await
        .expect("orders");
    let load = sluice_e2e::rd::AckedLoad::start(&bootstrap, "orders", 0).expect("load");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Each deleted pod is a broker that stops on SIGTERM (handing its
    // leaderships over) and starts again on the new template, as the
    // StatefulSet would recreate it.
    let (ctx, mut api) = context(&[("ns/demo", first.clone())]);
    let mut status = json!({"appliedReplicas": 3, "balancedReplicas": 3,
                            "plan": {"phase": "Balanced", "targetBrokers": 3, "message": "balanced"}});
    let mut revisions = ["rev-1"; 3];
    let mut order = Vec::new();
    let mut blocked = Vec::new();
    for _ in 0..120 {
        let scene = Scene {
            revision: Some("rev-2".into()),
            pods: Some(
                (0..3)
                    .map(|i| pod(i, revisions[i as usize], true))
                    .collect(),
            ),
            ..Scene::default()
        };
        let r = scene_round(&scaled_cluster(3, status), ctx.clone(), &mut api, &scene).await;
        status = r.status;
        let c = condition(&status, "RollingRestart");
        if c["status"] == "False" {
            break;
        }
        if c["reason"] == "Blocked" {
            blocked.push(c["message"].as_str().unwrap_or_default().to_string());
        }
        for pod in &r.deleted {
            let b: usize = pod
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("ordinal");
            let code = tokio::task::block_in_place(|| brokers[b].terminate()).expect("stop");
            assert_eq!(code, Some(0), "broker {b} did not stop cleanly");
            tokio::task::block_in_place(|| brokers[b].restart()).expect("start");
            revisions[b] = "rev-2";
            order.push(b);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        condition(&status, "RollingRestart")["reason"],
        "UpToDate",
        "order {order:?}, blocked {blocked:?}"
    );
    let mut rolled = order.clone();
    rolled.sort_unstable();
    assert_eq!(rolled, vec![0, 1, 2], "each broker once: {order:?}");

    // The producer saw retriable errors at most (librdkafka retries them
    // within its delivery timeout): every write was acknowledged, and every
    // acknowledged record reads back once.
    let result = load.finish().await.expect("load");
    assert_eq!(result.failed, 0, "{:?}", result.first_errors);
    assert!(
        result.acked.len() >= 1000,
        "{} acknowledged",
        result.acked.len()
    );
    let acked = result.acked;
    tokio::task::spawn_blocking(move || {
        sluice_e2e::rd::check_acknowledged(&bootstrap, "orders", 6, &acked, Duration::from_secs(60))
    })
    .await
    .expect("join")
    .expect("read back");
}
