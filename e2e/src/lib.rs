//! Test support for Sluice end-to-end tests: starting real `sluice-broker`
//! processes on loopback, killing and restarting them.
//!
//! The clients in these tests are real Kafka clients (librdkafka through
//! the `rdkafka` crate, and `kcat`), run against the broker over TCP.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of the `sluice-broker` binary: `SLUICE_BROKER_BIN`, or the one
/// built into this workspace's target directory.
pub fn broker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join("sluice-broker")
}

/// A free TCP port on 127.0.0.1 (see [`free_port_list`]).
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free ports (see [`free_port_list`]).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let list = free_port_list(N)?;
    let mut ports = [0u16; N];
    ports.copy_from_slice(&list);
    Ok(ports)
}

/// Lowest port test listeners take.
const TEST_PORTS_FROM: u32 = 20000;

/// The first port of the kernel's ephemeral range (where outgoing
/// connections get their source ports).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `n` distinct free ports on 127.0.0.1, held until all are chosen. They
/// come from below the ephemeral range, so that no outgoing connection
/// (a client's, a broker's) takes one between the choice and the bind,
/// nor while a broker is down for a restart; each process starts at its
/// own place in the range and never hands a port out twice.
pub fn free_port_list(n: usize) -> Result<Vec<u16>> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let end = ephemeral_start().min(65536);
    let mut held = Vec::with_capacity(n);
    if end > TEST_PORTS_FROM + 1000 {
        let span = end - TEST_PORTS_FROM;
        let _ = NEXT.compare_exchange(
            u32::MAX,
            std::process::id().wrapping_mul(7919) % span,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        for _ in 0..span {
            if held.len() == n {
                break;
            }
            let port = TEST_PORTS_FROM + NEXT.fetch_add(1, Ordering::SeqCst) % span;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
                held.push(l);
            }
        }
    }
    // No room below the ephemeral range: the kernel's choice.
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?);
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Starts `n` brokers on loopback as one cluster: node ids `0..n`, the
/// first three (or fewer) the metadata quorum's voters, each with its own
/// data directory under `dir`, plus `extra` flags for all.
pub fn start_cluster(dir: &Path, n: usize, extra: &[&str]) -> Result<Vec<BrokerProcess>> {
    start_cluster_voting(dir, n, n.min(3), extra)
}

