//! Crash safety: kill -9 during an acks=all produce, and a torn segment tail.
//! Driven by librdkafka (the `rdkafka` crate) against real broker processes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{consume, produce_n, producer};

const TOPIC_ARGS: &[&str] = &["--num-partitions", "1"];

/// Every record the broker acknowledged at acks=all before a kill -9 is
/// there after the restart, once, at the acknowledged offset, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill9_during_produce() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::start(&dir.path().join("data"), TOPIC_ARGS)?;
    let topic = "crash";
    // No retries: a record is either acknowledged once or failed, never
    // written twice by a retry (that is the idempotent producer's job).
    let p: FutureProducer = producer(
        &broker.bootstrap(),
        &[
            ("acks", "all"),
            ("enable.idempotence", "false"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "5000"),
            ("linger.ms", "1"),
        ],
    )?;
    let acked: Arc<parking_lot_free::Acked> = Arc::new(parking_lot_free::Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let p = p.clone();
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0usize;
            let deadline = Instant::now() + Duration::from_secs(60);
            // Bounded: at most 200k records or 60 s.
            while !stop.load(Ordering::Relaxed) && i < 200_000 && Instant::now() < deadline {
                let mut batch = Vec::with_capacity(100);
                for _ in 0..100 {
                    let key = format!("k{i}");
                    let value = format!("v{i}");
                    let rec = FutureRecord::to(topic)
                        .partition(0)
                        .key(&key)
                        .payload(&value);
                    match p.send_result(rec) {
                        Ok(f) => batch.push((i, f)),
                        Err(_) => break,
                    }
                    i += 1;
                }
                for (n, f) in batch {
                    if let Ok(Ok(d)) = f.await {
                        acked.push(n, d.offset);
                    }
                }
            }
        })
    };
    // Let a few thousand records through, then pull the plug.
    let wait_deadline = Instant::now() + Duration::from_secs(30);
    while acked.len() < 3000 {
        ensure!(
            Instant::now() < wait_deadline,
            "producer made no progress: {}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill9()?;
    stop.store(true, Ordering::Relaxed);
    producing.await?;
    drop(p);
    let acked = acked.take();
    ensure!(acked.len() >= 3000);

    broker.restart()?;
    let bootstrap = broker.bootstrap();
    // Read everything that is there (acknowledged, plus possibly some that
    // were written but whose acknowledgement was lost in the crash).
    let end = latest_offset(&bootstrap, topic)?;
    let records = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, topic, 1, end as usize, Duration::from_secs(60))
    })
    .await??;
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &records {
        let v = String::from_utf8(r.value.clone().unwrap_or_default())?;
        seen.entry(v).or_default().push(r.offset);
    }
    let mut last = -1;
    for (n, offset) in &acked {
        let offsets = seen.get(&format!("v{n}")).map(Vec::as_slice).unwrap_or(&[]);
        if offsets != [*offset] {
            bail!("acknowledged record v{n} at offset {offset} found at {offsets:?} after restart");
        }
        ensure!(*offset > last, "acknowledged offsets out of order at v{n}");
        last = *offset;
    }
    println!(
        "{} acknowledged records all present once, in order, after kill -9",
        acked.len()
    );
    Ok(())
}

fn latest_offset(bootstrap: &str, topic: &str) -> Result<i64> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let (_, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    Ok(high)
}

/// A torn or garbled tail of the active segment is cut at startup: the
/// broker serves every batch before it and accepts new writes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_on_restart() -> Result<()> {
    for damage in [Damage::Cut(7), Damage::Garble, Damage::Junk] {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let mut broker = BrokerProcess::start(&data, TOPIC_ARGS)?;
        let topic = "torn";
        let p = producer(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "0")])?;
        // Ten flushed calls of ten records (one or more batches each).
        for _ in 0..10 {
            produce_n(&p, topic, 0, 10).await?;
            p.flush(Duration::from_secs(10))?;
        }
        drop(p);
        broker.kill9()?;
        let seg = data.join("torn-0").join("00000000000000000000.log");
        let mut bytes = std::fs::read(&seg)?;
        // The producer may split a call into several batches: find where
        // the last batch starts (base offset, then length, per batch).
        let mut pos = 0usize;
        let mut last_base = 0i64;
        while pos + 12 <= bytes.len() {
            last_base = i64::from_be_bytes(bytes[pos..pos + 8].try_into()?);
            pos += 12 + i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into()?) as usize;
        }
        ensure!(
            pos == bytes.len(),
            "segment does not end on a batch boundary"
        );
        match damage {
            Damage::Cut(n) => bytes.truncate(bytes.len() - n),
            Damage::Garble => {
                let at = bytes.len() - 10;
                bytes[at] ^= 0x5a;
            }
            Damage::Junk => bytes
                .extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        }
        std::fs::write(&seg, &bytes)?;
        broker.restart()?;
        // Damage inside the last batch loses exactly that batch.
        let expected = if matches!(damage, Damage::Junk) {
            100
        } else {
            last_base as usize
        };
        ensure!(
            expected >= 90,
            "{damage:?}: last batch starts at {last_base}"
        );
        let bootstrap = broker.bootstrap();
        let got = tokio::task::spawn_blocking(move || {
            consume(&bootstrap, topic, 1, expected, Duration::from_secs(30))
        })
        .await??;
        for (i, r) in got.iter().enumerate() {
            ensure!(
                r.offset == i as i64,
                "{damage:?}: offset {} at position {i}",
                r.offset
            );
            ensure!(
                r.value.as_deref() == Some(format!("value-{}", i % 10).as_bytes()),
                "{damage:?}: record {i} differs"
            );
        }
        // New writes continue right after the last valid batch.
        let p = producer(&broker.bootstrap(), &[("acks", "all")])?;
        let offsets = produce_n(&p, topic, 0, 1).await?;
        ensure!(
            offsets == vec![expected as i64],
            "{damage:?}: next offset {offsets:?}"
        );
        ensure!(
            broker
                .log()
                .contains("truncated a torn or corrupt log tail"),
            "{damage:?}: no truncation logged"
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The last bytes of the last batch are missing.
    Cut(usize),
    /// A byte inside the last batch is flipped (CRC mismatch).
    Garble,
    /// Bytes after the last batch that are not a batch.
    Junk,
}

/// A tiny shared list without extra dependencies.
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct Acked(Mutex<Vec<(usize, i64)>>);

    impl Acked {
        pub fn push(&self, n: usize, offset: i64) {
            if let Ok(mut v) = self.0.lock() {
                v.push((n, offset));
            }
        }
        pub fn len(&self) -> usize {
            self.0.lock().map(|v| v.len()).unwrap_or(0)
        }
        pub fn take(&self) -> Vec<(usize, i64)> {
            self.0
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default()
        }
    }
}
