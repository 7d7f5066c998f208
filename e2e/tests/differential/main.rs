//! The differential suite: the same requests sent to one Sluice broker and
//! to one Apache Kafka node (4.3.1, KRaft, `e2e/kafka/kafka.sh`), the
//! answers normalised (what differs by nature: throttle times, ids,
//! addresses, timestamps, error message wording) and compared field by
//! field. A scenario whose answers differ fails the test unless
//! `tests/differential_accepted.txt` lists it with the reason; a listed
//! scenario whose answers now agree fails it too, so the list stays true.
//!
//! Scenarios are named as a user would search for the behaviour.

use std::collections::BTreeMap;
use std::fmt::Debug;

use anyhow::{Context, Result, bail};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use regex::Regex;
use sluice_e2e::BrokerProcess;
use sluice_e2e::apache_kafka::ApacheKafka;
use sluice_e2e::wire;

mod acls;
mod versions;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

/// A connection to `bootstrap`; `user@host:port` logs in first as that
/// user with SASL/PLAIN (password `user-secret`), as the authorization
/// tier's users do.
fn connect(bootstrap: &str) -> Result<std::net::TcpStream> {
    let Some((user, address)) = bootstrap.split_once('@') else {
        return wire::connect(bootstrap);
    };
    let mut c = wire::connect(address)?;
    let hs = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
    wire::send(&mut c, &wire::frame(ApiKey::SaslHandshake, 1, 1, &hs)?)?;
    let (_, h): (i32, SaslHandshakeResponse) =
        wire::read_response(&mut c, ApiKey::SaslHandshake, 1)?;
    anyhow::ensure!(h.error_code == 0, "SaslHandshake PLAIN to {address}: {h:?}");
    let token = format!("\0{user}\0{user}-secret");
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
    wire::send(&mut c, &wire::frame(ApiKey::SaslAuthenticate, 2, 2, &auth)?)?;
    let (_, a): (i32, SaslAuthenticateResponse) =
        wire::read_response(&mut c, ApiKey::SaslAuthenticate, 2)?;
    anyhow::ensure!(
        a.error_code == 0,
        "PLAIN login as {user} at {address}: {a:?}"
    );
    Ok(c)
}

/// One request and its answer, decoded.
fn call<Req: Encodable, Resp: Decodable>(
    bootstrap: &str,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Result<Resp> {
    let mut c = connect(bootstrap)?;
    wire::send(&mut c, &wire::frame(key, version, 7, req)?)?;
    let (_, resp): (i32, Resp) = wire::read_response(&mut c, key, version)
        .with_context(|| format!("{key:?} v{version} to {bootstrap}"))?;
    Ok(resp)
}

/// What a broker does with a raw frame: answers it, or closes the
/// connection (`shut`: the client stops writing after it).
fn outcome(bootstrap: &str, frame: &[u8], shut: bool) -> Result<String> {
    use std::io::Read;
    let mut c = wire::connect(bootstrap)?;
    wire::send(&mut c, frame)?;
    if shut {
        c.shutdown(std::net::Shutdown::Write)?;
    }
    let mut size = [0u8; 4];
    Ok(match c.read_exact(&mut size) {
        Ok(()) => "answered".to_string(),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            "closed".to_string()
        }
        Err(e) => format!("neither answered nor closed: {}", e.kind()),
    })
}

/// A topic created with `compression.type` = `codec`, an uncompressed
/// batch of three records produced to it: the codec, record count and
/// offsets of the batch a fetch returns.
fn stored_codec(b: &str, name: &str, codec: &str) -> Result<String> {
    stored_codec_with(b, name, &[("compression.type", codec)])
}

/// [`stored_codec`] for a topic created with `configs`.
fn stored_codec_with(b: &str, name: &str, configs: &[(&str, &str)]) -> Result<String> {
    created(b, name, 1, configs)?;
    let p = ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce(name, 0, -1)?)?;
    let f: FetchResponse = call(b, ApiKey::Fetch, 12, &fetch(name, 0, 0))?;
    let records = f
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .and_then(|p| p.records.clone())
        .context("no records fetched")?;
    let mut at = 0;
    let mut batches = Vec::new();
    while at + 61 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into()?);
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into()?) as usize;
        let attributes = i16::from_be_bytes(records[at + 21..at + 23].try_into()?);
        let count = i32::from_be_bytes(records[at + 57..at + 61].try_into()?);
        batches.push(format!(
            "base {base}, codec {}, {count} records",
            attributes & 7
        ));
        at += 12 + len;
    }
    Ok(format!("{p}\nstored: {batches:?}"))
}

/// Member ids are made up by the coordinator.
fn without_member_ids(text: &str) -> String {
    let re = Regex::new(r#"(member_id|leader): "[^"]*""#).expect("a valid pattern");
    re.replace_all(text, "$1: _").into_owned()
}

fn produce_batch(name: &str, batch: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(name))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ])
}

/// One request and its answer, normalised.
fn ask<Req: Encodable, Resp: Decodable + Debug>(
    bootstrap: &str,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Result<String> {
    let resp: Resp = call(bootstrap, key, version, req)?;
    Ok(normalise(&format!("{key:?} v{version}: {resp:#?}")))
}

/// DescribeConfigs, its entries in name order: Kafka lists them in the
/// order of a hash map of its own (clients look them up by name).
/// The value in effect of every config a DescribeConfigs answer lists.
fn config_values(b: &str, req: &DescribeConfigsRequest) -> Result<BTreeMap<String, String>> {
    let resp: DescribeConfigsResponse = call(b, ApiKey::DescribeConfigs, 4, req)?;
    Ok(resp
        .results
        .iter()
        .flat_map(|r| &r.configs)
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Asks until `name`'s value in effect is `value` (Kafka applies a
/// dynamic broker config once its metadata log reaches the broker, and
/// to the value of a topic config after its synonyms), for up to ten
/// seconds.
fn until_value(b: &str, req: &DescribeConfigsRequest, name: &str, value: &str) -> Result<()> {
    for _ in 0..50 {
        if config_values(b, req)?.get(name).map(String::as_str) == Some(value) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

fn ask_configs(b: &str, version: i16, req: &DescribeConfigsRequest) -> Result<String> {
    let mut resp: DescribeConfigsResponse = call(b, ApiKey::DescribeConfigs, version, req)?;
    for r in &mut resp.results {
        r.configs.sort_by(|x, y| x.name.cmp(&y.name));
    }
    Ok(normalise(&format!(
        "{:?} v{version}: {resp:#?}",
        ApiKey::DescribeConfigs
    )))
}

/// As [`ask`], asked again (every 200 ms, for up to 20 s) while the answer
/// is a coordinator still loading or not there yet (14, 15, 16): what a
/// client does before it sees the steady answer compared here.
fn settled<Req: Encodable, Resp: Decodable + Debug>(
    bootstrap: &str,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Result<String> {
    let mut last = String::new();
    for _ in 0..100 {
        last = ask::<Req, Resp>(bootstrap, key, version, req)?;
        if !["error_code: 14,", "error_code: 15,", "error_code: 16,"]
            .iter()
            .any(|c| last.contains(c))
        {
            return Ok(last);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(last)
}

/// What differs between two correct brokers by nature.
fn normalise(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"throttle_time_ms: \d+", "throttle_time_ms: _"),
        // The wording differs; whether there is a message does not.
        (
            r#"(?s)error_message: Some\(\s*"(?:[^"\\]|\\.)*",?\s*\)"#,
            "error_message: Some(_)",
        ),
        (r"topic_id: [0-9a-f-]+", "topic_id: _"),
        (r#"cluster_id: Some\(\s*"[^"]*",?\s*\)"#, "cluster_id: _"),
        (r#"cluster_id: "[^"]*""#, "cluster_id: _"),
        (r#"host: "[^"]*""#, "host: _"),
        (r"port: \d+", "port: _"),
        (r"producer_id: ProducerId\(\s*\d+,?\s*\)", "producer_id: _"),
        // An id handed out (not -1): Kafka's controller hands out blocks
        // from 0, Sluice's brokers each a range of their own (decision
        // 0027).
        (r"producer_id: \d+", "producer_id: _"),
        (r"timestamp: \d{12,}", "timestamp: _"),
        (r"session_id: \d+", "session_id: _"),
        (
            r#"(?s)records: Some\(\s*b"(?:[^"\\]|\\.)*",?\s*\)"#,
            "records: Some(_)",
        ),
    ];
    let mut out = text.to_string();
    for (pattern, with) in rules {
        let re = Regex::new(pattern).expect("a valid pattern");
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

fn metadata(topics: Option<&[&str]>, auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(auto_create)
}

fn create(name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        )
}

fn create_topics(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only)
}

fn list_offsets(name: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ])
}

fn produce(name: &str, partition: i32, acks: i16) -> Result<ProduceRequest> {
    Ok(ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(name))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(wire::batch(3, 10)?)),
                ]),
        ]))
}

fn fetch(name: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

/// Creates a topic of `partitions`, RF 1, with `configs`.
/// IncrementalAlterConfigs of one broker setting on a broker resource
/// (`""` every broker): set to `value`, or deleted with `None`.
fn broker_config_request(
    resource: &str,
    name: &str,
    value: Option<&str>,
) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s(resource))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(if value.is_some() { 0 } else { 1 })
                    .with_value(value.map(s)),
            ]),
    ])
}

