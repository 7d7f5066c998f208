//! DescribeCluster (60).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::security::acl::{self, Authorizer};

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    _version: i16,
    listener: &str,
    authz: &Authorizer<'_>,
) -> DescribeClusterResponse {
    let c = broker.cluster();
    let img = c.image();
    let brokers = super::metadata::brokers(&img, &Default::default(), listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    // As Kafka: asked for, the operations the principal may do on the
    // cluster, none at all without DESCRIBE.
    let operations = match req.include_cluster_authorized_operations {
        false => i32::MIN,
        true if !authz.cluster(acl::op::DESCRIBE) => 0,
        true => authz.operations(acl::resource::CLUSTER, acl::CLUSTER_NAME),
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(c.controller_id().unwrap_or(-1)))
        .with_endpoint_type(1)
        .with_brokers(brokers)
}
