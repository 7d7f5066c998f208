//! One module per Kafka API. `handle` decodes a frame, routes it, and
//! encodes the response; an `Err` closes the connection.

pub mod acls;
pub mod admin;
pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod produce;
pub mod quorum;
pub mod reassignments;
pub mod refused;
pub mod sasl;
pub mod scram_credentials;
pub mod transactions;
pub mod unregister_broker;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::protocol::{self, HeaderError, decode_body, encode_response};
use crate::security::acl::op;

pub use crate::protocol::Close;

/// What handling a request left to do.
pub enum Reply {
    /// The response (if any: acks=0 produce has none) is in `out`; the
    /// fetch memory it holds is released once it is written.
    Now(fetch::Held),
    /// An acks=all produce, appended, whose answer waits for the in-sync
    /// replicas: the response once they have the writes.
    Later(Later),
}

/// A response still to come (see [`Reply::Later`]).
pub type Later = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Bytes>, Close>> + Send>>;

/// Whether a request frame is a Produce (its first two bytes, the API key).
pub fn is_produce(frame: &[u8]) -> bool {
    frame.get(..2) == Some(&(ApiKey::Produce as i16).to_be_bytes()[..])
}

/// Decodes, handles and encodes one request frame, appending the response
/// (if any: acks=0 produce has none) to `out`, or returning it as a future
/// when it waits for replication (see [`Reply`]).
pub async fn handle(
    broker: &Arc<Broker>,
    frame: Bytes,
    out: &mut Vec<Bytes>,
    session: &mut crate::server::Session,
) -> Result<Reply, Close> {
    let started = Instant::now();
    if sasl::expects_raw_token(session) {
        sasl::raw_token(broker, session, frame, out).await?;
        return Ok(Reply::Now(None));
    }
    let h = match protocol::decode_header(frame) {
        Ok(h) => h,
        Err(HeaderError::ApiVersionsTooNew {
            version,
            correlation_id,
        }) => {
            tracing::debug!(
                version,
                "ApiVersions newer than served; answering v0 with UNSUPPORTED_VERSION"
            );
            let resp = api_versions::unsupported_version();
            return encode_response(
                out,
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &resp,
                Vec::new(),
            )
            .map(|()| Reply::Now(None));
        }
        Err(HeaderError::Close(reason)) => {
            broker.metrics.malformed_requests.inc();
            return Err(Close::Header(reason));
        }
    };
    let mut held: fetch::Held = None;
    let key = h.api_key;
    let v = h.api_version;
    let corr = h.header.correlation_id;
    let api = protocol::api::name(key);
    let bad = |e: Close| {
        broker.metrics.malformed_requests.inc();
        e
    };
    sasl::gate(session, key)?;
    let image = if broker.security.acl.enabled {
        broker.cluster().image()
    } else {
        // Not looked at: no ACL is checked.
        std::sync::Arc::default()
    };
    let authz = crate::security::acl::Authorizer::new(
        &broker.security.acl,
        image,
        crate::security::acl::Requester {
            principal: &session.principal,
            host: session.peer.ip(),
        },
    );
    match key {
        ApiKey::CreateAcls => {
            let req: CreateAclsRequest = decode_body(&h).map_err(bad)?;
            let resp = acls::create(broker, &authz, req).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeAcls => {
            let req: DescribeAclsRequest = decode_body(&h).map_err(bad)?;
            let resp = acls::describe(broker, &authz, req);
            count_error(broker, api, resp.error_code);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DeleteAcls => {
            let req: DeleteAclsRequest = decode_body(&h).map_err(bad)?;
            let resp = acls::delete(broker, &authz, req).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::SaslHandshake => {
            let req: SaslHandshakeRequest = decode_body(&h).map_err(bad)?;
            let resp = sasl::handshake(broker, session, req, v);
            count_error(broker, api, resp.error_code);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AlterUserScramCredentials => {
            let req: AlterUserScramCredentialsRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                scram_credentials::alter(broker, req, v).await
            } else {
                refused::alter_scram_credentials(&req)
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeUserScramCredentials => {
            let req: DescribeUserScramCredentialsRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::DESCRIBE) {
                scram_credentials::describe(broker, req, v)
            } else {
                refused::describe_scram_credentials()
            };
            count_error(broker, api, resp.error_code);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::SaslAuthenticate => {
            let req: SaslAuthenticateRequest = decode_body(&h).map_err(bad)?;
            let resp = sasl::authenticate(broker, session, req, v).await;
            count_error(broker, api, resp.error_code);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ApiVersions => {
            let req: ApiVersionsRequest = decode_body(&h).map_err(bad)?;
            let resp = api_versions::handle(&req, v, &h);
            count_error(broker, api, resp.error_code);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::Metadata => {
            let req: MetadataRequest = decode_body(&h).map_err(bad)?;
            let resp = metadata::handle(broker, req, v, &session.listener, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode_body(&h).map_err(bad)?;
            let appended = produce::append_all(broker, req, &authz);
            if appended.waits() {
                let broker = Arc::clone(broker);
                return Ok(Reply::Later(Box::pin(async move {
                    let mut out = Vec::new();
                    if let Some(resp) = produce::finish(&broker, appended).await {
                        encode_response(&mut out, key, v, corr, &resp, Vec::new())?;
                    }
                    record(&broker, api, started);
                    Ok(out)
                })));
            }
            if let Some(resp) = produce::finish(broker, appended).await {
                encode_response(out, key, v, corr, &resp, Vec::new())?;
            }
        }
        ApiKey::Fetch => {
            let req: FetchRequest = decode_body(&h).map_err(bad)?;
            let (resp, memory) = fetch::handle(broker, req, v, &authz).await;
            let records = fetch::record_chunks(&resp);
            encode_response(out, key, v, corr, &resp, records)?;
            held = memory;
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req: OffsetForLeaderEpochRequest = decode_body(&h).map_err(bad)?;
            let resp = offset_for_leader_epoch::handle(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = decode_body(&h).map_err(bad)?;
            let resp = list_offsets::handle(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode_body(&h).map_err(bad)?;
            let resp = create_topics::handle(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = decode_body(&h).map_err(bad)?;
            let resp = delete_topics::handle(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = decode_body(&h).map_err(bad)?;
            let resp = describe_configs::handle(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeCluster => {
            let req: DescribeClusterRequest = decode_body(&h).map_err(bad)?;
            let resp = describe_cluster::handle(broker, req, v, &session.listener, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest = decode_body(&h).map_err(bad)?;
            let resp = admin::create_partitions(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: IncrementalAlterConfigsRequest = decode_body(&h).map_err(bad)?;
            let resp = admin::incremental_alter_configs(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AlterConfigs => {
            let req: AlterConfigsRequest = decode_body(&h).map_err(bad)?;
            let resp = admin::alter_configs(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DeleteRecords => {
            let req: DeleteRecordsRequest = decode_body(&h).map_err(bad)?;
            let resp = admin::delete_records(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeLogDirs => {
            let req: DescribeLogDirsRequest = decode_body(&h).map_err(bad)?;
            let resp = admin::describe_log_dirs(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ElectLeaders => {
            let req: ElectLeadersRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                reassignments::elect_leaders(broker, broker.cluster(), req, v).await
            } else {
                refused::elect_leaders(&req)
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AlterPartitionReassignments => {
            let req: AlterPartitionReassignmentsRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                reassignments::alter(broker, req, v).await
            } else {
                refused::alter_reassignments(&req)
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeQuorum => {
            let req: DescribeQuorumRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::DESCRIBE) {
                quorum::describe_quorum(broker, req, v).await
            } else {
                refused::describe_quorum()
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AddRaftVoter => {
            let req: AddRaftVoterRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                quorum::add_raft_voter(broker, req, v).await
            } else {
                refused::add_raft_voter()
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::RemoveRaftVoter => {
            let req: RemoveRaftVoterRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                quorum::remove_raft_voter(broker, req, v).await
            } else {
                refused::remove_raft_voter()
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::UnregisterBroker => {
            let req: UnregisterBrokerRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::ALTER) {
                unregister_broker::handle(broker, req, v).await
            } else {
                refused::unregister_broker()
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ListPartitionReassignments => {
            let req: ListPartitionReassignmentsRequest = decode_body(&h).map_err(bad)?;
            let resp = if authz.cluster(op::DESCRIBE) {
                reassignments::list(broker, req, v)
            } else {
                refused::list_reassignments()
            };
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::InitProducerId => {
            let req: InitProducerIdRequest = decode_body(&h).map_err(bad)?;
            let resp = init_producer_id::handle(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::FindCoordinator => {
            let req: FindCoordinatorRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::find_coordinator(broker, req, v, &session.listener, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::JoinGroup => {
            let req: JoinGroupRequest = decode_body(&h).map_err(bad)?;
            let client = h
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();
            let resp = groups::join_group(broker, req, v, client, session.peer, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::SyncGroup => {
            let req: SyncGroupRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::sync_group(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::Heartbeat => {
            let req: HeartbeatRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::heartbeat(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::LeaveGroup => {
            let req: LeaveGroupRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::leave_group(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeGroups => {
            let req: DescribeGroupsRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::describe_groups(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ListGroups => {
            let req: ListGroupsRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::list_groups(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DeleteGroups => {
            let req: DeleteGroupsRequest = decode_body(&h).map_err(bad)?;
            let resp = groups::delete_groups(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::OffsetCommit => {
            let req: OffsetCommitRequest = decode_body(&h).map_err(bad)?;
            let resp = offsets::offset_commit(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::OffsetFetch => {
            let req: OffsetFetchRequest = decode_body(&h).map_err(bad)?;
            let resp = offsets::offset_fetch(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::OffsetDelete => {
            let req: OffsetDeleteRequest = decode_body(&h).map_err(bad)?;
            let resp = offsets::offset_delete(broker, req, v, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AddPartitionsToTxn => {
            let req: AddPartitionsToTxnRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::add_partitions_to_txn(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::AddOffsetsToTxn => {
            let req: AddOffsetsToTxnRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::add_offsets_to_txn(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::EndTxn => {
            let req: EndTxnRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::end_txn(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::WriteTxnMarkers => {
            let req: WriteTxnMarkersRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::write_txn_markers(broker, req, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::DescribeTransactions => {
            let req: DescribeTransactionsRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::describe_transactions(broker, req, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::ListTransactions => {
            let req: ListTransactionsRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::list_transactions(broker, req, &authz);
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        ApiKey::TxnOffsetCommit => {
            let req: TxnOffsetCommitRequest = decode_body(&h).map_err(bad)?;
            let resp = transactions::txn_offset_commit(broker, req, v, &authz).await;
            encode_response(out, key, v, corr, &resp, Vec::new())?;
        }
        other => return Err(Close::NotServed { api: other }),
    }
    record(broker, api, started);
    Ok(Reply::Now(held))
}

/// Counts a request served and how long it took.
fn record(broker: &Broker, api: &str, started: Instant) {
    broker.metrics.requests.with_label_values(&[api]).inc();
    broker
        .metrics
        .request_latency
        .with_label_values(&[api])
        .observe(started.elapsed().as_secs_f64());
}

/// Counts a non-zero error code returned by `api`.
pub fn count_error(broker: &Broker, api: &str, code: i16) {
    if code != 0 {
        let code = code.to_string();
        broker.metrics.errors.with_label_values(&[api, &code]).inc();
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

pub(crate) use crate::protocol::code;
