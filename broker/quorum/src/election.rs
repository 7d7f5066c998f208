//! Elections with a pre-vote (Raft thesis §9.6, Kafka's KIP-996).
//! openraft 0.9 has none: a voter that was cut off keeps raising its term,
//! and when it comes back its answers to the leader's appends carry that
//! term and depose a leader the majority still hears. So openraft's own
//! election timer is off (`enable_elect: false`) and this loop stands
//! instead: only after its own silence from any leader has outlasted the
//! lease, and only once a majority of every voter configuration (a joint
//! one included) has also not heard a leader for a lease and holds no log
//! newer than its own. The term is raised only then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::node::{Shared, call};
use crate::types::{LogId, NodeId};

/// Asked of every other voter before standing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PreVote {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
    /// The directory id the candidate knows the voter by (nil: not known).
    pub to_directory: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PreVoteReply {
    pub granted: bool,
    pub reason: String,
}

/// What a voter knows of itself when asked for a pre-vote.
#[derive(Debug, Clone)]
pub(crate) struct Own {
    pub directory_id: Uuid,
    pub leader: bool,
    /// Milliseconds since it last heard a leader (an append or snapshot it
    /// accepted, or a vote it granted).
    pub silence_ms: u64,
    pub lease_ms: u64,
    /// Whether its vote is committed (it knew a leader): a voter that never
    /// knew one has no lease to keep.
    pub committed: bool,
    pub last_log_id: Option<LogId>,
}

/// Why a voter refuses a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("this voter's metadata log is directory {own}, not {asked}")]
    OtherDirectory { own: Uuid, asked: Uuid },
    #[error("this voter leads")]
    Leads,
    #[error("a leader was heard {silence_ms} ms ago (lease {lease_ms} ms)")]
    LeaderHeard { silence_ms: u64, lease_ms: u64 },
    #[error("the candidate's log ends at {candidate:?}, before this voter's {own:?}")]
    OlderLog {
        candidate: Option<LogId>,
        own: Option<LogId>,
    },
}

/// Whether a voter grants a pre-vote, and why not.
pub(crate) fn grant(own: &Own, req: &PreVote) -> Result<(), Refusal> {
    if !req.to_directory.is_nil() && req.to_directory != own.directory_id {
        return Err(Refusal::OtherDirectory {
            own: own.directory_id,
            asked: req.to_directory,
        });
    }
    if own.leader {
        return Err(Refusal::Leads);
    }
    if own.committed && own.silence_ms < own.lease_ms {
        return Err(Refusal::LeaderHeard {
            silence_ms: own.silence_ms,
            lease_ms: own.lease_ms,
        });
    }
    if req.last_log_id < own.last_log_id {
        return Err(Refusal::OlderLog {
            candidate: req.last_log_id,
            own: own.last_log_id,
        });
    }
    Ok(())
}

/// Whether `granted` holds a majority of every configuration.
pub(crate) fn majority(joint: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !joint.is_empty()
        && joint
            .iter()
            .all(|c| 2 * c.iter().filter(|v| granted.contains(v)).count() > c.len())
}

/// Asks the other voters for a pre-vote; stands for election when a
/// majority grants it. Returns whether it stood.
pub(crate) async fn stand(shared: &Arc<Shared>) -> bool {
    let (joint, nodes) = {
        let m = shared.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let nodes: BTreeMap<NodeId, crate::types::Node> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        (membership.get_joint_config().clone(), nodes)
    };
    let voters: BTreeSet<NodeId> = joint.iter().flatten().copied().collect();
    if !voters.contains(&shared.id) {
        return false;
    }
    let last_log_id = shared.log.last_log_id();
    let mut asks = tokio::task::JoinSet::new();
    let limit = shared.election_timeout_min;
    for id in voters.iter().filter(|v| **v != shared.id) {
        let Some(node) = nodes.get(id) else { continue };
        let req = PreVote {
            candidate: shared.id,
            last_log_id,
            to_directory: node.directory_id,
        };
        let (id, address, dialer) = (*id, node.address.clone(), shared.dialer.clone());
        asks.spawn(async move {
            let r = tokio::time::timeout(
                limit,
                call::<_, PreVoteReply>(&address, &dialer, "pre_vote", &req),
            )
            .await;
            (id, r)
        });
    }
    let mut granted = BTreeSet::from([shared.id]);
    let mut refused = Vec::new();
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((id, Ok(Ok(r)))) if r.granted => {
                granted.insert(id);
            }
            Ok((id, Ok(Ok(r)))) => refused.push((id, r.reason)),
            Ok((id, Ok(Err(e)))) => refused.push((id, e.to_string())),
            Ok((id, Err(_))) => refused.push((id, "no answer in time".into())),
            Err(_) => {}
        }
        if majority(&joint, &granted) {
            break;
        }
    }
    if !majority(&joint, &granted) {
        tracing::debug!(?granted, ?refused, "pre-vote lost: not standing");
        return false;
    }
    tracing::info!(?granted, "pre-vote won: standing for election");
    if let Err(e) = shared.raft.trigger().elect().await {
        tracing::debug!(error = %e, "standing for election");
    }
    true
}

