//! The metadata quorum's voters as the operator drives them: observed with
//! DescribeQuorum, changed one voter at a time with AddRaftVoter /
//! RemoveRaftVoter (decision 0028), shown in `status.quorum`.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_client::{AdminError, QuorumInfo};

use crate::brokers::Brokers;
use crate::crd::{QuorumStatus, QuorumVoterStatus};
use crate::plan::voters::{QuorumView, VoterStep};

/// The quorum, from any broker.
pub async fn observe(brokers: &Brokers, timeout: Duration) -> Result<QuorumInfo, AdminError> {
    let mut admin = brokers.connect_any(timeout).await?;
    admin.describe_quorum().await
}

/// What the planner needs of it.
pub fn view(q: &QuorumInfo) -> QuorumView {
    QuorumView {
        voters: q.voters.iter().map(|v| v.id).collect(),
        observers: q.observers.iter().map(|v| v.id).collect(),
        caught_up: q
            .voters
            .iter()
            .chain(&q.observers)
            .filter(|r| r.log_end_offset >= q.high_watermark)
            .map(|r| r.id)
            .collect::<BTreeSet<_>>(),
    }
}

/// Carries out one voter change; `address` gives a broker's quorum
/// listener (`host:port`).
pub async fn execute(
    brokers: &Brokers,
    q: &QuorumInfo,
    step: &VoterStep,
    address: impl Fn(i32) -> String,
    timeout: Duration,
) -> Result<(), AdminError> {
    let directory = |id: i32| q.member(id).map(|m| m.directory_id).unwrap_or_default();
    let mut admin = brokers.connect_any(timeout).await?;
    match step {
        VoterStep::Add(id) => {
            admin
                .add_raft_voter(*id, directory(*id), &address(*id), timeout)
                .await
        }
        VoterStep::Remove(id) => admin.remove_raft_voter(*id, directory(*id)).await,
        VoterStep::Idle | VoterStep::Wait(_) => Ok(()),
    }
}

/// A step in words (status and events).
pub fn describe(step: &VoterStep) -> String {
    match step {
        VoterStep::Idle => "the metadata quorum has the voters it should".into(),
        VoterStep::Add(id) => format!("make broker {id} a metadata quorum voter"),
        VoterStep::Remove(id) => {
            format!("move the metadata quorum's vote off broker {id} (it stays an observer)")
        }
        VoterStep::Wait(why) => why.clone(),
    }
}

/// `status.quorum`: the controller, the voters with their lag behind the
/// high watermark, the observers.
pub fn status(q: &QuorumInfo, initial_voters: Option<String>) -> QuorumStatus {
    let mut voters: Vec<QuorumVoterStatus> = q
        .voters
        .iter()
        .map(|v| QuorumVoterStatus {
            id: v.id,
            directory_id: v.directory_id.to_string(),
            lag: if v.log_end_offset < 0 {
                None
            } else {
                Some((q.high_watermark - v.log_end_offset).max(0))
            },
        })
        .collect();
    voters.sort_by_key(|v| v.id);
    let mut observers: Vec<i32> = q.observers.iter().map(|o| o.id).collect();
    observers.sort_unstable();
    QuorumStatus {
        controller: (q.leader >= 0).then_some(q.leader),
        epoch: q.epoch,
        voters,
        observers,
        initial_voters,
    }
}
