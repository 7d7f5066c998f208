//! Consume throughput from the beginning of a topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::procstat::Sampler;
use crate::produce::{self, Counters, spawn_progress};
use crate::report::Row;
use crate::{Common, ConsumeArgs, topic};

pub fn consumer(c: &Common, group: &str) -> Result<BaseConsumer> {
    c.client()?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .context("creating consumer")
}

/// High watermark of every partition.
pub fn high_watermarks(c: &Common, partitions: i32) -> Result<Vec<i64>> {
    let probe = consumer(c, "sluice-bench-probe")?;
    (0..partitions)
        .map(|p| {
            probe
                .fetch_watermarks(&c.topic, p, Duration::from_secs(10))
                .map(|(_, h)| h)
                .with_context(|| format!("watermarks of {}:{p}", c.topic))
        })
        .collect()
}

/// Reads partitions `0..partitions` of the topic from the beginning up to
/// their current ends with `consumers` clients.
pub fn read_all(c: &Common, partitions: i32, consumers: usize) -> Result<Row> {
    let ends = high_watermarks(c, partitions)?;
    let total: i64 = ends.iter().sum();
    if total == 0 {
        bail!("topic {} is empty", c.topic);
    }
    let counters = Arc::new(Counters::default());
    let deadline = c.deadline();
    let sampler = Sampler::start(c.broker_pid);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(Arc::clone(&counters), Arc::clone(&done), started);
    let n = consumers.max(1);
    let mut threads = Vec::new();
    for k in 0..n {
        let mine: Vec<(i32, i64)> = (0..partitions)
            .filter(|p| *p as usize % n == k)
            .map(|p| (p, ends[p as usize]))
            .filter(|(_, end)| *end > 0)
            .collect();
        let (c2, counters) = (c.clone(), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || -> Result<()> {
            if mine.is_empty() {
                return Ok(());
            }
            let cons = consumer(&c2, "sluice-bench")?;
            let mut tpl = TopicPartitionList::new();
            for (p, _) in &mine {
                tpl.add_partition_offset(&c2.topic, *p, Offset::Beginning)?;
            }
            cons.assign(&tpl)?;
            let mut remaining: std::collections::HashMap<i32, i64> = mine.iter().copied().collect();
            while !remaining.is_empty() {
                if Instant::now() > deadline {
                    bail!("deadline reached with partitions unread: {remaining:?}");
                }
                match cons.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => bail!("consume error: {e}"),
                    Some(Ok(m)) => {
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        counters
                            .bytes
                            .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
                        if let Some(end) = remaining.get(&m.partition()) {
                            if m.offset() + 1 >= *end {
                                remaining.remove(&m.partition());
                            }
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let mut row = Row::throughput(
        "consume",
        counters.acked.load(Ordering::Relaxed),
        counters.bytes.load(Ordering::Relaxed),
        seconds,
    );
    row.broker = sampler.map(Sampler::finish);
    Ok(row)
}

pub fn run(a: &ConsumeArgs) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if !a.no_fill {
        eprintln!(
            "filling {} with {} records",
            a.common.topic, a.producer.count
        );
        rows.push(produce::run(&a.common, &a.producer, true)?.into_row("produce (fill)"));
    }
    rows.push(read_all(&a.common, a.common.partitions, a.consumers)?);
    if !a.no_fill {
        topic::delete(&a.common, &a.common.topic)?;
    }
    Ok(rows)
}
