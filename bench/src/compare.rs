//! `sluice-bench compare`: the suite against two or more brokers in one
//! run on one machine, each started fresh for every round by a command
//! line of its own, in alternating order (A B, then B A, ...) so that
//! neither always runs on the page cache the other warmed. Prints each
//! round's figures and the ratio of the first broker's to each other's.
//! Given a node command per broker (`--cluster-broker`), each round also
//! starts a three-node cluster of each and measures it (`crate::cluster`).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::cluster::{self, Figures};
use crate::suite::{self, Summary};
use crate::{Common, CompareArgs, ProducerOpts, SuiteArgs};

/// One broker to compare: a name and the command line that runs it in the
/// foreground (`{dir}`, `{port}`, `{port2}` filled in).
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    command: String,
}

fn parse(flag: &str, specs: &[String]) -> Result<Vec<Peer>> {
    specs
        .iter()
        .map(|s| {
            let (name, command) = s
                .split_once('=')
                .with_context(|| format!("{flag} {s:?}: expected NAME=COMMAND"))?;
            Ok(Peer {
                name: name.trim().to_string(),
                command: command.trim().to_string(),
            })
        })
        .collect()
}

fn peers(specs: &[String]) -> Result<Vec<Peer>> {
    let peers = parse("--broker", specs)?;
    if peers.len() < 2 {
        bail!("compare needs at least two --broker NAME=COMMAND");
    }
    Ok(peers)
}

/// Each peer's node command, in the peers' order; none at all without
/// `--cluster-broker`, else one for every peer.
fn node_commands(peers: &[Peer], specs: &[String]) -> Result<Vec<String>> {
    let nodes = parse("--cluster-broker", specs)?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    peers
        .iter()
        .map(|p| {
            nodes
                .iter()
                .find(|n| n.name == p.name)
                .map(|n| n.command.clone())
                .with_context(|| format!("--cluster-broker {}=... is missing", p.name))
        })
        .collect()
}

/// A broker process of one round.
struct Running {
    child: Child,
    bootstrap: String,
    started_in: Duration,
}

/// The `--broker-client-setting NAME:KEY=VALUE` of each peer, in the
/// peers' order, after the run's `--client-setting`s.
fn client_settings(
    peers: &[Peer],
    common: &[String],
    specs: &[String],
) -> Result<Vec<Vec<String>>> {
    let mut out: Vec<Vec<String>> = peers.iter().map(|_| common.to_vec()).collect();
    for s in specs {
        let (name, setting) = s
            .split_once(':')
            .filter(|(_, kv)| kv.contains('='))
            .with_context(|| format!("--broker-client-setting {s:?}: expected NAME:KEY=VALUE"))?;
        let i = peers
            .iter()
            .position(|p| p.name == name.trim())
            .with_context(|| format!("--broker-client-setting {s:?}: no --broker {name}"))?;
        out[i].push(setting.to_string());
    }
    Ok(out)
}

