//! The planner and its executor against five real broker processes: the
//! data side of scaling 5 → 3 → 5 → 3 (what the operator does around the
//! StatefulSet; 3 → 5 → 3 under its replication throttle, bytes and time
//! printed), while librdkafka writes with acks=all. Afterwards every
//! acknowledged record is read back, once, and the replicas sit where the
//! plan put them. A target the remaining brokers cannot hold is refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::producer::FutureRecord;
use sluice_client::AdminClient;
use sluice_e2e::rd::{AckedLoad, check_acknowledged, producer};
use sluice_e2e::start_cluster;
use sluice_operator::brokers::Brokers;
use sluice_operator::plan::{Desired, Step};
use sluice_operator::rebalance::{self, RfChange, describe, observe};

const TOPIC: &str = "scaled";
const PARTITIONS: i32 = 6;
const TIMEOUT: Duration = Duration::from_secs(10);
/// The replication throttle of the measured scale steps (bytes/s per
/// broker): low enough to hold the copying back on loopback.
const THROTTLE: u64 = 8 << 20;
/// Records written before the scale steps, so that they have data to move.
const BULK: u64 = 30_000;

/// Steps until the planner says Idle; returns (bytes moved, time taken).
async fn converge(bootstrap: &str, brokers: &[i32]) -> Result<(u64, Duration)> {
    let desired = Desired {
        brokers: brokers.to_vec(),
        ..Desired::default()
    };
    let started = Instant::now();
    let mut bytes = 0;
    let mut refusals = Vec::new();
    while started.elapsed() < Duration::from_secs(180) {
        // As the reconciler does, a step the brokers refuse (a broker
        // fenced for a moment between plan and move) is planned again.
        let step = match rebalance::step(&Brokers::plaintext(bootstrap), &desired, 4, TIMEOUT).await
        {
            Err(e @ rebalance::StepError::Refused { .. }) if refusals.len() < 5 => {
                println!("  refused, planned again: {e}");
                refusals.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            other => other.with_context(|| format!("earlier refusals: {refusals:?}"))?,
        };
        println!(
            "  {:>6.1}s {}",
            started.elapsed().as_secs_f64(),
            describe(&step)
        );
        match step {
            Step::Idle => return Ok((bytes, started.elapsed())),
            Step::Refused(r) => bail!("refused: {r}"),
            Step::Move(moves) => bytes += moves.iter().map(|m| m.bytes).sum::<u64>(),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("no balance toward {brokers:?} within 180 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_up_down_moves_data_without_losing_a_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let brokers = start_cluster(dir.path(), 5, &[])?;
    let bootstrap = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let first = brokers[0].bootstrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = match AdminClient::connect(&first, TIMEOUT).await {
            Ok(mut a) => a
                .describe_cluster()
                .await
                .map(|c| c.brokers.len())
                .unwrap_or(0),
            Err(_) => 0,
        };
        if n == 5 {
            break;
        }
        ensure!(Instant::now() < deadline, "five brokers did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut admin = AdminClient::connect(&first, TIMEOUT).await?;
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin.create_topic(TOPIC, PARTITIONS, 3, &configs).await?;

    // Data to move: BULK records of 1 KB, acknowledged (and checked at
    // the end) like the load's, numbered from 1,000,000.
    let mut acked: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    {
        let p = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "20")])?;
        let value = vec![b'b'; 1000];
        let mut pending = Vec::with_capacity(BULK as usize);
        for n in 1_000_000..1_000_000 + BULK {
            let mut v = n.to_string().into_bytes();
            v.push(b':');
            v.extend_from_slice(&value);
            let key = format!("k{}", n % 64);
            let f = p
                .send_result(FutureRecord::to(TOPIC).key(&key).payload(&v))
                .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?;
            pending.push((n, f));
        }
        for (n, f) in pending {
            let d = f
                .await
                .context("dropped")?
                .map_err(|(e, _)| anyhow::anyhow!("bulk record {n}: {e}"))?;
            ensure!(
                acked.insert((d.partition, d.offset), n).is_none(),
                "offset reused"
            );
        }
    }

    // The load: idempotent, acks=all, every acknowledgement recorded.
    let load = AckedLoad::start(&bootstrap, TOPIC, 0)?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The first drain to three brokers is the setup; 3 -> 5 -> 3 then runs
    // under the operator's replication throttle, as a scale does.
    let mut report = Vec::new();
    for (label, target, throttle) in [
        ("5 -> 3", vec![0, 1, 2], None),
        ("3 -> 5", vec![0, 1, 2, 3, 4], Some(THROTTLE)),
        ("5 -> 3", vec![0, 1, 2], Some(THROTTLE)),
    ] {
        println!("scale {label}");
        rebalance::set_throttle(&Brokers::plaintext(bootstrap.as_str()), throttle, TIMEOUT).await?;
        let (bytes, took) = converge(&bootstrap, &target).await?;
        rebalance::set_throttle(&Brokers::plaintext(bootstrap.as_str()), None, TIMEOUT).await?;
        report.push((label, bytes, took, throttle));
        let obs = observe(&Brokers::plaintext(first.as_str()), TIMEOUT).await?;
        let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
        for p in obs.partitions.iter().filter(|p| p.topic == TOPIC) {
            ensure!(p.replicas.len() == 3, "{p:?}");
            for r in &p.replicas {
                ensure!(target.contains(r), "{label}: {p:?} still on broker {r}");
                *per_broker.entry(*r).or_default() += 1;
            }
            ensure!(
                p.leader == p.replicas[0],
                "{label}: not led by its preferred replica: {p:?}"
            );
        }
        let (min, max) = (
            per_broker.values().min().copied().unwrap_or(0),
            per_broker.values().max().copied().unwrap_or(0),
        );
        ensure!(
            per_broker.len() == target.len() && max <= min + 1,
            "{label}: uneven {per_broker:?}"
        );
    }

    // The replication factor through reassignment: 3 -> 2 -> 3 on the
    // three remaining brokers, under the same load; 4 cannot fit.
    for rf in [2usize, 3] {
        let started = Instant::now();
        loop {
            match rebalance::change_replication_factor(
                &Brokers::plaintext(bootstrap.as_str()),
                TOPIC,
                rf,
                Some(vec![0, 1, 2]),
                TIMEOUT,
            )
            .await?
            {
                RfChange::Done => break,
                RfChange::Refused(r) => bail!("RF {rf} refused: {r}"),
                RfChange::Moving(_) | RfChange::Waiting(_) => {}
            }
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "RF {rf} not reached"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let obs = observe(&Brokers::plaintext(first.as_str()), TIMEOUT).await?;
        for p in obs.partitions.iter().filter(|p| p.topic == TOPIC) {
            ensure!(
                p.replicas.len() == rf && p.isr.len() == rf,
                "RF {rf}: {p:?}"
            );
            ensure!(p.replicas.iter().all(|r| *r < 3), "{p:?}");
        }
        println!(
            "replication factor {rf}: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // Three brokers cannot hold four replicas.
    match rebalance::change_replication_factor(
        &Brokers::plaintext(bootstrap.as_str()),
        TOPIC,
        4,
        Some(vec![0, 1, 2]),
        TIMEOUT,
    )
    .await?
    {
        RfChange::Refused(r) => ensure!(r.contains(TOPIC), "{r}"),
        other => bail!("RF 4 on three brokers: {other:?}"),
    }

    // Two brokers cannot hold a replication factor of 3: refused, naming
    // the topic, and nothing moves.
    let two = Desired {
        brokers: vec![0, 1],
        ..Desired::default()
    };
    match rebalance::step(&Brokers::plaintext(bootstrap.as_str()), &two, 4, TIMEOUT).await? {
        Step::Refused(r) => ensure!(r.contains(TOPIC), "{r}"),
        other => bail!("expected a refusal, got {other:?}"),
    }

    let result = load.finish().await?;
    ensure!(
        result.failed == 0,
        "{} records not acknowledged: {:?}",
        result.failed,
        result.first_errors
    );
    for (k, v) in result.acked {
        ensure!(
            acked.insert(k, v).is_none(),
            "offset {k:?} acknowledged twice"
        );
    }
    let n = acked.len();
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        check_acknowledged(&b, TOPIC, PARTITIONS, &acked, Duration::from_secs(120))
    })
    .await??;
    for (label, bytes, took, throttle) in report {
        let throttle = throttle.map_or("none".to_string(), |t| format!("{} MiB/s", t >> 20));
        println!(
            "scale {label}: {:.1} MB moved in {:.1} s, throttle {throttle} ({n} records acknowledged in all)",
            bytes as f64 / 1e6,
            took.as_secs_f64()
        );
    }
    Ok(())
}
