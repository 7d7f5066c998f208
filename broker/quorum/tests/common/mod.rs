//! Helpers shared by the quorum's integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use sluice_quorum::{MemberConfig, QuorumConfig};

/// Broker heartbeats and sessions of the tests' members.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const SESSION: Duration = Duration::from_millis(600);

/// `n` free loopback ports, held until all are chosen, from below the
/// kernel's ephemeral range (as `sluice_e2e::free_port_list`, which this
/// crate cannot depend on): a member restarted on its port must find it
/// free, and an outgoing connection's source port could take one from the
/// ephemeral range while the member is down.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FROM: u32 = 20000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
        .min(65536);
    let span = end.saturating_sub(FROM).max(1);
    let start = std::process::id().wrapping_mul(7919);
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        let port = FROM + (start.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst)) % span);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(l);
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").expect("bind"));
    }
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// Member `id` of a quorum whose voters are all of `ports` on loopback,
/// its directory under `dir`.
pub fn quorum_config(id: u64, dir: &Path, ports: &[u16]) -> QuorumConfig {
    let voters: BTreeMap<u64, String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u64, format!("127.0.0.1:{p}")))
        .collect();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", ports[id as usize])
        .parse()
        .expect("addr");
    QuorumConfig::new(id, dir.join(format!("node-{id}")), listen, voters)
}

/// Broker `id` of a cluster whose voters are brokers 0, 1 and 2 on
/// `ports`, its quorum directory under `dir`: 100 ms heartbeats, 600 ms
/// sessions.
pub fn member_config(id: i32, dir: &Path, ports: &[u16]) -> MemberConfig {
    let voters: BTreeMap<u64, String> = (0..3)
        .map(|i| (i as u64, format!("127.0.0.1:{}", ports[i])))
        .collect();
    let address = format!("127.0.0.1:{}", ports[id as usize]);
    MemberConfig {
        quorum: QuorumConfig::new(
            id as u64,
            dir.join(format!("b{id}")),
            address.parse().expect("addr"),
            voters,
        ),
        broker_id: id,
        kafka_address: format!("127.0.0.1:{}", 19000 + id),
        listeners: Default::default(),
        internal_address: address,
        rack: None,
        heartbeat_interval: HEARTBEAT,
        session_timeout: SESSION,
    }
}
