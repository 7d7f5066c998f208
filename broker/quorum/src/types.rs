//! The Raft type configuration of the metadata quorum.

use std::io::Cursor;

use crate::image::{Command, Outcome};

/// Node ids are Kafka node ids (non-negative), widened as openraft wants.
pub type NodeId = u64;

/// A quorum member: its internal (gRPC) address and the directory id of
/// the metadata log it votes with (KIP-853). The nil id means not known
/// yet (the first membership of a cluster, logs written before directory
/// ids): such a member's votes are not checked against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub address: String,
    #[serde(default, skip_serializing_if = "uuid::Uuid::is_nil")]
    pub directory_id: uuid::Uuid,
}

impl Node {
    pub fn new(address: impl Into<String>, directory_id: uuid::Uuid) -> Node {
        Node {
            address: address.into(),
            directory_id,
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types: commands in, outcomes out.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
