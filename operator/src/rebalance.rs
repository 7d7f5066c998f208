//! Carrying out the planner's steps on a running cluster with the admin
//! client: observe (Metadata, moves in progress, `min.insync.replicas`,
//! partition sizes from every broker), plan ([`crate::plan::balance`]),
//! and start the moves or elections the plan asks for. Each call is one
//! step, so a reconciler can write the step to status, requeue, and pick
//! up where it left off after a restart: the cluster itself holds the
//! state (moves in progress are listed by the brokers).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::AdminError;

use crate::brokers::Brokers;

use crate::plan::balance::next_step;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
use crate::plan::{Broker, Desired, Observed, Partition, Step};

/// The cluster as the planner needs it. Partition sizes come from each
/// broker's DescribeLogDirs (the largest copy counts); a broker that does
/// not answer leaves them at what the others report.
pub async fn observe(brokers: &Brokers, timeout: Duration) -> Result<Observed, AdminError> {
    let mut admin = brokers.connect_any(timeout).await?;
    // Metadata and the list of moves are two answers from a metadata image
    // that may advance in between: a move that ends (or starts) between
    // them would show a partition with its adding replicas but not moving.
    // Asking for the moves on both sides catches either.
    let mut moving = admin.list_reassignments().await?;
    let info = admin.describe_cluster().await?;
    moving.extend(admin.list_reassignments().await?);
    let mut min_isr: BTreeMap<String, usize> = BTreeMap::new();
    let mut gone = std::collections::BTreeSet::new();
    for p in &info.partitions {
        if min_isr.contains_key(&p.topic) || gone.contains(&p.topic) {
            continue;
        }
        let configs = match admin.topic_configs(&p.topic).await {
            Ok(c) => c,
            // Deleted since the Metadata answer: not part of the plan.
            Err(e) if sluice_client::error_code(&e) == Some(UNKNOWN_TOPIC_OR_PARTITION) => {
                gone.insert(p.topic.clone());
                continue;
            }
            Err(e) => return Err(e),
        };
        let v = configs
            .get("min.insync.replicas")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(1);
        min_isr.insert(p.topic.clone(), v);
    }
    let sizes = largest_copies(&sizes_by_broker(brokers, &info, timeout).await);
    Ok(Observed {
        brokers: info
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.id,
                rack: b.rack.clone(),
                // Metadata lists the live (unfenced) brokers only.
                live: true,
            })
            .collect(),
        partitions: info
            .partitions
            .iter()
            .filter(|p| !gone.contains(&p.topic))
            .map(|p| Partition {
                topic: p.topic.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                leader: p.leader,
                min_insync_replicas: min_isr.get(&p.topic).copied().unwrap_or(1),
                size_bytes: sizes
                    .get(&(p.topic.clone(), p.partition))
                    .copied()
                    .unwrap_or(0),
                moving: moving.contains(&(p.topic.clone(), p.partition)),
            })
            .collect(),
    })
}

/// Partition sizes in bytes: `topic, partition -> bytes`.
pub type Sizes = BTreeMap<(String, i32), u64>;

/// Each live broker's own partition sizes (DescribeLogDirs, asked of the
/// broker itself); a broker that does not answer is left out.
pub async fn sizes_by_broker(
    brokers: &Brokers,
    info: &sluice_client::ClusterInfo,
    timeout: Duration,
) -> BTreeMap<i32, Sizes> {
    let mut out = BTreeMap::new();
    for b in &info.brokers {
        let addr = format!("{}:{}", b.host, b.port);
        let Ok(mut c) = brokers.connect(&addr, timeout).await else {
            continue;
        };
        if let Ok(local) = c.local_partition_sizes().await {
            out.insert(b.id, local);
        }
    }
    out
}

