//! Partition reassignment (KIP-455), as the quorum applies it.
//!
//! A move from the original replicas `O` to a target `T` first widens the
//! replica set to `T ++ (O \ T)`, with `T \ O` adding and `O \ T`
//! removing. The leader lets the adding replicas fetch; when every one of
//! them has joined the ISR, the move completes in the same command that
//! grew the ISR: the replica set becomes `T`, the ISR `ISR ∩ T`, and a
//! leader outside `T` hands over to the first live member of the new ISR.
//! Cancelling goes back to `O`. Every step keeps a non-empty ISR, so no
//! acknowledged record depends on a replica that was dropped.

use crate::model::{PartitionState, Refusal};

fn ongoing(p: &PartitionState) -> bool {
    !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty()
}

/// The replica set before the move in progress (the set itself when none).
pub fn original(p: &PartitionState) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding_replicas.contains(r))
        .collect()
}

/// The replica set the move in progress leads to (the set itself when none).
pub fn target(p: &PartitionState) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.removing_replicas.contains(r))
        .collect()
}

/// Sets a new replica set, ISR and leader; the leader epoch moves when the
/// leader does, the partition epoch always.
fn set(p: &mut PartitionState, replicas: Vec<i32>, isr: Vec<i32>, live: &impl Fn(&i32) -> bool) {
    let leader = if p.leader != -1 && isr.contains(&p.leader) {
        p.leader
    } else {
        replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && live(r))
            .unwrap_or(-1)
    };
    if leader != p.leader {
        p.leader_epoch += 1;
    }
    p.leader = leader;
    p.replicas = replicas;
    p.isr = isr;
    p.partition_epoch += 1;
}

/// Starts (or redirects) a move to `target`. A target equal to the current
/// set changes nothing; equal to the original set of a move in progress,
/// it cancels that move.
pub fn start(
    p: &mut PartitionState,
    target: &[i32],
    registered: &[i32],
    live: &impl Fn(&i32) -> bool,
) -> Result<(), Refusal> {
    let mut seen = target.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if target.is_empty() {
        return Err(Refusal::InvalidReplicaAssignment(
            "the replica list is empty".into(),
        ));
    }
    if seen.len() != target.len() {
        return Err(Refusal::InvalidReplicaAssignment(format!(
            "duplicate brokers in {target:?}"
        )));
    }
    if let Some(b) = target.iter().find(|b| !registered.contains(b)) {
        return Err(Refusal::InvalidReplicaAssignment(format!(
            "broker {b} is not registered"
        )));
    }
    let original = original(p);
    if !ongoing(p) && p.replicas == target {
        return Ok(());
    }
    let mut replicas = target.to_vec();
    replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(Refusal::InvalidReplicaAssignment(format!(
            "{target:?} would leave the partition with no in-sync replica"
        )));
    }
    p.adding_replicas = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    p.removing_replicas = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    set(p, replicas, isr, live);
    maybe_complete(p, live);
    Ok(())
}

/// Cancels the move in progress: back to the original replicas.
pub fn cancel(
    p: &mut PartitionState,
    live: &impl Fn(&i32) -> bool,
    topic: &str,
    partition: i32,
) -> Result<(), Refusal> {
    if !ongoing(p) {
        return Err(Refusal::NoReassignmentInProgress {
            topic: topic.to_string(),
            partition,
        });
    }
    let original = original(p);
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| original.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(Refusal::InvalidReplicaAssignment(
            "cancelling would leave the partition with no in-sync replica".into(),
        ));
    }
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    set(p, original, isr, live);
    Ok(())
}

