//! The quorum's voters as KIP-853 manages them: described
//! (DescribeQuorum), added and removed (AddRaftVoter, RemoveRaftVoter) on
//! the leader, and each known by the directory id of its metadata log, so
//! that a voter back on an empty volume is a new voter, never a second
//! vote in a term it already voted in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::types::{LogId, Node, NodeId, Raft};

/// One member's replication state, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub id: NodeId,
    pub directory_id: Uuid,
    /// Internal (quorum) listener, `host:port`.
    pub address: String,
    /// The offset after its last entry (`-1`: not known).
    pub log_end_offset: i64,
    /// Milliseconds since the Unix epoch of its last answer to the
    /// leader's appends (`-1`: none yet).
    pub last_fetch_ms: i64,
    /// When it last held everything the leader had (`-1`: not since this
    /// leader took over, as far as it has been asked).
    pub last_caught_up_ms: i64,
}

/// The quorum as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader: NodeId,
    /// The leader's term (Kafka's leader epoch of `__cluster_metadata`).
    pub term: u64,
    /// The offset after the last committed entry.
    pub high_watermark: i64,
    pub voters: Vec<ReplicaState>,
    /// Members that replicate the log without voting (learners).
    pub observers: Vec<ReplicaState>,
}

/// A change of the voter set, run on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoterChange {
    /// Makes a registered broker a voter. `directory_id` (nil: not
    /// given) must be its registered one, and `addresses` (`host:port`
    /// each; empty: not given) must name its registered quorum listener.
    Add {
        id: NodeId,
        directory_id: Uuid,
        addresses: Vec<String>,
        timeout_ms: u64,
    },
    /// Makes a voter an observer (it keeps replicating the log).
    /// `directory_id` (nil: any) must be the voter's.
    Remove {
        id: NodeId,
        directory_id: Uuid,
        timeout_ms: u64,
    },
}

/// How a voter change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeReply {
    Done,
    NotLeader,
    VoterNotFound(String),
    DuplicateVoter(String),
    Invalid(String),
    /// Not done within its timeout, or another change is under way:
    /// worth retrying.
    Retriable(String),
}

/// Checks a change against the membership and the registrations; the
/// node to add, for an addition.
pub(crate) fn check(
    change: &VoterChange,
    nodes: &BTreeMap<NodeId, Node>,
    voters: &BTreeSet<NodeId>,
    img: &MetadataImage,
) -> Result<Option<Node>, ChangeReply> {
    match change {
        VoterChange::Add {
            id,
            directory_id,
            addresses,
            ..
        } => {
            if voters.contains(id) {
                return Err(ChangeReply::DuplicateVoter(format!(
                    "node {id} is already a voter"
                )));
            }
            let reg = i32::try_from(*id)
                .ok()
                .and_then(|b| img.brokers.get(&b))
                .filter(|r| !r.internal_address.is_empty())
                .ok_or_else(|| {
                    ChangeReply::Invalid(format!(
                        "broker {id} is not registered with the quorum: start it first, then add it as a voter"
                    ))
                })?;
            if !directory_id.is_nil()
                && !reg.directory_id.is_nil()
                && *directory_id != reg.directory_id
            {
                return Err(ChangeReply::Invalid(format!(
                    "broker {id}'s metadata log is directory {}, not {directory_id}",
                    reg.directory_id
                )));
            }
            if !addresses.is_empty() && !addresses.contains(&reg.internal_address) {
                return Err(ChangeReply::Invalid(format!(
                    "broker {id}'s quorum listener is {}, not {}",
                    reg.internal_address,
                    addresses.join(", ")
                )));
            }
            let dir = if reg.directory_id.is_nil() {
                *directory_id
            } else {
                reg.directory_id
            };
            Ok(Some(Node::new(reg.internal_address.clone(), dir)))
        }
        VoterChange::Remove {
            id, directory_id, ..
        } => {
            let node = nodes
                .get(id)
                .filter(|_| voters.contains(id))
                .ok_or_else(|| ChangeReply::VoterNotFound(format!("node {id} is not a voter")))?;
            if !directory_id.is_nil()
                && !node.directory_id.is_nil()
                && *directory_id != node.directory_id
            {
                return Err(ChangeReply::VoterNotFound(format!(
                    "voter {id} has directory id {}, not {directory_id}",
                    node.directory_id
                )));
            }
            if voters.len() == 1 {
                return Err(ChangeReply::Invalid(format!(
                    "node {id} is the only voter: add another before removing it"
                )));
            }
            Ok(None)
        }
    }
}