/// [`broker_config_request`] sent, its answer rendered.
fn broker_config(b: &str, resource: &str, name: &str, value: Option<&str>) -> Result<String> {
    let r = broker_config_request(resource, name, value);
    ask::<_, IncrementalAlterConfigsResponse>(b, ApiKey::IncrementalAlterConfigs, 1, &r)
}

/// [`broker_config_request`] sent, each resource's error code and message
/// (the message kept whole: it is what a user reads).
fn broker_config_error(b: &str, resource: &str) -> Result<String> {
    let r = broker_config_request(resource, "log.segment.bytes", Some("2097152"));
    let resp: IncrementalAlterConfigsResponse = call(b, ApiKey::IncrementalAlterConfigs, 1, &r)?;
    Ok(format!(
        "{:?}",
        resp.responses
            .iter()
            .map(|r| (r.error_code, r.error_message.as_deref().map(str::to_string)))
            .collect::<Vec<_>>()
    ))
}

/// CreateTopics v7 of one topic (one partition, RF 1) with `configs`,
/// its answer rendered.
fn create_answer(b: &str, name: &str, configs: &[(&str, &str)]) -> Result<String> {
    let r = create_topics(vec![create(name, 1, 1, configs)], false);
    ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
}

fn created(b: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<()> {
    let r = create_topics(vec![create(name, partitions, 1, configs)], false);
    ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)?;
    Ok(())
}

/// Creates a one-partition topic, RF 1, and writes three records to it.
fn written(b: &str, name: &str) -> Result<()> {
    created(b, name, 1, &[])?;
    ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce(name, 0, -1)?)?;
    Ok(())
}

fn alter_topic(name: &str, changes: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configs(
                changes
                    .iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(*op)
                            .with_value(v.map(s))
                    })
                    .collect(),
            ),
    ])
}

fn delete_records(name: &str, partition: i32, offset: i64) -> DeleteRecordsRequest {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ])
}

fn commit(group: &str, name: &str, offset: i64) -> OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(s("m"))),
                ]),
        ])
}

fn fetch_offsets(group: &str, name: &str) -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(topic(name))
                .with_partition_indexes(vec![0]),
        ]))
}

fn join(group: &str, member: &str) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0\0\0")),
        ])
}

fn leader_epoch(name: &str, current: i32, epoch: i32) -> OffsetForLeaderEpochRequest {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ]),
        ])
}

fn fetch_with_epoch(name: &str, current_leader_epoch: i32) -> FetchRequest {
    let mut f = fetch(name, 0, 0);
    f.topics[0].partitions[0].current_leader_epoch = current_leader_epoch;
    f
}

/// InitProducerId for a new producer, with this transactional id.
fn init_producer(transactional_id: Option<&str>) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// AlterUserScramCredentials: deletions `(user, mechanism)`, upsertions
/// `(user, mechanism, iterations)`; results in user order (Kafka's come
/// in the order of a hash map).
fn alter_scram(
    b: &str,
    deletions: &[(&str, i8)],
    upsertions: &[(&str, i8, i32)],
) -> Result<String> {
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(
            deletions
                .iter()
                .map(|(u, m)| {
                    ScramCredentialDeletion::default()
                        .with_name(s(u))
                        .with_mechanism(*m)
                })
                .collect(),
        )
        .with_upsertions(
            upsertions
                .iter()
                .map(|(u, m, i)| {
                    ScramCredentialUpsertion::default()
                        .with_name(s(u))
                        .with_mechanism(*m)
                        .with_iterations(*i)
                        .with_salt(bytes::Bytes::from_static(b"a salt of 16 B.."))
                        .with_salted_password(bytes::Bytes::from(vec![
                            7u8;
                            if *m == 1 { 32 } else { 64 }
                        ]))
                })
                .collect(),
        );
    let mut resp: AlterUserScramCredentialsResponse =
        call(b, ApiKey::AlterUserScramCredentials, 0, &req)?;
    resp.results
        .sort_by(|x, y| (x.user.as_str(), x.error_code).cmp(&(y.user.as_str(), y.error_code)));
    Ok(normalise(&format!(
        "AlterUserScramCredentials v0: {resp:#?}"
    )))
}

fn describe_scram(b: &str, users: Option<&[&str]>) -> Result<String> {
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
        us.iter()
            .map(|u| UserName::default().with_name(s(u)))
            .collect()
    }));
    // Kafka lists a user's mechanisms in the order of a hash map of its
    // own; clients look them up by mechanism.
    let mut resp: DescribeUserScramCredentialsResponse =
        call(b, ApiKey::DescribeUserScramCredentials, 0, &req)?;
    for r in &mut resp.results {
        r.credential_infos.sort_by_key(|c| c.mechanism);
    }
    Ok(normalise(&format!(
        "DescribeUserScramCredentials v0: {resp:#?}"
    )))
}

type Scenario = Box<dyn Fn(&str) -> Result<String>>;

/// Every scenario: a name a user would search for, and what it sends;
/// then the families of `versions` at every version both brokers serve.
/// Topics are named after the scenario, so each starts from nothing.
fn scenarios(both: &versions::Served) -> Vec<(String, Scenario)> {
    let mut all: Vec<(String, Scenario)> = single()
        .into_iter()
        .map(|(name, run)| (name.to_string(), Box::new(run) as Scenario))
        .collect();
    all.extend(versions::scenarios(both));
    all
}