/// Completes the move in progress once every adding replica is in the ISR
/// and the target keeps an in-sync replica. Part of the command that
/// changed the ISR, so it does not bump the partition epoch again unless
/// it changes the leader.
pub fn maybe_complete(p: &mut PartitionState, live: &impl Fn(&i32) -> bool) {
    if !ongoing(p) || !p.adding_replicas.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    let target = target(p);
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| target.contains(r))
        .collect();
    if isr.is_empty() {
        return;
    }
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    let epoch = p.partition_epoch;
    set(p, target, isr, live);
    p.partition_epoch = epoch;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    const ALL: [i32; 6] = [0, 1, 2, 3, 4, 5];

    fn live(_: &i32) -> bool {
        true
    }

    #[test]
    fn a_move_widens_the_set_then_completes_when_the_new_replicas_are_in_sync() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        start(&mut p, &[3, 4, 5], &ALL, &live).expect("accepted");
        assert_eq!(p.replicas, vec![3, 4, 5, 0, 1, 2]);
        assert_eq!(p.adding_replicas, vec![3, 4, 5]);
        assert_eq!(p.removing_replicas, vec![0, 1, 2]);
        assert_eq!(p.isr, vec![0, 1, 2]);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (0, 0, 1));
        // Two of three new replicas in sync: not yet.
        p.isr = vec![0, 1, 2, 3, 4];
        maybe_complete(&mut p, &live);
        assert_eq!(p.replicas.len(), 6);
        p.isr.push(5);
        maybe_complete(&mut p, &live);
        assert_eq!(p.replicas, vec![3, 4, 5]);
        assert_eq!(p.isr, vec![3, 4, 5]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.leader, 3, "the removed leader hands over");
        assert_eq!(p.leader_epoch, 1);
    }

    #[test]
    fn a_kept_leader_keeps_its_epoch() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 1);
        start(&mut p, &[1, 2, 3], &ALL, &live).expect("accepted");
        p.isr.push(3);
        maybe_complete(&mut p, &live);
        assert_eq!(p.replicas, vec![1, 2, 3]);
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!((p.leader, p.leader_epoch), (1, 0));
    }

    #[test]
    fn shrinking_or_reordering_completes_at_once() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        start(&mut p, &[2, 1], &ALL, &live).expect("accepted");
        assert_eq!(p.replicas, vec![2, 1]);
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(p.leader, 2);
        assert!(p.removing_replicas.is_empty());
    }

    #[test]
    fn the_same_set_changes_nothing() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        let before = p.clone();
        start(&mut p, &[0, 1, 2], &ALL, &live).expect("accepted");
        assert_eq!(p, before);
    }

    #[test]
    fn cancel_goes_back_to_the_original_replicas() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        assert!(matches!(
            cancel(&mut p, &live, "t", 0),
            Err(Refusal::NoReassignmentInProgress { .. })
        ));
        start(&mut p, &[3, 4, 5], &ALL, &live).expect("accepted");
        p.isr.push(3); // one new replica caught up before the cancel
        cancel(&mut p, &live, "t", 0).expect("cancelled");
        assert_eq!(p.replicas, vec![0, 1, 2]);
        assert_eq!(p.isr, vec![0, 1, 2]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.leader, 0);
    }

    #[test]
    fn a_new_target_replaces_the_move_in_progress() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        start(&mut p, &[3, 4, 5], &ALL, &live).expect("accepted");
        p.isr.push(3);
        start(&mut p, &[0, 4], &ALL, &live).expect("accepted");
        // 3 was only ever adding: it leaves, ISR included.
        assert_eq!(p.replicas, vec![0, 4, 1, 2]);
        assert_eq!(p.adding_replicas, vec![4]);
        assert_eq!(p.removing_replicas, vec![1, 2]);
        assert_eq!(p.isr, vec![0, 1, 2]);
        // Back to the original set: the move is cancelled.
        start(&mut p, &[0, 1, 2], &ALL, &live).expect("accepted");
        assert_eq!(p.replicas, vec![0, 1, 2]);
        assert!(p.adding_replicas.is_empty());
    }

    #[test]
    fn bad_targets_are_refused_and_change_nothing() {
        let mut p = partition(&[0, 1, 2], &[0, 1, 2], 0);
        let before = p.clone();
        for bad in [vec![], vec![1, 1], vec![9]] {
            assert!(matches!(
                start(&mut p, &bad, &ALL, &live),
                Err(Refusal::InvalidReplicaAssignment(_))
            ));
        }
        assert_eq!(p, before);
    }

    #[test]
    fn no_step_leaves_an_empty_isr() {
        // Only broker 0 is in sync and the target drops it: the move waits
        // for the new replicas rather than losing the only complete copy.
        let mut p = partition(&[0, 1, 2], &[0], 0);
        start(&mut p, &[1, 2], &ALL, &live).expect("accepted");
        assert_eq!(p.replicas, vec![1, 2, 0]);
        assert_eq!(p.isr, vec![0]);
        assert_eq!(p.removing_replicas, vec![0]);
        p.isr = vec![0, 1];
        maybe_complete(&mut p, &live);
        assert_eq!(p.replicas, vec![1, 2]);
        assert_eq!(p.isr, vec![1]);
        assert_eq!(p.leader, 1);
    }
}
