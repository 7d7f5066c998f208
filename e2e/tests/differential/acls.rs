//! The authorization tier: a Sluice broker and an Apache Kafka node both
//! with ACLs on (`authorizer.class.name` = Kafka's StandardAuthorizer),
//! `super.users=User:ANONYMOUS` on their PLAINTEXT listener (the admin
//! that sets up each scenario), and a SASL_PLAINTEXT listener where
//! `alice` logs in with PLAIN. Each scenario grants alice what it says
//! (as the admin, waiting until the broker's authorizer has it), then
//! sends alice's requests; the answers are compared as the main tier's.
//! Every API both brokers serve is asked at least once without the ACL it
//! needs: the table of what Kafka checks, with Kafka as its oracle.
//!
//! Resources are named after the scenario, so grants of one never reach
//! another (ACLs and grants stay for the rest of the run, in order).

use anyhow::{Result, bail};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;

use super::{ask, call, s, settled, topic, without_member_ids};

/// The two principals' bootstraps on one broker.
pub struct Tier {
    /// PLAINTEXT: `User:ANONYMOUS`, a super user.
    pub admin: String,
    /// SASL_PLAINTEXT as `alice` (see [`super::connect`]).
    pub alice: String,
}

pub type Scenario = (&'static str, fn(&Tier) -> Result<String>);

/// The users both brokers know, with their passwords: `user-secret`.
pub const ALICE: &str = "alice";

// Kafka's codes (resource, pattern, operation, permission types).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
/// The config resource type of a broker.
const BROKER: i8 = 4;
const TRANSACTIONAL_ID: i8 = 5;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DESCRIBE: i8 = 8;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

/// One ACL for alice: (resource type, name, pattern, operation,
/// permission, host).
type Grant = (i8, &'static str, i8, i8, i8, &'static str);

fn allow(resource_type: i8, name: &'static str, operation: i8) -> Grant {
    (resource_type, name, LITERAL, operation, ALLOW, "*")
}

fn creation(g: &Grant) -> AclCreation {
    AclCreation::default()
        .with_resource_type(g.0)
        .with_resource_name(s(g.1))
        .with_resource_pattern_type(g.2)
        .with_principal(s(&format!("User:{ALICE}")))
        .with_host(s(g.5))
        .with_operation(g.3)
        .with_permission_type(g.4)
}

/// Creates `grants` as the admin, then waits (up to 10 s) until the
/// broker describes them all: its authorizer has them.
fn grant(t: &Tier, grants: &[Grant]) -> Result<()> {
    let req = CreateAclsRequest::default().with_creations(grants.iter().map(creation).collect());
    let resp: CreateAclsResponse = call(&t.admin, ApiKey::CreateAcls, 3, &req)?;
    if let Some(r) = resp.results.iter().find(|r| r.error_code != 0) {
        bail!("CreateAcls: {} {:?}", r.error_code, r.error_message);
    }
    for _ in 0..50 {
        let resp: DescribeAclsResponse = call(&t.admin, ApiKey::DescribeAcls, 3, &alices_acls())?;
        let listed = |g: &Grant| {
            resp.resources.iter().any(|r| {
                r.resource_type == g.0
                    && r.resource_name.as_str() == g.1
                    && r.pattern_type == g.2
                    && r.acls.iter().any(|a| {
                        a.operation == g.3 && a.permission_type == g.4 && a.host.as_str() == g.5
                    })
            })
        };
        if grants.iter().all(listed) {
            // Kafka's broker applies the metadata record to its authorizer
            // and answers DescribeAcls from it: once listed, enforced.
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("the granted ACLs were not listed within 10 s")
}

/// DescribeAcls of everything alice is granted.
fn alices_acls() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(1)
        .with_host_filter(None)
        .with_principal_filter(Some(s(&format!("User:{ALICE}"))))
        .with_operation(1)
        .with_permission_type(1)
}

/// DescribeAcls answered, resources and their ACLs in order (Kafka lists
/// them in the order of a hash map of its own).
fn described_acls(b: &str, req: &DescribeAclsRequest) -> Result<String> {
    let mut resp: DescribeAclsResponse = call(b, ApiKey::DescribeAcls, 3, req)?;
    for r in &mut resp.resources {
        r.acls
            .sort_by_key(|a| (a.operation, a.permission_type, a.host.to_string()));
    }
    resp.resources
        .sort_by_key(|r| (r.resource_type, r.resource_name.to_string(), r.pattern_type));
    Ok(super::normalise(&format!("DescribeAcls v3: {resp:#?}")))
}

/// Metadata answered, topics by name (Kafka lists every topic in the
/// order of a hash map).
fn metadata_as(b: &str, version: i16, req: &MetadataRequest) -> Result<String> {
    let mut resp: MetadataResponse = call(b, ApiKey::Metadata, version, req)?;
    resp.topics
        .sort_by_key(|t| t.name.as_ref().map(|n| n.to_string()));
    Ok(super::normalise(&format!("Metadata v{version}: {resp:#?}")))
}

fn topic_id(b: &str, name: &str) -> Result<uuid::Uuid> {
    let resp: MetadataResponse = call(
        b,
        ApiKey::Metadata,
        12,
        &super::metadata(Some(&[name]), false),
    )?;
    Ok(resp.topics.first().map(|t| t.topic_id).unwrap_or_default())
}

fn groups_listed(b: &str) -> Result<String> {
    let mut resp: ListGroupsResponse =
        call(b, ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
    resp.groups.retain(|g| g.group_id.0.starts_with("acl-"));
    resp.groups.sort_by_key(|g| g.group_id.0.to_string());
    Ok(super::normalise(&format!("ListGroups v4: {resp:#?}")))
}

fn describe_configs(resource_type: i8, name: &str) -> DescribeConfigsRequest {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(Some(vec![s("cleanup.policy")])),
    ])
}

fn legacy_alter(resource_type: i8, name: &str) -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    AlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("compact"))),
            ]),
    ])
}

