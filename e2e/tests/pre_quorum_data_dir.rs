//! A data directory written by a broker from before every broker was a
//! quorum member (`e2e/fixtures/pre-quorum-data-dir.tar.gz`, written by
//! `e2e/fixtures/pre-quorum-data-dir.py` with confluent-kafka against the
//! broker of commit 1ab3766) opens in today's broker, alone, with nothing
//! lost: the topic with its id, partitions and config, every record, the
//! group's committed offsets and the idempotent producer's state
//! (docs/decisions/0027). The same directory given other voters is refused
//! with a message that says what to do.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_e2e::rd::consume;
use sluice_e2e::wire::{self, connect, frame, read_response, send};
use sluice_e2e::{BrokerProcess, free_port};

/// The fixture's topic `orders`, as the old broker created it.
const ORDERS_ID: &str = "d76e01bf-cc0f-4115-8dfc-0630074ca33b";

fn unpack(into: &Path) -> Result<()> {
    std::fs::create_dir_all(into)?;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pre-quorum-data-dir.tar.gz");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(into)
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar -xzf {} failed", fixture.display());
    Ok(())
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Produces one batch of producer 0, epoch 0 (the fixture's idempotent
/// producer) at `sequence` to `orders-0`: (error code, base offset).
fn produce_as_old_producer(bootstrap: &str, sequence: i32) -> Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("orders"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(wire::producer_batch(1, 8, 0, 0, sequence)?)),
                ]),
        ]);
    let mut s = connect(bootstrap)?;
    send(&mut s, &frame(ApiKey::Produce, 9, 1, &req)?)?;
    let (_, resp): (i32, ProduceResponse) = read_response(&mut s, ApiKey::Produce, 9)?;
    let p = &resp.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_from_before_the_quorum_opens_with_nothing_lost() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    unpack(&data)?;
    let broker = BrokerProcess::start(&data, &[])?;
    let bootstrap = broker.bootstrap();

    // The topic, with the id and partition count it had.
    let md = wire::metadata(
        &bootstrap,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("orders"))),
        ])),
    )?;
    let t = &md.topics[0];
    ensure!(t.error_code == 0, "orders: error {}", t.error_code);
    ensure!(
        t.topic_id.to_string() == ORDERS_ID,
        "orders has id {}, the old broker gave it {ORDERS_ID}",
        t.topic_id
    );
    ensure!(
        t.partitions.len() == 2,
        "orders has {} partitions",
        t.partitions.len()
    );

    // Its config.
    let mut s = connect(&bootstrap)?;
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
    ]);
    send(&mut s, &frame(ApiKey::DescribeConfigs, 4, 2, &describe)?)?;
    let (_, configs): (i32, DescribeConfigsResponse) =
        read_response(&mut s, ApiKey::DescribeConfigs, 4)?;
    let retention = configs.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .and_then(|c| c.value.as_ref().map(|v| v.to_string()));
    ensure!(
        retention.as_deref() == Some("86400000"),
        "orders' retention.ms is {retention:?}, the old broker had 86400000"
    );

    // Every record.
    let records = consume(&bootstrap, "orders", 2, 10, Duration::from_secs(30))?;
    let mut values: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    want.sort();
    ensure!(values == want, "read back {values:?}");

    // The group's committed offsets.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "migrators")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    tpl.add_partition("orders", 1);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .with_context(|| format!("the committed offsets; broker log:\n{}", broker.log()))?;
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    ensure!(
        offsets == [Offset::Offset(3), Offset::Offset(2)],
        "migrators' committed offsets are {offsets:?}, the old broker had 3 and 2"
    );

    // The idempotent producer's state: its last batch (sequence 4 at
    // offset 4) sent again is a duplicate answered with the offset it
    // had; the next sequence follows it. A broker that lost the state
    // would refuse sequence 5 of a producer it does not know.
    let (code, offset) = produce_as_old_producer(&bootstrap, 4)?;
    ensure!(
        (code, offset) == (0, 4),
        "sequence 4 again: error {code} at {offset}, want a duplicate at offset 4"
    );
    let (code, offset) = produce_as_old_producer(&bootstrap, 5)?;
    ensure!(
        (code, offset) == (0, 5),
        "sequence 5: error {code} at {offset}, want it appended at offset 5"
    );

    // Restarted, it stays as it is: the topics are the quorum's now.
    let mut broker = broker;
    broker.terminate()?;
    broker.restart()?;
    let records = consume(
        &broker.bootstrap(),
        "orders",
        2,
        11,
        Duration::from_secs(30),
    )?;
    ensure!(
        records.len() == 11,
        "after a restart: {} records",
        records.len()
    );
    Ok(())
}

#[test]
fn a_data_directory_from_before_the_quorum_is_refused_by_a_cluster() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    unpack(&data)?;
    let (mine, other) = (free_port()?, free_port()?);
    let voters = format!("1@127.0.0.1:{mine},2@127.0.0.1:{other}");
    let internal = format!("127.0.0.1:{mine}");
    let out = Command::new(sluice_e2e::broker_bin())
        .args(["--log-dirs"])
        .arg(&data)
        .args([
            "--listeners",
            "127.0.0.1:0",
            "--metrics-listener",
            "127.0.0.1:0",
            "--controller-quorum-voters",
            &voters,
            "--internal-listener",
            &internal,
        ])
        .output()
        .context("running the broker")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        bail!("a cluster broker opened a pre-quorum data directory: {stderr}");
    }
    ensure!(
        stderr.contains("start it once without controller.quorum.voters"),
        "the refusal does not say what to do: {stderr}"
    );
    // Nothing of it was touched: the topic's records are still there.
    ensure!(data.join("orders-0/00000000000000000000.log").exists());
    ensure!(!data.join("meta/cluster-member").exists());
    Ok(())
}

/// DescribeConfigs of this broker (id 1): `name -> (value, source)`.
fn broker_config_sources(bootstrap: &str, name_: &str) -> Result<Option<(String, i8)>> {
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(Some(vec![StrBytes::from_string(name_.to_string())])),
    ]);
    let mut s = connect(bootstrap)?;
    send(&mut s, &frame(ApiKey::DescribeConfigs, 4, 3, &describe)?)?;
    let (_, configs): (i32, DescribeConfigsResponse) =
        read_response(&mut s, ApiKey::DescribeConfigs, 4)?;
    Ok(configs.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == name_)
        .map(|c| {
            (
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                c.config_source,
            )
        }))
}

/// A dynamic broker setting that a broker from before they were in the
/// metadata quorum kept in `meta/broker-configs.json` (a JSON object of
/// names and values) is this broker's own setting after the upgrade, and
/// stays so across a restart once the file is gone.
#[test]
fn a_dynamic_broker_setting_kept_in_the_data_directory_moves_into_the_quorum() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &[])?;
    broker.terminate()?;
    let file = data.join("meta").join("broker-configs.json");
    std::fs::write(&file, "{\n  \"log.retention.ms\": \"5400000\"\n}")?;
    broker.restart()?;
    // Source 2: DYNAMIC_BROKER_CONFIG, this broker's own.
    let want = Some(("5400000".to_string(), 2));
    let got = broker_config_sources(&broker.bootstrap(), "log.retention.ms")?;
    ensure!(
        got == want,
        "log.retention.ms after the upgrade: {got:?}; log:\n{}",
        broker.log()
    );
    ensure!(!file.exists(), "{} is still there", file.display());
    broker.terminate()?;
    broker.restart()?;
    let got = broker_config_sources(&broker.bootstrap(), "log.retention.ms")?;
    ensure!(got == want, "log.retention.ms after a restart: {got:?}");
    Ok(())
}
