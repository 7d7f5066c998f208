//! Group membership APIs: FindCoordinator (10), JoinGroup (11),
//! SyncGroup (14), Heartbeat (12), LeaveGroup (13), DescribeGroups (15),
//! ListGroups (16), DeleteGroups (42). On one node this broker coordinates
//! every group.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use super::{count_error, str_bytes};
use crate::broker::Broker;
use crate::coordinator::group::coordinator::Pending;
use crate::coordinator::group::offsets_log;
use crate::coordinator::group::state::{JoinRequest, JoinResult, code as gcode};
use crate::protocol::code::{COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID, NONE, NOT_COORDINATOR};
use crate::protocol::code::{
    GROUP_AUTHORIZATION_FAILED, GROUP_ID_NOT_FOUND, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
};
use crate::security::acl::{self, Authorizer};

/// The protocol name of a JoinGroup answer that names none (an error):
/// null from v7, empty before (not nullable there), as Kafka's.
fn no_protocol(version: i16) -> Option<StrBytes> {
    if version >= 7 {
        None
    } else {
        Some(Default::default())
    }
}

fn group_id(g: &GroupId) -> String {
    g.0.to_string()
}

pub fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
    authz: &Authorizer<'_>,
) -> FindCoordinatorResponse {
    let answer_error = |key: &str| -> (i16, Option<String>) {
        // As Kafka: DESCRIBE on the group or transactional id first.
        let (kind, denied, message) = match req.key_type {
            0 => (
                acl::resource::GROUP,
                GROUP_AUTHORIZATION_FAILED,
                acl::message::GROUP,
            ),
            _ => (
                acl::resource::TRANSACTIONAL_ID,
                TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "Transactional Id authorization failed.",
            ),
        };
        if !authz.allows(acl::op::DESCRIBE, kind, key) {
            return (denied, Some(message.into()));
        }
        if req.key_type > 1 {
            return (
                super::code::INVALID_REQUEST,
                Some(format!("unknown coordinator key type {}", req.key_type)),
            );
        }
        if key.is_empty() && req.key_type == 1 {
            return (
                super::code::INVALID_REQUEST,
                Some("the transactional id is empty".into()),
            );
        }
        if key.is_empty() {
            return (INVALID_GROUP_ID, Some("the group id is empty".into()));
        }
        (0, None)
    };
    let answer = |key: &str| -> (i16, Option<String>, BrokerId, StrBytes, i32) {
        let (error, message) = answer_error(key);
        if error != 0 {
            return (error, message, BrokerId(-1), Default::default(), -1);
        }
        let internal = if req.key_type == 1 {
            crate::metadata::cluster_topics::Internal::Transactions
        } else {
            crate::metadata::cluster_topics::Internal::Offsets
        };
        match broker.coordinator_node(internal, key, listener) {
            // Kafka's message for no error is the error's name.
            Ok((id, host, port)) => (0, Some("NONE".into()), BrokerId(id), str_bytes(host), port),
            Err(e) => (
                e,
                Some("the group's coordinator is not available yet".into()),
                BrokerId(-1),
                Default::default(),
                -1,
            ),
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let (error, message, node, host, port) = answer(k.as_str());
                count_error(broker, "FindCoordinator", error);
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(node)
                    .with_host(host)
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.map(str_bytes))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, message, node, host, port) = answer(req.key.as_str());
    count_error(broker, "FindCoordinator", error);
    let r = FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node)
        .with_host(host)
        .with_port(port);
    if version >= 1 {
        r.with_error_message(message.map(str_bytes))
    } else {
        r
    }
}

/// Waits for a parked answer, giving up with NOT_COORDINATOR on shutdown.
async fn wait<T>(broker: &Broker, rx: oneshot::Receiver<T>, limit: Duration, fallback: T) -> T {
    tokio::select! {
        r = rx => r.unwrap_or(fallback),
        _ = tokio::time::sleep(limit) => fallback,
        _ = broker.shutdown.cancelled() => fallback,
    }
}

fn join_response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(if version >= 5 {
                    inst.map(str_bytes)
                } else {
                    None
                })
                .with_metadata(meta)
        })
        .collect();
    let protocol = match (r.error, r.protocol) {
        (NONE, Some(p)) => Some(str_bytes(p)),
        _ => no_protocol(version),
    };
    let resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_name(protocol)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    if version >= 7 && r.error == NONE {
        resp.with_protocol_type(r.protocol_type.map(str_bytes))
    } else {
        resp
    }
}

