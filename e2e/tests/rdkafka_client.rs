//! The Rust `rdkafka` crate (librdkafka built from source) against a real
//! broker process: codecs, admin, graceful shutdown and metrics.

use std::time::Duration;

use anyhow::{Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{consume, produce_n, producer};

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codecs_admin_shutdown_and_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[])?;
    let bootstrap = broker.bootstrap();
    let a = admin(&bootstrap)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));

    // Admin: create, duplicate, bad partitions, delete.
    let topics = [
        NewTopic::new("rd-codecs", 4, TopicReplication::Fixed(1)),
        NewTopic::new("rd-bad", 0, TopicReplication::Fixed(1)),
    ];
    let res = a.create_topics(&topics, &opts).await?;
    ensure!(res[0].is_ok(), "{res:?}");
    ensure!(
        matches!(&res[1], Err((_, RDKafkaErrorCode::InvalidPartitions))),
        "{res:?}"
    );
    let res = a.create_topics(&topics[..1], &opts).await?;
    ensure!(
        matches!(&res[0], Err((_, RDKafkaErrorCode::TopicAlreadyExists))),
        "{res:?}"
    );

    // Every codec, one partition each.
    let codecs = ["none", "gzip", "snappy", "lz4"];
    for (p, codec) in codecs.iter().enumerate() {
        let prod = producer(&bootstrap, &[("compression.type", codec), ("acks", "all")])?;
        let offsets = produce_n(&prod, "rd-codecs", p as i32, 250).await?;
        ensure!(
            offsets == (0..250).collect::<Vec<i64>>(),
            "{codec}: {offsets:?}"
        );
    }
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        consume(&b, "rd-codecs", 4, 1000, Duration::from_secs(30))
    })
    .await??;
    for p in 0..4 {
        let part: Vec<_> = got.iter().filter(|r| r.partition == p).collect();
        ensure!(part.len() == 250);
        for (i, r) in part.iter().enumerate() {
            ensure!(r.offset == i as i64);
            ensure!(r.key.as_deref() == Some(format!("key-{i}").as_bytes()));
            ensure!(r.value.as_deref() == Some(format!("value-{i}").as_bytes()));
        }
    }
    // zstd through the same path, with a large value spanning a big batch.
    let prod = producer(&bootstrap, &[("compression.type", "zstd")])?;
    let big = "z".repeat(200_000);
    prod.send(
        FutureRecord::to("rd-codecs")
            .partition(0)
            .key("big")
            .payload(&big),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)?;

    // Metrics reflect the traffic.
    let m = broker.metrics()?;
    ensure!(m.contains("sluice_broker_topic_bytes_in_total"), "{m}");
    ensure!(
        m.contains("sluice_network_requests_total{api=\"Produce\"}"),
        "{m}"
    );
    // Four partitions of ours, plus the 50 of __consumer_offsets once the
    // consumer (which has a group id) looked for its coordinator.
    let partitions = m
        .lines()
        .find_map(|l| l.strip_prefix("sluice_log_partitions "))
        .and_then(|v| v.trim().parse::<u32>().ok());
    ensure!(matches!(partitions, Some(4) | Some(54)), "{m}");

    // Delete, then unknown.
    let res = a.delete_topics(&["rd-codecs"], &opts).await?;
    ensure!(res[0].is_ok(), "{res:?}");
    let res = a.delete_topics(&["rd-codecs"], &opts).await?;
    ensure!(
        matches!(&res[0], Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))),
        "{res:?}"
    );
    ensure!(
        !dir.path().join("data").join("rd-codecs-0").exists(),
        "partition data left behind"
    );
    drop(a);

    // Graceful shutdown on SIGTERM: exit 0, and the next start is clean
    // (no recovery scan needed).
    let prod = producer(&bootstrap, &[("acks", "1")])?;
    produce_n(&prod, "after", 0, 10).await?;
    drop(prod);
    let code = broker.terminate()?;
    ensure!(code == Some(0), "exit code {code:?}: {}", broker.log());
    broker.restart()?;
    ensure!(
        broker.log().contains("clean_shutdown=true"),
        "{}",
        broker.log()
    );
    let b = bootstrap.clone();
    let got =
        tokio::task::spawn_blocking(move || consume(&b, "after", 1, 10, Duration::from_secs(20)))
            .await??;
    ensure!(got.len() == 10);
    Ok(())
}
