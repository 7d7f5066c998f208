//! Failover time as a client sees it: three Sluice brokers started by the
//! tool, a one-partition topic with replication factor 3 and
//! `min.insync.replicas=2`, and a probe producer (idempotent, acks=all, one
//! record at a time). Each round kills (`kill -9`) the partition's leader
//! and measures from the kill to the acknowledgement of the first write the
//! probe sends after it, then
//! restarts the broker and waits until every replica is back in sync.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::FailoverArgs;
use crate::report::Row;

const TOPIC: &str = "sluice-bench-failover";
const BROKERS: usize = 3;

struct Broker {
    args: Vec<String>,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(&mut self, bin: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(bin);
        // The broker refuses SLUICE_* settings it does not know.
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "broker exited at start ({status}); see {}",
                        self.log.display()
                    );
                }
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            // A connection to a port nothing listens on can connect to
            // itself (TCP simultaneous open); that is not the broker.
            let listening = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_ok_and(|s| s.local_addr().ok() != Some(addr));
            if listening {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("broker on port {} did not start within 30 s", self.port)
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("kill -9")?;
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn default_broker_bin() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating sluice-bench")?;
    Ok(me.with_file_name("sluice-broker"))
}

/// `(leader, isr size)` of the probe partition, if the cluster knows it.
fn probe_state(bootstrap: &str) -> Option<(i32, usize)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let m = c.fetch_metadata(Some(TOPIC), Duration::from_secs(5)).ok()?;
    let p = m.topics().first()?.partitions().first()?;
    (p.leader() >= 0).then(|| (p.leader(), p.isr().len()))
}

fn wait_until(what: &str, deadline: Instant, mut ok: impl FnMut() -> bool) -> Result<()> {
    while !ok() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The probe's librdkafka log on stderr, when asked for, and the state of
/// its connection to each broker (from its statistics).
struct ProbeLog(bool, ConnStates);

/// Broker id -> librdkafka's state of the connection ("UP", "DOWN", ...).
type ConnStates = Arc<Mutex<std::collections::HashMap<i32, String>>>;

impl rdkafka::ClientContext for ProbeLog {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut s) = self.1.lock() {
            for b in statistics.brokers.values().filter(|b| b.nodeid >= 0) {
                s.insert(b.nodeid, b.state.clone());
            }
        }
    }

    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if self.0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            eprintln!("librdkafka {t:.3} {facility} {message}");
        }
    }
}