/// A pseudo-random delay in `min..max` (no cryptographic need: only
/// voters' timers must differ).
fn jitter(min: Duration, max: Duration, salt: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let span = max.saturating_sub(min).as_millis() as u64;
    let x = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    min + Duration::from_millis(if span == 0 { 0 } else { (x >> 17) % span })
}

/// Stands when this voter has heard no leader for the lease (when its
/// vote is committed: a leader was known) plus a randomised election
/// timeout; a lone voter stands at once.
pub(crate) async fn run(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    let tick = (shared.heartbeat_interval / 3).max(Duration::from_millis(10));
    let (min, max) = (shared.election_timeout_min, shared.election_timeout_max);
    let mut wait = jitter(min, max, shared.id);
    let mut last_try: Option<u64> = None;
    let mut first = true;
    let mut server = shared.raft.server_metrics();
    let mut leading = false;
    loop {
        if !first {
            // A leader has nothing to time: it sleeps until its state
            // changes (an idle broker wakes no more than it must).
            if leading {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = server.changed() => if changed.is_err() { return },
                }
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        }
        first = false;
        let (leader, voters, committed) = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            (
                m.state == openraft::ServerState::Leader,
                m.membership_config
                    .membership()
                    .voter_ids()
                    .collect::<BTreeSet<_>>(),
                m.vote.is_committed(),
            )
        };
        leading = leader;
        if leader || !voters.contains(&shared.id) {
            continue;
        }
        if voters.len() == 1 {
            if let Err(e) = shared.raft.trigger().elect().await {
                tracing::debug!(error = %e, "standing for election (the only voter)");
            }
            continue;
        }
        let now = shared.now_ms();
        let lease = if committed { shared.lease_ms } else { 0 };
        let due = (shared.heard_ms() + lease + wait.as_millis() as u64)
            .max(last_try.map_or(0, |t| t + wait.as_millis() as u64));
        if now < due {
            continue;
        }
        stand(&shared).await;
        last_try = Some(shared.now_ms());
        wait = jitter(min, max, shared.id ^ now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Own {
        Own {
            directory_id: Uuid::from_u128(7),
            leader: false,
            silence_ms: 1_000,
            lease_ms: 600,
            committed: true,
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                10,
            )),
        }
    }

    fn req(term: u64, index: u64) -> PreVote {
        PreVote {
            candidate: 2,
            last_log_id: Some(openraft::LogId::new(
                // One leader per term: node 1 led term 3.
                openraft::CommittedLeaderId::new(term, 1),
                index,
            )),
            to_directory: Uuid::nil(),
        }
    }

    #[test]
    fn granted_only_after_a_lease_of_silence_to_a_log_at_least_as_new() {
        assert!(grant(&own(), &req(3, 10)).is_ok());
        assert!(grant(&own(), &req(4, 2)).is_ok());
        assert!(grant(&own(), &req(3, 9)).is_err());
        assert!(grant(&own(), &req(2, 50)).is_err());
        let heard = Own {
            silence_ms: 100,
            ..own()
        };
        assert!(grant(&heard, &req(3, 10)).is_err());
        // A voter that never knew a leader (a new cluster) has no lease.
        let new = Own {
            committed: false,
            ..heard
        };
        assert!(grant(&new, &req(3, 10)).is_ok());
        let leads = Own {
            leader: true,
            ..own()
        };
        assert!(grant(&leads, &req(3, 10)).is_err());
    }

    #[test]
    fn a_voter_on_another_volume_does_not_grant() {
        let mut r = req(3, 10);
        r.to_directory = Uuid::from_u128(8);
        assert!(grant(&own(), &r).is_err());
        r.to_directory = Uuid::from_u128(7);
        assert!(grant(&own(), &r).is_ok());
    }

    #[test]
    fn a_majority_of_every_configuration() {
        let old = BTreeSet::from([1, 2, 3]);
        let new = BTreeSet::from([3, 4, 5]);
        assert!(majority(
            std::slice::from_ref(&old),
            &BTreeSet::from([1, 2])
        ));
        assert!(!majority(std::slice::from_ref(&old), &BTreeSet::from([1])));
        assert!(!majority(
            &[old.clone(), new.clone()],
            &BTreeSet::from([1, 2])
        ));
        assert!(majority(&[old, new], &BTreeSet::from([2, 3, 4])));
        assert!(!majority(&[], &BTreeSet::from([1])));
    }
}
