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
        "e2e latency p99 @ 10k/s, linger.ms 1",
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

/// The suite at its smallest: the mechanics, not figures.
const SMALL_SUITE: [&str; 10] = [
    "--bytes",
    "1048576",
    "--latency-seconds",
    "1",
    "--idle-partitions",
    "6",
    "--idle-consumers",
    "2",
    "--idle-seconds",
    "1",
];

/// The row of `table` whose measure starts with `measure`, and its cells.
fn cells<'a>(table: &'a str, measure: &str) -> Result<(&'a str, Vec<&'a str>)> {
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("| {measure}")))
        .with_context(|| format!("no {measure} row: {table}"))?;
    Ok((row, row.split('|').map(str::trim).collect()))
}

/// `NAME=COMMAND` of a single Sluice broker, as `compare --broker` takes it.
fn peer(name: &str) -> String {
    format!(
        "{name}={} --log-dirs {{dir}} --listeners 127.0.0.1:{{port}} --metrics-listener 127.0.0.1:{{port2}}",
        sluice_e2e::broker_bin().display()
    )
}

#[test]
fn compare_mode_alternates_two_brokers_and_prints_ratios() -> Result<()> {
    // Two Sluice brokers as the two peers: the mode's mechanics (start by
    // command line, fresh per round, alternating, ratios), not a verdict.
    let dir = tempfile::tempdir()?;
    let table = bench(
        &[
            "compare",
            "--rounds",
            "2",
            "--broker",
            &peer("one"),
            "--broker",
            &peer("two"),
            "--dir",
            &dir.path().to_string_lossy(),
        ]
        .into_iter()
        .chain(SMALL_SUITE)
        .collect::<Vec<_>>(),
    )?;
    ensure!(
        table.contains("| one r1 | two r1 | one r2 | two r2 | one / two |"),
        "{table}"
    );
    for measure in [
        "produce, acks=1",
        "consume from start",
        "e2e latency p99 ",
        "e2e latency p99 @ 10k/s, linger.ms 1",
        "broker peak RSS",
        "idle CPU",
        "time to start",
    ] {
        let (row, cells) = cells(&table, measure)?;
        // Every broker's figure of every round (a ratio may be "-": an
        // idle CPU of 0 ticks has none).
        ensure!(
            cells.len() == 8 && cells[2..6].iter().all(|c| c.parse::<f64>().is_ok()),
            "a figure is missing: {row}"
        );
    }
    // Each round started both brokers afresh, in their own directories.
    for round in ["round-1", "round-2"] {
        for name in ["one", "two"] {
            let log = dir.path().join(round).join(name).join("broker.log");
            ensure!(log.exists(), "{} missing", log.display());
        }
    }
    // A missing or single peer is refused with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["compare", "--broker", &peer("alone")])
        .output()?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least two"),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn compare_mode_measures_three_node_clusters_with_kills_under_load() -> Result<()> {
    // Two Sluice clusters as the two peers: the three-broker rows, every
    // node of a cluster started from one command line, a kill each timed.
    let dir = tempfile::tempdir()?;
    let bin = sluice_e2e::broker_bin();
    let node = |name: &str| {
        format!(
            "{name}={} --node-id {{node}} --log-dirs {{dir}} --listeners 127.0.0.1:{{port}} \
             --internal-listener 127.0.0.1:{{port2}} --metrics-listener 127.0.0.1:{{port3}} \
             --controller-quorum-voters {{voters}}",
            bin.display()
        )
    };
    let small = ["--rounds", "1", "--rf3-seconds", "1", "--kills", "1"];
    let dir_arg = dir.path().to_string_lossy().to_string();
    let (p1, p2, n1, n2) = (peer("one"), peer("two"), node("one"), node("two"));
    let mut args = vec![
        "compare",
        "--broker",
        &p1,
        "--broker",
        &p2,
        "--cluster-broker",
        &n1,
        "--cluster-broker",
        &n2,
        "--dir",
        &dir_arg,
    ];
    args.extend(small);
    args.extend(SMALL_SUITE);
    let table = bench(&args)?;
    for measure in [
        "3 brokers: produce to RF 3, acks=all",
        "failover under load: kill -9 to next ack, p50",
        "failover under load: kill -9 to next ack, max",
    ] {
        let (row, cells) = cells(&table, measure)?;
        ensure!(
            cells.len() == 6
                && cells[2..4]
                    .iter()
                    .all(|c| c.parse::<f64>().is_ok_and(|v| v > 0.0)),
            "a figure is missing: {row}"
        );
    }
    for row in [
        "| failover under load: kills timed | 1.00 | 1.00 |",
        "| failover under load: kills with no ack within a minute | 0.00 | 0.00 |",
        "| failover under load: failed deliveries | 0.00 | 0.00 |",
    ] {
        ensure!(table.contains(row), "no {row:?} in {table}");
    }
    ensure!(
        table.contains("- one r1: ") && table.contains("- two r1: "),
        "{table}"
    );
    for name in ["one", "two"] {
        for n in 0..3 {
            let log = dir
                .path()
                .join("round-1")
                .join(name)
                .join("cluster")
                .join(format!("node-{n}"))
                .join("broker.log");
            ensure!(log.exists(), "{} missing", log.display());
        }
    }
    // A peer without a node command is refused with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args([
            "compare",
            "--broker",
            &peer("one"),
            "--broker",
            &peer("two"),
            "--cluster-broker",
            &node("one"),
        ])
        .output()?;
    ensure!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("--cluster-broker two=... is missing"),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn client_settings_reach_a_tls_listener() -> Result<()> {
    // The TLS rows of docs/performance.md: the same tool over SSL, with
    // librdkafka settings as kcat's -X takes them.
    let dir = tempfile::tempdir()?;
    let authority = sluice_e2e::certs::TestCa::new("bench CA")?;
    let ca = authority.write(&dir.path().join("ca.crt"))?;
    let server = authority.server(dir.path(), "broker")?;
    let [plain, tls] = sluice_e2e::free_ports::<2>()?;
    let listeners = format!("PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}");
    let keystore = server.keystore.display().to_string();
    let _b = BrokerProcess::start_listening(
        &dir.path().join("data"),
        plain,
        &[
            "--listeners",
            &listeners,
            "--ssl-keystore-location",
            &keystore,
        ],
    )?;
    let ca_setting = format!("ssl.ca.location={}", ca.display());
    let tls_bootstrap = format!("127.0.0.1:{tls}");
    let json = bench(&[
        "produce",
        "--bootstrap",
        &tls_bootstrap,
        "--client-setting",
        "security.protocol=ssl",
        "--client-setting",
        &ca_setting,
        "--count",
        "2000",
        "--message-size",
        "100",
        "--json",
    ])?;
    let rows: serde_json::Value = serde_json::from_str(&json)?;
    ensure!(
        rows[0]["records"] == 2000 && rows[0]["errors"] == 0,
        "{json}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["produce", "--client-setting", "no-equals-sign"])
        .output()?;
    ensure!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("expected KEY=VALUE"),
        "{bad:?}"
    );
    Ok(())
}