/// The largest copy of each partition.
pub fn largest_copies(by_broker: &BTreeMap<i32, Sizes>) -> Sizes {
    let mut sizes = Sizes::new();
    for local in by_broker.values() {
        for (k, v) in local {
            let e = sizes.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
    sizes
}

/// Why a step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("talking to the cluster: {0}")]
    Admin(#[from] AdminError),
    #[error("{partition} refused: {error}")]
    Refused {
        partition: String,
        error: AdminError,
    },
}

/// Observes and plans: the step the cluster needs next toward `desired`.
pub async fn plan(
    brokers: &Brokers,
    desired: &Desired,
    batch: usize,
    timeout: Duration,
) -> Result<Step, AdminError> {
    let obs = observe(brokers, timeout).await?;
    Ok(next_step(&obs, desired, batch))
}

/// Starts what a step asks for: moves or preferred elections (nothing for
/// the other steps).
pub async fn execute(brokers: &Brokers, step: &Step, timeout: Duration) -> Result<(), StepError> {
    let answers = match step {
        Step::Move(moves) => {
            let req: Vec<(String, i32, Option<Vec<i32>>)> = moves
                .iter()
                .map(|m| (m.topic.clone(), m.partition, Some(m.to.clone())))
                .collect();
            brokers
                .connect_any(timeout)
                .await?
                .alter_reassignments(&req)
                .await?
        }
        Step::ElectPreferred(ps) => {
            brokers
                .connect_any(timeout)
                .await?
                .elect_preferred(ps)
                .await?
        }
        _ => return Ok(()),
    };
    for ((topic, partition), r) in answers {
        if let Err(error) = r {
            return Err(StepError::Refused {
                partition: format!("{topic}-{partition}"),
                error,
            });
        }
    }
    Ok(())
}

/// The broker settings that hold back the copying of moved replicas.
pub const THROTTLE_CONFIGS: [&str; 2] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// Sets (`Some`) or removes (`None`) the replication throttle on every
/// registered broker. Each broker takes its own dynamic configs, so each
/// is asked directly; a broker that cannot be reached fails the call (the
/// reconciler tries again on its next pass).
pub async fn set_throttle(
    brokers: &Brokers,
    rate: Option<u64>,
    timeout: Duration,
) -> Result<(), AdminError> {
    let info = brokers
        .connect_any(timeout)
        .await?
        .describe_cluster()
        .await?;
    let value = rate.map(|r| r.to_string());
    for b in &info.brokers {
        let addr = format!("{}:{}", b.host, b.port);
        let changes: Vec<(&str, Option<&str>)> = THROTTLE_CONFIGS
            .iter()
            .map(|k| (*k, value.as_deref()))
            .collect();
        brokers
            .connect(&addr, timeout)
            .await?
            .alter_broker_configs(b.id, &changes)
            .await?;
    }
    Ok(())
}

/// Observes, plans, and starts what the plan says. Returns the step taken
/// (or the reason for waiting, or the refusal), for the status.
pub async fn step(
    brokers: &Brokers,
    desired: &Desired,
    batch: usize,
    timeout: Duration,
) -> Result<Step, StepError> {
    let step = plan(brokers, desired, batch, timeout).await?;
    execute(brokers, &step, timeout).await?;
    Ok(step)
}

/// A one-line account of a step, for status and logs.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Idle => "balanced".into(),
        Step::Move(moves) => {
            let bytes: u64 = moves.iter().map(|m| m.bytes).sum();
            let list = moves
                .iter()
                .map(|m| format!("{}-{} {:?}->{:?}", m.topic, m.partition, m.from, m.to))
                .collect::<Vec<_>>()
                .join(", ");
            format!("moving {} partition(s), {bytes} bytes: {list}", moves.len())
        }
        Step::ElectPreferred(ps) => {
            format!("electing preferred leaders of {} partition(s)", ps.len())
        }
        Step::Wait(r) => format!("waiting: {r}"),
        Step::Refused(r) => format!("refused: {r}"),
    }
}

/// Whether the previous pass already showed this step, so it may run now:
/// the same moves of the same rebalance (an election: the same message).
/// Not the message of a move, which carries the bytes to copy and so
/// changes with every write to those partitions: under a write load the
/// plan never ran (the real-control-plane tour caught it).
pub fn shown_before(
    previous: Option<&crate::crd::PlanStatus>,
    shown: &crate::crd::PlanStatus,
) -> bool {
    previous.is_some_and(|p| {
        matches!(p.phase.as_str(), "Planned" | "AwaitingApproval")
            && p.id == shown.id
            && p.moves == shown.moves
            && (!shown.moves.is_empty() || p.message == shown.message)
    })
}

/// The status form of a step. Moves and elections are `Planned` until the
/// reconciler carries them out on a later pass (so that the plan is shown
/// before it runs); the others say where things stand.
pub fn plan_status(
    step: &Step,
    target_brokers: i32,
    throttle: Option<i64>,
) -> crate::crd::PlanStatus {
    let (phase, moves, bytes) = match step {
        Step::Idle => ("Balanced", Vec::new(), 0),
        Step::Move(ms) => (
            "Planned",
            ms.iter()
                .map(|m| crate::crd::PlannedMove {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    from: m.from.clone(),
                    to: m.to.clone(),
                })
                .collect(),
            ms.iter().map(|m| m.bytes).sum(),
        ),
        Step::ElectPreferred(_) => ("Planned", Vec::new(), 0),
        Step::Wait(_) => ("Waiting", Vec::new(), 0),
        Step::Refused(_) => ("Refused", Vec::new(), 0),
    };
    let throttle_bytes_per_second = match step {
        Step::Move(_) => throttle,
        _ => None,
    };
    crate::crd::PlanStatus {
        phase: phase.into(),
        id: String::new(),
        throttle_bytes_per_second,
        target_brokers,
        message: describe(step),
        moves,
        bytes,
    }
}

