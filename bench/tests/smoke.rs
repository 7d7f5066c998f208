//! Smoke test of the benchmark tool itself: tiny counts against a real
//! broker process. It checks the tool works and reports sane figures, not
//! how fast anything is.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use sluice_e2e::BrokerProcess;

fn bench(args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(args)
        .output()
        .context("running sluice-bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "sluice-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[test]
fn every_mode_runs_and_reports() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&dir.path().join("data"), &[])?;
    let b = broker.bootstrap();
    let pid = broker.pid().context("pid")?.to_string();

    let json = bench(&[
        "produce",
        "--bootstrap",
        &b,
        "--count",
        "3000",
        "--message-size",
        "100",
        "--json",
        "--broker-pid",
        &pid,
    ])?;
    let rows: serde_json::Value = serde_json::from_str(&json)?;
    ensure!(
        rows[0]["records"] == 3000 && rows[0]["errors"] == 0,
        "{json}"
    );
    ensure!(rows[0]["bytes"] == 300_000, "{json}");
    ensure!(
        rows[0]["broker"]["peak_rss_bytes"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );

    let table = bench(&[
        "consume",
        "--bootstrap",
        &b,
        "--count",
        "3000",
        "--consumers",
        "2",
    ])?;
    ensure!(table.contains("| consume | 3000 |"), "{table}");

    let table = bench(&[
        "latency",
        "--bootstrap",
        &b,
        "--rate",
        "500",
        "--duration",
        "2",
    ])?;
    ensure!(table.contains("latency @500/s"), "{table}");
    ensure!(
        !table.contains("| - | - | - | - |"),
        "latency percentiles missing: {table}"
    );

    let table = bench(&[
        "suite",
        "--bootstrap",
        &b,
        "--broker-pid",
        &pid,
        "--bytes",
        "1048576",
        "--latency-seconds",
        "1",
        "--idle-partitions",
        "12",
        "--idle-consumers",
        "3",
        "--idle-seconds",
        "1",
    ])?;
    for measure in [
        "produce, acks=1",
        "consume from start",
        "e2e latency p99",
        "broker peak RSS",
        "idle broker CPU",
    ] {
        ensure!(table.contains(measure), "suite lacks {measure}: {table}");
    }
    ensure!(!table.contains("not measured"), "{table}");
    Ok(())
}

#[test]
fn failover_mode_times_leader_kills() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker_bin = sluice_e2e::broker_bin();
    let json = bench(&[
        "failover",
        "--kills",
        "2",
        "--base-port",
        "0",
        "--json",
        "--broker-bin",
        &broker_bin.to_string_lossy(),
        "--dir",
        &dir.path().to_string_lossy(),
        "--max-seconds",
        "300",
    ])?;
    let rows: serde_json::Value = serde_json::from_str(&json)?;
    // Two kills, each followed by an acknowledged write on the successor.
    ensure!(rows[0]["records"] == 2 && rows[0]["errors"] == 0, "{json}");
    let p50 = rows[0]["p50_ms"].as_f64().unwrap_or(0.0);
    let max = rows[0]["max_ms"].as_f64().unwrap_or(0.0);
    ensure!(p50 > 0.0 && max >= p50 && max < 30_000.0, "{json}");
    Ok(())
}