/// Starts `p` with its data under `dir`; returns once Metadata answers
/// (asked with `settings`, as the run's clients will).
fn start(p: &Peer, dir: &Path, limit: Duration, settings: &[String]) -> Result<Running> {
    std::fs::create_dir_all(dir)?;
    let ports = cluster::free_ports(2)?;
    let (port, port2) = (ports[0], ports[1]);
    let command = p
        .command
        .replace("{dir}", &dir.join("data").display().to_string())
        .replace("{port}", &port.to_string())
        .replace("{port2}", &port2.to_string());
    let log = File::create(dir.join("broker.log"))?;
    let began = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}: {command}", p.name))?;
    let bootstrap = format!("127.0.0.1:{port}");
    let probe: BaseConsumer = crate::client_config(&bootstrap, settings)?
        .set("log_level", "0")
        .create()
        .context("creating the metadata probe")?;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited at start ({status}); its log: {}",
                p.name,
                dir.join("broker.log").display()
            );
        }
        let up = probe
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok_and(|m| !m.brokers().is_empty());
        if up {
            return Ok(Running {
                child,
                bootstrap,
                started_in: began.elapsed(),
            });
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            bail!("{} did not answer Metadata within {limit:?}", p.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after 30 s.
fn stop(mut r: Running) -> Result<()> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(r.child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            r.child.kill()?;
            r.child.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// One broker's figures in one round.
struct Measured {
    round: usize,
    peer: usize,
    started_s: f64,
    summary: Summary,
    cluster: Option<Figures>,
}

pub fn run(a: &CompareArgs) -> Result<()> {
    let peers = peers(&a.brokers)?;
    let node_commands = node_commands(&peers, &a.cluster_brokers)?;
    let settings = client_settings(
        &peers,
        &a.suite.common.client_settings,
        &a.broker_client_settings,
    )?;
    let tmp;
    let base = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("sluice-compare-{}", std::process::id()));
            tmp.clone()
        }
    };
    let mut all = Vec::new();
    for round in 0..a.rounds {
        let mut order: Vec<usize> = (0..peers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let p = &peers[i];
            eprintln!("== round {} of {}: {}", round + 1, a.rounds, p.name);
            let dir = base.join(format!("round-{}", round + 1)).join(&p.name);
            let running = start(p, &dir, Duration::from_secs(a.start_seconds), &settings[i])?;
            let args = SuiteArgs {
                common: Common {
                    bootstrap: running.bootstrap.clone(),
                    broker_pid: Some(running.child.id()),
                    client_settings: settings[i].clone(),
                    ..a.suite.common.clone()
                },
                markdown: None,
                ..a.suite.clone()
            };
            let outcome = suite::measure(&args);
            let started_s = running.started_in.as_secs_f64();
            stop(running)?;
            let (_, summary) = outcome.with_context(|| format!("the suite against {}", p.name))?;
            let cluster = match node_commands.get(i) {
                Some(command) => {
                    eprintln!("== round {}: three {} nodes", round + 1, p.name);
                    let plan = cluster::Plan {
                        command,
                        dir: &dir.join("cluster"),
                        cluster: format!("sluice-bench-{}-{}-{}", std::process::id(), round, i),
                        start_limit: Duration::from_secs(a.start_seconds),
                        produce_seconds: a.rf3_seconds,
                        kills: a.kills,
                        load_rate: a.load_rate,
                        // Each cluster's measurement is bounded on its own.
                        deadline: Instant::now() + Duration::from_secs(a.suite.common.max_seconds),
                    };
                    let producer = ProducerOpts {
                        message_size: 1024,
                        count: 0,
                        duration: None,
                        acks: "all".into(),
                        compression: "none".into(),
                        batch_size: 1_000_000,
                        linger_ms: 5,
                        producers: a.suite.producers,
                        transaction_records: None,
                    };
                    Some(
                        cluster::measure(&plan, &producer, &a.suite.common)
                            .with_context(|| format!("three {} nodes", p.name))?,
                    )
                }
                None => None,
            };
            all.push(Measured {
                round,
                peer: i,
                started_s,
                summary,
                cluster,
            });
        }
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    let mut md = table(&peers, a.rounds, &all);
    if !node_commands.is_empty() {
        md.push_str(&kill_times(&peers, a.rounds, &all));
    }
    print!("{md}");
    if let Some(path) = &a.suite.markdown {
        std::fs::write(path, &md)?;
    }
    Ok(())
}

type Pick = fn(&Measured) -> Option<f64>;

/// Every kill's failover time, per broker and round, sorted: the spread
/// behind the table's quantiles.
fn kill_times(peers: &[Peer], rounds: usize, all: &[Measured]) -> String {
    let mut md = String::from("\nFailover of each kill (s), sorted:\n\n");
    for r in 0..rounds {
        for (i, p) in peers.iter().enumerate() {
            let Some(f) = all
                .iter()
                .find(|m| m.round == r && m.peer == i)
                .and_then(|m| m.cluster.as_ref())
            else {
                continue;
            };
            let times: Vec<String> = f
                .failovers
                .iter()
                .map(|t| format!("{:.2}", t.as_secs_f64()))
                .collect();
            md.push_str(&format!(
                "- {} r{}: {}{}\n",
                p.name,
                r + 1,
                times.join(", "),
                if f.unrecovered > 0 {
                    format!(
                        "; {} without an acknowledgement within a minute",
                        f.unrecovered
                    )
                } else {
                    String::new()
                }
            ));
        }
    }
    md
}

fn table(peers: &[Peer], rounds: usize, all: &[Measured]) -> String {
    let with_cluster = all.iter().any(|m| m.cluster.is_some());
    let mut measures: Vec<(&str, Pick)> = vec![
        ("produce, acks=1, 1 KiB (MB/s)", |m| m.summary.produce_mb_s),
        ("produce in transactions of 1000, 1 KiB (MB/s)", |m| {
            m.summary.txn_produce_mb_s
        }),
        ("consume from start (MB/s)", |m| m.summary.consume_mb_s),
        ("e2e latency p50 @ 10k/s, linger.ms 0 (ms)", |m| {
            m.summary.p50_ms
        }),
        ("e2e latency p99 @ 10k/s, linger.ms 0 (ms)", |m| {
            m.summary.p99_ms
        }),
        ("e2e latency p99.9 @ 10k/s, linger.ms 0 (ms)", |m| {
            m.summary.p999_ms
        }),
        ("e2e latency p50 @ 10k/s, linger.ms 1 (ms)", |m| {
            m.summary.lingered_p50_ms
        }),
        ("e2e latency p99 @ 10k/s, linger.ms 1 (ms)", |m| {
            m.summary.lingered_p99_ms
        }),
        ("e2e latency p99.9 @ 10k/s, linger.ms 1 (ms)", |m| {
            m.summary.lingered_p999_ms
        }),
        ("broker peak RSS, produce + consume (MiB)", |m| {
            m.summary.peak_rss_mib
        }),
        (
            "idle CPU, consumers long-polling empty partitions (% of a core)",
            |m| m.summary.idle_cpu_percent,
        ),
        ("time to start, to the first Metadata answer (s)", |m| {
            Some(m.started_s)
        }),
    ];
    if with_cluster {
        measures.extend::<[(&str, Pick); 7]>([
            ("3 brokers: produce to RF 3, acks=all, 1 KiB (MB/s)", |m| {
                m.cluster.as_ref().and_then(|c| c.rf3_produce_mb_s)
            }),
            ("3 brokers: time to start, all three in Metadata (s)", |m| {
                m.cluster
                    .as_ref()
                    .and_then(|c| c.started_in)
                    .map(|d| d.as_secs_f64())
            }),
            ("failover under load: kill -9 to next ack, p50 (s)", |m| {
                m.cluster.as_ref().and_then(|c| c.failover_quantile(0.5))
            }),
            ("failover under load: kill -9 to next ack, max (s)", |m| {
                m.cluster.as_ref().and_then(|c| c.failover_quantile(1.0))
            }),
            ("failover under load: kills timed", |m| {
                m.cluster.as_ref().map(|c| c.failovers.len() as f64)
            }),
            (
                "failover under load: kills with no ack within a minute",
                |m| m.cluster.as_ref().map(|c| c.unrecovered as f64),
            ),
            ("failover under load: failed deliveries", |m| {
                m.cluster.as_ref().map(|c| c.failed_deliveries as f64)
            }),
        ]);
    }
    let value = |round: usize, peer: usize, pick: Pick| {
        all.iter()
            .find(|m| m.round == round && m.peer == peer)
            .and_then(pick)
    };
    let mut head = String::from("| measure |");
    let mut rule = String::from("|---|");
    for r in 0..rounds {
        for p in peers {
            head.push_str(&format!(" {} r{} |", p.name, r + 1));
            rule.push_str("---:|");
        }
    }
    for p in &peers[1..] {
        head.push_str(&format!(" {} / {} |", peers[0].name, p.name));
        rule.push_str("---|");
    }
    let mut md = format!("{head}\n{rule}\n");
    for (name, pick) in measures {
        md.push_str(&format!("| {name} |"));
        for r in 0..rounds {
            for i in 0..peers.len() {
                match value(r, i, pick) {
                    Some(v) => md.push_str(&format!(" {v:.2} |")),
                    None => md.push_str(" - |"),
                }
            }
        }
        for i in 1..peers.len() {
            let ratios: Vec<String> = (0..rounds)
                .map(|r| match (value(r, 0, pick), value(r, i, pick)) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "-".into(),
                })
                .collect();
            md.push_str(&format!(" {} |", ratios.join(", ")));
        }
        md.push('\n');
    }
    md
}
