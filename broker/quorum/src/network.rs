//! The Raft network over tonic: one lazily connected channel per peer.

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

/// Builds a client per peer.
#[derive(Debug, Clone)]
pub struct Network {
    pub connect_timeout: Duration,
    pub source_address: Option<std::net::IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            node: node.clone(),
            connect_timeout: self.connect_timeout,
            source_address: self.source_address,
            client: None,
        }
    }
}

/// One peer's client.
pub struct Peer {
    target: NodeId,
    node: Node,
    connect_timeout: Duration,
    source_address: Option<std::net::IpAddr>,
    client: Option<QuorumClient<Channel>>,
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

/// Connects a client to `address` (`host:port`).
pub(crate) fn connect(
    address: &str,
    source: Option<std::net::IpAddr>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<QuorumClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .local_address(source);
    Ok(QuorumClient::new(endpoint.connect_lazy()))
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
                self.source_address,
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
        self.call("append_entries", &rpc, &option).await
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
