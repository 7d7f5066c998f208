//! Apache Kafka's own Java client and tools, run as separate processes
//! with the classpath `e2e/kafka/kafka.sh classpath` resolves (Maven):
//! the Admin client through `e2e/java/RaftVoters.java`, and Kafka's
//! command-line tools by their main classes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Kafka's classpath (resolved once with Maven, then cached under `.tools`).
pub fn classpath() -> Result<String> {
    let script = repo().join("e2e/kafka/kafka.sh");
    let out = Command::new(&script)
        .arg("classpath")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "kafka.sh classpath: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = String::from_utf8(out.stdout)?.trim().to_string();
    Ok(std::fs::read_to_string(&file)
        .with_context(|| format!("reading {file}"))?
        .trim()
        .to_string())
}

/// Runs one of Kafka's tools (`org.apache.kafka.tools.…`) to completion;
/// its standard output, or an error with both streams.
pub fn tool(main_class: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("java")
        .arg("-cp")
        .arg(classpath()?)
        .arg(main_class)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {main_class}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{main_class} {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Kafka's Java Admin client in a process of its own, asked one command at
/// a time (see `e2e/java/RaftVoters.java`).
pub struct RaftVoters {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl RaftVoters {
    pub fn start(bootstrap: &str) -> Result<Self> {
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(classpath()?)
            .arg(repo().join("e2e/java/RaftVoters.java"))
            .arg(bootstrap)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting java")?;
        let stdin = child.stdin.take().context("java's stdin")?;
        let stdout = child.stdout.take().context("java's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut v = RaftVoters {
            child,
            stdin,
            lines,
        };
        let first = v.next_line(Duration::from_secs(60))?;
        ensure!(first == "ready", "RaftVoters.java said {first:?}");
        Ok(v)
    }

    fn next_line(&mut self, limit: Duration) -> Result<String> {
        self.lines
            .recv_timeout(limit)
            .context("no answer from the Java Admin client in time")
    }

    /// One command; its answer line (`ok`, `error …`, or a description).
    pub fn ask(&mut self, command: &str) -> Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.next_line(Duration::from_secs(90))
    }
}

impl Drop for RaftVoters {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One replica in a `describe` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: i32,
    pub directory_id: String,
    pub log_end_offset: i64,
}

/// A `describe` answer of [`RaftVoters`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<Replica>,
    pub observers: Vec<Replica>,
}

impl Quorum {
    pub fn parse(line: &str) -> Result<Quorum> {
        let field = |name: &str| -> Result<&str> {
            line.split(' ')
                .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                .with_context(|| format!("no {name} in {line:?}"))
        };
        let replicas = |s: &str| -> Result<Vec<Replica>> {
            s.split(',')
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let parts: Vec<&str> = r.split('/').collect();
                    ensure!(parts.len() == 3, "replica {r:?}");
                    Ok(Replica {
                        id: parts[0].parse()?,
                        directory_id: parts[1].to_string(),
                        log_end_offset: parts[2].parse()?,
                    })
                })
                .collect()
        };
        Ok(Quorum {
            leader: field("leader")?.parse()?,
            epoch: field("epoch")?.parse()?,
            high_watermark: field("hw")?.parse()?,
            voters: replicas(field("voters")?)?,
            observers: replicas(field("observers")?)?,
        })
    }

    pub fn voter_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.voters.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The directory id of node `id`, voter or observer.
    pub fn directory_of(&self, id: i32) -> Option<&str> {
        self.voters
            .iter()
            .chain(&self.observers)
            .find(|r| r.id == id)
            .map(|r| r.directory_id.as_str())
    }
}
