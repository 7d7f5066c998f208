//! The example resources under `examples/` are valid for the Rust types
//! (field names, types and defaults), so `kubectl apply` of them matches
//! what the operator reads.

use std::path::Path;

use sluice_operator::crd::DeletionPolicy;
use sluice_operator::{KafkaCluster, Topic};

fn read(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn example_kafkacluster_parses_with_defaults() {
    let kc: KafkaCluster =
        serde_yaml_ng::from_str(&read("kafkacluster.yaml")).expect("KafkaCluster");
    assert_eq!(kc.spec.replicas, 3);
    assert_eq!(kc.spec.storage.size, "10Gi");
    assert_eq!(kc.spec.listeners.len(), 1, "defaulted");
    assert_eq!(
        (
            kc.spec.listeners[0].name.as_str(),
            kc.spec.listeners[0].port
        ),
        ("plain", 9092),
        "defaulted"
    );
    assert_eq!(kc.spec.ports.quorum, 9093, "defaulted");
    assert_eq!(
        kc.spec
            .config
            .get("min.insync.replicas")
            .map(String::as_str),
        Some("2")
    );
    // Every rendered object comes out of the example.
    sluice_operator::resources::statefulset(&kc).expect("renders");
}

#[test]
fn example_topic_parses() {
    let t: Topic = serde_yaml_ng::from_str(&read("topic.yaml")).expect("Topic");
    assert_eq!(t.kafka_name().as_deref(), Some("orders"));
    assert_eq!(t.spec.partitions, 6);
    assert_eq!(t.spec.replication_factor, 3);
    assert_eq!(t.spec.deletion_policy, DeletionPolicy::Retain);
}

#[test]
fn example_secure_kafkacluster_parses_and_is_secured() {
    let kc: KafkaCluster =
        serde_yaml_ng::from_str(&read("kafkacluster-secure.yaml")).expect("KafkaCluster");
    assert!(sluice_operator::resources::secured(&kc));
    let names: Vec<(&str, &str)> = kc
        .spec
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.protocol()))
        .collect();
    assert_eq!(names, [("scram", "SASL_SSL"), ("mtls", "SSL")]);
    let props = sluice_operator::resources::server_properties(&kc).expect("renders");
    assert!(props.contains("super.users="), "{props}");
    sluice_operator::resources::statefulset(&kc).expect("renders");
}

#[test]
fn example_kafkausers_parse_into_their_logins_and_acls() {
    use serde::Deserialize;
    let text = read("kafkauser.yaml");
    let users: Vec<sluice_operator::KafkaUser> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| sluice_operator::KafkaUser::deserialize(doc).expect("KafkaUser"))
        .collect();
    let logins: Vec<(String, String)> = users
        .iter()
        .map(|u| {
            (
                sluice_operator::controller::user::principal(u),
                serde_json::to_value(u.spec.authentication.type_)
                    .expect("type")
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        logins,
        [
            ("User:app".to_string(), "scram-sha-512".to_string()),
            ("User:CN=app-tls".to_string(), "tls".to_string())
        ]
    );
    let counts: Vec<usize> = users
        .iter()
        .map(|u| {
            assert_eq!(u.spec.cluster_ref, "secure");
            let rules = &u.spec.authorization.as_ref().expect("acls").acls;
            let acls = sluice_operator::controller::user::bindings(
                &sluice_operator::controller::user::principal(u),
                rules,
            );
            assert!(
                acls.iter().all(|a| a.host == "*" && a.permission == 3),
                "allow from any host"
            );
            acls.len()
        })
        .collect();
    assert_eq!(counts, [5, 4], "one binding per operation");
}
