//! Links between brokers that a test can cut: a TCP proxy in front of every
//! broker's Kafka and internal listeners, each broker on its own loopback
//! address (127.0.0.11, .12, ...) and dialling its peers from it
//! (`internal.source.address`), so that a proxy knows which broker a
//! connection comes from. Clients connect from 127.0.0.1 and are never cut.
//!
//! A cut link is a black hole, as a network partition is: open connections
//! stop carrying bytes (nothing is closed, nobody is told), new ones are
//! accepted and carry nothing. Healing closes what the cut held, as a TCP
//! connection that timed out during the partition would be.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The loopback address of broker `i`.
pub fn broker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
}

#[derive(Debug, Default)]
struct State {
    /// Directed pairs (from, to) whose traffic is dropped.
    cut: Mutex<BTreeSet<(IpAddr, IpAddr)>>,
}

/// The cuttable links of a cluster; dropping it stops the proxies.
#[derive(Debug)]
pub struct Links {
    state: Arc<State>,
    changed: watch::Sender<u64>,
    proxies: Vec<JoinHandle<()>>,
}

impl Drop for Links {
    fn drop(&mut self) {
        for p in &self.proxies {
            p.abort();
        }
    }
}

impl Links {
    pub fn new() -> Self {
        Links {
            state: Arc::default(),
            changed: watch::channel(0).0,
            proxies: Vec::new(),
        }
    }

    fn notify(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Cuts the link between brokers `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        if let Ok(mut c) = self.state.cut.lock() {
            c.insert((broker_ip(a), broker_ip(b)));
            c.insert((broker_ip(b), broker_ip(a)));
        }
        self.notify();
    }

    /// Cuts broker `a` off from every other of the `n` brokers.
    pub fn isolate(&self, a: usize, n: usize) {
        for b in (0..n).filter(|b| *b != a) {
            self.cut(a, b);
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        if let Ok(mut c) = self.state.cut.lock() {
            c.clear();
        }
        self.notify();
    }

    /// Proxies `listen` (on broker `owner`'s address) to `backend`.
    pub async fn proxy(&mut self, listen: SocketAddr, backend: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the link proxy on {listen}"))?;
        let state = Arc::clone(&self.state);
        let changed = self.changed.subscribe();
        self.proxies.push(tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let key = (peer.ip(), listen.ip());
                tokio::spawn(serve(
                    inbound,
                    backend,
                    key,
                    Arc::clone(&state),
                    changed.clone(),
                ));
            }
        }));
        Ok(())
    }
}

impl Default for Links {
    fn default() -> Self {
        Self::new()
    }
}

fn is_cut(state: &State, key: (IpAddr, IpAddr)) -> bool {
    state.cut.lock().map(|c| c.contains(&key)).unwrap_or(false)
}

async fn until(
    state: &State,
    changed: &mut watch::Receiver<u64>,
    key: (IpAddr, IpAddr),
    cut: bool,
) {
    while is_cut(state, key) != cut {
        if changed.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(
    mut inbound: TcpStream,
    backend: SocketAddr,
    key: (IpAddr, IpAddr),
    state: Arc<State>,
    mut changed: watch::Receiver<u64>,
) {
    if is_cut(&state, key) {
        // Held open, carrying nothing, until the link heals.
        until(&state, &mut changed, key, false).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut watching = changed.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = until(&state, &mut watching, key, true) => {
            until(&state, &mut changed, key, false).await;
        }
    }
}