/// A scenario of its own, at one version.
type Single = (&'static str, fn(&str) -> Result<String>);

fn single() -> Vec<Single> {
    vec![
        (
            "metadata for a topic that does not exist, without auto-creation",
            |b| {
                ask::<_, MetadataResponse>(
                    b,
                    ApiKey::Metadata,
                    12,
                    &metadata(Some(&["no-such"]), false),
                )
            },
        ),
        (
            "metadata v1 for a topic that does not exist, without auto-creation",
            |b| {
                ask::<_, MetadataResponse>(
                    b,
                    ApiKey::Metadata,
                    4,
                    &metadata(Some(&["no-such-v4"]), false),
                )
            },
        ),
        ("metadata for an invalid topic name", |b| {
            ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["bad/name"]), true),
            )
        }),
        ("create a topic, answered with its configs (v7)", |b| {
            let r = create_topics(vec![create("created", 3, 1, &[])], false);
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
        }),
        ("create a topic (v4)", |b| {
            let r = create_topics(vec![create("created-v4", 3, 1, &[])], false);
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 4, &r)
        }),
        ("create a topic that already exists", |b| {
            created(b, "twice", 1, &[])?;
            create_answer(b, "twice", &[])
        }),
        ("create a topic with validate only", |b| {
            let r = create_topics(vec![create("validated", 2, 1, &[])], true);
            let a = ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 4, &r)?;
            let m = ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["validated"]), false),
            )?;
            Ok(format!("{a}\n{m}"))
        }),
        ("create a topic with zero partitions", |b| {
            let r = create_topics(vec![create("zero-partitions", 0, 1, &[])], false);
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
        }),
        (
            "create a topic with a replication factor above the broker count",
            |b| {
                let r = create_topics(vec![create("too-many-replicas", 1, 3, &[])], false);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
            },
        ),
        ("create a topic with an invalid name", |b| {
            create_answer(b, "bad name!", &[])
        }),
        ("create a topic named with a single dot", |b| {
            create_answer(b, ".", &[])
        }),
        ("create a topic with a name of 250 characters", |b| {
            let name = "n".repeat(250);
            let r = create_topics(vec![create(&name, 1, 1, &[])], false);
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
        }),
        ("create a topic with an unknown config", |b| {
            create_answer(b, "unknown-config", &[("no.such.config", "1")])
        }),
        (
            "create a topic with a config value that does not parse",
            |b| create_answer(b, "bad-config", &[("retention.ms", "soon")]),
        ),
        (
            "create a topic with default partitions and replication factor",
            |b| {
                let r = create_topics(vec![create("defaults", -1, -1, &[])], false);
                let a = ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 4, &r)?;
                let m = ask::<_, MetadataResponse>(
                    b,
                    ApiKey::Metadata,
                    12,
                    &metadata(Some(&["defaults"]), false),
                )?;
                Ok(format!("{a}\n{m}"))
            },
        ),
        ("delete a topic that does not exist", |b| {
            let r = DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic("never-was"))),
                ])
                .with_timeout_ms(10_000);
            ask::<_, DeleteTopicsResponse>(b, ApiKey::DeleteTopics, 6, &r)
        }),
        ("list offsets of an empty topic: earliest and latest", |b| {
            created(b, "empty", 1, &[])?;
            let e = ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("empty", 0, -2),
            )?;
            let l = ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("empty", 0, -1),
            )?;
            Ok(format!("{e}\n{l}"))
        }),
        ("list offsets of a partition that does not exist", |b| {
            created(b, "one-partition", 1, &[])?;
            ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("one-partition", 5, -1),
            )
        }),
        (
            "produce and list offsets: latest, earliest, max timestamp",
            |b| {
                created(b, "written", 1, &[])?;
                let p =
                    ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("written", 0, -1)?)?;
                let mut out = vec![p];
                for ts in [-1, -2, -3] {
                    out.push(ask::<_, ListOffsetsResponse>(
                        b,
                        ApiKey::ListOffsets,
                        8,
                        &list_offsets("written", 0, ts),
                    )?);
                }
                Ok(out.join("\n"))
            },
        ),
        ("produce to a topic that does not exist", |b| {
            // Metadata first with auto-creation off: the produce itself
            // does not create topics.
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("no-such-produce", 0, 1)?)
        }),
        ("produce to a partition that does not exist", |b| {
            created(b, "small", 1, &[])?;
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("small", 3, 1)?)
        }),
        ("produce with acks=2", |b| {
            created(b, "acks-two", 1, &[])?;
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("acks-two", 0, 2)?)
        }),
        ("fetch from an offset past the end", |b| {
            created(b, "fetched", 1, &[])?;
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("fetched", 0, -1)?)?;
            ask::<_, FetchResponse>(b, ApiKey::Fetch, 12, &fetch("fetched", 0, 100))
        }),
        ("fetch from a topic that does not exist", |b| {
            ask::<_, FetchResponse>(b, ApiKey::Fetch, 12, &fetch("no-such-fetch", 0, 0))
        }),
        ("fetch what was produced", |b| {
            created(b, "read-back", 1, &[])?;
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &produce("read-back", 0, -1)?)?;
            ask::<_, FetchResponse>(b, ApiKey::Fetch, 12, &fetch("read-back", 0, 0))
        }),
        ("grow a topic to fewer partitions than it has", |b| {
            created(b, "shrunk", 3, &[])?;
            let g = CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_assignments(None)
                        .with_name(topic("shrunk"))
                        .with_count(2),
                ])
                .with_timeout_ms(10_000);
            ask::<_, CreatePartitionsResponse>(b, ApiKey::CreatePartitions, 3, &g)
        }),
        ("describe the configs a topic overrides", |b| {
            created(b, "overrides", 1, &[("retention.ms", "60000")])?;
            let d = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("overrides"))
                    .with_configuration_keys(Some(vec![s("retention.ms"), s("cleanup.policy")])),
            ]);
            ask_configs(b, 4, &d)
        }),
        ("describe the configs of a topic that does not exist", |b| {
            let d = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("no-such-configs"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]);
            ask_configs(b, 4, &d)
        }),
        ("find the coordinator of a group, once it is there", |b| {
            let r = FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("a-group")]);
            settled::<_, FindCoordinatorResponse>(b, ApiKey::FindCoordinator, 4, &r)
        }),
        ("describe a group that does not exist", |b| {
            let r = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("no-such-group"))]);
            settled::<_, DescribeGroupsResponse>(b, ApiKey::DescribeGroups, 5, &r)
        }),
        ("list groups when there are none", |b| {
            settled::<_, ListGroupsResponse>(
                b,
                ApiKey::ListGroups,
                4,
                &ListGroupsRequest::default(),
            )
        }),
        ("delete a group that does not exist", |b| {
            let r =
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("no-such-group"))]);
            settled::<_, DeleteGroupsResponse>(b, ApiKey::DeleteGroups, 2, &r)
        }),
        ("init a producer id with an empty transactional id", |b| {
            let r = init_producer(Some(""));
            settled::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, 4, &r)
        }),
        ("init a producer id without a transactional id", |b| {
            let r = init_producer(None);
            settled::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, 4, &r)
        }),
        (
            "metadata with auto-creation for a new topic, asked twice",
            |b| {
                let a = ask::<_, MetadataResponse>(
                    b,
                    ApiKey::Metadata,
                    12,
                    &metadata(Some(&["auto-created"]), true),
                )?;
                std::thread::sleep(std::time::Duration::from_millis(500));
                let m = ask::<_, MetadataResponse>(
                    b,
                    ApiKey::Metadata,
                    12,
                    &metadata(Some(&["auto-created"]), true),
                )?;
                Ok(format!("{a}\n{m}"))
            },
        ),
        ("delete a topic, then ask for its metadata", |b| {
            written(b, "deleted")?;
            let r = DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic("deleted"))),
                ])
                .with_timeout_ms(10_000);
            let d = ask::<_, DeleteTopicsResponse>(b, ApiKey::DeleteTopics, 6, &r)?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            let m = ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["deleted"]), false),
            )?;
            Ok(format!("{d}\n{m}"))
        }),
        ("delete a topic by an id that does not exist", |b| {
            let r = DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(uuid::Uuid::from_u128(42)),
                ])
                .with_timeout_ms(10_000);
            ask::<_, DeleteTopicsResponse>(b, ApiKey::DeleteTopics, 6, &r)
        }),
        ("list offsets of a topic that does not exist", |b| {
            ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("no-such-offsets", 0, -1),
            )
        }),
        (
            "list offsets by timestamp: the first record at or after it",
            |b| {
                written(b, "by-time")?;
                let a = ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    8,
                    &list_offsets("by-time", 0, 0),
                )?;
                let z = ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    8,
                    &list_offsets("by-time", 0, i64::MAX),
                )?;
                Ok(format!("{a}\n{z}"))
            },
        ),
        ("list offsets: max timestamp of an empty topic", |b| {
            created(b, "empty-max", 1, &[])?;
            ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("empty-max", 0, -3),
            )
        }),
        ("grow a topic, then grow it to the same count", |b| {
            created(b, "grown", 1, &[])?;
            let g = |n| {
                CreatePartitionsRequest::default()
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_assignments(None)
                            .with_name(topic("grown"))
                            .with_count(n),
                    ])
                    .with_timeout_ms(10_000)
            };
            let a = ask::<_, CreatePartitionsResponse>(b, ApiKey::CreatePartitions, 3, &g(3))?;
            let c = ask::<_, CreatePartitionsResponse>(b, ApiKey::CreatePartitions, 3, &g(3))?;
            let m = ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["grown"]), false),
            )?;
            Ok(format!("{a}\n{c}\n{m}"))
        }),
        ("grow a topic that does not exist", |b| {
            let g = CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_assignments(None)
                        .with_name(topic("no-such-grow"))
                        .with_count(3),
                ])
                .with_timeout_ms(10_000);
            ask::<_, CreatePartitionsResponse>(b, ApiKey::CreatePartitions, 3, &g)
        }),
        ("set a topic config, then describe it", |b| {
            written(b, "altered")?;
            let a = ask::<_, IncrementalAlterConfigsResponse>(
                b,
                ApiKey::IncrementalAlterConfigs,
                1,
                &alter_topic("altered", &[("retention.ms", 0, Some("120000"))]),
            )?;
            let d = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("altered"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]);
            let c = ask_configs(b, 4, &d)?;
            Ok(format!("{a}\n{c}"))
        }),
        ("set a topic config that does not exist", |b| {
            written(b, "altered-unknown")?;
            ask::<_, IncrementalAlterConfigsResponse>(
                b,
                ApiKey::IncrementalAlterConfigs,
                1,
                &alter_topic("altered-unknown", &[("no.such.config", 0, Some("1"))]),
            )
        }),
        ("set a topic config to a value that does not parse", |b| {
            written(b, "altered-bad")?;
            ask::<_, IncrementalAlterConfigsResponse>(
                b,
                ApiKey::IncrementalAlterConfigs,
                1,
                &alter_topic("altered-bad", &[("retention.ms", 0, Some("soon"))]),
            )
        }),
        ("append to a topic config that is not a list", |b| {
            written(b, "altered-append")?;
            ask::<_, IncrementalAlterConfigsResponse>(
                b,
                ApiKey::IncrementalAlterConfigs,
                1,
                &alter_topic("altered-append", &[("retention.ms", 2, Some("1"))]),
            )
        }),
        ("set a config of a topic that does not exist", |b| {
            ask::<_, IncrementalAlterConfigsResponse>(
                b,
                ApiKey::IncrementalAlterConfigs,
                1,
                &alter_topic("no-such-alter", &[("retention.ms", 0, Some("1"))]),
            )
        }),
        ("delete records up to an offset", |b| {
            written(b, "trimmed")?;
            let d = ask::<_, DeleteRecordsResponse>(
                b,
                ApiKey::DeleteRecords,
                2,
                &delete_records("trimmed", 0, 2),
            )?;
            let e = ask::<_, ListOffsetsResponse>(
                b,
                ApiKey::ListOffsets,
                8,
                &list_offsets("trimmed", 0, -2),
            )?;
            Ok(format!("{d}\n{e}"))
        }),
        ("delete records past the high watermark", |b| {
            written(b, "trimmed-past")?;
            ask::<_, DeleteRecordsResponse>(
                b,
                ApiKey::DeleteRecords,
                2,
                &delete_records("trimmed-past", 0, 100),
            )
        }),
        ("delete records of a partition that does not exist", |b| {
            written(b, "trimmed-unknown")?;
            ask::<_, DeleteRecordsResponse>(
                b,
                ApiKey::DeleteRecords,
                2,
                &delete_records("trimmed-unknown", 4, 1),
            )
        }),
        (
            "commit an offset outside a group generation, then fetch it",
            |b| {
                written(b, "committed")?;
                let c = settled::<_, OffsetCommitResponse>(
                    b,
                    ApiKey::OffsetCommit,
                    8,
                    &commit("committer", "committed", 2),
                )?;
                let f = settled::<_, OffsetFetchResponse>(
                    b,
                    ApiKey::OffsetFetch,
                    7,
                    &fetch_offsets("committer", "committed"),
                )?;
                Ok(format!("{c}\n{f}"))
            },
        ),
        ("fetch the offsets of a group that does not exist", |b| {
            written(b, "uncommitted")?;
            settled::<_, OffsetFetchResponse>(
                b,
                ApiKey::OffsetFetch,
                7,
                &fetch_offsets("no-such-committer", "uncommitted"),
            )
        }),
        ("join a group without a member id", |b| {
            let j = settled::<_, JoinGroupResponse>(b, ApiKey::JoinGroup, 5, &join("joiners", ""))?;
            Ok(Regex::new(r#"member_id: "[^"]*""#)?
                .replace_all(&j, "member_id: _")
                .into_owned())
        }),
        ("heartbeat to a group that does not exist", |b| {
            let r = HeartbeatRequest::default()
                .with_group_id(GroupId(s("no-such-heartbeat")))
                .with_generation_id(1)
                .with_member_id(s("m-1"));
            settled::<_, HeartbeatResponse>(b, ApiKey::Heartbeat, 4, &r)
        }),
        ("delete an offset of a group that does not exist", |b| {
            use kafka_protocol::messages::offset_delete_request::{
                OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
            };
            written(b, "offset-deleted")?;
            let r = OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("no-such-offset-delete")))
                .with_topics(vec![
                    OffsetDeleteRequestTopic::default()
                        .with_name(topic("offset-deleted"))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0),
                        ]),
                ]);
            settled::<_, OffsetDeleteResponse>(b, ApiKey::OffsetDelete, 0, &r)
        }),
        ("end offset of a leader epoch", |b| {
            written(b, "epochs")?;
            let a = ask::<_, OffsetForLeaderEpochResponse>(
                b,
                ApiKey::OffsetForLeaderEpoch,
                4,
                &leader_epoch("epochs", -1, 0),
            )?;
            let f = ask::<_, OffsetForLeaderEpochResponse>(
                b,
                ApiKey::OffsetForLeaderEpoch,
                4,
                &leader_epoch("epochs", 5, 0),
            )?;
            Ok(format!("{a}\n{f}"))
        }),
        (
            "fetch with a leader epoch newer than the partition's",
            |b| {
                written(b, "epoch-fetch")?;
                ask::<_, FetchResponse>(b, ApiKey::Fetch, 12, &fetch_with_epoch("epoch-fetch", 7))
            },
        ),
        (
            "produce a record larger than the topic's max.message.bytes",
            |b| {
                let r = create_topics(
                    vec![create(
                        "small-messages",
                        1,
                        1,
                        &[("max.message.bytes", "100")],
                    )],
                    false,
                );
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)?;
                let big = ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(topic("small-messages"))
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(0)
                                    .with_records(Some(wire::batch(1, 1000)?)),
                            ]),
                    ]);
                ask::<_, ProduceResponse>(b, ApiKey::Produce, 9, &big)
            },
        ),
        (
            "elect the preferred leader of a one-replica partition",
            |b| {
                use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
                written(b, "elected")?;
                let r = ElectLeadersRequest::default()
                    .with_election_type(0)
                    .with_timeout_ms(10_000)
                    .with_topic_partitions(Some(vec![
                        TopicPartitions::default()
                            .with_topic(topic("elected"))
                            .with_partitions(vec![0]),
                    ]));
                ask::<_, ElectLeadersResponse>(b, ApiKey::ElectLeaders, 2, &r)
            },
        ),
        (
            "list partition reassignments when none is in progress",
            |b| {
                ask::<_, ListPartitionReassignmentsResponse>(
                    b,
                    ApiKey::ListPartitionReassignments,
                    0,
                    &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
                )
            },
        ),
        (
            "a transactional producer's errors: a timeout past the maximum, an end with nothing open, another producer id, a fenced epoch, an unknown partition",
            |b| {
                written(b, "txn-target")?;
                let id = "diff-txn";
                let init = init_producer(Some(id));
                // Before its coordinator is looked for, the topic does
                // not exist: the answer says to look for it.
                let unsought =
                    ask::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, 4, &init)?;
                let find = FindCoordinatorRequest::default()
                    .with_key(s(id))
                    .with_key_type(1);
                let found =
                    settled::<_, FindCoordinatorResponse>(b, ApiKey::FindCoordinator, 3, &find)?;
                let first =
                    settled::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, 4, &init)?;
                // A second instance: the epoch moves on, the first is fenced.
                let second =
                    settled::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, 4, &init)?;
                let r: InitProducerIdResponse = call(b, ApiKey::InitProducerId, 4, &init)?;
                let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
                let too_long = ask::<_, InitProducerIdResponse>(
                    b,
                    ApiKey::InitProducerId,
                    4,
                    &init_producer(Some(id)).with_transaction_timeout_ms(i32::MAX),
                )?;
                let end = |pid: i64, epoch: i16| {
                    EndTxnRequest::default()
                        .with_transactional_id(TransactionalId(s(id)))
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_committed(true)
                };
                let nothing_open =
                    ask::<_, EndTxnResponse>(b, ApiKey::EndTxn, 3, &end(pid, epoch))?;
                let add = |pid: i64, epoch: i16, topic_name: &str, partition: i32| {
                    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
                    AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
                        .with_v3_and_below_producer_id(ProducerId(pid))
                        .with_v3_and_below_producer_epoch(epoch)
                        .with_v3_and_below_topics(vec![
                            AddPartitionsToTxnTopic::default()
                                .with_name(topic(topic_name))
                                .with_partitions(vec![partition]),
                        ])
                };
                let other_id = ask::<_, AddPartitionsToTxnResponse>(
                    b,
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &add(pid + 1, epoch, "txn-target", 0),
                )?;
                let fenced = ask::<_, AddPartitionsToTxnResponse>(
                    b,
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &add(pid, epoch - 1, "txn-target", 0),
                )?;
                let unknown = ask::<_, AddPartitionsToTxnResponse>(
                    b,
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &add(pid, epoch, "txn-target", 7),
                )?;
                let added = ask::<_, AddPartitionsToTxnResponse>(
                    b,
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &add(pid, epoch, "txn-target", 0),
                )?;
                let ended = ask::<_, EndTxnResponse>(b, ApiKey::EndTxn, 3, &end(pid, epoch))?;
                let stale_end =
                    ask::<_, EndTxnResponse>(b, ApiKey::EndTxn, 3, &end(pid, epoch - 1))?;
                Ok([
                    unsought,
                    found,
                    first,
                    second,
                    too_long,
                    nothing_open,
                    other_id,
                    fenced,
                    unknown,
                    added,
                    ended,
                    stale_end,
                ]
                .join("\n"))
            },
        ),
        (
            "an idempotent producer's batch, its retry, and a gap in its sequence",
            |b| {
                written(b, "idempotent")?;
                let init = init_producer(None);
                let mut id = None;
                for _ in 0..100 {
                    let r: InitProducerIdResponse = call(b, ApiKey::InitProducerId, 4, &init)?;
                    if r.error_code == 0 {
                        id = Some((r.producer_id.0, r.producer_epoch));
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                let Some((pid, epoch)) = id else {
                    bail!("no producer id")
                };
                let first = wire::producer_batch(2, 10, pid, epoch, 0)?;
                let a = ask::<_, ProduceResponse>(
                    b,
                    ApiKey::Produce,
                    9,
                    &produce_batch("idempotent", first.clone()),
                )?;
                let again = ask::<_, ProduceResponse>(
                    b,
                    ApiKey::Produce,
                    9,
                    &produce_batch("idempotent", first),
                )?;
                let gap = wire::producer_batch(2, 10, pid, epoch, 7)?;
                let g = ask::<_, ProduceResponse>(
                    b,
                    ApiKey::Produce,
                    9,
                    &produce_batch("idempotent", gap),
                )?;
                Ok(format!("{a}\n{again}\n{g}"))
            },
        ),
        (
            "a consumer group: join, sync, heartbeat, leave, describe",
            |b| {
                let first: JoinGroupResponse = {
                    let mut r: JoinGroupResponse =
                        call(b, ApiKey::JoinGroup, 5, &join("cycle", ""))?;
                    for _ in 0..100 {
                        if ![14, 15, 16].contains(&r.error_code) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        r = call(b, ApiKey::JoinGroup, 5, &join("cycle", ""))?;
                    }
                    r
                };
                let member = first.member_id.to_string();
                let joined: JoinGroupResponse =
                    call(b, ApiKey::JoinGroup, 5, &join("cycle", &member))?;
                let sync = SyncGroupRequest::default()
                .with_group_id(GroupId(s("cycle")))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&member))
                .with_assignments(vec![
                    kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member))
                        .with_assignment(bytes::Bytes::from_static(b"\0\0\0\0\0\0\0\0\0\0")),
                ]);
                let synced = ask::<_, SyncGroupResponse>(b, ApiKey::SyncGroup, 3, &sync)?;
                let hb = HeartbeatRequest::default()
                    .with_group_id(GroupId(s("cycle")))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(s(&member));
                let beat = ask::<_, HeartbeatResponse>(b, ApiKey::Heartbeat, 4, &hb)?;
                let described = ask::<_, DescribeGroupsResponse>(
                    b,
                    ApiKey::DescribeGroups,
                    5,
                    &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("cycle"))]),
                )?;
                let leave = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("cycle")))
                    .with_members(vec![
                        kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                            .with_member_id(s(&member)),
                    ]);
                let left = ask::<_, LeaveGroupResponse>(b, ApiKey::LeaveGroup, 4, &leave)?;
                let after = ask::<_, DescribeGroupsResponse>(
                    b,
                    ApiKey::DescribeGroups,
                    5,
                    &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("cycle"))]),
                )?;
                let joined = normalise(&format!("{joined:#?}"));
                Ok(without_member_ids(&format!(
                    "{joined}\n{synced}\n{beat}\n{described}\n{left}\n{after}"
                )))
            },
        ),
        ("list groups by state", |b| {
            written(b, "listed")?;
            settled::<_, OffsetCommitResponse>(
                b,
                ApiKey::OffsetCommit,
                8,
                &commit("listed-group", "listed", 1),
            )?;
            let r = ListGroupsRequest::default().with_states_filter(vec![s("Empty")]);
            settled::<_, ListGroupsResponse>(b, ApiKey::ListGroups, 4, &r)?;
            let l: ListGroupsResponse = call(b, ApiKey::ListGroups, 4, &r)?;
            // The groups the scenarios before made, by name.
            let mut groups: Vec<String> = l
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "{} {} {:?}",
                        g.group_id.as_str(),
                        g.group_state.as_str(),
                        g.protocol_type.as_str()
                    )
                })
                .collect();
            groups.sort();
            Ok(format!("error {}\n{}", l.error_code, groups.join("\n")))
        }),
        (
            "delete a group with committed offsets, then fetch them",
            |b| {
                written(b, "forgotten")?;
                settled::<_, OffsetCommitResponse>(
                    b,
                    ApiKey::OffsetCommit,
                    8,
                    &commit("forgetful", "forgotten", 2),
                )?;
                let r =
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("forgetful"))]);
                let d = settled::<_, DeleteGroupsResponse>(b, ApiKey::DeleteGroups, 2, &r)?;
                let f = settled::<_, OffsetFetchResponse>(
                    b,
                    ApiKey::OffsetFetch,
                    7,
                    &fetch_offsets("forgetful", "forgotten"),
                )?;
                Ok(format!("{d}\n{f}"))
            },
        ),
        ("commit an offset for a topic that does not exist", |b| {
            settled::<_, OffsetCommitResponse>(
                b,
                ApiKey::OffsetCommit,
                8,
                &commit("lost-committer", "no-such-commit", 1),
            )
        }),
        ("create a topic with a replica assignment", |b| {
            use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
            let t = create("assigned", -1, -1, &[]).with_assignments(vec![
                CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(0)]),
                CreatableReplicaAssignment::default()
                    .with_partition_index(1)
                    .with_broker_ids(vec![BrokerId(0)]),
            ]);
            let a = ask::<_, CreateTopicsResponse>(
                b,
                ApiKey::CreateTopics,
                4,
                &create_topics(vec![t], false),
            )?;
            let m = ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["assigned"]), false),
            )?;
            Ok(format!("{a}\n{m}"))
        }),
        (
            "create a topic assigned to a broker that does not exist",
            |b| {
                use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
                let t = create("assigned-unknown", -1, -1, &[]).with_assignments(vec![
                    CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(5)]),
                ]);
                ask::<_, CreateTopicsResponse>(
                    b,
                    ApiKey::CreateTopics,
                    4,
                    &create_topics(vec![t], false),
                )
            },
        ),
        ("create a topic with compression.type gzip", |b| {
            let r = create_topics(
                vec![create("gzipped", 1, 1, &[("compression.type", "gzip")])],
                false,
            );
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 4, &r)
        }),
        (
            "create a compacted topic and describe its cleanup policy",
            |b| {
                let r = create_topics(
                    vec![create("compacted", 1, 1, &[("cleanup.policy", "compact")])],
                    false,
                );
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 4, &r)?;
                let d = DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("compacted"))
                        .with_configuration_keys(Some(vec![
                            s("cleanup.policy"),
                            s("min.compaction.lag.ms"),
                        ])),
                ]);
                ask_configs(b, 4, &d)
            },
        ),
        ("fetch read_committed", |b| {
            written(b, "committed-read")?;
            ask::<_, FetchResponse>(
                b,
                ApiKey::Fetch,
                12,
                &fetch("committed-read", 0, 0).with_isolation_level(1),
            )
        }),
        ("fetch with a maximum smaller than the first batch", |b| {
            written(b, "tiny-fetch")?;
            let mut f = fetch("tiny-fetch", 0, 0).with_max_bytes(10);
            f.topics[0].partitions[0].partition_max_bytes = 10;
            ask::<_, FetchResponse>(b, ApiKey::Fetch, 12, &f)
        }),
        ("metadata of a topic with three partitions", |b| {
            created(b, "three", 3, &[])?;
            ask::<_, MetadataResponse>(b, ApiKey::Metadata, 12, &metadata(Some(&["three"]), false))
        }),
        ("describe the cluster", |b| {
            ask::<_, DescribeClusterResponse>(
                b,
                ApiKey::DescribeCluster,
                1,
                &DescribeClusterRequest::default(),
            )
        }),
        (
            "end offset of a leader epoch of a topic that does not exist",
            |b| {
                ask::<_, OffsetForLeaderEpochResponse>(
                    b,
                    ApiKey::OffsetForLeaderEpoch,
                    4,
                    &leader_epoch("no-such-epochs", -1, 0),
                )
            },
        ),
        ("move a partition to a broker that does not exist", |b| {
            use kafka_protocol::messages::alter_partition_reassignments_request::{
                ReassignablePartition, ReassignableTopic,
            };
            written(b, "moved")?;
            let r = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    ReassignableTopic::default()
                        .with_name(topic("moved"))
                        .with_partitions(vec![
                            ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(7)])),
                        ]),
                ]);
            ask::<_, AlterPartitionReassignmentsResponse>(
                b,
                ApiKey::AlterPartitionReassignments,
                0,
                &r,
            )
        }),
        (
            "alter configs (legacy) of a topic that does not exist",
            |b| {
                let r = versions::legacy_alter(
                    "no-such-legacy",
                    &[("retention.ms", Some("1000"))],
                    false,
                );
                ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)
            },
        ),
        (
            "alter configs (legacy) with a config that does not exist",
            |b| {
                created(b, "legacy-unknown", 1, &[])?;
                let r = versions::legacy_alter(
                    "legacy-unknown",
                    &[("no.such.config", Some("1"))],
                    false,
                );
                ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)
            },
        ),
        (
            "alter configs (legacy) with a value that does not parse",
            |b| {
                created(b, "legacy-unparsed", 1, &[])?;
                let r = versions::legacy_alter(
                    "legacy-unparsed",
                    &[("retention.ms", Some("soon"))],
                    false,
                );
                ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)
            },
        ),
        ("alter configs (legacy) with a null value", |b| {
            created(b, "legacy-null", 1, &[])?;
            let r = versions::legacy_alter("legacy-null", &[("retention.ms", None)], false);
            ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)
        }),
        (
            "alter configs (legacy) with validate only changes nothing",
            |b| {
                created(b, "legacy-validate", 1, &[("retention.ms", "60000")])?;
                let r = versions::legacy_alter(
                    "legacy-validate",
                    &[("segment.bytes", Some("2000000"))],
                    true,
                );
                let a = ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)?;
                Ok(format!(
                    "{a}\n{}",
                    versions::describe_two(b, "legacy-validate")?
                ))
            },
        ),
        (
            "alter configs (legacy) with no configs clears every override",
            |b| {
                created(
                    b,
                    "legacy-clear",
                    1,
                    &[("retention.ms", "60000"), ("segment.bytes", "2000000")],
                )?;
                let r = versions::legacy_alter("legacy-clear", &[], false);
                let a = ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, 1, &r)?;
                Ok(format!(
                    "{a}\n{}",
                    versions::describe_two(b, "legacy-clear")?
                ))
            },
        ),
        (
            "a request at a version no broker serves (metadata v99): the connection is closed",
            |b| {
                let mut f = wire::frame(ApiKey::Metadata, 12, 7, &MetadataRequest::default())?;
                f[6..8].copy_from_slice(&99i16.to_be_bytes());
                outcome(b, &f, false)
            },
        ),
        (
            "a request at a version no broker serves (produce v99): the connection is closed",
            |b| {
                let mut f = wire::frame(ApiKey::Produce, 9, 7, &produce("raw-produce", 0, 1)?)?;
                f[6..8].copy_from_slice(&99i16.to_be_bytes());
                outcome(b, &f, false)
            },
        ),
        (
            "a request for an API that does not exist (key 999): the connection is closed",
            |b| {
                let mut f = wire::frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default())?;
                f[4..6].copy_from_slice(&999i16.to_be_bytes());
                outcome(b, &f, false)
            },
        ),
        ("a frame cut short: the client goes away mid-request", |b| {
            let f = wire::frame(ApiKey::Metadata, 12, 7, &MetadataRequest::default())?;
            outcome(b, &f[..f.len() - 2], true)
        }),
        (
            "a request whose body is cut short inside its frame (metadata v12)",
            |b| {
                let f = wire::frame(ApiKey::Metadata, 12, 7, &metadata(Some(&["cut"]), false))?;
                let mut cut = f[..f.len() - 3].to_vec();
                let len = (cut.len() - 4) as i32;
                cut[..4].copy_from_slice(&len.to_be_bytes());
                outcome(b, &cut, false)
            },
        ),
        ("a frame of 2 GiB: refused before it is read", |b| {
            outcome(b, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 12], false)
        }),
        (
            "api versions at a version newer than served (v99): answered at v0 with UNSUPPORTED_VERSION",
            |b| {
                let mut f = wire::frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default())?;
                f[6..8].copy_from_slice(&99i16.to_be_bytes());
                let mut c = wire::connect(b)?;
                wire::send(&mut c, &f)?;
                let (corr, r): (i32, ApiVersionsResponse) =
                    wire::read_response(&mut c, ApiKey::ApiVersions, 0)?;
                let own = r.api_keys.iter().find(|k| k.api_key == 18);
                Ok(format!(
                    "correlation {corr}, error {}, ApiVersions {:?}",
                    r.error_code,
                    own.map(|k| (k.min_version, k.max_version))
                ))
            },
        ),
        (
            "a topic with compression.type gzip stores an uncompressed batch gzipped",
            |b| stored_codec(b, "stored-gzip", "gzip"),
        ),
        (
            "a topic with compression.type lz4 stores an uncompressed batch as lz4",
            |b| stored_codec(b, "stored-lz4", "lz4"),
        ),
        (
            "a topic with compression.type uncompressed keeps an uncompressed batch",
            |b| stored_codec(b, "stored-plain", "uncompressed"),
        ),
        (
            "a topic with compression.type zstd at compression.zstd.level 19 stores a batch zstd",
            |b| {
                stored_codec_with(
                    b,
                    "stored-zstd-19",
                    &[
                        ("compression.type", "zstd"),
                        ("compression.zstd.level", "19"),
                    ],
                )
            },
        ),
        (
            "describe a topic's compression levels (KIP-390): one set, the others' defaults",
            |b| {
                created(
                    b,
                    "levels",
                    1,
                    &[("compression.type", "lz4"), ("compression.lz4.level", "12")],
                )?;
                let d = DescribeConfigsRequest::default()
                    .with_include_synonyms(true)
                    .with_resources(vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s("levels"))
                            .with_configuration_keys(Some(vec![
                                s("compression.gzip.level"),
                                s("compression.lz4.level"),
                                s("compression.zstd.level"),
                            ])),
                    ]);
                ask_configs(b, 4, &d)
            },
        ),
        (
            "create a topic with compression.gzip.level 10 (gzip's are 1-9 or -1)",
            |b| create_answer(b, "gzip-10", &[("compression.gzip.level", "10")]),
        ),
        (
            "create a topic with compression.zstd.level 23 (zstd's end at 22)",
            |b| create_answer(b, "zstd-23", &[("compression.zstd.level", "23")]),
        ),
        (
            "create a topic with compression.lz4.level 0 (lz4's start at 1)",
            |b| create_answer(b, "lz4-0", &[("compression.lz4.level", "0")]),
        ),
        ("create a topic with an unknown compression.type", |b| {
            create_answer(b, "bad-codec", &[("compression.type", "brotli")])
        }),
        (
            "describe a topic's configs with synonyms: a dynamic broker setting over the default",
            |b| {
                created(b, "synonyms", 1, &[("retention.ms", "60000")])?;
                let set = broker_config(b, "0", "log.segment.bytes", Some("2097152"))?;
                let d = DescribeConfigsRequest::default()
                    .with_include_synonyms(true)
                    .with_resources(vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s("synonyms"))
                            .with_configuration_keys(Some(vec![
                                s("retention.ms"),
                                s("segment.bytes"),
                                s("max.message.bytes"),
                            ])),
                    ]);
                until_value(b, &d, "segment.bytes", "2097152")?;
                let described = ask_configs(b, 4, &d)?;
                let unset = broker_config(b, "0", "log.segment.bytes", None)?;
                // And gone again before the next scenario describes it.
                until_value(b, &d, "segment.bytes", "1073741824")?;
                Ok(format!("{set}\n{described}\n{unset}"))
            },
        ),
        (
            "describe configs with synonyms: a broker's own dynamic setting over the cluster-wide default (--entity-default)",
            |b| {
                created(b, "cluster-defaults", 1, &[])?;
                let set = |resource: &str, value: Option<&str>| -> Result<String> {
                    broker_config(b, resource, "log.segment.bytes", value)
                };
                let changes = [set("", Some("3145728"))?, set("0", Some("2097152"))?];
                let describe = |resource_type: i8, name: &str, keys: Option<&[&str]>| {
                    DescribeConfigsRequest::default()
                        .with_include_synonyms(true)
                        .with_resources(vec![
                            DescribeConfigsResource::default()
                                .with_resource_type(resource_type)
                                .with_resource_name(s(name))
                                .with_configuration_keys(
                                    keys.map(|k| k.iter().map(|n| s(n)).collect()),
                                ),
                        ])
                };
                let topic = describe(2, "cluster-defaults", Some(&["segment.bytes"]));
                let own = describe(4, "0", Some(&["log.segment.bytes"]));
                // By name: Kafka 4.3's metadata holds a cluster-wide
                // min.insync.replicas from the start, Sluice's none.
                let cluster_wide =
                    describe(4, "", Some(&["log.segment.bytes", "log.retention.ms"]));
                until_value(b, &topic, "segment.bytes", "2097152")?;
                let answers = [
                    ask_configs(b, 4, &topic)?,
                    ask_configs(b, 4, &own)?,
                    ask_configs(b, 4, &cluster_wide)?,
                ];
                let unset = [set("0", None)?, set("", None)?];
                until_value(b, &topic, "segment.bytes", "1073741824")?;
                Ok(format!("{changes:?}\n{}\n{unset:?}", answers.join("\n")))
            },
        ),
        (
            "alter a dynamic config of another broker id than the one asked (broker 7)",
            |b| broker_config_error(b, "7"),
        ),
        (
            "alter a dynamic config of a broker resource that is not a broker id",
            |b| broker_config_error(b, "broker-one"),
        ),
        ("create a topic with a timeout of 0 ms", |b| {
            let r = create_topics(vec![create("no-wait", 1, 1, &[])], false).with_timeout_ms(0);
            let created = ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)?;
            let listed = ask::<_, MetadataResponse>(
                b,
                ApiKey::Metadata,
                12,
                &metadata(Some(&["no-wait"]), false),
            )?;
            Ok(format!("{created}\n{listed}"))
        }),
        ("validate a topic with a timeout of 0 ms", |b| {
            let r =
                create_topics(vec![create("no-wait-check", 1, 1, &[])], true).with_timeout_ms(0);
            ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
        }),
        (
            "create a topic with an invalid name and a timeout of 0 ms",
            |b| {
                let r = create_topics(vec![create("no wait", 1, 1, &[])], false).with_timeout_ms(0);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, 7, &r)
            },
        ),
        ("produce with the lowest served version (v3)", |b| {
            written(b, "old-produce")?;
            ask::<_, ProduceResponse>(b, ApiKey::Produce, 3, &produce("old-produce", 0, -1)?)
        }),
        ("SCRAM credentials: add one, then describe it", |b| {
            let a = alter_scram(b, &[], &[("scram-added", 2, 8192)])?;
            Ok(format!(
                "{a}\n{}",
                describe_scram(b, Some(&["scram-added"]))?
            ))
        }),
        (
            "SCRAM credentials: both mechanisms of a user, in two requests",
            |b| {
                alter_scram(b, &[], &[("scram-both", 1, 4096)])?;
                alter_scram(b, &[], &[("scram-both", 2, 4096)])?;
                describe_scram(b, Some(&["scram-both"]))
            },
        ),
        ("SCRAM credentials: describe a user that has none", |b| {
            describe_scram(b, Some(&["scram-nobody"]))
        }),
        ("SCRAM credentials: describe the same user twice", |b| {
            alter_scram(b, &[], &[("scram-twice-described", 2, 4096)])?;
            describe_scram(b, Some(&["scram-twice-described", "scram-twice-described"]))
        }),
        ("SCRAM credentials: too few iterations", |b| {
            alter_scram(b, &[], &[("scram-few", 2, 1000)])
        }),
        ("SCRAM credentials: too many iterations", |b| {
            alter_scram(b, &[], &[("scram-many", 1, 20000)])
        }),
        ("SCRAM credentials: an unknown mechanism", |b| {
            alter_scram(b, &[], &[("scram-unknown-mechanism", 9, 4096)])
        }),
        ("SCRAM credentials: delete one that does not exist", |b| {
            alter_scram(b, &[("scram-never", 2)], &[])
        }),
        ("SCRAM credentials: delete one", |b| {
            alter_scram(b, &[], &[("scram-deleted", 2, 4096)])?;
            let a = alter_scram(b, &[("scram-deleted", 2)], &[])?;
            Ok(format!(
                "{a}\n{}",
                describe_scram(b, Some(&["scram-deleted"]))?
            ))
        }),
        (
            "SCRAM credentials: the same user twice in one request",
            |b| {
                let a = alter_scram(b, &[], &[("scram-dup", 1, 4096), ("scram-dup", 2, 4096)])?;
                Ok(format!("{a}\n{}", describe_scram(b, Some(&["scram-dup"]))?))
            },
        ),
        ("SCRAM credentials: an empty user name", |b| {
            alter_scram(b, &[], &[("", 2, 4096)])
        }),
        ("SASL handshake on a PLAINTEXT listener", |b| {
            let r = SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512"));
            let a = ask::<_, SaslHandshakeResponse>(b, ApiKey::SaslHandshake, 1, &r)?;
            // Whether the mechanisms are listed differs with the SASL
            // configuration; the error does not.
            let re = Regex::new(r"(?s)mechanisms: \[.*?\]").expect("a valid pattern");
            Ok(re.replace_all(&a, "mechanisms: _").into_owned())
        }),
        ("SASL authenticate on a PLAINTEXT listener", |b| {
            let r = SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"n,,n=a,r=b"));
            ask::<_, SaslAuthenticateResponse>(b, ApiKey::SaslAuthenticate, 2, &r)
        }),
    ]
}

