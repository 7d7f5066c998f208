//! Broker CPU while many consumers long-poll partitions that get no data.

use std::time::Duration;

use anyhow::{Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::procstat::Sampler;
use crate::report::Row;
use crate::{IdleArgs, consume, topic};

pub fn run(a: &IdleArgs) -> Result<Row> {
    let c = &a.common;
    if c.broker_pid.is_none() {
        bail!("idle needs --broker-pid: it measures the broker's CPU time");
    }
    topic::recreate(c, &c.topic, c.partitions)?;
    let n = a.consumers.max(1);
    let mut consumers: Vec<BaseConsumer> = Vec::with_capacity(n);
    for k in 0..n {
        let cons = consume::consumer(c, "sluice-bench-idle")?;
        let mut tpl = TopicPartitionList::new();
        for p in (0..c.partitions).filter(|p| *p as usize % n == k) {
            tpl.add_partition_offset(&c.topic, p, Offset::End)?;
        }
        cons.assign(&tpl)?;
        consumers.push(cons);
    }
    // Let every consumer connect and settle into long polls.
    for _ in 0..30 {
        for cons in &consumers {
            let _ = cons.poll(Duration::ZERO);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sampler = Sampler::start(c.broker_pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(a.duration);
    while std::time::Instant::now() < deadline {
        for cons in &consumers {
            if let Some(Ok(_)) = cons.poll(Duration::ZERO) {
                bail!("an idle partition received data");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let usage = sampler.map(Sampler::finish);
    drop(consumers);
    topic::delete(c, &c.topic)?;
    Ok(Row {
        name: format!("idle: {} partitions, {n} consumers", c.partitions),
        seconds: a.duration as f64,
        broker: usage,
        note: "broker CPU while consumers long-poll empty partitions".into(),
        ..Row::default()
    })
}
