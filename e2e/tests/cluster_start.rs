//! Three fresh brokers started together, and clients at once, twenty times
//! over: the first Metadata answer of every broker, asked the moment its
//! port exists, names a controller among the three (a broker serves
//! clients only once the quorum has registered and unfenced it;
//! connections wait in the port's backlog until then, as with Kafka); and
//! as soon as Metadata lists the three brokers, librdkafka's admin client
//! creates a 6-partition RF 3 topic within its timeout (it once gave up,
//! one start in twenty, with "Failed while waiting for controller").
//! Asked before three brokers are live, an RF 3 topic is refused with
//! INVALID_REPLICATION_FACTOR, as Kafka refuses it.
//!
//! Then all three are killed (`kill -9`) and started again at once: each
//! one's first Metadata answer names a controller and knows the topic. (A
//! restarted broker has its metadata log on disk: before the start-up gate
//! it answered from that replay at once, before any quorum leader was
//! known.)

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_e2e::start_cluster;

const ROUNDS: usize = 20;
const TOPIC: &str = "at-start";

/// A broker's first Metadata (v4) answer for the topic: the controller it
/// names and the topic's partition count (0 if unknown).
fn first_answer(bootstrap: &str) -> Result<(i32, usize)> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(TOPIC.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let r = sluice_e2e::wire::metadata(bootstrap, 4, &req)
        .with_context(|| format!("Metadata from {bootstrap}"))?;
    let partitions = r
        .topics
        .iter()
        .find(|t| t.error_code == 0)
        .map_or(0, |t| t.partitions.len());
    Ok((r.controller_id.0, partitions))
}

fn logs(brokers: &[sluice_e2e::BrokerProcess]) -> String {
    brokers
        .iter()
        .map(|b| b.log())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Each broker's first answer, asked on a connection of its own.
fn ask_each(
    brokers: &[sluice_e2e::BrokerProcess],
) -> Vec<tokio::task::JoinHandle<Result<(i32, usize)>>> {
    brokers
        .iter()
        .map(|b| {
            let addr = b.bootstrap();
            tokio::task::spawn_blocking(move || first_answer(&addr))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_start_up_gets_answers_that_name_the_controller() -> Result<()> {
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let mut brokers = start_cluster(dir.path(), 3, &[])?;
        let bootstrap = brokers
            .iter()
            .map(|b| b.bootstrap())
            .collect::<Vec<_>>()
            .join(",");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        // Asked while the admin client waits for the brokers.
        let firsts = ask_each(&brokers);
        let meta: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = tokio::task::block_in_place(|| {
                meta.fetch_metadata(None, Duration::from_secs(5))
                    .map(|m| m.brokers().len())
                    .unwrap_or(0)
            });
            if listed == 3 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "round {round}: Metadata lists {listed} brokers after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(30)));
        let topic = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(3));
        let res = admin.create_topics(&[topic], &opts).await;
        let created = started.elapsed();
        let res =
            res.with_context(|| format!("round {round}: CreateTopics; logs:\n{}", logs(&brokers)))?;
        ensure!(
            res.iter().all(|r| r.is_ok()),
            "round {round}: {res:?} after {created:?}; logs:\n{}",
            logs(&brokers)
        );
        for (i, f) in firsts.into_iter().enumerate() {
            let (controller, _) = f.await??;
            ensure!(
                (0..3).contains(&controller),
                "round {round}: broker {i}'s first Metadata answer names controller {controller}"
            );
        }
        took.push(created);

        for b in &mut brokers {
            b.kill9()?;
        }
        for b in &mut brokers {
            b.restart()?;
        }
        for (i, f) in ask_each(&brokers).into_iter().enumerate() {
            let (controller, partitions) = f.await??;
            ensure!(
                (0..3).contains(&controller) && partitions == 6,
                "round {round}: restarted broker {i}'s first Metadata answer names controller \
                 {controller} and {partitions} partitions of {TOPIC}; logs:\n{}",
                logs(&brokers)
            );
        }
        drop(brokers);
    }
    took.sort();
    println!(
        "start to topic created, {ROUNDS} rounds: min {:?}, median {:?}, max {:?}",
        took[0],
        took[ROUNDS / 2],
        took[ROUNDS - 1]
    );
    Ok(())
}
