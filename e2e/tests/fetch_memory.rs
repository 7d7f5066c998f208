//! The broker-wide fetch memory budget: with a 1 MiB budget and several
//! consumers each asking for far more, every record is still served (a
//! fetch that finds no memory free gets its partitions on a later round).

use std::time::Duration;

use anyhow::{Result, ensure};
use rdkafka::producer::FutureRecord;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{consume, producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tight_fetch_memory_still_serves_every_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--num-partitions",
            "4",
            "--fetch-memory-max-bytes",
            "1048576",
            "--message-max-bytes",
            "131072",
        ],
    )?;
    let b = broker.bootstrap();
    let p = producer(
        &b,
        &[("acks", "1"), ("batch.size", "65536"), ("linger.ms", "5")],
    )?;
    let value = vec![b'm'; 4000];
    // 4 partitions x 1,000 records x 4 KB = 16 MB, 16 times the budget.
    let mut futures = Vec::new();
    for i in 0..4000 {
        let key = format!("{i}");
        let rec = FutureRecord::to("mem")
            .partition(i % 4)
            .key(&key)
            .payload(&value);
        futures.push(
            p.send_result(rec)
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))?,
        );
    }
    for f in futures {
        f.await?.map_err(|(e, _)| e)?;
    }
    // Three consumers read everything at once.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::task::spawn_blocking(move || {
                consume(&b, "mem", 4, 4000, Duration::from_secs(60))
            })
        })
        .collect();
    for r in readers {
        let got = r.await??;
        ensure!(got.len() == 4000);
        ensure!(
            got.iter()
                .all(|r| r.value.as_ref().is_some_and(|v| v.len() == 4000))
        );
    }
    let m = broker.metrics()?;
    ensure!(m.contains("sluice_broker_topic_bytes_out_total"), "{m}");
    Ok(())
}
