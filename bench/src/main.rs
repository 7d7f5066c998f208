//! `sluice-bench`: measures a Kafka-compatible broker the way librdkafka
//! users see it. Produce and consume throughput, end-to-end latency at a
//! fixed rate, and (given the broker's pid) its peak RSS and CPU time.
//! Works against any bootstrap address, so the same run can measure Sluice
//! and another broker.

mod cluster;
mod compare;
mod consume;
mod failover;
mod idle;
mod latency;
mod procstat;
mod produce;
mod report;
mod suite;
mod topic;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    version,
    about = "Benchmark a Kafka-compatible broker with librdkafka"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Produce throughput: MB/s and records/s until every record is acknowledged.
    Produce(ProduceArgs),
    /// Consume throughput from the beginning of a topic (fills it first unless --no-fill).
    Consume(ConsumeArgs),
    /// End-to-end latency (produce to consume) at a fixed offered rate.
    Latency(LatencyArgs),
    /// Broker CPU while many consumers long-poll idle partitions.
    Idle(IdleArgs),
    /// The standard set (produce, consume, latency, idle), written as a Markdown table.
    Suite(SuiteArgs),
    /// Failover time: starts three brokers, kills the leader of an RF 3 partition again and again, and times the next acks=all write.
    Failover(FailoverArgs),
    /// The suite against two or more brokers, each started fresh per round by its own command, alternating; ratios to the first.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// NAME=COMMAND, at least twice: a command line that runs one broker in
    /// the foreground, with `{dir}` (its data directory), `{port}` (the
    /// client port) and `{port2}` (a second free port) filled in. Ratios are
    /// of the first broker's figures to each other's.
    #[arg(long = "broker", required = true)]
    pub brokers: Vec<String>,
    /// Rounds; each starts every broker afresh, in alternating order.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Data directories and logs. [default: a temporary directory, removed afterwards]
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Seconds a broker may take to answer Metadata after it is started.
    #[arg(long, default_value_t = 120)]
    pub start_seconds: u64,
    /// NAME=COMMAND, one per --broker NAME: a command line that runs node
    /// `{node}` (0, 1, 2) of a three-node cluster in the foreground, with
    /// `{dir}`, `{port}` (client), `{port2}` (the port `{voters}` names),
    /// `{port3}` (a spare), `{voters}` (`0@127.0.0.1:PORT2,...`) and
    /// `{cluster_id}` (a token shared by the nodes of one cluster) filled
    /// in; started again in the same directory, a node keeps its data.
    /// Adds the three-broker rows to each round: RF 3 acks=all produce,
    /// and failover under a steady load with the killed node restarted.
    #[arg(long = "cluster-broker")]
    pub cluster_brokers: Vec<String>,
    /// Seconds of the RF 3 acks=all produce run.
    #[arg(long, default_value_t = 15)]
    pub rf3_seconds: u64,
    /// Leader kills per round and broker (each node restarted at once).
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Records per second of the steady load the kills are timed under.
    #[arg(long, default_value_t = 1000)]
    pub load_rate: u64,
    /// NAME:KEY=VALUE: a librdkafka setting for the clients of one
    /// --broker NAME only (after every --client-setting), e.g. to reach one
    /// broker over TLS and another over plaintext.
    #[arg(long = "broker-client-setting", value_name = "NAME:KEY=VALUE")]
    pub broker_client_settings: Vec<String>,
    #[command(flatten)]
    pub suite: SuiteArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// The sluice-broker binary. [default: the one beside sluice-bench]
    #[arg(long)]
    pub broker_bin: Option<std::path::PathBuf>,
    /// Data directories and logs of the brokers. [default: a temporary directory, removed afterwards]
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Kafka port of broker 0; broker i listens on base+10i (Kafka), +1 (internal), +2 (metrics). 0: free ports the OS picks.
    #[arg(long, default_value_t = 17092)]
    pub base_port: u16,
    /// Leader kills to time.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// A flag for every broker, repeatable: --broker-arg=--broker-session-timeout-ms=600
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Hard limit on the run's wall time, in seconds.
    #[arg(long, default_value_t = 600)]
    pub max_seconds: u64,
}

