//! The admin client against a real sluice-broker process.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::{AdminClient, code, error_code};
use sluice_e2e::BrokerProcess;

#[tokio::test]
async fn manages_topics_on_a_real_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("broker");
    let mut a = AdminClient::connect(&broker.bootstrap(), Duration::from_secs(10))
        .await
        .expect("connect");

    let cfg = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
    a.create_topic("orders", 3, 1, &cfg).await.expect("create");
    let e = a
        .create_topic("orders", 3, 1, &cfg)
        .await
        .expect_err("duplicate");
    assert_eq!(error_code(&e), Some(code::TOPIC_ALREADY_EXISTS));
    let e = a
        .create_topic("bad", 1, 5, &BTreeMap::new())
        .await
        .expect_err("rf");
    assert_eq!(error_code(&e), Some(code::INVALID_REPLICATION_FACTOR));

    let topics = a
        .describe_topics(Some(&["orders", "nope"]))
        .await
        .expect("describe");
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].partitions, topics[0].replication_factor), (3, 1));

    a.create_partitions("orders", 5).await.expect("grow");
    let e = a.create_partitions("orders", 2).await.expect_err("shrink");
    assert_eq!(error_code(&e), Some(code::INVALID_PARTITIONS));
    assert_eq!(
        a.describe_topics(Some(&["orders"]))
            .await
            .expect("describe")[0]
            .partitions,
        5
    );

    let configs = a.topic_configs("orders").await.expect("configs");
    assert_eq!(
        configs.get("retention.ms"),
        Some(&("3600000".to_string(), true))
    );
    let changes = BTreeMap::from([
        ("retention.ms".to_string(), None),
        ("segment.bytes".to_string(), Some("1048576".to_string())),
    ]);
    a.alter_topic_configs("orders", &changes)
        .await
        .expect("alter");
    let configs = a.topic_configs("orders").await.expect("configs");
    assert!(!configs["retention.ms"].1, "back to the default");
    assert_eq!(configs["segment.bytes"], ("1048576".to_string(), true));
    let bad = BTreeMap::from([("segment.bytes".to_string(), Some("-1".to_string()))]);
    let e = a
        .alter_topic_configs("orders", &bad)
        .await
        .expect_err("invalid");
    assert_eq!(error_code(&e), Some(code::INVALID_CONFIG));

    let cluster = a.describe_cluster().await.expect("cluster");
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    let me = cluster.brokers[0].id;
    assert!(cluster.cluster_id.as_deref().is_some_and(|c| !c.is_empty()));
    let orders: Vec<_> = cluster
        .partitions
        .iter()
        .filter(|p| p.topic == "orders")
        .collect();
    assert_eq!(orders.len(), 5, "five partitions after the grow");
    assert!(orders.iter().all(|p| p.leader == me && p.isr == vec![me]));
    assert!(cluster.leader_count(me) >= 5);
    assert_eq!(cluster.under_replicated(me), 0);

    a.delete_topic("orders").await.expect("delete");
    let e = a.delete_topic("orders").await.expect_err("gone");
    assert_eq!(error_code(&e), Some(code::UNKNOWN_TOPIC_OR_PARTITION));
    assert!(
        a.describe_topics(None)
            .await
            .expect("all")
            .iter()
            .all(|t| t.name != "orders")
    );
}
