//! The fault harness: a three-broker cluster under an idempotent `acks=all`
//! load while random faults hit random brokers, round after round:
//! `kill -9` and restart, SIGSTOP for up to a session and a half then
//! SIGCONT, SIGTERM (controlled shutdown) and restart, a broker cut off
//! from its peers (a black hole in the link proxies; clients still reach
//! it) for up to three sessions, one link between two brokers cut for as
//! long. Afterwards every
//! acknowledged record must be read back exactly once, at its acknowledged
//! offset, in send order per partition.
//!
//! A probe producer writes one record at a time to a one-partition topic
//! whose leader the `kill -9` rounds kill: the time from the kill to the
//! acknowledgement of the probe's first write sent after it is the failover
//! time, printed per kill and as p50/max.
//!
//! `SLUICE_FAULT_ROUNDS` (default 20), `SLUICE_FAULT_SEED` (default: the
//! clock; printed) replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use sluice_e2e::rd::{consume, producer};
use sluice_e2e::{BrokerProcess, start_cluster_with_links};
use tokio::sync::Mutex;

const TOPIC: &str = "faults";
const PROBE: &str = "probe";
const PARTITIONS: i32 = 6;
/// Upper bound of the load: records and time.
const MAX_RECORDS: usize = 200_000;

fn signal(b: &BrokerProcess, sig: &str) -> Result<()> {
    let pid = b.pid().context("broker not running")?;
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill {sig} {pid}");
    Ok(())
}

/// How many partitions `broker_id` leads, as the broker at `bootstrap`
/// (one broker, asked directly) sees it.
fn leaderships_seen_by(bootstrap: &str, broker_id: i32) -> Result<usize> {
    let req = kafka_protocol::messages::MetadataRequest::default().with_topics(None);
    let resp = sluice_e2e::wire::metadata(bootstrap, 12, &req)?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader_id.0 == broker_id)
        .count())
}

fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Option<i32> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let m = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let t = m.topics().iter().find(|t| t.name() == topic)?;
    let p = t.partitions().iter().find(|p| p.id() == partition)?;
    (p.leader() >= 0).then_some(p.leader())
}

