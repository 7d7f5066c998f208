//! Three quorum members over real gRPC on loopback: a leader is elected,
//! writes from any member commit on all, a killed leader is replaced and
//! nothing committed is lost, and a restarted member recovers from disk.

use std::time::{Duration, Instant};

use sluice_quorum::image::Command;
use sluice_quorum::{Outcome, QuorumNode};

mod common;
use common::free_ports;

use common::quorum_config as config;

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        incarnation: 1,
        kafka_address: format!("127.0.0.1:{}", 9000 + id),
        listeners: Default::default(),
        internal_address: format!("127.0.0.1:{}", 9100 + id),
        rack: None,
        directory_id: Default::default(),
    }
}

async fn leader_of(nodes: &[Option<QuorumNode>]) -> u64 {
    wait_for(
        "a leader all live members agree on",
        Duration::from_secs(10),
        || {
            let leaders: Vec<Option<u64>> = nodes.iter().flatten().map(|n| n.leader()).collect();
            let first = leaders.first().copied().flatten()?;
            let live: Vec<u64> = nodes.iter().flatten().map(|n| n.id()).collect();
            (live.contains(&first) && leaders.iter().all(|l| *l == Some(first))).then_some(first)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_fail_over_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(3);
    let mut nodes: Vec<Option<QuorumNode>> = Vec::new();
    for id in 0..3 {
        nodes.push(Some(
            QuorumNode::start(config(id, dir.path(), &ports))
                .await
                .expect("start"),
        ));
    }
    let leader = leader_of(&nodes).await;

    // Writes through a follower are forwarded to the leader.
    let follower = (0..3).find(|i| *i != leader).expect("a follower") as usize;
    let via = nodes[follower].as_ref().expect("follower");
    assert_eq!(
        via.write(Command::InitCluster {
            cluster_id: "c-1".into()
        })
        .await
        .expect("init"),
        Outcome::Ok
    );
    for id in 0..3 {
        let o = via.write(register(id)).await.expect("register");
        assert!(matches!(o, Outcome::Registered { .. }), "{o:?}");
    }
    // A refused command is an answer, not an error.
    assert!(matches!(
        via.write(Command::InitCluster {
            cluster_id: "other".into()
        })
        .await
        .expect("write"),
        Outcome::Refused(_)
    ));
    for n in nodes.iter().flatten() {
        wait_for("three brokers everywhere", Duration::from_secs(5), || {
            (n.image().brokers.len() == 3).then_some(())
        })
        .await;
    }

    // Kill the leader: the other two elect a new one, and keep every
    // committed write.
    let old = nodes[leader as usize].take().expect("leader");
    let stopping = Instant::now();
    old.shutdown().await;
    let stopped_in = stopping.elapsed();
    let killed_at = Instant::now();
    let new_leader = leader_of(&nodes).await;
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    let n = nodes[new_leader as usize].as_ref().expect("new leader");
    assert_eq!(
        n.write(register(7)).await.expect("write after failover"),
        Outcome::Registered { epoch: 4 }
    );
    assert_eq!(n.image().cluster_id.as_deref(), Some("c-1"));
    println!(
        "quorum failover: leader stopped in {stopped_in:?}, new leader agreed after {failover:?}, writing after {:?}",
        killed_at.elapsed()
    );

    // The old leader restarts from its own disk and catches up.
    let back = QuorumNode::start(config(leader, dir.path(), &ports))
        .await
        .expect("restart");
    wait_for(
        "the restarted member catches up",
        Duration::from_secs(10),
        || {
            let img = back.image();
            (img.brokers.len() == 4 && img.cluster_id.as_deref() == Some("c-1")).then_some(())
        },
    )
    .await;
    nodes[leader as usize] = Some(back);

    // Everyone agrees on the whole image.
    let images: Vec<_> = nodes.iter().flatten().map(|n| n.image()).collect();
    wait_for("identical images", Duration::from_secs(5), || {
        let images: Vec<_> = nodes.iter().flatten().map(|n| n.image()).collect();
        images.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
    assert_eq!(images.len(), 3);
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_keeps_the_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(3);
    let mut nodes = Vec::new();
    for id in 0..3 {
        nodes.push(Some(
            QuorumNode::start(config(id, dir.path(), &ports))
                .await
                .expect("start"),
        ));
    }
    leader_of(&nodes).await;
    let n = nodes[0].as_ref().expect("node");
    n.write(Command::InitCluster {
        cluster_id: "keep".into(),
    })
    .await
    .expect("init");
    for id in 0..50 {
        n.write(register(id)).await.expect("register");
    }
    for n in nodes.iter_mut() {
        n.take().expect("node").shutdown().await;
    }
    let mut nodes = Vec::new();
    for id in 0..3 {
        nodes.push(Some(
            QuorumNode::start(config(id, dir.path(), &ports))
                .await
                .expect("restart"),
        ));
    }
    leader_of(&nodes).await;
    for n in nodes.iter().flatten() {
        wait_for(
            "metadata back after a full restart",
            Duration::from_secs(10),
            || {
                let img = n.image();
                (img.brokers.len() == 50 && img.cluster_id.as_deref() == Some("keep")).then_some(())
            },
        )
        .await;
    }
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
