//! A small async Kafka client, written on the `kafka-protocol` crate so that
//! it speaks to any Kafka-compatible broker the same way other clients do.
//! The operator manages topics and moves partitions with it, a broker's
//! replica fetchers fetch from their leaders with it, and tests use it too.
//!
//! One connection, one request in flight (as the broker serves a
//! connection), versions negotiated with ApiVersions at connect time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod security;
pub use security::AclBinding;

/// Kafka's NOT_CONTROLLER: no controller to take the request just now.
const NOT_CONTROLLER: i16 = 41;

/// Errors of the admin client. Kafka error codes are kept as numbers with
/// the broker's message, so callers can act on them.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O with the broker: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the broker does not serve {api:?} in a version this client knows")]
    Unsupported { api: ApiKey },
    #[error("Kafka error {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka { code: i16, message: Option<String> },
}

/// Kafka error codes callers commonly match on.
pub mod code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
}

fn kafka(code: i16, message: Option<&StrBytes>) -> Result<(), AdminError> {
    if code == 0 {
        Ok(())
    } else {
        Err(AdminError::Kafka {
            code,
            message: message.map(|m| m.to_string()),
        })
    }
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The cluster as one Metadata answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub partitions: Vec<PartitionInfo>,
}

impl ClusterInfo {
    /// Partitions this broker leads.
    pub fn leader_count(&self, broker: i32) -> i32 {
        self.partitions
            .iter()
            .filter(|p| p.leader == broker)
            .count() as i32
    }

    /// Replicas this broker hosts, and how many of them are in sync.
    pub fn replicas_in_sync(&self, broker: i32) -> (i32, i32) {
        let hosted = self
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker));
        let (mut n, mut in_sync) = (0, 0);
        for p in hosted {
            n += 1;
            if p.isr.contains(&broker) {
                in_sync += 1;
            }
        }
        (n, in_sync)
    }

    /// Partitions with a replica on this broker whose ISR is short of the
    /// replica set.
    pub fn under_replicated(&self, broker: i32) -> i32 {
        self.partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker) && p.isr.len() < p.replicas.len())
            .count() as i32
    }
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync> Io for T {}

/// What a TLS connection trusts and presents: rustls' client
/// configuration (roots, and a client certificate for mutual TLS).
pub type TlsConfig = std::sync::Arc<tokio_rustls::rustls::ClientConfig>;

pub struct AdminClient {
    stream: Box<dyn Io>,
    versions: HashMap<i16, (i16, i16)>,
    correlation: i32,
    timeout: Duration,
    client_id: StrBytes,
}

/// A TCP connection to `addr`, bound to `source` when given.
async fn open(addr: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let mut last = None;
    for target in tokio::net::lookup_host(addr).await? {
        if target.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(target).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("no address of {addr} is reachable from {source}"),
        )
    }))
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("versions", &self.versions.len())
            .field("correlation", &self.correlation)
            .finish()
    }
}

/// The name a TLS server at `addr` (`host:port`) must prove it is.
fn server_name(addr: &str) -> Result<rustls_pki_types::ServerName<'static>, AdminError> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| AdminError::Connect {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
    })
}

impl AdminClient {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, AdminError> {
        Self::connect_from(addr, None, timeout).await
    }

    /// Like [`connect`](Self::connect), from the local address `source`
    /// (`None`: the OS chooses), as a broker whose peers must see its
    /// connections come from one address.
    pub async fn connect_from(
        addr: &str,
        source: Option<std::net::IpAddr>,
        timeout: Duration,
    ) -> Result<Self, AdminError> {
        Self::connect_with(addr, source, None, timeout).await
    }

    /// Like [`connect_from`](Self::connect_from), over TLS when `tls` is
    /// given (an SSL listener): the server's certificate is verified for
    /// the host of `addr`, and the client's presented if `tls` has one.
    pub async fn connect_with(
        addr: &str,
        source: Option<std::net::IpAddr>,
        tls: Option<TlsConfig>,
        timeout: Duration,
    ) -> Result<Self, AdminError> {
        let connect = async {
            let tcp = open(addr, source).await?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(config) => {
                    let name =
                        server_name(addr).map_err(|e| std::io::Error::other(e.to_string()))?;
                    let connector = tokio_rustls::TlsConnector::from(config);
                    Box::new(connector.connect(name, tcp).await?)
                }
            };
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| AdminError::Timeout(timeout))?
            .map_err(|source| AdminError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let mut c = AdminClient {
            stream,
            versions: HashMap::new(),
            correlation: 0,
            timeout,
            client_id: StrBytes::from_static_str("sluice-client"),
        };
        // ApiVersions v3 is what recent clients send; any broker that knows
        // KIP-511 answers it or falls back.
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = c.call_version(req, 3).await?;
        kafka(resp.error_code, None)?;
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(c)
    }

