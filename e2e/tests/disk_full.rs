//! A full disk: produce gets KAFKA_STORAGE_ERROR, nothing acknowledged is
//! lost, the broker stays up, and writes resume once space is freed.
//! Needs root to mount a small tmpfs; says so and skips otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use sluice_e2e::BrokerProcess;
use sluice_e2e::rd::{consume, producer};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_without_losing_acknowledged_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mnt) = Tmpfs::mount(&dir.path().join("mnt"), "8m") else {
        println!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return Ok(());
    };
    let filler = mnt.0.join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).context("writing filler")?;
    let mut broker = BrokerProcess::start(&mnt.0.join("data"), &["--num-partitions", "1"])?;
    let p = producer(
        &broker.bootstrap(),
        &[
            ("acks", "1"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "5000"),
            ("linger.ms", "0"),
        ],
    )?;
    let value = vec![b'd'; 16 * 1024];
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    // Bounded: the disk holds well under 1000 such records.
    for i in 0..1000 {
        let key = format!("k{i}");
        let r = p
            .send(
                FutureRecord::to("full")
                    .partition(0)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await;
        match r {
            Ok(d) => acked.push((i, d.offset)),
            Err((e, _)) => errors.push(e.to_string()),
        }
        if errors.len() >= 5 {
            break;
        }
    }
    ensure!(!errors.is_empty(), "the disk never filled up");
    ensure!(
        errors
            .iter()
            .any(|e| e.contains("storage") || e.contains("Storage")),
        "errors: {errors:?}"
    );
    ensure!(
        broker.is_running(),
        "broker died on a full disk: {}",
        broker.log()
    );
    ensure!(broker.log().contains("append failed"), "{}", broker.log());

    // Free space: writes resume, at the offset after the last acknowledged.
    std::fs::remove_file(&filler)?;
    let d = p
        .send(
            FutureRecord::to("full")
                .partition(0)
                .key("after")
                .payload("small"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let last = acked.last().map(|(_, o)| *o).unwrap_or(-1);
    ensure!(
        d.offset == last + 1,
        "next offset {} after last acknowledged {last}",
        d.offset
    );

    // Everything acknowledged reads back, in order, once.
    let b = broker.bootstrap();
    let n = acked.len() + 1;
    let got =
        tokio::task::spawn_blocking(move || consume(&b, "full", 1, n, Duration::from_secs(30)))
            .await??;
    for ((i, offset), r) in acked.iter().zip(&got) {
        ensure!(r.offset == *offset && r.key.as_deref() == Some(format!("k{i}").as_bytes()));
    }
    // And after a crash, recovery keeps them too.
    broker.kill9()?;
    broker.restart()?;
    let b = broker.bootstrap();
    let again =
        tokio::task::spawn_blocking(move || consume(&b, "full", 1, n, Duration::from_secs(30)))
            .await??;
    ensure!(again == got);
    broker.kill9()?;
    println!(
        "{} records acknowledged before the disk filled; {} refused",
        acked.len(),
        errors.len()
    );
    Ok(())
}
