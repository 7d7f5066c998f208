//! `sluice-bench compare`'s three-broker rounds: a cluster of three nodes
//! of one broker, each started by its own command line, measured on
//! produce throughput to a topic of RF 3 at acks=all and on leader failover
//! as a user lives it: a steady idempotent acks=all load, the leader of its
//! partition killed (`kill -9`) again and again and started again at once,
//! each kill timed to the acknowledgement of the first record the load sent
//! after it. Nothing waits for the client to reconnect: its backoffs after
//! earlier failures are part of what is measured.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::{Common, ProducerOpts, produce};

/// Nodes of a cluster.
pub const NODES: usize = 3;
const FAILOVER_TOPIC: &str = "sluice-bench-failover";
/// The longest a kill may take to fail over before it counts as failed.
const KILL_LIMIT: Duration = Duration::from_secs(60);

/// What to run, and how hard.
pub struct Plan<'a> {
    /// One node's command line, placeholders unfilled.
    pub command: &'a str,
    pub dir: &'a Path,
    /// A token the same for every node of this cluster (`{cluster_id}`).
    pub cluster: String,
    pub start_limit: Duration,
    pub produce_seconds: u64,
    pub kills: usize,
    pub load_rate: u64,
    /// The run's hard limit.
    pub deadline: Instant,
}

/// A round's three-broker figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub rf3_produce_mb_s: Option<f64>,
    /// Kill to the next acknowledged write, of every kill that had one, sorted.
    pub failovers: Vec<Duration>,
    /// Kills after which no record sent was acknowledged within a minute.
    pub unrecovered: usize,
    /// Records of the load whose delivery failed.
    pub failed_deliveries: u64,
    pub started_in: Option<Duration>,
}

impl Figures {
    pub fn failover_quantile(&self, q: f64) -> Option<f64> {
        let n = self.failovers.len();
        (n > 0).then(|| self.failovers[((n - 1) as f64 * q).round() as usize].as_secs_f64())
    }
}

/// One node: its filled-in command line, started again the same way.
struct Node {
    command: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", self.command))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.command))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9` (the command exec's the broker, so this is the broker).
    fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("kill -9")?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 30 s.
    fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                c.kill()?;
                c.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `n` distinct loopback ports free at the time of asking.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    // All held until all are chosen, so none repeats.
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("choosing free ports")?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The three nodes, started, with the bootstrap list of all three.
struct Cluster {
    nodes: Vec<Node>,
    bootstrap: String,
}

impl Cluster {
    fn start(p: &Plan) -> Result<(Cluster, Duration)> {
        let ports = free_ports(3 * NODES)?;
        let port = |i: usize, k: usize| ports[3 * i + k];
        let voters = (0..NODES)
            .map(|i| format!("{i}@127.0.0.1:{}", port(i, 1)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let dir = p.dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            let command = p
                .command
                .replace("{node}", &i.to_string())
                .replace("{dir}", &dir.join("data").display().to_string())
                .replace("{port}", &port(i, 0).to_string())
                .replace("{port2}", &port(i, 1).to_string())
                .replace("{port3}", &port(i, 2).to_string())
                .replace("{voters}", &voters)
                .replace("{cluster_id}", &p.cluster);
            nodes.push(Node {
                command,
                log: dir.join("broker.log"),
                child: None,
            });
        }
        let bootstrap = (0..NODES)
            .map(|i| format!("127.0.0.1:{}", port(i, 0)))
            .collect::<Vec<_>>()
            .join(",");
        let began = Instant::now();
        let mut c = Cluster { nodes, bootstrap };
        for n in &mut c.nodes {
            n.start()?;
        }
        let limit = (began + p.start_limit).min(p.deadline);
        c.wait("every node in the Metadata answer", limit, |c| {
            Ok(c.brokers_listed() == NODES)
        })?;
        Ok((c, began.elapsed()))
    }

    fn stop(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.stop()?;
        }
        Ok(())
    }

