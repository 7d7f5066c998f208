//! The standard set: latency, idle, produce and consume, with the targets
//! next to the figures, as Markdown. Latency and idle run first, before the
//! bulk writes whose background writeback would otherwise disturb them.

use anyhow::Result;

use crate::procstat::Sampler;
use crate::report::{self, Row};
use crate::{
    Common, IdleArgs, LatencyArgs, ProducerOpts, SuiteArgs, consume, idle, latency, produce, topic,
};

/// The suite's headline figures.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub produce_mb_s: Option<f64>,
    pub consume_mb_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// The same latency with the producer's linger.ms at 1.
    pub lingered_p50_ms: Option<f64>,
    pub lingered_p99_ms: Option<f64>,
    pub lingered_p999_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub idle_cpu_percent: Option<f64>,
    /// Produce in transactions of TXN_RECORDS records, committed each.
    pub txn_produce_mb_s: Option<f64>,
}

/// Records per transaction in the transactional produce measure.
pub const TXN_RECORDS: u64 = 1000;

pub fn run(a: &SuiteArgs) -> Result<()> {
    let (rows, summary) = measure(a)?;
    let fmt = |v: Option<f64>, unit: &str| {
        v.map(|v| format!("{v:.2} {unit}"))
            .unwrap_or_else(|| "not measured".into())
    };
    let mut md = String::from("| measure | result | target |\n|---|---:|---:|\n");
    md.push_str(&format!(
        "| produce, acks=1, 1 KiB | {} | ≥ 800 MB/s |\n",
        fmt(summary.produce_mb_s, "MB/s")
    ));
    md.push_str(&format!(
        "| produce in transactions of {TXN_RECORDS}, 1 KiB | {} | |\n",
        fmt(summary.txn_produce_mb_s, "MB/s")
    ));
    md.push_str(&format!(
        "| consume from start | {} | ≥ 1000 MB/s |\n",
        fmt(summary.consume_mb_s, "MB/s")
    ));
    md.push_str(&format!(
        "| e2e latency p99 @ 10k/s | {} | ≤ 2 ms |\n",
        fmt(summary.p99_ms, "ms")
    ));
    md.push_str(&format!(
        "| e2e latency p99 @ 10k/s, linger.ms 1 | {} | |\n",
        fmt(summary.lingered_p99_ms, "ms")
    ));
    md.push_str(&format!(
        "| broker peak RSS, produce + consume | {} | ≤ 128 MiB |\n",
        fmt(summary.peak_rss_mib, "MiB")
    ));
    md.push_str(&format!(
        "| idle broker CPU, {} partitions, {} consumers | {} | < 2 % |\n",
        a.idle_partitions,
        a.idle_consumers,
        fmt(summary.idle_cpu_percent, "%")
    ));
    md.push('\n');
    md.push_str(&report::table(&rows));
    print!("{md}");
    if let Some(path) = &a.markdown {
        std::fs::write(path, &md)?;
    }
    Ok(())
}

/// Runs the suite against `a.common.bootstrap`: its rows and headline
/// figures.
pub fn measure(a: &SuiteArgs) -> Result<(Vec<Row>, Summary)> {
    let c = &a.common;
    let mut rows: Vec<Row> = Vec::new();
    let record = 1024usize;

    // Twice: a record sent as soon as it is due (linger.ms 0, close to one
    // request per record: how fast a broker turns requests around on one
    // connection), and with a millisecond's linger (requests of a few
    // records, as latency-minded producers run).
    for linger_ms in [0, 1] {
        eprintln!(
            "[1/5] latency at 10,000 records/s, linger.ms {linger_ms}, for {} s",
            a.latency_seconds
        );
        rows.push(latency::run(&LatencyArgs {
            common: Common {
                topic: format!("{}-latency-{linger_ms}", c.topic),
                ..c.clone()
            },
            rate: 10_000,
            duration: a.latency_seconds,
            message_size: record,
            acks: "1".into(),
            linger_ms,
        })?);
    }

    let idle_row = if c.broker_pid.is_some() {
        eprintln!(
            "[2/5] idle: {} partitions, {} consumers",
            a.idle_partitions, a.idle_consumers
        );
        Some(idle::run(&IdleArgs {
            common: Common {
                topic: format!("{}-idle", c.topic),
                partitions: a.idle_partitions,
                ..c.clone()
            },
            consumers: a.idle_consumers,
            duration: a.idle_seconds,
        })?)
    } else {
        eprintln!("[2/5] idle: skipped, needs --broker-pid");
        None
    };
    rows.extend(idle_row.clone());

    let count = a.bytes / record as u64;
    let popts = ProducerOpts {
        message_size: record,
        count,
        duration: None,
        acks: "1".into(),
        compression: "none".into(),
        batch_size: 1_000_000,
        linger_ms: 5,
        producers: a.producers,
        transaction_records: None,
    };
    eprintln!(
        "[3/5] produce {count} records of {record} B, acks=1, {} partitions, {} producers",
        c.partitions, a.producers
    );
    // One sampler spans produce and consume for the RSS target.
    let rss = Sampler::start(c.broker_pid);
    let prod = produce::run(c, &popts, true)?;
    rows.push(prod.into_row(&format!("produce 1 KiB acks=1, {} producers", a.producers)));
    eprintln!(
        "[4/5] consume the topic from the beginning, {} consumers",
        a.consumers
    );
    let mut cons = consume::read_all(c, c.partitions, a.consumers)?;
    cons.name = format!("consume from start, {} consumers", a.consumers);
    rows.push(cons);
    let rss = rss.map(Sampler::finish);
    topic::delete(c, &c.topic)?;

    // A quarter of the bytes, in transactions of TXN_RECORDS records.
    let txn_opts = ProducerOpts {
        count: (count / 4).max(TXN_RECORDS),
        transaction_records: Some(TXN_RECORDS),
        ..popts.clone()
    };
    eprintln!(
        "[5/5] produce {} records in transactions of {TXN_RECORDS}, {} producers",
        txn_opts.count, a.producers
    );
    let txn = produce::run(c, &txn_opts, true)?;
    rows.push(txn.into_row(&format!(
        "transactional produce, commit every {TXN_RECORDS}"
    )));
    topic::delete(c, &c.topic)?;

    let latency = find(&rows, "latency @10000/s acks=1 linger.ms=0");
    let lingered = find(&rows, "latency @10000/s acks=1 linger.ms=1");
    let summary = Summary {
        produce_mb_s: find(&rows, "produce").and_then(|r| r.mb_per_s),
        consume_mb_s: find(&rows, "consume").and_then(|r| r.mb_per_s),
        p50_ms: latency.and_then(|r| r.p50_ms),
        p99_ms: latency.and_then(|r| r.p99_ms),
        p999_ms: latency.and_then(|r| r.p999_ms),
        lingered_p50_ms: lingered.and_then(|r| r.p50_ms),
        lingered_p99_ms: lingered.and_then(|r| r.p99_ms),
        lingered_p999_ms: lingered.and_then(|r| r.p999_ms),
        peak_rss_mib: rss
            .as_ref()
            .map(|u| u.peak_rss_bytes as f64 / (1 << 20) as f64),
        idle_cpu_percent: idle_row.and_then(|r| r.broker).map(|u| u.cpu_percent),
        txn_produce_mb_s: find(&rows, "transactional produce").and_then(|r| r.mb_per_s),
    };
    Ok((rows, summary))
}

fn find<'a>(rows: &'a [Row], prefix: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name.starts_with(prefix))
}
