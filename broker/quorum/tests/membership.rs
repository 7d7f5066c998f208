//! Four brokers (three quorum voters, one observer) over real gRPC on
//! loopback: registration, heartbeats, the observer learning the metadata,
//! fencing of a crashed broker with its leaderships moved inside the ISR,
//! controller failover, controlled shutdown, and re-registration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_quorum::image::Command;
use sluice_quorum::member::leading;
use sluice_quorum::placement::{self, Candidate};
use sluice_quorum::{Member, MetadataImage, Outcome};

mod common;
use common::{SESSION, free_ports, member_config as config};

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn live(img: &MetadataImage) -> Vec<i32> {
    img.live_brokers().map(|b| b.id).collect()
}

fn any(members: &[Option<Member>]) -> &Member {
    members.iter().flatten().next().expect("a live member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_fail_over_and_hand_off() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(4);
    let mut members: Vec<Option<Member>> = Vec::new();
    for id in 0..4 {
        members.push(Some(
            Member::start(config(id, dir.path(), &ports))
                .await
                .expect("start"),
        ));
    }

    // All four register and are unfenced; the observer (3) learns the
    // metadata as a Raft learner.
    for m in members.iter().flatten() {
        wait_for(
            "four live brokers in every image",
            Duration::from_secs(15),
            || (live(&m.image()) == vec![0, 1, 2, 3]).then_some(()),
        )
        .await;
    }

    // A topic over all four, RF 3.
    let brokers: Vec<Candidate> = (0..4).map(|id| Candidate { id, rack: None }).collect();
    let assignment = placement::assign(&brokers, 8, 3, 0, 1).expect("assign");
    let created = any(&members)
        .node()
        .write(Command::CreateTopic {
            name: "orders".into(),
            id: [9; 16],
            assignment,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    assert_eq!(created, Outcome::Ok);
    for m in members.iter().flatten() {
        wait_for("the topic everywhere", Duration::from_secs(5), || {
            m.image().topics.contains_key("orders").then_some(())
        })
        .await;
    }
    let led_by_3 = leading(&any(&members).image(), 3);
    assert!(led_by_3 > 0, "broker 3 leads some partitions");

    // Crash the observer: fenced after the session timeout, its
    // leaderships move within the ISR, and no partition is left without a
    // leader.
    let crashed_at = Instant::now();
    members[3].take().expect("b3").kill().await;
    let detect = wait_for(
        "broker 3 fenced and its partitions moved",
        Duration::from_secs(10),
        || {
            let img = any(&members).image();
            let t = &img.topics["orders"];
            (img.brokers[&3].fenced
                && t.partitions
                    .iter()
                    .all(|p| p.leader >= 0 && p.leader != 3 && !p.isr.contains(&3)))
            .then(|| crashed_at.elapsed())
        },
    )
    .await;
    println!(
        "crashed broker fenced and its {led_by_3} leaderships moved after {detect:?} (session {SESSION:?})"
    );
    for p in &any(&members).image().topics["orders"].partitions {
        assert!(p.isr.contains(&p.leader), "leader from the ISR: {p:?}");
        assert!(p.isr.len() >= 2, "two of three replicas remain: {p:?}");
    }

    // Crash the quorum leader (a voter), and let the others find it gone,
    // as their replica fetchers do when its listener refuses: the lowest
    // remaining voter stands for election once the lease has run out
    // (rather than each after its own random timeout), and the new
    // controller fences the old one at once.
    let quorum_leader = wait_for("a quorum leader", Duration::from_secs(5), || {
        any(&members).node().leader()
    })
    .await as usize;
    let crashed_at = Instant::now();
    members[quorum_leader].take().expect("leader").kill().await;
    for m in members.iter().flatten() {
        m.suspect(quorum_leader as i32);
    }
    let successor = (0..3u64)
        .find(|v| *v != quorum_leader as u64)
        .expect("a remaining voter");
    let elected = wait_for("a new quorum leader", Duration::from_secs(10), || {
        any(&members)
            .node()
            .leader()
            .filter(|l| *l != quorum_leader as u64)
    })
    .await;
    assert_eq!(
        elected, successor,
        "the lowest remaining voter stands first when the leader is found gone"
    );
    let detect = wait_for(
        "the old controller fenced by the new one",
        Duration::from_secs(15),
        || {
            let img = any(&members).image();
            let t = &img.topics["orders"];
            (img.brokers[&(quorum_leader as i32)].fenced
                && t.partitions
                    .iter()
                    .all(|p| p.leader != quorum_leader as i32))
            .then(|| crashed_at.elapsed())
        },
    )
    .await;
    println!(
        "controller crash: broker {quorum_leader} fenced and its leaderships moved after {detect:?}"
    );

    // The crashed observer comes back as a new incarnation: registered with
    // a new epoch and unfenced (ISR growth is the leader's job, with data).
    let old_epoch = any(&members).image().brokers[&3].epoch;
    members[3] = Some(
        Member::start(config(3, dir.path(), &ports))
            .await
            .expect("restart 3"),
    );
    wait_for(
        "broker 3 back, unfenced, new epoch",
        Duration::from_secs(15),
        || {
            let img = members[3].as_ref()?.image();
            let b = img.brokers.get(&3)?;
            (!b.fenced && b.epoch > old_epoch).then_some(())
        },
    )
    .await;

    // Controlled shutdown: the broker hands away every leadership that has
    // another live ISR member to go to. (Partitions whose ISR is only this
    // broker stay with it: no other replica has all their records.)
    let img = any(&members).image();
    let movable = |id: i32| {
        img.topics["orders"]
            .partitions
            .iter()
            .filter(|p| p.leader == id)
            .filter(|p| {
                p.isr
                    .iter()
                    .any(|r| *r != id && img.brokers.get(r).is_some_and(|b| !b.fenced))
            })
            .count()
    };
    let candidate = members
        .iter()
        .flatten()
        .map(|m| m.node().id() as i32)
        .max_by_key(|id| movable(*id))
        .expect("a member");
    let (moves, led) = (movable(candidate), leading(&img, candidate));
    assert!(
        moves > 0,
        "some broker leads a partition it can hand over: {img:?}"
    );
    let still = members[candidate as usize]
        .take()
        .expect("member")
        .shutdown(Duration::from_secs(5))
        .await;
    assert_eq!(
        still, 0,
        "broker {candidate} leads nothing after its controlled shutdown"
    );
    // Read from a member that has applied the whole hand-off.
    let img = wait_for(
        "a member with the hand-off applied",
        Duration::from_secs(5),
        || {
            members
                .iter()
                .flatten()
                .map(|m| m.image())
                .find(|img| leading(img, candidate) == 0)
        },
    )
    .await;
    let offline: Vec<_> = img.topics["orders"]
        .partitions
        .iter()
        .filter(|p| p.leader == -1)
        .collect();
    assert_eq!(
        offline.len(),
        led - moves,
        "only partitions without another ISR member went offline"
    );
    assert!(
        offline.iter().all(|p| p.isr == vec![candidate]),
        "an offline partition keeps its last ISR member, to lead again when it returns: {offline:?}"
    );
    println!(
        "controlled shutdown of broker {candidate}: {moves} leaderships handed over, {} left offline with it as the last ISR member",
        led - moves
    );

    for m in members.into_iter().flatten() {
        m.kill().await;
    }
}