    /// Waits for `done`, failing at `by` or when a node exits by itself.
    fn wait(
        &mut self,
        what: &str,
        by: Instant,
        mut done: impl FnMut(&mut Cluster) -> Result<bool>,
    ) -> Result<()> {
        loop {
            if done(self)? {
                return Ok(());
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if let Some(status) = n.exited()? {
                    bail!(
                        "node {i} exited ({status}) waiting for {what}; its log: {}",
                        n.log.display()
                    );
                }
            }
            ensure!(Instant::now() < by, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn probe(&self) -> Option<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .create()
            .ok()
    }

    fn brokers_listed(&self) -> usize {
        self.probe()
            .and_then(|c| c.fetch_metadata(None, Duration::from_secs(5)).ok())
            .map_or(0, |m| m.brokers().len())
    }

    /// `(leader, ISR size)` of partition 0 of `topic`, once it has a leader.
    fn partition_state(&self, topic: &str) -> Option<(i32, usize)> {
        let c = self.probe()?;
        let m = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let p = m.topics().first()?.partitions().first()?;
        (p.leader() >= 0).then(|| (p.leader(), p.isr().len()))
    }
}

/// Starts a cluster, measures it, stops it.
pub fn measure(p: &Plan, producer: &ProducerOpts, common: &Common) -> Result<Figures> {
    let (mut cluster, started_in) = Cluster::start(p)?;
    let outcome = measure_on(&mut cluster, p, producer, common);
    cluster.stop()?;
    let mut figures = outcome?;
    figures.started_in = Some(started_in);
    Ok(figures)
}

fn measure_on(
    cluster: &mut Cluster,
    p: &Plan,
    producer: &ProducerOpts,
    common: &Common,
) -> Result<Figures> {
    let c = Common {
        bootstrap: cluster.bootstrap.clone(),
        replication_factor: NODES as i32,
        broker_pid: None,
        topic: format!("{}-rf3", common.topic),
        ..common.clone()
    };
    eprintln!(
        "  [cluster 1/2] produce to RF 3 at acks=all for {} s",
        p.produce_seconds
    );
    let popts = ProducerOpts {
        acks: "all".into(),
        count: u64::MAX / 2,
        duration: Some(p.produce_seconds),
        ..producer.clone()
    };
    let prod = produce::run(&c, &popts, true)?;
    let rf3_produce_mb_s = prod.into_row("rf3").mb_per_s;
    crate::topic::delete(&c, &c.topic)?;

    eprintln!(
        "  [cluster 2/2] failover: {} kills under {} records/s",
        p.kills, p.load_rate
    );
    let mut f = failover(cluster, p)?;
    f.rf3_produce_mb_s = rf3_produce_mb_s;
    Ok(f)
}

/// Send time and acknowledgement time of every acknowledged record.
type Acks = Arc<Mutex<Vec<(Instant, Instant)>>>;

struct LoadCtx {
    acks: Acks,
    failed: Arc<AtomicU64>,
}

impl ClientContext for LoadCtx {}

impl ProducerContext for LoadCtx {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        match r {
            Ok(_) => {
                if let Ok(mut a) = self.acks.lock() {
                    a.push((*sent, Instant::now()));
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The steady load: `rate` records a second, idempotent, acks=all, to
/// partition 0, until `stop` (or the deadline).
fn load(
    bootstrap: String,
    rate: u64,
    acks: Acks,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> Result<()> {
    let p: BaseProducer<LoadCtx> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("log_level", "0")
        .create_with_context(LoadCtx { acks, failed })
        .context("creating the load producer")?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let began = Instant::now();
    let mut sent = 0u64;
    let value = [b'x'; 100];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let due = began + interval.mul_f64(sent as f64);
        let now = Instant::now();
        if now < due {
            p.poll(due - now);
            continue;
        }
        let record = BaseRecord::with_opaque_to(FAILOVER_TOPIC, Box::new(Instant::now()))
            .partition(0)
            .payload(&value[..])
            .key("k");
        match p.send(record) {
            Ok(()) => sent += 1,
            // The local queue is full (the cluster is failing over): wait.
            Err(_) => {
                p.poll(Duration::from_millis(10));
            }
        }
        p.poll(Duration::ZERO);
    }
    let _ = p.flush(Duration::from_secs(30));
    Ok(())
}

fn failover(cluster: &mut Cluster, p: &Plan) -> Result<Figures> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .set("log_level", "0")
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = NewTopic::new(FAILOVER_TOPIC, 1, TopicReplication::Fixed(NODES as i32))
        .set("min.insync.replicas", "2");
    for r in futures::executor::block_on(admin.create_topics(&[topic], &opts))? {
        if let Err((_, e)) = r {
            bail!("creating {FAILOVER_TOPIC}: {e}");
        }
    }
    let full_isr = |c: &mut Cluster| {
        Ok(c.partition_state(FAILOVER_TOPIC)
            .is_some_and(|(_, isr)| isr == NODES))
    };
    let heal_by = |d: Duration| (Instant::now() + d).min(p.deadline);
    cluster.wait("a full ISR", heal_by(Duration::from_secs(60)), full_isr)?;

    let acks: Acks = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (bootstrap, acks, failed, stop) = (
            cluster.bootstrap.clone(),
            acks.clone(),
            failed.clone(),
            stop.clone(),
        );
        let (rate, deadline) = (p.load_rate, p.deadline);
        std::thread::spawn(move || load(bootstrap, rate, acks, failed, stop, deadline))
    };
    let outcome = kills(cluster, p, &acks, full_isr);
    stop.store(true, Ordering::Relaxed);
    match loader.join() {
        Ok(r) => r?,
        Err(_) => bail!("the load thread panicked"),
    }
    let (mut failovers, unrecovered) = outcome?;
    failovers.sort();
    Ok(Figures {
        failovers,
        unrecovered,
        failed_deliveries: failed.load(Ordering::Relaxed),
        ..Figures::default()
    })
}

/// The kills: each times kill to the next acknowledged write, restarts the
/// node at once and waits for a full ISR (not for the client).
fn kills(
    cluster: &mut Cluster,
    p: &Plan,
    acks: &Acks,
    full_isr: impl Fn(&mut Cluster) -> Result<bool> + Copy,
) -> Result<(Vec<Duration>, usize)> {
    let acked = || acks.lock().map_or(0, |a| a.len());
    let steady_by = (Instant::now() + Duration::from_secs(30)).min(p.deadline);
    cluster.wait("the load's first acknowledgements", steady_by, |_| {
        Ok(acked() > 0)
    })?;
    // A few seconds of steady load before the first kill.
    std::thread::sleep(Duration::from_secs(3));
    let mut times = Vec::with_capacity(p.kills);
    let mut unrecovered = 0;
    for round in 0..p.kills {
        if Instant::now() >= p.deadline {
            break;
        }
        let Some((leader, _)) = cluster.partition_state(FAILOVER_TOPIC) else {
            bail!("kill {round}: the partition has no leader");
        };
        let victim = usize::try_from(leader)
            .ok()
            .filter(|v| *v < NODES)
            .with_context(|| format!("leader id {leader}"))?;
        let killed = Instant::now();
        cluster.nodes[victim].kill()?;
        let mut found = None;
        while killed.elapsed() < KILL_LIMIT && Instant::now() < p.deadline {
            // A record sent after the kill: one acknowledged just after it
            // may have been answered by the old leader just before.
            let after = acks.lock().ok().and_then(|a| {
                a.iter()
                    .rev()
                    .take_while(|(sent, _)| *sent > killed)
                    .last()
                    .map(|(_, t)| *t)
            });
            if let Some(t) = after {
                found = Some(t.saturating_duration_since(killed));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        eprintln!(
            "  kill {}: node {victim}; next acknowledged write after {}",
            round + 1,
            found.map_or("none within a minute".into(), |t| format!(
                "{:.3} s",
                t.as_secs_f64()
            ))
        );
        match found {
            Some(t) => times.push(t),
            None => unrecovered += 1,
        }
        cluster.nodes[victim].start()?;
        let by = (Instant::now() + Duration::from_secs(120)).min(p.deadline);
        cluster.wait("the ISR to heal", by, full_isr)?;
        // Steady load on the healed cluster before the next kill.
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok((times, unrecovered))
}
