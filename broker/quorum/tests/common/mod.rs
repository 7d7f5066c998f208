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

/// `n` free loopback ports, held until all are chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
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