/// `name: reason` lines of the accepted differences. Names hold ": "
/// too, so a line belongs to the longest scenario name it starts with
/// (followed by ": "); a line that starts with none is kept whole, and
/// reported as naming no scenario.
fn accepted(names: &[&str]) -> Result<BTreeMap<String, String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/differential_accepted.txt"
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let name = names
                .iter()
                .filter(|n| l.starts_with(&format!("{n}: ")))
                .max_by_key(|n| n.len());
            match name {
                Some(n) => (n.to_string(), l[n.len() + 2..].trim().to_string()),
                None => (l.to_string(), String::new()),
            }
        })
        .collect())
}

/// Where two renderings first differ, with a little context.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let from = i.saturating_sub(3);
    format!(
        "Sluice:\n{}\nApache Kafka:\n{}",
        la[from..(i + 4).min(la.len())].join("\n"),
        lb[from..(i + 4).min(lb.len())].join("\n")
    )
}

/// What one tier's run found: scenarios that differ, accepted ones that
/// now agree, and the count that agreed.
#[derive(Default)]
struct Findings {
    differ: Vec<String>,
    stale: Vec<String>,
    run: usize,
    accepted_run: usize,
}

/// A scenario of a tier whose brokers are reached as `T`.
type Runs<'a, T> = Vec<(String, Box<dyn Fn(&T) -> Result<String> + 'a>)>;

