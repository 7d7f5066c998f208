//! One container as one process: started in a mount namespace of its own
//! (util-linux `unshare`) where each volume is bind-mounted at its
//! `mountPath`, so that `/var/lib/sluice` of two brokers are two
//! directories; stopped with SIGTERM, then SIGKILL after the grace period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};

#[derive(Debug, Clone)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell script run inside the new mount namespace before `exec`.
pub fn mount_script(mounts: &[Mount]) -> String {
    let mut s = String::from("set -e\n");
    for m in mounts {
        let src = quote(&m.source.to_string_lossy());
        let dst = quote(&m.target);
        if m.source.is_file() {
            s.push_str(&format!("mkdir -p \"$(dirname {dst})\"\ntouch {dst}\n"));
        } else {
            s.push_str(&format!("mkdir -p {dst}\n"));
        }
        s.push_str(&format!("mount --bind {src} {dst}\n"));
        if m.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {dst}\n"));
        }
    }
    s.push_str("cd /\nexec \"$@\"\n");
    s
}

pub fn spawn(
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    mounts: &[Mount],
    log: &Path,
) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(mount_script(mounts))
        .arg("process-kubelet")
        .arg(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("starting {} under unshare", binary.display()))
}

pub fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| Pid::from_raw(p as i32)) {
        let _ = kill_process(pid, sig);
    }
}

/// SIGTERM, up to `grace` for the process to exit, then SIGKILL.
/// Returns the exit code (128 + signal for a signalled process).
pub async fn stop(child: &mut Child, grace: Duration) -> i32 {
    signal(child, Signal::TERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    status.map(exit_code).unwrap_or(-1)
}

pub fn exit_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_quoted_and_read_only_remounted() {
        let s = mount_script(&[Mount {
            source: PathBuf::from("/state/it's"),
            target: "/etc/sluice".into(),
            read_only: true,
        }]);
        assert!(
            s.contains(r"mount --bind '/state/it'\''s' '/etc/sluice'"),
            "{s}"
        );
        assert!(s.contains("mount -o remount,bind,ro '/etc/sluice'"), "{s}");
        assert!(s.ends_with("exec \"$@\"\n"));
    }

    #[tokio::test]
    async fn a_process_sees_its_volume_at_the_mount_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).expect("vol");
        std::fs::write(vol.join("hello"), "from the volume").expect("write");
        let target = dir.path().join("mnt").to_string_lossy().into_owned();
        let log = dir.path().join("log");
        let mut child = spawn(
            Path::new("/bin/cat"),
            &[format!("{target}/hello")],
            &[],
            &[Mount {
                source: vol.clone(),
                target: target.clone(),
                read_only: true,
            }],
            &log,
        )
        .expect("spawn");
        let status = child.wait().await.expect("wait");
        let out = std::fs::read_to_string(&log).expect("log");
        assert!(status.success(), "{out}");
        assert_eq!(out, "from the volume");
        // The mount was private to that process.
        assert!(!Path::new(&target).join("hello").exists());
    }
}