fn find_group_coordinator(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s(group)])
}

fn offset_delete(group: &str, name: &str) -> OffsetDeleteRequest {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
        ])
}

fn create_partitions(name: &str, count: i32) -> CreatePartitionsRequest {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic(name))
                .with_count(count),
        ])
}

fn acl_filter(resource_type: i8, name: &str) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(Some(s(name)))
        .with_pattern_type_filter(LITERAL)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1)
}

/// Every scenario of the tier, in the order they run.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        // Before alice may write anywhere: InitProducerId needs
        // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
        (
            "acl: init producer id with no write permission anywhere",
            |t| {
                ask::<_, InitProducerIdResponse>(
                    &t.alice,
                    ApiKey::InitProducerId,
                    4,
                    &super::init_producer(None),
                )
            },
        ),
        (
            "acl: init producer id for a transactional id without WRITE on it",
            |t| {
                ask::<_, InitProducerIdResponse>(
                    &t.alice,
                    ApiKey::InitProducerId,
                    4,
                    &super::init_producer(Some("acl-txn")),
                )
            },
        ),
        (
            "acl: find coordinator of a transactional id without DESCRIBE on it",
            |t| {
                grant(t, &[allow(TRANSACTIONAL_ID, "acl-txn-other", WRITE)])?;
                let req = FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![s("acl-txn-none")]);
                ask::<_, FindCoordinatorResponse>(&t.alice, ApiKey::FindCoordinator, 4, &req)
            },
        ),
        (
            "acl: metadata of every topic lists only those alice may describe",
            |t| {
                super::created(&t.admin, "acl-md-seen", 1, &[])?;
                super::created(&t.admin, "acl-md-hidden", 1, &[])?;
                grant(t, &[allow(TOPIC, "acl-md-seen", DESCRIBE)])?;
                metadata_as(&t.alice, 12, &super::metadata(None, false))
            },
        ),
        (
            "acl: metadata of named topics alice may not describe, existing or not",
            |t| {
                metadata_as(
                    &t.alice,
                    12,
                    &super::metadata(Some(&["acl-md-hidden", "acl-md-missing"]), true),
                )
            },
        ),
        ("acl: metadata by topic id alice may not describe", |t| {
            use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
            let id = topic_id(&t.admin, "acl-md-hidden")?;
            let req = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(id),
            ]));
            let mut out = metadata_as(&t.alice, 12, &req)?;
            // The id itself is no secret; it differs by run.
            out = out.replace(&format!("{id}"), "_");
            Ok(out)
        }),
        (
            "acl: auto-creating a topic from metadata without CREATE",
            |t| {
                grant(t, &[(TOPIC, "acl-auto-", PREFIXED, DESCRIBE, ALLOW, "*")])?;
                metadata_as(
                    &t.alice,
                    12,
                    &super::metadata(Some(&["acl-auto-one"]), true),
                )
            },
        ),
        ("acl: metadata with the operations alice may do", |t| {
            super::created(&t.admin, "acl-ops", 1, &[])?;
            grant(
                t,
                &[
                    allow(TOPIC, "acl-ops", READ),
                    allow(TOPIC, "acl-ops", WRITE),
                ],
            )?;
            let req = super::metadata(Some(&["acl-ops", "acl-md-hidden"]), false)
                .with_include_topic_authorized_operations(true)
                .with_include_cluster_authorized_operations(true);
            metadata_as(&t.alice, 10, &req)
        }),
        (
            "acl: describe cluster with the operations alice may do",
            |t| {
                let req = DescribeClusterRequest::default()
                    .with_include_cluster_authorized_operations(true);
                ask::<_, DescribeClusterResponse>(&t.alice, ApiKey::DescribeCluster, 1, &req)
            },
        ),
        ("acl: produce without WRITE", |t| {
            super::created(&t.admin, "acl-produce", 1, &[])?;
            grant(t, &[allow(TOPIC, "acl-produce", DESCRIBE)])?;
            ask::<_, ProduceResponse>(
                &t.alice,
                ApiKey::Produce,
                9,
                &super::produce("acl-produce", 0, -1)?,
            )
        }),
        ("acl: produce with WRITE", |t| {
            super::created(&t.admin, "acl-produce-ok", 1, &[])?;
            grant(t, &[allow(TOPIC, "acl-produce-ok", WRITE)])?;
            ask::<_, ProduceResponse>(
                &t.alice,
                ApiKey::Produce,
                9,
                &super::produce("acl-produce-ok", 0, -1)?,
            )
        }),
        ("acl: init producer id with WRITE on a topic", |t| {
            settled::<_, InitProducerIdResponse>(
                &t.alice,
                ApiKey::InitProducerId,
                4,
                &super::init_producer(None),
            )
        }),
        ("acl: fetch without READ", |t| {
            super::written(&t.admin, "acl-fetch")?;
            grant(t, &[allow(TOPIC, "acl-fetch", DESCRIBE)])?;
            ask::<_, FetchResponse>(
                &t.alice,
                ApiKey::Fetch,
                12,
                &super::fetch("acl-fetch", 0, 0),
            )
        }),
        ("acl: fetch with READ", |t| {
            super::written(&t.admin, "acl-fetch-ok")?;
            grant(t, &[allow(TOPIC, "acl-fetch-ok", READ)])?;
            ask::<_, FetchResponse>(
                &t.alice,
                ApiKey::Fetch,
                12,
                &super::fetch("acl-fetch-ok", 0, 0),
            )
        }),
        ("acl: a follower's fetch without CLUSTER_ACTION", |t| {
            let req = super::fetch("acl-fetch-ok", 0, 0).with_replica_id(BrokerId(0));
            ask::<_, FetchResponse>(&t.alice, ApiKey::Fetch, 12, &req)
        }),
        ("acl: list offsets without DESCRIBE", |t| {
            super::written(&t.admin, "acl-offsets")?;
            ask::<_, ListOffsetsResponse>(
                &t.alice,
                ApiKey::ListOffsets,
                7,
                &super::list_offsets("acl-offsets", 0, -1),
            )
        }),
        ("acl: offset for leader epoch without DESCRIBE", |t| {
            ask::<_, OffsetForLeaderEpochResponse>(
                &t.alice,
                ApiKey::OffsetForLeaderEpoch,
                4,
                &super::leader_epoch("acl-offsets", -1, 0),
            )
        }),
        (
            "acl: a follower's offset for leader epoch without CLUSTER_ACTION",
            |t| {
                let req = super::leader_epoch("acl-fetch-ok", -1, 0).with_replica_id(BrokerId(0));
                ask::<_, OffsetForLeaderEpochResponse>(
                    &t.alice,
                    ApiKey::OffsetForLeaderEpoch,
                    4,
                    &req,
                )
            },
        ),
        ("acl: create topics without CREATE", |t| {
            let r = super::create_topics(vec![super::create("acl-create", 1, 1, &[])], false);
            ask::<_, CreateTopicsResponse>(&t.alice, ApiKey::CreateTopics, 7, &r)
        }),
        (
            "acl: create topics with CREATE but not DESCRIBE_CONFIGS",
            |t| {
                grant(t, &[allow(TOPIC, "acl-create-ok", CREATE)])?;
                let r =
                    super::create_topics(vec![super::create("acl-create-ok", 1, 1, &[])], false);
                ask::<_, CreateTopicsResponse>(&t.alice, ApiKey::CreateTopics, 7, &r)
            },
        ),
        (
            "acl: delete topics without DELETE, by name and by id",
            |t| {
                use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
                super::created(&t.admin, "acl-delete", 1, &[])?;
                super::created(&t.admin, "acl-delete-seen", 1, &[])?;
                grant(t, &[allow(TOPIC, "acl-delete-seen", DESCRIBE)])?;
                let hidden = topic_id(&t.admin, "acl-delete")?;
                let seen = topic_id(&t.admin, "acl-delete-seen")?;
                let req = DeleteTopicsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        DeleteTopicState::default().with_name(Some(topic("acl-delete"))),
                        DeleteTopicState::default().with_topic_id(hidden),
                        DeleteTopicState::default().with_topic_id(seen),
                    ]);
                let mut resp: DeleteTopicsResponse = call(&t.alice, ApiKey::DeleteTopics, 6, &req)?;
                // Kafka answers in the order of a hash map of its own.
                let label = |id: &uuid::Uuid| [*id == hidden, *id == seen];
                resp.responses
                    .sort_by_key(|r| (r.name.as_ref().map(|n| n.to_string()), label(&r.topic_id)));
                let out = super::normalise(&format!("DeleteTopics v6: {resp:#?}"));
                Ok(out
                    .replace(&hidden.to_string(), "hidden")
                    .replace(&seen.to_string(), "seen"))
            },
        ),
        ("acl: create partitions without ALTER", |t| {
            super::created(&t.admin, "acl-grow", 1, &[])?;
            ask::<_, CreatePartitionsResponse>(
                &t.alice,
                ApiKey::CreatePartitions,
                3,
                &create_partitions("acl-grow", 2),
            )
        }),
        (
            "acl: describe configs without DESCRIBE_CONFIGS, topic and broker",
            |t| {
                super::created(&t.admin, "acl-configs", 1, &[])?;
                grant(t, &[allow(TOPIC, "acl-configs", DESCRIBE)])?;
                let topic =
                    super::ask_configs(&t.alice, 4, &describe_configs(TOPIC, "acl-configs"))?;
                let broker = super::ask_configs(&t.alice, 4, &describe_configs(BROKER, "0"))?;
                Ok(format!("{topic}\n{broker}"))
            },
        ),
        (
            "acl: alter configs without ALTER_CONFIGS, topic and broker",
            |t| {
                let topic = ask::<_, IncrementalAlterConfigsResponse>(
                    &t.alice,
                    ApiKey::IncrementalAlterConfigs,
                    1,
                    &super::alter_topic("acl-configs", &[("cleanup.policy", 0, Some("compact"))]),
                )?;
                let broker = super::broker_config(&t.alice, "0", "log.cleaner.threads", Some("2"))?;
                let legacy_topic = ask::<_, AlterConfigsResponse>(
                    &t.alice,
                    ApiKey::AlterConfigs,
                    2,
                    &legacy_alter(TOPIC, "acl-configs"),
                )?;
                let legacy_broker = ask::<_, AlterConfigsResponse>(
                    &t.alice,
                    ApiKey::AlterConfigs,
                    2,
                    &legacy_alter(BROKER, ""),
                )?;
                Ok(format!(
                    "{topic}\n{broker}\n{legacy_topic}\n{legacy_broker}"
                ))
            },
        ),
        ("acl: delete records without DELETE", |t| {
            super::written(&t.admin, "acl-records")?;
            grant(t, &[allow(TOPIC, "acl-records", READ)])?;
            ask::<_, DeleteRecordsResponse>(
                &t.alice,
                ApiKey::DeleteRecords,
                2,
                &super::delete_records("acl-records", 0, 1),
            )
        }),
        (
            "acl: describe log dirs without DESCRIBE on the cluster",
            |t| {
                let req = DescribeLogDirsRequest::default().with_topics(None);
                ask::<_, DescribeLogDirsResponse>(&t.alice, ApiKey::DescribeLogDirs, 4, &req)
            },
        ),
        ("acl: elect leaders without ALTER on the cluster", |t| {
            use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
            let req = ElectLeadersRequest::default()
                .with_election_type(0)
                .with_timeout_ms(10_000)
                .with_topic_partitions(Some(vec![
                    TopicPartitions::default()
                        .with_topic(topic("acl-grow"))
                        .with_partitions(vec![0]),
                ]));
            ask::<_, ElectLeadersResponse>(&t.alice, ApiKey::ElectLeaders, 2, &req)
        }),
        (
            "acl: partition reassignments without ALTER or DESCRIBE on the cluster",
            |t| {
                use kafka_protocol::messages::alter_partition_reassignments_request::{
                    ReassignablePartition, ReassignableTopic,
                };
                let alter = AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        ReassignableTopic::default()
                            .with_name(topic("acl-grow"))
                            .with_partitions(vec![
                                ReassignablePartition::default()
                                    .with_partition_index(0)
                                    .with_replicas(Some(vec![BrokerId(0)])),
                            ]),
                    ]);
                let a = ask::<_, AlterPartitionReassignmentsResponse>(
                    &t.alice,
                    ApiKey::AlterPartitionReassignments,
                    0,
                    &alter,
                )?;
                let list = ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(None);
                let l = ask::<_, ListPartitionReassignmentsResponse>(
                    &t.alice,
                    ApiKey::ListPartitionReassignments,
                    0,
                    &list,
                )?;
                Ok(format!("{a}\n{l}"))
            },
        ),
        ("acl: unregister broker without ALTER on the cluster", |t| {
            let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(7));
            ask::<_, UnregisterBrokerResponse>(&t.alice, ApiKey::UnregisterBroker, 0, &req)
        }),
        (
            "acl: describe quorum without DESCRIBE on the cluster",
            |t| {
                use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
                let req = DescribeQuorumRequest::default().with_topics(vec![
                    TopicData::default()
                        .with_topic_name(topic("__cluster_metadata"))
                        .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
                ]);
                ask::<_, DescribeQuorumResponse>(&t.alice, ApiKey::DescribeQuorum, 1, &req)
            },
        ),
        ("acl: SCRAM credentials without ALTER on the cluster", |t| {
            let a = super::alter_scram(&t.alice, &[("acl-user", 2)], &[("acl-other", 2, 8192)])?;
            Ok(a)
        }),
        ("acl: find coordinator without DESCRIBE on the group", |t| {
            ask::<_, FindCoordinatorResponse>(
                &t.alice,
                ApiKey::FindCoordinator,
                4,
                &find_group_coordinator("acl-group"),
            )
        }),
        (
            "acl: find coordinator v3 without DESCRIBE on the group",
            |t| {
                let req = FindCoordinatorRequest::default()
                    .with_key(s("acl-group"))
                    .with_key_type(0);
                ask::<_, FindCoordinatorResponse>(&t.alice, ApiKey::FindCoordinator, 3, &req)
            },
        ),
        (
            "acl: join, sync, heartbeat and leave a group without READ",
            |t| {
                grant(t, &[allow(GROUP, "acl-group", DESCRIBE)])?;
                let j = ask::<_, JoinGroupResponse>(
                    &t.alice,
                    ApiKey::JoinGroup,
                    9,
                    &super::join("acl-group", ""),
                )?;
                let sync = SyncGroupRequest::default()
                    .with_group_id(GroupId(s("acl-group")))
                    .with_generation_id(1)
                    .with_member_id(s("m"))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
                let sy = ask::<_, SyncGroupResponse>(&t.alice, ApiKey::SyncGroup, 5, &sync)?;
                let hb = HeartbeatRequest::default()
                    .with_group_id(GroupId(s("acl-group")))
                    .with_generation_id(1)
                    .with_member_id(s("m"));
                let h = ask::<_, HeartbeatResponse>(&t.alice, ApiKey::Heartbeat, 4, &hb)?;
                use kafka_protocol::messages::leave_group_request::MemberIdentity;
                let leave = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("acl-group")))
                    .with_members(vec![MemberIdentity::default().with_member_id(s("m"))]);
                let l = ask::<_, LeaveGroupResponse>(&t.alice, ApiKey::LeaveGroup, 5, &leave)?;
                Ok(without_member_ids(&format!("{j}\n{sy}\n{h}\n{l}")))
            },
        ),
        ("acl: offset commit without READ on the group", |t| {
            super::written(&t.admin, "acl-commit")?;
            // As a client does first: the coordinator (Kafka creates its
            // offsets topic then), found by the admin.
            for g in ["acl-commit-group", "acl-commit-ok", "acl-list-hidden"] {
                settled::<_, FindCoordinatorResponse>(
                    &t.admin,
                    ApiKey::FindCoordinator,
                    4,
                    &find_group_coordinator(g),
                )?;
            }
            grant(t, &[allow(TOPIC, "acl-commit", READ)])?;
            ask::<_, OffsetCommitResponse>(
                &t.alice,
                ApiKey::OffsetCommit,
                8,
                &super::commit("acl-commit-group", "acl-commit", 1),
            )
        }),
        (
            "acl: offset commit with READ on the group but not the topic",
            |t| {
                super::written(&t.admin, "acl-commit-closed")?;
                grant(t, &[allow(GROUP, "acl-commit-ok", READ)])?;
                settled::<_, OffsetCommitResponse>(
                    &t.alice,
                    ApiKey::OffsetCommit,
                    8,
                    &super::commit("acl-commit-ok", "acl-commit-closed", 1),
                )
            },
        ),
        (
            "acl: offset commit with READ on the group and the topic",
            |t| {
                settled::<_, OffsetCommitResponse>(
                    &t.alice,
                    ApiKey::OffsetCommit,
                    8,
                    &super::commit("acl-commit-ok", "acl-commit", 2),
                )
            },
        ),
        ("acl: offset fetch without DESCRIBE on the group", |t| {
            let v8 = ask::<_, OffsetFetchResponse>(
                &t.alice,
                ApiKey::OffsetFetch,
                8,
                &super::versions::offset_fetch("acl-commit-group", "acl-commit", 8),
            )?;
            let v7 = ask::<_, OffsetFetchResponse>(
                &t.alice,
                ApiKey::OffsetFetch,
                7,
                &super::fetch_offsets("acl-commit-group", "acl-commit"),
            )?;
            Ok(format!("{v8}\n{v7}"))
        }),
        ("acl: offset fetch of a topic alice may not describe", |t| {
            let v8 = settled::<_, OffsetFetchResponse>(
                &t.alice,
                ApiKey::OffsetFetch,
                8,
                &super::versions::offset_fetch("acl-commit-ok", "acl-commit-closed", 8),
            )?;
            let v7 = settled::<_, OffsetFetchResponse>(
                &t.alice,
                ApiKey::OffsetFetch,
                7,
                &super::fetch_offsets("acl-commit-ok", "acl-commit-closed"),
            )?;
            Ok(format!("{v8}\n{v7}"))
        }),
        ("acl: describe groups without DESCRIBE", |t| {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![
                    GroupId(s("acl-commit-group")),
                    GroupId(s("acl-commit-ok")),
                ])
                .with_include_authorized_operations(true);
            let out = ask::<_, DescribeGroupsResponse>(&t.alice, ApiKey::DescribeGroups, 5, &req)?;
            Ok(without_member_ids(&out))
        }),
        (
            "acl: list groups shows only groups alice may describe",
            |t| {
                settled::<_, OffsetCommitResponse>(
                    &t.admin,
                    ApiKey::OffsetCommit,
                    8,
                    &super::commit("acl-list-hidden", "acl-commit", 1),
                )?;
                groups_listed(&t.alice)
            },
        ),
        ("acl: delete groups without DELETE", |t| {
            let req = DeleteGroupsRequest::default().with_groups_names(vec![
                GroupId(s("acl-commit-ok")),
                GroupId(s("acl-list-hidden")),
            ]);
            ask::<_, DeleteGroupsResponse>(&t.alice, ApiKey::DeleteGroups, 2, &req)
        }),
        ("acl: offset delete without DELETE on the group", |t| {
            ask::<_, OffsetDeleteResponse>(
                &t.alice,
                ApiKey::OffsetDelete,
                0,
                &offset_delete("acl-commit-ok", "acl-commit"),
            )
        }),
        (
            "acl: offset delete with DELETE on the group but no READ on the topic",
            |t| {
                grant(t, &[(GROUP, "acl-commit-ok", LITERAL, ALL, ALLOW, "*")])?;
                ask::<_, OffsetDeleteResponse>(
                    &t.alice,
                    ApiKey::OffsetDelete,
                    0,
                    &offset_delete("acl-commit-ok", "acl-commit-closed"),
                )
            },
        ),
        (
            "acl: a DENY wins over an ALLOW, prefixed and literal",
            |t| {
                super::written(&t.admin, "acl-pfx-open")?;
                super::written(&t.admin, "acl-pfx-secret")?;
                grant(
                    t,
                    &[
                        (TOPIC, "acl-pfx-", PREFIXED, READ, ALLOW, "*"),
                        (TOPIC, "acl-pfx-secret", LITERAL, READ, DENY, "*"),
                    ],
                )?;
                let open = ask::<_, FetchResponse>(
                    &t.alice,
                    ApiKey::Fetch,
                    12,
                    &super::fetch("acl-pfx-open", 0, 0),
                )?;
                let secret = ask::<_, FetchResponse>(
                    &t.alice,
                    ApiKey::Fetch,
                    12,
                    &super::fetch("acl-pfx-secret", 0, 0),
                )?;
                Ok(format!("{open}\n{secret}"))
            },
        ),
        ("acl: an ACL for another host does not apply", |t| {
            super::written(&t.admin, "acl-host")?;
            grant(t, &[(TOPIC, "acl-host", LITERAL, READ, ALLOW, "10.9.8.7")])?;
            ask::<_, FetchResponse>(&t.alice, ApiKey::Fetch, 12, &super::fetch("acl-host", 0, 0))
        }),
        ("acl: alice may not create, describe or delete ACLs", |t| {
            let c = CreateAclsRequest::default()
                .with_creations(vec![creation(&allow(TOPIC, "acl-self", ALL))]);
            let created = ask::<_, CreateAclsResponse>(&t.alice, ApiKey::CreateAcls, 3, &c)?;
            let described = described_acls(&t.alice, &alices_acls())?;
            let d = DeleteAclsRequest::default().with_filters(vec![acl_filter(TOPIC, "acl-fetch")]);
            let deleted = ask::<_, DeleteAclsResponse>(&t.alice, ApiKey::DeleteAcls, 3, &d)?;
            Ok(format!("{created}\n{described}\n{deleted}"))
        }),
        ("acl: every ACL of alice, described by a super user", |t| {
            described_acls(&t.admin, &alices_acls())
        }),
        ("acl: ACLs created with invalid fields", |t| {
            let bad = |g: Grant, principal: &str| creation(&g).with_principal(s(principal));
            let each = vec![
                bad(
                    (CLUSTER, "not-the-cluster", LITERAL, ALL, ALLOW, "*"),
                    "User:alice",
                ),
                bad((TOPIC, "acl-x", 2, READ, ALLOW, "*"), "User:alice"),
                bad((TOPIC, "acl-x", LITERAL, 1, ALLOW, "*"), "User:alice"),
                bad((TOPIC, "acl-x", LITERAL, READ, 1, "*"), "User:alice"),
                bad((TOPIC, "acl-x", LITERAL, READ, ALLOW, "*"), "alice"),
                bad((TOPIC, "", LITERAL, READ, ALLOW, "*"), "User:alice"),
                bad((GROUP, "acl-x", LITERAL, WRITE, ALLOW, "*"), "User:alice"),
            ];
            // One request each: Kafka refuses a request as a whole.
            let mut out = Vec::new();
            for c in each {
                let req = CreateAclsRequest::default().with_creations(vec![c]);
                out.push(ask::<_, CreateAclsResponse>(
                    &t.admin,
                    ApiKey::CreateAcls,
                    3,
                    &req,
                )?);
            }
            Ok(out.join("\n"))
        }),
        (
            "acl: deleting ACLs lists what was deleted, and the access goes",
            |t| {
                let d = DeleteAclsRequest::default()
                    .with_filters(vec![acl_filter(TOPIC, "acl-fetch-ok")]);
                let mut resp: DeleteAclsResponse = call(&t.admin, ApiKey::DeleteAcls, 3, &d)?;
                for f in &mut resp.filter_results {
                    f.matching_acls
                        .sort_by_key(|a| (a.operation, a.permission_type));
                }
                let deleted = super::normalise(&format!("DeleteAcls v3: {resp:#?}"));
                // Kafka's broker drops them from its authorizer once the
                // metadata record reaches it.
                let mut fetched = String::new();
                for _ in 0..50 {
                    fetched = ask::<_, FetchResponse>(
                        &t.alice,
                        ApiKey::Fetch,
                        12,
                        &super::fetch("acl-fetch-ok", 0, 0),
                    )?;
                    if fetched.contains("error_code: 29") {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Ok(format!("{deleted}\n{fetched}"))
            },
        ),
    ]
}
