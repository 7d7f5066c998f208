//! The Raft network over tonic: one lazily connected channel per peer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::pb::Payload;
use crate::pb::quorum_client::QuorumClient;
use crate::types::{Node, NodeId, TypeConfig};

/// The gRPC metadata key of a vote request that names the directory id
/// the candidate knows the voter by (KIP-853): a voter whose log is in
/// another directory (its volume was replaced) refuses to vote.
pub(crate) const TO_DIRECTORY: &str = "sluice-to-directory";

/// When each member last acknowledged an AppendEntries of this one, as
/// milliseconds since the Unix epoch (what DescribeQuorum reports).
pub(crate) type Acks = Arc<parking_lot::Mutex<BTreeMap<NodeId, i64>>>;

/// Milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Builds a client per peer.
#[derive(Debug, Clone)]
pub struct Network {
    pub connect_timeout: Duration,
    pub dialer: crate::tls::Dialer,
    pub(crate) acks: Acks,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            node: node.clone(),
            connect_timeout: self.connect_timeout,
            dialer: self.dialer.clone(),
            client: None,
            acks: self.acks.clone(),
        }
    }
}

/// One peer's client.
pub struct Peer {
    target: NodeId,
    node: Node,
    connect_timeout: Duration,
    dialer: crate::tls::Dialer,
    client: Option<QuorumClient<Channel>>,
    acks: Acks,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Payload, serde_json::Error> {
    Ok(Payload {
        json: serde_json::to_vec(v)?,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(p: &Payload) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&p.json)
}

/// Connects a client to `address` (`host:port`), through `dialer` (its
/// source address, its TLS).
pub(crate) fn connect(
    address: &str,
    dialer: &crate::tls::Dialer,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<QuorumClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(connect_timeout)
        .timeout(timeout);
    let dialer = dialer.clone();
    let connector = tower::service_fn(move |uri: http::Uri| crate::tls::dial(dialer.clone(), uri));
    Ok(QuorumClient::new(
        endpoint.connect_with_connector_lazy(connector),
    ))
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if self.client.is_none() {
            let c = connect(
                &self.node.address,
                &self.dialer,
                self.connect_timeout,
                option.hard_ttl(),
            )
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            self.client = Some(c);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&Msg(
                "no client".into()
            ))));
        };
        let mut request = tonic::Request::new(payload);
        request.set_timeout(option.hard_ttl());
        if method == "vote" && !self.node.directory_id.is_nil() {
            if let Ok(v) = self.node.directory_id.to_string().parse() {
                request.metadata_mut().insert(TO_DIRECTORY, v);
            }
        }
        let reply = match method {
            "append_entries" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // Drop the channel: a restarted peer gets a fresh connection.
                self.client = None;
                let e = Msg(format!("{} to {}: {status}", method, self.node.address));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        RPCError::Unreachable(Unreachable::new(&e))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let r: Result<AppendEntriesResponse<NodeId>, _> =
            self.call("append_entries", &rpc, &option).await;
        // Any answer in this leader's term is the follower fetching.
        if matches!(&r, Ok(resp) if !matches!(resp, AppendEntriesResponse::HigherVote(_))) {
            self.acks.lock().insert(self.target, wall_ms());
        }
        r
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("install_snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
