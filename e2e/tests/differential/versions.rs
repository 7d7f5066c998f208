//! The same scenarios at every version both brokers serve: a client picks
//! the highest version both sides know, so an old client meets the old
//! versions' encodings (absent fields, other error codes, arrays that
//! became batches). Each family is named for what a user would search
//! for, with the version, and creates topics and groups of its own.

use std::collections::BTreeMap;

use super::*;

/// The versions both brokers serve, per API key.
pub type Served = BTreeMap<i16, (i16, i16)>;

/// `(min, max)` of every API `bootstrap` advertises.
pub fn advertised(bootstrap: &str) -> Result<Served> {
    let r: ApiVersionsResponse = call(
        bootstrap,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(s("sluice-differential"))
            .with_client_software_version(s("1")),
    )?;
    Ok(r.api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect())
}

/// The versions in both.
pub fn common(a: &Served, b: &Served) -> Served {
    a.iter()
        .filter_map(|(k, (amin, amax))| {
            let (bmin, bmax) = b.get(k)?;
            let (min, max) = ((*amin).max(*bmin), (*amax).min(*bmax));
            (min <= max).then_some((*k, (min, max)))
        })
        .collect()
}

type Family = (&'static str, ApiKey, i16, fn(&str, i16) -> Result<String>);

/// `(name, api, lowest version it applies to, run)`: run at each version
/// both serve from that one up. The name's `{v}` is the version.
fn families() -> Vec<Family> {
    vec![
        (
            "metadata v{v}: a topic that does not exist",
            ApiKey::Metadata,
            4,
            |b, v| {
                let r = metadata(Some(&[&format!("md-none-v{v}")]), false);
                ask::<_, MetadataResponse>(b, ApiKey::Metadata, v, &r)
            },
        ),
        (
            "metadata v{v}: a topic with two partitions",
            ApiKey::Metadata,
            0,
            |b, v| {
                let name = format!("md-two-v{v}");
                created(b, &name, 2, &[])?;
                let r = metadata(Some(&[&name]), v < 4);
                ask::<_, MetadataResponse>(b, ApiKey::Metadata, v, &r)
            },
        ),
        (
            "metadata v{v}: an invalid topic name",
            ApiKey::Metadata,
            4,
            |b, v| {
                let r = metadata(Some(&["bad/name"]), true);
                ask::<_, MetadataResponse>(b, ApiKey::Metadata, v, &r)
            },
        ),
        (
            "produce v{v}: three records with acks=all",
            // v0-v2 (message format v0/v1) are advertised, not served, by both.
            ApiKey::Produce,
            3,
            |b, v| {
                let name = format!("produce-v{v}");
                created(b, &name, 1, &[])?;
                ask::<_, ProduceResponse>(b, ApiKey::Produce, v, &produce(&name, 0, -1)?)
            },
        ),
        (
            "produce v{v}: to a topic that does not exist",
            // v0-v2 (message format v0/v1) are advertised, not served, by both.
            ApiKey::Produce,
            3,
            |b, v| {
                let name = format!("produce-none-v{v}");
                ask::<_, ProduceResponse>(b, ApiKey::Produce, v, &produce(&name, 0, 1)?)
            },
        ),
        (
            "produce v{v}: to a partition that does not exist",
            // v0-v2 (message format v0/v1) are advertised, not served, by both.
            ApiKey::Produce,
            3,
            |b, v| {
                let name = format!("produce-part-v{v}");
                created(b, &name, 1, &[])?;
                ask::<_, ProduceResponse>(b, ApiKey::Produce, v, &produce(&name, 2, 1)?)
            },
        ),
        (
            "fetch v{v}: the records produced",
            ApiKey::Fetch,
            0,
            |b, v| {
                let name = format!("fetch-v{v}");
                written(b, &name)?;
                let f = fetch_by_id(b, &name, 0, v)?;
                ask::<_, FetchResponse>(b, ApiKey::Fetch, v, &f)
            },
        ),
        (
            "fetch v{v}: from an offset past the end",
            ApiKey::Fetch,
            0,
            |b, v| {
                let name = format!("fetch-end-v{v}");
                written(b, &name)?;
                let f = fetch_by_id(b, &name, 50, v)?;
                ask::<_, FetchResponse>(b, ApiKey::Fetch, v, &f)
            },
        ),
        (
            "fetch v{v}: a topic that does not exist",
            ApiKey::Fetch,
            0,
            |b, v| {
                let mut f = fetch(&format!("fetch-none-v{v}"), 0, 0);
                f.topics[0].topic_id = uuid::Uuid::from_u128(7);
                ask::<_, FetchResponse>(b, ApiKey::Fetch, v, &f)
            },
        ),
        (
            "list offsets v{v}: earliest and latest of a written topic",
            ApiKey::ListOffsets,
            0,
            |b, v| {
                let name = format!("offsets-v{v}");
                written(b, &name)?;
                let e = ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    v,
                    &list_offsets(&name, 0, -2),
                )?;
                let l = ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    v,
                    &list_offsets(&name, 0, -1),
                )?;
                Ok(format!("{e}\n{l}"))
            },
        ),
        (
            "list offsets v{v}: a partition that does not exist",
            ApiKey::ListOffsets,
            0,
            |b, v| {
                let name = format!("offsets-part-v{v}");
                created(b, &name, 1, &[])?;
                ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    v,
                    &list_offsets(&name, 3, -1),
                )
            },
        ),
        (
            "list offsets v{v}: a topic that does not exist",
            ApiKey::ListOffsets,
            0,
            |b, v| {
                let name = format!("offsets-none-v{v}");
                ask::<_, ListOffsetsResponse>(
                    b,
                    ApiKey::ListOffsets,
                    v,
                    &list_offsets(&name, 0, -1),
                )
            },
        ),
        (
            "create topics v{v}: a new topic",
            ApiKey::CreateTopics,
            0,
            |b, v| {
                let r = create_topics(vec![create(&format!("create-v{v}"), 2, 1, &[])], false);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, v, &r)
            },
        ),
        (
            "create topics v{v}: a topic that already exists",
            ApiKey::CreateTopics,
            0,
            |b, v| {
                let name = format!("create-twice-v{v}");
                created(b, &name, 1, &[])?;
                let r = create_topics(vec![create(&name, 1, 1, &[])], false);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, v, &r)
            },
        ),
        (
            "create topics v{v}: an invalid topic name",
            ApiKey::CreateTopics,
            0,
            |b, v| {
                let r = create_topics(vec![create(&format!("bad name v{v}"), 1, 1, &[])], false);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, v, &r)
            },
        ),
        (
            "create topics v{v}: validate only",
            ApiKey::CreateTopics,
            1,
            |b, v| {
                let r = create_topics(vec![create(&format!("validate-v{v}"), 2, 1, &[])], true);
                ask::<_, CreateTopicsResponse>(b, ApiKey::CreateTopics, v, &r)
            },
        ),
        (
            "delete topics v{v}: a topic that exists",
            ApiKey::DeleteTopics,
            0,
            |b, v| {
                let name = format!("delete-v{v}");
                created(b, &name, 1, &[])?;
                ask::<_, DeleteTopicsResponse>(b, ApiKey::DeleteTopics, v, &delete_topic(&name, v))
            },
        ),
        (
            "delete topics v{v}: a topic that does not exist",
            ApiKey::DeleteTopics,
            0,
            |b, v| {
                let r = delete_topic(&format!("delete-none-v{v}"), v);
                ask::<_, DeleteTopicsResponse>(b, ApiKey::DeleteTopics, v, &r)
            },
        ),
        (
            "find the coordinator v{v}: of a group",
            ApiKey::FindCoordinator,
            0,
            |b, v| {
                let key = s(&format!("coordinated-v{v}"));
                let r = if v >= 4 {
                    FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
                } else {
                    FindCoordinatorRequest::default().with_key(key)
                };
                settled::<_, FindCoordinatorResponse>(b, ApiKey::FindCoordinator, v, &r)
            },
        ),
        (
            "commit an offset v{v}: outside a group generation",
            ApiKey::OffsetCommit,
            0,
            |b, v| {
                let name = format!("commit-v{v}");
                written(b, &name)?;
                let r = commit(&format!("commit-group-v{v}"), &name, 2);
                settled::<_, OffsetCommitResponse>(b, ApiKey::OffsetCommit, v, &r)
            },
        ),
        (
            "fetch committed offsets v{v}: of a group that does not exist",
            ApiKey::OffsetFetch,
            0,
            |b, v| {
                let name = format!("offset-fetch-none-v{v}");
                created(b, &name, 1, &[])?;
                let r = offset_fetch(&format!("offset-fetch-none-v{v}"), &name, v);
                settled::<_, OffsetFetchResponse>(b, ApiKey::OffsetFetch, v, &r)
            },
        ),
        (
            "fetch committed offsets v{v}: an offset committed before",
            ApiKey::OffsetFetch,
            0,
            |b, v| {
                let name = format!("offset-fetch-v{v}");
                let group = format!("offset-fetch-group-v{v}");
                written(b, &name)?;
                settled::<_, OffsetCommitResponse>(
                    b,
                    ApiKey::OffsetCommit,
                    8,
                    &commit(&group, &name, 1),
                )?;
                let r = offset_fetch(&group, &name, v);
                settled::<_, OffsetFetchResponse>(b, ApiKey::OffsetFetch, v, &r)
            },
        ),
        (
            "join a group v{v}: without a member id",
            ApiKey::JoinGroup,
            4,
            |b, v| {
                let r = join(&format!("join-v{v}"), "");
                settled::<_, JoinGroupResponse>(b, ApiKey::JoinGroup, v, &r)
                    .map(|t| without_member_ids(&t))
            },
        ),
        (
            "heartbeat v{v}: to a group that does not exist",
            ApiKey::Heartbeat,
            0,
            |b, v| {
                let r = HeartbeatRequest::default()
                    .with_group_id(GroupId(s(&format!("heartbeat-none-v{v}"))))
                    .with_generation_id(1)
                    .with_member_id(s("someone"));
                settled::<_, HeartbeatResponse>(b, ApiKey::Heartbeat, v, &r)
            },
        ),
        (
            "sync a group v{v}: that does not exist",
            ApiKey::SyncGroup,
            0,
            |b, v| {
                let mut r = SyncGroupRequest::default()
                    .with_group_id(GroupId(s(&format!("sync-none-v{v}"))))
                    .with_generation_id(1)
                    .with_member_id(s("someone"));
                if v >= 5 {
                    r = r
                        .with_protocol_type(Some(s("consumer")))
                        .with_protocol_name(Some(s("range")));
                }
                settled::<_, SyncGroupResponse>(b, ApiKey::SyncGroup, v, &r)
            },
        ),
        (
            "leave a group v{v}: that does not exist",
            ApiKey::LeaveGroup,
            0,
            |b, v| {
                use kafka_protocol::messages::leave_group_request::MemberIdentity;
                let r = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(&format!("leave-none-v{v}"))));
                let r = if v >= 3 {
                    r.with_members(vec![MemberIdentity::default().with_member_id(s("someone"))])
                } else {
                    r.with_member_id(s("someone"))
                };
                settled::<_, LeaveGroupResponse>(b, ApiKey::LeaveGroup, v, &r)
            },
        ),
        (
            "describe a group v{v}: that does not exist",
            ApiKey::DescribeGroups,
            0,
            |b, v| {
                let r = DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(s(&format!("describe-none-v{v}")))]);
                settled::<_, DescribeGroupsResponse>(b, ApiKey::DescribeGroups, v, &r)
            },
        ),
        (
            "delete a group v{v}: that does not exist",
            ApiKey::DeleteGroups,
            0,
            |b, v| {
                let r = DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(s(&format!("delete-group-none-v{v}")))]);
                settled::<_, DeleteGroupsResponse>(b, ApiKey::DeleteGroups, v, &r)
            },
        ),
        (
            "init a producer id v{v}: without a transactional id",
            ApiKey::InitProducerId,
            0,
            |b, v| {
                let r = init_producer(None);
                settled::<_, InitProducerIdResponse>(b, ApiKey::InitProducerId, v, &r)
            },
        ),
        (
            "describe a topic's configs v{v}: the ones it overrides",
            ApiKey::DescribeConfigs,
            0,
            |b, v| {
                let name = format!("configs-v{v}");
                created(b, &name, 1, &[("retention.ms", "60000")])?;
                let r = DescribeConfigsRequest::default()
                    .with_include_synonyms(v >= 1)
                    .with_resources(vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(s(&name))
                            .with_configuration_keys(Some(vec![
                                s("retention.ms"),
                                s("segment.bytes"),
                            ])),
                    ]);
                ask_configs(b, v, &r)
            },
        ),
        (
            "set a topic config v{v}: incrementally",
            ApiKey::IncrementalAlterConfigs,
            0,
            |b, v| {
                let name = format!("alter-v{v}");
                created(b, &name, 1, &[])?;
                let r = alter_topic(&name, &[("retention.ms", 0, Some("120000"))]);
                ask::<_, IncrementalAlterConfigsResponse>(b, ApiKey::IncrementalAlterConfigs, v, &r)
            },
        ),
        (
            "replace a topic's configs v{v} (legacy AlterConfigs): one not given goes back to its default",
            ApiKey::AlterConfigs,
            0,
            |b, v| {
                let name = format!("legacy-alter-v{v}");
                created(b, &name, 1, &[("retention.ms", "60000")])?;
                let r = legacy_alter(&name, &[("segment.bytes", Some("2000000"))], false);
                let a = ask::<_, AlterConfigsResponse>(b, ApiKey::AlterConfigs, v, &r)?;
                Ok(format!("{a}\n{}", describe_two(b, &name)?))
            },
        ),
        (
            "grow a topic v{v}: from one partition to three",
            ApiKey::CreatePartitions,
            0,
            |b, v| {
                let name = format!("grow-v{v}");
                created(b, &name, 1, &[])?;
                let r = CreatePartitionsRequest::default()
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(topic(&name))
                            .with_count(3)
                            .with_assignments(None),
                    ])
                    .with_timeout_ms(10_000);
                ask::<_, CreatePartitionsResponse>(b, ApiKey::CreatePartitions, v, &r)
            },
        ),
        (
            "delete records v{v}: up to an offset",
            ApiKey::DeleteRecords,
            0,
            |b, v| {
                let name = format!("delete-records-v{v}");
                written(b, &name)?;
                ask::<_, DeleteRecordsResponse>(
                    b,
                    ApiKey::DeleteRecords,
                    v,
                    &delete_records(&name, 0, 2),
                )
            },
        ),
        (
            "end offset of a leader epoch v{v}",
            ApiKey::OffsetForLeaderEpoch,
            0,
            |b, v| {
                let name = format!("epoch-v{v}");
                written(b, &name)?;
                let r = leader_epoch(&name, -1, 0);
                ask::<_, OffsetForLeaderEpochResponse>(b, ApiKey::OffsetForLeaderEpoch, v, &r)
            },
        ),
        (
            "describe the cluster v{v}",
            ApiKey::DescribeCluster,
            0,
            |b, v| {
                let r = DescribeClusterRequest::default();
                ask::<_, DescribeClusterResponse>(b, ApiKey::DescribeCluster, v, &r)
            },
        ),
        (
            "elect the preferred leader v{v}: a one-replica partition",
            ApiKey::ElectLeaders,
            0,
            |b, v| {
                use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
                let name = format!("elect-v{v}");
                created(b, &name, 1, &[])?;
                let r = ElectLeadersRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topic_partitions(Some(vec![
                        TopicPartitions::default()
                            .with_topic(topic(&name))
                            .with_partitions(vec![0]),
                    ]));
                ask::<_, ElectLeadersResponse>(b, ApiKey::ElectLeaders, v, &r)
            },
        ),
    ]
}

