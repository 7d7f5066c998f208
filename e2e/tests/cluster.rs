//! Three broker processes on loopback as one cluster (metadata quorum over
//! the internal listeners), driven by the Rust `rdkafka` crate: the
//! cluster's metadata, a replicated topic (RF 3, `min.insync.replicas=2`)
//! spread over all brokers, `acks=all` produce and consume through any
//! broker, a consumer group coordinated across brokers, a broker killed with
//! `kill -9` while an idempotent producer writes (no acknowledged record
//! lost or duplicated), its return into every ISR, and a controlled
//! shutdown after which `acks=all` goes on with two replicas.

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

/// Waits until every partition of `topic` has `n` in-sync replicas.
fn wait_for_isr(bootstrap: &str, topic: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = metadata(bootstrap) {
            if let Some(t) = m.topics().iter().find(|t| t.name() == topic) {
                if t.partitions().len() == PARTITIONS as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.isr().len() == n && p.leader() >= 0)
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("partitions of {topic} without {n} in-sync replicas after 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the whole topic and compares it with what was acknowledged.
async fn check(bootstrap: &str, acked: &BTreeMap<(i32, i64), String>) -> Result<()> {
    let b = bootstrap.to_string();
    let n = acked.len();
    let got = tokio::task::spawn_blocking(move || {
        consume(&b, TOPIC, PARTITIONS, n, Duration::from_secs(60))
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
        &read == acked,
        "every acknowledged record, once, at its offset"
    );
    Ok(())
}

/// Produces `values` with keys, waits for every acknowledgement; returns
/// the acknowledged `(partition, offset) -> value` and the failures.
async fn produce_all(
    prod: &rdkafka::producer::FutureProducer,
    values: Vec<String>,
    mut on_half: impl FnMut() -> Result<()>,
) -> Result<(BTreeMap<(i32, i64), String>, usize)> {
    let half = values.len() / 3;
    let mut futures = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        if i == half {
            on_half()?;
        }
        futures.push(
            prod.send_result(FutureRecord::to(TOPIC).key(v).payload(v))
                .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
        );
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    for (f, v) in futures.into_iter().zip(values) {
        match f.await.context("delivery future dropped")? {
            Ok(d) => {
                acked.insert((d.partition, d.offset), v);
            }
            Err(_) => failed += 1,
        }
    }
    Ok((acked, failed))
}

/// The broker coordinating `group`, asked with FindCoordinator.
fn coordinator_of(bootstrap: &str, group: &str) -> Result<i32> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = bootstrap.split(',').next().context("bootstrap")?;
    loop {
        let mut s = sluice_e2e::wire::connect(first)?;
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        sluice_e2e::wire::send(
            &mut s,
            &sluice_e2e::wire::frame(ApiKey::FindCoordinator, 3, 1, &req)?,
        )?;
        let (_, r): (i32, FindCoordinatorResponse) =
            sluice_e2e::wire::read_response(&mut s, ApiKey::FindCoordinator, 3)?;
        if r.error_code == 0 {
            return Ok(r.node_id.0);
        }
        ensure!(
            Instant::now() < deadline,
            "no coordinator for {group}: error {}",
            r.error_code
        );
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
            // A dead broker (killed by the test) is retried by librdkafka.
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
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

    // One cluster: every broker reports the same three brokers.
    let m = tokio::task::block_in_place(|| wait_for_brokers(&brokers[0].bootstrap(), 3))?;
    let ids: BTreeSet<i32> = m.brokers().iter().map(|b| b.id()).collect();
    ensure!(ids == BTreeSet::from([0, 1, 2]), "brokers {ids:?}");
    for b in &brokers[1..] {
        tokio::task::block_in_place(|| wait_for_brokers(&b.bootstrap(), 3))?;
    }

    // A replicated topic, created through any broker, spread over all.
    let admin = create_orders(&brokers[1].bootstrap()).await?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = admin
        .create_topics(
            &[NewTopic::new("rf4", 3, TopicReplication::Fixed(4))],
            &opts,
        )
        .await?;
    ensure!(
        matches!(
            &res[0],
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
        ),
        "four replicas on three brokers are refused: {res:?}"
    );
    let leaders = tokio::task::block_in_place(|| wait_for_leaders(&all, TOPIC))?;
    let leading: BTreeSet<i32> = leaders.values().copied().collect();
    ensure!(
        leading == BTreeSet::from([0, 1, 2]),
        "leaders spread over all brokers: {leaders:?}"
    );
    tokio::task::block_in_place(|| wait_for_isr(&all, TOPIC, 3))?;

    // acks=all through one broker's address; the client routes each record
    // to its partition's leader.
    let prod = producer(&brokers[0].bootstrap(), &[("acks", "all")])?;
    let values: Vec<String> = (0..RECORDS).map(|i| format!("value-{i}")).collect();
    let (mut acked, failed) = produce_all(&prod, values, || Ok(())).await?;
    ensure!(failed == 0 && acked.len() == RECORDS, "{failed} failed");
    let used: BTreeSet<i32> = acked.keys().map(|(p, _)| *p).collect();
    ensure!(
        used.len() == PARTITIONS as usize,
        "keys spread over all partitions: {used:?}"
    );
    check(&all, &acked).await?;

    // A consumer group: coordinated by the leader of its offsets partition;
    // the second reader of the group finds everything committed.
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

    // kill -9 a broker while an idempotent producer writes: its leaderships
    // move inside the ISR, the producer retries, and every acknowledged
    // record is read back once, at its offset.
    let prod = producer(&all, &[("acks", "all"), ("enable.idempotence", "true")])?;
    let values: Vec<String> = (RECORDS..2 * RECORDS)
        .map(|i| format!("value-{i}"))
        .collect();
    // The victim is the group's coordinator: its successor must load the
    // group's commits from the replicated offsets log.
    let a = all.clone();
    let v = tokio::task::spawn_blocking(move || coordinator_of(&a, "g-cluster")).await??;
    ensure!((0..3).contains(&v), "coordinator {v}");
    let v = v as usize;
    let victim = &mut brokers[v];
    let (more, failed) = produce_all(&prod, values, || victim.kill9()).await?;
    ensure!(
        failed == 0,
        "{failed} records were not acknowledged through the failover"
    );
    acked.extend(more);
    ensure!(acked.len() == 2 * RECORDS);
    check(&all, &acked).await?;
    let m = tokio::task::block_in_place(|| metadata(&all))?;
    let t = m
        .topics()
        .iter()
        .find(|t| t.name() == TOPIC)
        .context("topic")?;
    let vi = v as i32;
    ensure!(
        t.partitions()
            .iter()
            .all(|p| p.leader() != vi && !p.isr().contains(&vi)),
        "broker {v} leads nothing and left every ISR"
    );
    // The group resumes from its commit on its new coordinator: only the
    // records written since.
    let a = all.clone();
    let resumed = tokio::task::spawn_blocking(move || {
        group_read(&a, "g-cluster", 2 * RECORDS, Duration::from_secs(15))
    })
    .await??;
    ensure!(
        resumed == RECORDS,
        "after its coordinator died the group read {resumed} records, not the {RECORDS} new ones"
    );

    // It comes back, truncates to the leaders' epochs, catches up and
    // rejoins every ISR.
    brokers[v].restart()?;
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    tokio::task::block_in_place(|| wait_for_isr(&all, TOPIC, 3))?;
    check(&all, &acked).await?;

    // SIGTERM: a controlled shutdown (exit 0). Two of three replicas still
    // meet min.insync.replicas=2, so acks=all goes on.
    let code = brokers[0].terminate()?;
    ensure!(code == Some(0), "controlled shutdown exits 0, got {code:?}");
    let rest = format!("{},{}", brokers[1].bootstrap(), brokers[2].bootstrap());
    let m = tokio::task::block_in_place(|| wait_for_brokers(&rest, 2))?;
    ensure!(
        m.brokers().iter().all(|b| b.id() != 0),
        "broker 0 left the metadata"
    );
    let prod = producer(&rest, &[("acks", "all")])?;
    let values: Vec<String> = (0..300).map(|i| format!("after-{i}")).collect();
    let (more, failed) = produce_all(&prod, values, || Ok(())).await?;
    ensure!(
        failed == 0,
        "acks=all on two of three replicas: {failed} failed"
    );
    acked.extend(more);
    brokers[0].restart()?;
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    tokio::task::block_in_place(|| wait_for_isr(&all, TOPIC, 3))?;
    check(&all, &acked).await?;
    Ok(())
}

/// A client that lost a leader asks the survivors who leads now, within
/// milliseconds of the crash, before the controller has fenced the dead
/// broker. The answer names the new leaders, not the dead one: a broker
/// that finds a leader's listener refusing connections holds its answer
/// until the controller has moved the leaderships (decision 0020).
/// Told the dead leader, librdkafka would stop asking and look again only
/// on its once-a-second scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_right_after_a_leader_dies_names_the_new_leaders() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut brokers = start_cluster(dir.path(), 3, &[])?;
    let all = bootstrap_all(&brokers);
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    create_orders(&all).await?;
    tokio::task::block_in_place(|| wait_for_isr(&all, TOPIC, 3))?;

    // The victim leads partitions and is not the controller (a controller
    // crash adds a quorum election before anyone can move leaderships).
    let leaders = tokio::task::block_in_place(|| wait_for_leaders(&all, TOPIC))?;
    let controller_id = controller_of(&brokers[0].bootstrap())?;
    let victim = (0..3)
        .find(|b| Some(*b) != controller_id && leaders.values().any(|l| l == b))
        .context("a partition leader that is not the controller")?;
    let rest: Vec<String> = (0..3)
        .filter(|b| *b != victim)
        .map(|b| brokers[b as usize].bootstrap())
        .collect();
    // Pipelined acks=all produce requests on one connection (librdkafka
    // keeps several in flight): answered in request order, without
    // errors, with consecutive offsets; a request of another kind behind
    // them is answered after them.
    let leader0 = leaders.get(&0).copied().context("leader of partition 0")?;
    pipelined_produce(&brokers[leader0 as usize].bootstrap())?;

    // The request goes out the moment the process is gone, as a client's
    // does when its connection to the leader drops.
    brokers[victim as usize].kill9()?;
    let killed = Instant::now();
    let r = metadata_of(&rest[0], TOPIC)?;
    let answered = killed.elapsed();
    let named: Vec<(i32, i32)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    ensure!(
        named.len() == PARTITIONS as usize && named.iter().all(|(_, l)| *l >= 0 && *l != victim),
        "asked {answered:?} after broker {victim} died, the answer named {named:?}"
    );
    println!("metadata {answered:?} after the kill named the new leaders {named:?}");

    // The whole cluster stopped at once (SIGTERM to all three, as a
    // `helm uninstall` or `docker compose down` does): nobody can take
    // their partitions, and a broker whose own fencing cannot commit (the
    // other voters are gone) must still exit, cleanly.
    brokers[victim as usize].restart()?;
    tokio::task::block_in_place(|| wait_for_brokers(&all, 3))?;
    for b in &brokers {
        b.sigterm()?;
    }
    for (i, b) in brokers.iter_mut().enumerate() {
        let code = b.wait_exit()?;
        ensure!(
            code.is_none() || code == Some(0),
            "broker {i} exited with {code:?}"
        );
    }
    Ok(())
}

/// Creates the RF 3 topic (`min.insync.replicas=2`) through `bootstrap`.
async fn create_orders(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let res = admin.create_topics(&[topic], &opts).await?;
    ensure!(res[0].is_ok(), "{res:?}");
    Ok(admin)
}

/// Five acks=all produce requests of ten records each to partition 0 and a
/// Metadata request, sent in one write to the partition's leader.
fn pipelined_produce(bootstrap: &str) -> Result<()> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, ProduceResponse};
    use kafka_protocol::messages::{MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut bytes = Vec::new();
    for corr in 1..=5 {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(sluice_e2e::wire::batch(10, 100)?)),
                    ]),
            ]);
        bytes.extend(sluice_e2e::wire::frame(ApiKey::Produce, 9, corr, &req)?);
    }
    let req = MetadataRequest::default().with_topics(Some(vec![]));
    bytes.extend(sluice_e2e::wire::frame(ApiKey::Metadata, 1, 6, &req)?);
    let mut s = sluice_e2e::wire::connect(bootstrap)?;
    sluice_e2e::wire::send(&mut s, &bytes)?;
    let mut offsets = Vec::new();
    for corr in 1..=5 {
        let (got, r): (i32, ProduceResponse) =
            sluice_e2e::wire::read_response(&mut s, ApiKey::Produce, 9)?;
        ensure!(got == corr, "answer {got} came where {corr} was due");
        let p = &r.responses[0].partition_responses[0];
        ensure!(p.error_code == 0, "produce {corr}: error {}", p.error_code);
        offsets.push(p.base_offset);
    }
    ensure!(
        offsets.windows(2).all(|w| w[1] == w[0] + 10),
        "ten records each, in order: base offsets {offsets:?}"
    );
    let (got, _): (i32, MetadataResponse) =
        sluice_e2e::wire::read_response(&mut s, ApiKey::Metadata, 1)?;
    ensure!(
        got == 6,
        "the Metadata answer came as {got}, after the produce answers"
    );
    Ok(())
}

/// A Metadata (v4) answer for one topic, from the broker at `bootstrap`.
fn metadata_of(bootstrap: &str, topic: &str) -> Result<kafka_protocol::messages::MetadataResponse> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    sluice_e2e::wire::metadata(bootstrap, 4, &req)
}

/// The controller's id, as a Metadata (v1) answer names it.
fn controller_of(bootstrap: &str) -> Result<Option<i32>> {
    let req = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![]));
    let r = sluice_e2e::wire::metadata(bootstrap, 1, &req)?;
    Ok((r.controller_id.0 >= 0).then_some(r.controller_id.0))
}
