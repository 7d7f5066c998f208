//! Voters over real gRPC on loopback, with every member's Raft state
//! watched: a voter whose volume is wiped comes back with a new directory
//! id and votes again only once the membership names it; leaders are then
//! killed and restarted, and no term ever has two leaders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_quorum::Member;

mod common;
use common::{free_ports, member_config as config};

/// Every (term, leader) any member has been in.
type Leaders = Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>>;

fn watch(member: &Member, leaders: &Leaders) {
    let mut metrics = member.node().raft().metrics();
    let leaders = leaders.clone();
    tokio::spawn(async move {
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == openraft::ServerState::Leader {
                    if let Ok(mut l) = leaders.lock() {
                        l.entry(m.current_term).or_default().insert(m.id);
                    }
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

async fn start(id: i32, dir: &Path, ports: &[u16], leaders: &Leaders) -> Member {
    let m = Member::start(config(id, dir, ports)).await.expect("start");
    watch(&m, leaders);
    m
}

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn any(members: &[Option<Member>]) -> &Member {
    members.iter().flatten().next().expect("a live member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_is_a_new_voter_and_no_term_has_two_leaders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(3);
    let leaders = Leaders::default();
    let mut members: Vec<Option<Member>> = Vec::new();
    for id in 0..3 {
        members.push(Some(start(id, dir.path(), &ports, &leaders).await));
    }
    // The first membership has no directory ids; the controller fills them
    // in from the registrations.
    let first = wait_for(
        "every voter's directory id known",
        Duration::from_secs(20),
        async || {
            let d = any(&members).node().describe().await?;
            (d.voters.len() == 3 && d.voters.iter().all(|v| !v.directory_id.is_nil())).then_some(d)
        },
    )
    .await;

    for round in 0..2 {
        let leader = wait_for("a leader", Duration::from_secs(10), async || {
            any(&members).node().leader()
        })
        .await;
        // A follower's volume is lost.
        let victim = (0..3u64).find(|v| *v != leader).expect("a follower") as usize;
        let old = any(&members)
            .node()
            .describe()
            .await
            .and_then(|d| {
                d.voters
                    .iter()
                    .find(|v| v.id == victim as u64)
                    .map(|v| v.directory_id)
            })
            .expect("the victim's directory id");
        members[victim].take().expect("victim").kill().await;
        std::fs::remove_dir_all(dir.path().join(format!("b{victim}"))).expect("wipe");
        members[victim] = Some(start(victim as i32, dir.path(), &ports, &leaders).await);
        let new = members[victim]
            .as_ref()
            .expect("victim")
            .node()
            .directory_id();
        assert_ne!(new, old, "an emptied volume is a new directory");
        wait_for(
            "the membership naming the new directory id",
            Duration::from_secs(20),
            async || {
                let d = any(&members).node().describe().await?;
                d.voters
                    .iter()
                    .any(|v| v.id == victim as u64 && v.directory_id == new)
                    .then_some(())
            },
        )
        .await;
        // Then the leader dies: the two others, the new voter among them,
        // elect a successor.
        members[leader as usize]
            .take()
            .expect("leader")
            .kill()
            .await;
        wait_for("a new leader", Duration::from_secs(15), async || {
            any(&members).node().leader().filter(|l| *l != leader)
        })
        .await;
        members[leader as usize] = Some(start(leader as i32, dir.path(), &ports, &leaders).await);
        println!("round {round}: voter {victim} {old} -> {new}; leader {leader} killed");
    }
    let d = wait_for("three voters again", Duration::from_secs(20), async || {
        let d = any(&members).node().describe().await?;
        (d.voters.len() == 3).then_some(d)
    })
    .await;
    println!("first: {first:?}\nnow: {d:?}");
    let leaders = leaders.lock().expect("leaders").clone();
    println!("leaders by term: {leaders:?}");
    assert!(leaders.len() >= 3, "elections happened: {leaders:?}");
    for (term, ids) in &leaders {
        assert_eq!(ids.len(), 1, "term {term} had leaders {ids:?}");
    }
    for m in members.into_iter().flatten() {
        m.kill().await;
    }
}