/// Every family at every version both serve (`both`).
pub fn scenarios(both: &Served) -> Vec<(String, Scenario)> {
    let mut out: Vec<(String, Scenario)> = Vec::new();
    for (name, key, from, run) in families() {
        let Some((min, max)) = both.get(&(key as i16)) else {
            continue;
        };
        for v in (*min).max(from)..=*max {
            out.push((
                name.replace("{v}", &v.to_string()),
                Box::new(move |b: &str| run(b, v)),
            ));
        }
    }
    out
}

/// Fetch from `name`'s partition 0 at `offset`, by name or (v13 and
/// later) by topic id.
fn fetch_by_id(b: &str, name: &str, offset: i64, v: i16) -> Result<FetchRequest> {
    let mut f = fetch(name, 0, offset);
    if v >= 13 {
        let m: MetadataResponse = call(b, ApiKey::Metadata, 12, &metadata(Some(&[name]), false))?;
        let t = m
            .topics
            .first()
            .with_context(|| format!("metadata of {name}"))?;
        f.topics[0].topic_id = t.topic_id;
    }
    Ok(f)
}

fn delete_topic(name: &str, v: i16) -> DeleteTopicsRequest {
    let r = DeleteTopicsRequest::default().with_timeout_ms(10_000);
    if v >= 6 {
        r.with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic(name))),
        ])
    } else {
        r.with_topic_names(vec![topic(name)])
    }
}

/// OffsetFetch of `name`'s partition 0 for `group`: one group per request
/// before v8, a list of groups from v8.
pub fn offset_fetch(group: &str, name: &str, v: i16) -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    if v >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(topic(name))
                        .with_partition_indexes(vec![0]),
                ])),
        ])
    } else {
        fetch_offsets(group, name)
    }
}

/// Legacy AlterConfigs (33) of topic `name`: these configs, and only these.
pub fn legacy_alter(
    name: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    AlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(s(k))
                                .with_value(v.map(s))
                        })
                        .collect(),
                ),
        ])
}

/// retention.ms and segment.bytes of topic `name`, as DescribeConfigs v4
/// shows them.
pub fn describe_two(b: &str, name: &str) -> Result<String> {
    let d = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configuration_keys(Some(vec![s("retention.ms"), s("segment.bytes")])),
    ]);
    ask_configs(b, 4, &d)
}