/// Runs `list` (those whose names hold `SLUICE_DIFF_ONLY`, while working
/// on them; the suite runs them all) on both brokers and compares.
fn compare<T>(
    list: &Runs<'_, T>,
    ours: &T,
    theirs: &T,
    accepted: &BTreeMap<String, String>,
) -> Result<Findings> {
    let only = std::env::var("SLUICE_DIFF_ONLY").unwrap_or_default();
    let mut f = Findings::default();
    for (name, run) in list.iter().filter(|(n, _)| n.contains(&only)) {
        let a = run(ours).with_context(|| format!("{name}: Sluice"))?;
        let b = run(theirs).with_context(|| format!("{name}: Apache Kafka"))?;
        // SLUICE_DIFF_DUMP=DIR keeps both renderings of every scenario.
        if let Some(d) = std::env::var_os("SLUICE_DIFF_DUMP") {
            let file = name.replace(' ', "-").replace(':', "");
            std::fs::create_dir_all(&d)?;
            std::fs::write(std::path::Path::new(&d).join(format!("{file}.sluice")), &a)?;
            std::fs::write(std::path::Path::new(&d).join(format!("{file}.kafka")), &b)?;
        }
        f.run += 1;
        match (a == b, accepted.contains_key(name)) {
            (true, false) => {}
            (false, true) => f.accepted_run += 1,
            (true, true) => f.stale.push(name.clone()),
            (false, false) => f
                .differ
                .push(format!("{name}\n{}", first_difference(&a, &b))),
        }
    }
    Ok(f)
}