/// Waits until every broker is back in the metadata with every ISR full.
fn wait_healthy(bootstrap: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        if let Ok(m) = c.fetch_metadata(None, Duration::from_secs(5)) {
            let full = m
                .topics()
                .iter()
                .filter(|t| t.name() == TOPIC || t.name() == PROBE)
                .all(|t| {
                    t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.isr().len() == 3)
                });
            if m.brokers().len() == 3 && full {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the cluster did not heal within 60 s")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_random_faults() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let result = run_harness(dir.path()).await;
    // SLUICE_FAULT_KEEP=1 keeps them after a passing run too.
    if result.is_err() || std::env::var_os("SLUICE_FAULT_KEEP").is_some() {
        // Keep the brokers' data and logs for the post-mortem.
        let kept = dir.keep();
        println!(
            "fault harness: data and broker logs kept in {}",
            kept.display()
        );
    }
    result
}

async fn run_harness(dir: &std::path::Path) -> Result<()> {
    let rounds: usize = std::env::var("SLUICE_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SLUICE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("fault harness: {rounds} rounds, replay with SLUICE_FAULT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let (brokers, links) = start_cluster_with_links(dir, 3, &[]).await?;
    let all = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    // All three registered before the topics are placed.
    let a = all.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &a).create()?;
            if c.fetch_metadata(None, Duration::from_secs(5))
                .is_ok_and(|m| m.brokers().len() == 3)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "three brokers did not register within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await??;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .create()?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let topics = [
        NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
            .set("min.insync.replicas", "2"),
        NewTopic::new(PROBE, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2"),
    ];
    for r in admin.create_topics(&topics, &opts).await? {
        ensure!(r.is_ok(), "{r:?}");
    }
    let a = all.clone();
    tokio::task::spawn_blocking(move || wait_healthy(&a)).await??;
    let brokers = Arc::new(Mutex::new(brokers));

    // The load: values 0, 1, 2, ... keyed over the partitions; every
    // acknowledgement is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<BTreeMap<(i32, i64), u64>>> = Default::default();
    let load = {
        let (stop, acked, all) = (stop.clone(), acked.clone(), all.clone());
        tokio::spawn(async move {
            let prod = producer(
                &all,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("message.timeout.ms", "120000"),
                ],
            )?;
            let started = Instant::now();
            let mut pending = Vec::new();
            let mut failed = 0usize;
            for i in 0..MAX_RECORDS as u64 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(600) {
                    break;
                }
                let v = i.to_string();
                let key = format!("k{}", i % 64);
                pending.push((
                    i,
                    prod.send_result(FutureRecord::to(TOPIC).key(&key).payload(&v))
                        .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
                ));
                if pending.len() >= 200 {
                    for (v, f) in pending.drain(..) {
                        match f.await.context("dropped")? {
                            Ok(d) => {
                                acked
                                    .lock()
                                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                                    .insert((d.partition, d.offset), v);
                            }
                            Err(_) => failed += 1,
                        }
                    }
                }
            }
            for (v, f) in pending {
                match f.await.context("dropped")? {
                    Ok(d) => {
                        acked
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .insert((d.partition, d.offset), v);
                    }
                    Err(_) => failed += 1,
                }
            }
            Ok::<usize, anyhow::Error>(failed)
        })
    };

    // The probe: one acks=all write at a time, with the times each
    // acknowledged write was sent and acknowledged.
    let probe_acks: Arc<std::sync::Mutex<Vec<(Instant, Instant)>>> = Default::default();
    let probe = {
        let (stop, acks, all) = (stop.clone(), probe_acks.clone(), all.clone());
        tokio::spawn(async move {
            let prod = producer(
                &all,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "0"),
                ],
            )?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = i.to_string();
                let sent = Instant::now();
                let r = prod
                    .send(
                        FutureRecord::to(PROBE).partition(0).key(&v).payload(&v),
                        Duration::from_secs(60),
                    )
                    .await;
                if r.is_ok() {
                    acks.lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((sent, Instant::now()));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<(), anyhow::Error>(())
        })
    };

    let mut failovers = Vec::new();
    let mut kinds = BTreeMap::new();
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..600))).await;
        let kind = rng.random_range(0..5u8);
        let mut bs = brokers.lock().await;
        match kind {
            0 => {
                // kill -9 the probe's leader, measure, restart.
                let a = all.clone();
                let leader = tokio::task::spawn_blocking(move || leader_of(&a, PROBE, 0)).await?;
                let victim = leader.unwrap_or(0).clamp(0, 2) as usize;
                let killed = Instant::now();
                tokio::task::block_in_place(|| bs[victim].kill9())?;
                let deadline = killed + Duration::from_secs(30);
                let mut found = None;
                while Instant::now() < deadline {
                    // A write sent after the kill: one acknowledged just
                    // after it may have been answered by the old leader.
                    let after = probe_acks
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .iter()
                        .find(|(sent, _)| *sent > killed)
                        .map(|(_, acked)| *acked);
                    if let Some(t) = after {
                        found = Some(t - killed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let found = found.context("no acknowledged probe write within 30 s of the kill")?;
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
                    - killed.elapsed().as_secs_f64();
                println!(
                    "round {round}: killed broker {victim} at unix {at:.3}, the probe's next write acknowledged after {found:?}"
                );
                failovers.push(found);
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
                tokio::task::block_in_place(|| bs[victim].restart())?;
                *kinds.entry("kill -9 + restart").or_insert(0) += 1;
            }
            1 => {
                let victim = rng.random_range(0..3usize);
                signal(&bs[victim], "-STOP")?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..900))).await;
                signal(&bs[victim], "-CONT")?;
                *kinds.entry("SIGSTOP / SIGCONT").or_insert(0) += 1;
            }
            2 => {
                let victim = rng.random_range(0..3usize);
                let code = tokio::task::block_in_place(|| bs[victim].terminate())?;
                ensure!(
                    code == Some(0),
                    "round {round}: controlled shutdown exit {code:?}"
                );
                tokio::task::block_in_place(|| bs[victim].restart())?;
                *kinds.entry("SIGTERM + restart").or_insert(0) += 1;
            }
            3 => {
                // Cut off for longer than a session, the broker must lose
                // every leadership, as its peers see it (the controller
                // may have to be elected first if it was the victim).
                let victim = rng.random_range(0..3usize);
                let peer = bs[(victim + 1) % 3].bootstrap();
                links.isolate(victim, 3);
                let cut_at = Instant::now();
                tokio::time::sleep(Duration::from_millis(rng.random_range(1200..2500))).await;
                let fenced = tokio::task::spawn_blocking(move || {
                    while cut_at.elapsed() < Duration::from_secs(10) {
                        if leaderships_seen_by(&peer, victim as i32).is_ok_and(|n| n == 0) {
                            return true;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    false
                })
                .await?;
                links.heal();
                ensure!(
                    fenced,
                    "round {round} (seed {seed}): broker {victim}, cut off from its peers, still leads after 10 s"
                );
                *kinds.entry("broker cut off from its peers").or_insert(0) += 1;
            }
            _ => {
                let a = rng.random_range(0..3usize);
                let b = (a + rng.random_range(1..3usize)) % 3;
                links.cut(a, b);
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..3000))).await;
                links.heal();
                *kinds.entry("one link cut").or_insert(0) += 1;
            }
        }
        drop(bs);
        let a = all.clone();
        tokio::task::spawn_blocking(move || wait_healthy(&a))
            .await?
            .with_context(|| format!("round {round} (seed {seed})"))?;
    }
    stop.store(true, Ordering::Relaxed);
    let failed = load.await??;
    probe.await??;

    let acked = Arc::try_unwrap(acked)
        .map_err(|_| anyhow::anyhow!("still shared"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    ensure!(!acked.is_empty(), "nothing was acknowledged");
    let n = acked.len();
    let a = all.clone();
    let got = tokio::task::spawn_blocking(move || {
        consume(&a, TOPIC, PARTITIONS, n, Duration::from_secs(120))
    })
    .await?
    .with_context(|| format!("seed {seed}"))?;
    let mut seen = BTreeSet::new();
    let mut by_offset = BTreeMap::new();
    let mut last: BTreeMap<i32, u64> = BTreeMap::new();
    for c in &got {
        let v: u64 = String::from_utf8_lossy(c.value.as_deref().unwrap_or_default())
            .parse()
            .context("value")?;
        ensure!(seen.insert(v), "seed {seed}: value {v} in the log twice");
        by_offset.insert((c.partition, c.offset), v);
        // Values only grow within a partition: send order is kept.
        if let Some(prev) = last.insert(c.partition, v) {
            ensure!(
                v > prev,
                "seed {seed}: partition {} out of order: {prev} then {v}",
                c.partition
            );
        }
    }
    for (k, v) in &acked {
        ensure!(
            by_offset.get(k) == Some(v),
            "seed {seed}: acknowledged value {v} at {k:?} is not there (found {:?})",
            by_offset.get(k)
        );
    }
    failovers.sort();
    println!(
        "{rounds} rounds {kinds:?}: {} records acknowledged ({failed} not), all read back once, in order",
        acked.len()
    );
    if !failovers.is_empty() {
        println!(
            "failover, kill -9 of the probe's leader to its next acks=all write: p50 {:?}, max {:?}, over {} kills",
            percentile(&failovers, 0.5),
            failovers.last().copied().unwrap_or_default(),
            failovers.len()
        );
    }
    Ok(())
}
