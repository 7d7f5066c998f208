//! The metadata quorum's voters (KIP-853) through Apache Kafka's own Java
//! Admin client and `kafka-metadata-quorum` tool, against real broker
//! processes:
//! - voters 1 → 3 → 5 → 3 → 1 under an idempotent `acks=all` load, every
//!   acknowledged record read back;
//! - a voter's volume wiped and the broker restarted: it comes back with a
//!   new directory id, is made a voter again under it, and no term ever
//!   has two leaders;
//! - a voter cut off from its peers for 10 s and healed: the controller
//!   and its term stay (the pre-vote).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_e2e::java::{Quorum, RaftVoters, tool};
use sluice_e2e::rd::{AckedLoad, check_acknowledged};
use sluice_e2e::{BrokerProcess, start_cluster_voting, start_cluster_with_links};

const QUORUM_TOOL: &str = "org.apache.kafka.tools.MetadataQuorumCommand";

fn bootstrap_of(brokers: &[BrokerProcess]) -> String {
    brokers
        .iter()
        .map(BrokerProcess::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until Metadata lists `n` brokers.
fn wait_registered(bootstrap: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        if c.fetch_metadata(None, Duration::from_secs(5))
            .is_ok_and(|m| m.brokers().len() == n)
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{n} brokers did not register within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn describe(admin: &mut RaftVoters) -> Result<Quorum> {
    let line = admin.ask("describe")?;
    Quorum::parse(&line).with_context(|| format!("describe answered {line:?}"))
}

/// Asks until `ok` (a voter change is refused while another is under way,
/// or while the new member catches up: retriable), up to a minute.
fn change(admin: &mut RaftVoters, command: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = admin.ask(command)?;
        if answer == "ok" {
            return Ok(());
        }
        ensure!(
            answer.contains("TimeoutException") && Instant::now() < deadline,
            "{command}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the quorum shows exactly `want` as voters, every one of
/// them at the high watermark.
fn wait_voters(admin: &mut RaftVoters, want: &[i32]) -> Result<Quorum> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = describe(admin)?;
        if q.voter_ids() == want
            && q.voters
                .iter()
                .all(|v| v.log_end_offset >= q.high_watermark)
        {
            return Ok(q);
        }
        ensure!(
            Instant::now() < deadline,
            "voters are not {want:?} within 60 s: {q:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn add(admin: &mut RaftVoters, brokers: &[BrokerProcess], id: i32) -> Result<()> {
    let q = describe(admin)?;
    let dir = q
        .directory_of(id)
        .with_context(|| format!("broker {id} is not in the quorum: {q:?}"))?
        .to_string();
    let address = brokers[id as usize]
        .internal_address()
        .context("internal address")?;
    change(admin, &format!("add {id} {dir} {address}"))
}

fn remove(admin: &mut RaftVoters, id: i32) -> Result<()> {
    let q = describe(admin)?;
    let dir = q.directory_of(id).context("directory id")?.to_string();
    change(admin, &format!("remove {id} {dir}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_go_1_3_5_3_1_under_load_and_nothing_acknowledged_is_lost() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let brokers = start_cluster_voting(dir.path(), 5, 1, &[])?;
    let all = bootstrap_of(&brokers);
    let a = all.clone();
    tokio::task::spawn_blocking(move || wait_registered(&a, 5)).await??;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .create()?;
    let topic = NewTopic::new("voters", 6, TopicReplication::Fixed(3));
    for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let load = AckedLoad::start(&all, "voters", 0)?;

    let b = all.clone();
    let brokers = tokio::task::spawn_blocking(move || -> Result<Vec<BrokerProcess>> {
        let mut voters = RaftVoters::start(&b)?;
        let q = wait_voters(&mut voters, &[0])?;
        ensure!(q.leader == 0, "the only voter leads: {q:?}");
        ensure!(
            q.observers.len() == 4,
            "the other four brokers observe: {q:?}"
        );
        for id in [1, 2] {
            add(&mut voters, &brokers, id)?;
        }
        wait_voters(&mut voters, &[0, 1, 2])?;
        for id in [3, 4] {
            add(&mut voters, &brokers, id)?;
        }
        let five = wait_voters(&mut voters, &[0, 1, 2, 3, 4])?;
        println!("five voters: {five:?}");

        // Refusals, as Kafka words them.
        let dir0 = five.directory_of(0).context("dir of 0")?.to_string();
        let again = voters.ask(&format!(
            "add 0 {dir0} {}",
            brokers[0].internal_address().context("address")?
        ))?;
        ensure!(
            again.contains("DuplicateVoterException"),
            "adding a voter twice: {again}"
        );

        // Kafka's own tool removes one; the Admin client the next.
        let dir4 = five.directory_of(4).context("dir of 4")?.to_string();
        // `--name=value`: a directory id may start with '-' (base64url),
        // which the tool's parser would take for an option.
        tool(
            QUORUM_TOOL,
            &[
                "--bootstrap-server",
                &b,
                "remove-controller",
                "--controller-id",
                "4",
                &format!("--controller-directory-id={dir4}"),
            ],
        )?;
        remove(&mut voters, 3)?;
        wait_voters(&mut voters, &[0, 1, 2])?;
        let gone = voters.ask(&format!("remove 4 {dir4}"))?;
        ensure!(
            gone.contains("VoterNotFoundException"),
            "removing a voter that is not one: {gone}"
        );
        for id in [2, 1] {
            remove(&mut voters, id)?;
        }
        let one = wait_voters(&mut voters, &[0])?;
        let last = voters.ask(&format!("remove 0 {}", one.directory_of(0).context("dir")?))?;
        ensure!(
            last.contains("InvalidRequestException"),
            "removing the last voter: {last}"
        );
        ensure!(
            one.observers.len() == 4,
            "removed voters keep observing: {one:?}"
        );

        // Kafka's tool describes the quorum as it describes its own.
        let status = tool(
            QUORUM_TOOL,
            &["--bootstrap-server", &b, "describe", "--status"],
        )?;
        println!("{status}");
        ensure!(
            status.contains("LeaderId:") && status.contains("CurrentVoters:"),
            "kafka-metadata-quorum describe --status: {status}"
        );
        let replication = tool(
            QUORUM_TOOL,
            &["--bootstrap-server", &b, "describe", "--replication"],
        )?;
        println!("{replication}");
        ensure!(
            replication
                .lines()
                .filter(|l| l.contains("Observer"))
                .count()
                == 4
                && replication.lines().any(|l| l.contains("Leader")),
            "kafka-metadata-quorum describe --replication: {replication}"
        );
        Ok(brokers)
    })
    .await??;

    let result = load.finish().await?;
    println!(
        "load: {} records acknowledged, {} failed {:?}",
        result.acked.len(),
        result.failed,
        result.first_errors
    );
    ensure!(
        result.acked.len() >= 1_000,
        "the load ran: {result:?}",
        result = result.acked.len()
    );
    let acked = result.acked;
    tokio::task::spawn_blocking(move || {
        check_acknowledged(&all, "voters", 6, &acked, Duration::from_secs(120))
    })
    .await??;
    drop(brokers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_on_a_wiped_volume_rejoins_as_a_new_voter() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut brokers = start_cluster_voting(dir.path(), 3, 3, &[])?;
    let all = bootstrap_of(&brokers);
    let a = all.clone();
    tokio::task::spawn_blocking(move || wait_registered(&a, 3)).await??;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut voters = RaftVoters::start(&all)?;
        let mut leaders: BTreeMap<i32, i32> = BTreeMap::new();
        let mut note = |q: &Quorum| -> Result<()> {
            if let Some(other) = leaders.insert(q.epoch, q.leader) {
                ensure!(
                    other == q.leader,
                    "two leaders in epoch {}: {other} and {}",
                    q.epoch,
                    q.leader
                );
            }
            Ok(())
        };
        let before = wait_voters(&mut voters, &[0, 1, 2])?;
        note(&before)?;
        // A follower's volume is lost: stopped, wiped, started again.
        let victim = (0..3).find(|i| *i != before.leader).context("a follower")?;
        let old_dir = before.directory_of(victim).context("dir")?.to_string();
        let b = &mut brokers[victim as usize];
        b.kill9()?;
        std::fs::remove_dir_all(b.data_dir()).context("wiping the volume")?;
        b.restart()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let after = loop {
            let q = describe(&mut voters)?;
            note(&q)?;
            let new_dir = q.voters.iter().find(|v| v.id == victim);
            if new_dir.is_some_and(|v| v.directory_id != old_dir)
                && q.voters
                    .iter()
                    .all(|v| v.log_end_offset >= q.high_watermark)
            {
                break q;
            }
            ensure!(
                Instant::now() < deadline,
                "broker {victim} is not a voter under a new directory id within 60 s: {q:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("voter {victim}: directory {old_dir} -> {after:?}");
        ensure!(after.voter_ids() == [0, 1, 2], "{after:?}");
        // Now it may vote again: with it, any two of three elect. The
        // leader is killed; the quorum elects another and stays whole.
        let leader = after.leader as usize;
        brokers[leader].kill9()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(q) = describe(&mut voters) {
                note(&q)?;
                if q.leader != after.leader && q.leader >= 0 {
                    println!("after the leader's kill: {q:?}");
                    break;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "no new leader within 60 s of the leader's kill"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        brokers[leader].restart()?;
        wait_voters(&mut voters, &[0, 1, 2])?;
        Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_cut_off_for_10_s_does_not_change_the_controller() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (brokers, links) = start_cluster_with_links(dir.path(), 3, &[]).await?;
    let all = bootstrap_of(&brokers);
    let a = all.clone();
    tokio::task::spawn_blocking(move || wait_registered(&a, 3)).await??;
    let mut voters = tokio::task::spawn_blocking(move || RaftVoters::start(&all)).await??;
    let (mut voters, before) = tokio::task::spawn_blocking(move || {
        let q = wait_voters(&mut voters, &[0, 1, 2]);
        q.map(|q| (voters, q))
    })
    .await??;
    let cut = (0..3).find(|i| *i != before.leader).context("a follower")? as usize;
    links.isolate(cut, 3);
    tokio::time::sleep(Duration::from_secs(10)).await;
    links.heal();
    // Long enough for the healed voter's answers to reach the leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = tokio::task::spawn_blocking(move || -> Result<Quorum> {
        let q = wait_voters(&mut voters, &[0, 1, 2])?;
        Ok(q)
    })
    .await??;
    println!("before the cut: {before:?}\nafter healing: {after:?}");
    if after.leader != before.leader || after.epoch != before.epoch {
        bail!(
            "voter {cut}, cut off for 10 s, changed the controller: leader {} epoch {} -> leader {} epoch {}",
            before.leader,
            before.epoch,
            after.leader,
            after.epoch
        );
    }
    drop(brokers);
    Ok(())
}
