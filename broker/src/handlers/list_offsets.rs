//! ListOffsets (2): earliest, latest, max timestamp, or the first offset at
//! or after a timestamp. Latest is the high watermark, or the last stable
//! offset for a `read_committed` consumer (isolation level 1, v2+).

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{code, count_error};
use crate::broker::Broker;
use crate::partition::replica::{Isolation, Partition, TopicPartition};
use crate::security::acl::{self, Authorizer};
use crate::storage::records::first_record_at_or_after;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(
    broker: &Arc<Broker>,
    req: ListOffsetsRequest,
    version: i16,
    authz: &Authorizer<'_>,
) -> ListOffsetsResponse {
    let isolation = Isolation::of(req.isolation_level);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let describes = authz.topic(acl::op::DESCRIBE, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let found = if describes {
                        broker.led_partition(&TopicPartition::new(name.clone(), p.partition_index))
                    } else {
                        Err(code::TOPIC_AUTHORIZATION_FAILED)
                    };
                    let r = match found {
                        Err(c) => base.with_error_code(c),
                        Ok(part) => {
                            let at = (p.timestamp, p.current_leader_epoch);
                            lookup(&part, at, isolation, version, base)
                        }
                    };
                    count_error(broker, "ListOffsets", r.error_code);
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(
    part: &Partition,
    (timestamp, current_leader_epoch): (i64, i32),
    isolation: Isolation,
    version: i16,
    base: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    if current_leader_epoch >= 0 && current_leader_epoch != part.leader_epoch() {
        let c = if current_leader_epoch < part.leader_epoch() {
            code::FENCED_LEADER_EPOCH
        } else {
            code::UNKNOWN_LEADER_EPOCH
        };
        return base.with_error_code(c);
    }
    // The leader epoch field exists from v4.
    let base = if version >= 4 {
        base.with_leader_epoch(part.leader_epoch())
    } else {
        base
    };
    let o = part.offsets();
    match timestamp {
        LATEST if isolation == Isolation::ReadCommitted => base.with_offset(o.last_stable),
        LATEST => base.with_offset(o.high_watermark),
        EARLIEST | EARLIEST_LOCAL => base.with_offset(o.log_start),
        MAX_TIMESTAMP => match part.with_log(|l| l.max_timestamp_offset()) {
            Ok(Some((ts, _))) => find(part, ts, base),
            Ok(None) => no_offset(base),
            Err(e) => storage_error(part, e, base),
        },
        t if t >= 0 => find(part, t, base),
        _ => base.with_error_code(code::INVALID_REQUEST),
    }
}

/// The first record with a timestamp at or after `ts`; offset -1 if none.
fn find(
    part: &Partition,
    ts: i64,
    base: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    let batch = match part.with_log(|l| l.batch_for_timestamp(ts)) {
        Ok(Some(b)) => b,
        Ok(None) => return no_offset(base),
        Err(e) => return storage_error(part, e, base),
    };
    match first_record_at_or_after(batch, ts) {
        Ok(Some((offset, t))) => base.with_offset(offset).with_timestamp(t),
        Ok(None) => no_offset(base),
        Err(e) => {
            tracing::error!(partition = %part.tp, error = %e, "timestamp lookup failed");
            base.with_error_code(code::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// No record answers the lookup: offset, timestamp and leader epoch -1,
/// as Kafka answers it.
fn no_offset(base: ListOffsetsPartitionResponse) -> ListOffsetsPartitionResponse {
    base.with_offset(-1)
        .with_timestamp(-1)
        .with_leader_epoch(-1)
}

fn storage_error(
    part: &Partition,
    e: crate::Error,
    base: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    tracing::error!(partition = %part.tp, error = %e, "offset lookup failed");
    base.with_error_code(code::KAFKA_STORAGE_ERROR)
}