/// Like [`start_cluster`], with the first `voters` brokers the quorum's
/// voters at the start.
pub fn start_cluster_voting(
    dir: &Path,
    n: usize,
    voters: usize,
    extra: &[&str],
) -> Result<Vec<BrokerProcess>> {
    let ports = free_port_list(3 * n)?;
    let internal = |i: usize| ports[3 * i + 2];
    let voters = (0..voters.min(n))
        .map(|i| format!("{i}@127.0.0.1:{}", internal(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut brokers = Vec::with_capacity(n);
    for i in 0..n {
        let data_dir = dir.join(format!("broker-{i}"));
        let args: Vec<String> = vec![
            "--node-id".into(),
            i.to_string(),
            "--internal-listener".into(),
            format!("127.0.0.1:{}", internal(i)),
            "--controller-quorum-voters".into(),
            voters.clone(),
        ];
        let mut b = BrokerProcess::member(data_dir, ports[3 * i], ports[3 * i + 1], args, extra);
        b.spawn()?;
        brokers.push(b);
    }
    Ok(brokers)
}

/// Like [`start_cluster`], with every broker behind link proxies that the
/// returned [`links::Links`] can cut (see the `links` module). Needs a
/// tokio runtime for the proxies.
pub async fn start_cluster_with_links(
    dir: &Path,
    n: usize,
    extra: &[&str],
) -> Result<(Vec<BrokerProcess>, links::Links)> {
    let ports = free_port_list(3 * n)?;
    let internal = |i: usize| ports[3 * i + 2];
    let ip = links::broker_ip;
    let voters = (0..n.min(3))
        .map(|i| format!("{i}@{}:{}", ip(i), internal(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut l = links::Links::new();
    // The proxies listen on the broker's own address with the broker's
    // port numbers, and forward to the broker on 127.0.0.1.
    for i in 0..n {
        for port in [ports[3 * i], internal(i)] {
            l.proxy((ip(i), port).into(), ([127, 0, 0, 1], port).into())
                .await?;
        }
    }
    let mut brokers = Vec::with_capacity(n);
    for i in 0..n {
        let data_dir = dir.join(format!("broker-{i}"));
        let args: Vec<String> = vec![
            "--node-id".into(),
            i.to_string(),
            "--advertised-listeners".into(),
            format!("{}:{}", ip(i), ports[3 * i]),
            "--internal-listener".into(),
            format!("127.0.0.1:{}", internal(i)),
            "--internal-advertised-listener".into(),
            format!("{}:{}", ip(i), internal(i)),
            "--internal-source-address".into(),
            ip(i).to_string(),
            "--controller-quorum-voters".into(),
            voters.clone(),
        ];
        let mut b = BrokerProcess::member(data_dir, ports[3 * i], ports[3 * i + 1], args, extra);
        // Started on a blocking thread: waiting for the listener must not
        // stall the proxies' runtime.
        b = tokio::task::spawn_blocking(move || b.spawn().map(|()| b)).await??;
        brokers.push(b);
    }
    Ok((brokers, l))
}

/// A broker process with its own data directory and ports.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    extra: Vec<String>,
    log_path: PathBuf,
}

/// Whether something listens on `addr`. A connection to a loopback port in
/// the ephemeral range that nothing listens on can connect to itself (TCP
/// simultaneous open, when the kernel picks that same port as the source);
/// such a connection is not a listener.
pub fn listening(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(s) => s.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

impl BrokerProcess {
    /// Starts a broker on fresh ports with `data_dir`, plus extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_listening(data_dir, free_port()?, extra)
    }

    /// Starts a broker whose `extra` flags give its own `--listeners`;
    /// `port` is one of them (the one readiness is waited on and
    /// [`bootstrap`](Self::bootstrap) names).
    pub fn start_listening(data_dir: &Path, port: u16, extra: &[&str]) -> Result<Self> {
        let [metrics_port] = free_ports::<1>()?;
        let mut b = BrokerProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            port,
            metrics_port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log_path: data_dir.with_extension("log"),
        };
        b.spawn()?;
        Ok(b)
    }

    /// A cluster member, not started yet: its cluster flags, then `extra`.
    fn member(
        data_dir: PathBuf,
        port: u16,
        metrics_port: u16,
        mut args: Vec<String>,
        extra: &[&str],
    ) -> Self {
        args.extend(extra.iter().map(|s| s.to_string()));
        BrokerProcess {
            child: None,
            log_path: data_dir.with_extension("log"),
            data_dir,
            port,
            metrics_port,
            extra: args,
        }
    }

    /// The internal (quorum) listener as the other brokers reach it.
    pub fn internal_address(&self) -> Option<String> {
        let after = |flag: &str| {
            self.extra
                .iter()
                .position(|a| a == flag)
                .and_then(|i| self.extra.get(i + 1))
                .cloned()
        };
        after("--internal-advertised-listener").or_else(|| after("--internal-listener"))
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = broker_bin();
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build -p sluice-broker`",
                bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut cmd = Command::new(&bin);
        // The broker refuses unknown SLUICE_* settings; the test harness's
        // own (SLUICE_FAULT_ROUNDS, ...) are not for it.
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") {
                cmd.env_remove(k);
            }
        }
        if !self.extra.iter().any(|a| a == "--listeners") {
            cmd.arg("--listeners")
                .arg(format!("127.0.0.1:{}", self.port));
        }
        let child = cmd
            .arg("--metrics-listener")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--log-dirs")
            .arg(&self.data_dir)
            .args(&self.extra)
            .env("SLUICE_LOGGING_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "broker exited during startup ({status}); log:\n{}",
                        self.log()
                    );
                }
            }
            if listening(addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "broker did not listen on {addr} within {timeout:?}; log:\n{}",
            self.log()
        )
    }

    /// The broker's data directory (`log.dirs`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no flush, no checkpoint, no clean-shutdown marker.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("kill -9")?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        self.sigterm()?;
        self.wait_exit()
    }

    /// Sends SIGTERM (see [`BrokerProcess::wait_exit`]).
    pub fn sigterm(&self) -> Result<()> {
        match &self.child {
            Some(c) => signal(c.id(), libc::SIGTERM),
            None => Ok(()),
        }
    }

    /// Waits up to 30 s for the process to exit; returns the exit code.
    pub fn wait_exit(&mut self) -> Result<Option<i32>> {
        let Some(mut c) = self.child.take() else {
            return Ok(None);
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("broker ignored SIGTERM for 30s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same ports and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fetches the Prometheus text from the metrics endpoint.
    pub fn metrics(&self) -> Result<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(pid: u32, sig: i32) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// What a kcat run did.
pub struct KcatRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kcat with `args` (and `stdin`), bounded to `secs` seconds by
/// coreutils' `timeout`.
pub fn kcat_run<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdin: Option<&[u8]>,
    secs: u32,
) -> Result<KcatRun> {
    use std::io::Write;
    let bin = kcat().context("kcat is required (scripts/test.sh installs it)")?;
    let mut child = Command::new("timeout")
        .arg(secs.to_string())
        .arg(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning kcat")?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    Ok(KcatRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Whether `kcat` (or `kafkacat`) is installed, and its name.
pub fn kcat() -> Option<&'static str> {
    ["kcat", "kafkacat"].into_iter().find(|name| {
        Command::new(name)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

pub mod apache_kafka;
pub mod certs;
pub mod java;
pub mod links;
pub mod rd;
pub mod wire;