    /// The highest version both sides know.
    fn version<R: Request>(&self) -> Result<i16, AdminError> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| AdminError::Protocol(format!("unknown key {}", R::KEY)))?;
        let (min, max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or(AdminError::Unsupported { api: key })?;
        let v = max.min(R::VERSIONS.max);
        if v < min.max(R::VERSIONS.min) {
            return Err(AdminError::Unsupported { api: key });
        }
        Ok(v)
    }

    async fn call<R: Request>(&mut self, req: R) -> Result<R::Response, AdminError> {
        let v = self.version::<R>()?;
        self.call_version(req, v).await
    }

    /// Sends any request at the highest version both sides know, for
    /// callers that speak other APIs than the admin ones (the broker's
    /// replica fetcher uses Fetch and OffsetForLeaderEpoch).
    pub async fn send<R: Request>(&mut self, req: R) -> Result<R::Response, AdminError> {
        self.call(req).await
    }

    /// Sends a request at a chosen version (it must be one the broker
    /// serves).
    pub async fn send_version<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        self.call_version(req, version).await
    }

    async fn call_version<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        body.put_i32(0);
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        req.encode(&mut body, version)
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        let size = (body.len() - 4) as i32;
        body[..4].copy_from_slice(&size.to_be_bytes());
        let timeout = self.timeout;
        let frame = tokio::time::timeout(timeout, async {
            self.stream.write_all(&body).await?;
            let n = self.stream.read_i32().await?;
            if !(0..=(100 << 20)).contains(&n) {
                return Err(AdminError::Protocol(format!("response size {n}")));
            }
            let mut buf = vec![0u8; n as usize];
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, AdminError>(Bytes::from(buf))
        })
        .await
        .map_err(|_| AdminError::Timeout(timeout))??;
        let mut frame = frame;
        // ApiVersions answers always use response header v0 (KIP-511).
        let hv = if R::KEY == ApiKey::ApiVersions as i16 {
            0
        } else {
            <R::Response as HeaderVersion>::header_version(version)
        };
        let h = ResponseHeader::decode(&mut frame, hv)
            .map_err(|e| AdminError::Protocol(e.to_string()))?;
        if h.correlation_id != self.correlation {
            return Err(AdminError::Protocol(format!(
                "correlation id {} for request {}",
                h.correlation_id, self.correlation
            )));
        }
        R::Response::decode(&mut frame, version).map_err(|e| AdminError::Protocol(e.to_string()))
    }

    /// Every topic, or the named ones (unknown names are left out).
    pub async fn describe_topics(
        &mut self,
        names: Option<&[&str]>,
    ) -> Result<Vec<TopicInfo>, AdminError> {
        let topics = names.map(|ns| {
            ns.iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                })
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        let resp = self.call(req).await?;
        Ok(resp
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| TopicInfo {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                id: t.topic_id.to_string(),
                partitions: t.partitions.len() as i32,
                replication_factor: t
                    .partitions
                    .first()
                    .map_or(0, |p| p.replica_nodes.len() as i32),
            })
            .collect())
    }

    /// Brokers, cluster id, controller and every partition's leader,
    /// replicas and ISR, from one Metadata request for all topics.
    pub async fn describe_cluster(&mut self) -> Result<ClusterInfo, AdminError> {
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let resp = self.call(req).await?;
        let brokers = resp
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        let mut partitions = Vec::new();
        for t in resp.topics.iter().filter(|t| t.error_code == 0) {
            let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            for p in &t.partitions {
                partitions.push(PartitionInfo {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                });
            }
        }
        Ok(ClusterInfo {
            cluster_id: resp.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: resp.controller_id.0,
            brokers,
            partitions,
        })
    }

    /// Creates a topic; `configs` by Kafka name.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            );
        // NOT_CONTROLLER (no quorum leader at that moment, during an
        // election) is retried a few times, as Kafka's admin clients do.
        let mut tries = 0;
        loop {
            let resp = self
                .call(
                    CreateTopicsRequest::default()
                        .with_topics(vec![topic.clone()])
                        .with_timeout_ms(30_000),
                )
                .await?;
            let t = resp
                .topics
                .first()
                .ok_or_else(|| AdminError::Protocol("empty CreateTopics answer".into()))?;
            tries += 1;
            if t.error_code == NOT_CONTROLLER && tries < 10 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            return kafka(t.error_code, t.error_message.as_ref());
        }
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(&mut self, name: &str, count: i32) -> Result<(), AdminError> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_count(count)
                    .with_assignments(None),
            ])
            .with_timeout_ms(30_000);
        let resp = self.call(req).await?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| AdminError::Protocol("empty CreatePartitions answer".into()))?;
        kafka(r.error_code, r.error_message.as_ref())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), AdminError> {
        let v = self.version::<DeleteTopicsRequest>()?;
        let tn = TopicName(StrBytes::from_string(name.to_string()));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(tn)),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![tn])
        }
        .with_timeout_ms(30_000);
        let resp = self.call_version(req, v).await?;
        let r = resp
            .responses
            .first()
            .ok_or_else(|| AdminError::Protocol("empty DeleteTopics answer".into()))?;
        kafka(r.error_code, r.error_message.as_ref())
    }

    /// A topic's configs: `name -> (value, is it set on the topic)`.
    pub async fn topic_configs(
        &mut self,
        name: &str,
    ) -> Result<BTreeMap<String, (String, bool)>, AdminError> {
        // Source 1 is DYNAMIC_TOPIC_CONFIG: set on the topic itself.
        self.describe_configs(2, name, 1).await
    }

    /// A broker's configs: `name -> (value, is it set dynamically on that
    /// broker)`. Ask the broker itself.
    pub async fn broker_configs(
        &mut self,
        broker: i32,
    ) -> Result<BTreeMap<String, (String, bool)>, AdminError> {
        // Source 2 is DYNAMIC_BROKER_CONFIG.
        self.describe_configs(4, &broker.to_string(), 2).await
    }

    /// DescribeConfigs of one resource: `name -> (value, whether its
    /// source is `dynamic_source`)`.
    async fn describe_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        dynamic_source: i8,
    ) -> Result<BTreeMap<String, (String, bool)>, AdminError> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let resp = self.call(req).await?;
        let r = resp
            .results
            .first()
            .ok_or_else(|| AdminError::Protocol("empty DescribeConfigs answer".into()))?;
        kafka(r.error_code, r.error_message.as_ref())?;
        Ok(r.configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    (
                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                        c.config_source == dynamic_source,
                    ),
                )
            })
            .collect())
    }

    /// Sizes in bytes of the partitions on the broker this client is
    /// connected to (DescribeLogDirs).
    pub async fn local_partition_sizes(
        &mut self,
    ) -> Result<BTreeMap<(String, i32), u64>, AdminError> {
        let resp = self
            .call(DescribeLogDirsRequest::default().with_topics(None))
            .await?;
        kafka(resp.error_code, None)?;
        let mut out = BTreeMap::new();
        for dir in &resp.results {
            for t in &dir.topics {
                for p in &t.partitions {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.partition_size.max(0) as u64,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Partitions with a reassignment in progress.
    pub async fn list_reassignments(&mut self) -> Result<Vec<(String, i32)>, AdminError> {
        let resp = self
            .call(ListPartitionReassignmentsRequest::default().with_topics(None))
            .await?;
        kafka(resp.error_code, resp.error_message.as_ref())?;
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect())
    }

    /// Starts moves (`Some(replicas)`) or cancels them (`None`); the
    /// answer per partition.
    pub async fn alter_reassignments(
        &mut self,
        moves: &[(String, i32, Option<Vec<i32>>)],
    ) -> Result<Vec<((String, i32), Result<(), AdminError>)>, AdminError> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (t, p, to) in moves {
            by_topic.entry(t.as_str()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(
                        to.as_ref()
                            .map(|rs| rs.iter().map(|r| BrokerId(*r)).collect()),
                    ),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())?;
        Ok(resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        kafka(p.error_code, p.error_message.as_ref()),
                    )
                })
            })
            .collect())
    }

    /// Preferred-leader election for these partitions; ELECTION_NOT_NEEDED
    /// counts as done.
    pub async fn elect_preferred(
        &mut self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), Result<(), AdminError>)>, AdminError> {
        const ELECTION_NOT_NEEDED: i16 = 84;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(30_000)
            .with_topic_partitions(Some(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            ));
        let resp = self.call(req).await?;
        kafka(resp.error_code, None)?;
        Ok(resp
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(|p| {
                    let code = if p.error_code == ELECTION_NOT_NEEDED {
                        0
                    } else {
                        p.error_code
                    };
                    (
                        (t.topic.0.to_string(), p.partition_id),
                        kafka(code, p.error_message.as_ref()),
                    )
                })
            })
            .collect())
    }

    /// Forgets a stopped broker that holds no replica (UnregisterBroker).
    pub async fn unregister_broker(&mut self, broker: i32) -> Result<(), AdminError> {
        let resp = self
            .call(UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker)))
            .await?;
        kafka(resp.error_code, resp.error_message.as_ref())
    }

    /// The metadata quorum (DescribeQuorum of `__cluster_metadata`).
    pub async fn describe_quorum(&mut self) -> Result<QuorumInfo, AdminError> {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let req = DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
        ]);
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| AdminError::Protocol("empty DescribeQuorum answer".into()))?;
        kafka(p.error_code, p.error_message.as_ref())?;
        let replicas = |rs: &[describe_quorum_response::ReplicaState]| {
            rs.iter()
                .map(|r| QuorumReplica {
                    id: r.replica_id.0,
                    directory_id: r.replica_directory_id,
                    log_end_offset: r.log_end_offset,
                    last_caught_up_ms: r.last_caught_up_timestamp,
                })
                .collect()
        };
        let address = |id: i32| {
            resp.nodes
                .iter()
                .find(|n| n.node_id.0 == id)
                .and_then(|n| n.listeners.first())
                .map(|l| format!("{}:{}", l.host.as_str(), l.port))
        };
        let voters: Vec<QuorumReplica> = replicas(&p.current_voters);
        Ok(QuorumInfo {
            leader: p.leader_id.0,
            epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            addresses: voters
                .iter()
                .filter_map(|v| address(v.id).map(|a| (v.id, a)))
                .collect(),
            voters,
            observers: replicas(&p.observers),
        })
    }

    /// Makes broker `id` a quorum voter (AddRaftVoter); `address` is its
    /// quorum listener, `host:port`.
    pub async fn add_raft_voter(
        &mut self,
        id: i32,
        directory_id: uuid::Uuid,
        address: &str,
        timeout: Duration,
    ) -> Result<(), AdminError> {
        use kafka_protocol::messages::add_raft_voter_request::Listener;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| AdminError::Protocol(format!("{address} is not host:port")))?;
        let req = AddRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_voter_id(id)
            .with_voter_directory_id(directory_id)
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_listeners(vec![
                Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port),
            ]);
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())
    }

    /// Makes voter `id` an observer (RemoveRaftVoter).
    pub async fn remove_raft_voter(
        &mut self,
        id: i32,
        directory_id: uuid::Uuid,
    ) -> Result<(), AdminError> {
        let req = RemoveRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_voter_id(id)
            .with_voter_directory_id(directory_id);
        let resp = self.call(req).await?;
        kafka(resp.error_code, resp.error_message.as_ref())
    }

    /// Sets (Some) or removes (None) dynamic configs of the broker this
    /// client is connected to (resource name: its id).
    pub async fn alter_broker_configs(
        &mut self,
        broker: i32,
        changes: &[(&str, Option<&str>)],
    ) -> Result<(), AdminError> {
        let configs = changes
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.to_string()))
                    .with_config_operation(if v.is_some() { 0 } else { 1 })
                    .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_string(broker.to_string()))
                .with_configs(configs),
        ]);
        let resp = self.call(req).await?;
        for r in &resp.responses {
            kafka(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Sets (Some) or removes (None) topic configs, incrementally.
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(), AdminError> {
        let configs = changes
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(if v.is_some() { 0 } else { 1 })
                    .with_value(v.clone().map(StrBytes::from_string))
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let resp = self.call(req).await?;
        let r = resp
            .responses
            .first()
            .ok_or_else(|| AdminError::Protocol("empty IncrementalAlterConfigs answer".into()))?;
        kafka(r.error_code, r.error_message.as_ref())
    }
}

/// One member of the metadata quorum, as DescribeQuorum shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    pub id: i32,
    pub directory_id: uuid::Uuid,
    /// `-1`: not known.
    pub log_end_offset: i64,
    /// When it last held the whole log, ms since the Unix epoch (`-1`: not
    /// known).
    pub last_caught_up_ms: i64,
}

/// The metadata quorum, as DescribeQuorum shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumReplica>,
    pub observers: Vec<QuorumReplica>,
    /// The voters' quorum listeners, `host:port`.
    pub addresses: BTreeMap<i32, String>,
}

impl QuorumInfo {
    pub fn voter_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Node `id`, voter or observer.
    pub fn member(&self, id: i32) -> Option<&QuorumReplica> {
        self.voters
            .iter()
            .chain(&self.observers)
            .find(|r| r.id == id)
    }
}

/// The code of a Kafka error, if that is what `e` is.
pub fn error_code(e: &AdminError) -> Option<i16> {
    match e {
        AdminError::Kafka { code, .. } => Some(*code),
        _ => None,
    }
}
