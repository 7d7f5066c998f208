//! Produce throughput with librdkafka `BaseProducer`s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::procstat::{Sampler, Usage};
use crate::report::Row;
use crate::{Common, ProducerOpts, topic};

#[derive(Debug, Default)]
pub struct Counters {
    pub acked: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

struct Ctx(Arc<Counters>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                self.0
                    .bytes
                    .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = self.0.last_error.lock() {
                    *l = Some(e.to_string());
                }
            }
        }
    }
}

/// A value of `size` bytes that compresses like ordinary data, not zeros.
pub fn payload(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half random, half text-like, so codecs have work to do.
            if i % 2 == 0 {
                b'a' + (x % 26) as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub broker: Option<Usage>,
}

impl Outcome {
    pub fn into_row(self, name: &str) -> Row {
        let mut r = Row::throughput(name, self.records, self.bytes, self.seconds);
        r.errors = self.errors;
        r.broker = self.broker;
        r.note = self.last_error.unwrap_or_default();
        r
    }
}

pub fn producer_config(common: &Common, o: &ProducerOpts) -> Result<ClientConfig> {
    let mut c = common.client()?;
    c.set("acks", &o.acks)
        .set("compression.type", &o.compression)
        .set("batch.size", o.batch_size.to_string())
        .set("linger.ms", o.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000");
    Ok(c)
}

/// Produces `o.count` records (or for `o.duration` seconds) with
/// `o.producers` clients. With `create`, the topic is created first.
pub fn run(c: &Common, o: &ProducerOpts, create: bool) -> Result<Outcome> {
    if create {
        topic::recreate(c, &c.topic, c.partitions)?;
    }
    let counters = Arc::new(Counters::default());
    let value = Arc::new(payload(o.message_size));
    let deadline = c.deadline();
    let stop_at = o.duration.map(|d| Instant::now() + Duration::from_secs(d));
    let sampler = Sampler::start(c.broker_pid);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(Arc::clone(&counters), Arc::clone(&done), started);
    let per = o.count / o.producers.max(1) as u64;
    let mut threads = Vec::new();
    for n in 0..o.producers.max(1) {
        let count = if n == 0 {
            o.count - per * (o.producers.max(1) as u64 - 1)
        } else {
            per
        };
        let mut cfg = producer_config(c, o)?;
        let txn = o.transaction_records.filter(|n| *n > 0);
        if txn.is_some() {
            // A transactional producer is idempotent, hence acks=all.
            cfg.set(
                "transactional.id",
                format!(
                    "sluice-bench-{}-{n}-{}",
                    std::process::id(),
                    started.elapsed().as_nanos()
                ),
            )
            .set("enable.idempotence", "true")
            .set("acks", "all");
        }
        let counters = Arc::clone(&counters);
        let value = Arc::clone(&value);
        let topic = c.topic.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            let p: BaseProducer<Ctx> = cfg
                .create_with_context(Ctx(counters))
                .context("creating producer")?;
            let txn_timeout = Duration::from_secs(60);
            if txn.is_some() {
                p.init_transactions(txn_timeout)
                    .context("init_transactions")?;
                p.begin_transaction().context("begin_transaction")?;
            }
            let mut in_txn = 0u64;
            for _ in 0..count {
                let now = Instant::now();
                if now > deadline || stop_at.is_some_and(|s| now > s) {
                    break;
                }
                let mut rec = BaseRecord::<(), [u8]>::to(&topic).payload(&value[..]);
                loop {
                    match p.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            p.poll(Duration::from_millis(1));
                            if Instant::now() > deadline {
                                return Ok(());
                            }
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                p.poll(Duration::ZERO);
                if let Some(n) = txn {
                    in_txn += 1;
                    if in_txn == n {
                        p.commit_transaction(txn_timeout)
                            .context("commit_transaction")?;
                        p.begin_transaction().context("begin_transaction")?;
                        in_txn = 0;
                    }
                }
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(120));
            if txn.is_some() {
                p.commit_transaction(left).context("commit_transaction")?;
            } else {
                p.flush(left).context("flushing producer")?;
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let broker = sampler.map(Sampler::finish);
    let last_error = counters.last_error.lock().ok().and_then(|l| l.clone());
    Ok(Outcome {
        records: counters.acked.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        seconds,
        errors: counters.errors.load(Ordering::Relaxed),
        last_error,
        broker,
    })
}

/// Prints progress to stderr once a second on runs longer than that.
pub fn spawn_progress(
    counters: Arc<Counters>,
    done: Arc<AtomicBool>,
    started: Instant,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = 0u64;
        while !done.load(Ordering::Relaxed) {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(100));
                if done.load(Ordering::Relaxed) {
                    return;
                }
            }
            let b = counters.bytes.load(Ordering::Relaxed);
            eprintln!(
                "  {:>6.1}s  {:>10} records  {:>8.1} MB/s",
                started.elapsed().as_secs_f64(),
                counters.acked.load(Ordering::Relaxed),
                (b - last) as f64 / 1e6
            );
            last = b;
        }
    })
}
