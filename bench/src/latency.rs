//! End-to-end latency: one producer at a fixed rate stamps each value with
//! its send time; one consumer, tailing the topic, records the difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::procstat::Sampler;
use crate::report::Row;
use crate::{LatencyArgs, consume, topic};

const WARMUP: Duration = Duration::from_secs(2);

pub fn run(a: &LatencyArgs) -> Result<Row> {
    let c = &a.common;
    if a.message_size < 8 {
        bail!("--message-size must be at least 8 for the timestamp");
    }
    topic::recreate(c, &c.topic, c.partitions)?;
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let cons = consume::consumer(c, "sluice-bench-latency")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..c.partitions {
        tpl.add_partition_offset(&c.topic, p, Offset::End)?;
    }
    cons.assign(&tpl)?;
    let measured_from = WARMUP.as_nanos() as u64;
    let reader = {
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        std::thread::spawn(move || -> Result<Histogram<u64>> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = cons.poll(Duration::from_millis(50)) {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let Some(v) = m.payload() else { continue };
                    let Ok(stamp) = <[u8; 8]>::try_from(&v[..8]) else {
                        continue;
                    };
                    let sent = u64::from_be_bytes(stamp);
                    if sent >= measured_from {
                        h.saturating_record(now.saturating_sub(sent) / 1000);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(h)
        })
    };
    // Give the consumer time to resolve its start offsets.
    std::thread::sleep(Duration::from_millis(1500));

    let p: BaseProducer = c
        .client()?
        .set("acks", &a.acks)
        .set("linger.ms", a.linger_ms.to_string())
        .set("enable.idempotence", "false")
        .create()
        .context("creating producer")?;
    let mut value = crate::produce::payload(a.message_size);
    let total = a.rate * (a.duration + WARMUP.as_secs());
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let sampler = Sampler::start(c.broker_pid);
    let start = Instant::now();
    let deadline = c.deadline();
    let mut sent_measured = 0u64;
    let mut errors = 0u64;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        // Sleep (never spin) until the record is due: a spinning sender
        // would take a core from the broker on a small machine.
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if Instant::now() > deadline {
            break;
        }
        let stamp = epoch.elapsed().as_nanos() as u64;
        value[..8].copy_from_slice(&stamp.to_be_bytes());
        if p.send(BaseRecord::<(), [u8]>::to(&c.topic).payload(&value[..]))
            .is_err()
        {
            errors += 1;
        } else if stamp >= measured_from {
            sent_measured += 1;
        }
        p.poll(Duration::ZERO);
    }
    let _ = p.flush(Duration::from_secs(30));
    let wall = start.elapsed().as_secs_f64();
    // Wait (bounded) for the consumer to see everything sent.
    let wait_until = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < sent_measured && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let h = reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let got = received.load(Ordering::Relaxed);
    let ms = |q: f64| Some(h.value_at_quantile(q) as f64 / 1000.0);
    let mut row = Row {
        name: format!(
            "latency @{}/s acks={} linger.ms={}",
            a.rate, a.acks, a.linger_ms
        ),
        records: got,
        bytes: got * a.message_size as u64,
        seconds: wall,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: Some(h.max() as f64 / 1000.0),
        errors: errors + sent_measured.saturating_sub(got),
        broker: sampler.map(Sampler::finish),
        ..Row::default()
    };
    row.records_per_s = Some(got as f64 / (wall - WARMUP.as_secs_f64()).max(1e-9));
    row.note = format!("{sent_measured} sent after warm-up, {got} received");
    topic::delete(c, &c.topic)?;
    Ok(row)
}