/// Options every mode shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Bootstrap address of any Kafka-compatible broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use; created (and deleted afterwards) by the tool.
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor of the topic.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Keep the topic after the run instead of deleting it.
    #[arg(long)]
    pub keep_topic: bool,
    /// Broker process id: sample its peak RSS and CPU time during the run (Linux /proc).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Hard limit on the run's wall time, in seconds; every loop stops at it.
    #[arg(long, default_value_t = 600)]
    pub max_seconds: u64,
    /// KEY=VALUE: a librdkafka setting for every client of the run (as
    /// kcat's -X), e.g. `security.protocol=ssl`.
    #[arg(long = "client-setting", value_name = "KEY=VALUE")]
    pub client_settings: Vec<String>,
}

/// Producer settings.
#[derive(Debug, Clone, Args)]
pub struct ProducerOpts {
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// Records to produce (per run, across producers).
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Stop producing after this many seconds even if --count is not reached.
    #[arg(long)]
    pub duration: Option<u64>,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: usize,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Number of producer instances (each its own librdkafka client).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Produce in transactions of this many records each (a transactional
    /// producer: init, then begin, N records, commit, again).
    #[arg(long)]
    pub transaction_records: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub producer: ProducerOpts,
}

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub producer: ProducerOpts,
    /// Number of consumer instances; partitions are split between them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Read the topic as it is (it must exist and hold data).
    #[arg(long)]
    pub no_fill: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Offered rate in records per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Measurement time in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Record value size in bytes (at least 8: the send time is stamped in it).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Producer linger.ms: 0 sends each record as soon as the client can,
    /// which at 10,000 records/s is close to one request per record.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle consumers, each long-polling its share of the partitions.
    #[arg(long, default_value_t = 100)]
    pub consumers: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
}

#[derive(Debug, Clone, Args)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes to produce and then consume (1 KiB records).
    #[arg(long, default_value_t = 2 << 30)]
    pub bytes: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Partitions of the idle run.
    #[arg(long, default_value_t = 1000)]
    pub idle_partitions: i32,
    /// Consumers of the idle run.
    #[arg(long, default_value_t = 100)]
    pub idle_consumers: usize,
    /// Seconds of the idle run.
    #[arg(long, default_value_t = 20)]
    pub idle_seconds: u64,
    /// Producer clients in the produce run (librdkafka is one thread per client).
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    /// Consumer clients in the consume run.
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    /// Write the Markdown table here as well as to stdout.
    #[arg(long)]
    pub markdown: Option<std::path::PathBuf>,
}

impl Common {
    pub fn deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(self.max_seconds)
    }

    /// A librdkafka configuration for this run's broker: the bootstrap and
    /// every `--client-setting`.
    pub fn client(&self) -> Result<rdkafka::ClientConfig> {
        client_config(&self.bootstrap, &self.client_settings)
    }
}

/// A librdkafka configuration for `bootstrap` with `settings` (KEY=VALUE).
pub fn client_config(bootstrap: &str, settings: &[String]) -> Result<rdkafka::ClientConfig> {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for s in settings {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("client setting {s:?}: expected KEY=VALUE"))?;
        c.set(k.trim(), v.trim());
    }
    Ok(c)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Produce(a) => {
            let r = produce::run(&a.common, &a.producer, true)?;
            topic::delete(&a.common, &a.common.topic)?;
            report::print(&a.common, &[r.into_row("produce")])
        }
        Cmd::Consume(a) => {
            let rows = consume::run(&a)?;
            report::print(&a.common, &rows)
        }
        Cmd::Latency(a) => {
            let r = latency::run(&a)?;
            report::print(&a.common, &[r])
        }
        Cmd::Idle(a) => {
            let r = idle::run(&a)?;
            report::print(&a.common, &[r])
        }
        Cmd::Suite(a) => suite::run(&a),
        Cmd::Compare(a) => compare::run(&a),
        Cmd::Failover(a) => {
            let r = failover::run(&a)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&[r])?);
            } else {
                print!("{}", report::table(&[r]));
            }
            Ok(())
        }
    }
}