pub async fn join_group(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    peer: std::net::SocketAddr,
    authz: &Authorizer<'_>,
) -> JoinGroupResponse {
    let group = group_id(&req.group_id);
    if !authz.group(acl::op::READ, &group) {
        count_error(broker, "JoinGroup", GROUP_AUTHORIZATION_FAILED);
        return JoinGroupResponse::default()
            .with_error_code(GROUP_AUTHORIZATION_FAILED)
            .with_generation_id(-1)
            .with_protocol_name(no_protocol(version));
    }
    let error = |e: i16| {
        count_error(broker, "JoinGroup", e);
        JoinGroupResponse::default()
            .with_error_code(e)
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone())
            .with_protocol_name(no_protocol(version))
    };
    if group.is_empty() {
        return error(INVALID_GROUP_ID);
    }
    let cfg = &broker.config;
    if req.session_timeout_ms < cfg.group_min_session_timeout_ms
        || req.session_timeout_ms > cfg.group_max_session_timeout_ms
    {
        return error(gcode::INVALID_SESSION_TIMEOUT);
    }
    if let Some(e) = broker.coordinator_error(&group) {
        return error(e);
    }
    if let Err(e) = broker.ensure_offsets_topic() {
        tracing::warn!(error = %e, "offsets topic unavailable");
        return error(COORDINATOR_NOT_AVAILABLE);
    }
    // v0 has no rebalance timeout: it equals the session timeout.
    let rebalance_timeout = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        // Kafka reports the client address as "/ip".
        client_host: format!("/{}", peer.ip()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: req.session_timeout_ms.max(1) as u64,
        rebalance_timeout_ms: rebalance_timeout.max(0) as u64,
        require_known_member_id: version >= 4,
    };
    let limit = Duration::from_millis(
        rebalance_timeout.max(0) as u64 + cfg.group_initial_rebalance_delay_ms + 5_000,
    );
    let result = match broker.groups.join(&group, join) {
        Pending::Now(r) => r,
        Pending::Later(rx) => {
            let fallback = JoinResult {
                error: NOT_COORDINATOR,
                generation: -1,
                protocol_type: None,
                protocol: None,
                leader: String::new(),
                member_id: req.member_id.to_string(),
                members: Vec::new(),
            };
            wait(broker, rx, limit, fallback).await
        }
    };
    count_error(broker, "JoinGroup", result.error);
    join_response(result, version)
}

