//! Helpers around the `rdkafka` crate (librdkafka), the real client most
//! e2e tests drive the broker with.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// One consumed record, as a user would compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Result<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().context("creating producer")
}

/// Reads `expected` records from partitions `0..partitions` of `topic`
/// from the beginning, or fails after `timeout`.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-e2e-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        if Instant::now() > deadline {
            bail!(
                "consumed {} of {expected} records from {topic} before the timeout",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            // A broker that is down (a cluster test killed it) is
            // reported and retried by librdkafka; not a consume failure.
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => bail!("consume error: {e}"),
            Some(Ok(m)) => out.push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
        }
    }
    // Anything beyond `expected` is a duplicate or a stray record.
    let extra_deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bail!(
                "unexpected extra record at {}:{}",
                m.partition(),
                m.offset()
            );
        }
    }
    Ok(out)
}

/// Produces `n` records `key-i` / `value-i` to one partition, returning the
/// offsets the broker acknowledged.
pub async fn produce_n(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    n: usize,
) -> Result<Vec<i64>> {
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let rec = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&value);
        futures.push(
            p.send_result(rec)
                .map_err(|(e, _)| anyhow::anyhow!("enqueue failed: {e}"))?,
        );
    }
    let mut offsets = Vec::with_capacity(n);
    for f in futures {
        let d = f
            .await
            .context("delivery future dropped")?
            .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
        offsets.push(d.offset);
    }
    Ok(offsets)
}

/// A background producer for tests that change the cluster underneath it:
/// idempotent, `acks=all`, numbered 1 KB records (`N:xxx…`) in rounds of a
/// hundred, bounded in count and time. It remembers where each record was
/// acknowledged and counts the records that failed.
pub struct AckedLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<LoadResult>>,
}

/// What an [`AckedLoad`] saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// `(partition, offset) -> record number`.
    pub acked: std::collections::BTreeMap<(i32, i64), u64>,
    /// Records whose delivery failed, with the first errors.
    pub failed: usize,
    pub first_errors: Vec<String>,
}

impl AckedLoad {
    /// Starts writing to `topic`, numbering records from `first`.
    pub fn start(bootstrap: &str, topic: &str, first: u64) -> Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let p = producer(
            bootstrap,
            &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "120000"),
            ],
        )?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (flag, topic) = (stop.clone(), topic.to_string());
        let task = tokio::spawn(async move {
            let value = vec![b'x'; 1000];
            let mut out = LoadResult::default();
            let started = Instant::now();
            let mut n = first;
            while !flag.load(Ordering::Relaxed)
                && n < first + 100_000
                && started.elapsed() < Duration::from_secs(600)
            {
                let mut round = Vec::with_capacity(100);
                for _ in 0..100 {
                    let mut v = n.to_string().into_bytes();
                    v.push(b':');
                    v.extend_from_slice(&value);
                    let key = format!("k{}", n % 64);
                    let f = p
                        .send_result(FutureRecord::to(&topic).key(&key).payload(&v))
                        .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?;
                    round.push((n, f));
                    n += 1;
                }
                for (i, f) in round {
                    match f.await.context("delivery future dropped")? {
                        Ok(d) => {
                            if let Some(earlier) = out.acked.insert((d.partition, d.offset), i) {
                                bail!(
                                    "records {earlier} and {i} both acknowledged at {}:{}",
                                    d.partition,
                                    d.offset
                                );
                            }
                        }
                        Err((e, _)) => {
                            out.failed += 1;
                            if out.first_errors.len() < 3 {
                                out.first_errors.push(format!("record {i}: {e}"));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(out)
        });
        Ok(AckedLoad { stop, task })
    }

    /// Stops after the round in flight; what was acknowledged.
    pub async fn finish(self) -> Result<LoadResult> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.context("load task")?
    }
}

/// Reads `topic` back and checks that every acknowledged record is there,
/// at its offset, and no record appears twice.
pub fn check_acknowledged(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    acked: &std::collections::BTreeMap<(i32, i64), u64>,
    timeout: Duration,
) -> Result<()> {
    let got = consume(bootstrap, topic, partitions, acked.len(), timeout)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut by_offset = std::collections::BTreeMap::new();
    for c in &got {
        let v = c.value.as_deref().unwrap_or_default();
        let end = v.iter().position(|b| *b == b':').unwrap_or(v.len());
        let i: u64 = std::str::from_utf8(&v[..end])?.parse()?;
        if !seen.insert(i) {
            bail!("record {i} read twice");
        }
        by_offset.insert((c.partition, c.offset), i);
    }
    for (k, v) in acked {
        if by_offset.get(k) != Some(v) {
            bail!("acknowledged record {v} at {k:?} is missing");
        }
    }
    Ok(())
}