pub fn run(a: &FailoverArgs) -> Result<Row> {
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let bin = match &a.broker_bin {
        Some(b) => b.clone(),
        None => default_broker_bin()?,
    };
    ensure!(bin.exists(), "{} not found (--broker-bin)", bin.display());
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ports = ports(a.base_port)?;
    let port = |i: usize, k: usize| ports[3 * i + k];
    let voters = (0..BROKERS)
        .map(|i| format!("{i}@127.0.0.1:{}", port(i, 1)))
        .collect::<Vec<_>>()
        .join(",");
    let mut brokers: Vec<Broker> = (0..BROKERS)
        .map(|i| {
            let mut args = vec![
                format!("--node-id={i}"),
                format!("--listeners=127.0.0.1:{}", port(i, 0)),
                format!("--internal-listener=127.0.0.1:{}", port(i, 1)),
                format!("--metrics-listener=127.0.0.1:{}", port(i, 2)),
                format!("--log-dirs={}", dir.join(format!("b{i}")).display()),
                format!("--controller-quorum-voters={voters}"),
            ];
            args.extend(a.broker_args.iter().cloned());
            Broker {
                args,
                log: dir.join(format!("b{i}.log")),
                port: port(i, 0),
                child: None,
            }
        })
        .collect();
    for b in &mut brokers {
        b.start(&bin)?;
    }
    let bootstrap = (0..BROKERS)
        .map(|i| format!("127.0.0.1:{}", port(i, 0)))
        .collect::<Vec<_>>()
        .join(",");
    wait_until("three registered brokers", deadline, || {
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create::<BaseConsumer>()
            .ok()
            .and_then(|c| c.fetch_metadata(None, Duration::from_secs(5)).ok())
            .is_some_and(|m| m.brokers().len() == BROKERS)
    })?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for r in futures::executor::block_on(admin.create_topics(&[topic], &opts))? {
        if let Err((_, e)) = r {
            bail!("creating {TOPIC}: {e}");
        }
    }
    wait_until("a full ISR", deadline, || {
        probe_state(&bootstrap).is_some_and(|(_, isr)| isr == BROKERS)
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    // (sent, acknowledged) of every acknowledged write.
    let acks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let conns: ConnStates = Arc::default();
    let probe = {
        let (stop, acks, bootstrap) = (stop.clone(), acks.clone(), bootstrap.clone());
        let conns = conns.clone();
        std::thread::spawn(move || -> Result<()> {
            // SLUICE_BENCH_PROBE_DEBUG=metadata,topic,broker prints the
            // probe's librdkafka debug log, stamped in unix seconds like
            // the round lines, to see where a failover's time goes.
            let debug = std::env::var("SLUICE_BENCH_PROBE_DEBUG").ok();
            let p: FutureProducer<ProbeLog> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .set("statistics.interval.ms", "100")
                .set("debug", debug.clone().unwrap_or_else(|| "generic".into()))
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug)
                .create_with_context(ProbeLog(debug.is_some(), conns))?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let v = i.to_string();
                let at = Instant::now();
                let sent = futures::executor::block_on(p.send(
                    FutureRecord::to(TOPIC).partition(0).key(&v).payload(&v),
                    Duration::from_secs(60),
                ));
                if sent.is_ok() {
                    if let Ok(mut a) = acks.lock() {
                        a.push((at, Instant::now()));
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
    };

    // The probe is connected to the leader (its first write acknowledged)
    // before anything is killed: a client that has not reached the leader
    // yet has no connection to lose.
    wait_until("the probe's first acknowledged write", deadline, || {
        acks.lock().is_ok_and(|a| !a.is_empty())
    })?;
    let mut times = Vec::with_capacity(a.kills);
    let mut errors = 0u64;
    for round in 0..a.kills {
        if Instant::now() >= deadline {
            break;
        }
        let Some((leader, _)) = probe_state(&bootstrap) else {
            bail!("round {round}: no leader for the probe partition");
        };
        let victim = usize::try_from(leader)
            .ok()
            .filter(|v| *v < BROKERS)
            .context("leader id")?;
        let killed = Instant::now();
        brokers[victim].kill()?;
        let mut found = None;
        while killed.elapsed() < Duration::from_secs(30) {
            // A write sent after the kill: one acknowledged just after it
            // may have been answered by the old leader just before.
            let after = acks
                .lock()
                .ok()
                .and_then(|a| a.iter().find(|(sent, _)| *sent > killed).map(|(_, t)| *t));
            if let Some(t) = after {
                found = Some(t - killed);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            - killed.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: killed broker {victim} at unix {wall:.3}; next acknowledged write after {}",
            found.map_or("none within 30 s".to_string(), |t| format!(
                "{:.3} s",
                t.as_secs_f64()
            ))
        );
        match found {
            Some(t) => times.push(t),
            None => errors += 1,
        }
        brokers[victim].start(&bin)?;
        wait_until("the ISR to heal", deadline, || {
            probe_state(&bootstrap).is_some_and(|(_, isr)| isr == BROKERS)
        })?;
        // The restarted broker settles (group of heartbeats) before the
        // next kill, and the probe has connected to it again: its
        // reconnect backoff grew while the broker was down (up to
        // librdkafka's reconnect.backoff.max.ms, 10 s), and a kill that
        // makes the restarted broker leader before the probe reconnects
        // would time that backoff, not the failover.
        std::thread::sleep(Duration::from_secs(1));
        let up = |id: usize| {
            conns
                .lock()
                .is_ok_and(|c| c.get(&(id as i32)).is_some_and(|s| s == "UP"))
        };
        let reconnect_by = (Instant::now() + Duration::from_secs(15)).min(deadline);
        if wait_until("", reconnect_by, || up(victim)).is_err() {
            eprintln!("round {round}: the probe has not reconnected to broker {victim} in 15 s");
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Ok(r) = probe.join() {
        r?;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| {
        (!times.is_empty()).then(|| ms(times[((times.len() - 1) as f64 * q).round() as usize]))
    };
    Ok(Row {
        name: "failover: kill -9 of the leader to the next acks=all write".into(),
        records: times.len() as u64,
        seconds: times.iter().map(Duration::as_secs_f64).sum(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: times.last().map(|d| ms(*d)),
        errors,
        note: format!(
            "{} kills, 3 brokers, RF 3, min.insync.replicas 2",
            times.len()
        ),
        ..Row::default()
    })
}

/// Kafka, internal and metrics port of each broker: from `base`
/// (base+10i, +1, +2), or free ones the OS picks when `base` is 0.
fn ports(base: u16) -> Result<Vec<u16>> {
    if base != 0 {
        return Ok((0..BROKERS)
            .flat_map(|i| (0..3).map(move |k| base + 10 * i as u16 + k))
            .collect());
    }
    crate::cluster::free_ports(3 * BROKERS)
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let d = std::env::temp_dir().join(format!("sluice-bench-failover-{}", std::process::id()));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(TempDir(d))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