pub async fn sync_group(
    broker: &Arc<Broker>,
    req: SyncGroupRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> SyncGroupResponse {
    let group = group_id(&req.group_id);
    let refused = (!authz.group(acl::op::READ, &group)).then_some(GROUP_AUTHORIZATION_FAILED);
    if let Some(e) = refused.or_else(|| broker.coordinator_error(&group)) {
        count_error(broker, "SyncGroup", e);
        return SyncGroupResponse::default().with_error_code(e);
    }
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let (error, assignment) = match broker.groups.sync(
        &group,
        req.member_id.as_str(),
        req.generation_id,
        assignments,
    ) {
        Pending::Now(a) => a,
        Pending::Later(rx) => {
            wait(
                broker,
                rx,
                Duration::from_secs(300),
                (NOT_COORDINATOR, Bytes::new()),
            )
            .await
        }
    };
    count_error(broker, "SyncGroup", error);
    let resp = SyncGroupResponse::default()
        .with_error_code(error)
        .with_assignment(assignment);
    if version >= 5 && error == NONE {
        resp.with_protocol_type(req.protocol_type)
            .with_protocol_name(req.protocol_name)
    } else {
        resp
    }
}

pub fn heartbeat(
    broker: &Arc<Broker>,
    req: HeartbeatRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> HeartbeatResponse {
    let group = group_id(&req.group_id);
    let refused = (!authz.group(acl::op::READ, &group)).then_some(GROUP_AUTHORIZATION_FAILED);
    if let Some(e) = refused.or_else(|| broker.coordinator_error(&group)) {
        count_error(broker, "Heartbeat", e);
        return HeartbeatResponse::default().with_error_code(e);
    }
    let e = broker.groups.heartbeat(
        &group_id(&req.group_id),
        req.member_id.as_str(),
        req.generation_id,
    );
    count_error(broker, "Heartbeat", e);
    HeartbeatResponse::default().with_error_code(e)
}

pub fn leave_group(
    broker: &Arc<Broker>,
    req: LeaveGroupRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> LeaveGroupResponse {
    let group = group_id(&req.group_id);
    let refused = (!authz.group(acl::op::READ, &group)).then_some(GROUP_AUTHORIZATION_FAILED);
    if let Some(e) = refused.or_else(|| broker.coordinator_error(&group)) {
        count_error(broker, "LeaveGroup", e);
        return LeaveGroupResponse::default().with_error_code(e);
    }
    if version < 3 {
        let [e] = broker
            .groups
            .leave(&group, &[(req.member_id.to_string(), None)])[..]
        else {
            return LeaveGroupResponse::default().with_error_code(gcode::UNKNOWN_MEMBER_ID);
        };
        count_error(broker, "LeaveGroup", e);
        return LeaveGroupResponse::default().with_error_code(e);
    }
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let errors = broker.groups.leave(&group, &members);
    let responses = req
        .members
        .into_iter()
        .zip(errors)
        .map(|(m, e)| {
            count_error(broker, "LeaveGroup", e);
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(e)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

pub fn describe_groups(
    broker: &Arc<Broker>,
    req: DescribeGroupsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> DescribeGroupsResponse {
    let operations = req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let id = group_id(&g);
            let base = DescribedGroup::default().with_group_id(g);
            if !authz.group(acl::op::DESCRIBE, &id) {
                count_error(broker, "DescribeGroups", GROUP_AUTHORIZATION_FAILED);
                return base
                    .with_error_code(GROUP_AUTHORIZATION_FAILED)
                    .with_error_message((version >= 6).then(|| str_bytes(acl::message::GROUP)));
            }
            let base = if operations {
                base.with_authorized_operations(authz.operations(acl::resource::GROUP, &id))
            } else {
                base
            };
            match broker.groups.describe(&id) {
                // Kafka describes an unknown group as Dead, without error.
                None => base.with_group_state(str_bytes("Dead")),
                Some(d) => base
                    .with_group_state(str_bytes(d.state))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|(m, inst, client, host, meta, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m))
                                    .with_group_instance_id(if version >= 4 {
                                        inst.map(str_bytes)
                                    } else {
                                        None
                                    })
                                    .with_client_id(str_bytes(client))
                                    .with_client_host(str_bytes(host))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(
    broker: &Arc<Broker>,
    req: ListGroupsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> ListGroupsResponse {
    // As Kafka: every group with DESCRIBE on the cluster, else those the
    // principal may describe.
    let all = authz.cluster(acl::op::DESCRIBE);
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .filter(|(id, _, _)| all || authz.group(acl::op::DESCRIBE, id))
        .map(|(id, pt, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(pt));
            let g = if version >= 4 {
                g.with_group_state(str_bytes(state))
            } else {
                g
            };
            if version >= 5 {
                g.with_group_type(str_bytes("classic"))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(
    broker: &Arc<Broker>,
    req: DeleteGroupsRequest,
    _version: i16,
    authz: &Authorizer<'_>,
) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let id = group_id(&g);
            let deletable = match authz.group(acl::op::DELETE, &id) {
                true => broker.groups.deletable(&id),
                false => Err(GROUP_AUTHORIZATION_FAILED),
            };
            let error = match deletable {
                Err(e) => e,
                Ok(keys) => {
                    let tombstones: Vec<(Bytes, Option<Bytes>)> = keys
                        .iter()
                        .map(|(t, p)| (offsets_log::commit_key(&id, t, *p), None))
                        .collect();
                    match broker.persist_offsets(&id, &tombstones) {
                        Ok(()) => {
                            broker.groups.apply(&id, keys.into_iter().map(|k| (k, None)).collect());
                            broker.groups.remove_group(&id);
                            0
                        }
                        Err(e) => {
                            tracing::error!(group = %id, error = %e, "deleting group offsets failed");
                            COORDINATOR_NOT_AVAILABLE
                        }
                    }
                }
            };
            count_error(broker, "DeleteGroups", error);
            DeletableGroupResult::default().with_group_id(g).with_error_code(error)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// Unknown groups in OffsetDelete.
pub const fn group_not_found() -> i16 {
    GROUP_ID_NOT_FOUND
}
