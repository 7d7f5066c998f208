//! The operator's voter planner and executor against five real broker
//! processes (one voter at the start): the voters follow the broker count
//! of a `KafkaCluster` scaled 1 → 3 → 5 (`spec.quorum.voters: 5`) → 3 → 1,
//! one AddRaftVoter / RemoveRaftVoter at a time, while librdkafka writes
//! with acks=all; every acknowledged record is read back afterwards.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice_e2e::rd::{AckedLoad, check_acknowledged};
use sluice_e2e::{BrokerProcess, start_cluster_voting};
use sluice_operator::brokers::Brokers;
use sluice_operator::plan::voters::{self, VoterStep};
use sluice_operator::quorum;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Steps the voters toward `count` until the planner is idle; the steps
/// taken.
async fn converge(
    bootstrap: &str,
    brokers: &[BrokerProcess],
    count: i32,
) -> Result<Vec<VoterStep>> {
    let want = voters::wanted(count);
    let started = Instant::now();
    let mut steps = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        let q = quorum::observe(&Brokers::plaintext(bootstrap), TIMEOUT).await?;
        let step = voters::next(&want, &quorum::view(&q));
        match &step {
            VoterStep::Idle => return Ok(steps),
            VoterStep::Wait(why) => println!("  waiting: {why}"),
            VoterStep::Add(_) | VoterStep::Remove(_) => {
                println!("  {}", quorum::describe(&step));
                let address = |i: i32| brokers[i as usize].internal_address().unwrap_or_default();
                match quorum::execute(&Brokers::plaintext(bootstrap), &q, &step, address, TIMEOUT)
                    .await
                {
                    Ok(()) => steps.push(step),
                    // Retriable (another change still committing): planned
                    // again on the next pass, as the reconciler does.
                    Err(e) => println!("  refused, planned again: {e}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("the voters did not converge to {want:?} within 120 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_follow_the_broker_count() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let brokers = start_cluster_voting(dir.path(), 5, 1, &[])?;
    let bootstrap = brokers
        .iter()
        .map(BrokerProcess::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    // Every broker has joined the quorum (an observer) before the load.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = quorum::observe(&Brokers::plaintext(bootstrap.as_str()), TIMEOUT).await;
        if q.as_ref()
            .is_ok_and(|q| q.voters.len() + q.observers.len() == 5)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "five quorum members within 60 s: {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut admin = sluice_client::AdminClient::connect(&brokers[0].bootstrap(), TIMEOUT).await?;
    admin
        .create_topic("voting", 6, 3, &Default::default())
        .await?;
    let load = AckedLoad::start(&bootstrap, "voting", 0)?;

    // (replicas, spec.quorum.voters) as a KafkaCluster is scaled.
    for (replicas, spec) in [(1, None), (3, None), (5, Some(5)), (3, None), (1, None)] {
        let count = voters::voter_count(spec, replicas);
        println!("{replicas} brokers, {count} voters:");
        let steps = converge(&bootstrap, &brokers, count).await?;
        let q = quorum::observe(&Brokers::plaintext(bootstrap.as_str()), TIMEOUT).await?;
        let ids: BTreeSet<i32> = q.voters.iter().map(|v| v.id).collect();
        ensure!(
            ids == voters::wanted(count),
            "voters {ids:?} after {steps:?}"
        );
        ensure!(
            q.voters.len() + q.observers.len() == 5,
            "removed voters keep observing: {q:?}"
        );
        let status = quorum::status(&q, None);
        ensure!(
            status.controller.is_some_and(|c| ids.contains(&c)),
            "a voter leads: {status:?}"
        );
        println!("  status.quorum: {status:?}");
    }

    let result = load.finish().await?;
    println!(
        "load: {} acknowledged, {} failed {:?}",
        result.acked.len(),
        result.failed,
        result.first_errors
    );
    ensure!(!result.acked.is_empty(), "the load ran");
    let acked = result.acked;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        check_acknowledged(&b, "voting", 6, &acked, Duration::from_secs(120))
    })
    .await?
    .context("reading back")?;
    drop(brokers);
    Ok(())
}
