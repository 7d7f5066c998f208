//! Three broker processes on loopback as one cluster (metadata quorum over
//! the internal listeners), driven by the Rust `rdkafka` crate: the
//! cluster's metadata, a topic spread over all brokers, produce and consume
//! through any broker, a consumer group coordinated across brokers, a
//! broker killed and restarted, and a controlled shutdown of a voter.
//!
//! Partitions have one replica until data replication is wired into the
//! broker: a larger replication factor is refused with a clear error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::producer::FutureRecord;
use sluice_e2e::rd::{consume, producer};
use sluice_e2e::{BrokerProcess, start_cluster};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 3000;

fn bootstrap_all(brokers: &[BrokerProcess]) -> String {
    brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",")
}

fn metadata(bootstrap: &str) -> Result<Metadata> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    Ok(c.fetch_metadata(None, Duration::from_secs(10))?)
}

/// Waits until the cluster's metadata shows `n` brokers and a controller.
fn wait_for_brokers(bootstrap: &str, n: usize) -> Result<Metadata> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = metadata(bootstrap) {
            if m.brokers().len() == n {
                return Ok(m);
            }
        }
        if Instant::now() > deadline {
            bail!("the cluster did not show {n} brokers within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every partition of `topic` has a leader.
fn wait_for_leaders(bootstrap: &str, topic: &str) -> Result<BTreeMap<i32, i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = metadata(bootstrap) {
            if let Some(t) = m.topics().iter().find(|t| t.name() == topic) {
                let leaders: BTreeMap<i32, i32> = t
                    .partitions()
                    .iter()
                    .map(|p| (p.id(), p.leader()))
                    .collect();
                if leaders.len() == PARTITIONS as usize && leaders.values().all(|l| *l >= 0) {
                    return Ok(leaders);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("partitions of {topic} without a leader after 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A group consumer that reads until `want` records or the timeout, and
/// commits what it read.
fn group_read(bootstrap: &str, group: &str, want: usize, timeout: Duration) -> Result<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()?;
    c.subscribe(&[TOPIC])?;
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    while n < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                ensure!(m.payload().is_some(), "a record without a value");
                n += 1;
            }
            Some(Err(e)) => bail!("group consume: {e}"),
            None => {}
        }
    }
    if n > 0 {
        c.commit_consumer_state(CommitMode::Sync)?;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_one_cluster() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut brokers = start_cluster(dir.path(), 3, &[])?;
    let all = bootstrap_all(&brokers);

    // One cluster: every broker reports the same three brokers and cluster id.
    let m = tokio::task::block_in_place(|| wait_for_brokers(&brokers[0].bootstrap(), 3))?;
    let ids: BTreeSet<i32> = m.brokers().iter().map(|b| b.id()).collect();
    ensure!(ids == BTreeSet::from([0, 1, 2]), "brokers {ids:?}");
    for b in &brokers[1..] {
        tokio::task::block_in_place(|| wait_for_brokers(&b.bootstrap(), 3))?;
    }

    // Topics are created through any broker and spread over all of them.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers[1].bootstrap())
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &opts,
        )
        .await?;
    ensure!(res[0].is_ok(), "{res:?}");
    let res = admin
        .create_topics(
            &[NewTopic::new("rf3", 3, TopicReplication::Fixed(3))],
            &opts,
        )
        .await?;
    ensure!(
        matches!(
            &res[0],
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
        ),
        "replication factor 3 is refused until replication lands: {res:?}"
    );
    let leaders = tokio::task::block_in_place(|| wait_for_leaders(&all, TOPIC))?;
    let leading: BTreeSet<i32> = leaders.values().copied().collect();
    ensure!(
        leading == BTreeSet::from([0, 1, 2]),
        "partitions spread over all brokers: {leaders:?}"
    );

    // Produce through one broker's address; the client routes each record
    // to its partition's leader.
    let prod = producer(&brokers[0].bootstrap(), &[("acks", "all")])?;
    let mut futures = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        futures.push(
            prod.send_result(FutureRecord::to(TOPIC).key(&key).payload(&value))
                .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
        );
    }
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let d = f
            .await
            .context("delivery future dropped")?
            .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
        acked.insert((d.partition, d.offset), format!("value-{i}"));
    }
    ensure!(acked.len() == RECORDS);
    let used: BTreeSet<i32> = acked.keys().map(|(p, _)| *p).collect();
    ensure!(
        used.len() == PARTITIONS as usize,
        "keys spread over all partitions: {used:?}"
    );

    let check = |bootstrap: String, acked: BTreeMap<(i32, i64), String>| async move {
        let got = tokio::task::spawn_blocking(move || {
            consume(
                &bootstrap,
                TOPIC,
                PARTITIONS,
                RECORDS,
                Duration::from_secs(60),
            )
        })
        .await??;
        let read: BTreeMap<(i32, i64), String> = got
            .into_iter()
            .map(|c| {
                (
                    (c.partition, c.offset),
                    String::from_utf8_lossy(&c.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        ensure!(
            read == acked,
            "every acknowledged record, once, at its offset"
        );
        Ok::<_, anyhow::Error>(())
    };
    check(all.clone(), acked.clone()).await?;

    // A consumer group: its coordinator is the leader of its offsets
    // partition, on whichever broker that is; the second reader of the
    // group finds everything committed.
    let a = all.clone();
    let first = tokio::task::spawn_blocking(move || {
        group_read(&a, "g-cluster", RECORDS, Duration::from_secs(60))
    })
    .await??;
    ensure!(first == RECORDS, "the group read {first} of {RECORDS}");
    let a = all.clone();
    let second =
        tokio::task::spawn_blocking(move || group_read(&a, "g-cluster", 1, Duration::from_secs(8)))
            .await??;
    ensure!(
        second == 0,
        "committed offsets were found: nothing left to read, got {second}"
    );

    // kill -9 a broker and restart it: it rejoins with its partitions and
    // their data.
    brokers[2].kill9()?;
    brokers[2].restart()?;
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    tokio::task::block_in_place(|| wait_for_leaders(&all, TOPIC))?;
    check(all.clone(), acked.clone()).await?;

    // SIGTERM a quorum voter: a controlled shutdown (exit 0); the other two
    // keep a quorum (electing a new controller if it was the one) and keep
    // serving metadata.
    let code = brokers[0].terminate()?;
    ensure!(code == Some(0), "controlled shutdown exits 0, got {code:?}");
    let rest = format!("{},{}", brokers[1].bootstrap(), brokers[2].bootstrap());
    let m = tokio::task::block_in_place(|| wait_for_brokers(&rest, 2))?;
    ensure!(
        m.brokers().iter().all(|b| b.id() != 0),
        "broker 0 left the metadata"
    );
    brokers[0].restart()?;
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    tokio::task::block_in_place(|| wait_for_leaders(&all, TOPIC))?;
    check(all, acked).await?;
    Ok(())
}
