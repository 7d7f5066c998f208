//! A seeded, deterministic simulation of one RF-3 partition with
//! `min.insync.replicas=2` on four brokers: the real controller code
//! (`sluice_quorum`: metadata image, fencing, leader and ISR changes,
//! reassignment) and the real replication state machines
//! (`sluice_replication`: leader, follower truncation, epoch cache) exchange
//! messages over a simulated network with loss, delay (hence reordering),
//! link cuts, broker crashes and restarts, controller failover, and
//! reassignments to random replica sets (and their cancellation), on
//! simulated time. A broker removed from the replicas drops its copy.
//!
//! A client keeps producing with `acks=all`; every write it gets an answer
//! for is recorded. After the faults stop and the cluster settles, the
//! leader's log must hold every acknowledged record at its acknowledged
//! offset, and every ISR member the same log up to the high watermark.
//!
//! `SLUICE_SIM_SEEDS=N` runs N seeds (default 300); `SLUICE_SIM_SEED=S`
//! replays one. A failure prints its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use sluice_quorum::controller::{self, Heartbeats};
use sluice_quorum::image::{Command, MetadataImage, Outcome, PartitionState};
use sluice_replication::epochs::{EpochCache, EpochEnd};
use sluice_replication::follower;
use sluice_replication::leader::{AckState, IsrChange, LeaderState};

const N: i32 = 4;
const CONTROLLER: i32 = 100;
const CLIENT: i32 = 200;
const TOPIC: &str = "t";
const LAG_MAX_MS: u64 = 300;
const SESSION_MS: u64 = 200;
const MIN_ISR: usize = 2;
const FAULT_PHASE_MS: u64 = 6_000;
const SETTLE_MS: u64 = 4_000;

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Heartbeat {
        from: i32,
        epoch: u64,
    },
    Register {
        from: i32,
        incarnation: u64,
    },
    Registered {
        epoch: u64,
    },
    Metadata(PartitionState),
    AlterIsr {
        from: i32,
        leader_epoch: i32,
        change: IsrChange,
    },
    Fetch {
        from: i32,
        leader_epoch: i32,
        offset: i64,
    },
    FetchResp {
        leader_epoch: i32,
        offset: i64,
        records: Vec<(i32, u64)>,
        hw: i64,
    },
    EpochQuery {
        from: i32,
        leader_epoch: i32,
        epoch: Option<i32>,
    },
    EpochAnswer {
        leader_epoch: i32,
        answer: Option<EpochEnd>,
    },
    Produce {
        value: u64,
    },
    ProduceResult {
        value: u64,
        offset: Option<i64>,
    },
}

enum Role {
    None,
    Leader {
        state: LeaderState,
        pending: Vec<(i64, u64)>,
    },
    Follower {
        leader: i32,
        leader_epoch: i32,
        truncated: bool,
        last_sent: u64,
    },
}

struct Broker {
    id: i32,
    incarnation: u64,
    alive: bool,
    epoch: Option<u64>,
    log: Vec<(i32, u64)>,
    cache: EpochCache,
    hw: i64,
    meta: Option<PartitionState>,
    role: Role,
}

struct Controller {
    img: MetadataImage,
    heartbeats: Heartbeats,
    since: u64,
}

struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, i32, i32)>>,
    msgs: BTreeMap<u64, Msg>,
    brokers: Vec<Broker>,
    ctl: Controller,
    cut: BTreeSet<(i32, i32)>,
    faults: bool,
    next_value: u64,
    /// value -> when it was sent; requests time out after 200 ms.
    in_flight: BTreeMap<u64, u64>,
    acked: BTreeMap<u64, i64>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut img = MetadataImage::default();
        for id in 0..N {
            let Outcome::Registered { epoch } = img.apply(&Command::RegisterBroker {
                id,
                incarnation: 1,
                kafka_address: String::new(),
                listeners: Default::default(),
                internal_address: String::new(),
                rack: None,
                directory_id: Default::default(),
            }) else {
                panic!("register")
            };
            img.apply(&Command::SetFenced {
                id,
                epoch,
                fenced: false,
            });
        }
        img.apply(&Command::CreateTopic {
            name: TOPIC.into(),
            id: [0; 16],
            assignment: vec![vec![0, 1, 2]],
            configs: BTreeMap::new(),
        });
        let brokers = (0..N)
            .map(|id| Broker {
                id,
                incarnation: 1,
                alive: true,
                epoch: Some(img.brokers[&id].epoch),
                log: Vec::new(),
                cache: EpochCache::default(),
                hw: 0,
                meta: None,
                role: Role::None,
            })
            .collect();
        let mut s = Sim {
            rng: Rng(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            msgs: BTreeMap::new(),
            brokers,
            ctl: Controller {
                img,
                heartbeats: Heartbeats::new(),
                since: 0,
            },
            cut: BTreeSet::new(),
            faults: true,
            next_value: 1,
            in_flight: BTreeMap::new(),
            acked: BTreeMap::new(),
            trace: Vec::new(),
        };
        s.push_metadata();
        s
    }

    fn partition(&self) -> PartitionState {
        self.ctl.img.topics[TOPIC].partitions[0].clone()
    }

    /// Sends with random delay (1-15 ms, so messages reorder) and loss.
    fn send(&mut self, from: i32, to: i32, msg: Msg) {
        if self.faults {
            let (a, b) = (from.min(to), from.max(to));
            if self.cut.contains(&(a, b)) || self.rng.chance(20) {
                return;
            }
        }
        let delay = 1 + self.rng.below(15);
        self.seq += 1;
        self.msgs.insert(self.seq, msg);
        self.queue
            .push(Reverse((self.now + delay, self.seq, from, to)));
    }

    fn push_metadata(&mut self) {
        let p = self.partition();
        for id in 0..N {
            self.send(CONTROLLER, id, Msg::Metadata(p.clone()));
        }
    }

    fn controller_write(&mut self, cmd: Command) -> Outcome {
        let o = self.ctl.img.apply(&cmd);
        if o != Outcome::Ok && !matches!(o, Outcome::Registered { .. }) {
            return o;
        }
        self.trace.push(format!("{} ctl {cmd:?}", self.now));
        o
    }

    fn controller_tick(&mut self) {
        let mut changed = false;
        for c in controller::brokers_to_fence(
            &self.ctl.img,
            &self.ctl.heartbeats,
            self.now,
            self.ctl.since,
            SESSION_MS,
        ) {
            changed |= self.controller_write(c) == Outcome::Ok;
        }
        for c in controller::partition_changes(&self.ctl.img) {
            changed |= self.controller_write(c) == Outcome::Ok;
        }
        if changed || self.now % 100 == 0 {
            self.push_metadata();
        }
    }

    fn deliver(&mut self, from: i32, to: i32, msg: Msg) {
        if to == CONTROLLER {
            return self.at_controller(from, msg);
        }
        if to == CLIENT {
            if let Msg::ProduceResult { value, offset } = msg {
                self.in_flight.remove(&value);
                if let Some(o) = offset {
                    self.acked.insert(value, o);
                }
            }
            return;
        }
        if !self.brokers[to as usize].alive {
            return;
        }
        self.at_broker(to as usize, from, msg);
    }

    fn at_controller(&mut self, _from: i32, msg: Msg) {
        match msg {
            Msg::Heartbeat { from, epoch } => {
                let Some(b) = self.ctl.img.brokers.get(&from).cloned() else {
                    return;
                };
                if b.epoch != epoch {
                    return;
                }
                self.ctl.heartbeats.insert(from, (epoch, self.now));
                if b.fenced
                    && self.controller_write(Command::SetFenced {
                        id: from,
                        epoch,
                        fenced: false,
                    }) == Outcome::Ok
                {
                    self.push_metadata();
                }
            }
            Msg::Register { from, incarnation } => {
                if let Outcome::Registered { epoch } =
                    self.controller_write(Command::RegisterBroker {
                        id: from,
                        incarnation,
                        kafka_address: String::new(),
                        listeners: Default::default(),
                        internal_address: String::new(),
                        rack: None,
                        directory_id: Default::default(),
                    })
                {
                    self.send(CONTROLLER, from, Msg::Registered { epoch });
                }
            }
            Msg::AlterIsr {
                from,
                leader_epoch,
                change,
            } => {
                let p = self.partition();
                // Only the current leader, in its current epoch, changes the ISR.
                if p.leader != from || p.leader_epoch != leader_epoch {
                    return;
                }
                let o = self.controller_write(Command::ChangePartition {
                    topic: TOPIC.into(),
                    partition: 0,
                    expected_partition_epoch: change.partition_epoch,
                    leader: from,
                    isr: change.isr,
                });
                let _ = o;
                // Committed or refused: either way the leader learns the
                // current state from the metadata.
                self.push_metadata();
            }
            _ => {}
        }
    }

    fn at_broker(&mut self, i: usize, from: i32, msg: Msg) {
        let now = self.now;
        let me = self.brokers[i].id;
        match msg {
            Msg::Registered { epoch } => self.brokers[i].epoch = Some(epoch),
            Msg::Metadata(p) => self.on_metadata(i, p),
            Msg::Fetch {
                from,
                leader_epoch,
                offset,
            } => {
                let b = &mut self.brokers[i];
                let Role::Leader { state, .. } = &mut b.role else {
                    return;
                };
                if state.leader_epoch != leader_epoch || offset > b.log.len() as i64 {
                    return;
                }
                let change = state.on_fetch(from, offset, now);
                b.hw = state.hw;
                let end = (offset as usize + 1 + (self.rng.below(4) as usize)).min(b.log.len());
                let records = b.log[offset as usize..end].to_vec();
                let hw = b.hw;
                let le = state.leader_epoch;
                if let Some(c) = change {
                    self.send(
                        me,
                        CONTROLLER,
                        Msg::AlterIsr {
                            from: me,
                            leader_epoch: le,
                            change: c,
                        },
                    );
                }
                self.send(
                    me,
                    from,
                    Msg::FetchResp {
                        leader_epoch,
                        offset,
                        records,
                        hw,
                    },
                );
                self.complete_acks(i);
            }
            Msg::FetchResp {
                leader_epoch,
                offset,
                records,
                hw,
            } => {
                let b = &mut self.brokers[i];
                let Role::Follower {
                    leader_epoch: le,
                    truncated: true,
                    last_sent,
                    ..
                } = &mut b.role
                else {
                    return;
                };
                *last_sent = 0;
                if *le != leader_epoch || offset != b.log.len() as i64 {
                    return;
                }
                for (epoch, v) in records {
                    let at = b.log.len() as i64;
                    if b.cache.latest_epoch() != Some(epoch) {
                        b.cache.assign(epoch, at);
                    }
                    b.log.push((epoch, v));
                }
                b.hw = hw.min(b.log.len() as i64).max(b.hw.min(b.log.len() as i64));
            }
            Msg::EpochQuery {
                from,
                leader_epoch,
                epoch,
            } => {
                let b = &self.brokers[i];
                let Role::Leader { state, .. } = &b.role else {
                    return;
                };
                if state.leader_epoch != leader_epoch {
                    return;
                }
                let answer = epoch.and_then(|e| b.cache.end_offset_for(e, b.log.len() as i64));
                self.send(
                    me,
                    from,
                    Msg::EpochAnswer {
                        leader_epoch,
                        answer,
                    },
                );
            }
            Msg::EpochAnswer {
                leader_epoch,
                answer,
            } => {
                let b = &mut self.brokers[i];
                let leo = b.log.len() as i64;
                let Role::Follower {
                    leader_epoch: le,
                    truncated,
                    last_sent,
                    ..
                } = &mut b.role
                else {
                    return;
                };
                if *le != leader_epoch || *truncated {
                    return;
                }
                let t = follower::truncation_offset(&b.cache, leo, answer, 0);
                b.log.truncate(t as usize);
                b.cache.truncate_from(t);
                b.hw = b.hw.min(t);
                *truncated = true;
                *last_sent = 0;
            }
            Msg::Produce { value } => {
                let b = &mut self.brokers[i];
                let Role::Leader { state, pending } = &mut b.role else {
                    self.send(
                        me,
                        CLIENT,
                        Msg::ProduceResult {
                            value,
                            offset: None,
                        },
                    );
                    return;
                };
                if !state.can_append_acks_all() {
                    self.send(
                        me,
                        CLIENT,
                        Msg::ProduceResult {
                            value,
                            offset: None,
                        },
                    );
                    return;
                }
                let offset = b.log.len() as i64;
                b.log.push((state.leader_epoch, value));
                state.on_append(offset + 1);
                b.hw = state.hw;
                pending.push((offset, value));
                self.complete_acks(i);
            }
            _ => {
                let _ = from;
            }
        }
    }

    fn complete_acks(&mut self, i: usize) {
        let me = self.brokers[i].id;
        let Role::Leader { state, pending } = &mut self.brokers[i].role else {
            return;
        };
        let mut answers = Vec::new();
        pending.retain(|(offset, value)| match state.ack_state(offset + 1) {
            AckState::Done => {
                answers.push((*value, Some(*offset)));
                false
            }
            AckState::Waiting => true,
            AckState::NotEnoughReplicas => {
                answers.push((*value, None));
                false
            }
        });
        for (value, offset) in answers {
            self.send(me, CLIENT, Msg::ProduceResult { value, offset });
        }
    }

    fn lose_leadership(&mut self, i: usize) {
        let me = self.brokers[i].id;
        if let Role::Leader { pending, .. } = &mut self.brokers[i].role {
            let failed: Vec<u64> = pending.drain(..).map(|(_, v)| v).collect();
            for value in failed {
                self.send(
                    me,
                    CLIENT,
                    Msg::ProduceResult {
                        value,
                        offset: None,
                    },
                );
            }
        }
    }

    fn on_metadata(&mut self, i: usize, p: PartitionState) {
        let now = self.now;
        let me = self.brokers[i].id;
        if self.brokers[i]
            .meta
            .as_ref()
            .is_some_and(|m| m.partition_epoch > p.partition_epoch)
        {
            return; // stale, reordered
        }
        self.brokers[i].meta = Some(p.clone());
        if !p.replicas.contains(&me) {
            // Moved away: no role, and the copy is deleted.
            self.lose_leadership(i);
            let b = &mut self.brokers[i];
            b.role = Role::None;
            if !b.log.is_empty() {
                b.log.clear();
                b.cache = EpochCache::default();
                b.hw = 0;
                self.trace.push(format!("{now} b{me} drops its copy"));
            }
            return;
        }
        if p.leader == me {
            let b = &mut self.brokers[i];
            if let Role::Leader { state, .. } = &mut b.role {
                if state.leader_epoch == p.leader_epoch {
                    if state.replicas != p.replicas {
                        state.set_replicas(p.replicas.clone(), now);
                    }
                    state.on_isr_committed(p.isr.clone(), p.partition_epoch);
                    b.hw = state.hw;
                    self.complete_acks(i);
                    return;
                }
            }
            self.lose_leadership(i);
            let b = &mut self.brokers[i];
            let leo = b.log.len() as i64;
            b.cache.assign(p.leader_epoch, leo);
            let state = LeaderState::new(
                me,
                p.leader_epoch,
                p.partition_epoch,
                p.replicas.clone(),
                p.isr.clone(),
                leo,
                b.hw,
                now,
                LAG_MAX_MS,
                MIN_ISR,
            );
            b.hw = state.hw;
            b.role = Role::Leader {
                state,
                pending: Vec::new(),
            };
            self.trace.push(format!(
                "{now} b{me} leads epoch {} leo {leo}",
                p.leader_epoch
            ));
        } else if p.leader >= 0 {
            if let Role::Follower { leader_epoch, .. } = &self.brokers[i].role {
                if *leader_epoch == p.leader_epoch {
                    return;
                }
            }
            self.lose_leadership(i);
            self.brokers[i].role = Role::Follower {
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                truncated: false,
                last_sent: 0,
            };
        } else {
            self.lose_leadership(i);
            self.brokers[i].role = Role::None;
        }
    }

    fn broker_tick(&mut self, i: usize) {
        let now = self.now;
        let me = self.brokers[i].id;
        if now % 20 == (me as u64) {
            match self.brokers[i].epoch {
                Some(epoch) => self.send(me, CONTROLLER, Msg::Heartbeat { from: me, epoch }),
                None => {
                    let incarnation = self.brokers[i].incarnation;
                    self.send(
                        me,
                        CONTROLLER,
                        Msg::Register {
                            from: me,
                            incarnation,
                        },
                    )
                }
            }
        }
        let b = &mut self.brokers[i];
        let leo = b.log.len() as i64;
        let latest = b.cache.latest_epoch();
        match &mut b.role {
            Role::Leader { state, .. } => {
                let le = state.leader_epoch;
                if let Some(c) = state.tick(now) {
                    self.send(
                        me,
                        CONTROLLER,
                        Msg::AlterIsr {
                            from: me,
                            leader_epoch: le,
                            change: c,
                        },
                    );
                }
            }
            Role::Follower {
                leader,
                leader_epoch,
                truncated,
                last_sent,
            } => {
                // One request at a time, re-sent after 30 ms (lost messages).
                if *last_sent != 0 && now < *last_sent + 30 {
                    return;
                }
                *last_sent = now.max(1);
                let (to, le) = (*leader, *leader_epoch);
                let msg = if *truncated {
                    Msg::Fetch {
                        from: me,
                        leader_epoch: le,
                        offset: leo,
                    }
                } else {
                    Msg::EpochQuery {
                        from: me,
                        leader_epoch: le,
                        epoch: latest,
                    }
                };
                self.send(me, to, msg);
            }
            Role::None => {}
        }
    }

    fn client_tick(&mut self) {
        let now = self.now;
        // A request without an answer times out (lost, or sent to a dead
        // broker); a late success still counts as acknowledged.
        self.in_flight.retain(|_, sent| now < *sent + 200);
        if self.in_flight.len() >= 4 || !self.rng.chance(300) {
            return;
        }
        // The client's view of the leader: some broker's metadata.
        let ask = self.rng.below(N as u64) as usize;
        let Some(leader) = self.brokers[ask].meta.as_ref().map(|m| m.leader) else {
            return;
        };
        if leader < 0 {
            return;
        }
        let value = self.next_value;
        self.next_value += 1;
        self.in_flight.insert(value, now);
        self.send(CLIENT, leader, Msg::Produce { value });
    }

    fn fault_tick(&mut self) {
        if !self.faults {
            return;
        }
        let r = self.rng.below(10_000);
        if r < 8 {
            // Crash a broker (kill -9: its log, in the page cache, survives).
            let i = self.rng.below(N as u64) as usize;
            if self.brokers[i].alive {
                self.lose_leadership(i);
                let b = &mut self.brokers[i];
                b.alive = false;
                b.role = Role::None;
                b.meta = None;
                b.epoch = None;
                self.trace.push(format!("{} crash b{}", self.now, b.id));
            }
        } else if r < 30 {
            let i = self.rng.below(N as u64) as usize;
            if !self.brokers[i].alive {
                self.brokers[i].alive = true;
                self.brokers[i].incarnation += 1;
                self.trace.push(format!("{} restart b{}", self.now, i));
            }
        } else if r < 36 {
            let a = self.rng.below(N as u64) as i32;
            let b = if self.rng.chance(300) {
                CONTROLLER
            } else {
                self.rng.below(N as u64) as i32
            };
            if a != b {
                self.cut.insert((a.min(b), a.max(b)));
            }
        } else if r < 60 {
            if let Some(&c) = self.cut.iter().next() {
                self.cut.remove(&c);
            }
        } else if r < 62 {
            // Controller failover: the new one has heard no heartbeat yet.
            self.ctl.heartbeats.clear();
            self.ctl.since = self.now;
            self.trace.push(format!("{} controller failover", self.now));
        } else if r < 66 {
            // A reassignment to a random set of three (or a cancel).
            let target = if self.rng.chance(200) {
                None
            } else {
                let skip = self.rng.below(N as u64) as i32;
                let mut t: Vec<i32> = (0..N).filter(|b| *b != skip).collect();
                t.rotate_left(self.rng.below(3) as usize);
                Some(t)
            };
            if self.controller_write(Command::ReassignPartition {
                topic: TOPIC.into(),
                partition: 0,
                target,
            }) == Outcome::Ok
            {
                self.push_metadata();
            }
        }
    }

    fn run(&mut self) {
        while self.now < FAULT_PHASE_MS + SETTLE_MS {
            if self.now == FAULT_PHASE_MS {
                self.faults = false;
                self.cut.clear();
                for b in &mut self.brokers {
                    if !b.alive {
                        b.alive = true;
                        b.incarnation += 1;
                    }
                }
            }
            while let Some(Reverse((at, seq, from, to))) = self.queue.peek().copied() {
                if at > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(msg) = self.msgs.remove(&seq) {
                    self.deliver(from, to, msg);
                }
            }
            self.fault_tick();
            if self.now % 10 == 0 {
                self.controller_tick();
            }
            for i in 0..N as usize {
                if self.brokers[i].alive {
                    self.broker_tick(i);
                }
            }
            if self.now < FAULT_PHASE_MS {
                self.client_tick();
            }
            self.now += 1;
        }
    }

    /// Every acknowledged record is on the leader at its offset, once, and
    /// the ISR agrees up to the high watermark.
    fn check(&self) -> Result<(), String> {
        let p = self.partition();
        if p.leader < 0 {
            return Err(format!("no leader after settling: {p:?}"));
        }
        let leader = &self.brokers[p.leader as usize];
        for (value, offset) in &self.acked {
            match leader.log.get(*offset as usize) {
                Some((_, v)) if v == value => {}
                other => {
                    return Err(format!(
                        "acknowledged value {value} at offset {offset} lost: leader b{} has {other:?}",
                        leader.id
                    ));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (_, v) in &leader.log {
            if !seen.insert(*v) {
                return Err(format!("value {v} twice in the leader's log"));
            }
        }
        let hw = leader.hw as usize;
        if let Some(max) = self.acked.values().max() {
            if (*max as usize) >= hw {
                return Err(format!(
                    "high watermark {hw} below acknowledged offset {max}"
                ));
            }
        }
        for r in &p.isr {
            let b = &self.brokers[*r as usize];
            if b.log.len() < hw || b.log[..hw] != leader.log[..hw] {
                return Err(format!(
                    "ISR member b{r} differs from the leader below the high watermark {hw}"
                ));
            }
        }
        if !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty() {
            return Err(format!(
                "a reassignment did not complete after healing: {p:?}"
            ));
        }
        let mut isr = p.isr.clone();
        let mut replicas = p.replicas.clone();
        isr.sort_unstable();
        replicas.sort_unstable();
        if isr != replicas {
            return Err(format!("the ISR did not grow back after healing: {p:?}"));
        }
        for b in &self.brokers {
            if !p.replicas.contains(&b.id) && !b.log.is_empty() {
                return Err(format!("b{} kept a copy after it was moved away", b.id));
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64) -> (Result<(), String>, usize, Vec<String>) {
    let mut s = Sim::new(seed);
    s.run();
    (s.check(), s.acked.len(), s.trace)
}

#[test]
fn acknowledged_records_survive_random_faults() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("SLUICE_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(300);
            (0..n).collect()
        }
    };
    let mut total_acked = 0;
    for seed in &seeds {
        let (result, acked, trace) = run_seed(*seed);
        if let Err(e) = result {
            let tail: Vec<_> = trace.iter().rev().take(40).rev().collect();
            panic!(
                "seed {seed}: {e}\nreplay: SLUICE_SIM_SEED={seed} cargo test -p sluice-replication --test simulation\nlast events:\n{}",
                tail.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        assert!(
            acked > 0,
            "seed {seed}: nothing was acknowledged; the simulation tests nothing"
        );
        total_acked += acked;
    }
    println!(
        "{} seeds, {total_acked} acknowledged records, all kept",
        seeds.len()
    );
}

#[test]
fn the_same_seed_replays_the_same_history() {
    let (a, acked_a, trace_a) = run_seed(42);
    let (b, acked_b, trace_b) = run_seed(42);
    assert_eq!(a, b);
    assert_eq!(acked_a, acked_b);
    assert_eq!(trace_a, trace_b);
}

#[test]
#[ignore]
fn debug_seed() {
    let seed: u64 = std::env::var("SLUICE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut s = Sim::new(seed);
    s.run();
    for t in &s.trace {
        println!("{t}");
    }
    println!(
        "acked {} values {}; partition {:?}",
        s.acked.len(),
        s.next_value,
        s.partition()
    );
    for b in &s.brokers {
        let role = match &b.role {
            Role::None => "none".to_string(),
            Role::Leader { state, .. } => format!(
                "leader e{} isr {:?} hw {}",
                state.leader_epoch, state.isr, state.hw
            ),
            Role::Follower {
                leader,
                leader_epoch,
                truncated,
                ..
            } => format!("follower of {leader} e{leader_epoch} trunc {truncated}"),
        };
        println!(
            "b{} alive {} epoch {:?} log {} hw {} {role}",
            b.id,
            b.alive,
            b.epoch,
            b.log.len(),
            b.hw
        );
    }
    println!("{:?}", s.ctl.img.brokers);
}