/// Where a replication-factor change stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RfChange {
    /// Every partition has the new factor.
    Done,
    /// Moves were started or are in progress, for this many partitions.
    Moving(usize),
    /// Something must heal first.
    Waiting(String),
    /// The factor cannot be reached (more replicas than live brokers).
    Refused(String),
}

/// One step of changing `topic`'s replication factor to `rf` by
/// reassignment: replicas are added on, or removed from, the brokers the
/// planner balances toward (`brokers`, or every live one), keeping every
/// other replica where it is.
pub async fn change_replication_factor(
    reach: &Brokers,
    topic: &str,
    rf: usize,
    brokers: Option<Vec<i32>>,
    timeout: Duration,
) -> Result<RfChange, StepError> {
    let obs = observe(reach, timeout).await?;
    let mine: Vec<&Partition> = obs.partitions.iter().filter(|p| p.topic == topic).collect();
    let moving = mine.iter().filter(|p| p.moving).count();
    if moving > 0 {
        return Ok(RfChange::Moving(moving));
    }
    if mine.iter().all(|p| p.replicas.len() == rf) {
        return Ok(RfChange::Done);
    }
    let desired = Desired {
        brokers: brokers.unwrap_or_else(|| {
            obs.brokers
                .iter()
                .filter(|b| b.live)
                .map(|b| b.id)
                .collect()
        }),
        replication_factors: BTreeMap::from([(topic.to_string(), rf)]),
    };
    let target = match crate::plan::balance::target_assignment(&obs, &desired) {
        Ok(t) => t,
        Err(reason) => return Ok(RfChange::Refused(reason)),
    };
    let mut moves = Vec::new();
    for p in &mine {
        let Some(to) = target.get(&p.key()) else {
            continue;
        };
        if *to == p.replicas {
            continue;
        }
        if !p.settled() {
            return Ok(RfChange::Waiting(format!(
                "{}-{} has ISR {:?} of replicas {:?}",
                p.topic, p.partition, p.isr, p.replicas
            )));
        }
        moves.push((p.topic.clone(), p.partition, Some(to.clone())));
    }
    let n = moves.len();
    let answers = reach
        .connect_any(timeout)
        .await?
        .alter_reassignments(&moves)
        .await?;
    for ((t, p), r) in answers {
        if let Err(error) = r {
            return Err(StepError::Refused {
                partition: format!("{t}-{p}"),
                error,
            });
        }
    }
    Ok(RfChange::Moving(n))
}

#[cfg(test)]
mod shown_before_tests {
    use super::shown_before;
    use crate::crd::{PlanStatus, PlannedMove};

    fn plan(phase: &str, bytes: u64) -> PlanStatus {
        PlanStatus {
            phase: phase.into(),
            id: "r5".into(),
            target_brokers: 5,
            message: format!("moving 1 partition(s), {bytes} bytes"),
            moves: vec![PlannedMove {
                topic: "orders".into(),
                partition: 4,
                from: vec![0, 2, 1],
                to: vec![3, 0, 4],
            }],
            bytes,
            ..PlanStatus::default()
        }
    }

    #[test]
    fn a_move_shown_before_runs_though_its_partitions_grew() {
        assert!(shown_before(
            Some(&plan("Planned", 100)),
            &plan("Planned", 250)
        ));
        assert!(!shown_before(None, &plan("Planned", 100)));
        assert!(!shown_before(
            Some(&plan("Moving", 100)),
            &plan("Planned", 100)
        ));
        let mut other = plan("Planned", 100);
        other.moves[0].to = vec![4, 0, 3];
        assert!(!shown_before(Some(&plan("Planned", 100)), &other));
        let mut elect = plan("Planned", 0);
        elect.moves.clear();
        let mut elect2 = elect.clone();
        assert!(shown_before(Some(&elect), &elect2));
        elect2.message = "electing other leaders".into();
        assert!(!shown_before(Some(&elect), &elect2));
    }
}