/// Runs a checked change on the leader's Raft node.
pub(crate) async fn apply(raft: &Raft, change: &VoterChange, node: Option<Node>) -> ChangeReply {
    let (id, timeout) = match change {
        VoterChange::Add { id, timeout_ms, .. } | VoterChange::Remove { id, timeout_ms, .. } => (
            *id,
            Duration::from_millis((*timeout_ms).clamp(1_000, 120_000)),
        ),
    };
    let run = async {
        if let Some(node) = node {
            let known = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .cloned();
            // A new member first catches up as a learner (blocking), so the
            // voter set never waits on a log that is far behind.
            if known.is_none() {
                raft.add_learner(id, node.clone(), true).await?;
            } else if known.as_ref() != Some(&node) {
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                    .await?;
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
        } else {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
                .await
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(_)) => {
            tracing::info!(change = ?change, "metadata quorum voters changed");
            ChangeReply::Done
        }
        Ok(Err(openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(_),
        ))) => ChangeReply::NotLeader,
        Ok(Err(e)) => ChangeReply::Retriable(e.to_string()),
        Err(_) => ChangeReply::Retriable(format!(
            "the voter change did not complete within {} ms",
            timeout.as_millis()
        )),
    }
}

/// Members whose registration shows another directory id or address
/// than the membership holds, with the node they should have. A member
/// whose id is nil (not known yet) or whose address moved is updated at
/// once; a voter back on a new volume (another non-nil id) only once it
/// holds everything applied (`matched` at or past `applied`): until then
/// its votes are refused, so it cannot vote twice in a term, and after it
/// it votes as the new voter it is.
pub(crate) fn node_updates(
    nodes: &BTreeMap<NodeId, Node>,
    voters: &BTreeSet<NodeId>,
    img: &MetadataImage,
    matched: &BTreeMap<NodeId, Option<LogId>>,
    applied: Option<u64>,
) -> BTreeMap<NodeId, Node> {
    let mut out = BTreeMap::new();
    for (id, node) in nodes {
        let Some(reg) = i32::try_from(*id).ok().and_then(|b| img.brokers.get(&b)) else {
            continue;
        };
        let mut want = node.clone();
        if !reg.internal_address.is_empty() {
            want.address = reg.internal_address.clone();
        }
        if !reg.directory_id.is_nil() {
            want.directory_id = reg.directory_id;
        }
        if want == *node {
            continue;
        }
        let replaced = !node.directory_id.is_nil() && want.directory_id != node.directory_id;
        if replaced && voters.contains(id) {
            let caught_up = matched
                .get(id)
                .copied()
                .flatten()
                .map(|l| l.index)
                .zip(applied)
                .is_some_and(|(m, a)| m >= a);
            if !caught_up {
                continue;
            }
            tracing::info!(
                voter = id,
                old = %node.directory_id,
                new = %want.directory_id,
                "a voter's metadata log was replaced (a new volume): it votes again as a new voter"
            );
        }
        out.insert(*id, want);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BrokerRegistration;

    fn img_with(id: i32, dir: Uuid) -> MetadataImage {
        let mut img = MetadataImage::default();
        img.brokers.insert(
            id,
            BrokerRegistration {
                id,
                epoch: 1,
                incarnation: 1,
                kafka_address: format!("b{id}:9092"),
                listeners: Default::default(),
                internal_address: format!("b{id}:9093"),
                rack: None,
                directory_id: dir,
                fenced: false,
            },
        );
        img
    }

    fn log_id(index: u64) -> Option<LogId> {
        Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1, 1),
            index,
        ))
    }

    #[test]
    fn a_voter_on_a_new_volume_is_replaced_only_once_it_caught_up() {
        let old = Uuid::new_v4();
        let new = Uuid::new_v4();
        let nodes = BTreeMap::from([(2, Node::new("b2:9093", old))]);
        let voters = BTreeSet::from([2]);
        let img = img_with(2, new);
        let behind = BTreeMap::from([(2, log_id(5))]);
        assert!(node_updates(&nodes, &voters, &img, &behind, Some(9)).is_empty());
        let caught_up = BTreeMap::from([(2, log_id(9))]);
        assert_eq!(
            node_updates(&nodes, &voters, &img, &caught_up, Some(9)),
            BTreeMap::from([(2, Node::new("b2:9093", new))])
        );
        // A learner, or a voter whose id was not known yet: at once.
        let unknown = BTreeMap::from([(2, Node::new("b2:9093", Uuid::nil()))]);
        assert_eq!(
            node_updates(&unknown, &voters, &img, &behind, Some(9)).len(),
            1
        );
        assert_eq!(
            node_updates(&nodes, &BTreeSet::new(), &img, &behind, Some(9)).len(),
            1
        );
        // Nothing changed: nothing to do.
        let same = BTreeMap::from([(2, Node::new("b2:9093", new))]);
        assert!(node_updates(&same, &voters, &img, &behind, Some(9)).is_empty());
    }

    #[test]
    fn changes_are_checked_against_membership_and_registration() {
        let dir = Uuid::new_v4();
        let img = img_with(2, dir);
        let nodes = BTreeMap::from([(1, Node::new("b1:9093", Uuid::nil()))]);
        let voters = BTreeSet::from([1]);
        let add = |id, directory_id, address: &str| VoterChange::Add {
            id,
            directory_id,
            addresses: if address.is_empty() {
                vec![]
            } else {
                vec![address.to_string()]
            },
            timeout_ms: 1000,
        };
        assert_eq!(
            check(&add(2, dir, "b2:9093"), &nodes, &voters, &img),
            Ok(Some(Node::new("b2:9093", dir)))
        );
        assert!(matches!(
            check(&add(1, Uuid::nil(), ""), &nodes, &voters, &img),
            Err(ChangeReply::DuplicateVoter(_))
        ));
        assert!(matches!(
            check(&add(3, Uuid::nil(), ""), &nodes, &voters, &img),
            Err(ChangeReply::Invalid(_))
        ));
        assert!(matches!(
            check(&add(2, Uuid::new_v4(), ""), &nodes, &voters, &img),
            Err(ChangeReply::Invalid(_))
        ));
        assert!(matches!(
            check(&add(2, dir, "elsewhere:1"), &nodes, &voters, &img),
            Err(ChangeReply::Invalid(_))
        ));
        let remove = |id, directory_id| VoterChange::Remove {
            id,
            directory_id,
            timeout_ms: 1000,
        };
        assert!(matches!(
            check(&remove(1, Uuid::nil()), &nodes, &voters, &img),
            Err(ChangeReply::Invalid(_))
        ));
        assert!(matches!(
            check(&remove(2, Uuid::nil()), &nodes, &voters, &img),
            Err(ChangeReply::VoterNotFound(_))
        ));
        let two = BTreeMap::from([
            (1, Node::new("b1:9093", Uuid::nil())),
            (2, Node::new("b2:9093", dir)),
        ]);
        let both = BTreeSet::from([1, 2]);
        assert_eq!(check(&remove(2, dir), &two, &both, &img), Ok(None));
        assert!(matches!(
            check(&remove(2, Uuid::new_v4()), &two, &both, &img),
            Err(ChangeReply::VoterNotFound(_))
        ));
    }
}
