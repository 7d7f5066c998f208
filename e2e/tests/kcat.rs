//! kcat (Debian's, on librdkafka 2.0.2: an old client that exercises
//! version negotiation) against a real broker process.

use anyhow::{Context, Result, bail};
use sluice_e2e::{BrokerProcess, kcat_run};

/// Runs kcat to completion (at most five minutes); an exit other than
/// success is an error with its stderr.
fn run_kcat(args: &[&str], stdin: Option<&[u8]>) -> Result<(String, String)> {
    let run = kcat_run(args, stdin, 300)?;
    if !run.ok {
        bail!("kcat {args:?} failed: {}", run.stderr);
    }
    Ok((run.stdout, run.stderr))
}

/// Produces `n` keyed records at acks=all. kcat attaches the same headers
/// to every record; keys and values are unique per record.
fn produce(bootstrap: &str, topic: &str, n: usize) -> Result<()> {
    let input: String = (0..n)
        .map(|i| format!("key-{i:05}\x01value-{i}-é-{}\n", "z".repeat(i % 50)))
        .collect();
    run_kcat(
        &[
            "-b",
            bootstrap,
            "-P",
            "-t",
            topic,
            "-K",
            "\x01",
            "-X",
            "acks=all",
            "-H",
            "source=kcat",
            "-H",
            "trace=chunk",
        ],
        Some(input.as_bytes()),
    )?;
    Ok(())
}

fn consume(bootstrap: &str, topic: &str) -> Result<Vec<String>> {
    let (out, _) = run_kcat(
        &[
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\t%h\t%o\n",
        ],
        None,
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

#[test]
fn kcat_produces_and_consumes_10k_keyed_records_with_headers_and_survives_kill9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[])?;
    let bootstrap = broker.bootstrap();
    let topic = "kcat-10k";
    let n = 10_000;
    produce(&bootstrap, topic, n)?;

    let check = |lines: Vec<String>| -> Result<()> {
        if lines.len() != n {
            bail!("expected {n} records, got {}", lines.len());
        }
        for (i, line) in lines.iter().enumerate() {
            let want = format!(
                "key-{i:05}\tvalue-{i}-é-{}\tsource=kcat,trace=chunk\t{i}",
                "z".repeat(i % 50)
            );
            if *line != want {
                bail!("record {i} differs:\n got  {line:?}\n want {want:?}");
            }
        }
        Ok(())
    };
    check(consume(&bootstrap, topic)?)?;

    broker.kill9()?;
    broker.restart()?;
    check(consume(&bootstrap, topic)?).context("after kill -9 and restart")?;
    Ok(())
}

#[test]
fn kcat_lists_metadata() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--num-partitions", "3"])?;
    // Auto-creation through metadata, as Kafka does.
    let (out, _) = run_kcat(
        &["-b", &broker.bootstrap(), "-L", "-t", "auto-created"],
        None,
    )?;
    assert!(out.contains("1 brokers:"), "{out}");
    assert!(
        out.contains(&format!(
            "broker 1 at 127.0.0.1:{} (controller)",
            broker.port
        )),
        "{out}"
    );
    assert!(
        out.contains("topic \"auto-created\" with 3 partitions"),
        "{out}"
    );
    assert!(
        out.contains("partition 2, leader 1, replicas: 1, isrs: 1"),
        "{out}"
    );
    Ok(())
}