/// Fails when a scenario differs, an accepted one agrees, or the list
/// names what is no scenario of either tier.
fn verdict(f: Findings, accepted: &BTreeMap<String, String>, names: &[String]) -> Result<()> {
    let unknown: Vec<&String> = accepted.keys().filter(|k| !names.contains(k)).collect();
    println!(
        "{} scenarios, {} agree, {} accepted differences",
        f.run,
        f.run - f.accepted_run - f.differ.len(),
        f.accepted_run
    );
    if !f.differ.is_empty() || !f.stale.is_empty() || !unknown.is_empty() {
        bail!(
            "{} scenario(s) answer differently from Apache Kafka:\n\n{}\n\naccepted but now agree: {:?}\naccepted but not a scenario: {unknown:?}",
            f.differ.len(),
            f.differ.join("\n\n"),
            f.stale
        );
    }
    Ok(())
}

/// The names of both tiers' scenarios (those of `versions` depend on what
/// both brokers serve, known once they run).
fn all_names(main: &[(String, Scenario)]) -> Vec<String> {
    main.iter()
        .map(|(n, _)| n.clone())
        .chain(acls::scenarios().iter().map(|(n, _)| n.to_string()))
        .collect()
}

/// The tiers run one after the other: each starts a Kafka JVM and a
/// Sluice broker, and timing-sensitive scenarios (auto-creation, group
/// sessions) are compared on a machine the other tier is not loading.
static ONE_TIER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sluice_answers_as_apache_kafka_does() -> Result<()> {
    let _one = ONE_TIER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    // Node id 0 on both (Sluice's default is 1, as Kafka's sample config).
    let sluice = BrokerProcess::start(&dir.path().join("sluice"), &["--node-id", "0"])?;
    let kafka = ApacheKafka::start(&dir.path().join("kafka"), 1)?;
    let both = versions::common(
        &versions::advertised(&sluice.bootstrap())?,
        &versions::advertised(&kafka.bootstrap_of(0))?,
    );
    let all = scenarios(&both);
    let names = all_names(&all);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let accepted = accepted(&refs)?;
    let list: Runs<'_, String> = all
        .into_iter()
        .map(|(n, run)| {
            (
                n,
                Box::new(move |b: &String| run(b)) as Box<dyn Fn(&String) -> Result<String>>,
            )
        })
        .collect();
    let found = compare(
        &list,
        &sluice.bootstrap(),
        &kafka.bootstrap_of(0),
        &accepted,
    )?;
    verdict(found, &accepted, &names)
}

