//! The broker binary's operations surface: invalid settings are refused
//! with the setting's name, JSON logs on request, defaults with no flags.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_e2e::{BrokerProcess, broker_bin};

fn run_expecting_failure(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(broker_bin());
    cmd.args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    ensure!(
        !out.status.success(),
        "{args:?} {env:?} should have been refused"
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn invalid_settings_are_refused_by_name() -> Result<()> {
    let e = run_expecting_failure(&["--num-partitions", "0"], &[])?;
    ensure!(e.contains("num-partitions"), "{e}");
    let e = run_expecting_failure(&[], &[("SLUICE_LOG_RETENTON_MS", "10")])?;
    ensure!(e.contains("SLUICE_LOG_RETENTON_MS"), "{e}");
    let e = run_expecting_failure(&["--listeners", "0.0.0.0:1"], &[])?;
    ensure!(e.contains("advertised.listeners"), "{e}");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("server.properties");
    std::fs::write(&file, "log.retention.hourz=1\n")?;
    let e = run_expecting_failure(&["--config", &file.to_string_lossy()], &[])?;
    ensure!(e.contains("log.retention.hourz"), "{e}");
    Ok(())
}

#[test]
fn json_logs_on_request() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut b = BrokerProcess::start(&dir.path().join("data"), &["--logging-format", "json"])?;
    std::thread::sleep(Duration::from_millis(200));
    b.terminate()?;
    let log = b.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    ensure!(!lines.is_empty(), "no JSON lines: {log}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l)?;
        ensure!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
    ensure!(log.contains("\"message\":\"broker started\""), "{log}");
    Ok(())
}

/// With no flags at all: 127.0.0.1:9092 and ./sluice-data. Skipped when
/// something else already holds port 9092 on this machine.
#[test]
fn runs_with_no_flags() -> Result<()> {
    if std::net::TcpListener::bind("127.0.0.1:9092").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9464").is_err()
    {
        println!("SKIPPED: 127.0.0.1:9092 or :9464 is in use on this machine");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(broker_bin())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect("127.0.0.1:9092").is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait()?;
    ensure!(up, "no listener on 127.0.0.1:9092");
    ensure!(status.success(), "exit {status}");
    ensure!(
        dir.path()
            .join("sluice-data")
            .join("meta.properties")
            .exists()
    );
    Ok(())
}