/// The authorization tier (`acls`): both brokers with ACLs on, alice on a
/// SASL_PLAINTEXT listener, the admin (a super user) on PLAINTEXT.
#[test]
fn sluice_authorizes_as_apache_kafka_does() -> Result<()> {
    let _one = ONE_TIER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
    let dir = tempfile::tempdir()?;
    let [plain, sasl, kafka_sasl] = sluice_e2e::free_ports::<3>()?;
    let users = dir.path().join("users");
    std::fs::write(&users, format!("{0}={0}-secret\n", acls::ALICE))?;
    let listeners = format!("PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}");
    let users_file = users.display().to_string();
    let _sluice = BrokerProcess::start_listening(
        &dir.path().join("sluice"),
        plain,
        &[
            "--node-id",
            "0",
            "--listeners",
            &listeners,
            "--sasl-enabled-mechanisms",
            "PLAIN",
            "--sasl-plain-users-file",
            &users_file,
            "--authorizer-class-name",
            AUTHORIZER,
            "--super-users",
            "User:ANONYMOUS",
        ],
    )?;
    let _kafka = ApacheKafka::start_with(&dir.path().join("kafka"), 1, |port, controller| {
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SASL_PLAINTEXT://127.0.0.1:{kafka_sasl}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{kafka_sasl}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT\n\
             sasl.enabled.mechanisms=PLAIN\n\
             listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{0}=\"{0}-secret\";\n\
             authorizer.class.name={AUTHORIZER}\n\
             super.users=User:ANONYMOUS\n",
            acls::ALICE
        )
    })?;
    let kafka_plain = _kafka.bootstrap_of(0);
    let ours = acls::Tier {
        admin: format!("127.0.0.1:{plain}"),
        alice: format!("{}@127.0.0.1:{sasl}", acls::ALICE),
    };
    let theirs = acls::Tier {
        admin: kafka_plain,
        alice: format!("{}@127.0.0.1:{kafka_sasl}", acls::ALICE),
    };
    let names: Vec<String> = all_names(&[]);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let accepted = accepted(&refs)?;
    let list: Runs<'_, acls::Tier> = acls::scenarios()
        .into_iter()
        .map(|(n, run)| {
            (
                n.to_string(),
                Box::new(run) as Box<dyn Fn(&acls::Tier) -> Result<String>>,
            )
        })
        .collect();
    let found = compare(&list, &ours, &theirs, &accepted)?;
    // The main tier's names are not known here: only this tier's accepted
    // entries are checked for being scenarios.
    let mine: BTreeMap<String, String> = accepted
        .into_iter()
        .filter(|(k, _)| k.starts_with("acl: "))
        .collect();
    verdict(found, &mine, &names)
}
